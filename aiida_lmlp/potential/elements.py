"""Periodic-table element terms of the element-embracing symmetry functions.

Eckhoff & Reiher (2023), Eq. 6: every neighbour ``j`` contributes with an element term
``H_j`` taken from its position in the periodic table:

* ``1``   (no element dependence),
* ``n``   period,
* ``m``   main-group number (s and p block, 1 to 8; helium has ``m = 8``),
* ``d``   group in the d block (1 to 10),
* ``n̄ = X − n`` with ``X − 1 = 5`` (elements up to xenon), so ``n̄ = 6 − n``,
* ``m̄ = 9 − m``,
* ``d̄ = 11 − d``.

Main-group elements have ``d = 0`` **and** ``d̄ = 0``; d-block elements have ``m = 0``
**and** ``m̄ = 0`` (the paper's text; the published lMLP code agrees for ``d``/``d̄`` and
in its docstring for ``m``/``m̄``, although its table lists ``m = 2`` for the d block:
we follow the paper). A term that is zero for a neighbour removes that neighbour from the
function, which is what makes the d and d̄ functions "d-block only".

Each term is normalised by its largest possible value ``H_max`` (Eqs. 3 and 9).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

__all__ = [
    "ELEMENT_TERMS",
    "ELEMENT_TERM_MAX",
    "MAX_ATOMIC_NUMBER",
    "element_term_table",
    "is_d_block",
    "validate_elements",
]

#: The element terms in the order of the columns returned by :func:`element_term_table`.
ELEMENT_TERMS: tuple[str, ...] = ("1", "n", "m", "d", "n_bar", "m_bar", "d_bar")

#: Largest value of each element term over H–Xe (the normalisation ``H_max``).
ELEMENT_TERM_MAX: dict[str, int] = {"1": 1, "n": 5, "m": 8, "d": 10, "n_bar": 5, "m_bar": 8, "d_bar": 10}

#: Heaviest element covered (xenon, ``X − 1 = 5`` periods).
MAX_ATOMIC_NUMBER = 54

_PERIOD_ENDS = (2, 10, 18, 36, 54)


def _period(z: int) -> int:
    for period, last in enumerate(_PERIOD_ENDS, start=1):
        if z <= last:
            return period
    raise ValueError(f"element {chemical_symbols[z]} (Z={z}) is beyond xenon")


def _iupac_group(z: int) -> int:
    """IUPAC group 1–18 for Z ≤ 54."""
    if z == 1:
        return 1
    if z == 2:
        return 18
    period = _period(z)
    first = _PERIOD_ENDS[period - 2] + 1
    position = z - first  # 0-based position within the period
    if period in (2, 3):
        return position + 1 if position < 2 else position + 11
    return position + 1


def is_d_block(symbol: str) -> bool:
    """Whether ``symbol`` is a d-block element (groups 3–12) up to xenon."""
    z = atomic_numbers[symbol]
    return 3 <= _iupac_group(z) <= 12 and _period(z) >= 4


def _terms(z: int) -> tuple[int, ...]:
    period = _period(z)
    group = _iupac_group(z)
    if z == 2:
        m, d = 8, 0
    elif group <= 2:
        m, d = group, 0
    elif group >= 13:
        m, d = group - 10, 0
    else:
        m, d = 0, group - 2
    m_bar = 9 - m if m else 0
    d_bar = 11 - d if d else 0
    return (1, period, m, d, 6 - period, m_bar, d_bar)


def validate_elements(elements: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return ``elements`` as a tuple after checking they are distinct symbols from H to Xe."""
    elements = tuple(elements)
    if not elements:
        raise ValueError("the element list is empty")
    seen = set()
    for symbol in elements:
        if symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"unknown element symbol {symbol!r}")
        if atomic_numbers[symbol] > MAX_ATOMIC_NUMBER:
            raise ValueError(
                f"element {symbol} (Z={atomic_numbers[symbol]}) is beyond xenon; "
                "eeACSF element terms are defined for H–Xe"
            )
        if symbol in seen:
            raise ValueError(f"element {symbol} is listed twice")
        seen.add(symbol)
    return elements


def element_term_table(elements: list[str] | tuple[str, ...]) -> np.ndarray:
    """Integer element terms, shape ``(len(elements), 7)``, columns as :data:`ELEMENT_TERMS`."""
    elements = validate_elements(elements)
    return np.array([_terms(atomic_numbers[s]) for s in elements], dtype=np.int64)
