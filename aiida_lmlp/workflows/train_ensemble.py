"""``lmlp.train_ensemble``: train an ensemble in one job or spread its members over several, then gather.

Each job is an ``lmlp.train`` calculation. A job killed at its wall time (or stopped before its
last epoch for any other reason) hands back its last checkpoint, and is resubmitted to
continue from it for the epochs it still owes, instead of starting over. With
``members_per_job`` smaller than the ensemble, the jobs run in parallel as member blocks
(``member_offset`` for a new model, ``member_block`` of the parent when continuing) and an
``lmlp.gather`` calculation joins them into one version. The steps are
:class:`~aiida_lmlp.workflows.ensemble_training.EnsembleTraining`'s, which ``lmlp.lifelong``
runs itself for each of its versions.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode, WorkChain, while_

from aiida_lmlp.calculations.train import LmlpTrainCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries

from .ensemble_training import DEFAULT_MAX_RESTARTS, RESUMABLE, EnsembleTraining, TrainingRequest
from .reporting import CallerNamedReport

__all__ = ["RESUMABLE", "TrainEnsembleWorkChain"]


def _validate_members_per_job(value: orm.Int | None, _) -> str | None:
    if value is not None and value.value < 1:
        return "members_per_job must be at least 1"
    return None


class TrainEnsembleWorkChain(
    EnsembleTraining, CallerNamedReport, InputsEncodedOnce, LinksWithoutVacuousQueries, WorkChain
):
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
            default=lambda: orm.Int(DEFAULT_MAX_RESTARTS),
            help="Resubmissions per job after a wall-time kill (each continues from the last checkpoint).",
        )
        spec.input("gather_code", valid_type=orm.AbstractCode, required=False, help="Default: the training code.")
        # the same shape as before the steps moved to EnsembleTraining: a checkpointed run resumes
        spec.outline(
            cls.setup,
            cls.submit_training,
            while_(cls.training_pending)(cls.inspect_training),
            cls.gather_training,
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

    def training_request(self) -> TrainingRequest:
        """The inputs, as :class:`EnsembleTraining` takes them."""
        return TrainingRequest(
            job_inputs=dict(self.exposed_inputs(LmlpTrainCalculation, "train")),
            datasets=dict(self.inputs.datasets),
            parent_potential=self.inputs.get("parent_potential"),
            parameters=self.inputs.parameters.get_dict() if "parameters" in self.inputs else {},
            members_per_job=self.inputs.members_per_job.value if "members_per_job" in self.inputs else None,
            max_restarts=self.inputs.max_restarts.value,
            gather_code=self.inputs.get("gather_code"),
        )

    def training_failed(self, job: str | None, message: str) -> ExitCode:
        """401 for a job that failed for good, 402 for the gathering."""
        if job is None:
            return self.exit_codes.ERROR_GATHER_FAILED.format(message=message)
        return self.exit_codes.ERROR_TRAINING_FAILED.format(job=job, message=message)

    def setup(self):
        """Plan the member blocks: one job for all members unless ``members_per_job`` says otherwise."""
        self.plan_training()

    def results(self):
        """The version (and, for one job, its metrics)."""
        outputs = self.training_outputs()
        if isinstance(outputs, ExitCode):
            return outputs
        for name, node in outputs.items():
            self.out(name, node)
        return None
