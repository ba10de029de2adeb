"""Submit an ``lmlp.train`` job to a running daemon on a fresh profile, wait for it, clean up.

Run as a script with ``AIIDA_PATH`` pointing to an empty folder (the test does this):

    python tests/aiida/daemon_roundtrip.py embedded|production SN2_EXTXYZ

``embedded`` is the default of a laptop (``verdi presto --use-zeromq``: SQLite and aiida-core's
built-in ZeroMQ broker); ``production`` is PostgreSQL + RabbitMQ
(:mod:`aiida_lmlp.campaign.profiles`). Prints one JSON line with the outcome.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

from aiida_lmlp.campaign.profiles import create_profile, delete_profile, verdi


def main(kind: str, data: str) -> dict:
    name = f"lmlp-{kind}-{uuid.uuid4().hex[:8]}"
    create_profile(kind, name, Path(os.environ["AIIDA_PATH"]))
    try:
        verdi("daemon", "start", "1", "--timeout", "60", profile=name)
        try:
            return {"profile": name, **submit_and_wait(name, data)}
        finally:
            verdi("daemon", "stop", "--timeout", "60", profile=name)
    finally:
        delete_profile(kind, name)


def submit_and_wait(name: str, data: str) -> dict:
    from aiida import load_profile, orm
    from aiida.engine import submit
    from aiida.manage import get_manager
    from ase.io import read

    from aiida_lmlp.calculations import LmlpTrainCalculation
    from aiida_lmlp.data import LmlpDatasetData

    profile = load_profile(name, allow_switch=True)
    frames = [a for a in read(data, ":") if a.info["reaction"] == "Cl+CH3Cl"][:8]
    dataset = LmlpDatasetData.from_atoms(frames, label_method="PBE/def2-SVP").store()
    parameters = {"epochs": 2, "members": 2, "hidden": [4], "fit_per_epoch": 1.0, "test_fraction": 0.25}
    node = submit(
        LmlpTrainCalculation,
        code=orm.load_code("lmlp@localhost"),
        datasets={"sn2": dataset},
        parameters=orm.Dict(parameters),
        metadata={"options": {"max_wallclock_seconds": 300}},
    )
    deadline = time.monotonic() + 240
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(1)
    outputs = node.base.links.get_outgoing().all_link_labels() if node.is_terminated else []
    result = {
        "storage": profile.storage_backend,
        "broker": profile.process_control_backend,
        "terminated": node.is_terminated,
        "exit_status": node.exit_status,
        "outputs": sorted(outputs),
        "epochs": node.outputs.potential.base.attributes.get("epochs") if "potential" in outputs else None,
    }
    get_manager().unload_profile()  # close this process's database connection before the profile is deleted
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
