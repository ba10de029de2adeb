"""Parser of ``lmlp.gather``: the gathered model file becomes an ``lmlp.potential``."""

from __future__ import annotations

from aiida_lmlp.calculations.gather import LmlpGatherCalculation as Calc
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.potential.errors import ModelFileError

from .base import LmlpParser

__all__ = ["LmlpGatherParser"]


class LmlpGatherParser(LmlpParser):
    """Output ``potential``; exit codes of :class:`LmlpGatherCalculation`."""

    def parse(self, **kwargs):
        """Read the gathered model file."""
        message = self.error_message(Calc.STDERR)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.has_file(Calc.MODEL):
            return self.exit_codes.ERROR_MISSING_MODEL
        with self.tempdir() as folder:
            try:
                potential = LmlpPotentialData(self.copy_out(Calc.MODEL, folder))
            except ModelFileError as error:
                return self.exit_codes.ERROR_CORRUPT_MODEL.format(message=str(error))
        self.out("potential", potential)
        return None
