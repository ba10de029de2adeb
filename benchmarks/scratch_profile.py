"""Shared pieces of the AiiDA benchmarks: paths, a scratch embedded profile, and the results file."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from timing import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SN2 = ROOT / "workflows" / "data" / "sn2"  # the SN2 reference data shipped in the repository
RESULTS = ROOT / "benchmarks" / "results"


@contextmanager
def scratch_profile(name: str) -> Iterator[Path]:
    """A fresh embedded profile (``verdi presto --use-zeromq``) in a temporary ``AIIDA_PATH``, loaded.

    Yields the temporary folder (also the profile's work directory); everything goes with it.
    """
    with tempfile.TemporaryDirectory(prefix=f"lmlp-{name}-") as scratch:
        os.environ["AIIDA_PATH"] = scratch
        from aiida import load_profile

        from aiida_lmlp.campaign.profiles import create_profile

        create_profile("embedded", name, Path(scratch))
        load_profile(name)
        yield Path(scratch)


def write_result(out: Path, payload: dict) -> None:
    """Write ``payload`` with the command that made it, the machine and the date to ``out``."""
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
        **payload,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
