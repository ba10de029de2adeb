"""D3 dispersion on PySCF labels: the dftd3 package's energy and forces, added in eV units."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read

from aiida_lmlp.labelling.pyscf_single_points import ParameterError, PyscfParameters, single_point

from ..conftest import SN2

HF = {"xc": "HF", "basis": "sto-3g", "density_fit": False, "threads": 1}


def test_d3_adds_the_dftd3_energy_and_forces():
    """The difference with and without D3 is what dftd3's own ASE calculator gives, two-body only."""
    from dftd3.ase import DFTD3

    atoms = read(SN2 / "pool_a.extxyz", 0)
    atoms.calc = None
    plain = single_point(atoms, PyscfParameters(**HF))
    for damping in ("d3bj", "d3zero"):
        corrected = single_point(atoms, PyscfParameters(**HF, dispersion=damping))
        reference = atoms.copy()
        reference.calc = DFTD3(damping=damping, params_tweaks={"method": "hf", "atm": False})
        assert corrected.energy - plain.energy == pytest.approx(reference.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(corrected.forces - plain.forces, reference.get_forces(), atol=1e-8)
        assert abs(reference.get_potential_energy()) > 1e-3  # a correction that matters (eV)


def test_the_method_label_and_protocol_name_the_dispersion():
    parameters = PyscfParameters(xc="PBE", basis="def2-TZVP", dispersion="d3bj")
    assert parameters.method_label().startswith("PBE-D3(BJ)/def2-TZVP RI-J")
    assert parameters.protocol().dispersion == "d3bj"
    assert parameters.protocol() != PyscfParameters(xc="PBE", basis="def2-TZVP").protocol()


def test_a_functional_without_d3_parameters_is_refused():
    with pytest.raises(ParameterError, match="'dispersion'.*M06"):
        PyscfParameters(xc="M06", dispersion="d3bj")
    with pytest.raises(ParameterError, match="'dispersion'"):
        PyscfParameters(dispersion="d4")
