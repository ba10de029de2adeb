"""Lifelong adaptive data selection: Algorithms 1 and 2 of Eckhoff & Reiher (2023), section 2.5.

Every training conformation ``r`` carries an adaptive selection factor ``S_hist`` (1 at first),
its last loss contribution ``L_old`` (NaN until first fitted) and an exclusion strike counter
``X``; the selection has two scalars, the fraction of good data ``p_good`` (0 at first) and the
last total loss ``L_old`` (+∞ at first). Conformations are addressed by a stable id (their
content hash), so their state follows them when data are added or removed between epochs or
training sessions.

Choices the paper leaves open, documented here:

* The loss contribution of a conformation is its own Eq. 10,
  ``L_new = q² ((E − E_ref)/N_atom)² + Σ (F − F_ref)² / (3 N_atom)``, and ``L_rel`` divides it by
  Eq. 10 of the whole fitted subsample, so ``L_rel`` averages about 1.
* The thresholds are given as √T in the paper's section 3 (0.9, 1.2, 2.0, 7.5): ``L_rel``, a
  squared error, is compared with their squares.
* Excluded conformations (``S_hist = 0``) get probability 0 in both draws, as the text requires
  ("excluded from further training"); read literally, the ``P_min`` and NaN assignments of
  Algorithm 1 would give them a small chance again.
* When fewer conformations have a non-zero probability than requested, all of them are taken.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AdaptiveSelection", "SelectionSettings"]


@dataclass(frozen=True)
class SelectionSettings:
    """Hyperparameters of the lifelong adaptive data selection (defaults: the paper's section 3)."""

    s_min: float = 0.1
    s_max: float = 100.0
    sqrt_t1: float = 0.9
    sqrt_t2: float = 1.2
    sqrt_t3: float = 2.0
    n_f_minus_minus: int = 30
    n_f_minus: int = 100
    n_f_plus: int = 500
    n_f_plus_plus: int = 150
    sqrt_tx: float = 7.5
    n_x: int = 5
    p_good_max: float = 2.0 / 3.0
    n_p: int = 20
    epsilon_prime: float = 1e-6

    def __post_init__(self):
        problems = []
        if not 0 < self.s_min < 1 < self.s_max:
            problems.append("need 0 < s_min < 1 < s_max")
        if not 0 < self.sqrt_t1 < 1 < self.sqrt_t2 < self.sqrt_t3 < self.sqrt_tx:
            problems.append("need 0 < sqrt_t1 < 1 < sqrt_t2 < sqrt_t3 < sqrt_tx")
        for name in ("n_f_minus_minus", "n_f_minus", "n_f_plus", "n_f_plus_plus", "n_x", "n_p"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1")
        if not 0 <= self.p_good_max <= 1:
            problems.append("p_good_max must lie in [0, 1]")
        if self.epsilon_prime < 0:
            problems.append("epsilon_prime must be ≥ 0")
        if problems:
            raise ValueError("invalid adaptive-selection settings: " + "; ".join(problems))

    @property
    def thresholds(self) -> tuple[float, float, float, float]:
        """``T1, T2, T3, TX`` (squares of the √T hyperparameters)."""
        return self.sqrt_t1**2, self.sqrt_t2**2, self.sqrt_t3**2, self.sqrt_tx**2

    @property
    def factors(self) -> tuple[float, float, float, float]:
        """``F−− = S_min^(1/N_F−−), F− = S_min^(1/N_F−), F+ = S_max^(1/N_F+), F++ = S_max^(1/N_F++)``."""
        return (
            self.s_min ** (1.0 / self.n_f_minus_minus),
            self.s_min ** (1.0 / self.n_f_minus),
            self.s_max ** (1.0 / self.n_f_plus),
            self.s_max ** (1.0 / self.n_f_plus_plus),
        )

    @property
    def p_step(self) -> float:
        """``p± = p_good,max / N_p``."""
        return self.p_good_max / self.n_p


def fit_count(n_fit: int | float, n: int) -> int:
    """Conformations to fit out of ``n``: an integer ``n_fit`` is a count, a float a fraction in (0, 1].

    ``1.0`` means all of them and ``1`` one of them, as the configuration documents it.
    """
    if isinstance(n_fit, (bool, np.bool_)):
        raise TypeError(f"fit_per_epoch must be a count or a fraction, got {n_fit!r}")
    if isinstance(n_fit, (float, np.floating)):
        if not 0 < n_fit <= 1:
            raise ValueError(f"fit_per_epoch as a fraction must lie in (0, 1], got {n_fit!r}")
        return min(n, max(1, int(round(float(n_fit) * n)))) if n else 0
    if int(n_fit) < 1:
        raise ValueError(f"fit_per_epoch as a count must be at least 1, got {n_fit!r}")
    return min(int(n_fit), n)


class AdaptiveSelection:
    """Selection state of one ensemble member over a stream of conformations."""

    def __init__(self, ids: Iterable[str] = (), settings: SelectionSettings | None = None):
        self.settings = settings or SelectionSettings()
        self.ids: list[str] = []
        self.s_hist = np.zeros(0)
        self.l_old = np.zeros(0)
        self.strikes = np.zeros(0, dtype=np.int64)
        self.p_good = 0.0
        self.l_old_total = math.inf
        self.add(ids)

    # -- the data stream ---------------------------------------------------------------------

    def add(self, ids: Iterable[str]) -> None:
        """Add conformations (S_hist = 1, L_old = NaN, X = 0); known ids keep their state."""
        known = set(self.ids)
        new = [i for i in dict.fromkeys(ids) if i not in known]
        self.ids.extend(new)
        self.s_hist = np.concatenate([self.s_hist, np.ones(len(new))])
        self.l_old = np.concatenate([self.l_old, np.full(len(new), np.nan)])
        self.strikes = np.concatenate([self.strikes, np.zeros(len(new), dtype=np.int64)])

    def remove(self, ids: Iterable[str]) -> None:
        """Forget conformations (and their state)."""
        drop = set(ids)
        keep = np.array([i not in drop for i in self.ids], dtype=bool)
        self.ids = [i for i, k in zip(self.ids, keep) if k]
        self.s_hist, self.l_old, self.strikes = self.s_hist[keep], self.l_old[keep], self.strikes[keep]

    def index(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of ``ids`` in the state arrays."""
        where = {i: k for k, i in enumerate(self.ids)}
        return np.array([where[i] for i in ids], dtype=np.int64)

    @property
    def active(self) -> np.ndarray:
        """Mask of conformations not excluded (S_hist > 0)."""
        return self.s_hist > 0

    # -- Algorithm 1 --------------------------------------------------------------------------

    def _l_max(self) -> float:
        finite = self.l_old[~np.isnan(self.l_old)]
        return float(finite.max()) if finite.size else math.nan

    def bad_probabilities(self) -> np.ndarray:
        """``P_bad = S_hist L_old / L_max`` (NaN entries → max S_hist), normalised."""
        with np.errstate(invalid="ignore", divide="ignore"):
            p = self.s_hist * self.l_old / self._l_max()
        p[np.isnan(p)] = self.s_hist.max() if self.s_hist.size else 0.0
        p[~self.active] = 0.0
        total = p.sum()
        return p / total if total > 0 else p

    def good_probabilities(self, fitted: np.ndarray) -> np.ndarray:
        """``P_good = S_hist (1 − L_old/L_max)`` over the conformations not yet chosen, normalised.

        Entries with ``L_old = L_max`` or NaN get ``P_min = min(P_good > 0, 1) · ε′``; chosen ones 0.
        """
        l_max = self._l_max()
        with np.errstate(invalid="ignore", divide="ignore"):
            p = self.s_hist * (1.0 - self.l_old / l_max)
        positive = p[(p > 0) & ~fitted]
        p_min = min(float(positive.min()) if positive.size else 1.0, 1.0) * self.settings.epsilon_prime
        p[(self.l_old == l_max) | np.isnan(p)] = p_min
        p[fitted | ~self.active] = 0.0
        total = p.sum()
        return p / total if total > 0 else p

    def choose(self, n_fit: int | float, rng: np.random.Generator) -> np.ndarray:
        """Algorithm 1: indices of the conformations to fit this epoch.

        ``n_fit`` is a count (an integer) or a fraction (a float in (0, 1]) of all conformations
        in the stream (:func:`fit_count`).
        """
        n_fit = min(fit_count(n_fit, len(self.ids)), int(self.active.sum()))
        n_good = int(self.p_good * n_fit)
        n_bad = n_fit - n_good
        chosen = _weighted_sample(self.bad_probabilities(), n_bad, rng)
        fitted = np.zeros(len(self.ids), dtype=bool)
        fitted[chosen] = True
        good = _weighted_sample(self.good_probabilities(fitted), n_good, rng)
        return np.concatenate([chosen, good])

    # -- Algorithm 2 --------------------------------------------------------------------------

    def update(self, fitted: np.ndarray, l_new: np.ndarray, l_new_total: float) -> None:
        """Algorithm 2 for the fitted conformations with new contributions ``l_new`` and total loss."""
        st = self.settings
        t1, t2, t3, tx = st.thresholds
        f_mm, f_m, f_p, f_pp = st.factors
        l_new = np.asarray(l_new, dtype=np.float64)
        l_old = self.l_old[fitted]
        s = self.s_hist[fitted].copy()
        x = self.strikes[fitted].copy()
        rel = l_new / l_new_total
        with np.errstate(invalid="ignore"):
            worse = l_new > l_old  # False where L_old is NaN
            not_worse = l_new <= l_old
        x = np.where(rel > tx, x + 1, 0)
        s = np.where(rel >= t1, np.maximum(1.0, s), s)
        s = np.where(rel <= t2, np.minimum(s, 1.0), s)
        s = np.where((rel < t1) & not_worse, s * f_mm, s)
        s = np.where((rel < t1) & worse, s * f_m, s)
        s = np.where((rel > t2) & (rel <= t3) & worse, s * f_p, s)
        s = np.where((rel > t3) & worse, s * f_pp, s)
        s = np.where(x >= st.n_x, 0.0, s)
        s = np.where((s < st.s_min) | (s > st.s_max), 0.0, s)
        self.s_hist[fitted], self.strikes[fitted] = s, x
        self.p_good = float(
            np.clip(self.p_good + np.sign(l_new_total - self.l_old_total) * st.p_step, 0.0, st.p_good_max)
        )
        self.l_old[fitted] = l_new
        self.l_old_total = float(l_new_total)

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict:
        """Complete state (arrays and scalars) for a checkpoint."""
        return {
            "ids": list(self.ids),
            "s_hist": self.s_hist.copy(),
            "l_old": self.l_old.copy(),
            "strikes": self.strikes.copy(),
            "p_good": self.p_good,
            "l_old_total": self.l_old_total,
        }

    @classmethod
    def from_state(cls, state: dict, settings: SelectionSettings | None = None) -> AdaptiveSelection:
        """Rebuild the selection written by :meth:`state`."""
        selection = cls((), settings)
        selection.ids = list(state["ids"])
        selection.s_hist = np.asarray(state["s_hist"], dtype=np.float64).copy()
        selection.l_old = np.asarray(state["l_old"], dtype=np.float64).copy()
        selection.strikes = np.asarray(state["strikes"], dtype=np.int64).copy()
        selection.p_good = float(state["p_good"])
        selection.l_old_total = float(state["l_old_total"])
        return selection


def _weighted_sample(p: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct indices drawn with probabilities ``p`` (all non-zero ones if fewer)."""
    nonzero = int((p > 0).sum())
    count = min(count, nonzero)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(len(p), size=count, replace=False, p=p).astype(np.int64)
