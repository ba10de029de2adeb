"""``lmlp.label``: reference labelling that survives non-converging SCFs, crashes and wall-time kills.

A :class:`~aiida.engine.BaseRestartWorkChain` around the batch process of one labeller
(:mod:`aiida_lmlp.workflows.labellers`): ``pyscf`` (``lmlp.pyscf``), ``xtb`` (``lmlp.xtb``) or
``cp2k`` (``lmlp.cp2k_batch``, aiida-cp2k), chosen by the input namespace given. Each iteration
labels the structures still pending; what converged is kept, whatever happened to the rest of
the batch. Process handlers decide the next attempt, for every labeller alike:

* SCF not converged → retry those structures with the labeller's escalation (PySCF: twice the
  cycles each time, from the second retry on damping 0.5, from the third a level shift of
  0.25 Eh as well; CP2K: twice MAX_SCF, then diagonalization with gentler mixing, then a level
  shift; xTB: twice the iterations, then a gentler mixer);
* wall time or a kill (SIGTERM) → resubmit the unfinished structures;
* a crash → resubmit the unfinished structures (the one in flight, or the one whose
  calculation crashed, counts an attempt); an output without forces counts as a crash;
* the code refuses a structure (impossible charge/spin, no basis) → that structure is dropped.

A structure that never converges within ``max_attempts`` is dropped and recorded in the
``dropped`` output: never fatal to a campaign. Enable caching for ``lmlp.pyscf``
(``verdi config set caching.enabled_for aiida.calculations:lmlp.pyscf``) so that an identical
batch is never computed twice.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, process_handler, while_

from aiida_lmlp.calculations.pyscf import PyscfCalculation
from aiida_lmlp.calculations.xtb import XtbCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData, merge_datasets, select_conformations
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries
from aiida_lmlp.workflows.labellers import LABELLERS
from aiida_lmlp.workflows.labellers.cp2k import Cp2kBatchWorkChain
from aiida_lmlp.workflows.links import outputs_of
from aiida_lmlp.workflows.reporting import CallerNamedReport

__all__ = ["LabelWorkChain"]

# the batch processes, by labeller (the input namespaces of lmlp.label)
BATCH_PROCESSES = {"pyscf": PyscfCalculation, "xtb": XtbCalculation, "cp2k": Cp2kBatchWorkChain}
CODE_NAMES = {"pyscf": "PySCF", "xtb": "tblite", "cp2k": "CP2K"}
# the exit statuses every batch process shares (aiida_lmlp.workflows.labellers), and a CalcJob's wall time
SCF_FAILURES = [ExitCode(310), ExitCode(311)]
INTERRUPTIONS = [ExitCode(320), ExitCode(120), ExitCode(303)]
CRASHED = 303


def _validate_inputs(inputs: dict, _) -> str | None:
    given = [name for name in BATCH_PROCESSES if name in inputs and "code" in inputs[name]]
    if len(given) != 1:
        names = ", ".join(BATCH_PROCESSES)
        found = f"got {', '.join(given)}" if given else "got none"
        return f"give the code of exactly one labeller namespace ({names}); {found}"
    problem = LABELLERS[given[0]].missing()
    if problem is not None:
        return problem
    return None


class LabelWorkChain(CallerNamedReport, InputsEncodedOnce, LinksWithoutVacuousQueries, BaseRestartWorkChain):
    """Label a dataset's structures with one labeller; keep every converged structure, drop and record the hopeless."""

    _process_class = PyscfCalculation

    @property
    def labeller(self) -> str:
        """The labeller of this run: the namespace whose code was given (``pyscf`` before the inputs are known)."""
        inputs = self.inputs or {}
        return next((name for name in BATCH_PROCESSES if name in inputs and "code" in inputs[name]), "pyscf")

    @property
    def process_class(self):
        """The batch process of the labeller."""
        return BATCH_PROCESSES[self.labeller]

    @classmethod
    def define(cls, spec):
        """Inputs, outline, outputs and exit codes."""
        super().define(spec)
        for name, process in BATCH_PROCESSES.items():
            spec.expose_inputs(
                process,
                namespace=name,
                exclude=("structures",),
                namespace_options={"required": False, "populate_defaults": False, "help": f"Label with {name}."},
            )
        spec.inputs.validator = _validate_inputs
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
        """Every structure pending, the batch inputs from the labeller's namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self.process_class, self.labeller))
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
        # a batch that crashed without saying which structure: the first one not attempted was in flight
        crashed = node.exit_status == CRASHED and not any(e["status"] == "crashed" for e in failed.values())
        in_flight = min((i for i, e in failed.items() if e["status"] == "not_attempted"), default=None)
        code = CODE_NAMES[self.labeller]
        for position, index in enumerate(batch):
            entry = failed.get(position)
            if entry is None:
                continue  # converged
            status = entry["status"]
            if status == "error":
                self._drop(index, f"{code} error: {entry['message']}")
            elif status == "crashed":
                if self._attempt(index):
                    pending.append(index)
                else:
                    self._drop(index, f"{code} crashed on it {self.ctx.attempts[str(index)]} times: {entry['message']}")
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
        elif not self.ctx.pending:
            # the handlers would prepare a retry and aiida-core would announce a restart: nothing is left for one
            if not node.is_finished_ok:
                self.report(
                    f"{self.ctx.process_name}<{node.pk}> failed ({node.exit_message}); nothing left to label: "
                    f"{len(self.ctx.dropped)} of {self._count()} structures dropped"
                )
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

    @process_handler(priority=500, exit_codes=SCF_FAILURES)
    def handle_scf_not_converged(self, node):
        """The labeller's next SCF escalation for the structures that did not converge."""
        if not self.ctx.last_not_converged:
            return ProcessHandlerReport(do_break=True)  # only refused structures: those are dropped
        parameters = self.ctx.inputs.parameters.get_dict() if "parameters" in self.ctx.inputs else {}
        parameters = LABELLERS[self.labeller].escalate(parameters, self.ctx.scf_retries)
        self.ctx.scf_retries += 1
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(f"SCF not converged: retrying with {parameters}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=INTERRUPTIONS)
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
