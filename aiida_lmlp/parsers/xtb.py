"""Parser of ``lmlp.xtb``: the batch files of ``lmlp label-xtb`` (those of ``lmlp label-pyscf``)."""

from __future__ import annotations

from .label_batch import LabelBatchParser

__all__ = ["LmlpXtbParser"]


class LmlpXtbParser(LabelBatchParser):
    """Outputs ``labelled`` (with stress for periodic cells), ``failed`` and ``output_parameters``."""
