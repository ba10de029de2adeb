"""CalcJobs that run the ``lmlp`` executables on any AiiDA computer.

``lmlp.train`` (``lmlp train``), ``lmlp.explore`` (``lmlp explore``) and ``lmlp.pyscf``
(``lmlp label-pyscf``). None of these modules imports torch or pyscf: the daemon only writes
input files and reads output files; the work happens in the executables.
"""

from .explore import LmlpExploreCalculation
from .gather import LmlpGatherCalculation
from .pyscf import PyscfCalculation
from .train import LmlpTrainCalculation

__all__ = ["LmlpExploreCalculation", "LmlpGatherCalculation", "LmlpTrainCalculation", "PyscfCalculation"]
