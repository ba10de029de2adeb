"""Parser of ``lmlp.explore``: visited conformations with predictions into a dataset, the summary into a Dict."""

from __future__ import annotations

import json

from aiida import orm

from aiida_lmlp.calculations.explore import LmlpExploreCalculation as Calc
from aiida_lmlp.data.dataset import LmlpDatasetData

from .base import LmlpParser

__all__ = ["LmlpExploreParser"]


class LmlpExploreParser(LmlpParser):
    """Outputs ``visited`` and ``summary``; exit codes of :class:`LmlpExploreCalculation`."""

    def parse_files(self):
        """Read visited.npz (visited.extxyz after a run cut short) and summary.json of ``lmlp explore``."""
        message = self.error_message(Calc.STDERR)
        if message and self.linked_input_missing(message):
            return self.exit_codes.ERROR_LINKED_INPUT_MISSING.format(message=message)
        if message and not self.has_file(Calc.SUMMARY):
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        visited = None
        label_method = f"lmlp prediction ({self.node.inputs.potential.content_sha256[:12]})"
        if self.has_file(Calc.VISITED_ARCHIVE):
            with self.tempdir() as folder:
                path = self.path_of(Calc.VISITED_ARCHIVE, folder)
                archived = LmlpDatasetData.from_archive(path, label_method=label_method, source=Calc.VISITED_ARCHIVE)
            visited = archived if archived.count else None
        elif self.has_file(Calc.VISITED) and self.read_text(Calc.VISITED).strip():
            from aiida_lmlp.formats.exploration import read_visited  # ase.io: only for a run cut short

            with self.tempdir() as folder:
                # read_visited keeps every complete frame of a file cut off by a killed run
                frames = read_visited(self.path_of(Calc.VISITED, folder))
            if frames:
                visited = LmlpDatasetData.from_atoms(frames, label_method=label_method, source=Calc.VISITED)
        if visited is not None:
            self.out("visited", visited)
        summary = json.loads(self.read_text(Calc.SUMMARY)) if self.has_file(Calc.SUMMARY) else None
        if summary is None or not summary.get("complete", True):
            if summary is not None:
                self.out("summary", orm.Dict(summary))
            if visited is None:
                return self.exit_codes.ERROR_MISSING_OUTPUT
            return self.exit_codes.ERROR_CRASHED.format(
                message=f"exploration cut off; {visited.count} visited conformations were kept"
            )
        self.out("summary", orm.Dict(summary))
        trajectories = summary.get("trajectories", [])
        if trajectories and all(t.get("error") for t in trajectories):
            return self.exit_codes.ERROR_ALL_TRAJECTORIES_FAILED.format(message=trajectories[0]["error"])
        if visited is None:
            return self.exit_codes.ERROR_MISSING_OUTPUT
        return None
