"""``lmlp.train``: train a new lMLP ensemble, or continue training a parent version, with ``lmlp train``."""

from __future__ import annotations

import yaml
from aiida import orm
from aiida.common import CalcInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import ARCHIVE, LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

from .base import MODEL_FILE, LmlpCalcJob, files_in_folder

__all__ = ["LmlpTrainCalculation"]


def _validate_parameters(parameters: orm.Dict | None, _) -> str | None:
    """Every key must be a known ``lmlp train`` configuration key with a valid value."""
    if parameters is None:
        return None
    from aiida_lmlp.formats.training_config import ConfigError, default_config, merge_config

    try:
        merge_config(default_config(), parameters.get_dict())
    except ConfigError as error:
        return f"parameters: {error}"
    return None


def _validate_datasets(datasets: dict, _) -> str | None:
    if not datasets:
        return "datasets: give at least one lmlp.dataset to train on"
    problems = [problem for key in sorted(datasets) for problem in datasets[key].training_problems()]
    return "; ".join(f"datasets: {p}" for p in problems) or None


def _validate_inputs(inputs: dict, _) -> str | None:
    """Elements of the data must have networks in the parent potential, or the parent must be able to add them.

    An eeACSF model adds a network for a new element when continued (its descriptor's length does
    not depend on the elements); a conventional ACSF model cannot.
    """
    parent = inputs.get("parent_potential")
    datasets = inputs.get("datasets") or {}
    block = inputs.get("member_block")
    if block is not None:
        if parent is None:
            return "member_block needs a parent_potential (a new model takes members and member_offset parameters)"
        start, stop = (block.get_list() + [None, None])[:2]
        members = parent.base.attributes.get("members")
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= members):
            return f"member_block {block.get_list()} is not [start, stop] within the parent's {members} members"
    if parent is None:
        return "parent_folder needs a parent_potential (it is that job's folder)" if "parent_folder" in inputs else None
    missing = {e: key for key, node in sorted(datasets.items()) for e in node.elements if e not in parent.elements}
    if missing and parent.base.attributes.get("descriptor") != "eeacsf":
        named = ", ".join(f"{element} (in datasets.{key})" for element, key in sorted(missing.items()))
        return (
            f"parent_potential<{parent.pk}> has networks for {', '.join(parent.elements)} only; the data contain "
            f"{named}. Its {parent.base.attributes.get('descriptor')} descriptor cannot take a new element "
            "(its length depends on the elements): train a new model on all elements instead."
        )
    if not parent.base.attributes.get("has_training_state", False):
        return f"parent_potential<{parent.pk}> carries no training state to continue from"
    folder = inputs.get("parent_folder")
    if folder is not None:
        writer, holder = parent.creator, folder.creator
        if writer is None or holder is None or writer.pk != holder.pk:
            return f"parent_folder<{folder.pk}> is not the folder of the job that wrote parent_potential<{parent.pk}>"
    return None


class LmlpTrainCalculation(LmlpCalcJob):
    """Run ``lmlp train`` on labelled datasets, optionally continuing from a parent potential.

    Continuing training is lifelong: the parent's weights, CoRe state and adaptive-selection
    state carry over, and the new conformations join every member's data stream.
    """

    MODEL = MODEL_FILE
    METRICS = "model.metrics.jsonl"
    PARENT = "parent.lmlp"
    CONFIG = "config.yaml"

    @classmethod
    def define(cls, spec):
        """Inputs, outputs and exit codes."""
        super().define(spec)
        spec.input_namespace(
            "datasets",
            valid_type=LmlpDatasetData,
            dynamic=True,
            validator=_validate_datasets,
            help="Labelled conformations to train on (their union; duplicates count once).",
        )
        spec.input(
            "parent_potential",
            valid_type=LmlpPotentialData,
            required=False,
            help="Continue training this version (weights, optimiser and selection state carry over).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            help="Overrides of the `lmlp train --print-config` configuration (epochs, members, seed, device, ...).",
        )
        spec.input(
            "parent_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="The remote folder of the job that wrote parent_potential. On this job's computer, the parent "
            "model and the datasets that job had are linked from there instead of uploaded again.",
        )
        spec.input(
            "member_block",
            valid_type=orm.List,
            required=False,
            help="[start, stop]: continue only these members of the parent (one job of a split ensemble).",
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "lmlp.train"
        spec.output("potential", valid_type=LmlpPotentialData, help="The trained model version.")
        spec.output("metrics", valid_type=orm.ArrayData, help="Per-epoch losses and RMSEs (eV/atom, eV/Å).")
        spec.output("output_parameters", valid_type=orm.Dict, help="Final RMSEs, epochs and the data report.")
        spec.default_output_node = "output_parameters"
        spec.exit_code(300, "ERROR_MISSING_MODEL", invalidates_cache=True, message="lmlp train wrote no model file.")
        spec.exit_code(
            301, "ERROR_CORRUPT_MODEL", invalidates_cache=True, message="The model file is damaged: {message}"
        )
        spec.exit_code(
            304,
            "ERROR_LINKED_INPUT_MISSING",
            invalidates_cache=True,
            message="An input file linked from an earlier job's folder is gone (scratch purged?): {message}",
        )
        spec.exit_code(
            310,
            "ERROR_NO_USABLE_DATA",
            invalidates_cache=True,
            message="No conformation passed the data checks: {message}",
        )
        spec.exit_code(
            320,
            "ERROR_TRAINING_INCOMPLETE",
            invalidates_cache=True,
            message="Training stopped at epoch {epoch} of {expected}; the last checkpoint is the `potential` output.",
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Datasets and the parent model uploaded from the repository, or linked from ``parent_folder``
        where that job holds them on this computer; the configuration as YAML."""
        arguments, files = ["train"], []
        for index, key in enumerate(sorted(self.inputs.datasets)):
            name = f"data_{index}.npz"
            files.append((self.inputs.datasets[key], ARCHIVE, name))
            arguments += ["--data", name]
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        with folder.open(self.CONFIG, "w", encoding="utf-8") as handle:
            yaml.safe_dump(parameters, handle, sort_keys=True)
        arguments += ["--config", self.CONFIG, "--out", self.MODEL]
        if "parent_potential" in self.inputs:
            parent = self.inputs.parent_potential
            files.append((parent, parent.filename, self.PARENT))
            arguments += ["--continue-from", self.PARENT]
            if "member_block" in self.inputs:
                start, stop = self.inputs.member_block.get_list()
                arguments += ["--member-block", f"{start}:{stop}"]
        linkable = {}
        remote = self.inputs.get("parent_folder")
        if remote is not None and remote.computer.uuid == self.node.computer.uuid:
            linkable = files_in_folder(remote, {"potential": self.MODEL})
        copies, links = self.stage_inputs(folder, files, linkable)
        return self.calcinfo(arguments, [self.METRICS], copies, retrieve_temporary=[self.MODEL], remote_links=links)
