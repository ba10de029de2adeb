"""The model: atomic networks, the HDNNP ensemble with its uncertainty, the model file and the ASE calculator."""

from aiida_lmlp.potential.model.calculator import LmlpCalculator
from aiida_lmlp.potential.model.ensemble import Ensemble, EnsemblePrediction

__all__ = ["Ensemble", "EnsemblePrediction", "LmlpCalculator"]
