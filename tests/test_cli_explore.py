"""``lmlp explore``: the files the explore CalcJob's parser reads, and one-line errors for bad input."""

import json

import pytest
import yaml
from ase import Atoms
from ase.io import write
from click.testing import CliRunner

from aiida_lmlp.cli import main
from aiida_lmlp.potential.exploration import read_visited


@pytest.fixture
def job(tmp_path, sn2_model, sn2_frames):
    """A model file and three start structures (the second with an element the model lacks)."""
    sha = sn2_model.save(tmp_path / "model.lmlp")
    write(tmp_path / "start.extxyz", [sn2_frames[0], Atoms("NaCl", positions=[[0, 0, 0], [0, 0, 2.4]]), sn2_frames[1]])
    return tmp_path, sha


def run(tmp_path, protocol, structures="start.extxyz", model="model.lmlp", extra=()):
    path = tmp_path / "protocol.yaml"
    path.write_text(protocol if isinstance(protocol, str) else yaml.safe_dump(protocol))
    args = ["explore", "--model", str(tmp_path / model), "--structures", str(tmp_path / structures)]
    args += ["--protocol", str(path), "--out", str(tmp_path / "visited.extxyz")]
    args += ["--summary", str(tmp_path / "summary.json"), *extra]
    return CliRunner().invoke(main, args)


def test_explore_writes_visited_frames_and_the_summary(job):
    tmp_path, sha = job
    result = run(tmp_path, {"kind": "md", "steps": 4, "sample_every": 2, "seed": 3})
    assert result.exit_code == 0, result.output
    assert "Na not in the model" in result.stderr
    frames = read_visited(tmp_path / "visited.extxyz")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model_sha256"] == sha and summary["complete"] is True
    assert summary["protocol"] == {
        "kind": "md",
        "temperature": 300.0,
        "timestep": 0.5,
        "friction": 0.01,
        "seed": 3,
        "replicas": 1,
        "steps": 4,
        "sample_every": 2,
        "stop_energy_uncertainty_per_atom": None,
        "stop_forces_uncertainty": None,
        "max_frames": 10000,
    }
    assert summary["frames"] == len(frames) == 6
    first, sodium, last = summary["trajectories"]
    assert [t["start_index"] for t in summary["trajectories"]] == [0, 1, 2]
    assert (first["steps"], first["frames"], first["stopped_early"], first["reason"], first["error"]) == (
        4,
        3,
        False,
        None,
        None,
    )
    assert first["max_energy_uncertainty_per_atom"] > 0 and first["max_forces_uncertainty"] > 0
    assert "Na not in the model" in sodium["error"] and sodium["frames"] == 0
    assert last["error"] is None and last["frames"] == 3
    # the trajectories run in lockstep: visited.extxyz interleaves them step by step, as they were recorded
    assert [(f.info["start_index"], f.info["step"]) for f in frames] == [(0, 0), (2, 0), (0, 2), (2, 2), (0, 4), (2, 4)]
    for frame in frames:
        assert frame.calc is None and "energy" not in frame.info and "forces" not in frame.arrays
        assert frame.info["stopped"] is False and frame.info["charge"] == -1 and frame.info["multiplicity"] == 1
        assert frame.arrays["lmlp_forces_uncertainty"].shape == (len(frame), 3)


def test_explore_stops_on_uncertainty(job):
    tmp_path, _ = job
    result = run(tmp_path, "kind: relax\nsteps: 5\nstop_energy_uncertainty_per_atom: 1.0e-6\n")
    assert result.exit_code == 0, result.output
    frames = read_visited(tmp_path / "visited.extxyz")
    assert [f.info["stopped"] for f in frames] == [True, True]
    trajectories = json.loads((tmp_path / "summary.json").read_text())["trajectories"]
    assert [t["stopped_early"] for t in trajectories] == [True, False, True]
    assert trajectories[0]["reason"].startswith("energy uncertainty") and trajectories[0]["reason"].endswith("> 1e-06")


@pytest.mark.parametrize(
    ("protocol", "words"),
    [
        ("kind: md\ntemprature: 300\n", "protocol key 'temprature': unknown key"),
        ("kind: md\ntimestep: -1\n", "protocol key 'timestep'"),
        ("kind: relax\ntemperature: 300\n", "protocol key 'temperature': does not apply to kind 'relax'"),
        ("kind: dance\n", "protocol key 'kind'"),
        ("- md\n", "protocol key 'kind'"),
        ("kind: [md\n", "cannot parse protocol"),
    ],
)
def test_a_bad_protocol_is_refused_with_one_line_naming_the_key(job, protocol, words):
    tmp_path, _ = job
    result = run(tmp_path, protocol)
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "protocol.yaml" in lines[0], result.stderr
    assert not (tmp_path / "visited.extxyz").exists()


def test_bad_input_files_are_named(job):
    tmp_path, _ = job
    (tmp_path / "broken.extxyz").write_text("3\nnot an extxyz comment\nH 0 0\n")
    for structures, model, words in (
        ("broken.extxyz", "model.lmlp", "broken.extxyz"),
        ("missing.extxyz", "model.lmlp", "missing.extxyz"),
        ("start.extxyz", "missing.lmlp", "missing.lmlp"),
    ):
        result = run(tmp_path, {"kind": "evaluate"}, structures=structures, model=model)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and words in lines[0], result.stderr
    result = run(tmp_path, {"kind": "neb", "steps": 1})  # three structures: not endpoint pairs
    assert result.exit_code != 0 and "odd number" in result.stderr and "start.extxyz" in result.stderr


def test_device_cpu_runs_and_a_missing_cuda_device_is_refused_before_anything_is_written(job):
    import torch

    tmp_path, _ = job
    result = run(tmp_path, {"kind": "evaluate"}, extra=["--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(read_visited(tmp_path / "visited.extxyz")) == 2
    if torch.cuda.is_available():
        return  # the refusal below needs a machine without CUDA; tests/potential/test_cuda.py runs it on one
    (tmp_path / "visited.extxyz").unlink()
    result = run(tmp_path, {"kind": "evaluate"}, extra=["--device", "cuda"])
    assert result.exit_code != 0
    assert "--device cuda: device 'cuda' was requested but no CUDA device is available" in result.output
    assert not (tmp_path / "visited.extxyz").exists()
