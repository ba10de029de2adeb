"""Pack labelled conformations into flat NumPy arrays and back (no aiida, no torch).

The compact format of an ``lmlp.dataset`` node: one ``.npz`` archive, read with
``allow_pickle=False`` (nothing is ever unpickled), holding

===================== ============ ==============================================================
array                 shape        meaning
===================== ============ ==============================================================
``counts``            (S,)         atoms per conformation
``numbers``           (A,)         atomic numbers, all conformations concatenated
``positions``         (A, 3)       Å
``cells``             (S, 3, 3)    Å (zeros for a molecule)
``pbc``               (S, 3)       periodic directions
``charge``            (S,)         total charge (e)
``multiplicity``      (S,)         spin multiplicity 2S+1
``energy``            (S,)         reference total energy, eV (NaN: unlabelled)
``forces``            (A, 3)       reference forces, eV/Å (NaN: unlabelled)
``stress``            (S, 3, 3)    optional, eV/Å³ (NaN where absent)
``ids``               (S,)         content-hash id of each conformation (32 hex characters)
``predicted_*``,      (S,)/(A, 3)  optional predictions of an lMLP ensemble: ``predicted_energy``,
``*_uncertainty``                  ``predicted_forces``, ``energy_uncertainty``, ``forces_uncertainty``
``fingerprint``       (S, F)       optional descriptor fingerprint of each conformation (``lmlp explore``)
``info.<key>``        (S,)         optional scalar metadata present on every conformation
===================== ============ ==============================================================

Units are eV, Å and eV/Å throughout.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_lmlp.formats.labels import conformation_id, reference_label

__all__ = [
    "ARCHIVE_SUFFIX",
    "FINGERPRINT_KEY",
    "PER_ATOM_ARRAYS",
    "PREDICTION_KEYS",
    "ConformationArrays",
    "DatasetError",
    "read_archive",
    "read_frames",
    "write_frames",
]

#: File suffix of a conformation archive; any other file is read and written as extended XYZ.
ARCHIVE_SUFFIX = ".npz"

# extxyz keys written by ``lmlp explore`` and the arrays they become
PREDICTION_KEYS = {
    "lmlp_energy": "predicted_energy",
    "lmlp_energy_uncertainty": "energy_uncertainty",
    "lmlp_forces": "predicted_forces",
    "lmlp_forces_uncertainty": "forces_uncertainty",
}
_PER_ATOM_PREDICTIONS = {"predicted_forces", "forces_uncertainty"}
PER_ATOM_ARRAYS = {"numbers", "positions", "forces", *_PER_ATOM_PREDICTIONS}
# info keys with a meaning of their own, not copied as ``info.<key>``
FINGERPRINT_KEY = "lmlp_fingerprint"  # info key of the (F,) descriptor fingerprint written by ``lmlp explore``
# conformation_id: to_atoms writes it, the ids array holds it (recomputed from the content on packing)
_RESERVED_INFO = {
    "energy",
    "free_energy",
    "stress",
    "charge",
    "multiplicity",
    "conformation_id",
    FINGERPRINT_KEY,
    *PREDICTION_KEYS,
}


class DatasetError(ValueError):
    """A dataset cannot be built or used; the message names the conformation and the problem."""


def _scalar(value):
    """``value`` as a plain scalar if it is one (int, float, bool, str), else None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    return None


