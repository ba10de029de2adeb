"""The lMLP engine: eeACSF/ACSF descriptors, HDNNP ensembles with uncertainty and an ASE calculator.

Pure PyTorch, NumPy and ASE: this package never imports aiida, so it runs on a cluster node
without an AiiDA profile as well as in-process on a laptop. Units: eV, Å, eV/Å.

The names below are imported on first use, so that the torch-free modules of the package
(:mod:`.labels`, :mod:`.model_header`, :mod:`.errors`, :mod:`.training_config`,
:mod:`.core_hyperparameters`, :mod:`.adaptive_selection`) can be used by the AiiDA daemon,
which never imports torch.
"""

from __future__ import annotations

import importlib

__all__ = ["ACSF", "EeACSF", "Ensemble", "EnsemblePrediction", "LmlpCalculator", "ModelFileError", "StructureError"]

_WHERE = {
    "ACSF": ".acsf",
    "EeACSF": ".eeacsf",
    "Ensemble": ".ensemble",
    "EnsemblePrediction": ".ensemble",
    "LmlpCalculator": ".calculator",
    "ModelFileError": ".errors",
    "StructureError": ".errors",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
