"""Shared fixtures: the SN2 reference data shipped in workflows/data/sn2 and small models."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# no test may touch a user's AiiDA configuration
os.environ.setdefault("AIIDA_PATH", tempfile.mkdtemp(prefix="aiida-lmlp-tests-"))

# aiida-core's own fixtures: a temporary SQLite profile (no broker) for the whole session,
# aiida_localhost (core.local + core.direct), aiida_code_installed, daemon clients
pytest_plugins = ["aiida.tools.pytest_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
SN2 = ROOT / "workflows" / "data" / "sn2"  # in the repository: a clone needs no file outside it
SN2_ELEMENTS = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]


@pytest.fixture(scope="session")
def sn2_frames():
    """The first 60 conformations of pool_a (ASE Atoms with DFT energies and forces)."""
    from ase.io import read

    return read(SN2 / "pool_a.extxyz", ":60")


@pytest.fixture(scope="session")
def free_atoms():
    """Free-atom reference energies (eV) of the SN2 data."""
    return json.loads((SN2 / "free_atoms.json").read_text())


@pytest.fixture(scope="session")
def sn2_model(sn2_frames, free_atoms):
    """A 4-member float64 ensemble with small networks, standardised on the SN2 frames."""
    from aiida_lmlp.potential import Ensemble

    model = Ensemble.new(SN2_ELEMENTS, members=4, hidden=(16, 12), reference_energies=free_atoms, seed=3)
    model.initialize_standardization(sn2_frames[:30])
    return model
