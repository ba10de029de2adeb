"""Reference labelling: DFT single points for the structures an lMLP campaign selects (no aiida, no torch)."""

from .pyscf_single_points import (
    BatchRecorder,
    BatchSummary,
    ParameterError,
    PyscfParameters,
    SinglePointResult,
    label_batch,
    label_structures,
    run_interruptible,
    single_point,
)

__all__ = [
    "BatchRecorder",
    "BatchSummary",
    "ParameterError",
    "PyscfParameters",
    "SinglePointResult",
    "label_batch",
    "label_structures",
    "run_interruptible",
    "single_point",
]
