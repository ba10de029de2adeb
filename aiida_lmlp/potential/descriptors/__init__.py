"""Atom-centred descriptors: element-embracing (eeACSF) and conventional (ACSF) symmetry functions, neighbour lists."""

from aiida_lmlp.potential.descriptors.acsf import ACSF
from aiida_lmlp.potential.descriptors.eeacsf import EeACSF
from aiida_lmlp.potential.descriptors.kinds import DESCRIPTOR_KINDS, descriptor_from_config
from aiida_lmlp.potential.descriptors.symmetry_functions import AtomCenteredDescriptor

__all__ = ["ACSF", "DESCRIPTOR_KINDS", "AtomCenteredDescriptor", "EeACSF", "descriptor_from_config"]
