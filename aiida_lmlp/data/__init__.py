"""Provenance data types: ``lmlp.dataset`` (labelled conformations) and ``lmlp.potential`` (a model version).

Imports neither torch nor pyscf: these classes are loaded by the AiiDA daemon.
"""

from aiida_lmlp.formats.conformation_arrays import ConformationArrays, DatasetError

from .dataset import LmlpDatasetData, merge_datasets, select_conformations
from .potential import LmlpPotentialData

__all__ = [
    "ConformationArrays",
    "DatasetError",
    "LmlpDatasetData",
    "LmlpPotentialData",
    "merge_datasets",
    "select_conformations",
]
