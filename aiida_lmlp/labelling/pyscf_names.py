"""PySCF basis names checked before a campaign is submitted: where a typo costs seconds, not a failed job.

Imports PySCF, so it runs where the user launches a campaign (the ``lmlp`` command line), never
in the daemon. The exchange-correlation name is checked by :class:`PyscfParameters` itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["basis_problems"]


def _load(name: str, element: str) -> str | None:
    """None when PySCF has basis ``name`` for ``element``, else PySCF's reason."""
    from pyscf.gto import basis as pyscf_basis

    with warnings.catch_warnings():  # PySCF suggests installing basis-set-exchange on every miss
        warnings.simplefilter("ignore")
        try:
            pyscf_basis.load(name, element)
        except Exception as error:  # BasisNotFoundError, or a parse error of a malformed name
            return " ".join(str(error).split()) or type(error).__name__
    return None


def basis_problems(parameters: Mapping[str, Any], elements: Iterable[str]) -> list[str]:
    """What PySCF cannot find of the ``basis`` and ``auxbasis`` in ``parameters`` for ``elements``.

    A name PySCF does not know is named once; a known basis without functions for an element of
    the structures, and an ``{element: name}`` mapping without an entry for one, are named per
    element. Returns an empty list when every element has its basis.
    """
    problems = []
    elements = sorted(set(elements))
    for key in ("basis", "auxbasis"):
        value = parameters.get(key)
        if value is None:
            continue
        unknown: set[str] = set()
        for element in elements:
            name = value if isinstance(value, str) else value.get(element)
            if name is None:
                problems.append(f"{key} has no entry for {element} (elements in the structures: {', '.join(elements)})")
                continue
            if name in unknown:
                continue
            reason = _load(name, element)
            if reason is None:
                continue
            if _load(name, "H") is not None and _load(name, "C") is not None:
                unknown.add(name)
                problems.append(f"{key} {name!r}: PySCF knows no basis of this name ({reason})")
            else:
                problems.append(f"{key} {name!r} has no functions for {element} ({reason})")
    return problems
