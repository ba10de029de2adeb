"""ASE calculator of an lMLP ensemble: energy, forces, stress and their uncertainties."""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..descriptors.neighbors import DEFAULT_MIN_DISTANCE
from ..model.ensemble import Ensemble, EnsemblePrediction

__all__ = ["LmlpCalculator", "as_atoms"]


class LmlpCalculator(Calculator):
    """ASE calculator for an :class:`Ensemble` (or the path of a ``.lmlp`` model file).

    Standard results: ``energy``, ``free_energy``, ``energies`` (per atom), ``forces`` and,
    for fully periodic cells, ``stress`` (Voigt, eV/Å³). Own keys, never standard ones:
    ``energy_uncertainty`` (ΔE, eV, Eq. 23), ``forces_uncertainty`` (ΔF per component,
    eV/Å), ``energy_members`` (M,) and ``forces_members`` (M, N, 3).

    ``forces_uncertainty=False`` skips the per-member forces (one gradient pass instead of
    one per member) when only ΔE is needed; ``forces_uncertainty`` is then not offered.

    Structures may be ASE ``Atoms`` or pymatgen ``Molecule`` / ``Structure`` objects (converted
    with pymatgen's ``AseAtomsAdaptor``).
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "energy_uncertainty",
        "forces_uncertainty",
    ]

    def __init__(
        self,
        model: Ensemble | str | os.PathLike,
        *,
        forces_uncertainty: bool = True,
        min_distance: float = DEFAULT_MIN_DISTANCE,
        allow_self_images: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model = model if isinstance(model, Ensemble) else Ensemble.load(model)
        self.forces_uncertainty = forces_uncertainty
        self.min_distance = min_distance
        self.allow_self_images = allow_self_images
        if not forces_uncertainty:
            self.implemented_properties = [p for p in type(self).implemented_properties if p != "forces_uncertainty"]

    def get_property(self, name: str, atoms=None, allow_calculation: bool = True):
        """ASE's ``get_property``; ``atoms`` may also be a pymatgen ``Molecule`` or ``Structure``."""
        return super().get_property(name, as_atoms(atoms), allow_calculation)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """What changed since the last calculation: ASE's ``compare_atoms``, in fewer NumPy calls.

        ASE compares every array with ``numpy.allclose`` (about 0.3 ms per call, several calls
        per MD step: a third of a batched exploration's time). This gives the same answer
        (absolute tolerance ``tol``, an array present on one side only counts as changed).
        """
        if self.atoms is None:
            return super().check_state(atoms, tol)
        old = self.atoms
        changes = [] if _close(old.cell.array, atoms.cell.array, tol) else ["cell"]
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        for key in ("positions", "numbers", "initial_magmoms", "initial_charges"):
            if (key in old.arrays) != (key in atoms.arrays):
                changes.append(key)
            elif key in old.arrays and not _close(old.arrays[key], atoms.arrays[key], tol):
                changes.append(key)
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Evaluate the ensemble once and fill :attr:`results` for all properties."""
        super().calculate(as_atoms(atoms), properties, system_changes)
        prediction = self.model.evaluate(self.atoms, **self.evaluate_options(self.atoms))
        self.set_results(prediction, 0, properties)

    def evaluate_options(self, atoms: Atoms) -> dict:
        """The keyword arguments of :meth:`Ensemble.evaluate` this calculator uses for ``atoms``."""
        return {
            "forces": True,
            "member_forces": self.forces_uncertainty,
            "stress": bool(atoms.pbc.all()),
            "min_distance": self.min_distance,
            "allow_self_images": self.allow_self_images,
        }

    def set_results(self, prediction: EnsemblePrediction, index: int, properties=("energy",)) -> None:
        """Fill :attr:`results` from structure ``index`` of a (batch) ``prediction`` made for ``self.atoms``."""
        atoms = prediction.atoms_of(index)
        energy = float(prediction.energy[index])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": prediction.atomic_energies[atoms].copy(),
            "forces": prediction.forces[atoms].copy(),
            "energy_uncertainty": float(prediction.energy_uncertainty[index]),
            "energy_members": prediction.energy_members[:, index].copy(),
        }
        if prediction.forces_uncertainty is not None:
            self.results["forces_uncertainty"] = prediction.forces_uncertainty[atoms].copy()
            self.results["forces_members"] = prediction.forces_members[:, atoms].copy()
        if self.atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(prediction.stress[index])
        elif "stress" in properties:
            # ASE's own error for a cell-less system
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress is only defined for fully periodic cells")

    def get_energy_uncertainty(self, atoms=None) -> float:
        """ΔE of Eq. 23 in eV."""
        return self.get_property("energy_uncertainty", atoms)

    def get_forces_uncertainty(self, atoms=None) -> np.ndarray:
        """ΔF per force component in eV/Å, shape ``(N, 3)``."""
        if "forces_uncertainty" not in self.implemented_properties:
            raise RuntimeError("force uncertainties were switched off (forces_uncertainty=False)")
        return self.get_property("forces_uncertainty", atoms)


def as_atoms(structure) -> Atoms | None:
    """``structure`` as ASE ``Atoms``: Atoms (and None) as they are, pymatgen objects through ``AseAtomsAdaptor``."""
    if structure is None or isinstance(structure, Atoms):
        return structure
    try:
        from pymatgen.core import SiteCollection
    except ImportError:  # pragma: no cover - pymatgen is a dependency
        SiteCollection = ()
    if SiteCollection and isinstance(structure, SiteCollection):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(structure, msonable=False)
    raise TypeError(f"expected ase.Atoms or a pymatgen Molecule or Structure, not {type(structure).__name__}")


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Same shape and every element within ``tol`` (ASE's ``equal(a, b, atol=tol)``)."""
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))
