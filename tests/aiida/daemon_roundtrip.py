"""Submit an ``lmlp.train`` job to a running daemon on a fresh profile, wait for it, clean up.

Run as a script with ``AIIDA_PATH`` pointing to an empty folder (the test does this):

    python tests/aiida/daemon_roundtrip.py zeromq|postgres-rabbitmq SN2_EXTXYZ

``zeromq`` is the embedded default (``verdi presto --use-zeromq``: SQLite and aiida-core's
built-in ZeroMQ broker); ``postgres-rabbitmq`` is the production set-up (``verdi presto
--use-postgres`` with RabbitMQ found on localhost). Prints one JSON line with the outcome.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

VERDI = str(Path(sys.executable).with_name("verdi"))
LMLP = str(Path(sys.executable).with_name("lmlp"))


def verdi(*arguments: str, profile: str | None = None) -> str:
    command = [VERDI] + (["-p", profile] if profile else []) + list(arguments)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def postgres(statement: str) -> None:
    """Run one statement as the ``postgres`` superuser on 127.0.0.1 (trust authentication)."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as connection:
        connection.execute(statement)


def create_profile(kind: str, name: str, workdir: Path) -> None:
    """The embedded default with ``verdi presto``; production with ``verdi profile setup core.psql_dos``.

    ``verdi presto --use-postgres`` asks for the en_US.UTF-8 locale, which a minimal server may
    lack; the database is created here with the server's default locale instead.
    """
    if kind == "zeromq":
        verdi("presto", "--profile-name", name, "--use-zeromq")
        return
    postgres(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    verdi(
        "profile", "setup", "core.psql_dos", "--non-interactive", "--profile-name", name,
        "--email", "lmlp@localhost", "--first-name", "lmlp", "--last-name", "tests", "--institution", "aiida-lmlp",
        "--broker", "core.rabbitmq", "--database-hostname", "127.0.0.1", "--database-port", "5432",
        "--database-username", "postgres", "--database-password", "", "--database-name", name,
        "--repository-uri", f"file://{workdir / 'repository'}",
    )  # fmt: skip
    verdi(
        "computer", "setup", "--non-interactive", "--label", "localhost", "--hostname", "localhost",
        "--transport", "core.local", "--scheduler", "core.direct", "--work-dir", str(workdir / "work"),
        profile=name,
    )  # fmt: skip
    verdi("computer", "configure", "core.local", "localhost", "--non-interactive", "--safe-interval", "0", profile=name)


def main(kind: str, data: str) -> dict:
    import os

    name = f"lmlp-{kind}-{uuid.uuid4().hex[:8]}"
    workdir = Path(os.environ["AIIDA_PATH"])
    create_profile(kind, name, workdir)
    try:
        verdi(
            "code", "create", "core.code.installed", "--non-interactive", "--label", "lmlp", "--computer",
            "localhost", "--filepath-executable", LMLP, "--default-calc-job-plugin", "lmlp.train",
            profile=name,
        )  # fmt: skip
        verdi("daemon", "start", "1", profile=name)
        try:
            return {"profile": name, **submit_and_wait(name, data)}
        finally:
            verdi("daemon", "stop", profile=name)
    finally:
        if kind == "zeromq":
            verdi("profile", "delete", "--force", "--delete-data", name)
        else:
            # verdi's own drop fails while a daemon worker's connection is still closing
            verdi("profile", "delete", "--force", "--keep-data", name)
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def submit_and_wait(name: str, data: str) -> dict:
    from aiida import load_profile, orm
    from aiida.engine import submit
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
    from aiida.manage import get_manager

    get_manager().unload_profile()  # close this process's database connection before the profile is deleted
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
