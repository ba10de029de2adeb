"""GFN2-xTB single points through tblite: units checked against finite differences, failures reported, batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read

from aiida_lmlp.labelling.pyscf_single_points import ParameterError
from aiida_lmlp.labelling.xtb_single_points import XtbParameters, label_xtb_batch, single_point


def _displaced(atoms: Atoms, atom: int, axis: int, step: float) -> Atoms:
    moved = atoms.copy()
    moved.positions[atom, axis] += step
    return moved


def test_forces_are_the_negative_energy_gradient_in_ev_per_angstrom():
    water = molecule("H2O")
    water.positions[1] += [0.05, 0.1, -0.05]
    result = single_point(water)
    assert result.converged and result.stress is None
    h = 1e-4
    for atom, axis in [(0, 2), (1, 0), (2, 1)]:
        plus = single_point(_displaced(water, atom, axis, h)).energy
        minus = single_point(_displaced(water, atom, axis, -h)).energy
        assert result.forces[atom, axis] == pytest.approx(-(plus - minus) / (2 * h), rel=1e-4, abs=1e-5)


def test_the_stress_of_a_cell_is_the_strain_derivative_per_volume():
    silicon = bulk("Si", "diamond", 5.43, cubic=True)
    silicon.rattle(0.05, seed=1)
    result = single_point(silicon)
    eps = 1e-4
    for i, j in [(0, 0), (1, 2)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * eps / (1 if i == j else 2)
            strain[j, i] += 0 if i == j else sign * eps / 2
            strained = silicon.copy()
            strained.set_cell(silicon.cell.array @ strain, scale_atoms=True)
            energies.append(single_point(strained).energy)
        derivative = (energies[0] - energies[1]) / (2 * eps) / silicon.get_volume()
        assert result.stress[i, j] == pytest.approx(derivative, rel=1e-3, abs=1e-6)  # eV/Å³, ASE's sign


def test_charge_and_multiplicity_and_an_impossible_spin():
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    radical.info["multiplicity"] = 2
    doublet = single_point(radical)
    assert doublet.converged and doublet.multiplicity == 2
    radical.info["multiplicity"] = 1
    with pytest.raises(Exception, match="not compatible"):
        single_point(radical)  # 9 electrons cannot be a singlet


def test_scc_non_convergence_is_reported_not_raised():
    result = single_point(molecule("H2O"), XtbParameters(max_iterations=2))
    assert not result.converged and result.forces is None


def test_a_batch_labels_molecules_and_cells_and_keeps_going(tmp_path):
    water = molecule("H2O")
    silicon = bulk("Si", "diamond", 5.43, cubic=True)
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])  # a singlet: refused
    out, status = tmp_path / "labelled.extxyz", tmp_path / "status.jsonl"
    summary = label_xtb_batch([water, radical, silicon], XtbParameters(), out, status)
    assert (summary.converged, summary.errors) == (2, 1)
    frames = read(out, ":")
    assert [len(a) for a in frames] == [3, 8]
    assert frames[0].info["method"].startswith("GFN2-xTB 300 K (tblite ")
    assert frames[1].get_stress(voigt=False).shape == (3, 3) and "stress" not in frames[0].calc.results
    lines = [json.loads(line) for line in status.read_text().splitlines()]
    assert lines[0]["protocol"]["labeller"] == "xtb" and "tblite" in lines[0]["versions"]
    assert lines[2]["status"] == "error" and "not compatible" in lines[2]["message"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"method": "GFN3-xTB"}, "method"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"mixer_damping": 0}, "mixer_damping"),
    ],
)
def test_bad_parameters_name_the_key(data, key):
    with pytest.raises(ParameterError, match=f"'{key}'"):
        XtbParameters.from_dict(data)
