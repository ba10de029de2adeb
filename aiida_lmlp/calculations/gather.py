"""``lmlp.gather``: join member blocks trained in several jobs into one model version (``lmlp gather``)."""

from __future__ import annotations

from aiida.common import CalcInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import ARCHIVE, LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

from .base import MODEL_FILE, LmlpCalcJob

__all__ = ["LmlpGatherCalculation"]


def _validate_blocks(blocks: dict, _) -> str | None:
    if len(blocks or {}) < 1:
        return "blocks: give the member blocks to gather"
    offsets = sorted(
        (node.base.attributes.get("member_offset"), node.base.attributes.get("members")) for node in blocks.values()
    )
    expected = offsets[0][0]
    for offset, members in offsets:
        if offset != expected:
            return f"blocks: member blocks do not follow each other (expected offset {expected}, got {offset})"
        expected += members
    return None


class LmlpGatherCalculation(LmlpCalcJob):
    """Run ``lmlp gather``: blocks of members (with their training state) become one ensemble.

    With ``datasets`` (the training data) the ensemble's test RMSEs are evaluated on the union of
    the members' test sets, as a single training job reports them.
    """

    MODEL = MODEL_FILE

    @classmethod
    def define(cls, spec):
        """Inputs, outputs and exit codes."""
        super().define(spec)
        spec.input_namespace("blocks", valid_type=LmlpPotentialData, dynamic=True, validator=_validate_blocks)
        spec.input_namespace("datasets", valid_type=LmlpDatasetData, dynamic=True, required=False)
        spec.inputs["metadata"]["options"]["parser_name"].default = "lmlp.gather"
        spec.output("potential", valid_type=LmlpPotentialData, help="The gathered model version.")
        spec.exit_code(300, "ERROR_MISSING_MODEL", invalidates_cache=True, message="lmlp gather wrote no model file.")
        spec.exit_code(
            301, "ERROR_CORRUPT_MODEL", invalidates_cache=True, message="The model file is damaged: {message}"
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """The blocks and the data copied in from the repository (recorded, for a job that continues the
        gathered version to link them from here)."""
        arguments, files = ["gather"], []
        for index, key in enumerate(sorted(self.inputs.blocks)):
            node = self.inputs.blocks[key]
            name = f"block_{index}.lmlp"
            files.append((node, node.filename, name))
            arguments.append(name)
        for index, key in enumerate(sorted(self.inputs.get("datasets", {}))):
            name = f"data_{index}.npz"
            files.append((self.inputs.datasets[key], ARCHIVE, name))
            arguments += ["--data", name]
        arguments += ["--out", self.MODEL]
        copies, _ = self.stage_inputs(folder, files)
        return self.calcinfo(arguments, [], copies, retrieve_temporary=[self.MODEL])
