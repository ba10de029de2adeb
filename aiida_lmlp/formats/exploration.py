"""Exploration settings and results: the protocol with its validation, trajectory reports, summary.json, visited frames.

Torch-free and aiida-free, shared by the engine (:mod:`aiida_lmlp.potential.exploration`, which runs
the protocol) and the daemon side (spec validation, the ``lmlp.explore`` CalcJob and its parser).

Exploration with an lMLP ensemble: MD, relaxations, NEB and single points that stop once the model is unsure.

The engine side of ``lmlp explore`` (and of the ``lmlp.explore`` CalcJob): starting structures
are propagated with :class:`~aiida_lmlp.potential.LmlpCalculator` according to an
:class:`ExplorationProtocol`; visited conformations are recorded with the predicted energy,
forces and their uncertainties and a descriptor fingerprint (:func:`descriptor_fingerprints`, for
farthest-point sampling of candidates). A trajectory stops as soon as the energy uncertainty per atom or
the largest force-component uncertainty exceeds the protocol's threshold: beyond that point the
model's predictions are meaningless and the conformation is a candidate for a new reference
calculation. A structure the model cannot handle is reported in its trajectory's ``error`` and
never takes down the other trajectories.

Units: eV, Å, fs, K; forces eV/Å.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from aiida_lmlp.formats.atomic_files import write_atomically
from aiida_lmlp.formats.conformation_arrays import FINGERPRINT_KEY

__all__ = [
    "FINGERPRINT_KEY",
    "KINDS",
    "ExplorationProtocol",
    "ExplorationResult",
    "ProtocolError",
    "TrajectoryReport",
    "read_visited",
    "trajectory_counts",
]

#: The kinds of exploration a protocol can ask for.
KINDS = ("md", "relax", "neb", "evaluate")
OPTIMIZERS = ("bfgs", "fire")

# key -> {kind: default} for every kind the key applies to
_DEFAULTS: dict[str, dict[str, Any]] = {
    "temperature": {"md": 300.0},
    "timestep": {"md": 0.5},
    "friction": {"md": 0.01},
    "seed": {"md": 0},
    "replicas": {"md": 1},
    "optimizer": {"relax": "bfgs", "neb": "fire"},
    "fmax": {"relax": 0.05, "neb": 0.1},
    "images": {"neb": 5},
    "climb": {"neb": True},
    "steps": {"md": 200, "relax": 200, "neb": 100},
    "sample_every": {"md": 10, "relax": 1, "neb": 1, "evaluate": 1},
    "stop_energy_uncertainty_per_atom": {kind: None for kind in KINDS},
    "stop_forces_uncertainty": {kind: None for kind in KINDS},
    "max_frames": {kind: 10000 for kind in KINDS},
}


class ProtocolError(ValueError):
    """An exploration protocol is invalid; :attr:`key` names the offending key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"protocol key '{key}': {problem}")


