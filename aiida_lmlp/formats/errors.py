"""Exceptions raised by the lMLP engine."""

from __future__ import annotations

__all__ = ["ModelFileError", "StructureError", "structure_label"]


class StructureError(ValueError):
    """A structure cannot be evaluated; the message names the structure and the problem."""

    def __init__(self, label: str, problem: str):
        self.label = label
        self.problem = problem
        super().__init__(f"structure {label}: {problem}")


class ModelFileError(ValueError):
    """A model file is missing, truncated, altered or of an unknown format."""


def structure_label(atoms, index: int | None = None) -> str:
    """A short human-readable name of ``atoms`` for error messages.

    Uses ``atoms.info['name']`` (or ``'id'``/``'label'``) when present, otherwise the chemical
    formula, prefixed by the position ``index`` in a batch when given.
    """
    info = getattr(atoms, "info", {}) or {}
    name = next((str(info[key]) for key in ("name", "id", "label") if key in info), None)
    if name is None:
        name = atoms.get_chemical_formula()
    return f"#{index} ({name})" if index is not None else repr(name)
