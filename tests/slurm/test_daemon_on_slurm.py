"""A real daemon (2 workers) with its jobs on the SLURM cluster: 20 jobs queued at once, and a stop and restart.

``daemon_jobs.py`` runs in its own process with its own ``AIIDA_PATH`` and embedded profile
(SQLite + ZeroMQ), so the daemon never touches the test session's profile. Its computer uses
``core.ssh_async``, the SSH transport aiida-core recommends (the other slurm tests use
``core.ssh``), with ``HOME`` set to a folder whose ``.ssh`` reaches the cluster. What it reports is
compared with SLURM's own record of every job that ended (``jobcomp.txt``): a job submitted
twice, or one that never ran, shows there whatever AiiDA believes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .computer import ClusterAccess

pytestmark = pytest.mark.slurm

SCRIPT = Path(__file__).with_name("daemon_jobs.py")


@pytest.fixture(scope="module")
def outcome(slurm_cluster, tmp_path_factory):
    """The two scenarios of ``daemon_jobs.py`` (about 2 minutes), run once for the tests of this module."""
    access = ClusterAccess.of(slurm_cluster, "aiida-daemon-work", transport="core.ssh_async")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(slurm_cluster.root), access.to_json()],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "AIIDA_PATH": str(tmp_path_factory.mktemp("aiida-daemon")),
            "HOME": str(slurm_cluster.client_home),
        },
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), access


def test_the_daemon_reached_the_cluster_through_core_ssh_async(outcome):
    result, access = outcome
    assert access.transport == "core.ssh_async" and result["transport"] == "core.ssh_async"


def _check_against_slurm(calculations: list[dict], cluster, workdir: str) -> None:
    """One SLURM job per calculation, none submitted twice, none lost: from SLURM's record of ended jobs."""
    mine = [r for r in cluster.finished_jobs() if r["WorkDir"] in {c["workdir"] for c in calculations}]
    per_folder = Counter(r["WorkDir"] for r in mine)
    assert all(c["workdir"].startswith(workdir) for c in calculations)
    assert sorted(per_folder.values()) == [1] * len(calculations), per_folder  # each ran exactly once
    ran = {r["WorkDir"]: r for r in mine}
    for calculation in calculations:
        record = ran[calculation["workdir"]]
        assert record["JobId"] == calculation["job_id"] and record["JobState"] == "COMPLETED"
        assert record["Name"] == f"aiida-{calculation['pk']}"
        # picked up once: retrieved and parsed a single time, finished with its label
        assert calculation["terminated"] and calculation["exit_status"] == 0
        assert calculation["retrieved_links"] == 1 and calculation["remote_folder_links"] == 1
        assert calculation["labelled"] == 1


def test_twenty_labelling_jobs_queued_on_the_cluster_with_two_daemon_workers_all_finish(outcome, slurm_cluster):
    result, access = outcome
    queued = result["queued"]
    assert len(queued["calculations"]) == 20
    # they really waited in SLURM's queue (2 cores for 20 jobs)
    assert queued["most_pending"] >= 10
    _check_against_slurm(queued["calculations"], slurm_cluster, access.workdir)


def test_a_daemon_stopped_with_jobs_running_and_queued_picks_each_up_once_after_its_restart(outcome, slurm_cluster):
    result, access = outcome
    restart = result["restart"]
    assert len(restart["calculations"]) == 4
    # stopped while SLURM ran some of the jobs and others waited in the queue
    assert "RUNNING" in restart["at_stop"] and "PENDING" in restart["at_stop"]
    # some ended on the cluster while no daemon was there to see it
    assert restart["ended_while_stopped"] and restart["terminated_while_stopped"] == 0
    _check_against_slurm(restart["calculations"], slurm_cluster, access.workdir)