def _number(key: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    """A float ≥ ``minimum`` (> with ``strict``); numeric strings such as YAML 1.1's ``1e-3`` are accepted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ProtocolError(key, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ProtocolError(key, f"must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ProtocolError(key, f"must be a finite number {'>' if strict else '≥'} {minimum:g}, got {value!r}")
    return value


def _integer(key: str, value: Any, *, minimum: int) -> int:
    """An integer ≥ ``minimum`` (an integral float such as ``200.0`` is accepted)."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ProtocolError(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ProtocolError(key, f"must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


@dataclass
class ExplorationProtocol:
    """What to do with every starting structure (units eV, Å, fs, K).

    ``kind`` is ``md`` (Langevin NVT, the default), ``relax`` (BFGS or FIRE), ``neb`` (IDPP-interpolated
    nudged elastic band between endpoint pairs) or ``evaluate`` (one single point per
    structure). Keys left ``None`` take the kind's default (see ``docs/exploration.md``); a key
    that does not apply to the kind, or a value out of range, raises :class:`ProtocolError`.
    """

    kind: str = "md"
    temperature: float | None = None  # K (md)
    timestep: float | None = None  # fs (md)
    friction: float | None = None  # 1/fs (md)
    seed: int | None = None  # md: velocities and Langevin noise of trajectory i from default_rng([seed, i])
    replicas: int | None = None  # md: trajectories per start structure (replica r > 0: default_rng([seed, i, r]))
    optimizer: str | None = None  # bfgs | fire (relax, neb)
    fmax: float | None = None  # eV/Å (relax, neb)
    images: int | None = None  # intermediate images (neb)
    climb: bool | None = None  # climbing image (neb)
    steps: int | None = None  # MD steps or optimiser steps (md, relax, neb)
    sample_every: int | None = None  # record every n-th step
    stop_energy_uncertainty_per_atom: float | None = None  # eV/atom; None = never stop
    stop_forces_uncertainty: float | None = None  # eV/Å, max over atoms and components; None = never stop
    max_frames: int | None = None  # cap on recorded frames in all trajectories together

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ProtocolError("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for key, defaults in _DEFAULTS.items():
            value = getattr(self, key)
            if self.kind not in defaults:
                if value is not None:
                    raise ProtocolError(
                        key, f"does not apply to kind '{self.kind}' (its keys: {', '.join(self.keys(self.kind))})"
                    )
                continue
            setattr(self, key, defaults[self.kind] if value is None else self._checked(key, value))

    @staticmethod
    def _checked(key: str, value: Any) -> Any:
        if key in ("temperature", "friction", "stop_energy_uncertainty_per_atom", "stop_forces_uncertainty"):
            return _number(key, value, minimum=0.0)
        if key in ("timestep", "fmax"):
            return _number(key, value, minimum=0.0, strict=True)
        if key in ("seed", "steps"):
            return _integer(key, value, minimum=0)
        if key in ("images", "sample_every", "max_frames", "replicas"):
            return _integer(key, value, minimum=1)
        if key == "climb":
            if not isinstance(value, (bool, np.bool_)):
                raise ProtocolError(key, f"must be true or false, got {value!r}")
            return bool(value)
        if key == "optimizer":
            if not isinstance(value, str) or value.lower() not in OPTIMIZERS:
                raise ProtocolError(key, f"must be one of {', '.join(OPTIMIZERS)}, got {value!r}")
            return value.lower()
        raise AssertionError(key)  # pragma: no cover

    @staticmethod
    def keys(kind: str) -> list[str]:
        """The protocol keys that apply to ``kind`` (``kind`` itself first)."""
        return ["kind"] + [key for key, defaults in _DEFAULTS.items() if kind in defaults]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplorationProtocol:
        """Validate a protocol mapping (e.g. parsed ``protocol.yaml``) and fill in the defaults.

        ``kind`` defaults to ``md`` (so ``{}`` is MD with every default). Raises
        :class:`ProtocolError` naming the key for an unknown key, a key of another kind or an
        out-of-range value.
        """
        if not isinstance(data, Mapping):
            raise ProtocolError("kind", f"the protocol must be a mapping of keys to values, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                kind = data.get("kind", "md")
                hint = f" (keys for kind '{kind}': {', '.join(cls.keys(kind))})" if kind in KINDS else ""
                raise ProtocolError(str(key), f"unknown key{hint}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The resolved protocol: every key that applies to the kind, defaults filled in."""
        return {key: getattr(self, key) for key in self.keys(self.kind)}


@dataclass
class TrajectoryReport:
    """What happened to one starting structure (or NEB path); the ``trajectories`` entries of summary.json."""

    start_index: int
    replica: int = 0  # md: which of the start structure's replicas (protocol key ``replicas``)
    steps: int = 0  # dynamics/optimiser steps done (0 for evaluate or an error before the first step)
    frames: int = 0  # conformations recorded
    stopped_early: bool = False  # stopped because an uncertainty passed its threshold
    reason: str | None = None  # e.g. "energy uncertainty 0.12 eV/atom > 0.05"
    max_energy_uncertainty_per_atom: float | None = None  # eV/atom, over every evaluated conformation
    max_forces_uncertainty: float | None = None  # eV/Å, over every evaluated conformation
    error: str | None = None  # why the structure could not be (fully) explored
    converged: bool | None = None  # relax/neb: fmax reached (None for md/evaluate)
    truncated: bool = False  # the max_frames cap ended this trajectory or kept it from running

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ExplorationResult:
    """The outcome of :func:`explore`: recorded frames (ASE Atoms, no calculator) and one report per trajectory."""

    protocol: ExplorationProtocol
    model_sha256: str | None
    trajectories: list[TrajectoryReport] = field(default_factory=list)
    frames: list[Atoms] = field(default_factory=list)
    complete: bool = False

    def summary(self) -> dict[str, Any]:
        """The content of summary.json."""
        return {
            "protocol": self.protocol.to_dict(),
            "model_sha256": self.model_sha256,
            "trajectories": [t.to_dict() for t in self.trajectories],
            "frames": sum(t.frames for t in self.trajectories),
            "complete": self.complete,
        }

    def write_summary(self, path: str | os.PathLike) -> None:
        """Write :meth:`summary` as JSON to ``path`` atomically (temporary file and rename)."""
        path = Path(path)
        text = json.dumps(self.summary(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        write_atomically(path, text)


def trajectory_counts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """How the trajectories of an exploration ended, from its :meth:`ExplorationResult.summary`.

    ``{"trajectories": count, "stopped_early": count stopped by an uncertainty threshold,
    "mean_steps": mean steps per trajectory}``: as a version improves, fewer trajectories stop
    and those that do stop later.
    """
    trajectories = summary.get("trajectories") or []
    steps = [int(t.get("steps") or 0) for t in trajectories]
    return {
        "trajectories": len(trajectories),
        "stopped_early": sum(bool(t.get("stopped_early")) for t in trajectories),
        "mean_steps": sum(steps) / len(steps) if steps else 0.0,
    }


def read_visited(path: str | os.PathLike) -> list[Atoms]:
    """Read a visited.extxyz, also one cut short by a killed run: every complete frame, [] for an empty file."""
    from ase.io import read

    text = Path(path).read_text(encoding="utf-8")
    frames: list[Atoms] = []
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines):
        try:
            count = int(lines[start].strip())
        except ValueError:
            break
        end = start + 2 + count
        if end > len(lines) or not lines[end - 1].endswith("\n"):
            break  # the last frame was still being written
        try:
            frame = read(io.StringIO("".join(lines[start:end])), format="extxyz")
        except Exception:  # ASE raises many types for a damaged frame; keep what came before
            break
        frames.append(_fingerprint_as_vector(frame))
        start = end
    return frames


def _fingerprint_as_vector(frame: Atoms) -> Atoms:
    """Undo ASE's extxyz reading of a 1-long vector as a scalar and a 9-long one as a 3x3 matrix (Fortran order)."""
    value = frame.info.get(FINGERPRINT_KEY)
    if value is not None:
        value = np.asarray(value, dtype=np.float64)
        frame.info[FINGERPRINT_KEY] = value.reshape(-1, order="F") if value.ndim != 1 else value
    return frame
