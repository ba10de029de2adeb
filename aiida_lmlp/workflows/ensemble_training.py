"""Work-chain steps that train one ensemble version in ``lmlp.train`` jobs: plan, submit, resume, gather.

The ensemble is trained in one job, or in member blocks of ``members_per_job`` run in parallel
(``member_offset`` for a new model, ``member_block`` of the parent when continuing) and joined
by an ``lmlp.gather`` calculation. A job killed at its wall time (or stopped before its last
epoch for any other reason) hands back its last checkpoint and is resubmitted to continue from
it for the epochs it still owes, instead of starting over.

:class:`EnsembleTraining` is a mixin for a ``WorkChain``; ``lmlp.train_ensemble`` runs its steps
for one version, and ``lmlp.lifelong`` runs them itself for every version rather than calling an
``lmlp.train_ensemble`` each time: a process less per campaign iteration (creating, starting and
finishing a work chain costs the engine about 0.9 s on a 2-core machine, see the benchmarks).
Its context keys are ``blocks``, ``restarts``, ``jobs``, ``done``, ``epochs``, ``gathered`` and
``job_<block>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiida import orm
from aiida.engine import ExitCode, ToContext

from aiida_lmlp.calculations.gather import LmlpGatherCalculation
from aiida_lmlp.calculations.train import LmlpTrainCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

from .links import outputs_of

__all__ = ["RESUMABLE", "EnsembleTraining", "TrainingRequest"]

#: exit status of an ``lmlp.train`` job whose files linked from an earlier job's folder were gone: it is
#: resubmitted as it was, uploading every file
LINKED_INPUT_MISSING = LmlpTrainCalculation.exit_codes.ERROR_LINKED_INPUT_MISSING.status

#: exit statuses of ``lmlp.train`` after which the job is resubmitted from its checkpoint
RESUMABLE = (
    LmlpTrainCalculation.exit_codes.ERROR_TRAINING_INCOMPLETE.status,
    LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status,
    LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_NODE_FAILURE.status,
    LmlpTrainCalculation.exit_codes.ERROR_MISSING_MODEL.status,
)

#: resubmissions per job after a wall-time kill, unless the work chain's inputs say otherwise
DEFAULT_MAX_RESTARTS = 5


@dataclass
class TrainingRequest:
    """What to train: built from the work chain's inputs and context at every training step."""

    job_inputs: dict  # inputs of every ``lmlp.train`` job: code, metadata (options), ...
    datasets: dict[str, LmlpDatasetData]
    parent_potential: LmlpPotentialData | None = None
    parameters: dict = field(default_factory=dict)  # ``lmlp train`` configuration overrides
    members_per_job: int | None = None
    max_restarts: int = DEFAULT_MAX_RESTARTS
    gather_code: orm.AbstractCode | None = None
    link_prefix: str = "train_"  # call links: <prefix>block_00_try_00, <prefix>gather


