"""``lmlp campaign launch --dry-run``: everything a launch does but submitting, and the first job prepared.

A dry run reads and validates the spec, loads its codes, reads its structure files into
(unstored) datasets, validates the ``lmlp.lifelong`` inputs as the engine will, and prepares
the campaign's first job (the labelling of unlabelled structures, otherwise the training of
the first version) with aiida-core's ``metadata.dry_run``: its input files and job script are
written to a local folder, nothing is stored and nothing is submitted. So a spec whose files,
codes, settings or scheduler options do not fit is found on the login node, before the first
job sits in a queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .spec import CampaignSpec, SpecError

__all__ = ["DryRun", "dry_run"]


@dataclass
class DryRun:
    """What a dry run found: the datasets' sizes and the first job's prepared folder."""

    structures: int
    labelled: bool
    explore_structures: int | None
    job: str  # the first job's process, e.g. ``LmlpTrainCalculation``
    computer: str
    folder: Path | None  # its input files and job script (None: a work chain, prepared when it runs)
    script: Path | None


def _first_job(inputs: dict) -> tuple[type, dict]:
    """The process class and inputs of the campaign's first calculation job."""
    from aiida_lmlp.calculations.train import LmlpTrainCalculation
    from aiida_lmlp.workflows.label import LabelWorkChain

    structures = inputs["structures"]
    if structures.base.attributes.get("labelled_count") == structures.count:
        train = inputs["train"]
        job = {**train["train"], "datasets": {"d000": structures}}
        if "parameters" in train:
            job["parameters"] = train["parameters"]
        return LmlpTrainCalculation, job
    from aiida_lmlp.workflows import label as label_module

    label = inputs["label"]
    # the labelling job's namespace in ``label``: the one that carries its code
    (namespace,) = [key for key, value in label.items() if isinstance(value, Mapping) and "code" in value]
    processes = getattr(label_module, "BATCH_PROCESSES", {})  # one process per labeller, where there are several
    process = processes.get(namespace, LabelWorkChain._process_class)
    return process, {**label[namespace], "structures": structures}


def dry_run(spec: CampaignSpec, campaign: str) -> DryRun:
    """Validate ``spec`` into ``lmlp.lifelong`` inputs and prepare the first job in ``./submit_test/``.

    Raises :class:`SpecError` naming what does not fit; stores nothing.
    """
    from aiida.engine import CalcJob, run_get_node

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    inputs = spec.build_inputs(campaign, store=False)
    port = LifelongWorkChain.spec().inputs
    error = port.validate(port.pre_process(dict(inputs)))
    if error is not None:
        raise SpecError(f"{spec.path}: {error}")
    process, job = _first_job(inputs)
    folder = script = None
    if issubclass(process, CalcJob):  # a labeller that is a work chain of its own has no job to prepare here
        job["metadata"] = {**job.get("metadata", {}), "dry_run": True, "store_provenance": False}
        try:
            _, node = run_get_node(process, **job)
        except ValueError as error:  # the calculation's own input validation
            raise SpecError(f"{spec.path}: the first job ({process.__name__}): {error}") from None
        folder = Path(node.dry_run_info["folder"])
        script = folder / node.dry_run_info["script_filename"]
    explore = inputs.get("explore_structures")
    structures = inputs["structures"]
    return DryRun(
        structures=structures.count,
        labelled=structures.base.attributes.get("labelled_count") == structures.count,
        explore_structures=explore.count if explore is not None else None,
        job=process.__name__,
        computer=job["code"].computer.label,
        folder=folder,
        script=script,
    )
