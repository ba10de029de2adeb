"""``lmlp quickstart`` on a machine without a profile: the built-in ZeroMQ broker unless RabbitMQ is asked for.

Each run is the real command in its own process with its own ``AIIDA_PATH`` (a fresh machine's
empty configuration): it makes the profile with ``verdi presto``, starts the daemon and submits
the campaign; ``--timeout 0`` returns at once, and the daemon is stopped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _rabbitmq_answers() -> bool:
    from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

    try:
        detect_rabbitmq_config()
    except ConnectionError:
        return False
    return True


def _quickstart(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run ``lmlp quickstart --timeout 0 OPTIONS`` on an empty configuration; returns the run and its profile."""
    environment = {**os.environ, "AIIDA_PATH": str(tmp_path)}
    try:
        result = subprocess.run(
            [str(BIN / "lmlp"), "quickstart", "--timeout", "0", *options],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run([str(BIN / "verdi"), "daemon", "stop"], env=environment, capture_output=True, timeout=120)
    config_file = tmp_path / ".aiida" / "config.json"
    profiles = json.loads(config_file.read_text())["profiles"] if config_file.exists() else {}
    return result, next(iter(profiles.values()), None)


def test_quickstart_uses_the_built_in_zeromq_broker_by_default(tmp_path):
    # on this machine a RabbitMQ may answer on localhost (the production-profile tests use one): it is not taken
    result, profile = _quickstart(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert profile["process_control"]["backend"] == "core.zeromq"
    assert "broker core.zeromq" in result.stdout and "submitted campaign quickstart" in result.stdout


def test_use_zeromq_still_works(tmp_path):
    result, profile = _quickstart(tmp_path, "--use-zeromq")
    assert result.returncode == 0, result.stdout + result.stderr
    assert profile["process_control"]["backend"] == "core.zeromq"


def test_rabbitmq_on_request(tmp_path):
    result, profile = _quickstart(tmp_path, "--broker", "rabbitmq")
    if _rabbitmq_answers():
        assert result.returncode == 0, result.stdout + result.stderr
        assert profile["process_control"]["backend"] == "core.rabbitmq"
    else:  # asked for and absent: said so, and no profile made with another broker
        assert result.returncode != 0 and "no RabbitMQ server answers" in result.stdout + result.stderr
        assert profile is None


def test_a_broker_and_use_zeromq_that_disagree_are_refused(tmp_path):
    result, profile = _quickstart(tmp_path, "--broker", "rabbitmq", "--use-zeromq")
    assert result.returncode == 2 and "--use-zeromq" in result.stderr and profile is None


def test_the_help_names_the_choice():
    from click.testing import CliRunner

    from aiida_lmlp.cli import main

    result = CliRunner().invoke(main, ["quickstart", "--help"])
    assert "--broker [zeromq|rabbitmq]" in result.output
