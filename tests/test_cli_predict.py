"""``lmlp predict``: every skipped structure named with its reason, a non-zero exit when nothing was
predicted, and the errors against reference labels where the input has them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main

from .conftest import SN2


@pytest.fixture
def model(tmp_path, sn2_model):
    path = tmp_path / "m.lmlp"
    sn2_model.save(path)
    return path


def _unlabelled(atoms: Atoms) -> Atoms:
    copy = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions)
    copy.info.update({k: v for k, v in atoms.info.items() if k in ("charge", "multiplicity")})
    return copy


def test_nothing_predicted_exits_non_zero_naming_every_structure(tmp_path, model, sn2_frames):
    bad = tmp_path / "bad.extxyz"
    overlapping = _unlabelled(sn2_frames[0])
    overlapping.positions[1] = overlapping.positions[0] + [0.1, 0.0, 0.0]
    write(bad, [Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.6]]), overlapping], format="extxyz")
    out = tmp_path / "pred.extxyz"
    result = CliRunner().invoke(main, ["predict", "--model", str(model), str(bad), "--out", str(out)])
    assert result.exit_code == 1, result.output
    gold = Atoms("AuH").get_chemical_formula()
    assert re.search(rf"structure 0 \({gold}\) skipped: .*element\(s\) Au not in the model", result.output)
    assert re.search(r"structure 1 \(\w+\) skipped: .*0\.100 Å apart", result.output)
    assert "nothing was predicted: all 2 structures were skipped" in result.output
    assert not out.exists()


def test_an_empty_file_is_an_error(tmp_path, model):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    result = CliRunner().invoke(main, ["predict", "--model", str(model), str(empty), "--out", str(tmp_path / "o.xyz")])
    assert result.exit_code == 1 and f"{empty} holds no structures" in result.output
    assert not (tmp_path / "o.xyz").exists()


def test_some_skipped_the_others_predicted_and_marked(tmp_path, model, sn2_frames):
    data = tmp_path / "mixed.extxyz"
    write(data, [_unlabelled(sn2_frames[0]), Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.6]])], format="extxyz")
    out = tmp_path / "pred.extxyz"
    result = CliRunner().invoke(main, ["predict", "--model", str(model), str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    gold = Atoms("AuH").get_chemical_formula()
    assert f"predicted 1 of 2 structures; skipped 1: structure 1 ({gold})" in result.output
    frames = read(out, ":")
    assert "lmlp_energy" in frames[0].info and "lmlp_energy" not in frames[1].info
    assert "not in the model" in frames[1].info["lmlp_skipped"]
    assert "reference" not in result.output  # no labels in the input: no errors to report


def test_errors_against_the_reference_labels(tmp_path, model, sn2_model):
    frames = read(SN2 / "pool_b.extxyz", ":5")
    data = tmp_path / "labelled.extxyz"
    write(data, frames, format="extxyz")
    result = CliRunner().invoke(main, ["predict", "--model", str(model), str(data)])
    assert result.exit_code == 0, result.output
    energy_errors, force_errors = [], []
    for atoms in frames:
        prediction = sn2_model.evaluate(atoms)
        energy_errors.append((prediction.energy[0] - atoms.get_potential_energy()) / len(atoms))
        force_errors.append((prediction.forces - atoms.get_forces()).ravel())
    energy_rmse = 1000 * np.sqrt(np.mean(np.square(energy_errors)))
    forces_rmse = 1000 * np.sqrt(np.mean(np.square(np.concatenate(force_errors))))
    line = next(line for line in result.output.splitlines() if line.startswith("against the reference labels"))
    assert f"5 structures: energy RMSE {energy_rmse:.2f} meV/atom" in line
    assert f"force RMSE {forces_rmse:.1f} meV/Å" in line
    # per structure: the error of the energy per atom, in meV/atom, in its own column
    first = next(line for line in result.output.splitlines() if line.split()[:1] == ["0"])
    assert f"{1000 * energy_errors[0]:.2f}" in first.split()
