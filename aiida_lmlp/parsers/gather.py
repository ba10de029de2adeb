"""Parser of ``lmlp.gather``: the gathered model file becomes an ``lmlp.potential``."""

from __future__ import annotations

from aiida_lmlp.calculations.gather import LmlpGatherCalculation as Calc

from .base import LmlpParser

__all__ = ["LmlpGatherParser"]


class LmlpGatherParser(LmlpParser):
    """Output ``potential``; exit codes of :class:`LmlpGatherCalculation`."""

    def parse_files(self):
        """Read the gathered model file."""
        message = self.error_message(Calc.STDERR)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        potential, failure = self.read_potential(Calc.MODEL)
        if failure is not None:
            return failure
        self.out("potential", potential)
        return None
