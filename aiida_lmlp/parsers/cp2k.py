"""``lmlp.cp2k``: the parser that the CP2K labeller gives aiida-cp2k's ``Cp2kCalculation``.

aiida-cp2k's own parsers read the energy but not the forces of a single point. This one reads
energy, forces and (periodic cells) stress with
:func:`aiida_lmlp.labelling.cp2k_input.parse_single_point`, converts them to eV, eV/Å and eV/Å³,
and attaches them as the ``lmlp_labels`` output (an ``ArrayData``: ``energy`` (1,), ``forces``
(N, 3), ``stress`` (3, 3) when printed). Failures are reported with ``Cp2kCalculation``'s own
exit codes: 450 (SCF not converged: CP2K 2023 only warns and prints forces of the unconverged
SCF, which are discarded), 304 (CP2K aborted, its message in ``output_parameters``),
400 (CP2K's wall time), 303 (output ends early: a crash), 302 (no or incomplete forces),
210 (no output at all).
"""

from __future__ import annotations

import re

import numpy as np
from aiida import orm
from aiida.parsers import Parser

__all__ = ["LmlpCp2kParser", "abort_message"]

LABELS = "lmlp_labels"
"""The output link of the labels."""


def abort_message(text: str) -> str | None:
    """CP2K's message in its ``[ABORT]`` box (one line), or None when the output has no abort box."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if "[ABORT]" in line]
    if not starts:
        return None
    words = []
    for line in lines[starts[-1] + 1 :]:
        if line.strip().startswith("****"):
            break
        body = line.strip().strip("*")
        # the box's picture fills the first 12 columns; the source location ends the last line
        body = body[11:] if len(body) > 11 else ""
        body = re.sub(r"\s\S+\.F:\d+\s*$", "", body)
        words.extend(body.split())
    return " ".join(words) or None


class LmlpCp2kParser(Parser):
    """Labels of a CP2K single point (``ENERGY_FORCE``) into ``lmlp_labels``; failures as exit codes."""

    def parse(self, **kwargs):
        """Read ``aiida.out``; attach ``output_parameters`` and, for a finished single point, ``lmlp_labels``."""
        from aiida_lmlp.labelling.cp2k_input import Cp2kOutputError, parse_single_point

        name = self.node.base.attributes.get("output_filename")
        if name not in self.retrieved.base.repository.list_object_names():
            return self.exit_codes.ERROR_OUTPUT_MISSING
        text = self.retrieved.base.repository.get_object_content(name, mode="r")
        summary: dict = {}
        versions = re.findall(r"CP2K\| version string:\s+(.+)", text)
        if versions:
            summary["cp2k_version"] = versions[-1].strip()
        warnings = re.findall(r"The number of warnings for this run is\s*:?\s*(\d+)", text)
        if warnings:
            summary["nwarnings"] = int(warnings[-1])
        message = abort_message(text)
        if message is not None:
            summary["abort_message"] = message
            self.out("output_parameters", orm.Dict(summary))
            if "SCF run NOT converged" in message:
                return self.exit_codes.ERROR_SCF_NOT_CONVERGED
            self.logger.error(f"CP2K aborted: {message}")
            return self.exit_codes.ERROR_OUTPUT_CONTAINS_ABORT
        if "SCF run NOT converged" in text:
            # CP2K (2023) goes on after an unconverged SCF with a warning, and prints forces of it
            summary["error"] = "SCF run NOT converged (CP2K warned and went on; its energy and forces are discarded)"
            self.out("output_parameters", orm.Dict(summary))
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED
        if "exceeded requested execution time" in text:
            self.out("output_parameters", orm.Dict(summary))
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        if "PROGRAM STOPPED IN" not in text:
            summary["error"] = "the output ends before CP2K's closing banner (crash or kill)"
            self.out("output_parameters", orm.Dict(summary))
            return self.exit_codes.ERROR_OUTPUT_INCOMPLETE
        natoms = len(self.node.inputs.structure.sites)
        try:
            point = parse_single_point(text, natoms)
        except Cp2kOutputError as error:
            summary["error"] = str(error)
            self.out("output_parameters", orm.Dict(summary))
            self.logger.error(f"CP2K output unusable: {error}")
            return self.exit_codes.ERROR_OUTPUT_PARSE
        summary.update(energy=point.energy, energy_units="eV", scf_steps=point.scf_steps)
        self.out("output_parameters", orm.Dict(summary))
        labels = orm.ArrayData()
        labels.set_array("energy", np.array([point.energy]))
        labels.set_array("forces", point.forces)
        if point.stress is not None:
            labels.set_array("stress", point.stress)
        labels.base.attributes.set("units", {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³"})
        self.out(LABELS, labels)
        return None
