"""Reliability: the daemon stopped in the middle of a campaign and started again.

Runs ``daemon_campaign_restart.py`` in its own process and ``AIIDA_PATH`` on the embedded profile
(SQLite + ZeroMQ): the daemon is stopped while a loop labelling job runs, then started again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_campaign_survives_a_daemon_restart(tmp_path):
    result = subprocess.run(
        [sys.executable, str(HERE / "daemon_campaign_restart.py"), str(HERE / "restart_campaign.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "AIIDA_PATH": str(tmp_path)},
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # the daemon really was stopped while a calculation ran
    assert outcome["stopped_during"] >= 1
    # the campaign finishes
    assert outcome["finished_ok"] and outcome["stop_reason"] == "max_iterations" and outcome["versions"] == 3
    # no DFT calculation ran twice: one calculation per batch, no geometry labelled twice
    assert outcome["pyscf_calculations"] == outcome["distinct_pyscf_inputs"]
    assert outcome["labelled_by_dft"] == outcome["distinct_labelled"] >= 10
    # no labelled conformation is lost
    assert outcome["labelled_missing_from_campaign"] == 0
    # the daemon worker that ran the rest of the campaign (training submissions included) never
    # loaded torch: libtorch is not in its memory map (it once came in through a validator)
    assert outcome["daemon_workers_with_torch"] == 0
