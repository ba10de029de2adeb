"""Benchmark structures: the SN2 reference conformations and condensed-phase periodic boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

SN2 = Path(__file__).resolve().parents[1] / "workflows" / "data" / "sn2"
SN2_ELEMENTS = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]


def sn2_conformations() -> list[Atoms]:
    """All 899 SN2 conformations (6–7 atoms each, gas phase)."""
    return read(SN2 / "pool_a.extxyz", ":") + read(SN2 / "pool_b.extxyz", ":")


def water_box(n_molecules: int, seed: int = 0, density: float = 0.1) -> Atoms:
    """Liquid-water-like box: randomly oriented H2O on a jittered cubic lattice.

    ``density`` in atoms/Å³ (liquid water: 0.100). O–H 0.96 Å, H–O–H 104.5°.
    """
    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    width = (3 * n_molecules / density) ** (1 / 3)
    spacing = width / per_side
    sites = np.array([[i, j, k] for i in range(per_side) for j in range(per_side) for k in range(per_side)], float)
    sites = sites[rng.permutation(len(sites))[:n_molecules]] * spacing
    angle = np.radians(104.5)
    local = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(angle), 0.96 * np.sin(angle), 0]])
    positions = []
    for site in sites:
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        positions.extend(site + 0.15 * spacing * (rng.random(3) - 0.5) + local @ rot.T)
    return Atoms("OH2" * n_molecules, positions=positions, cell=[width] * 3, pbc=True)


def mixed_box(n_atoms: int, elements: list[str], seed: int = 0, density: float = 0.1) -> Atoms:
    """A box of ``n_atoms`` on a jittered lattice with elements drawn uniformly from ``elements``."""
    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(n_atoms ** (1 / 3)))
    width = (n_atoms / density) ** (1 / 3)
    spacing = width / per_side
    sites = np.array([[i, j, k] for i in range(per_side) for j in range(per_side) for k in range(per_side)], float)
    sites = sites[rng.permutation(len(sites))[:n_atoms]] * spacing
    positions = sites + 0.3 * spacing * (rng.random(sites.shape) - 0.5)
    symbols = [elements[k] for k in rng.integers(0, len(elements), n_atoms)]
    return Atoms(symbols, positions=positions, cell=[width] * 3, pbc=True)
