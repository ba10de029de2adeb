"""A calculation submitted to a real daemon, on the embedded default and on the production profile.

Each test runs ``daemon_roundtrip.py`` in its own process with its own ``AIIDA_PATH``, so the
profile it makes (and deletes) never touches the test session's profile.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import SN2

SCRIPT = Path(__file__).with_name("daemon_roundtrip.py")


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _roundtrip(kind: str, tmp_path) -> dict:
    environment = {**os.environ, "AIIDA_PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), kind, str(SN2 / "pool_a.extxyz")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_profile_sqlite_and_zeromq_daemon(tmp_path):
    outcome = _roundtrip("embedded", tmp_path)
    assert (outcome["storage"], outcome["broker"]) == ("core.sqlite_dos", "core.zeromq")
    assert outcome["terminated"] and outcome["exit_status"] == 0
    assert {"potential", "metrics", "output_parameters"} <= set(outcome["outputs"]) and outcome["epochs"] == 2


def test_production_profile_postgresql_and_rabbitmq_daemon(tmp_path):
    if not _reachable(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432: the production-profile test needs it")
    if not _reachable(5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672: the production-profile test needs it")
    outcome = _roundtrip("production", tmp_path)
    assert (outcome["storage"], outcome["broker"]) == ("core.psql_dos", "core.rabbitmq")
    assert outcome["terminated"] and outcome["exit_status"] == 0
    assert {"potential", "metrics", "output_parameters"} <= set(outcome["outputs"]) and outcome["epochs"] == 2