@dataclass
class ConformationArrays:
    """Conformations as flat arrays (see the module docstring for the layout)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_atoms(cls, frames: Sequence[Atoms], *, source: str = "structures") -> ConformationArrays:
        """Pack ASE ``frames``; labels come from ``info``/``arrays`` or a single-point calculator.

        NaN or infinite energies, forces or stresses are refused (a :class:`DatasetError` that
        names the conformation); a conformation without labels is stored as unlabelled.
        """
        frames = list(frames)
        counts = np.array([len(a) for a in frames], dtype=np.int64)
        if (counts == 0).any():
            index = int(np.argmin(counts))
            raise DatasetError(f"{source}: conformation {index} has no atoms")
        n = len(frames)
        out = {
            "counts": counts,
            "numbers": np.concatenate([a.numbers for a in frames]).astype(np.int64) if n else np.zeros(0, np.int64),
            "positions": np.concatenate([a.positions for a in frames]).astype(np.float64) if n else np.zeros((0, 3)),
            "cells": np.array([a.cell.array for a in frames], dtype=np.float64).reshape(n, 3, 3),
            "pbc": np.array([a.pbc for a in frames], dtype=bool).reshape(n, 3),
            "charge": np.array([int(a.info.get("charge", 0)) for a in frames], dtype=np.int64),
            "multiplicity": np.array([int(a.info.get("multiplicity", 1)) for a in frames], dtype=np.int64),
        }
        energy = np.full(n, np.nan)
        forces = np.full((int(counts.sum()), 3), np.nan)
        stress = np.full((n, 3, 3), np.nan)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        ids = []
        for i, atoms in enumerate(frames):
            where = f"{source}: conformation {i} ({atoms.get_chemical_formula()})"
            e, f = reference_label(atoms, "energy"), reference_label(atoms, "forces")
            if e is not None:
                if not np.isfinite(e):
                    raise DatasetError(f"{where} has a non-finite energy {e}")
                energy[i] = e
            if f is not None:
                f = np.asarray(f, dtype=np.float64)
                if f.shape != (len(atoms), 3):
                    raise DatasetError(f"{where} has forces of shape {f.shape}, expected ({len(atoms)}, 3)")
                if not np.isfinite(f).all():
                    raise DatasetError(f"{where} has NaN or infinite forces")
                forces[offsets[i] : offsets[i + 1]] = f
            s = atoms.info.get("stress")
            if s is None and atoms.calc is not None:
                s = getattr(atoms.calc, "results", {}).get("stress")
            if s is not None:
                s = np.asarray(s, dtype=np.float64)
                if s.shape == (6,):
                    from ase.stress import voigt_6_to_full_3x3_stress

                    s = voigt_6_to_full_3x3_stress(s)
                if not np.isfinite(s).all():
                    raise DatasetError(f"{where} has a NaN or infinite stress")
                stress[i] = s
            ids.append(conformation_id(atoms))
        out["energy"], out["forces"], out["ids"] = energy, forces, np.array(ids, dtype="<U32")
        if n and np.isfinite(stress).any():
            out["stress"] = stress
        for key, name in PREDICTION_KEYS.items():
            per_atom = name in _PER_ATOM_PREDICTIONS
            values = [a.arrays.get(key) if per_atom else a.info.get(key) for a in frames]
            if n and all(v is not None for v in values):
                out[name] = np.concatenate(values).astype(np.float64) if per_atom else np.array(values, np.float64)
        fingerprints = [a.info.get(FINGERPRINT_KEY) for a in frames]
        if n and all(f is not None for f in fingerprints):
            shapes = {np.shape(f) for f in fingerprints}
            if len(shapes) != 1 or len(next(iter(shapes))) != 1:
                raise DatasetError(f"{source}: {FINGERPRINT_KEY} must be a vector of one length on every conformation")
            out["fingerprint"] = np.array(fingerprints, dtype=np.float64)
        out.update(cls._info_columns(frames))
        return cls(out)

    @staticmethod
    def _info_columns(frames: Sequence[Atoms]) -> dict[str, np.ndarray]:
        """Scalar ``info`` entries present, with one type, on every frame."""
        if not frames:
            return {}
        columns = {}
        for key in frames[0].info:
            if key in _RESERVED_INFO or "." in key:
                continue
            values = [_scalar(a.info.get(key)) for a in frames]
            if any(v is None for v in values) or len({type(v) for v in values}) != 1:
                continue
            columns[f"info.{key}"] = np.array(values)
        return columns

    @classmethod
    def concatenate(cls, parts: Sequence[ConformationArrays]) -> ConformationArrays:
        """All conformations of ``parts`` in order; optional arrays kept only where all parts have them."""
        parts = [p for p in parts if p.count]
        if not parts:
            return cls.from_atoms([])
        common = set.intersection(*(set(p.arrays) for p in parts))
        return cls({key: np.concatenate([p.arrays[key] for p in parts]) for key in sorted(common)})

    def subset(self, indices: Sequence[int]) -> ConformationArrays:
        """The conformations at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        atom_index = np.concatenate([np.arange(*self.atom_range(i)) for i in indices]) if len(indices) else []
        atom_index = np.asarray(atom_index, dtype=np.int64)
        out = {}
        for key, value in self.arrays.items():
            out[key] = value[atom_index] if key in PER_ATOM_ARRAYS else value[indices]
        return ConformationArrays(out)

    # -- serialisation ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The ``.npz`` archive (uncompressed: positions and forces do not compress well)."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "dataset") -> ConformationArrays:
        """Read an archive written by :meth:`to_bytes`; never unpickles."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # a truncated file: BadZipFile
            raise DatasetError(f"{source}: unreadable conformation archive: {error}") from None
        missing = {"counts", "numbers", "positions", "cells", "pbc", "energy", "forces", "ids"} - set(arrays)
        if missing:
            raise DatasetError(f"{source}: the conformation archive lacks {', '.join(sorted(missing))}")
        return cls(arrays)

    # -- access -------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of conformations."""
        return int(len(self.arrays["counts"]))

    @property
    def n_atoms(self) -> int:
        """Number of atoms in all conformations together."""
        return int(self.arrays["counts"].sum())

    def atom_range(self, index: int) -> tuple[int, int]:
        """First and one-past-last atom of conformation ``index`` in the per-atom arrays."""
        counts = self.arrays["counts"]
        start = int(counts[:index].sum())
        return start, start + int(counts[index])

    @property
    def labelled(self) -> np.ndarray:
        """(S,) True where a conformation has a reference energy and forces."""
        counts = self.arrays["counts"]
        forces_ok = np.isfinite(self.arrays["forces"]).all(axis=1)
        per_structure = (
            np.add.reduceat(forces_ok.astype(np.int64), np.r_[0, np.cumsum(counts)[:-1]])
            if len(counts)
            else np.zeros(0, np.int64)
        )
        return np.isfinite(self.arrays["energy"]) & (per_structure == counts)

    def elements(self) -> list[str]:
        """Chemical symbols present, sorted."""
        from ase.data import chemical_symbols

        return sorted({chemical_symbols[z] for z in np.unique(self.arrays["numbers"])})

    def to_atoms(self) -> list[Atoms]:
        """ASE Atoms with labels in a single-point calculator (energy, forces, stress) and ``info``."""
        a = self.arrays
        frames = []
        info_keys = [k for k in a if k.startswith("info.")]
        for i in range(self.count):
            start, end = self.atom_range(i)
            atoms = Atoms(numbers=a["numbers"][start:end], positions=a["positions"][start:end], cell=a["cells"][i])
            atoms.pbc = a["pbc"][i]
            atoms.info["charge"] = int(a["charge"][i]) if "charge" in a else 0
            atoms.info["multiplicity"] = int(a["multiplicity"][i]) if "multiplicity" in a else 1
            atoms.info["conformation_id"] = str(a["ids"][i])
            for key in info_keys:
                atoms.info[key[5:]] = a[key][i].item()
            if "fingerprint" in a:
                atoms.info[FINGERPRINT_KEY] = a["fingerprint"][i].copy()
            for key, name in PREDICTION_KEYS.items():
                if name in a:
                    if name in _PER_ATOM_PREDICTIONS:
                        atoms.arrays[key] = a[name][start:end].copy()
                    else:
                        atoms.info[key] = float(a[name][i])
            results = {}
            if np.isfinite(a["energy"][i]):
                results["energy"] = float(a["energy"][i])
            if np.isfinite(a["forces"][start:end]).all():
                results["forces"] = a["forces"][start:end].copy()
            if "stress" in a and np.isfinite(a["stress"][i]).all():
                from ase.stress import full_3x3_to_voigt_6_stress

                results["stress"] = full_3x3_to_voigt_6_stress(a["stress"][i])
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            frames.append(atoms)
        return frames


