"""``lmlp.explore``: run the ensemble calculator on starting structures with a protocol (``lmlp explore``)."""

from __future__ import annotations

import yaml
from aiida import orm
from aiida.common import CalcInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import ARCHIVE, LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

from .base import MODEL_FILE, LmlpCalcJob, files_in_folder

__all__ = ["LmlpExploreCalculation"]


def _validate_protocol(protocol: orm.Dict | None, _) -> str | None:
    if protocol is None:
        return None
    from aiida_lmlp.formats.exploration import ExplorationProtocol, ProtocolError

    try:
        ExplorationProtocol.from_dict(protocol.get_dict())
    except ProtocolError as error:
        return f"protocol: {error}"
    return None


#: Where ``lmlp explore`` runs the ensemble (its ``--device``).
DEVICES = ("auto", "cpu", "cuda")


def _validate_device(device: orm.Str | None, _) -> str | None:
    if device is not None and device.value not in DEVICES:
        return f"device must be one of {', '.join(DEVICES)}, got {device.value!r}"
    return None


def _validate_inputs(inputs: dict, _) -> str | None:
    potential, structures = inputs.get("potential"), inputs.get("structures")
    if potential is None or structures is None:
        return None
    if structures.count == 0:
        return f"structures: lmlp.dataset<{structures.pk}> is empty"
    missing = sorted(set(structures.elements) - set(potential.elements))
    if missing:
        return (
            f"structures contain {', '.join(missing)}, for which potential<{potential.pk}> "
            f"(elements {', '.join(potential.elements)}) has no network"
        )
    folder = inputs.get("potential_folder")
    if folder is not None:
        writer, holder = potential.creator, folder.creator
        if writer is None or holder is None or writer.pk != holder.pk:
            return f"potential_folder<{folder.pk}> is not the folder of the job that wrote potential<{potential.pk}>"
    kind = (inputs.get("protocol") or orm.Dict({})).get_dict().get("kind", "md")
    if kind == "neb" and structures.count % 2:
        return f"structures: a NEB protocol needs endpoint pairs (initial, final, ...); got {structures.count}"
    return None


class LmlpExploreCalculation(LmlpCalcJob):
    """Explore with an lMLP ensemble: MD, relaxation, NEB or plain evaluation.

    Returns the visited conformations with predicted energies, forces and their uncertainties
    (an unlabelled ``lmlp.dataset``). A trajectory stops early once the uncertainty passes the
    protocol's stop threshold.
    """

    MODEL = "model.lmlp"
    START = "start.npz"
    PROTOCOL = "protocol.yaml"
    VISITED = "visited.extxyz"
    VISITED_ARCHIVE = "visited.npz"
    SUMMARY = "summary.json"

    @classmethod
    def define(cls, spec):
        """Inputs, outputs and exit codes."""
        super().define(spec)
        spec.input("potential", valid_type=LmlpPotentialData, help="The model version to explore with.")
        spec.input("structures", valid_type=LmlpDatasetData, help="Starting structures (NEB: endpoint pairs).")
        spec.input(
            "protocol",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_protocol,
            help="kind (md|relax|neb|evaluate) and its settings; see docs/exploration.md.",
        )
        spec.input(
            "device",
            valid_type=orm.Str,
            required=False,
            validator=_validate_device,
            help="auto | cpu | cuda: where the ensemble runs (default auto: a CUDA device when the job has one).",
        )
        spec.input(
            "potential_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="The remote folder of the job that wrote potential. On this job's computer, the model file is "
            "linked from there instead of uploaded again.",
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "lmlp.explore"
        spec.output("visited", valid_type=LmlpDatasetData, help="Visited conformations with predictions.")
        spec.output("summary", valid_type=orm.Dict, help="Per trajectory: steps, frames, early stop and its reason.")
        spec.default_output_node = "summary"
        spec.exit_code(300, "ERROR_MISSING_OUTPUT", invalidates_cache=True, message="lmlp explore wrote no output.")
        spec.exit_code(
            304,
            "ERROR_LINKED_INPUT_MISSING",
            invalidates_cache=True,
            message="The model file linked from its training job's folder is gone (scratch purged?): {message}",
        )
        spec.exit_code(
            310,
            "ERROR_ALL_TRAJECTORIES_FAILED",
            invalidates_cache=True,
            message="No starting structure could be explored: {message}",
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Start structures and the model uploaded from the repository (the model linked from ``potential_folder``
        where its training job left it on this computer), the protocol as YAML."""
        protocol = self.inputs.protocol.get_dict() if "protocol" in self.inputs else {}
        with folder.open(self.PROTOCOL, "w", encoding="utf-8") as handle:
            yaml.safe_dump(protocol, handle, sort_keys=True)
        potential = self.inputs.potential
        arguments = ["explore", "--model", self.MODEL, "--structures", self.START, "--protocol", self.PROTOCOL]
        # a completed run leaves its frames in the archive only, a run cut short in the extxyz only: the
        # daemon fetches each frame once (the parser reads the archive, else the extxyz)
        arguments += ["--out", self.VISITED, "--archive", self.VISITED_ARCHIVE, "--no-keep-out"]
        arguments += ["--summary", self.SUMMARY]
        if "device" in self.inputs:
            arguments += ["--device", self.inputs.device.value]
        files = [(potential, potential.filename, self.MODEL), (self.inputs.structures, ARCHIVE, self.START)]
        linkable = {}
        remote = self.inputs.get("potential_folder")
        if remote is not None and remote.computer.uuid == self.node.computer.uuid:
            linkable = files_in_folder(remote, {"potential": MODEL_FILE})
        copies, links = self.stage_inputs(folder, files, linkable)
        retrieve_temporary = [self.VISITED, self.VISITED_ARCHIVE]
        return self.calcinfo(arguments, [self.SUMMARY], copies, retrieve_temporary, remote_links=links)
