"""CalcJobs that run the ``lmlp`` executables on any AiiDA computer.

``lmlp.train`` (``lmlp train``), ``lmlp.explore`` (``lmlp explore``), ``lmlp.pyscf``
(``lmlp label-pyscf``) and ``lmlp.xtb`` (``lmlp label-xtb``). None of these modules imports
torch, pyscf or tblite: the daemon only writes input files and reads output files; the work
happens in the executables.
"""

from .explore import LmlpExploreCalculation
from .gather import LmlpGatherCalculation
from .pyscf import PyscfCalculation
from .train import LmlpTrainCalculation
from .xtb import XtbCalculation

__all__ = [
    "LmlpExploreCalculation",
    "LmlpGatherCalculation",
    "LmlpTrainCalculation",
    "PyscfCalculation",
    "XtbCalculation",
]