def read_archive(path: str | os.PathLike, *, source: str | None = None) -> ConformationArrays:
    """A conformation archive written by another process, checked as :meth:`ConformationArrays.from_atoms` checks.

    The conformations are unpacked and packed again, so labels are refused where NaN or
    infinite and every id is recomputed from the content rather than taken from the file.
    Never unpickles; uses no ``ase.io`` (the AiiDA daemon reads job outputs with it).
    """
    path = Path(path)
    source = source or path.name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{source}: cannot read the conformation archive: {error}") from None
    conformations = ConformationArrays.from_bytes(data, source=source)
    _refuse_infinite_labels(conformations, source)  # to_atoms would read an infinite label as no label
    return ConformationArrays.from_atoms(conformations.to_atoms(), source=source)


def _refuse_infinite_labels(conformations: ConformationArrays, source: str) -> None:
    a = conformations.arrays
    starts = np.cumsum(a["counts"]) - a["counts"]
    bad = np.isinf(a["energy"])
    atom_bad = np.isinf(a["forces"]).any(axis=1).astype(np.int64)
    if atom_bad.size:
        bad |= np.add.reduceat(atom_bad, starts) > 0
    if "stress" in a:
        bad |= np.isinf(a["stress"]).reshape(len(bad), -1).any(axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise DatasetError(f"{source}: conformation {index} has an infinite energy, force or stress")


def read_frames(path: str | os.PathLike) -> list[Atoms]:
    """The conformations of ``path`` as ASE Atoms: a conformation archive (``.npz``) or any file ASE reads.

    ``.extxyz`` and ``.xyz`` are read as extended XYZ; other suffixes as ASE guesses. Raises
    :class:`DatasetError` naming the file for an unreadable one.
    """
    path = Path(path)
    if path.suffix == ARCHIVE_SUFFIX:
        return read_archive(path).to_atoms()
    from ase.io import read

    try:
        return read(path, ":", format="extxyz" if path.suffix in (".extxyz", ".xyz") else None)
    except Exception as error:  # ASE raises many types for unreadable files
        raise DatasetError(f"cannot read structures from {path}: {error}") from None


def write_frames(path: str | os.PathLike, frames: Sequence[Atoms]) -> None:
    """Write ``frames`` as a conformation archive (``.npz``) or, for any other suffix, as extended XYZ.

    The archive is written to a temporary file and renamed, so a reader never sees half of it.
    """
    path = Path(path)
    if path.suffix != ARCHIVE_SUFFIX:
        from ase.io import write

        write(path, list(frames), format="extxyz")
        return
    data = ConformationArrays.from_atoms(list(frames), source=path.name).to_bytes()
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
