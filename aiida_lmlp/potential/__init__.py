"""The lMLP engine: eeACSF/ACSF descriptors, HDNNP ensembles with uncertainty and an ASE calculator.

Pure PyTorch, NumPy and ASE: this package never imports aiida, so it runs on a cluster node
without an AiiDA profile as well as in-process on a laptop. Units: eV, Å, eV/Å.
"""

from .acsf import ACSF
from .calculator import LmlpCalculator
from .eeacsf import EeACSF
from .ensemble import Ensemble, EnsemblePrediction
from .errors import ModelFileError, StructureError

__all__ = ["ACSF", "EeACSF", "Ensemble", "EnsemblePrediction", "LmlpCalculator", "ModelFileError", "StructureError"]
