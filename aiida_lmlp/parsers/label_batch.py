"""The parser of every ``lmlp label-*`` batch: converged single points into a dataset; failures listed, never lost."""

from __future__ import annotations

import json

from aiida import orm

from aiida_lmlp.calculations.label_batch import labelled_text
from aiida_lmlp.data.dataset import LmlpDatasetData

from .base import LmlpParser

__all__ = ["LabelBatchParser", "read_status"]


def read_status(text: str) -> tuple[dict | None, list[dict], dict | None]:
    """``(start event, per-structure records, final event)`` of a status.jsonl; a torn last line is ignored."""
    start, records, final = None, [], None
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the process died
        event = entry.get("event")
        if event == "start":
            start = entry
        elif event in ("finished", "terminated"):
            final = entry
        elif "index" in entry:
            records.append(entry)
    return start, records, final


class LabelBatchParser(LmlpParser):
    """Outputs ``labelled``, ``failed`` and ``output_parameters`` of a
    :class:`~aiida_lmlp.calculations.label_batch.SinglePointBatchCalculation`.

    The labelled dataset records the batch's label protocol (from the start event).
    """

    def parse_files(self):
        """Read status.jsonl and labelled.npz (labelled.extxyz after a batch cut short)."""
        calc = self.node.process_class
        message = self.error_message(calc.STDERR)
        start, records, final = read_status(self.read_text(calc.STATUS))
        if start is None:
            if message:
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
            return self.exit_codes.ERROR_MISSING_OUTPUT
        structures = self.node.inputs.structures
        ids = structures.ids
        labelled = None
        source = f"{self.node.process_type.rsplit(':', 1)[-1]}<{self.node.pk}> output"
        protocol = start.get("protocol")
        if self.has_file(calc.LABELLED_ARCHIVE):
            with self.tempdir() as folder:
                archived = LmlpDatasetData.from_archive(
                    self.path_of(calc.LABELLED_ARCHIVE, folder), source=source, label_protocol=protocol
                )
            labelled = archived if archived.count else None
        elif self.has_file(calc.LABELLED) and self.read_text(calc.LABELLED).strip():
            # a batch cut short leaves only the extxyz written as it went (read with ase.io)
            with self.tempdir() as folder:
                labelled = LmlpDatasetData.from_extxyz(
                    self.path_of(calc.LABELLED, folder), source=source, label_protocol=protocol
                )
        if labelled is not None:
            self.out("labelled", labelled)
        attempted = {r["index"] for r in records}
        failed = [
            {
                "index": r["index"],
                "id": ids[r["index"]],
                "status": r["status"],
                "message": r.get("message"),
            }
            for r in records
            if r["status"] != "converged"
        ]
        failed += [
            {"index": i, "id": ids[i], "status": "not_attempted", "message": None}
            for i in range(len(ids))
            if i not in attempted
        ]
        failed.sort(key=lambda entry: entry["index"])
        self.out("failed", orm.List(failed))
        converged = [r for r in records if r["status"] == "converged"]
        summary = {
            "count": len(ids),
            "converged": len(converged),
            "not_converged": sum(r["status"] == "not_converged" for r in records),
            "errors": sum(r["status"] == "error" for r in records),
            "not_attempted": len(ids) - len(attempted),
            "parameters": start.get("parameters", {}),
            "protocol": protocol,
            "versions": start.get("versions", {}),
            "method": labelled.label_method if labelled is not None else None,
            "seconds": sum(r.get("seconds") or 0.0 for r in records),
        }
        if "pyscf_version" in start:
            summary["pyscf_version"] = start["pyscf_version"]
        self.out("output_parameters", orm.Dict(summary))
        done = labelled_text(labelled.count if labelled is not None else 0, len(ids))
        if final is None:
            return self.exit_codes.ERROR_CRASHED.format(
                message=f"status.jsonl ends after {len(records)} of {len(ids)} structures"
                + (f"; {message}" if message else "")
            )
        if final.get("event") == "terminated":
            return self.exit_codes.ERROR_TERMINATED.format(
                signal=final.get("signal"), completed=len(records), count=len(ids), labelled=done
            )
        errors = [r for r in records if r["status"] == "error"]
        if errors:
            text = "; ".join(f"{r['index']}: {r.get('message')}" for r in errors[:3])
            return self.exit_codes.ERROR_STRUCTURE_FAILED.format(count=len(errors), message=text, labelled=done)
        not_converged = [r["index"] for r in records if r["status"] == "not_converged"]
        if not_converged:
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED.format(
                count=len(not_converged), indices=", ".join(map(str, not_converged)), labelled=done
            )
        return None
