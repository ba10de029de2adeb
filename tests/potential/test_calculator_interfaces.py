"""LmlpCalculator as ASE and pymatgen users reach it: the uncertainty properties and pymatgen objects."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Molecule
from pymatgen.io.ase import AseAtomsAdaptor

from aiida_lmlp.potential import EeACSF, Ensemble, LmlpCalculator


def test_uncertainties_are_implemented_properties(sn2_model, sn2_frames):
    atoms = sn2_frames[0].copy()
    calculator = LmlpCalculator(sn2_model)
    assert {"energy_uncertainty", "forces_uncertainty"} <= set(calculator.implemented_properties)
    # ASE's generic interface refuses a property not listed in implemented_properties
    energy_uncertainty = calculator.get_property("energy_uncertainty", atoms)
    forces_uncertainty = calculator.get_property("forces_uncertainty", atoms)
    prediction = sn2_model.evaluate(atoms)
    assert energy_uncertainty == pytest.approx(float(prediction.energy_uncertainty[0]), rel=1e-12)
    np.testing.assert_allclose(forces_uncertainty, prediction.forces_uncertainty, rtol=1e-12)
    assert forces_uncertainty.shape == (len(atoms), 3)


def test_without_member_forces_forces_uncertainty_is_not_offered(sn2_model, sn2_frames):
    calculator = LmlpCalculator(sn2_model, forces_uncertainty=False)
    assert "energy_uncertainty" in calculator.implemented_properties
    assert "forces_uncertainty" not in calculator.implemented_properties
    assert "forces_uncertainty" in LmlpCalculator.implemented_properties  # the class attribute is untouched


def test_a_pymatgen_molecule_gives_what_its_atoms_give(sn2_model, sn2_frames):
    atoms = sn2_frames[1].copy()
    molecule = Molecule(
        atoms.get_chemical_symbols(),
        atoms.positions,
        charge=int(atoms.info["charge"]),
        spin_multiplicity=int(atoms.info["multiplicity"]),
    )
    calculator = LmlpCalculator(sn2_model)
    energy = calculator.get_potential_energy(molecule)
    forces = calculator.get_forces(molecule)
    uncertainty = calculator.get_energy_uncertainty(molecule)
    reference = LmlpCalculator(sn2_model)
    assert energy == pytest.approx(reference.get_potential_energy(atoms), rel=1e-12)
    np.testing.assert_allclose(forces, reference.get_forces(atoms), rtol=1e-10, atol=1e-12)
    assert uncertainty == pytest.approx(reference.get_energy_uncertainty(atoms), rel=1e-12)


def test_a_pymatgen_structure_gives_energy_and_stress():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    model = Ensemble.new(["Cu"], EeACSF.from_paper(["Cu"], cutoff=4.5), members=2, hidden=(8,), seed=0)
    model.initialize_standardization([atoms])
    structure = AseAtomsAdaptor.get_structure(atoms)
    calculator, reference = LmlpCalculator(model), LmlpCalculator(model)
    assert calculator.get_potential_energy(structure) == pytest.approx(reference.get_potential_energy(atoms), rel=1e-12)
    np.testing.assert_allclose(calculator.get_stress(structure), reference.get_stress(atoms), rtol=1e-9, atol=1e-12)


def test_other_objects_are_refused_by_name(sn2_model):
    with pytest.raises(TypeError, match="ase.Atoms or a pymatgen Molecule or Structure, not str"):
        LmlpCalculator(sn2_model).get_potential_energy("CH3Cl")
