"""Parser of ``lmlp.pyscf``: converged single points into a dataset; failures listed, never lost."""

from __future__ import annotations

from .label_batch import LabelBatchParser, read_status

__all__ = ["LmlpPyscfParser", "read_status"]


class LmlpPyscfParser(LabelBatchParser):
    """Outputs ``labelled``, ``failed`` and ``output_parameters``; exit codes of :class:`PyscfCalculation`."""
