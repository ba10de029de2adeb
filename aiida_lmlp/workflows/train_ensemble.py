"""``lmlp.train_ensemble``: train an ensemble in one job or spread its members over several, then gather.

Each job is an ``lmlp.train`` calculation. A job killed at its wall time (or stopped before its
last epoch for any other reason) hands back its last checkpoint, and is resubmitted to
continue from it for the epochs it still owes, instead of starting over. With
``members_per_job`` smaller than the ensemble, the jobs run in parallel as member blocks
(``member_offset`` for a new model, ``member_block`` of the parent when continuing) and an
``lmlp.gather`` calculation joins them into one version.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, while_

from aiida_lmlp.calculations.gather import LmlpGatherCalculation
from aiida_lmlp.calculations.train import LmlpTrainCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.workflows.links import outputs_of
from aiida_lmlp.workflows.reporting import CallerNamedReport

__all__ = ["TrainEnsembleWorkChain"]

RESUMABLE = (
    LmlpTrainCalculation.exit_codes.ERROR_TRAINING_INCOMPLETE.status,
    LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status,
    LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_NODE_FAILURE.status,
    LmlpTrainCalculation.exit_codes.ERROR_MISSING_MODEL.status,
)


def _validate_members_per_job(value: orm.Int | None, _) -> str | None:
    if value is not None and value.value < 1:
        return "members_per_job must be at least 1"
    return None


class TrainEnsembleWorkChain(CallerNamedReport, WorkChain):
    """Train (or continue training) an lMLP ensemble in one or several ``lmlp.train`` jobs."""

    @classmethod
    def define(cls, spec):
        """Inputs, outline, outputs and exit codes."""
        super().define(spec)
        spec.expose_inputs(
            LmlpTrainCalculation,
            namespace="train",
            exclude=("datasets", "parent_potential", "parameters", "member_block"),
        )
        spec.input_namespace("datasets", valid_type=LmlpDatasetData, dynamic=True, help="Labelled training data.")
        spec.input("parent_potential", valid_type=LmlpPotentialData, required=False, help="Continue this version.")
        spec.input("parameters", valid_type=orm.Dict, required=False, help="`lmlp train` configuration overrides.")
        spec.input(
            "members_per_job",
            valid_type=orm.Int,
            required=False,
            validator=_validate_members_per_job,
            help="Members per training job (default: the whole ensemble in one job).",
        )
        spec.input(
            "max_restarts",
            valid_type=orm.Int,
            default=lambda: orm.Int(5),
            help="Resubmissions per job after a wall-time kill (each continues from the last checkpoint).",
        )
        spec.input("gather_code", valid_type=orm.AbstractCode, required=False, help="Default: the training code.")
        spec.outline(
            cls.setup,
            cls.submit_jobs,
            while_(cls.jobs_pending)(cls.inspect_jobs),
            cls.gather,
            cls.results,
        )
        spec.output("potential", valid_type=LmlpPotentialData, help="The trained version.")
        spec.output("metrics", valid_type=orm.ArrayData, required=False, help="Per-epoch metrics (single job).")
        spec.output("output_parameters", valid_type=orm.Dict, required=False, help="Final metrics (single job).")
        spec.exit_code(
            401,
            "ERROR_TRAINING_FAILED",
            message="Training job {job} failed for good: {message}",
            invalidates_cache=True,
        )
        spec.exit_code(402, "ERROR_GATHER_FAILED", message="Gathering the member blocks failed: {message}")

    # -- planning -----------------------------------------------------------------------------------

    def _members(self) -> int:
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        if "parent_potential" in self.inputs:
            return self.inputs.parent_potential.members
        from aiida_lmlp.potential.training_config import default_config

        return int(parameters.get("members", default_config()["members"]))

    def setup(self):
        """Plan the member blocks: one job for all members unless ``members_per_job`` says otherwise."""
        members = self._members()
        per_job = self.inputs.members_per_job.value if "members_per_job" in self.inputs else members
        per_job = min(per_job, members)
        self.ctx.blocks = [(start, min(start + per_job, members)) for start in range(0, members, per_job)]
        self.ctx.restarts = [0] * len(self.ctx.blocks)
        self.ctx.jobs = [None] * len(self.ctx.blocks)  # pk of each block's latest job
        self.ctx.done = [None] * len(self.ctx.blocks)  # pk of each block's finished potential
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        from aiida_lmlp.potential.training_config import default_config

        self.ctx.epochs = int(parameters.get("epochs", default_config()["epochs"]))
        self.report(f"training {members} members in {len(self.ctx.blocks)} job(s): {self.ctx.blocks}")

    def _inputs(self, block: int, checkpoint: LmlpPotentialData | None) -> dict:
        """Inputs of the job for ``block``; from ``checkpoint`` when resuming a killed job."""
        start, stop = self.ctx.blocks[block]
        inputs = self.exposed_inputs(LmlpTrainCalculation, "train")
        inputs["datasets"] = dict(self.inputs.datasets)
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        split = len(self.ctx.blocks) > 1
        if checkpoint is not None:
            done = checkpoint.base.attributes.get("epochs") - self._start_epoch()
            parameters["epochs"] = max(self.ctx.epochs - done, 0)
            inputs["parent_potential"] = checkpoint
        elif "parent_potential" in self.inputs:
            inputs["parent_potential"] = self.inputs.parent_potential
            if split:
                inputs["member_block"] = orm.List([start, stop])
        elif split:
            parameters.update({"members": stop - start, "member_offset": start})
        if parameters:
            inputs["parameters"] = orm.Dict(parameters)
        inputs.setdefault("metadata", {})
        inputs["metadata"]["call_link_label"] = f"train_block_{block:02d}_try_{self.ctx.restarts[block]:02d}"
        return inputs

    def _start_epoch(self) -> int:
        if "parent_potential" in self.inputs:
            return self.inputs.parent_potential.base.attributes.get("epochs", 0)
        return 0

    # -- running ------------------------------------------------------------------------------------

    def submit_jobs(self):
        """Submit every block's job; they run in parallel."""
        futures = {}
        for block in range(len(self.ctx.blocks)):
            node = self.submit(LmlpTrainCalculation, **self._inputs(block, None))
            self.ctx.jobs[block] = node.pk
            futures[f"job_{block}"] = node
        return ToContext(**futures)

    def jobs_pending(self) -> bool:
        """True while a block has no finished potential."""
        return any(done is None for done in self.ctx.done)

    def inspect_jobs(self):
        """Keep what finished; resubmit what was killed from its checkpoint; fail on the hopeless."""
        futures = {}
        for block, pk in enumerate(self.ctx.jobs):
            if self.ctx.done[block] is not None:
                continue
            node = orm.load_node(pk)
            if node.is_finished_ok:
                self.ctx.done[block] = node.outputs.potential.pk
                continue
            if node.exit_status not in RESUMABLE or self.ctx.restarts[block] >= self.inputs.max_restarts.value:
                return self.exit_codes.ERROR_TRAINING_FAILED.format(
                    job=f"{node.process_label}<{node.pk}>",
                    message=node.exit_message or f"exit status {node.exit_status}",
                )
            checkpoint = node.outputs.potential if "potential" in node.outputs else None
            self.ctx.restarts[block] += 1
            where = f"epoch {checkpoint.base.attributes.get('epochs')}" if checkpoint else "the start (no checkpoint)"
            self.report(f"{node.process_label}<{node.pk}> stopped early ({node.exit_message}); continuing from {where}")
            resumed = self.submit(LmlpTrainCalculation, **self._inputs(block, checkpoint))
            self.ctx.jobs[block] = resumed.pk
            futures[f"job_{block}"] = resumed
        return ToContext(**futures) if futures else None

    def gather(self):
        """One job: its potential is the version. Several: ``lmlp.gather`` joins the blocks."""
        if len(self.ctx.blocks) == 1:
            return None
        code = self.inputs.gather_code if "gather_code" in self.inputs else self.inputs.train.code
        inputs = {
            "code": code,
            "blocks": {f"block_{i:02d}": orm.load_node(pk) for i, pk in enumerate(self.ctx.done)},
            "datasets": dict(self.inputs.datasets),
            "metadata": {"call_link_label": "gather"},
        }
        options = self.inputs.train.get("metadata", {}).get("options", {})
        if options:
            keep = ("resources", "max_wallclock_seconds", "queue_name", "account", "prepend_text")
            inputs["metadata"]["options"] = {k: v for k, v in options.items() if k in keep}
        return ToContext(gathered=self.submit(LmlpGatherCalculation, **inputs))

    def results(self):
        """The version (and, for one job, its metrics)."""
        if len(self.ctx.blocks) > 1:
            node = self.ctx.gathered
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_GATHER_FAILED.format(message=node.exit_message or str(node.exit_status))
            self.out("potential", node.outputs.potential)
            return None
        outputs = outputs_of(orm.load_node(self.ctx.jobs[0]))
        self.out("potential", outputs["potential"])
        if self.ctx.restarts[0] == 0:
            for name in ("metrics", "output_parameters"):
                if name in outputs:
                    self.out(name, outputs[name])
        return None
