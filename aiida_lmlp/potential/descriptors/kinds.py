"""Rebuild a descriptor from its stored configuration."""

from __future__ import annotations

from ..descriptors.acsf import ACSF
from ..descriptors.eeacsf import EeACSF
from ..descriptors.symmetry_functions import AtomCenteredDescriptor

__all__ = ["DESCRIPTOR_KINDS", "descriptor_from_config"]

DESCRIPTOR_KINDS = {EeACSF.kind: EeACSF, ACSF.kind: ACSF}


def descriptor_from_config(config: dict) -> AtomCenteredDescriptor:
    """The descriptor described by ``config`` (the output of ``descriptor.to_config()``)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in DESCRIPTOR_KINDS:
        raise ValueError(f"unknown descriptor kind {kind!r}; known: {', '.join(DESCRIPTOR_KINDS)}")
    return DESCRIPTOR_KINDS[kind](**config)
