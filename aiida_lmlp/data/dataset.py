"""``lmlp.dataset``: an immutable set of labelled conformations with provenance.

The conformations live in the node repository as one ``.npz`` archive
(:mod:`aiida_lmlp.formats.conformation_arrays`); queryable facts live in attributes: the
count, the elements, the label method, the energy and force ranges. Every conformation has
a content-hash id, the same id the trainer uses for its selection state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase import Atoms

from aiida_lmlp.formats.conformation_arrays import ConformationArrays, DatasetError, read_archive

__all__ = [
    "ALLOW_MIXED_PROTOCOLS",
    "DatasetError",
    "LmlpDatasetData",
    "merge_datasets",
    "protocol_conflict",
    "select_conformations",
]

ARCHIVE = "conformations.npz"


class LmlpDatasetData(orm.Data):
    """Labelled (or, for exploration output, predicted) conformations; eV, Å, eV/Å."""

    def __init__(
        self,
        conformations: ConformationArrays | None = None,
        *,
        label_method: str = "",
        label_protocol: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        conformations = conformations if conformations is not None else ConformationArrays.from_atoms([])
        self._cache = conformations
        self.base.repository.put_object_from_bytes(conformations.to_bytes(), ARCHIVE)
        self._set_attributes(conformations, label_method)
        if label_protocol is not None:
            from aiida_lmlp.labelling.protocol import LabelProtocol, ProtocolError

            try:
                protocol = LabelProtocol.from_dict(label_protocol)
            except ProtocolError as error:
                raise DatasetError(f"label_protocol: {error}") from None
            self.base.attributes.set("label_protocol", protocol.to_dict())

    def _set_attributes(self, c: ConformationArrays, label_method: str) -> None:
        a = c.arrays
        labelled = c.labelled
        energy = a["energy"][labelled]
        forces = a["forces"][np.isfinite(a["forces"]).all(axis=1)]
        per_atom = energy / a["counts"][labelled] if labelled.any() else energy
        attributes = {
            "count": c.count,
            "n_atoms": c.n_atoms,
            "elements": c.elements(),
            "label_method": label_method,
            "labelled_count": int(labelled.sum()),
            "has_stress": "stress" in a,
            "has_predictions": "predicted_energy" in a,
            "energy_min": float(energy.min()) if energy.size else None,
            "energy_max": float(energy.max()) if energy.size else None,
            "energy_per_atom_min": float(per_atom.min()) if per_atom.size else None,
            "energy_per_atom_max": float(per_atom.max()) if per_atom.size else None,
            "force_max_abs": float(np.abs(forces).max()) if forces.size else None,
            "charges": sorted({int(q) for q in a["charge"]}),
        }
        if "energy_uncertainty" in a and c.count:
            attributes["energy_uncertainty_max"] = float(a["energy_uncertainty"].max())
        for key, value in attributes.items():
            self.base.attributes.set(key, value)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_atoms(cls, frames: Iterable[Atoms], *, label_method: str = "", source: str = "structures", **kwargs):
        """A dataset of ASE ``frames`` (labels from ``info``/``arrays`` or a single-point calculator).

        Refuses NaN or infinite labels with a :class:`DatasetError` that names the conformation.
        """
        return cls(ConformationArrays.from_atoms(list(frames), source=source), label_method=label_method, **kwargs)

    @classmethod
    def from_extxyz(
        cls, path: str | os.PathLike, *, label_method: str | None = None, source: str | None = None, **kwargs
    ):
        """Read every frame of an extended-XYZ file; ``label_method`` defaults to the frames' ``method``."""
        from ase.io import read

        path = Path(path)
        try:
            frames = read(path, ":", format="extxyz")
        except Exception as error:  # ASE raises many types for unreadable files
            raise DatasetError(f"cannot read {path}: {error}") from None
        if label_method is None:
            methods = sorted({str(a.info["method"]) for a in frames if "method" in a.info})
            label_method = "; ".join(methods)
        return cls.from_atoms(frames, label_method=label_method, source=source or str(path), **kwargs)

    @classmethod
    def from_archive(
        cls, path: str | os.PathLike, *, label_method: str | None = None, source: str | None = None, **kwargs
    ):
        """A conformation archive written by a job (``.npz``), checked by :func:`read_archive`.

        ``label_method`` defaults to the conformations' ``method``, as for :meth:`from_extxyz`.
        Reads no extxyz, so the daemon never imports ``ase.io`` for it.
        """
        conformations = read_archive(path, source=source)
        if label_method is None:
            methods = conformations.arrays.get("info.method")
            label_method = "; ".join(sorted({str(m) for m in methods})) if methods is not None else ""
        return cls(conformations, label_method=label_method, **kwargs)

    @classmethod
    def from_structures(cls, structures: Sequence[orm.StructureData], **kwargs):
        """Unlabelled conformations from AiiDA StructureData nodes."""
        return cls.from_atoms([s.get_ase() for s in structures], **kwargs)

    @classmethod
    def from_trajectory(cls, trajectory: orm.TrajectoryData, **kwargs):
        """Every step of a TrajectoryData; arrays ``energy`` (S,) and ``forces`` (S, N, 3) become labels."""
        names = trajectory.get_arraynames()
        energies = trajectory.get_array("energy") if "energy" in names else None
        forces = trajectory.get_array("forces") if "forces" in names else None
        frames = []
        for step in range(trajectory.numsteps):
            atoms = trajectory.get_step_structure(step).get_ase()
            if energies is not None:
                atoms.info["energy"] = float(energies[step])
            if forces is not None:
                atoms.arrays["forces"] = np.asarray(forces[step], dtype=np.float64)
            frames.append(atoms)
        return cls.from_atoms(frames, source=f"TrajectoryData<{trajectory.pk}>", **kwargs)

    @classmethod
    def from_pymatgen(cls, objects: Sequence, **kwargs):
        """pymatgen Structure or Molecule objects; ``properties['energy']`` and site property ``forces`` are labels."""
        from pymatgen.io.ase import AseAtomsAdaptor

        frames = []
        for obj in objects:
            atoms = AseAtomsAdaptor.get_atoms(obj)
            atoms.calc = None
            properties = getattr(obj, "properties", {}) or {}
            if "energy" in properties:
                atoms.info["energy"] = float(properties["energy"])
            forces = obj.site_properties.get("forces")
            if forces is not None:
                atoms.arrays["forces"] = np.asarray(forces, dtype=np.float64)
            if hasattr(obj, "charge"):
                atoms.info["charge"] = int(round(obj.charge))
            if getattr(obj, "spin_multiplicity", None):
                atoms.info["multiplicity"] = int(obj.spin_multiplicity)
            for key in ("magmoms", "initial_magmoms", "momenta"):
                atoms.arrays.pop(key, None)
            frames.append(atoms)
        return cls.from_atoms(frames, **kwargs)

    # -- access -------------------------------------------------------------------------------------

    @property
    def conformations(self) -> ConformationArrays:
        """The conformations as flat arrays (read from the repository once)."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            data = self.base.repository.get_object_content(ARCHIVE, mode="rb")
            cache = ConformationArrays.from_bytes(data, source=f"lmlp.dataset<{self.pk}>")
            self._cache = cache
        return cache

    def release_arrays(self) -> None:
        """Forget the arrays read from the repository (a stored node reads them again when asked).

        For processes that keep node objects for long: a campaign's daemon worker must not hold
        every dataset it ever passed on.
        """
        if self.is_stored:
            self.__dict__.pop("_cache", None)

    @property
    def count(self) -> int:
        """Number of conformations."""
        return self.base.attributes.get("count")

    def __len__(self) -> int:
        return self.count

    @property
    def elements(self) -> list[str]:
        """Chemical symbols present, sorted."""
        return self.base.attributes.get("elements")

    @property
    def label_method(self) -> str:
        """How the labels were computed (e.g. ``PBE/def2-SVP RI-J (PySCF 2.14.0)``)."""
        return self.base.attributes.get("label_method")

    @property
    def label_protocol(self) -> dict[str, Any] | None:
        """The :class:`~aiida_lmlp.labelling.protocol.LabelProtocol` of the labels as a dict; None when unknown
        (labels given by the user, or merged from datasets of different protocols)."""
        return self.base.attributes.get("label_protocol", None)

    @property
    def ids(self) -> list[str]:
        """Content-hash id of every conformation."""
        return [str(i) for i in self.conformations.arrays["ids"]]

    def get_array(self, name: str) -> np.ndarray:
        """One array of the archive (``energy``, ``forces``, ``positions``, ...); a copy."""
        arrays = self.conformations.arrays
        if name not in arrays:
            raise KeyError(f"lmlp.dataset<{self.pk}> has no array {name!r}; it has {', '.join(sorted(arrays))}")
        return arrays[name].copy()

    def to_atoms(self) -> list[Atoms]:
        """ASE Atoms, labels in a single-point calculator, ``info['conformation_id']`` set."""
        return self.conformations.to_atoms()

    def write_extxyz(self, path: str | os.PathLike) -> Path:
        """Write all conformations to an extended-XYZ file (energies in eV, forces in eV/Å)."""
        from ase.io import write

        path = Path(path)
        write(path, self.to_atoms(), format="extxyz")
        return path

    def to_structures(self) -> list[orm.StructureData]:
        """One (unstored) StructureData per conformation."""
        return [orm.StructureData(ase=atoms) for atoms in self.to_atoms()]

    def to_trajectory(self) -> orm.TrajectoryData:
        """A TrajectoryData of all conformations, with arrays ``energy`` and ``forces``.

        Needs the same species in the same order in every conformation.
        """
        frames = self.to_atoms()
        if not frames:
            raise DatasetError(f"lmlp.dataset<{self.pk}> is empty: no trajectory to make")
        first = frames[0].get_chemical_symbols()
        for i, atoms in enumerate(frames):
            if atoms.get_chemical_symbols() != first:
                raise DatasetError(
                    f"lmlp.dataset<{self.pk}>: conformation {i} ({atoms.get_chemical_formula()}) has other species "
                    f"than conformation 0 ({frames[0].get_chemical_formula()}); a TrajectoryData needs the same"
                )
        trajectory = orm.TrajectoryData([orm.StructureData(ase=atoms) for atoms in frames])
        a = self.conformations.arrays
        trajectory.set_array("energy", a["energy"].copy())
        trajectory.set_array("forces", a["forces"].reshape(len(frames), len(first), 3).copy())
        return trajectory

    def to_pymatgen(self) -> list:
        """pymatgen Molecule (non-periodic) or Structure (periodic) objects with energy and forces."""
        from pymatgen.core import Molecule, Structure

        objects = []
        for atoms in self.to_atoms():
            forces = atoms.calc.results.get("forces") if atoms.calc else None
            energy = atoms.calc.results.get("energy") if atoms.calc else None
            site_properties = {"forces": forces.tolist()} if forces is not None else None
            properties = {"energy": energy} if energy is not None else {}
            if atoms.pbc.any():
                obj = Structure(
                    atoms.cell.array,
                    atoms.get_chemical_symbols(),
                    atoms.positions,
                    coords_are_cartesian=True,
                    site_properties=site_properties,
                    properties=properties,
                )
            else:
                obj = Molecule(
                    atoms.get_chemical_symbols(),
                    atoms.positions,
                    charge=atoms.info.get("charge", 0),
                    spin_multiplicity=atoms.info.get("multiplicity", 1),
                    site_properties=site_properties,
                    properties=properties,
                )
            objects.append(obj)
        return objects

    def subset(self, indices: Sequence[int], **kwargs) -> LmlpDatasetData:
        """A new (unstored) dataset of the conformations at ``indices``."""
        return LmlpDatasetData(
            self.conformations.subset(indices),
            label_method=self.label_method,
            label_protocol=self.label_protocol,
            **kwargs,
        )

    # -- checks -------------------------------------------------------------------------------------

    def training_problems(self) -> list[str]:
        """What makes this dataset unusable for training (empty list: none)."""
        name = f"lmlp.dataset<{self.pk or 'unstored'}>"
        if self.count == 0:
            return [f"{name} is empty"]
        if self.base.attributes.get("labelled_count", None) == self.count:
            # the attribute was computed from the archive when the node was made (nodes are
            # immutable), so the daemon checks a training job's data without reading it
            return []
        labelled = self.conformations.labelled
        if not labelled.all():
            missing = np.flatnonzero(~labelled)
            shown = ", ".join(str(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            return [f"{name}: {len(missing)} of {self.count} conformations have no energy or forces (index {shown})"]
        return []


ALLOW_MIXED_PROTOCOLS = "allow_mixed_protocols"
"""The keyword of :func:`merge_datasets` that lets datasets of different label protocols be merged."""


def protocol_conflict(datasets: Mapping[str, LmlpDatasetData]) -> str | None:
    """Why ``datasets`` (name → dataset) must not be merged: two of them record different label protocols.

    The message names both datasets and both protocols; None when every recorded protocol is the
    same. A dataset without a recorded protocol (labels from elsewhere) conflicts with none.
    """
    from aiida_lmlp.labelling.protocol import LabelProtocol

    first: tuple[str, LmlpDatasetData, LabelProtocol] | None = None
    for name in sorted(datasets):
        node = datasets[name]
        if node.label_protocol is None:
            continue
        protocol = LabelProtocol.from_dict(node.label_protocol)
        if first is None:
            first = (name, node, protocol)
        elif protocol != first[2]:
            return (
                f"label protocols differ: {first[0]} (lmlp.dataset<{first[1].pk}>) was labelled with "
                f"{first[2].describe()}, {name} (lmlp.dataset<{node.pk}>) with {protocol.describe()}; "
                f"pass {ALLOW_MIXED_PROTOCOLS}=True to merge them anyway"
            )
    return None


@calcfunction
def merge_datasets(**datasets: LmlpDatasetData) -> LmlpDatasetData:
    """One dataset of all conformations of ``datasets`` (in keyword order), each id kept once.

    A calcfunction, so every conformation stays traceable to the calculation that labelled it.
    Datasets labelled with different protocols are refused (a :class:`DatasetError` naming both)
    unless ``allow_mixed_protocols=orm.Bool(True)`` is passed; the merged dataset records the
    protocol only when every part has the same one.
    """
    allow = datasets.pop(ALLOW_MIXED_PROTOCOLS, None)
    if not (allow is not None and allow.value):
        conflict = protocol_conflict(datasets)
        if conflict is not None:
            raise DatasetError(conflict)
    parts, methods, protocols = [], [], []
    for key in sorted(datasets):
        node = datasets[key]
        parts.append(node.conformations)
        if node.label_method and node.label_method not in methods:
            methods.append(node.label_method)
        protocols.append(node.label_protocol)
    merged = ConformationArrays.concatenate(parts)
    _, first = np.unique(merged.arrays["ids"], return_index=True)
    merged = merged.subset(np.sort(first))
    common = protocols[0] if protocols and all(p == protocols[0] for p in protocols) else None
    return LmlpDatasetData(merged, label_method="; ".join(methods), label_protocol=common)


@calcfunction
def select_conformations(dataset: LmlpDatasetData, indices: orm.List) -> LmlpDatasetData:
    """The conformations of ``dataset`` at ``indices`` (in that order), as a new dataset with provenance."""
    return LmlpDatasetData(
        dataset.conformations.subset(list(indices.get_list())),
        label_method=dataset.label_method,
        label_protocol=dataset.label_protocol,
    )
