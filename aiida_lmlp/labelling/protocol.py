"""The labelling protocol: which code computed the labels, and with which physics (no aiida, no torch).

A :class:`LabelProtocol` is what every labelled ``lmlp.dataset`` records: the labeller (PySCF,
CP2K, GFN2-xTB through tblite, Quantum ESPRESSO), the method, the basis or plane-wave cutoff,
the k-point density, the smearing, the spin treatment and the dispersion correction. Two
datasets are one training set only when their protocols are equal (see
:func:`aiida_lmlp.data.dataset.merge_datasets`); convergence settings (SCF cycles, damping,
mixing) are not part of a protocol, since they change how a label is found, not what it is.

Units: eV and Å, as everywhere in the plugin. A plane-wave cutoff is an energy in eV (CP2K and
QE take Rydberg: the adapters convert, :data:`RYDBERG`); the smearing is a width in eV (k_B T for
Fermi–Dirac); the k-point density is ASE's ``kptdensity``, k-points per Å⁻¹ of reciprocal
lattice vector length (2π included), so that cells of different size get the same sampling.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ase import Atoms, units

__all__ = [
    "EXTRAS",
    "LABELLERS",
    "RYDBERG",
    "LabelProtocol",
    "MissingExtraError",
    "ProtocolError",
    "kpoint_mesh",
    "missing_extra",
    "require_labeller",
]

RYDBERG = units.Rydberg
"""eV per Rydberg (the unit of CP2K's and QE's cutoffs)."""

LABELLERS = ("pyscf", "cp2k", "xtb", "qe")
"""Labellers the protocol knows; ``qe`` has no adapter yet."""

# labeller -> (pip extra, python modules it needs)
EXTRAS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "pyscf": (None, ("pyscf",)),
    "cp2k": ("cp2k", ("aiida_cp2k",)),
    "xtb": ("xtb", ("tblite",)),
    "qe": ("qe", ("aiida_quantumespresso",)),
}

DISPERSIONS = ("d3bj", "d3zero")
"""Grimme's D3 with Becke–Johnson (rational) or zero damping."""

SPINS = ("auto", "unrestricted")
"""``auto``: restricted for singlets, unrestricted otherwise; ``unrestricted``: always."""


class ProtocolError(ValueError):
    """An invalid labelling protocol; the message names the key."""


class MissingExtraError(ImportError):
    """A labeller whose optional dependencies are not installed; the message names the pip extra."""


def missing_extra(labeller: str) -> str | None:
    """Why ``labeller`` cannot run here (the missing module and the extra that installs it), or None."""
    if labeller not in EXTRAS:
        return f"unknown labeller {labeller!r} (known: {', '.join(LABELLERS)})"
    extra, modules = EXTRAS[labeller]
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed installation
            found = False
        if not found:
            install = f"pip install 'aiida-lmlp[{extra}]'" if extra else f"pip install {module}"
            return f"labeller {labeller!r} needs the Python package {module!r}, which is not installed: {install}"
    return None


