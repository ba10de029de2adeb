"""``lmlp.label``: DFT labelling that survives non-converging SCFs, crashes and wall-time kills.

A :class:`~aiida.engine.BaseRestartWorkChain` around :class:`PyscfCalculation`. Each
iteration labels the structures still pending; what converged is kept, whatever happened to
the rest of the batch. Process handlers decide the next attempt:

* SCF not converged → retry those structures with twice the cycles each time, from the second
  retry on with damping 0.5, from the third on with a level shift of 0.25 Eh as well;
* wall time or a kill (SIGTERM) → resubmit the unfinished structures;
* a crash → resubmit the unfinished structures (the one in flight counts an attempt);
* PySCF refuses a structure (impossible charge/spin, no basis) → that structure is dropped.

A structure that never converges within ``max_attempts`` is dropped and recorded in the
``dropped`` output: never fatal to a campaign. Enable caching for ``lmlp.pyscf``
(``verdi config set caching.enabled_for aiida.calculations:lmlp.pyscf``) so that an identical
batch is never computed twice.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_lmlp.calculations.pyscf import PyscfCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData, merge_datasets, select_conformations
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries
from aiida_lmlp.workflows.links import outputs_of
from aiida_lmlp.workflows.reporting import CallerNamedReport

__all__ = ["LabelWorkChain"]

# successive retries of structures whose SCF did not converge: twice the cycles every time, then
# damping, then a level shift as well
# (PySCF damps only before DIIS starts, hence the later DIIS start with damping)
SCF_ESCALATION = (
    {},
    {"damping": 0.5, "diis_start_cycle": 4},
    {"damping": 0.5, "diis_start_cycle": 4, "level_shift": 0.25},
)
DEFAULT_MAX_CYCLE = 100


class LabelWorkChain(CallerNamedReport, InputsEncodedOnce, LinksWithoutVacuousQueries, BaseRestartWorkChain):
    """Label a dataset's structures with PySCF; keep every converged structure, drop and record the hopeless."""

    _process_class = PyscfCalculation

    @classmethod
    def define(cls, spec):
        """Inputs, outline, outputs and exit codes."""
        super().define(spec)
        spec.expose_inputs(PyscfCalculation, namespace="pyscf", exclude=("structures",))
        spec.input("structures", valid_type=LmlpDatasetData, help="The structures to label (labels are ignored).")
        spec.input(
            "max_attempts",
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            validator=lambda value, _: None if value.value >= 1 else "max_attempts must be at least 1",
            help="Attempts per structure (first try and SCF retries) before it is dropped.",
        )
        spec.inputs["max_iterations"].default = lambda: orm.Int(10)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.prepare_batch, cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.output("labelled", valid_type=LmlpDatasetData, required=False, help="Every converged structure.")
        spec.output("dropped", valid_type=orm.List, help="Structures given up on: index, id, reason.")
        spec.exit_code(
            410, "ERROR_NOTHING_LABELLED", message="No structure could be labelled; see the `dropped` output."
        )

    def setup(self):
        """Every structure pending, the calculation inputs from the ``pyscf`` namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(PyscfCalculation, "pyscf"))
        # the count only: the ids are read from the dataset when a structure is dropped (rarely),
        # not at every start and into every checkpoint
        self.ctx.count = self.inputs.structures.count
        self.ctx.pending = list(range(self.ctx.count))
        self.ctx.attempts = {}
        self.ctx.labelled = []
        self.ctx.dropped = []
        self.ctx.batch = []
        self.ctx.scf_retries = 0
        self.ctx.last_not_converged = False

    def should_run_process(self):
        """Run while structures are pending."""
        return bool(self.ctx.pending) and not self.ctx.is_finished

    def prepare_batch(self):
        """The pending structures as this iteration's input (a calcfunction keeps the provenance)."""
        self.ctx.batch = list(self.ctx.pending)
        if self.ctx.batch == list(range(self._count())):
            self.ctx.inputs.structures = self.inputs.structures
        else:
            self.ctx.inputs.structures = select_conformations(self.inputs.structures, orm.List(self.ctx.batch))

    # -- bookkeeping -------------------------------------------------------------------------------

    def _count(self) -> int:
        # ``ids`` instead of ``count``: a work chain checkpointed by an earlier aiida-lmlp
        return self.ctx.count if "count" in self.ctx else len(self.ctx.ids)

    def _drop(self, index: int, reason: str) -> None:
        identifier = self.inputs.structures.ids[index]
        self.ctx.dropped.append({"index": index, "id": identifier, "reason": reason})
        self.report(f"dropping structure {index} ({identifier}): {reason}")

    def _attempt(self, index: int) -> bool:
        """Count an attempt on ``index``; False (and dropped) once it has used up its attempts."""
        attempts = self.ctx.attempts.get(str(index), 0) + 1
        self.ctx.attempts[str(index)] = attempts
        if attempts >= self.inputs.max_attempts.value:
            return False
        return True

    def _collect(self, node) -> None:
        """Keep what converged; decide for every other structure of the batch whether it stays pending."""
        batch = self.ctx.batch
        outputs = outputs_of(node)
        if "labelled" in outputs:
            self.ctx.labelled.append(outputs["labelled"].pk)
        failed = {entry["index"]: entry for entry in outputs["failed"].get_list()} if "failed" in outputs else None
        pending, self.ctx.last_not_converged = [], False
        if failed is None:  # excepted, killed or no status at all: the whole batch counts an attempt
            for index in batch:
                if self._attempt(index):
                    pending.append(index)
                else:
                    self._drop(index, f"no result after {self.ctx.attempts[str(index)]} attempts")
            self.ctx.pending = pending
            return
        crashed = node.exit_status == PyscfCalculation.exit_codes.ERROR_CRASHED.status
        in_flight = min((i for i, e in failed.items() if e["status"] == "not_attempted"), default=None)
        for position, index in enumerate(batch):
            entry = failed.get(position)
            if entry is None:
                continue  # converged
            status = entry["status"]
            if status == "error":
                self._drop(index, f"PySCF error: {entry['message']}")
            elif status == "not_converged":
                self.ctx.last_not_converged = True
                if self._attempt(index):
                    pending.append(index)
                else:
                    self._drop(index, f"SCF not converged in {self.ctx.attempts[str(index)]} attempts")
            elif crashed and position == in_flight and not self._attempt(index):
                self._drop(index, f"the calculation crashed on it {self.ctx.attempts[str(index)]} times")
            else:  # not attempted: wall time, kill, or after a crash
                pending.append(index)
        self.ctx.pending = pending

    def inspect_process(self):
        """Collect the batch, let the handlers adjust the next attempt, finish when nothing is pending."""
        node = self.ctx.children[self.ctx.iteration - 1]
        self._collect(node)
        if node.is_excepted or node.is_killed:
            self.report(f"{self.ctx.process_name}<{node.pk}> excepted or was killed; pending: {len(self.ctx.pending)}")
        else:
            exit_code = super().inspect_process()
            if exit_code is not None and exit_code.status == self.exit_codes.ERROR_UNHANDLED_FAILURE.status:
                # e.g. refused parameters: retrying cannot help, give up on the batch but not on the caller
                for index in self.ctx.pending:
                    self._drop(index, f"unhandled failure of {self.ctx.process_name}<{node.pk}>: {node.exit_message}")
                self.ctx.pending = []
        if self.ctx.pending and self.ctx.iteration >= self.inputs.max_iterations.value:
            for index in self.ctx.pending:
                self._drop(index, f"still unlabelled after {self.ctx.iteration} iterations")
            self.ctx.pending = []
        self.ctx.is_finished = not self.ctx.pending
        return None

    # -- handlers -----------------------------------------------------------------------------------

    @process_handler(
        priority=500,
        exit_codes=[
            PyscfCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED,
            PyscfCalculation.exit_codes.ERROR_STRUCTURE_FAILED,
        ],
    )
    def handle_scf_not_converged(self, node):
        """More SCF cycles, then damping, then a level shift for the structures that did not converge."""
        if not self.ctx.last_not_converged:
            return ProcessHandlerReport(do_break=True)  # only PySCF errors: those structures are dropped
        parameters = self.ctx.inputs.parameters.get_dict() if "parameters" in self.ctx.inputs else {}
        step = SCF_ESCALATION[min(self.ctx.scf_retries, len(SCF_ESCALATION) - 1)]
        parameters["max_cycle"] = 2 * int(parameters.get("max_cycle", DEFAULT_MAX_CYCLE))
        for key, value in step.items():
            parameters[key] = max(parameters.get(key, 0), value)
        self.ctx.scf_retries += 1
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(f"SCF not converged: retrying with {parameters}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(
        priority=400,
        exit_codes=[
            PyscfCalculation.exit_codes.ERROR_TERMINATED,
            PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
            PyscfCalculation.exit_codes.ERROR_CRASHED,
        ],
    )
    def handle_interrupted(self, node):
        """Wall time, kill or crash: resubmit the structures that did not finish."""
        self.report(f"{self.ctx.process_name}<{node.pk}> was interrupted ({node.exit_message}); resubmitting the rest")
        return ProcessHandlerReport(do_break=True)

    # -- results ------------------------------------------------------------------------------------

    def results(self):
        """All converged structures in one dataset, and the list of dropped ones."""
        self.out("dropped", orm.List(sorted(self.ctx.dropped, key=lambda entry: entry["index"])).store())
        parts = [orm.load_node(pk) for pk in self.ctx.labelled]
        if not parts:
            return self.exit_codes.ERROR_NOTHING_LABELLED
        labelled = parts[0] if len(parts) == 1 else merge_datasets(**{f"batch_{i:02d}": p for i, p in enumerate(parts)})
        self.out("labelled", labelled)
        self.report(f"labelled {labelled.count} of {self._count()} structures, dropped {len(self.ctx.dropped)}")
        return None
