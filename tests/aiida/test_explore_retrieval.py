"""An exploration job hands back each visited frame once: in the archive after a complete run, else in the extxyz."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner

from aiida_lmlp.calculations import LmlpExploreCalculation
from aiida_lmlp.cli import main
from aiida_lmlp.data import LmlpDatasetData, LmlpPotentialData
from aiida_lmlp.formats.conformation_arrays import read_frames

PROTOCOL = {"kind": "md", "steps": 6, "sample_every": 2, "temperature": 300, "seed": 4}


@pytest.fixture(scope="module")
def model_file(sn2_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("retrieval") / "model.lmlp"
    sn2_model.save(path)
    return path


def test_a_complete_exploration_leaves_its_frames_in_the_archive_only(lmlp_code, model_file, sn2_frames):
    potential, _ = LmlpPotentialData.get_or_create(model_file)
    starts = LmlpDatasetData.from_atoms(sn2_frames[:2]).store()
    results, node = run_get_node(
        LmlpExploreCalculation,
        code=lmlp_code("lmlp.explore"),
        potential=potential,
        structures=starts,
        protocol=orm.Dict(PROTOCOL),
        metadata={"options": {"max_wallclock_seconds": 300}},
    )
    assert node.is_finished_ok, node.exit_message
    workdir = Path(node.outputs.remote_folder.get_remote_path())  # core.local: a folder of this machine
    files = {path.name for path in workdir.iterdir()}
    assert {"visited.npz", "summary.json"} <= files
    assert "visited.extxyz" not in files  # what the job retrieves: visited.extxyz and visited.npz, if present
    assert set(node.get_retrieve_temporary_list()) == {"visited.extxyz", "visited.npz"}
    assert results["visited"].count == results["summary"]["frames"] == 8
    assert len(read_frames(workdir / "visited.npz")) == 8


@pytest.mark.parametrize(("flag", "kept"), [([], True), (["--keep-out"], True), (["--no-keep-out"], False)])
def test_explore_keeps_or_removes_the_extxyz_once_archived(tmp_path, model_file, sn2_frames, flag, kept):
    from ase.io import read, write

    write(tmp_path / "starts.extxyz", sn2_frames[:1])
    (tmp_path / "protocol.yaml").write_text("kind: md\nsteps: 4\nsample_every: 2\nseed: 1\n")
    out, archive = tmp_path / "visited.extxyz", tmp_path / "visited.npz"
    arguments = ["explore", "--model", str(model_file), "--structures", str(tmp_path / "starts.extxyz")]
    arguments += ["--protocol", str(tmp_path / "protocol.yaml"), "--out", str(out), "--archive", str(archive)]
    arguments += ["--summary", str(tmp_path / "summary.json"), *flag]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    archived = read_frames(archive)
    assert len(archived) == 3
    assert out.exists() is kept
    if kept:
        assert len(read(out, ":")) == 3