def require_labeller(labeller: str) -> None:
    """Raise :class:`MissingExtraError` (naming the extra to install) unless ``labeller`` can run here."""
    problem = missing_extra(labeller)
    if problem is not None:
        raise MissingExtraError(problem)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class LabelProtocol:
    """The physics of a set of labels; validated on construction (``ProtocolError`` names the key).

    Charge and multiplicity belong to each structure (``atoms.info``), not to the protocol.
    """

    labeller: str
    """``pyscf``, ``cp2k``, ``xtb`` or ``qe``."""
    method: str
    """Exchange-correlation functional (``PBE``), ``HF``, or the tight-binding method (``GFN2-xTB``)."""
    basis: str | None = None
    """Gaussian basis (PySCF name, or a CP2K basis such as ``DZVP-MOLOPT-SR-GTH``); None for xTB and QE."""
    cutoff: float | None = None
    """Plane-wave (density) cutoff in eV (CP2K, QE); None where the code has none."""
    kpoint_density: float | None = None
    """k-points per Å⁻¹ for periodic cells (ASE's kptdensity); None: the Γ point only."""
    smearing: float | None = None
    """Fermi–Dirac smearing width k_B·T in eV; None: integer occupations."""
    spin: str = "auto"
    """``auto`` (restricted singlets, unrestricted otherwise) or ``unrestricted``."""
    dispersion: str | None = None
    """``d3bj``, ``d3zero`` or None; a method with built-in dispersion (GFN2-xTB's D4) takes None."""

    def __post_init__(self):
        self._validate()
        for key in ("cutoff", "kpoint_density", "smearing"):
            value = getattr(self, key)
            if value is not None:
                # 10 significant digits: equal physics stays equal after a trip through JSON or a database
                object.__setattr__(self, key, float(f"{float(value):.10g}"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelProtocol:
        """A protocol from a mapping; unknown keys raise ``ProtocolError``."""
        data = dict(data)
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ProtocolError(f"unknown protocol key {key!r} (known: {', '.join(known)})")
        for key in ("labeller", "method"):
            if key not in data:
                raise ProtocolError(f"protocol key {key!r} is required")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-compatible value (what a dataset records)."""
        return asdict(self)

    def key(self) -> str:
        """A canonical text of the protocol: equal protocols, equal keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """One line for people, e.g. ``cp2k PBE/DZVP-MOLOPT-SR-GTH cutoff 5442 eV, D3(BJ)``."""
        text = f"{self.labeller} {self.method}" + (f"/{self.basis}" if self.basis else "")
        extras = []
        if self.cutoff is not None:
            extras.append(f"cutoff {self.cutoff:g} eV ({self.cutoff / RYDBERG:.0f} Ry)")
        if self.kpoint_density is not None:
            extras.append(f"k-point density {self.kpoint_density:g} Å")
        if self.smearing is not None:
            extras.append(f"smearing {self.smearing:g} eV")
        if self.spin != "auto":
            extras.append(self.spin)
        if self.dispersion:
            extras.append({"d3bj": "D3(BJ)", "d3zero": "D3(0)"}[self.dispersion])
        return text + (" " + ", ".join(extras) if extras else "")

    def _validate(self):
        def fail(key, problem):
            raise ProtocolError(f"protocol {key!r}: {problem} (got {getattr(self, key)!r})")

        if self.labeller not in LABELLERS:
            fail("labeller", f"must be one of {', '.join(LABELLERS)}")
        if not isinstance(self.method, str) or not self.method.strip():
            fail("method", "must be a method name")
        if self.basis is not None and (not isinstance(self.basis, str) or not self.basis.strip()):
            fail("basis", "must be a basis name or null")
        for key in ("cutoff", "kpoint_density", "smearing"):
            value = getattr(self, key)
            if value is not None and (not _number(value) or value <= 0):
                fail(key, "must be a positive number or null")
        if self.spin not in SPINS:
            fail("spin", f"must be one of {', '.join(SPINS)}")
        if self.dispersion is not None and self.dispersion not in DISPERSIONS:
            fail("dispersion", f"must be one of {', '.join(DISPERSIONS)} or null")


def kpoint_mesh(atoms: Atoms, density: float | None) -> tuple[int, int, int]:
    """The Monkhorst–Pack mesh of ``atoms`` at ``density`` k-points per Å⁻¹ (ASE's rule); (1, 1, 1) for None.

    Non-periodic directions get one k-point. The same density gives larger cells fewer
    k-points, so that the sampling error stays the same across cells of different size.
    """
    if density is None or not atoms.pbc.any():
        return (1, 1, 1)
    from ase.calculators.calculator import kptdensity2monkhorstpack

    mesh = kptdensity2monkhorstpack(atoms, kptdensity=density, even=False)
    return tuple(int(n) if periodic else 1 for n, periodic in zip(mesh, atoms.pbc))
