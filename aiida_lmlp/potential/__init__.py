"""The lMLP engine: eeACSF/ACSF descriptors, HDNNP ensembles with uncertainty, training and exploration.

PyTorch, NumPy and ASE: this package never imports aiida, so it runs on a cluster node without an
AiiDA profile as well as in-process on a laptop. Units: eV, Å, eV/Å. Its rooms:

- :mod:`.descriptors`: eeACSF and ACSF symmetry functions, neighbour lists;
- :mod:`.model`: atomic networks, the ensemble, the model file, the ASE calculator;
- :mod:`.training`: the trainer, batches, CoRe, the Kalman filter, adaptive data selection;
- :mod:`.exploration`: MD, relaxation and NEB protocols run in lockstep.

What the engine shares with the daemon side (the conformation archive, the model-file header,
settings and their validation, element tables, errors) lives in the torch-free
:mod:`aiida_lmlp.formats`. The names below are imported on first use, so that importing this
package costs nothing until one of them is needed.
"""

from __future__ import annotations

import importlib

__all__ = ["ACSF", "EeACSF", "Ensemble", "EnsemblePrediction", "LmlpCalculator", "ModelFileError", "StructureError"]

_WHERE = {
    "ACSF": "aiida_lmlp.potential.descriptors.acsf",
    "EeACSF": "aiida_lmlp.potential.descriptors.eeacsf",
    "Ensemble": "aiida_lmlp.potential.model.ensemble",
    "EnsemblePrediction": "aiida_lmlp.potential.model.ensemble",
    "LmlpCalculator": "aiida_lmlp.potential.model.calculator",
    "ModelFileError": "aiida_lmlp.formats.errors",
    "StructureError": "aiida_lmlp.formats.errors",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
