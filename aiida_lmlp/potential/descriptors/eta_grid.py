"""Radial widths η from the inflection points of ``exp(−η R²) f_c(R)`` (Tokita & Behler, Box 3).

The tutorial's recipe places the inflection point of the narrowest radial function at the
smallest interatomic distance ``R_min``, uses ``η = 0`` for the widest one, and spreads the
others so that their inflection points are equidistant in between. :func:`eta_for_inflection`
inverts the inflection condition for the eeACSF bump cutoff (Eq. 5 of Eckhoff & Reiher).
"""

from __future__ import annotations

import numpy as np

__all__ = ["eta_for_inflection", "eta_grid", "inflection_point"]


def _curvature(r: float, eta: float, cutoff: float) -> float:
    # g = exp(u), g'' = g (u'' + u'^2); u = −η r² + 1 − 1/(1 − r²/Rc²)
    x = 1.0 - (r / cutoff) ** 2
    du = -2.0 * eta * r - (2.0 * r / cutoff**2) / x**2
    d2u = -2.0 * eta - 2.0 / (cutoff**2 * x**2) - (8.0 * r**2 / cutoff**4) / x**3
    return d2u + du**2


def inflection_point(eta: float, cutoff: float) -> float:
    """Inner inflection point (Å) of ``exp(−η R²) f_c(R)`` with the bump cutoff ``f_c``."""
    # the curvature is negative at R → 0 and positive just before the cutoff's own inflection
    grid = np.linspace(1e-6, cutoff * (1 - 1e-6), 4001)
    values = np.array([_curvature(r, eta, cutoff) for r in grid])
    sign_change = np.nonzero(np.diff(np.sign(values)) > 0)[0]
    k = int(sign_change[0])
    from scipy.optimize import brentq  # here: importing SciPy's optimisers costs 0.5 s in every job

    return float(brentq(_curvature, grid[k], grid[k + 1], args=(eta, cutoff), xtol=1e-12))


def eta_for_inflection(r_inflection: float, cutoff: float) -> float:
    """The ``η`` (Å⁻²) whose inner inflection point lies at ``r_inflection`` Å."""
    r0 = inflection_point(0.0, cutoff)
    if not 0 < r_inflection <= r0 + 1e-9:
        raise ValueError(
            f"an inflection point at {r_inflection} Å is outside (0, {r0:.4f}] Å reachable with cutoff {cutoff} Å"
        )
    if abs(r_inflection - r0) < 1e-9:
        return 0.0
    high = 1.0
    while inflection_point(high, cutoff) > r_inflection:
        high *= 4.0
    from scipy.optimize import brentq

    return float(brentq(lambda eta: inflection_point(eta, cutoff) - r_inflection, 0.0, high, xtol=1e-12))


def eta_grid(cutoff: float, r_min: float, count: int) -> list[float]:
    """``count`` widths: ``η = 0`` plus ones with equidistant inflection points down to ``r_min``."""
    if count < 2:
        raise ValueError("an η grid needs at least two values")
    r0 = inflection_point(0.0, cutoff)
    targets = np.linspace(r0, r_min, count)
    return [0.0] + [eta_for_inflection(float(r), cutoff) for r in targets[1:]]
