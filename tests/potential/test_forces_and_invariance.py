"""Forces are exact derivatives; energies have the symmetries of physics."""

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from scipy.spatial.transform import Rotation

from aiida_lmlp.potential import EeACSF, Ensemble, LmlpCalculator

from .helpers import random_box


@pytest.fixture(scope="module")
def box_model():
    elements = ["H", "C", "O"]
    model = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=5.0), members=3, hidden=(12, 8), seed=1)
    model.initialize_standardization([random_box("H8C4O4", 7.0, seed=s) for s in range(3)])
    return model


def _relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_forces_are_minus_the_energy_gradient_for_a_molecule(sn2_model, sn2_frames):
    atoms = sn2_frames[5].copy()
    atoms.calc = LmlpCalculator(sn2_model)
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    # central differences with a 4th-order error: compare against a Richardson-extrapolated value
    numeric_fine = calculate_numerical_forces(atoms, eps=5e-5)
    richardson = (4 * numeric_fine - numeric) / 3
    assert _relative_error(atoms.get_forces(), richardson) < 1e-6


def test_forces_and_stress_are_exact_derivatives_in_a_periodic_cell(box_model):
    atoms = random_box("H8C4O4", 7.0, seed=7)
    atoms.calc = LmlpCalculator(box_model)
    coarse = calculate_numerical_forces(atoms, eps=1e-4)
    fine = calculate_numerical_forces(atoms, eps=5e-5)
    assert _relative_error(atoms.get_forces(), (4 * fine - coarse) / 3) < 1e-6
    numeric_stress = calculate_numerical_stress(atoms, eps=1e-5)
    assert _relative_error(atoms.get_stress(), numeric_stress) < 1e-6


def test_every_member_force_is_its_own_gradient(sn2_model, sn2_frames):
    atoms = sn2_frames[2]
    prediction = sn2_model.evaluate(atoms)
    h = 1e-5
    for member in range(sn2_model.members):
        for atom, axis in [(0, 0), (3, 2)]:
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            e_plus = sn2_model.evaluate(plus, forces=False).energy_members[member, 0]
            e_minus = sn2_model.evaluate(minus, forces=False).energy_members[member, 0]
            # total energies ~1.6e4 eV: rounding bounds the difference quotient to ~2e-7 eV/Å absolute
            assert prediction.forces_members[member, atom, axis] == pytest.approx(
                -(e_plus - e_minus) / (2 * h), rel=1e-6, abs=5e-7
            )


def test_energy_is_invariant_under_rotation_translation_and_permutation(sn2_model, sn2_frames):
    atoms = sn2_frames[11]
    reference = sn2_model.evaluate(atoms)
    moved = atoms.copy()
    rotation = Rotation.from_euler("xyz", [0.3, -1.1, 2.0])
    moved.positions = rotation.apply(moved.positions) + np.array([3.0, -7.5, 11.0])
    result = sn2_model.evaluate(moved)
    assert result.energy[0] == pytest.approx(reference.energy[0], abs=1e-9)
    np.testing.assert_allclose(result.forces, rotation.apply(reference.forces), atol=1e-9)
    # permute the three hydrogens
    hydrogens = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "H"]
    order = list(range(len(atoms)))
    order[hydrogens[0]], order[hydrogens[1]], order[hydrogens[2]] = hydrogens[2], hydrogens[0], hydrogens[1]
    permuted = atoms[order]
    result = sn2_model.evaluate(permuted)
    assert result.energy[0] == pytest.approx(reference.energy[0], abs=1e-9)
    np.testing.assert_allclose(result.forces, reference.forces[order], atol=1e-9)


def test_energy_does_not_depend_on_the_periodic_image_chosen(box_model):
    atoms = random_box("H8C4O4", 7.0, seed=3)
    reference = box_model.evaluate(atoms, stress=True)
    shifted = atoms.copy()
    shifted.positions[0] += atoms.cell[0] - 2 * atoms.cell[2]
    shifted.positions[5] -= atoms.cell[1]
    result = box_model.evaluate(shifted, stress=True)
    assert result.energy[0] == pytest.approx(reference.energy[0], abs=1e-9)
    np.testing.assert_allclose(result.forces, reference.forces, atol=1e-9)
    wrapped = atoms.copy()
    wrapped.positions += 100.0
    wrapped.wrap()
    assert box_model.evaluate(wrapped).energy[0] == pytest.approx(reference.energy[0], abs=1e-8)
    # a supercell has twice the energy and the same stress
    double = box_model.evaluate(atoms.repeat((2, 1, 1)), stress=True)
    assert double.energy[0] == pytest.approx(2 * reference.energy[0], abs=1e-8)
    np.testing.assert_allclose(double.stress[0], reference.stress[0], atol=1e-10)


def test_small_cells_with_self_images_agree_with_a_supercell(box_model):
    # a 4.2 Å cell with a 5 Å cutoff: atoms see their own images; allowed on request only
    atoms = random_box("H2CO", 4.2, seed=5, min_distance=1.1, tilt=False)
    small = box_model.evaluate(atoms, allow_self_images=True)
    big = box_model.evaluate(atoms.repeat((2, 2, 2)))
    assert big.energy[0] == pytest.approx(8 * small.energy[0], abs=1e-8)


def test_batched_structures_give_the_same_results_as_one_at_a_time(sn2_model, sn2_frames):
    batch = sn2_frames[:6]
    together = sn2_model.evaluate(batch)
    for index, atoms in enumerate(batch):
        alone = sn2_model.evaluate(atoms)
        assert together.energy[index] == pytest.approx(alone.energy[0], abs=1e-9)
        np.testing.assert_allclose(together.forces[together.atoms_of(index)], alone.forces, atol=1e-10)
        np.testing.assert_allclose(together.energy_uncertainty[index], alone.energy_uncertainty[0], atol=1e-10)


def test_float32_agrees_with_float64(sn2_model, sn2_frames):
    import copy

    import torch

    single = copy.deepcopy(sn2_model).to(torch.float32)
    a, b = sn2_model.evaluate(sn2_frames[0]), single.evaluate(sn2_frames[0])
    assert single.dtype == torch.float32
    # relative to the atomisation-like network part (the reference energies are ~1e4 eV)
    assert abs(a.energy[0] - b.energy[0]) < 1e-3
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-3)


def test_forces_are_exact_derivatives_with_period_6_and_7_elements():
    # Pt (d block, period 6), La and U (f block): periods up to 7 with the f and f̄ terms
    elements = ["H", "C", "Pt", "La", "U"]
    model = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=6.0), members=2, hidden=(10,), seed=4)
    from ase import Atoms

    atoms = Atoms(
        "PtLaUCH2",
        positions=[[0, 0, 0], [2.6, 0.2, 0], [-0.3, 2.7, 0.4], [0.1, -0.2, 2.0], [0.9, -0.4, 2.6], [-0.7, 0.2, 2.7]],
    )
    model.initialize_standardization([atoms])
    atoms.calc = LmlpCalculator(model)
    coarse = calculate_numerical_forces(atoms, eps=1e-4)
    fine = calculate_numerical_forces(atoms, eps=5e-5)
    assert np.isfinite(atoms.get_potential_energy())
    assert _relative_error(atoms.get_forces(), (4 * fine - coarse) / 3) < 1e-6
