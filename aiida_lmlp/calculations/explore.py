"""``lmlp.explore``: run the ensemble calculator on starting structures with a protocol (``lmlp explore``)."""

from __future__ import annotations

import yaml
from aiida import orm
from aiida.common import CalcInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

from .base import LmlpCalcJob, dataset_copy

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
        spec.inputs.validator = _validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "lmlp.explore"
        spec.output("visited", valid_type=LmlpDatasetData, help="Visited conformations with predictions.")
        spec.output("summary", valid_type=orm.Dict, help="Per trajectory: steps, frames, early stop and its reason.")
        spec.default_output_node = "summary"
        spec.exit_code(300, "ERROR_MISSING_OUTPUT", invalidates_cache=True, message="lmlp explore wrote no output.")
        spec.exit_code(
            310,
            "ERROR_ALL_TRAJECTORIES_FAILED",
            invalidates_cache=True,
            message="No starting structure could be explored: {message}",
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Start structures and the model copied in from the repository, the protocol as YAML."""
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
        copies = [(potential.uuid, potential.filename, self.MODEL), dataset_copy(self.inputs.structures, self.START)]
        return self.calcinfo(arguments, [self.SUMMARY], copies, retrieve_temporary=[self.VISITED, self.VISITED_ARCHIVE])
