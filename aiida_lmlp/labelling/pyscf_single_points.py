"""PySCF single points (energy and analytic forces) for a batch of structures.

The engine of ``lmlp label-pyscf``, usable in-process too. No aiida, no torch; PySCF is imported
inside the functions that run it, so importing this module is cheap.

Units: PySCF works in Hartree and Bohr; results leave this module in eV and eV/Å, converted with
``ase.units`` here and nowhere else. The batch machinery (:class:`BatchRecorder`,
:func:`label_structures`, :func:`run_interruptible`) takes the single point to run as
``compute``, so that other in-process labellers (``lmlp label-xtb``) write the same files.

Files of a batch (see ``docs/labelling.md``):

* ``status.jsonl``: one JSON object a line, flushed line by line: a ``start`` event, one line per
  structure (``converged``, ``not_converged`` or ``error``), then a ``finished`` event, or a
  ``terminated`` event when SIGTERM/SIGINT stopped the batch. No closing event means a crash.
* ``labelled.extxyz``: every converged structure, appended and flushed as soon as it is done,
  with ``energy`` (eV) and ``forces`` (eV/Å). A structure's frame is written before its status line.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import Atoms, units

from .protocol import DISPERSIONS, LabelProtocol

__all__ = [
    "BatchRecorder",
    "BatchSummary",
    "ParameterError",
    "PyscfParameters",
    "SinglePointResult",
    "label_batch",
    "label_structures",
    "run_interruptible",
    "single_point",
]

HARTREE = units.Hartree  # eV per Hartree
HARTREE_PER_BOHR = units.Hartree / units.Bohr  # eV/Å per Hartree/Bohr

# extxyz labels of an input structure that must not leak into the labelled output
_STALE_LABELS = ("energy", "free_energy", "forces", "stress", "energies", "magmom", "magmoms", "dipole", "charges")


SECOND_ORDER_MAX_CYCLE = 50
"""Macro cycles of the second-order fallback (PySCF's default for its Newton solver)."""


class ParameterError(ValueError):
    """Invalid labelling parameters; the message names the offending key."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class PyscfParameters:
    """Settings of a PySCF single point; validated on construction (``ParameterError`` names the key).

    ``charge`` and ``multiplicity`` of None are taken per structure from ``atoms.info``
    (defaults 0 and 1). Singlets run restricted (RKS/RHF), other multiplicities unrestricted.
    """

    xc: str = "PBE"
    """Exchange-correlation functional (any libxc name PySCF accepts); ``"HF"`` means Hartree–Fock."""
    basis: str | dict[str, str] = "def2-SVP"
    """Orbital basis: a PySCF basis name, or ``{element: name}``."""
    density_fit: bool = True
    """Density fitting (RI-J for pure functionals, RI-JK for hybrids and HF)."""
    auxbasis: str | dict[str, str] | None = None
    """Fitting basis; None: PySCF's JK-fitting default for the orbital basis (def2-universal-jkfit for def2)."""
    charge: int | None = None
    """Total charge (e); None: ``atoms.info['charge']``, else 0."""
    multiplicity: int | None = None
    """Spin multiplicity 2S+1 ≥ 1; None: ``atoms.info['multiplicity']``, else 1."""
    conv_tol: float = 1e-9
    """SCF energy convergence threshold (Eh)."""
    max_cycle: int = 100
    """Maximum SCF cycles; a structure that needs more is reported ``not_converged``."""
    damping: float = 0.0
    """Fock damping factor, 0 ≤ x < 1; acts only in the cycles before DIIS starts."""
    diis_start_cycle: int = 1
    """First SCF cycle that uses DIIS (PySCF's default 1)."""
    level_shift: float = 0.0
    """Virtual-orbital level shift (Eh) ≥ 0."""
    second_order: bool = True
    """When DIIS has not converged after ``max_cycle`` cycles, go on from its last orbitals with
    PySCF's second-order (Newton, CIAH) solver, for up to 50 macro cycles, before
    reporting ``not_converged``: the usual PySCF remedy, much cheaper than a new job."""
    grid_level: int = 3
    """PySCF DFT integration grid level, 0 (coarse) to 9 (fine); ignored for HF."""
    max_memory: float = 2000
    """Memory PySCF may use (MB)."""
    threads: int | None = None
    """OpenMP threads for PySCF; None: PySCF's default (``OMP_NUM_THREADS`` or all cores)."""
    dispersion: str | None = None
    """Grimme's D3 correction added to energy and forces (the ``dftd3`` package): ``d3bj``
    (Becke–Johnson damping, as in the lMLP paper's PBE-D3), ``d3zero`` (zero damping) or None."""

    def __post_init__(self):
        self._validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PyscfParameters:
        """Parameters from a mapping (e.g. parameters.json); unknown keys and bad values raise ``ParameterError``."""
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ParameterError(f"unknown parameter {key!r} (known: {', '.join(known)})")
        return cls(**data)

    @classmethod
    def from_protocol(cls, protocol: LabelProtocol, overrides: Mapping[str, Any] | None = None) -> PyscfParameters:
        """Parameters for a ``pyscf`` protocol (method → ``xc``, basis, dispersion), with code ``overrides``.

        Refuses what molecular PySCF does not do here: a cutoff, k-points, smearing, ``spin: unrestricted``.
        """
        if protocol.labeller != "pyscf":
            raise ParameterError(f"protocol of labeller {protocol.labeller!r} given to the pyscf labeller")
        for key in ("cutoff", "kpoint_density", "smearing"):
            if getattr(protocol, key) is not None:
                raise ParameterError(f"protocol {key!r}: the PySCF labeller computes molecules only, without it")
        if protocol.spin != "auto":
            raise ParameterError("protocol 'spin': PySCF runs singlets restricted ('auto' only)")
        physics = {"xc": protocol.method, "dispersion": protocol.dispersion}
        if protocol.basis is not None:
            physics["basis"] = protocol.basis
        overrides = dict(overrides or {})
        clash = sorted(set(physics) & set(overrides))
        if clash:
            raise ParameterError(f"parameter {clash[0]!r} is part of the protocol: set it there, not in parameters")
        return cls.from_dict({**physics, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The resolved parameters as JSON-compatible values (every key, defaults filled in)."""
        return asdict(self)

    @property
    def is_hartree_fock(self) -> bool:
        """True when ``xc`` asks for Hartree–Fock rather than DFT."""
        return self.xc.strip().upper() == "HF"

    @property
    def is_hybrid(self) -> bool:
        """True when the method needs exact exchange (HF or a hybrid functional)."""
        if self.is_hartree_fock:
            return True
        from pyscf.dft import libxc

        return bool(libxc.is_hybrid_xc(self.xc))

    def method_label(self) -> str:
        """Level of theory as written to ``info['method']``, e.g. ``PBE/def2-SVP RI-J (PySCF 2.14.0)``."""
        import pyscf

        xc = "HF" if self.is_hartree_fock else self.xc
        if isinstance(self.basis, str):
            basis = self.basis
        else:
            basis = ",".join(f"{element}:{name}" for element, name in sorted(self.basis.items()))
        fitting = (" RI-JK" if self.is_hybrid else " RI-J") if self.density_fit else ""
        dispersion = {"d3bj": "-D3(BJ)", "d3zero": "-D3(0)"}.get(self.dispersion or "", "")
        return f"{xc}{dispersion}/{basis}{fitting} (PySCF {pyscf.__version__})"

    def protocol(self) -> LabelProtocol:
        """The physics of these settings as a :class:`~aiida_lmlp.labelling.protocol.LabelProtocol`."""
        if isinstance(self.basis, str):
            basis = self.basis
        else:
            basis = ",".join(f"{element}:{name}" for element, name in sorted(self.basis.items()))
        method = "HF" if self.is_hartree_fock else self.xc
        return LabelProtocol(labeller="pyscf", method=method, basis=basis, dispersion=self.dispersion)

    def code_versions(self) -> dict[str, str]:
        """Versions of the libraries that compute the labels (written to the batch's start event)."""
        import pyscf

        versions = {"pyscf": pyscf.__version__}
        if self.dispersion:
            from importlib.metadata import version

            versions["dftd3"] = version("dftd3")
        return versions

    def convergence_text(self) -> str:
        """The SCF limits, for the message of a structure that did not converge."""
        return f"max_cycle {self.max_cycle}, conv_tol {self.conv_tol:g} Eh"

    def _validate(self):
        def fail(key, problem):
            raise ParameterError(f"parameter {key!r}: {problem} (got {getattr(self, key)!r})")

        if not isinstance(self.xc, str) or not self.xc.strip():
            fail("xc", "must be a functional name or 'HF'")
        if not self.is_hartree_fock:
            from pyscf.dft import libxc

            try:
                libxc.parse_xc(self.xc)
            except Exception:  # PySCF raises KeyError or ValueError for unknown names
                fail("xc", "unknown exchange-correlation functional")
        for key in ("basis", "auxbasis"):
            value = getattr(self, key)
            if value is None and key == "auxbasis":
                continue
            if isinstance(value, str):
                if not value.strip():
                    fail(key, "must not be empty")
            elif isinstance(value, dict):
                if not value or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
                    fail(key, "must map element symbols to basis names")
            else:
                fail(key, "must be a basis name or a mapping {element: basis name}")
        if not isinstance(self.density_fit, bool):
            fail("density_fit", "must be true or false")
        if self.charge is not None and not _is_int(self.charge):
            fail("charge", "must be an integer or null")
        if self.multiplicity is not None and (not _is_int(self.multiplicity) or self.multiplicity < 1):
            fail("multiplicity", "must be an integer ≥ 1 or null")
        if not _is_number(self.conv_tol) or self.conv_tol <= 0:
            fail("conv_tol", "must be a positive number (Eh)")
        if not _is_int(self.max_cycle) or self.max_cycle < 1:
            fail("max_cycle", "must be an integer ≥ 1")
        if not _is_int(self.diis_start_cycle) or self.diis_start_cycle < 0:
            fail("diis_start_cycle", "must be an integer ≥ 0")
        if not _is_number(self.damping) or not 0 <= self.damping < 1:
            fail("damping", "must be a number with 0 ≤ damping < 1")
        if self.damping > 0 and self.diis_start_cycle < 3:
            fail("damping", "acts only in the cycles before DIIS starts: set diis_start_cycle ≥ 3 as well")
        if not isinstance(self.second_order, bool):
            fail("second_order", "must be true or false")
        if not _is_number(self.level_shift) or self.level_shift < 0:
            fail("level_shift", "must be a number ≥ 0 (Eh)")
        if not _is_int(self.grid_level) or not 0 <= self.grid_level <= 9:
            fail("grid_level", "must be an integer from 0 to 9")
        if not _is_number(self.max_memory) or self.max_memory <= 0:
            fail("max_memory", "must be a positive number (MB)")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            fail("threads", "must be an integer ≥ 1 or null")
        if self.dispersion is not None and self.dispersion not in DISPERSIONS:
            fail("dispersion", f"must be one of {', '.join(DISPERSIONS)} or null")
        if self.dispersion is not None:
            try:
                _d3_parameters(self.xc, self.dispersion)
            except (ImportError, ValueError) as error:
                fail("dispersion", str(error))


@dataclass(frozen=True)
class SinglePointResult:
    """Outcome of one PySCF single point, in eV and eV/Å."""

    energy: float
    """Total energy (eV) of the last SCF iteration: the converged energy when ``converged``."""
    forces: np.ndarray | None
    """Analytic forces (N, 3) in eV/Å; None when the SCF did not converge."""
    converged: bool
    """Whether the SCF converged within ``max_cycle``."""
    cycles: int
    """SCF cycles run."""
    charge: int
    """Total charge used (e)."""
    multiplicity: int
    """Spin multiplicity used."""
    seconds: float = 0.0
    """Wall time of the SCF and gradient (s)."""
    second_order_cycles: int = 0
    """Macro cycles of the second-order solver after DIIS gave up (0: DIIS converged or none ran)."""
    stress: np.ndarray | None = None
    """Stress (3, 3) in eV/Å³ of a periodic cell (ASE's sign: positive under tension); None for molecules."""


def _integer_info(atoms: Atoms, key: str, default: int) -> int:
    value = atoms.info.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"info {key}={value!r} is not an integer") from None
    if not number.is_integer():
        raise ValueError(f"info {key}={value!r} is not an integer")
    return int(number)


def resolve_charge_multiplicity(atoms: Atoms, parameters: PyscfParameters) -> tuple[int, int]:
    """Charge and multiplicity of ``atoms``: from the parameters, else from ``atoms.info``, else 0 and 1."""
    charge = parameters.charge if parameters.charge is not None else _integer_info(atoms, "charge", 0)
    if parameters.multiplicity is not None:
        multiplicity = parameters.multiplicity
    else:
        multiplicity = _integer_info(atoms, "multiplicity", 1)
        if multiplicity < 1:
            raise ValueError(f"info multiplicity={multiplicity} is below 1")
    return int(charge), int(multiplicity)


def single_point(atoms: Atoms, parameters: PyscfParameters | None = None) -> SinglePointResult:
    """PySCF energy and (if the SCF converged) analytic forces of one molecule.

    Raises whatever PySCF raises for an impossible calculation (e.g. a charge and multiplicity
    that do not fit the electron count, a basis without an entry for an element) and
    ``ValueError`` for a periodic structure, which the molecular code cannot treat.
    """
    from pyscf import lib

    parameters = parameters or PyscfParameters()
    if atoms.pbc.any():
        raise ValueError("periodic structures are not supported (molecular PySCF only); set pbc to False")
    charge, multiplicity = resolve_charge_multiplicity(atoms, parameters)
    if parameters.threads is None:
        return _run_pyscf(atoms, parameters, charge, multiplicity)
    previous = lib.num_threads()
    lib.num_threads(parameters.threads)  # OpenMP keeps the setting per thread: set it in the thread that computes
    try:
        return _run_pyscf(atoms, parameters, charge, multiplicity)
    finally:
        lib.num_threads(previous)


def _run_pyscf(atoms: Atoms, parameters: PyscfParameters, charge: int, multiplicity: int) -> SinglePointResult:
    from pyscf import df, dft, gto, scf

    start = time.perf_counter()
    mol = gto.M(
        atom=list(zip(atoms.get_chemical_symbols(), atoms.positions.tolist())),
        unit="Angstrom",
        basis=parameters.basis,
        charge=charge,
        spin=multiplicity - 1,
        max_memory=parameters.max_memory,
        verbose=0,
    )
    restricted = multiplicity == 1
    if parameters.is_hartree_fock:
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = parameters.xc
        mf.grids.level = parameters.grid_level
    if parameters.density_fit:
        # df.make_auxbasis with its default xc="HF" gives the JK-fitting basis (as the reference data used)
        auxbasis = parameters.auxbasis if parameters.auxbasis is not None else df.make_auxbasis(mol)
        mf = mf.density_fit(auxbasis=auxbasis)
    mf.conv_tol = parameters.conv_tol
    mf.max_cycle = parameters.max_cycle
    mf.damp = parameters.damping
    mf.diis_start_cycle = parameters.diis_start_cycle
    mf.level_shift = parameters.level_shift
    mf.max_memory = parameters.max_memory
    mf.verbose = 0
    e_tot = mf.kernel()
    cycles, newton_cycles = int(getattr(mf, "cycles", 0)), 0
    if not mf.converged and parameters.second_order:
        diis = mf
        mf = diis.newton()
        mf.max_cycle = SECOND_ORDER_MAX_CYCLE  # the copy would inherit DIIS's max_cycle
        mf.verbose = 0
        macro_cycles = []
        mf.callback = macro_cycles.append  # called once per macro cycle (the solver keeps no count)
        e_tot = mf.kernel(diis.mo_coeff, diis.mo_occ)
        newton_cycles = len(macro_cycles)
    forces = None
    if mf.converged:
        gradient = mf.nuc_grad_method()
        gradient.verbose = 0
        forces = -np.asarray(gradient.kernel(), dtype=float) * HARTREE_PER_BOHR
    if parameters.dispersion:
        dispersion_energy, dispersion_gradient = d3_correction(atoms, parameters.xc, parameters.dispersion)
        e_tot = float(e_tot) + dispersion_energy
        if forces is not None:
            forces = forces - dispersion_gradient * HARTREE_PER_BOHR
    return SinglePointResult(
        energy=float(e_tot) * HARTREE,
        forces=forces,
        converged=bool(mf.converged),
        cycles=cycles,
        charge=charge,
        multiplicity=multiplicity,
        seconds=time.perf_counter() - start,
        second_order_cycles=newton_cycles,
    )


def _d3_parameters(xc: str, damping: str):
    """dftd3's damping parameters of ``xc`` (no three-body term); ValueError when it has none."""
    try:
        from dftd3.interface import RationalDampingParam, ZeroDampingParam
    except ImportError as error:  # a dependency of aiida-lmlp: only a broken install lacks it
        raise ImportError(f"D3 dispersion needs the dftd3 package (pip install dftd3): {error}") from None
    parameter_class = RationalDampingParam if damping == "d3bj" else ZeroDampingParam
    try:
        return parameter_class(method=xc.lower(), atm=False)
    except Exception as error:  # dftd3 raises its own error type for a functional it does not know
        raise ValueError(f"dftd3 has no {damping} parameters for the functional {xc!r} ({error})") from None


def d3_correction(atoms: Atoms, xc: str, damping: str) -> tuple[float, np.ndarray]:
    """Grimme's D3 energy (Eh) and its gradient (Eh/Bohr, (N, 3)) for the functional ``xc`` (``dftd3`` package).

    ``damping``: ``d3bj`` (rational, Becke–Johnson) or ``d3zero``; the three-body term is left out,
    as in the usual PBE-D3. Raises ``ValueError`` for a functional without D3 parameters.
    """
    from dftd3.interface import DispersionModel

    parameters = _d3_parameters(xc, damping)
    model = DispersionModel(atoms.numbers, atoms.positions / units.Bohr)
    result = model.get_dispersion(parameters, grad=True)
    return float(result["energy"]), np.asarray(result["gradient"], dtype=float)


@dataclass
class BatchSummary:
    """Counts of a batch: structures per outcome."""

    count: int = 0
    converged: int = 0
    not_converged: int = 0
    errors: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    """The per-structure status lines, in order."""

    @property
    def completed(self) -> int:
        """Structures attempted so far (any outcome)."""
        return self.converged + self.not_converged + self.errors


class BatchRecorder:
    """Writes ``status.jsonl`` and ``labelled.extxyz`` of a batch, flushed entry by entry; thread-safe.

    Both files are truncated when the recorder opens. After the closing event (``finished`` or
    ``terminated``) nothing more is written. With ``archive``, the converged structures are
    also written as one conformation archive (``.npz``) just before the ``finished`` event: what
    the AiiDA parser reads without ``ase.io``; the extxyz, written as the batch goes, is what a
    terminated batch leaves.
    """

    def __init__(self, out: str | Path, status: str | Path, archive: str | Path | None = None):
        self._lock = threading.Lock()
        self._closed = False
        self._status: TextIO = open(status, "w", encoding="utf-8")
        self._out: TextIO = open(out, "w", encoding="utf-8")
        self._archive = Path(archive) if archive is not None else None
        if self._archive is not None:
            self._archive.unlink(missing_ok=True)  # never a stale archive beside a new batch
        self._labelled: list[Atoms] = []
        self.summary = BatchSummary()

    def __enter__(self) -> BatchRecorder:
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _line(self, record: Mapping[str, Any]):
        self._status.write(json.dumps(record) + "\n")
        self._status.flush()

    def start(self, count: int, parameters: Any):
        """Write the ``start`` event: the count, the parameters, the protocol and the code versions.

        ``parameters``: :class:`PyscfParameters` or another labeller's settings with the same
        ``to_dict``, ``protocol`` and ``code_versions`` methods.
        """
        versions = parameters.code_versions()
        with self._lock:
            if self._closed:
                return
            self.summary.count = count
            record = {
                "event": "start",
                "count": count,
                "parameters": parameters.to_dict(),
                "protocol": parameters.protocol().to_dict(),
                "versions": versions,
            }
            if "pyscf" in versions:
                record["pyscf_version"] = versions["pyscf"]
            self._line(record)

    def record(self, record: dict[str, Any], frame: Atoms | None = None):
        """Append ``frame`` (a converged structure) to the extxyz file, then the structure's status line."""
        text = None
        if frame is not None:
            from ase.io import write

            buffer = io.StringIO()
            write(buffer, frame, format="extxyz")
            text = buffer.getvalue()
        with self._lock:
            if self._closed:
                return
            if text is not None:
                self._out.write(text)  # one write: a killed process leaves whole frames only
                self._out.flush()
                if self._archive is not None:
                    self._labelled.append(frame)
            self._line(record)
            self.summary.records.append(record)
            key = "errors" if record["status"] == "error" else record["status"]
            setattr(self.summary, key, getattr(self.summary, key) + 1)

    def finish(self) -> BatchSummary:
        """Write the ``finished`` event and close the batch."""
        with self._lock:
            if not self._closed:
                s = self.summary
                self._write_archive()
                self._line(
                    {
                        "event": "finished",
                        "converged": s.converged,
                        "not_converged": s.not_converged,
                        "errors": s.errors,
                    }
                )
                self._closed = True
        return self.summary

    def _write_archive(self) -> None:
        if self._archive is None:
            return
        from aiida_lmlp.formats.conformation_arrays import write_frames

        try:
            write_frames(self._archive, self._labelled)
        except (OSError, ValueError) as error:  # the extxyz stays the record; its reader reports the problem
            print(f"lmlp: no archive {self._archive}: {error}", file=sys.stderr)

    def terminate(self, signum: int, timeout: float = 10.0) -> bool:
        """Write the ``terminated`` event (unless the batch already closed); True if it was written.

        Waits up to ``timeout`` seconds for a write in progress so that no half line or half frame is left.
        """
        acquired = self._lock.acquire(timeout=timeout)
        try:
            if self._closed:
                return False
            self._line({"event": "terminated", "signal": int(signum), "completed": self.summary.completed})
            self._closed = True
            return True
        finally:
            if acquired:
                self._lock.release()

    def close(self):
        """Close both files (no closing event is written: use ``finish`` or ``terminate`` first)."""
        with self._lock:
            self._closed = True
            self._status.close()
            self._out.close()


def _labelled_frame(atoms: Atoms, index: int, result: SinglePointResult, method: str, seconds: float) -> Atoms:
    frame = atoms.copy()  # positions, cell, pbc, info and arrays; no calculator
    frame.calc = None
    for key in _STALE_LABELS:
        frame.info.pop(key, None)
        if key in frame.arrays and key not in ("numbers", "positions"):
            del frame.arrays[key]
    frame.info.update(
        energy=result.energy,
        charge=result.charge,
        multiplicity=result.multiplicity,
        index=index,
        method=method,
        scf_cycles=result.cycles,
        second_order_cycles=result.second_order_cycles,
        seconds=seconds,
    )
    frame.arrays["forces"] = np.asarray(result.forces, dtype=float)
    if result.stress is not None:
        frame.info["stress"] = np.asarray(result.stress, dtype=float)
    return frame


Compute = Callable[[Atoms, Any], SinglePointResult]
"""A single point: ``(atoms, parameters) -> SinglePointResult``."""


def label_structures(
    structures: Iterable[Atoms],
    parameters: Any,
    recorder: BatchRecorder,
    progress: Callable[[dict[str, Any]], None] | None = None,
    compute: Compute | None = None,
) -> BatchSummary:
    """Label every structure through ``recorder`` (start event, one line per structure, finished event).

    ``compute`` runs one single point (default: PySCF's :func:`single_point`). A structure whose
    single point raises is recorded as ``error`` and the batch goes on; ``progress`` (if given)
    receives every status line.
    """
    compute = compute or single_point
    structures = list(structures)
    recorder.start(len(structures), parameters)
    method = parameters.method_label()
    for index, atoms in enumerate(structures):
        start = time.perf_counter()
        record = dict.fromkeys(("index", "status", "energy", "scf_cycles", "seconds", "message"))
        record.update(index=index, status="error")
        frame = None
        try:
            result = compute(atoms, parameters)
        except Exception as error:  # the codes raise many types; the batch goes on
            record["message"] = _one_line(f"{type(error).__name__}: {error}")
            result = None
        record["seconds"] = round(time.perf_counter() - start, 3)
        if result is not None:
            record["scf_cycles"] = result.cycles
            if result.second_order_cycles:
                record["second_order_cycles"] = result.second_order_cycles
            if result.converged:
                record.update(status="converged", energy=result.energy)
                frame = _labelled_frame(atoms, index, result, method, record["seconds"])
            else:
                record["status"] = "not_converged"
                newton = f" + {result.second_order_cycles} second-order" if result.second_order_cycles else ""
                record["message"] = (
                    f"SCF not converged in {result.cycles}{newton} cycles ({parameters.convergence_text()}); "
                    f"last energy {result.energy:.6f} eV"
                )
        recorder.record(record, frame)
        if progress is not None:
            progress(record)
    return recorder.finish()


def label_batch(
    structures: Iterable[Atoms],
    parameters: Any,
    out: str | Path,
    status: str | Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
    archive: str | Path | None = None,
    compute: Compute | None = None,
) -> BatchSummary:
    """Label ``structures`` in this thread, writing ``out`` (extxyz), ``status`` (JSON lines) and ``archive``."""
    with BatchRecorder(out, status, archive) as recorder:
        return label_structures(structures, parameters, recorder, progress, compute)


def run_interruptible(
    structures: Iterable[Atoms],
    parameters: Any,
    out: str | Path,
    status: str | Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
    archive: str | Path | None = None,
    compute: Compute | None = None,
    name: str = "lmlp label-pyscf",
) -> BatchSummary:
    """``label_batch`` for a process of its own: SIGTERM/SIGINT record ``terminated`` and exit 128+signal.

    PySCF spends long stretches in C code, where a Python signal handler cannot run, so the
    batch runs in a worker thread while the main thread only waits: the handler runs at once,
    writes the ``terminated`` event and leaves with ``os._exit``. Call it from the main thread of
    a process that may end this way (the ``lmlp label-pyscf`` command); elsewhere it runs
    ``label_batch`` unprotected. An exception in the batch is re-raised here.
    """
    if threading.current_thread() is not threading.main_thread():
        return label_batch(structures, parameters, out, status, progress, archive, compute)
    structures = list(structures)
    recorder = BatchRecorder(out, status, archive)
    outcome: dict[str, Any] = {}

    def work():
        try:
            outcome["summary"] = label_structures(structures, parameters, recorder, progress, compute)
        except BaseException as error:  # re-raised in the main thread: a crash stays a crash
            outcome["error"] = error

    def on_signal(signum, _frame):
        if recorder.terminate(signum):
            print(
                f"{name}: stopped by signal {signum} after {recorder.summary.completed} of "
                f"{len(structures)} structures",
                file=sys.stderr,
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        # the batch had already finished: let the process end normally

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker = threading.Thread(target=work, name=name.replace(" ", "-"), daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=1.0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        recorder.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]
