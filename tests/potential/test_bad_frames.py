"""One policy for bad training frames: each is skipped and named with its index and reason; training
stops only when nothing usable is left."""

from __future__ import annotations

import re

import numpy as np
from ase import Atoms
from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main
from aiida_lmlp.potential.training.trainer import filter_training_data

from ..conftest import SN2, SN2_ELEMENTS


def _bad_frames(gold: bool = True):
    frames = read(SN2 / "pool_a.extxyz", ":12")
    nan = frames[3].copy()
    nan.info["energy"] = float("nan")
    nan.arrays["forces"] = frames[3].get_forces()
    close = frames[5].copy()
    close.positions[1] = close.positions[0] + [0.2, 0.0, 0.0]
    close.info["energy"] = frames[5].get_potential_energy()
    close.arrays["forces"] = frames[5].get_forces()
    frames[3], frames[5] = nan, close
    if gold:  # an element the model lacks (a new model takes its elements from the data)
        frames[8] = Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.6]])
        frames[8].info["energy"] = -100.0
        frames[8].arrays["forces"] = np.zeros((2, 3))
    return frames


def test_every_bad_frame_is_named_with_its_index_and_reason():
    frames = _bad_frames()
    kept, ids, report = filter_training_data(frames, SN2_ELEMENTS, 15.0, cutoff=12.0)
    assert report.kept == 9 and len(kept) == 9
    bad = dict(report.bad)
    assert sorted(bad) == [3, 5, 8]
    assert "NaN or infinite" in bad[3]
    assert re.search(r"atoms 0 \(\w+\) and 1 \(\w+\) are 0\.200 Å apart", bad[5])
    assert "Au" in bad[8] and "not in the model" in bad[8]
    summary = report.summary()
    for index in (3, 5, 8):
        assert f"frame {index} ({frames[index].get_chemical_formula()}): {bad[index]}" in summary


def test_training_goes_on_without_the_bad_frames_and_names_them(tmp_path):
    data = tmp_path / "mixed.extxyz"
    write(data, _bad_frames(gold=False), format="extxyz")
    out = tmp_path / "m.lmlp"
    arguments = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--members", "2"]
    result = CliRunner().invoke(main, [*arguments, "--reference-energies", str(SN2 / "free_atoms.json")])
    assert result.exit_code == 0, result.output
    assert "10 of 12 conformations used" in result.output
    assert re.search(r"frame 5 \(\w+\): .*are 0\.200 Å apart", result.output)
    assert re.search(r"frame 3 \(\w+\): NaN or infinite", result.output)
    assert out.is_file()


def test_nothing_usable_stops_the_training_naming_every_frame(tmp_path):
    frames = _bad_frames()
    data = tmp_path / "bad.extxyz"
    write(data, [frames[3], frames[5]], format="extxyz")
    out = tmp_path / "m.lmlp"
    arguments = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--members", "2"]
    result = CliRunner().invoke(main, [*arguments, "--reference-energies", str(SN2 / "free_atoms.json")])
    assert result.exit_code == 1
    assert "no usable training conformations" in result.output
    assert re.search(r"frame 0 \(\w+\): NaN", result.output) and re.search(r"frame 1 \(\w+\): .*apart", result.output)
    assert not out.exists()
