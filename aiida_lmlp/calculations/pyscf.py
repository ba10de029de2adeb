"""``lmlp.pyscf``: PySCF single points (energy and analytic forces) for a batch of structures."""

from __future__ import annotations

from .label_batch import SinglePointBatchCalculation

__all__ = ["PyscfCalculation"]


class PyscfCalculation(SinglePointBatchCalculation):
    """Label structures with PySCF (``lmlp label-pyscf``), the embedded-default DFT code.

    Converged structures become the ``labelled`` dataset (eV, eV/Å) even when others in the
    batch did not converge, failed or were cut off; those are listed in ``failed``.
    """

    COMMAND = "label-pyscf"
    CODE = "PySCF"
    PARSER = "lmlp.pyscf"
    PARAMETERS_HELP = (
        "xc, basis, density_fit, dispersion, charge, multiplicity, conv_tol, max_cycle, damping, level_shift, ..."
    )

    @classmethod
    def parameters_class(cls):
        """:class:`~aiida_lmlp.labelling.pyscf_single_points.PyscfParameters`."""
        from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters

        return PyscfParameters
