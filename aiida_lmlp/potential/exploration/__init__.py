"""Exploration with an ensemble: MD, relaxations, NEB and single points that stop where the model is unsure.

The protocol, the reports and the reader of visited frames are torch-free and live in
:mod:`aiida_lmlp.formats.exploration`; they are re-exported here for engine users.
"""

from ...formats.exploration import (
    FINGERPRINT_KEY,
    KINDS,
    ExplorationProtocol,
    ExplorationResult,
    ProtocolError,
    TrajectoryReport,
    read_visited,
    trajectory_counts,
)
from ..exploration.runner import descriptor_fingerprints, explore

__all__ = [
    "FINGERPRINT_KEY",
    "KINDS",
    "ExplorationProtocol",
    "ExplorationResult",
    "ProtocolError",
    "TrajectoryReport",
    "descriptor_fingerprints",
    "explore",
    "read_visited",
    "trajectory_counts",
]
