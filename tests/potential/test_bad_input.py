"""Bad structures are refused with an error that names the structure and the problem."""

import numpy as np
import pytest
from ase import Atoms

from aiida_lmlp.potential import EeACSF, Ensemble, LmlpCalculator, StructureError


@pytest.fixture(scope="module")
def model():
    return Ensemble.new(["H", "C", "O"], EeACSF.from_paper(["H", "C", "O"], cutoff=5.0), members=2, hidden=(4,))


def _methanol(name="methanol"):
    atoms = Atoms(
        "CH3OH",
        positions=[
            [0, 0, 0],
            [1.09, 0, 0],
            [-0.36, 1.03, 0],
            [-0.36, -0.51, 0.89],
            [-0.47, -0.67, -1.16],
            [-1.4, -0.6, -1.2],
        ],
    )
    atoms.info["name"] = name
    return atoms


def test_unknown_element(model):
    atoms = _methanol()
    atoms.symbols[1] = "Cl"
    with pytest.raises(StructureError, match=r"structure 'methanol': element\(s\) Cl not in the model"):
        model.evaluate(atoms)


def test_atoms_too_close(model):
    atoms = _methanol()
    atoms.positions[2] = atoms.positions[1] + [0.2, 0, 0]
    with pytest.raises(StructureError, match=r"'methanol'.*atoms 1 \(H\) and 2 \(H\) are 0.200 Å apart"):
        model.evaluate(atoms)
    model.evaluate(atoms, min_distance=0.1)  # the threshold is configurable


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_infinite_coordinates(model, value):
    atoms = _methanol()
    atoms.positions[3, 1] = value
    with pytest.raises(StructureError, match="atom 3 has a NaN or infinite coordinate"):
        model.evaluate(atoms)


def test_cell_too_small_for_the_cutoff(model):
    atoms = Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]], cell=[4.0, 6.0, 6.0], pbc=True)
    atoms.info["name"] = "co-crystal"
    with pytest.raises(StructureError, match=r"'co-crystal'.*4.000 Å wide along cell vector 0.*5 Å cutoff"):
        model.evaluate(atoms)
    with pytest.raises(StructureError, match="zero volume"):
        model.evaluate(Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]], cell=[6.0, 6.0, 0.0], pbc=True))


def test_unnamed_structures_in_a_batch_are_named_by_position_and_formula(model):
    good, bad = _methanol(), _methanol()
    del good.info["name"], bad.info["name"]
    bad.positions[0, 0] = np.nan
    with pytest.raises(StructureError, match=r"structure #1 \(CH4O\)"):
        model.evaluate([good, bad])


def test_calculator_raises_and_keeps_no_stale_results(model):
    atoms = _methanol()
    atoms.calc = LmlpCalculator(model)
    energy = atoms.get_potential_energy()
    atoms.positions[2] = atoms.positions[1] + [0.1, 0, 0]
    with pytest.raises(StructureError):
        atoms.get_potential_energy()
    atoms.positions[2] = _methanol().positions[2]
    assert atoms.get_potential_energy() == pytest.approx(energy)
