"""CP2K Quickstep single points: the input built from a protocol, the labels read from the output (no aiida, no torch).

The CP2K adapter of ``lmlp.label`` (:mod:`aiida_lmlp.workflows.labellers.cp2k`) runs aiida-cp2k's
``Cp2kCalculation`` with the input of :func:`cp2k_input`; its parser (``lmlp.cp2k``) reads the
labels with :func:`parse_single_point`. Both are pure functions of text and numbers, tested
without AiiDA.

* GTH pseudopotentials (``GTH-<functional>``) and a MOLOPT basis, from the CP2K data directory
  (``BASIS_MOLOPT``, ``GTH_POTENTIALS``, ``dftd3.dat``; Debian's ``cp2k`` package installs them).
* Molecules: a cubic box ``vacuum`` Å wider than the molecule on every side, ``PERIODIC NONE``
  and the wavelet Poisson solver (charged molecules need no compensating background).
  Periodic cells (periodic in all three directions): the cell as given, the Γ point or a
  Monkhorst–Pack mesh from the k-point density, the analytical stress tensor.
* Charge and multiplicity per structure; UKS for multiplicities above 1 or ``spin: unrestricted``.
* Units: CP2K takes Rydberg cutoffs and Kelvin electronic temperatures and prints Hartree,
  Hartree/Bohr and GPa (or bar); :func:`parse_single_point` returns eV, eV/Å and eV/Å³
  (``ase.units``), here and nowhere else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from ase import Atoms, units

from .protocol import RYDBERG, SPINS, LabelProtocol, kpoint_mesh
from .pyscf_single_points import ParameterError, _is_int, _is_number, resolve_charge_multiplicity

__all__ = [
    "METHODS",
    "Cp2kOutputError",
    "Cp2kParameters",
    "Cp2kSinglePoint",
    "cp2k_input",
    "escalate",
    "molecule_box",
    "parse_single_point",
]

METHODS = {"PBE": "PBE", "BLYP": "BLYP", "PADE": "PADE", "LDA": "PADE"}
"""Functionals with GTH pseudopotentials of their own: name → CP2K XC_FUNCTIONAL (and GTH family)."""

SCF_METHODS = ("auto", "ot", "diagonalization")
POISSON_SOLVERS = ("wavelet", "mt")
GPA = units.GPa  # eV/Å³ per GPa
BAR = 1e-4 * units.GPa  # eV/Å³ per bar

# Hartree, Hartree/Bohr and the stress units CP2K prints, in eV, eV/Å and eV/Å³
_ENERGY_UNITS = {"a.u.": units.Hartree, "hartree": units.Hartree}
_FORCE_UNITS = {"a.u.": units.Hartree / units.Bohr, "hartree/bohr": units.Hartree / units.Bohr}
_STRESS_UNITS = {"gpa": GPA, "bar": BAR}


@dataclass(frozen=True)
class Cp2kParameters:
    """Settings of a CP2K Quickstep single point; validated on construction (``ParameterError`` names the key).

    The physics (method, basis, cutoff, k-points, smearing, spin, dispersion) is the label
    protocol (:meth:`protocol`); the rest only decides how the SCF gets there.
    """

    method: str = "PBE"
    """Exchange-correlation functional: PBE, BLYP or PADE (LDA); the GTH pseudopotentials of the same name."""
    basis: str = "DZVP-MOLOPT-SR-GTH"
    """A MOLOPT basis set of CP2K's ``BASIS_MOLOPT`` file, for every element."""
    cutoff: float = 400 * RYDBERG
    """Plane-wave cutoff of the finest density grid, eV (CP2K's CUTOFF is this in Ry: 400 Ry = 5442 eV)."""
    rel_cutoff: float = 50 * RYDBERG
    """Cutoff of the reference grid for mapping Gaussians onto the multigrids, eV (50 Ry)."""
    kpoint_density: float | None = None
    """k-points per Å⁻¹ for periodic cells (ASE's kptdensity); None: the Γ point."""
    smearing: float | None = None
    """Fermi–Dirac width k_B·T, eV; None: integer occupations. Needs diagonalization (chosen by ``scf: auto``)."""
    spin: str = "auto"
    """``auto`` (RKS for singlets, UKS otherwise) or ``unrestricted`` (UKS always)."""
    dispersion: str | None = None
    """``d3bj`` or ``d3zero`` (CP2K's PAIR_POTENTIAL DFTD3(BJ) / DFTD3 with ``dftd3.dat``), or None."""
    charge: int | None = None
    """Total charge (e); None: ``atoms.info['charge']``, else 0."""
    multiplicity: int | None = None
    """Spin multiplicity; None: ``atoms.info['multiplicity']``, else 1."""
    vacuum: float = 4.0
    """Molecules: empty space around the molecule on every side of its cubic box, Å."""
    poisson: str = "wavelet"
    """Molecules: Poisson solver, ``wavelet`` (compact box) or ``mt`` (Martyna–Tuckerman, needs a box ≈ twice
    the molecule)."""
    scf: str = "auto"
    """``ot`` (orbital transformation), ``diagonalization`` (Broyden mixing), or ``auto``: diagonalization
    with k-points or smearing (OT cannot do either), OT otherwise."""
    eps_scf: float = 1e-6
    """SCF convergence threshold (CP2K's EPS_SCF)."""
    max_scf: int = 50
    """SCF iterations (with OT: per outer cycle, up to 10 outer cycles); more: ``not_converged``."""
    mixing_alpha: float = 0.4
    """Broyden mixing fraction of the new density (diagonalization), 0 < x ≤ 1."""
    level_shift: float = 0.0
    """Level shift of the virtual orbitals (diagonalization), eV ≥ 0."""
    added_mos: int | None = None
    """Extra orbitals for smearing; None: max(10, a fifth of the occupied ones)."""
    eps_default: float = 1e-10
    """Quickstep's EPS_DEFAULT (screening of integrals)."""

    def __post_init__(self):
        def fail(key, problem):
            raise ParameterError(f"parameter {key!r}: {problem} (got {getattr(self, key)!r})")

        if not isinstance(self.method, str) or self.method.upper() not in METHODS:
            fail("method", f"must be one of {', '.join(METHODS)} (functionals with GTH pseudopotentials)")
        if not isinstance(self.basis, str) or "MOLOPT" not in self.basis.upper():
            fail("basis", "must be a MOLOPT basis set name, e.g. DZVP-MOLOPT-SR-GTH")
        for key in ("cutoff", "rel_cutoff", "vacuum", "eps_scf", "eps_default", "mixing_alpha"):
            value = getattr(self, key)
            if not _is_number(value) or value <= 0:
                fail(key, "must be a positive number")
        if self.cutoff < 50 * RYDBERG:
            fail("cutoff", f"is in eV: below 50 Ry ({50 * RYDBERG:.0f} eV) no Quickstep grid is usable")
        if self.mixing_alpha > 1:
            fail("mixing_alpha", "must be at most 1")
        for key in ("kpoint_density", "smearing"):
            value = getattr(self, key)
            if value is not None and (not _is_number(value) or value <= 0):
                fail(key, "must be a positive number or null")
        if self.spin not in SPINS:
            fail("spin", f"must be one of {', '.join(SPINS)}")
        if self.dispersion not in (None, "d3bj", "d3zero"):
            fail("dispersion", "must be d3bj, d3zero or null")
        if self.charge is not None and not _is_int(self.charge):
            fail("charge", "must be an integer or null")
        if self.multiplicity is not None and (not _is_int(self.multiplicity) or self.multiplicity < 1):
            fail("multiplicity", "must be an integer ≥ 1 or null")
        if self.poisson not in POISSON_SOLVERS:
            fail("poisson", f"must be one of {', '.join(POISSON_SOLVERS)}")
        if self.scf not in SCF_METHODS:
            fail("scf", f"must be one of {', '.join(SCF_METHODS)}")
        if self.scf == "ot" and (self.smearing is not None or self.kpoint_density is not None):
            fail("scf", "OT cannot do smearing or k-points: use 'diagonalization' or 'auto'")
        if not _is_int(self.max_scf) or self.max_scf < 1:
            fail("max_scf", "must be an integer ≥ 1")
        if not _is_number(self.level_shift) or self.level_shift < 0:
            fail("level_shift", "must be a number ≥ 0 (eV)")
        if self.added_mos is not None and (not _is_int(self.added_mos) or self.added_mos < 1):
            fail("added_mos", "must be an integer ≥ 1 or null")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Cp2kParameters:
        """Parameters from a mapping; unknown keys and bad values raise ``ParameterError``."""
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ParameterError(f"unknown parameter {key!r} (known: {', '.join(known)})")
        return cls(**data)

    @classmethod
    def from_protocol(cls, protocol: LabelProtocol, overrides: Mapping[str, Any] | None = None) -> Cp2kParameters:
        """Parameters for a ``cp2k`` protocol, with numerical ``overrides`` (which may not change the physics)."""
        if protocol.labeller != "cp2k":
            raise ParameterError(f"protocol of labeller {protocol.labeller!r} given to the cp2k labeller")
        physics = {
            key: value
            for key, value in protocol.to_dict().items()
            if key != "labeller" and (value is not None or key in ("kpoint_density", "smearing", "dispersion"))
        }
        overrides = dict(overrides or {})
        clash = sorted(set(physics) & set(overrides))
        if clash:
            raise ParameterError(f"parameter {clash[0]!r} is part of the protocol: set it there, not in parameters")
        return cls.from_dict({**physics, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Every key as a JSON-compatible value."""
        return asdict(self)

    def protocol(self) -> LabelProtocol:
        """The physics of these settings."""
        return LabelProtocol(
            labeller="cp2k",
            method=self.method.upper(),
            basis=self.basis,
            cutoff=float(self.cutoff),
            kpoint_density=self.kpoint_density,
            smearing=self.smearing,
            spin=self.spin,
            dispersion=self.dispersion,
        )

    def method_label(self) -> str:
        """Level of theory for ``info['method']``, e.g. ``PBE/DZVP-MOLOPT-SR-GTH 400 Ry (CP2K Quickstep, GTH)``."""
        dispersion = {"d3bj": "-D3(BJ)", "d3zero": "-D3(0)"}.get(self.dispersion or "", "")
        extras = f" {self.cutoff / RYDBERG:.0f} Ry"
        if self.kpoint_density is not None:
            extras += f", k-point density {self.kpoint_density:g} Å"
        if self.smearing is not None:
            extras += f", smearing {self.smearing:g} eV"
        return f"{self.method.upper()}{dispersion}/{self.basis}{extras} (CP2K Quickstep, GTH)"

    def uses_diagonalization(self, atoms: Atoms) -> bool:
        """True when the SCF of ``atoms`` runs with diagonalization rather than OT."""
        if self.scf != "auto":
            return self.scf == "diagonalization"
        return self.smearing is not None or kpoint_mesh(atoms, self.kpoint_density) != (1, 1, 1)


def molecule_box(atoms: Atoms, vacuum: float) -> float:
    """Edge (Å) of the cubic box of a molecule: its largest extent plus ``vacuum`` on both sides, up to 0.5 Å."""
    extent = float(np.ptp(atoms.positions, axis=0).max()) if len(atoms) else 0.0
    return math.ceil(2 * (extent + 2 * vacuum)) / 2


def cp2k_input(atoms: Atoms, parameters: Cp2kParameters) -> tuple[dict, Atoms, tuple[int, int, int]]:
    """The CP2K input of a single point of ``atoms`` (aiida-cp2k's nested-dict form), the structure CP2K gets,
    and the k-point mesh.

    The structure is ``atoms`` itself for a periodic cell and ``atoms`` in its cubic box (positions
    unchanged: CP2K centres them, CENTER_COORDINATES) for a molecule. Charge and multiplicity
    come from the parameters, else from ``atoms.info``. Raises ``ValueError`` for a structure
    periodic in only some directions.
    """
    charge, multiplicity = resolve_charge_multiplicity(atoms, parameters)
    periodic = bool(atoms.pbc.any())
    if periodic and not atoms.pbc.all():
        raise ValueError(f"pbc {atoms.pbc.tolist()}: the CP2K labeller takes cells periodic in all directions or none")
    structure = atoms.copy()
    structure.calc = None
    if not periodic:
        edge = molecule_box(atoms, parameters.vacuum)
        structure.set_cell([edge, edge, edge])
    mesh = kpoint_mesh(atoms, parameters.kpoint_density) if periodic else (1, 1, 1)
    functional = METHODS[parameters.method.upper()]
    diagonalization = parameters.uses_diagonalization(atoms)
    scf: dict[str, Any] = {"EPS_SCF": parameters.eps_scf, "MAX_SCF": parameters.max_scf, "SCF_GUESS": "ATOMIC"}
    if diagonalization:
        scf["DIAGONALIZATION"] = {"_": "ON", "ALGORITHM": "STANDARD"}
        scf["MIXING"] = {"METHOD": "BROYDEN_MIXING", "ALPHA": parameters.mixing_alpha}
        if parameters.level_shift > 0:
            scf["LEVEL_SHIFT"] = parameters.level_shift / units.Hartree
        if parameters.smearing is not None:
            scf["ADDED_MOS"] = parameters.added_mos or max(10, _occupied_orbitals(atoms, charge) // 5)
            scf["SMEAR"] = {
                "_": "ON",
                "METHOD": "FERMI_DIRAC",
                "ELECTRONIC_TEMPERATURE": parameters.smearing / units.kB,
            }
    else:
        scf["OT"] = {"MINIMIZER": "DIIS", "PRECONDITIONER": "FULL_SINGLE_INVERSE"}
        scf["OUTER_SCF"] = {"MAX_SCF": 10, "EPS_SCF": parameters.eps_scf}
    xc: dict[str, Any] = {"XC_FUNCTIONAL": {"_": functional}}
    if parameters.dispersion:
        xc["VDW_POTENTIAL"] = {
            "POTENTIAL_TYPE": "PAIR_POTENTIAL",
            "PAIR_POTENTIAL": {
                "TYPE": "DFTD3(BJ)" if parameters.dispersion == "d3bj" else "DFTD3",
                "PARAMETER_FILE_NAME": "dftd3.dat",
                "REFERENCE_FUNCTIONAL": functional,
            },
        }
    dft: dict[str, Any] = {
        "BASIS_SET_FILE_NAME": "BASIS_MOLOPT",
        "POTENTIAL_FILE_NAME": "GTH_POTENTIALS",
        "CHARGE": charge,
        "MULTIPLICITY": multiplicity,
        "MGRID": {"CUTOFF": parameters.cutoff / RYDBERG, "REL_CUTOFF": parameters.rel_cutoff / RYDBERG},
        "QS": {"EPS_DEFAULT": parameters.eps_default},
        "SCF": scf,
        "XC": xc,
    }
    if multiplicity > 1 or parameters.spin == "unrestricted":
        dft["UKS"] = True
    cell: dict[str, Any] = {"PERIODIC": "XYZ" if periodic else "NONE"}
    if periodic:
        dft["POISSON"] = {"PERIODIC": "XYZ", "PSOLVER": "PERIODIC"}
    else:
        dft["POISSON"] = {"PERIODIC": "NONE", "PSOLVER": parameters.poisson.upper()}
    kinds = [
        {"_": element, "BASIS_SET": parameters.basis, "POTENTIAL": f"GTH-{functional}"}
        for element in sorted(set(atoms.get_chemical_symbols()))
    ]
    force_eval: dict[str, Any] = {
        "METHOD": "Quickstep",
        "DFT": dft,
        "SUBSYS": {"CELL": cell, "KIND": kinds},
        "PRINT": {"FORCES": {"_": "ON"}},
    }
    if not periodic:
        force_eval["SUBSYS"]["TOPOLOGY"] = {"CENTER_COORDINATES": {"_": "ON"}}
    if periodic:
        force_eval["STRESS_TENSOR"] = "ANALYTICAL"
        force_eval["PRINT"]["STRESS_TENSOR"] = {"_": "ON"}
    data = {"GLOBAL": {"RUN_TYPE": "ENERGY_FORCE", "PRINT_LEVEL": "LOW"}, "FORCE_EVAL": force_eval}
    return data, structure, mesh


def _occupied_orbitals(atoms: Atoms, charge: int) -> int:
    # all electrons; an upper bound of the valence orbitals is enough for ADDED_MOS
    return max(1, (int(atoms.numbers.sum()) - charge) // 2)


def escalate(parameters: Mapping[str, Any], retry: int) -> dict[str, Any]:
    """The settings of the ``retry``-th (0-based) retry of structures whose SCF did not converge.

    Twice the SCF iterations every time; from the second retry on, diagonalization with a
    gentler Broyden mixing (0.2) instead of OT; from the third on, a level shift of 0.1 Hartree
    as well. None of these changes the converged result.
    """
    data = dict(parameters)
    data["max_scf"] = 2 * int(data.get("max_scf", Cp2kParameters.max_scf))
    if retry >= 1 and data.get("scf", "auto") != "diagonalization":
        data["scf"] = "diagonalization"
    if retry >= 1:
        data["mixing_alpha"] = min(float(data.get("mixing_alpha", Cp2kParameters.mixing_alpha)), 0.2)
    if retry >= 2:
        data["level_shift"] = max(float(data.get("level_shift", 0.0)), 0.1 * units.Hartree)
    return data


@dataclass(frozen=True)
class Cp2kSinglePoint:
    """Labels read from a CP2K output, in eV, eV/Å and eV/Å³."""

    energy: float
    """Total energy (the free energy with smearing), eV."""
    forces: np.ndarray
    """(N, 3) eV/Å."""
    stress: np.ndarray | None
    """(3, 3) eV/Å³ in ASE's sign (positive under tension), or None (no stress printed)."""
    scf_steps: int | None
    """Steps of the last SCF, when printed."""


class Cp2kOutputError(ValueError):
    """A CP2K output without what a single point must print (energy, forces for every atom)."""


_ENERGY = re.compile(r"^ ENERGY\| Total FORCE_EVAL \( \w+ \) energy \[([^\]]+)\]:?\s+(\S+)", re.MULTILINE)
_SCF_STEPS = re.compile(r"SCF run converged in\s+(\d+) steps")


def parse_single_point(text: str, natoms: int) -> Cp2kSinglePoint:
    """Energy, forces and (if printed) stress of the last force evaluation in a CP2K output (``aiida.out``).

    Reads the formats of CP2K 2023–2024 (``energy [a.u.]:``, ``ATOMIC FORCES in [a.u.]``) and of
    2025 on (``energy [hartree]``, ``FORCES| Atomic forces [hartree/bohr]``), the stress as
    ``STRESS| Analytical stress tensor [GPa]`` (or ``[bar]``); raises :class:`Cp2kOutputError`
    naming what is missing.
    """
    energies = _ENERGY.findall(text)
    if not energies:
        raise Cp2kOutputError("no 'ENERGY| Total FORCE_EVAL' line: CP2K printed no total energy")
    unit, value = energies[-1]
    if unit.lower() not in _ENERGY_UNITS:
        raise Cp2kOutputError(f"energy in unknown unit [{unit}]")
    energy = float(value) * _ENERGY_UNITS[unit.lower()]
    forces = _parse_forces(text, natoms)
    stress = _parse_stress(text)
    steps = _SCF_STEPS.findall(text)
    return Cp2kSinglePoint(energy=energy, forces=forces, stress=stress, scf_steps=int(steps[-1]) if steps else None)


def _parse_forces(text: str, natoms: int) -> np.ndarray:
    lines = text.splitlines()
    # CP2K ≤ 2023: " ATOMIC FORCES in [a.u.]", a header line "# Atom Kind Element X Y Z", one line per atom
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("ATOMIC FORCES in [")]
    if starts:
        start = starts[-1]
        unit = lines[start].split("[", 1)[1].split("]", 1)[0].lower()
        rows = []
        for line in lines[start + 1 :]:
            fields_ = line.split()
            if not fields_ or fields_[0] == "#":
                continue
            if line.strip().startswith("SUM OF ATOMIC FORCES"):
                break
            rows.append([float(x) for x in fields_[3:6]])
        return _forces_array(rows, unit, natoms)
    # CP2K ≥ 2024: " FORCES| Atomic forces [hartree/bohr]", then " FORCES| <atom> <x> <y> <z> <|f|>" lines
    starts = [i for i, line in enumerate(lines) if line.startswith(" FORCES| Atomic forces [")]
    if starts:
        start = starts[-1]
        unit = lines[start].split("[", 1)[1].split("]", 1)[0].lower()
        rows = []
        for line in lines[start + 1 :]:
            if not line.strip():
                continue
            if not line.startswith(" FORCES|"):
                break
            fields_ = line.split()[1:]
            if fields_ and fields_[0].isdigit():
                rows.append([float(x) for x in fields_[1:4]])
        return _forces_array(rows, unit, natoms)
    raise Cp2kOutputError("no forces in the output (FORCE_EVAL/PRINT/FORCES missing, or the run stopped before)")


def _forces_array(rows: list, unit: str, natoms: int) -> np.ndarray:
    if unit not in _FORCE_UNITS:
        raise Cp2kOutputError(f"forces in unknown unit [{unit}]")
    if len(rows) != natoms:
        raise Cp2kOutputError(f"forces of {len(rows)} atoms printed for {natoms} atoms")
    return np.asarray(rows, dtype=float) * _FORCE_UNITS[unit]


def _parse_stress(text: str) -> np.ndarray | None:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^ STRESS\| Analytical stress tensor \[", line)]
    if not starts:
        return None
    start = starts[-1]
    unit = lines[start].split("[", 1)[1].split("]", 1)[0].lower()
    if unit not in _STRESS_UNITS:
        raise Cp2kOutputError(f"stress in unknown unit [{unit}]")
    rows = {}
    for line in lines[start + 1 : start + 6]:
        fields_ = line.split()
        if len(fields_) == 5 and fields_[0] == "STRESS|" and fields_[1] in ("x", "y", "z"):
            rows[fields_[1]] = [float(x) for x in fields_[2:5]]
    if sorted(rows) != ["x", "y", "z"]:
        raise Cp2kOutputError("the stress tensor is not printed in full")
    # CP2K prints the pressure tensor (positive under compression); ASE's stress has the opposite sign
    return -np.array([rows["x"], rows["y"], rows["z"]], dtype=float) * _STRESS_UNITS[unit]
