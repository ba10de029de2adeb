"""The model: atomic networks, the HDNNP ensemble with its uncertainty, the model file and the ASE calculator."""

from ..model.calculator import LmlpCalculator
from ..model.ensemble import Ensemble, EnsemblePrediction

__all__ = ["Ensemble", "EnsemblePrediction", "LmlpCalculator"]
