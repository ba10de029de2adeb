"""Atom-centred descriptors: element-embracing (eeACSF) and conventional (ACSF) symmetry functions, neighbour lists."""

from ..descriptors.acsf import ACSF
from ..descriptors.eeacsf import EeACSF
from ..descriptors.kinds import DESCRIPTOR_KINDS, descriptor_from_config
from ..descriptors.symmetry_functions import AtomCenteredDescriptor

__all__ = ["ACSF", "DESCRIPTOR_KINDS", "AtomCenteredDescriptor", "EeACSF", "descriptor_from_config"]
