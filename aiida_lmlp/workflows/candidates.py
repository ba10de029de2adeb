"""Which explored conformations to label next: uncertainty window, distance filter, farthest-point sampling.

The decision of one active-learning iteration, taken in the AiiDA daemon on the arrays that
``lmlp explore`` recorded (pure NumPy and ASE; no torch, no aiida). Units: eV, Å; energy
uncertainties per atom (eV/atom), force uncertainties per component (eV/Å).

Every visited conformation gets exactly one category, decided in this order (the first rule
that applies wins):

1. ``too_close``: its smallest interatomic distance is below ``min_distance`` (``<``);
2. ``unphysical``: ``ΔE/N > energy_upper · RMSE_E`` or ``max ΔF > forces_upper · RMSE_F``, or
   an uncertainty is not finite: the model is so far outside its data that the conformation is
   most likely unphysical (or the trajectory ran away) and not worth a reference calculation;
3. ``uncertain``: ``ΔE/N > energy_lower · RMSE_E`` or ``max ΔF > forces_lower · RMSE_F``
   (and, by 2., below or at both upper thresholds);
4. ``known``: at or below both lower thresholds.

Those of the uncertain ones that farthest-point sampling picks become ``selected`` (so the
count of uncertain conformations includes the selected ones). ``RMSE_E`` and ``RMSE_F`` are the
potential's test RMSEs, the mean of the members' RMSEs on their own test sets (the potential's
``rmse_energy_per_atom`` and ``rmse_forces``, also the floor of the uncertainty of Eq. 23; the
ensemble RMSE over the union of the test sets would be 1.5–2.5× lower, since most of those
conformations are training data of most members), floored at ``rmse_floor_energy`` and
``rmse_floor_forces``: ``RMSE = max(test RMSE, floor)``. A model without a test RMSE (0: no test set) then still has
thresholds of a sensible absolute size instead of zero, which would call every conformation
unphysical; the floors can be lowered for potentials more accurate than that. The defaults of
the thresholds are those of the lMLP authors' code: label above 3× the energy and 6× the force
test RMSE, reject above 30× and 60×.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "CATEGORIES",
    "TRAJECTORY_STOPS",
    "SelectionResult",
    "SelectionSettings",
    "SelectionSettingsError",
    "candidate_ceiling",
    "forces_uncertainty_max",
    "min_interatomic_distances",
    "select_candidates",
]

#: The category of every visited conformation (see the module docstring for the rules).
CATEGORIES = ("known", "uncertain", "unphysical", "too_close", "selected")

#: Where an exploration trajectory of a campaign may stop (:meth:`SelectionSettings.trajectory_stop`).
TRAJECTORY_STOPS = ("lower", "upper", "never")

# (lower, upper) threshold pairs that must be in increasing order
_ORDERED = (("energy_lower", "energy_upper"), ("forces_lower", "forces_upper"))


class SelectionSettingsError(ValueError):
    """Invalid selection settings; :attr:`keys` names the offending key(s)."""

    def __init__(self, keys: str | tuple[str, ...], problem: str):
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.problem = problem
        names = " and ".join(f"'{key}'" for key in self.keys)
        super().__init__(f"selection setting{'s' if len(self.keys) > 1 else ''} {names}: {problem}")


def _number(key: str, value: Any, *, minimum: float, strict: bool = False, infinite: bool = False) -> float:
    """A float ≥ ``minimum`` (> with ``strict``, +inf allowed with ``infinite``); numeric strings are accepted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SelectionSettingsError(key, f"must be a number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SelectionSettingsError(key, f"must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or value == -math.inf or (value == math.inf and not infinite):
        raise SelectionSettingsError(key, f"must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise SelectionSettingsError(key, f"must be a number {'>' if strict else '≥'} {minimum:g}, got {value!r}")
    return value


def _integer(key: str, value: Any, *, minimum: int) -> int:
    """An integer ≥ ``minimum`` (an integral float such as ``20.0`` is accepted)."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SelectionSettingsError(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SelectionSettingsError(key, f"must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SelectionSettings:
    """How to pick the conformations to label from one exploration (validated on construction).

    Thresholds are multiples of the potential's test RMSE (energy per atom in eV/atom, force
    component in eV/Å, each floored, see the module docstring): a conformation is labelled when
    its energy uncertainty per atom exceeds ``energy_lower`` or its largest force-component
    uncertainty exceeds ``forces_lower``, and rejected as unphysical when either exceeds its
    upper threshold (``inf`` never rejects). ``min_distance`` (Å): conformations with two atoms
    closer than this are rejected. ``max_per_iteration``: at most this many are selected per
    iteration (and never more than the DFT budget left). Invalid values raise
    :class:`SelectionSettingsError` naming the key(s).
    """

    energy_lower: float = 3.0
    forces_lower: float = 6.0
    energy_upper: float = 30.0
    forces_upper: float = 60.0
    min_distance: float = 0.65  # Å
    max_per_iteration: int = 20
    rmse_floor_energy: float = 1e-3  # eV/atom
    rmse_floor_forces: float = 0.05  # eV/Å

    def __post_init__(self):
        checked = {
            "energy_lower": _number("energy_lower", self.energy_lower, minimum=0.0),
            "forces_lower": _number("forces_lower", self.forces_lower, minimum=0.0),
            "energy_upper": _number("energy_upper", self.energy_upper, minimum=0.0, infinite=True),
            "forces_upper": _number("forces_upper", self.forces_upper, minimum=0.0, infinite=True),
            "min_distance": _number("min_distance", self.min_distance, minimum=0.0),
            "max_per_iteration": _integer("max_per_iteration", self.max_per_iteration, minimum=1),
            "rmse_floor_energy": _number("rmse_floor_energy", self.rmse_floor_energy, minimum=0.0, strict=True),
            "rmse_floor_forces": _number("rmse_floor_forces", self.rmse_floor_forces, minimum=0.0, strict=True),
        }
        for lower, upper in _ORDERED:
            if checked[lower] >= checked[upper]:
                raise SelectionSettingsError(
                    (lower, upper),
                    f"thresholds in the wrong order: {lower} ({checked[lower]:g}) must be below "
                    f"{upper} ({checked[upper]:g})",
                )
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SelectionSettings:
        """Validate a settings mapping (e.g. a WorkChain's ``Dict`` input); missing keys take the defaults.

        Raises :class:`SelectionSettingsError` naming the key for an unknown key, a value that is
        not a number (or not an integer for ``max_per_iteration``), a negative value, a floor ≤ 0,
        or both keys of a lower/upper pair in the wrong order.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise SelectionSettingsError("settings", f"must be a mapping of keys to values, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise SelectionSettingsError(str(key), f"unknown key (known keys: {', '.join(known)})")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Every setting, defaults filled in (JSON-ready except an infinite upper threshold)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def floored_rmses(self, rmse_energy_per_atom: float, rmse_forces: float) -> tuple[float, float]:
        """The RMSEs the thresholds are multiples of: ``max(test RMSE, floor)`` (eV/atom, eV/Å)."""
        return (
            max(_rmse("rmse_energy_per_atom", rmse_energy_per_atom), self.rmse_floor_energy),
            max(_rmse("rmse_forces", rmse_forces), self.rmse_floor_forces),
        )

    def trajectory_stop(self, rmse_energy_per_atom: float, rmse_forces: float, at: str) -> dict[str, float | None]:
        """Exploration stop thresholds at the window's ``lower`` or ``upper`` bound, in absolute units.

        Returns the ``stop_energy_uncertainty_per_atom`` (eV/atom) and ``stop_forces_uncertainty``
        (eV/Å) of an exploration protocol: a trajectory ends at its first conformation that this
        selection would call uncertain (``lower``) or unphysical (``upper``; an infinite upper
        threshold gives ``None``, never stop). ``at="never"`` gives ``None`` for both.
        """
        if at not in TRAJECTORY_STOPS:
            raise SelectionSettingsError("stop_at", f"must be one of {', '.join(TRAJECTORY_STOPS)}, got {at!r}")
        if at == "never":
            return {"stop_energy_uncertainty_per_atom": None, "stop_forces_uncertainty": None}
        rmse_e, rmse_f = self.floored_rmses(rmse_energy_per_atom, rmse_forces)
        energy = self.energy_lower if at == "lower" else self.energy_upper
        forces = self.forces_lower if at == "lower" else self.forces_upper
        return {
            "stop_energy_uncertainty_per_atom": energy * rmse_e if math.isfinite(energy) else None,
            "stop_forces_uncertainty": forces * rmse_f if math.isfinite(forces) else None,
        }


def candidate_ceiling(protocol: Mapping[str, Any], starts: int, stop_at: str) -> int | None:
    """The most uncertain conformations one exploration can yield, or ``None`` when it is not bounded.

    A trajectory that ends at its first conformation above the selection's lower thresholds
    (``stop_at`` ``lower`` and no fixed stop threshold in the exploration ``protocol``) yields
    at most that one: its earlier frames were all below them. So the bound is the number of
    trajectories: ``starts`` × ``replicas`` for MD, one per endpoint pair for NEB, ``starts``
    otherwise.
    """
    fixed = ("stop_energy_uncertainty_per_atom", "stop_forces_uncertainty")
    if stop_at != "lower" or any(protocol.get(key) is not None for key in fixed):
        return None
    kind = protocol.get("kind", "md")
    if kind == "neb":
        return starts // 2
    return starts * int(protocol.get("replicas", 1)) if kind == "md" else starts


@dataclass(frozen=True)
class SelectionResult:
    """The outcome of :func:`select_candidates` for ``S`` visited conformations.

    ``selected``: indices into the visited conformations, in the order farthest-point sampling
    picked them. ``category``: ``(S,)`` strings from :data:`CATEGORIES`. ``energy_ratio`` and
    ``forces_ratio``: ``(S,)`` uncertainties in multiples of the (floored) test RMSEs
    ``rmse_energy_per_atom`` (eV/atom) and ``rmse_forces`` (eV/Å) that were used.
    """

    selected: np.ndarray
    category: np.ndarray
    energy_ratio: np.ndarray
    forces_ratio: np.ndarray
    rmse_energy_per_atom: float
    rmse_forces: float
    settings: SelectionSettings

    def _count(self, *names: str) -> int:
        return int(np.isin(self.category, names).sum())

    @property
    def visited(self) -> int:
        """Conformations judged."""
        return int(self.category.shape[0])

    @property
    def known(self) -> int:
        """Conformations at or below both lower thresholds."""
        return self._count("known")

    @property
    def uncertain(self) -> int:
        """Conformations inside the uncertainty window, the selected ones included."""
        return self._count("uncertain", "selected")

    @property
    def unphysical(self) -> int:
        """Conformations above an upper threshold (or with a non-finite uncertainty)."""
        return self._count("unphysical")

    @property
    def too_close(self) -> int:
        """Conformations with two atoms closer than ``min_distance``."""
        return self._count("too_close")

    @property
    def n_selected(self) -> int:
        """Conformations selected for labelling."""
        return int(self.selected.shape[0])

    @property
    def fraction_uncertain(self) -> float:
        """``uncertain / visited`` (0 when nothing was visited): the campaign's convergence measure."""
        return self.uncertain / self.visited if self.visited else 0.0

    def counts(self) -> dict[str, Any]:
        """JSON-ready counts, the fraction of uncertain conformations and the absolute thresholds used."""
        s = self.settings
        e, f = self.rmse_energy_per_atom, self.rmse_forces
        return {
            "visited": self.visited,
            "known": self.known,
            "uncertain": self.uncertain,
            "unphysical": self.unphysical,
            "too_close": self.too_close,
            "selected": self.n_selected,
            "fraction_uncertain": self.fraction_uncertain,
            "rmse_energy_per_atom": e,
            "rmse_forces": f,
            "energy_thresholds": [s.energy_lower * e, s.energy_upper * e if math.isfinite(s.energy_upper) else None],
            "forces_thresholds": [s.forces_lower * f, s.forces_upper * f if math.isfinite(s.forces_upper) else None],
            "units": {"energy": "eV/atom", "forces": "eV/Angstrom"},
        }


def _vector(name: str, values: Any, length: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (length is not None and array.shape[0] != length):
        expected = "(S,)" if length is None else f"({length},)"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _rmse(name: str, value: Any) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return value


def _fingerprint_matrix(name: str, values: Any, rows: int | str, width: int | None) -> np.ndarray:
    """A finite ``(rows, width)`` float matrix; ``rows`` given as a letter is not checked."""
    array = np.asarray(values, dtype=np.float64)
    if (
        array.ndim != 2
        or (isinstance(rows, int) and array.shape[0] != rows)
        or (width is not None and array.shape[1] != width)
    ):
        expected = f"({rows}, {'F' if width is None else width})"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _squared_distances(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(R, K)`` squared Euclidean distances by ``|x|² + |y|² − 2 x·y`` (one matrix product, clamped at 0)."""
    squared = (rows**2).sum(1)[:, None] + (others**2).sum(1)[None, :] - 2.0 * rows @ others.T
    return np.maximum(squared, 0.0)


def _farthest_points(fingerprints: np.ndarray, score: np.ndarray, count: int, already: np.ndarray | None) -> list[int]:
    """Greedy max-min farthest-point sampling of ``count`` rows; ties go to the lowest row.

    Works with squared distances (same order as the distances). The first row is the one farthest
    from ``already`` when given, else the one with the largest ``score``.
    """
    if already is not None:
        nearest = np.full(fingerprints.shape[0], np.inf)
        for start in range(0, already.shape[0], 4096):  # bounded memory for a long labelling history
            nearest = np.minimum(nearest, _squared_distances(fingerprints, already[start : start + 4096]).min(1))
        first = int(np.argmax(nearest))
    else:
        nearest = np.full(fingerprints.shape[0], np.inf)
        first = int(np.argmax(score))
    picked = [first]
    available = np.ones(fingerprints.shape[0], dtype=bool)
    available[first] = False
    while len(picked) < count:
        last = fingerprints[picked[-1]]
        nearest = np.minimum(nearest, ((fingerprints - last) ** 2).sum(1))
        candidates = np.where(available, nearest, -np.inf)
        chosen = int(np.argmax(candidates))  # the first maximum: the lowest index wins a tie
        picked.append(chosen)
        available[chosen] = False
    return picked


def select_candidates(
    energy_uncertainty_per_atom: Any,
    forces_uncertainty_max: Any,
    min_distances: Any,
    fingerprints: Any | None,
    rmse_energy_per_atom: float,
    rmse_forces: float,
    settings: SelectionSettings | Mapping[str, Any] | None,
    budget_left: int,
    already_selected_fingerprints: Any | None = None,
) -> SelectionResult:
    """Categorise ``S`` visited conformations and pick the ones to label (units eV, Å).

    ``energy_uncertainty_per_atom``: ``(S,)`` ΔE / N in eV/atom; ``forces_uncertainty_max``:
    ``(S,)`` the largest ΔF component in eV/Å (:func:`forces_uncertainty_max`); ``min_distances``:
    ``(S,)`` smallest interatomic distance in Å (:func:`min_interatomic_distances`);
    ``fingerprints``: ``(S, F)`` descriptor fingerprints (the ``lmlp_fingerprint`` of
    ``lmlp explore``) or None; ``rmse_energy_per_atom`` (eV/atom) and ``rmse_forces`` (eV/Å): the
    potential's test RMSEs (0 when unknown; floored, see the module docstring);
    ``budget_left``: reference calculations still allowed in the campaign (≥ 0);
    ``already_selected_fingerprints``: ``(K, F)`` fingerprints of conformations labelled in
    earlier iterations, or None (ignored without ``fingerprints``). ``settings``: a
    :class:`SelectionSettings`, a mapping validated by :meth:`SelectionSettings.from_dict`, or
    None for the defaults.

    Categories follow the module docstring. Of the uncertain conformations at most
    ``min(settings.max_per_iteration, budget_left)`` are selected by greedy farthest-point
    sampling in fingerprint space (Euclidean distance): the first pick is the most uncertain
    one (largest ``max(energy_ratio, forces_ratio)``), or, with ``already_selected_fingerprints``,
    the one farthest from those; every next pick is the one whose distance to the nearest
    already picked (or already labelled) fingerprint is largest. Ties go to the lowest index.
    Without fingerprints the most uncertain ones are taken, in decreasing uncertainty (ties:
    lowest index). Raises :class:`ValueError` for inconsistent shapes, negative uncertainties,
    a negative or non-finite RMSE or budget, or non-finite fingerprints.
    """
    if not isinstance(settings, SelectionSettings):
        settings = SelectionSettings.from_dict(settings)
    energy = _vector("energy_uncertainty_per_atom", energy_uncertainty_per_atom)
    count = energy.shape[0]
    forces = _vector("forces_uncertainty_max", forces_uncertainty_max, count)
    distances = _vector("min_distances", min_distances, count)
    for name, values in (("energy_uncertainty_per_atom", energy), ("forces_uncertainty_max", forces)):
        if (values < 0).any():
            raise ValueError(f"{name} must not be negative")
    if isinstance(budget_left, (bool, np.bool_)) or not isinstance(budget_left, (int, np.integer)) or budget_left < 0:
        raise ValueError(f"budget_left must be an integer ≥ 0, got {budget_left!r}")
    if fingerprints is not None:
        fingerprints = _fingerprint_matrix("fingerprints", fingerprints, count, None)
        if already_selected_fingerprints is not None and np.size(already_selected_fingerprints) == 0:
            already_selected_fingerprints = None  # nothing labelled yet
        if already_selected_fingerprints is not None:
            already_selected_fingerprints = _fingerprint_matrix(
                "already_selected_fingerprints", already_selected_fingerprints, "K", fingerprints.shape[1]
            )
    rmse_e, rmse_f = settings.floored_rmses(rmse_energy_per_atom, rmse_forces)
    energy_ratio = energy / rmse_e
    forces_ratio = forces / rmse_f

    with np.errstate(invalid="ignore"):
        too_close = ~(distances >= settings.min_distance)  # a NaN distance counts as too close
        finite = np.isfinite(energy_ratio) & np.isfinite(forces_ratio)
        unphysical = ~finite | (energy_ratio > settings.energy_upper) | (forces_ratio > settings.forces_upper)
        uncertain = (energy_ratio > settings.energy_lower) | (forces_ratio > settings.forces_lower)
    category = np.full(count, "known", dtype="<U10")
    category[uncertain] = "uncertain"
    category[unphysical] = "unphysical"
    category[too_close] = "too_close"

    window = np.flatnonzero(category == "uncertain")
    take = min(settings.max_per_iteration, int(budget_left), window.shape[0])
    if take == 0:
        selected = np.zeros(0, dtype=np.int64)
    elif fingerprints is None:
        score = np.maximum(energy_ratio, forces_ratio)[window]
        order = np.lexsort((window, -score))  # decreasing uncertainty, then increasing index
        selected = window[order[:take]].astype(np.int64)
    else:
        score = np.maximum(energy_ratio, forces_ratio)[window]
        picked = _farthest_points(fingerprints[window], score, take, already_selected_fingerprints)
        selected = window[picked].astype(np.int64)
    category[selected] = "selected"
    return SelectionResult(
        selected=selected,
        category=category,
        energy_ratio=energy_ratio,
        forces_ratio=forces_ratio,
        rmse_energy_per_atom=rmse_e,
        rmse_forces=rmse_f,
        settings=settings,
    )


def _offsets(counts: Any, total: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 1).any():
        raise ValueError("counts must be a 1-D array of integers ≥ 1 (atoms per conformation)")
    if int(counts.sum()) != total:
        raise ValueError(f"counts add up to {int(counts.sum())} atoms, the per-atom array has {total}")
    counts = counts.astype(np.int64)
    return counts, np.cumsum(counts) - counts


def forces_uncertainty_max(forces_uncertainty: Any, counts: Any) -> np.ndarray:
    """The largest ΔF component (eV/Å) of each conformation: ``(A, 3)`` per atom and ``(S,)`` atom counts → ``(S,)``."""
    values = np.asarray(forces_uncertainty, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"forces_uncertainty must have shape (A, 3), got {values.shape}")
    counts, offsets = _offsets(counts, values.shape[0])
    if counts.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return np.maximum.reduceat(values.max(axis=1), offsets)


#: Molecules up to this many atoms get all pair distances at once; larger or periodic ones a neighbour list.
_DENSE_ATOMS = 256
_FIRST_CUTOFF = 2.0  # Å, doubled until a pair is found


def _smallest_distance(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> float:
    """Smallest distance between two atoms, periodic images included (an atom's own images too)."""
    n = positions.shape[0]
    if not pbc.any():
        if n == 1:
            return math.inf
        if n <= _DENSE_ATOMS:
            difference = positions[:, None, :] - positions[None, :, :]
            squared = np.einsum("ijk,ijk->ij", difference, difference)
            return float(np.sqrt(squared[np.triu_indices(n, 1)].min()))
    from ase.neighborlist import primitive_neighbor_list

    # any pair lies within the extent of the atoms plus one of each periodic cell vector
    bound = float(np.linalg.norm(np.ptp(positions, axis=0)) + np.linalg.norm(cell[pbc], axis=1).sum()) + 1.0
    cutoff = _FIRST_CUTOFF
    while True:
        cutoff = min(cutoff, bound)
        d = primitive_neighbor_list("d", pbc, cell, positions, cutoff, self_interaction=False)
        if d.size:
            return float(d.min())
        if cutoff >= bound:
            return math.inf
        cutoff *= 2.0


def min_interatomic_distances(positions: Any, counts: Any, cells: Any, pbc: Any) -> np.ndarray:
    """The smallest interatomic distance (Å) of each conformation, ``(S,)``.

    ``positions``: ``(A, 3)`` Å of all conformations in a row; ``counts``: ``(S,)`` atoms per
    conformation; ``cells``: ``(S, 3, 3)`` Å (rows are cell vectors); ``pbc``: ``(S, 3)``.
    Periodic directions count every image (for an orthogonal cell wider than twice the distance
    this is the minimum-image distance), an atom's own periodic images included. A
    non-periodic conformation of a single atom has no interatomic distance: ``+inf``.
    Molecules of up to 256 atoms are done with one vectorised distance matrix, larger or
    periodic ones with ASE's neighbour list (no Python loop over atoms).
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (A, 3), got {positions.shape}")
    counts, offsets = _offsets(counts, positions.shape[0])
    cells = np.asarray(cells, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if cells.shape != (counts.shape[0], 3, 3) or pbc.shape != (counts.shape[0], 3):
        raise ValueError(f"cells must have shape (S, 3, 3) and pbc (S, 3) with S = {counts.shape[0]}")
    return np.array(
        [
            _smallest_distance(positions[start : start + n], cells[s], pbc[s])
            for s, (start, n) in enumerate(zip(offsets, counts))
        ],
        dtype=np.float64,
    )
