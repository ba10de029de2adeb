"""``lmlp label-pyscf``: parameters, output files, exit statuses and SIGTERM/SIGINT in a real process."""

import json
import signal
import subprocess
import sys
import time

import pytest
from ase import Atoms
from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main

from .conftest import SN2

FAST = {"xc": "HF", "basis": "sto-3g", "threads": 1}


def _inputs(tmp_path, structures, parameters):
    write(tmp_path / "structures.extxyz", structures, format="extxyz")
    (tmp_path / "parameters.json").write_text(json.dumps(parameters))
    return [
        "label-pyscf",
        "--structures",
        str(tmp_path / "structures.extxyz"),
        "--parameters",
        str(tmp_path / "parameters.json"),
        "--out",
        str(tmp_path / "labelled.extxyz"),
        "--status",
        str(tmp_path / "status.jsonl"),
    ]


def _status(tmp_path):
    return [json.loads(line) for line in (tmp_path / "status.jsonl").read_text().splitlines()]


def test_batch_exits_0_with_one_not_converged(tmp_path):
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    sn2 = read(SN2 / "pool_a.extxyz", 5)  # Cl⁻ + CH3Cl, about 9 SCF cycles
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(main, _inputs(tmp_path, [sn2, h2], {**FAST, "max_cycle": 3, "second_order": False}))
    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # put back
    lines = _status(tmp_path)
    assert [line.get("status", line.get("event")) for line in lines] == [
        "start",
        "not_converged",
        "converged",
        "finished",
    ]
    assert lines[-1] == {"event": "finished", "converged": 1, "not_converged": 1, "errors": 0}
    labelled = read(tmp_path / "labelled.extxyz", ":")
    assert len(labelled) == 1 and labelled[0].info["index"] == 1
    assert labelled[0].get_potential_energy() == lines[2]["energy"]
    assert "1 converged, 1 not converged, 0 errors" in result.output


@pytest.mark.parametrize(
    "parameters, named",
    [({"xc": "HF", "fail_on": 0}, "'fail_on'"), ({"conv_tol": "tight"}, "'conv_tol'"), ([1, 2], "JSON object")],
)
def test_bad_parameters_are_refused_before_anything_is_written(tmp_path, parameters, named):
    result = CliRunner().invoke(main, _inputs(tmp_path, [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])], parameters))
    assert result.exit_code == 1 and named in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "status.jsonl").exists() and not (tmp_path / "labelled.extxyz").exists()


def test_unreadable_input_is_an_error_not_a_crash(tmp_path):
    args = _inputs(tmp_path, [Atoms("H")], FAST)
    (tmp_path / "structures.extxyz").write_text("3\nnot an extxyz file\nH 0 0\n")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "cannot read structures" in result.output
    result = CliRunner().invoke(main, ["label-pyscf", "--structures", str(tmp_path / "missing.extxyz")])
    assert result.exit_code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_batch_keeps_the_finished_structures(tmp_path, signum):
    """SIGTERM/SIGINT: a ``terminated`` line and exit 128+signal; SIGKILL (a crash): no closing line."""
    frames = read(SN2 / "pool_a.extxyz", ":8")  # HF/sto-3g: a few seconds in all
    args = _inputs(tmp_path, frames, FAST)
    process = subprocess.Popen(
        [sys.executable, "-c", "from aiida_lmlp.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status = tmp_path / "status.jsonl"
    deadline = time.monotonic() + 60
    while not (status.exists() and '"index": 0' in status.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    lines = _status(tmp_path)
    records = [line for line in lines if "index" in line]
    assert 1 <= len(records) < len(frames) and not any(line.get("event") == "finished" for line in lines)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL and "event" not in lines[-1]
    else:
        assert process.returncode == 128 + signum, stderr
        assert lines[-1] == {"event": "terminated", "signal": int(signum), "completed": len(records)}
        assert f"stopped by signal {int(signum)}" in stderr
    converged = [r for r in records if r["status"] == "converged"]
    labelled = read(tmp_path / "labelled.extxyz", ":")
    assert [a.info["index"] for a in labelled] == [r["index"] for r in converged]
    assert [a.get_potential_energy() for a in labelled] == [r["energy"] for r in converged]
