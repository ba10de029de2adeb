"""GFN2-xTB (or GFN1-xTB) single points through tblite: energy, forces and, for periodic cells, stress.

The engine of ``lmlp label-xtb``, usable in-process too: a cheap real quantum-chemical labeller
for demonstrations, tests and benchmarks of periodic campaigns. No aiida, no torch; tblite is
imported inside the functions that run it (the ``xtb`` extra: ``pip install 'aiida-lmlp[xtb]'``).

Units: tblite works in Hartree and Bohr; results leave this module in eV, eV/Å and eV/Å³,
converted with ``ase.units`` here and nowhere else. Periodic cells are computed at the Γ point
(tblite has no k-point sampling): a protocol with a k-point density is refused.

The batch files are those of ``lmlp label-pyscf`` (``status.jsonl``, ``labelled.extxyz``, the
conformation archive): the batch machinery of :mod:`.pyscf_single_points` runs :func:`single_point`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from .protocol import LabelProtocol
from .pyscf_single_points import (
    BatchSummary,
    ParameterError,
    SinglePointResult,
    _is_int,
    _is_number,
    label_batch,
    resolve_charge_multiplicity,
    run_interruptible,
)

__all__ = ["METHODS", "XtbParameters", "label_xtb_batch", "run_xtb_interruptible", "single_point"]

HARTREE = units.Hartree  # eV per Hartree
HARTREE_PER_BOHR = units.Hartree / units.Bohr  # eV/Å per Hartree/Bohr
METHODS = ("GFN2-xTB", "GFN1-xTB")


@dataclass(frozen=True)
class XtbParameters:
    """Settings of a tblite single point; validated on construction (``ParameterError`` names the key).

    ``charge`` and ``multiplicity`` of None are taken per structure from ``atoms.info`` (defaults
    0 and 1); the number of unpaired electrons is ``multiplicity - 1``.
    """

    method: str = "GFN2-xTB"
    """``GFN2-xTB`` (with its self-consistent D4 dispersion) or ``GFN1-xTB``."""
    electronic_temperature: float = 300.0
    """Fermi smearing temperature (K), part of the method (tblite's default 300 K)."""
    accuracy: float = 1.0
    """tblite's accuracy factor (lower is tighter)."""
    max_iterations: int = 250
    """Maximum SCC iterations; a structure that needs more is reported ``not_converged``."""
    mixer_damping: float = 0.4
    """Damping of the Broyden mixer, 0 < x ≤ 1 (lower: slower but steadier)."""
    charge: int | None = None
    """Total charge (e); None: ``atoms.info['charge']``, else 0."""
    multiplicity: int | None = None
    """Spin multiplicity 2S+1 ≥ 1; None: ``atoms.info['multiplicity']``, else 1."""

    def __post_init__(self):
        def fail(key, problem):
            raise ParameterError(f"parameter {key!r}: {problem} (got {getattr(self, key)!r})")

        if self.method not in METHODS:
            fail("method", f"must be one of {', '.join(METHODS)}")
        if not _is_number(self.electronic_temperature) or self.electronic_temperature <= 0:
            fail("electronic_temperature", "must be a positive number (K)")
        if not _is_number(self.accuracy) or self.accuracy <= 0:
            fail("accuracy", "must be a positive number")
        if not _is_int(self.max_iterations) or self.max_iterations < 1:
            fail("max_iterations", "must be an integer ≥ 1")
        if not _is_number(self.mixer_damping) or not 0 < self.mixer_damping <= 1:
            fail("mixer_damping", "must be a number with 0 < mixer_damping ≤ 1")
        if self.charge is not None and not _is_int(self.charge):
            fail("charge", "must be an integer or null")
        if self.multiplicity is not None and (not _is_int(self.multiplicity) or self.multiplicity < 1):
            fail("multiplicity", "must be an integer ≥ 1 or null")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> XtbParameters:
        """Parameters from a mapping; unknown keys and bad values raise ``ParameterError``."""
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ParameterError(f"unknown parameter {key!r} (known: {', '.join(known)})")
        return cls(**data)

    @classmethod
    def from_protocol(cls, protocol: LabelProtocol, overrides: Mapping[str, Any] | None = None) -> XtbParameters:
        """Parameters for ``protocol`` (an ``xtb`` protocol), with numerical ``overrides``.

        Refuses what tblite cannot do: a k-point density, a basis, a cutoff, a dispersion
        correction on top of the method's own, or ``spin: unrestricted``.
        """
        if protocol.labeller != "xtb":
            raise ParameterError(f"protocol of labeller {protocol.labeller!r} given to the xtb labeller")
        for key, problem in (
            ("basis", "xTB has a minimal basis of its own"),
            ("cutoff", "xTB has no plane-wave cutoff"),
            ("kpoint_density", "tblite computes periodic cells at the Γ point only: use a larger cell"),
            ("dispersion", "GFN2-xTB has D4 dispersion built in (GFN1-xTB D3): leave it out"),
        ):
            if getattr(protocol, key) is not None:
                raise ParameterError(f"protocol {key!r}: {problem}")
        if protocol.spin != "auto":
            raise ParameterError("protocol 'spin': tblite takes the multiplicity of each structure ('auto' only)")
        data = {"method": protocol.method, **dict(overrides or {})}
        if protocol.smearing is not None:
            data["electronic_temperature"] = protocol.smearing / units.kB
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The resolved parameters as JSON-compatible values (every key)."""
        return asdict(self)

    def protocol(self) -> LabelProtocol:
        """The physics of these settings (the smearing is k_B·T of the electronic temperature, in eV)."""
        return LabelProtocol(labeller="xtb", method=self.method, smearing=self.electronic_temperature * units.kB)

    def method_label(self) -> str:
        """Level of theory as written to ``info['method']``, e.g. ``GFN2-xTB 300 K (tblite 0.5.0)``."""
        return f"{self.method} {self.electronic_temperature:g} K (tblite {_tblite_version()})"

    def code_versions(self) -> dict[str, str]:
        """The tblite version."""
        return {"tblite": _tblite_version()}

    def convergence_text(self) -> str:
        """The SCC limits, for the message of a structure that did not converge."""
        return f"max_iterations {self.max_iterations}, mixer_damping {self.mixer_damping:g}"


def _tblite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tblite")
    except PackageNotFoundError:
        return "not installed"


def single_point(atoms: Atoms, parameters: XtbParameters | None = None) -> SinglePointResult:
    """tblite energy, forces and (periodic cells) stress of one structure.

    A self-consistent charge cycle that does not converge gives ``converged=False`` (no forces);
    impossible input (an odd electron count as a singlet, an element tblite lacks) raises.
    Periodic cells need all three directions periodic or none: tblite's 1D/2D boundary
    conditions are not used here.
    """
    from tblite.exceptions import TBLiteRuntimeError
    from tblite.interface import Calculator

    parameters = parameters or XtbParameters()
    charge, multiplicity = resolve_charge_multiplicity(atoms, parameters)
    electrons = int(atoms.numbers.sum()) - charge
    if (electrons - (multiplicity - 1)) % 2:
        # tblite would quietly take another spin state (the core electrons it leaves out are even in number)
        raise ValueError(
            f"charge {charge} and multiplicity {multiplicity} are not compatible with {electrons} electrons"
        )
    periodic = bool(atoms.pbc.any())
    if periodic and not atoms.pbc.all():
        raise ValueError(f"pbc {atoms.pbc.tolist()}: periodic in all three directions or in none")
    start = time.perf_counter()
    calculator = Calculator(
        parameters.method,
        atoms.numbers,
        atoms.positions / units.Bohr,
        charge=float(charge),
        uhf=multiplicity - 1,
        lattice=atoms.cell.array / units.Bohr if periodic else None,
        periodic=np.array([True, True, True]) if periodic else None,
    )
    calculator.set("verbosity", 0)
    calculator.set("accuracy", parameters.accuracy)
    calculator.set("max-iter", parameters.max_iterations)
    calculator.set("mixer-damping", parameters.mixer_damping)
    calculator.set("temperature", parameters.electronic_temperature * units.kB / units.Hartree)
    try:
        result = calculator.singlepoint()
    except TBLiteRuntimeError as error:
        if "SCF not converged" not in str(error):
            raise
        return SinglePointResult(
            energy=math.nan,
            forces=None,
            converged=False,
            cycles=parameters.max_iterations,
            charge=charge,
            multiplicity=multiplicity,
            seconds=time.perf_counter() - start,
        )
    stress = None
    if periodic:
        # tblite's virial is dE/dε (Eh), so σ = virial / V (ASE's sign: positive under tension)
        stress = np.asarray(result.get("virial"), dtype=float) * HARTREE / atoms.get_volume()
    return SinglePointResult(
        energy=float(result.get("energy")) * HARTREE,
        forces=-np.asarray(result.get("gradient"), dtype=float) * HARTREE_PER_BOHR,
        converged=True,
        cycles=0,  # tblite does not report its iteration count
        charge=charge,
        multiplicity=multiplicity,
        seconds=time.perf_counter() - start,
        stress=stress,
    )


def label_xtb_batch(
    structures: Iterable[Atoms],
    parameters: XtbParameters,
    out: str | Path,
    status: str | Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
    archive: str | Path | None = None,
) -> BatchSummary:
    """Label ``structures`` with tblite in this thread (the files of ``lmlp label-pyscf``)."""
    return label_batch(structures, parameters, out, status, progress, archive, compute=single_point)


def run_xtb_interruptible(
    structures: Iterable[Atoms],
    parameters: XtbParameters,
    out: str | Path,
    status: str | Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
    archive: str | Path | None = None,
) -> BatchSummary:
    """:func:`label_xtb_batch` for a process of its own: SIGTERM/SIGINT record ``terminated`` and exit."""
    return run_interruptible(
        structures, parameters, out, status, progress, archive, compute=single_point, name="lmlp label-xtb"
    )
