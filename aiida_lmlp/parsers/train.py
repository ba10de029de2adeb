"""Parser of ``lmlp.train``: the model file becomes an ``lmlp.potential``, the metrics an ArrayData."""

from __future__ import annotations

import json
import re

import numpy as np
from aiida import orm

from aiida_lmlp.calculations.train import LmlpTrainCalculation as Calc

from .base import LmlpParser

__all__ = ["LmlpTrainParser", "metrics_arrays"]

_REPORT = re.compile(r"(\d+) of (\d+) conformations used; skipped: (.*); duplicates: (\d+)")


def metrics_arrays(lines: list[dict]) -> dict[str, np.ndarray]:
    """Per-epoch arrays from ``lmlp train``'s JSON lines; NaN where an epoch had no evaluation."""
    if not lines:
        return {}
    members = max(len(line.get("loss", [])) for line in lines)
    arrays: dict[str, np.ndarray] = {"epoch": np.array([line["epoch"] for line in lines], dtype=np.int64)}
    arrays["loss"] = np.array([line.get("loss", [np.nan] * members) for line in lines], dtype=np.float64)
    member_keys = ("train_rmse_energy_per_atom", "train_rmse_forces", "test_rmse_energy_per_atom", "test_rmse_forces")
    count_keys = ("active", "excluded")
    for key in (*member_keys, *count_keys):
        arrays[key] = np.array(
            [
                [row.get(key, np.nan) for row in line["members"]] if "members" in line else [np.nan] * members
                for line in lines
            ],
            dtype=np.float64,
        )
    for key in (
        "ensemble_test_rmse_energy_per_atom",
        "ensemble_test_rmse_forces",
        "ensemble_first_test_rmse_energy_per_atom",
        "ensemble_first_test_rmse_forces",
    ):
        arrays[key] = np.array([line.get(key, np.nan) for line in lines], dtype=np.float64)
    return arrays


def _expected_epoch(node) -> int | None:
    """The epoch count a complete run ends at: the parent's plus this run's ``epochs``."""
    from aiida_lmlp.formats.training_config import default_config

    epochs = default_config()["epochs"]
    if "parameters" in node.inputs:
        epochs = node.inputs.parameters.get_dict().get("epochs", epochs)
    parent = node.inputs.parent_potential.base.attributes.get("epochs", 0) if "parent_potential" in node.inputs else 0
    return parent + int(epochs)


class LmlpTrainParser(LmlpParser):
    """Outputs ``potential``, ``metrics`` and ``output_parameters``; exit codes of :class:`LmlpTrainCalculation`."""

    def parse_files(self):
        """Read the model file, metrics and stderr of ``lmlp train``."""
        message = self.error_message(Calc.STDERR)
        if message and self.linked_input_missing(message):
            return self.exit_codes.ERROR_LINKED_INPUT_MISSING.format(message=message)
        if message and "no usable training conformations" in message:
            return self.exit_codes.ERROR_NO_USABLE_DATA.format(message=self._report_line() or message)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        potential, failure = self.read_potential(Calc.MODEL)
        if failure is not None:
            if failure.status == Calc.exit_codes.ERROR_MISSING_MODEL.status and self._killed_at_wall_time():
                return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
            return failure
        self.out("potential", potential)

        lines = [json.loads(line) for line in self.read_text(Calc.METRICS).splitlines() if line.strip()]
        arrays = metrics_arrays(lines)
        if arrays:
            metrics = orm.ArrayData()
            for key, value in arrays.items():
                metrics.set_array(key, value)
            self.out("metrics", metrics)
        epoch = potential.base.attributes.get("epochs")
        summary = {
            "epochs": epoch,
            "rmse_energy_per_atom": potential.base.attributes.get("rmse_energy_per_atom"),
            "rmse_forces": potential.base.attributes.get("rmse_forces"),
            "content_sha256": potential.content_sha256,
            "units": {"rmse_energy_per_atom": "eV/atom", "rmse_forces": "eV/Angstrom"},
        }
        report = self._report_line()
        if report:
            match = _REPORT.search(report)
            summary["data_report"] = {
                "used": int(match.group(1)),
                "total": int(match.group(2)),
                "skipped": match.group(3),
                "duplicates": int(match.group(4)),
            }
        last = next((line for line in reversed(lines) if "members" in line), None)
        if last:
            summary["members"] = [
                {key: row[key] for key in ("test_rmse_energy_per_atom", "test_rmse_forces", "active", "excluded")}
                for row in last["members"]
            ]
        self.out("output_parameters", orm.Dict(summary))
        expected = _expected_epoch(self.node)
        if expected is not None and epoch < expected:
            if self._killed_at_wall_time():
                return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
            return self.exit_codes.ERROR_TRAINING_INCOMPLETE.format(epoch=epoch, expected=expected)
        return None

    def _killed_at_wall_time(self) -> bool:
        """True when the scheduler plugin found that the job was killed at its wall time.

        aiida-core parses the scheduler's output first (``core.slurm``: ``sacct``'s ``TIMEOUT``, or
        SLURM's "CANCELLED AT ... DUE TO TIME LIMIT" in the job's stderr) and sets its exit status on
        the node; the parser's exit code replaces it. An incomplete model says only that training
        stopped early; the scheduler's finding says why, so it is kept (the checkpoint stays the
        ``potential`` output, and the job is resumed from it as for any early stop).
        """
        return self.node.exit_status == Calc.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status

    def _report_line(self) -> str | None:
        for line in self.read_text(Calc.STDERR).splitlines():
            if _REPORT.search(line):
                return line.strip()
        return None
