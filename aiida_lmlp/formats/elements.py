"""Periodic-table element terms of the element-embracing symmetry functions.

Eckhoff & Reiher (2023), Eq. 6: every neighbour ``j`` contributes with an element term
``H_j`` taken from its position in the periodic table:

* ``1``   (no element dependence),
* ``n``   period,
* ``m``   main-group number (s and p block, 1 to 8; helium has ``m = 8``),
* ``d``   group in the d block (1 to 10),
* ``n̄ = X − n`` with ``X − 1`` the largest period the descriptor covers (the paper's 5,
  elements up to xenon: ``n̄ = 6 − n``),
* ``m̄ = 9 − m``,
* ``d̄ = 11 − d``.

Main-group elements have ``d = 0`` **and** ``d̄ = 0``; d-block elements have ``m = 0``
**and** ``m̄ = 0`` (the paper's text; the published lMLP code agrees for ``d``/``d̄`` and
in its docstring for ``m``/``m̄``, although its table lists ``m = 2`` for the d block:
we follow the paper). A term that is zero for a neighbour removes that neighbour from the
function, which is what makes the d and d̄ functions "d-block only".

Periods 6 and 7 follow the paper's recipe for them (end of Section 2.2): ``X − 1 = 7``, and
the group in the f block, ``f`` (1 to 14, La–Yb and Ac–No) with ``f̄ = 15 − f``, is
implemented like the d block: f-block elements have ``m = m̄ = d = d̄ = 0``, all others
``f = f̄ = 0``. Lu and Lr are group 3 of the d block (IUPAC 2021).

Each term is normalised by its largest possible value ``H_max`` (Eqs. 3 and 9), which for
``n`` and ``n̄`` is the largest period covered.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

__all__ = [
    "ELEMENT_TERMS",
    "ELEMENT_TERM_MAX",
    "MAX_ATOMIC_NUMBER",
    "PAPER_MAX_PERIOD",
    "element_term_max",
    "element_term_table",
    "is_d_block",
    "is_f_block",
    "period_of",
    "validate_elements",
]

#: The element terms in the order of the columns returned by :func:`element_term_table`.
ELEMENT_TERMS: tuple[str, ...] = ("1", "n", "m", "d", "n_bar", "m_bar", "d_bar", "f", "f_bar")

#: The paper's largest period, ``X − 1 = 5`` (H–Xe).
PAPER_MAX_PERIOD = 5

#: Heaviest element covered (oganesson, period 7).
MAX_ATOMIC_NUMBER = 118

_PERIOD_ENDS = (2, 10, 18, 36, 54, 86, 118)


def element_term_max(max_period: int = PAPER_MAX_PERIOD) -> dict[str, int]:
    """Largest value of each element term (the normalisation ``H_max``) for periods up to ``max_period``."""
    return {
        "1": 1,
        "n": max_period,
        "m": 8,
        "d": 10,
        "n_bar": max_period,
        "m_bar": 8,
        "d_bar": 10,
        "f": 14,
        "f_bar": 14,
    }


#: ``H_max`` of every term for the paper's H–Xe.
ELEMENT_TERM_MAX: dict[str, int] = element_term_max(PAPER_MAX_PERIOD)


def period_of(symbol: str) -> int:
    """Period (row) of ``symbol`` in the periodic table."""
    return _period(atomic_numbers[symbol])


def _period(z: int) -> int:
    for period, last in enumerate(_PERIOD_ENDS, start=1):
        if z <= last:
            return period
    raise ValueError(f"element {chemical_symbols[z]} (Z={z}) is beyond oganesson")


def _block_position(z: int) -> tuple[str, int]:
    """Block (``"s"``, ``"p"``, ``"d"``, ``"f"``) and the ``m``, ``d`` or ``f`` number within it."""
    if z == 1:
        return "s", 1
    if z == 2:
        return "p", 8  # helium: m = 8
    period = _period(z)
    position = z - (_PERIOD_ENDS[period - 2] + 1)  # 0-based position within the period
    if position < 2:
        return "s", position + 1
    if period in (2, 3):
        return "p", position + 1  # groups 13–18: m = 3..8
    if period in (4, 5):
        return ("d", position - 1) if position < 12 else ("p", position - 9)
    if position < 16:
        return "f", position - 1  # La/Ac .. Yb/No: f = 1..14
    return ("d", position - 15) if position < 26 else ("p", position - 23)


def is_d_block(symbol: str) -> bool:
    """Whether ``symbol`` is a d-block element (groups 3–12)."""
    return _block_position(atomic_numbers[symbol])[0] == "d"


def is_f_block(symbol: str) -> bool:
    """Whether ``symbol`` is an f-block element (La–Yb, Ac–No)."""
    return _block_position(atomic_numbers[symbol])[0] == "f"


def _terms(z: int, max_period: int) -> tuple[int, ...]:
    period = _period(z)
    block, number = _block_position(z)
    m = number if block in ("s", "p") else 0
    d = number if block == "d" else 0
    f = number if block == "f" else 0
    return (1, period, m, d, max_period + 1 - period, 9 - m if m else 0, 11 - d if d else 0, f, 15 - f if f else 0)


def validate_elements(elements: list[str] | tuple[str, ...], max_period: int = len(_PERIOD_ENDS)) -> tuple[str, ...]:
    """Return ``elements`` as a tuple after checking they are distinct symbols of periods up to ``max_period``."""
    elements = tuple(elements)
    if not elements:
        raise ValueError("the element list is empty")
    seen = set()
    for symbol in elements:
        if symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"unknown element symbol {symbol!r}")
        period = _period(atomic_numbers[symbol])
        if period > max_period:
            last = chemical_symbols[_PERIOD_ENDS[max_period - 1]]
            raise ValueError(
                f"element {symbol} (Z={atomic_numbers[symbol]}, period {period}) is beyond {last}: "
                f"these element terms cover periods 1–{max_period}"
            )
        if symbol in seen:
            raise ValueError(f"element {symbol} is listed twice")
        seen.add(symbol)
    return elements


def element_term_table(elements: list[str] | tuple[str, ...], max_period: int = PAPER_MAX_PERIOD) -> np.ndarray:
    """Integer element terms, shape ``(len(elements), 9)``, columns as :data:`ELEMENT_TERMS`."""
    elements = validate_elements(elements, max_period)
    return np.array([_terms(atomic_numbers[s], max_period) for s in elements], dtype=np.int64)
