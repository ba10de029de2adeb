"""``lmlp.xtb``: GFN2-xTB single points through tblite (energy, forces, stress) for a batch of structures."""

from __future__ import annotations

from .label_batch import SinglePointBatchCalculation

__all__ = ["XtbCalculation"]


class XtbCalculation(SinglePointBatchCalculation):
    """Label molecules and periodic cells with GFN2-xTB (``lmlp label-xtb``; the ``xtb`` extra on the computer).

    The outputs and exit codes are those of ``lmlp.pyscf``; periodic cells also get their stress.
    """

    COMMAND = "label-xtb"
    CODE = "tblite"
    PARSER = "lmlp.xtb"
    PARAMETERS_HELP = "method, electronic_temperature, accuracy, max_iterations, mixer_damping, charge, multiplicity"

    @classmethod
    def parameters_class(cls):
        """:class:`~aiida_lmlp.labelling.xtb_single_points.XtbParameters`."""
        from aiida_lmlp.labelling.xtb_single_points import XtbParameters

        return XtbParameters
