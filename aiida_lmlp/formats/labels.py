"""Reference labels of a conformation and its content-hash id (NumPy and ASE only, no torch).

Shared by the engine (the trainer's data stream) and the provenance layer (``lmlp.dataset``),
so both compute the same id for the same labelled conformation.
"""

from __future__ import annotations

import hashlib

import numpy as np
from ase import Atoms

__all__ = ["conformation_id", "reference_label"]


def reference_label(atoms: Atoms, key: str):
    """``atoms``' reference ``energy`` (eV) or ``forces`` (eV/Å), or None.

    Read from ``atoms.info['energy']`` / ``atoms.arrays['forces']`` or from a single-point
    calculator (where ASE's extxyz reader puts them).
    """
    value = atoms.info.get("energy") if key == "energy" else atoms.arrays.get("forces")
    if value is None and atoms.calc is not None:
        value = getattr(atoms.calc, "results", {}).get(key)
    return value


def conformation_id(atoms: Atoms) -> str:
    """Content hash of a labelled conformation: elements, positions, cell, pbc, energy and forces.

    32 hexadecimal characters (128 bits of SHA-256); a missing energy hashes as NaN.
    """
    digest = hashlib.sha256()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.bool_).tobytes())
    energy, forces = reference_label(atoms, "energy"), reference_label(atoms, "forces")
    digest.update(np.float64(energy if energy is not None else np.nan).tobytes())
    if forces is not None:
        digest.update(np.ascontiguousarray(forces, dtype=np.float64).tobytes())
    return digest.hexdigest()[:32]