class EnsembleTraining:
    """Mixin for a ``WorkChain``: the steps that train one ensemble version.

    Outline: :meth:`plan_training`, :meth:`submit_training`,
    ``while_(training_pending)(inspect_training)``, :meth:`gather_training`; then
    :meth:`training_outputs` gives the version. The work chain defines
    :meth:`training_request` and :meth:`training_failed`.
    """

    def training_request(self) -> TrainingRequest:
        """What to train now (the same at every step of one training)."""
        raise NotImplementedError

    def training_failed(self, job: str | None, message: str) -> ExitCode:
        """The exit code when ``job`` (``"ProcessLabel<pk>"``) failed for good, or (``job`` None) the gathering."""
        raise NotImplementedError

    # -- planning -----------------------------------------------------------------------------------

    def _members(self, request: TrainingRequest) -> int:
        if request.parent_potential is not None:
            return request.parent_potential.members
        from aiida_lmlp.formats.training_config import default_config

        return int(request.parameters.get("members", default_config()["members"]))

    def plan_training(self) -> None:
        """Plan the member blocks: one job for all members unless ``members_per_job`` says otherwise."""
        from aiida_lmlp.formats.training_config import default_config

        request = self.training_request()
        members = self._members(request)
        per_job = min(request.members_per_job or members, members)
        self.ctx.blocks = [(start, min(start + per_job, members)) for start in range(0, members, per_job)]
        self.ctx.restarts = [0] * len(self.ctx.blocks)
        self.ctx.jobs = [None] * len(self.ctx.blocks)  # pk of each block's latest job
        self.ctx.done = [None] * len(self.ctx.blocks)  # pk of each block's finished potential
        self.ctx.epochs = int(request.parameters.get("epochs", default_config()["epochs"]))
        self.ctx.upload_all = [False] * len(self.ctx.blocks)  # True: link nothing from an earlier job's folder
        self.report(f"training {members} members in {len(self.ctx.blocks)} job(s): {self.ctx.blocks}")

    def _job_inputs(self, request: TrainingRequest, block: int, checkpoint: LmlpPotentialData | None) -> dict:
        """Inputs of the job for ``block``; from ``checkpoint`` when resuming a killed job."""
        start, stop = self.ctx.blocks[block]
        inputs = dict(request.job_inputs)
        inputs["datasets"] = dict(request.datasets)
        parameters = dict(request.parameters)
        split = len(self.ctx.blocks) > 1
        if checkpoint is not None:
            done = checkpoint.base.attributes.get("epochs") - self._start_epoch(request)
            parameters["epochs"] = max(self.ctx.epochs - done, 0)
            inputs["parent_potential"] = checkpoint
        elif request.parent_potential is not None:
            inputs["parent_potential"] = request.parent_potential
            if split:
                inputs["member_block"] = orm.List([start, stop])
        elif split:
            parameters.update({"members": stop - start, "member_offset": start})
        if parameters:
            inputs["parameters"] = orm.Dict(parameters)
        folder = self._parent_folder(inputs.get("parent_potential"), inputs["code"])
        if folder is not None and not self.ctx.get("upload_all", [True] * (block + 1))[block]:
            inputs["parent_folder"] = folder
        metadata = dict(inputs.get("metadata", {}))
        metadata["call_link_label"] = f"{request.link_prefix}block_{block:02d}_try_{self.ctx.restarts[block]:02d}"
        inputs["metadata"] = metadata
        return inputs

    @staticmethod
    def _parent_folder(parent: LmlpPotentialData | None, code: orm.AbstractCode) -> orm.RemoteData | None:
        """The remote folder of the job that wrote ``parent``, when it is on ``code``'s computer.

        A job continuing from ``parent`` links the parent model and the data that job had from
        there instead of uploading them again (``lmlp.train``'s ``parent_folder``).
        """
        job = parent.creator if parent is not None else None
        if not isinstance(job, orm.CalcJobNode) or job.computer is None or code.computer is None:
            return None
        if job.computer.uuid != code.computer.uuid:
            return None
        folder = job.base.links.get_outgoing(orm.RemoteData, link_label_filter="remote_folder").first()
        if folder is None or folder.node.is_cleaned:
            return None
        return folder.node

    @staticmethod
    def _start_epoch(request: TrainingRequest) -> int:
        if request.parent_potential is not None:
            return request.parent_potential.base.attributes.get("epochs", 0)
        return 0

    # -- running ------------------------------------------------------------------------------------

    def submit_training(self):
        """Submit every block's job; they run in parallel."""
        request = self.training_request()
        futures = {}
        for block in range(len(self.ctx.blocks)):
            node = self.submit(LmlpTrainCalculation, **self._job_inputs(request, block, None))
            self.ctx.jobs[block] = node.pk
            futures[f"job_{block}"] = node
        return ToContext(**futures)

    def training_pending(self) -> bool:
        """True while a block has no finished potential."""
        return any(done is None for done in self.ctx.done)

    def inspect_training(self):
        """Keep what finished; resubmit what was killed from its checkpoint; fail on the hopeless."""
        request = None
        futures = {}
        for block, pk in enumerate(self.ctx.jobs):
            if self.ctx.done[block] is not None:
                continue
            node = orm.load_node(pk)
            outputs = outputs_of(node)
            if node.is_finished_ok:
                self.ctx.done[block] = outputs["potential"].pk
                continue
            request = request or self.training_request()
            if node.exit_status == LINKED_INPUT_MISSING and "upload_all" in self.ctx:
                self.ctx.upload_all[block] = True
                parent = node.inputs.parent_potential
                original = request.parent_potential is not None and parent.pk == request.parent_potential.pk
                checkpoint = None if original else parent
                self.report(f"{node.process_label}<{node.pk}>: {node.exit_message}; resubmitting with every file")
                resumed = self.submit(LmlpTrainCalculation, **self._job_inputs(request, block, checkpoint))
                self.ctx.jobs[block] = resumed.pk
                futures[f"job_{block}"] = resumed
                continue
            if node.exit_status not in RESUMABLE or self.ctx.restarts[block] >= request.max_restarts:
                job = f"{node.process_label}<{node.pk}>"
                return self.training_failed(job, node.exit_message or f"exit status {node.exit_status}")
            checkpoint = outputs.get("potential")
            self.ctx.restarts[block] += 1
            where = f"epoch {checkpoint.base.attributes.get('epochs')}" if checkpoint else "the start (no checkpoint)"
            self.report(f"{node.process_label}<{node.pk}> stopped early ({node.exit_message}); continuing from {where}")
            resumed = self.submit(LmlpTrainCalculation, **self._job_inputs(request, block, checkpoint))
            self.ctx.jobs[block] = resumed.pk
            futures[f"job_{block}"] = resumed
        return ToContext(**futures) if futures else None

    def gather_training(self):
        """One job: its potential is the version. Several: ``lmlp.gather`` joins the blocks."""
        if len(self.ctx.blocks) == 1:
            return None
        request = self.training_request()
        code = request.gather_code or request.job_inputs["code"]
        inputs = {
            "code": code,
            "blocks": {f"block_{i:02d}": orm.load_node(pk) for i, pk in enumerate(self.ctx.done)},
            "datasets": dict(request.datasets),
            "metadata": {"call_link_label": f"{request.link_prefix}gather"},
        }
        options = request.job_inputs.get("metadata", {}).get("options", {})
        if options:
            # the training's options but its GPU request (custom_scheduler_commands): the gathering is a short
            # CPU job in the same allocation rules (account, QOS, partition, environment)
            keep = (
                "resources",
                "max_wallclock_seconds",
                "queue_name",
                "account",
                "qos",
                "priority",
                "prepend_text",
                "append_text",
                "environment_variables",
                "environment_variables_double_quotes",
                "import_sys_environment",
            )
            inputs["metadata"]["options"] = {k: v for k, v in options.items() if k in keep}
        return ToContext(gathered=self.submit(LmlpGatherCalculation, **inputs))

    def training_outputs(self) -> dict | ExitCode:
        """The version's ``potential`` (and, for one job that was never resumed, its ``metrics`` and
        ``output_parameters``), or the exit code of a failed gathering."""
        if len(self.ctx.blocks) > 1:
            node = self.ctx.gathered
            if not node.is_finished_ok:
                return self.training_failed(None, node.exit_message or f"exit status {node.exit_status}")
            return {"potential": outputs_of(node)["potential"]}
        outputs = outputs_of(orm.load_node(self.ctx.jobs[0]))
        result = {"potential": outputs["potential"]}
        if self.ctx.restarts[0] == 0:
            result.update({name: outputs[name] for name in ("metrics", "output_parameters") if name in outputs})
        return result
