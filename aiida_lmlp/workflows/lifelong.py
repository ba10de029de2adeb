"""``lmlp.lifelong``: the lifelong active-learning campaign.

1. setup: an initial dataset (labelled), or initial structures that are labelled first;
2. train the first version (or start from a given one);
3. loop: explore with the current version → screen the visited conformations (uncertainty
   window in multiples of the test RMSE, minimum distance, farthest-point sampling, at most
   ``max_per_iteration`` and never beyond the DFT budget) → label them → continue training the
   same model with the new conformations added to its data stream (weights, CoRe and selection
   state carry over; never from scratch) → register the new version;
4. stop when the fraction of uncertain conformations stays below ``convergence_fraction`` for
   ``convergence_patience`` iterations, or when ``max_iterations`` or ``dft_budget`` runs out;
   the output ``stop_reason`` says which.

A labelling failure never ends the campaign: dropped structures are recorded, and an iteration
whose labelling produced nothing trains nothing and goes on exploring. Exploration starts only
from the initial structures that could be labelled (unless ``explore_structures`` is given).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode, ToContext, WorkChain, if_, while_

from aiida_lmlp.calculations.explore import LmlpExploreCalculation
from aiida_lmlp.data.dataset import LmlpDatasetData, merge_datasets, select_conformations
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.formats.exploration import trajectory_counts
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries
from aiida_lmlp.registry import register_version

from .data_stream import segments_to_merge
from .ensemble_training import DEFAULT_MAX_RESTARTS, EnsembleTraining, TrainingRequest
from .label import BATCH_PROCESSES, LabelWorkChain
from .links import outputs_of
from .reporting import CallerNamedReport
from .screening import screen_candidates
from .train_ensemble import TrainEnsembleWorkChain

__all__ = ["LifelongWorkChain"]


def _validate_selection(value: orm.Dict | None, _) -> str | None:
    if value is None:
        return None
    from .candidates import SelectionSettings, SelectionSettingsError

    try:
        SelectionSettings.from_dict(value.get_dict())
    except SelectionSettingsError as error:
        return f"selection: {error}"
    return None


def _validate_stop_at(value: orm.Str | None, _) -> str | None:
    from .candidates import TRAJECTORY_STOPS

    if value is not None and value.value not in TRAJECTORY_STOPS:
        return f"explore_stop_at must be one of {', '.join(TRAJECTORY_STOPS)}, got {value.value!r}"
    return None


def _positive(name: str):
    def validate(value, _):
        if value is not None and value.value <= 0:
            return f"{name} must be positive, got {value.value}"
        return None

    return validate


def _at_least_two(value: orm.Int | None, _) -> str | None:
    if value is not None and value.value < 2:
        return f"stream_merge_width must be at least 2, got {value.value}"
    return None


def _validate_fraction(value: orm.Float | None, _) -> str | None:
    if value is not None and not 0 <= value.value <= 1:
        return f"convergence_fraction must be between 0 and 1, got {value.value}"
    return None


def _protocol_mismatch(structures: LmlpDatasetData, label: dict, labeller: str) -> str | None:
    """Why labelled initial ``structures`` must not join the campaign's labels: another label protocol."""
    from aiida_lmlp.labelling.protocol import LabelProtocol

    from .labellers import LABELLERS

    if structures.label_protocol is None:
        return None
    parameters = label["parameters"].get_dict() if "parameters" in label else {}
    try:
        campaign = LABELLERS[labeller].parameters_class().from_dict(parameters).protocol()
    except ValueError:
        return None  # the labeller's own validation names the problem
    given = LabelProtocol.from_dict(structures.label_protocol)
    if given == campaign:
        return None
    return (
        f"structures (lmlp.dataset<{structures.pk}>) were labelled with {given.describe()}, but the campaign labels "
        f"with {campaign.describe()}; set allow_mixed_protocols to train on both"
    )


def _validate_inputs(inputs: dict, _) -> str | None:
    structures = inputs.get("structures")
    parent = inputs.get("parent_potential")
    if structures is not None and structures.count == 0:
        return "structures: the initial dataset is empty"
    label = inputs.get("label", {})
    labellers = [name for name in BATCH_PROCESSES if name in label and "code" in label[name]]
    if structures is not None and structures.base.attributes.get("labelled_count") < structures.count:
        if not labellers:
            return "structures are unlabelled: give the code of a labeller (label.pyscf.code, label.cp2k.code ...)"
    if structures is not None and len(labellers) == 1:
        problem = _protocol_mismatch(structures, label[labellers[0]], labellers[0])
        if problem is not None and not inputs.get("allow_mixed_protocols", orm.Bool(False)).value:
            return problem
    if parent is None and "train" not in inputs:
        return "give train (the training settings) or a parent_potential"
    return None


class LifelongWorkChain(EnsembleTraining, CallerNamedReport, InputsEncodedOnce, LinksWithoutVacuousQueries, WorkChain):
    """Label, train, explore, screen and learn in a loop; every version is registered.

    Every version is trained by :class:`EnsembleTraining`'s steps in this work chain (its
    ``lmlp.train`` jobs are called ``train_v<version>_block_<b>_try_<n>``), with the settings of
    the ``train`` namespace, which are ``lmlp.train_ensemble``'s.
    """

    @classmethod
    def define(cls, spec):
        """Inputs, outline, outputs and exit codes."""
        super().define(spec)
        spec.input("structures", valid_type=LmlpDatasetData, help="Initial data (labelled, or labelled first).")
        spec.input(
            "explore_structures",
            valid_type=LmlpDatasetData,
            required=False,
            help="Starting structures of every exploration (default: the initial structures).",
        )
        spec.input("parent_potential", valid_type=LmlpPotentialData, required=False, help="Start from this version.")
        spec.expose_inputs(
            LabelWorkChain,
            namespace="label",
            exclude=("structures",),
            namespace_options={"required": False, "populate_defaults": False},
        )
        spec.expose_inputs(
            TrainEnsembleWorkChain,
            namespace="train",
            exclude=("datasets", "parent_potential"),
            namespace_options={"required": False, "populate_defaults": False},
        )
        spec.input(
            "continue_parameters",
            valid_type=orm.Dict,
            required=False,
            help="`lmlp train` overrides when continuing training (default: train.parameters).",
        )
        spec.expose_inputs(LmlpExploreCalculation, namespace="explore", exclude=("potential", "structures"))
        spec.input(
            "explore_stop_at",
            valid_type=orm.Str,
            default=lambda: orm.Str("lower"),
            validator=_validate_stop_at,
            help="End a trajectory at its first conformation above the selection window's lower or upper "
            "bound (lower | upper | never); a stop threshold set in explore.protocol wins.",
        )
        spec.input("selection", valid_type=orm.Dict, required=False, validator=_validate_selection)
        spec.input(
            "max_iterations", valid_type=orm.Int, default=lambda: orm.Int(5), validator=_positive("max_iterations")
        )
        spec.input("dft_budget", valid_type=orm.Int, default=lambda: orm.Int(1000), validator=_positive("dft_budget"))
        spec.input(
            "convergence_fraction",
            valid_type=orm.Float,
            default=lambda: orm.Float(0.05),
            validator=_validate_fraction,
            help="Converged when the fraction of uncertain visited conformations stays below this ...",
        )
        spec.input(
            "convergence_patience",
            valid_type=orm.Int,
            default=lambda: orm.Int(2),
            validator=_positive("convergence_patience"),
            help="... for this many consecutive iterations.",
        )
        spec.input(
            "stream_merge_width",
            valid_type=orm.Int,
            default=lambda: orm.Int(8),
            validator=_at_least_two,
            help="Merge the training data stream's last this many segments of one tier into one "
            "(aiida_lmlp.workflows.data_stream): the training's inputs grow as log(iterations).",
        )
        spec.input("campaign", valid_type=orm.Str, required=False, help="Registry name (default: lifelong-<pk>).")
        spec.input(
            "allow_mixed_protocols",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help="Train on labelled initial structures of another label protocol than the campaign's labeller.",
        )
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.needs_initial_labels)(cls.label_initial, cls.inspect_initial_labels),
            if_(cls.needs_first_version)(*cls._training_steps()),
            while_(cls.should_continue)(
                cls.explore,
                cls.screen,
                if_(cls.has_candidates)(
                    cls.label,
                    cls.inspect_labels,
                    if_(cls.has_new_data)(*cls._training_steps()),
                ),
                cls.check_convergence,
            ),
            cls.results,
        )
        spec.output("potential", valid_type=LmlpPotentialData, help="The latest version.")
        spec.output_namespace("versions", valid_type=LmlpPotentialData, dynamic=True, help="Every version, v000 ...")
        spec.output_namespace("labelled", valid_type=LmlpDatasetData, dynamic=True, help="Every labelled dataset.")
        spec.output("dropped", valid_type=orm.List, required=False, help="Structures no DFT run could label.")
        spec.output("report", valid_type=orm.Dict, help="Per iteration: screening counts, labelled, dropped, RMSEs.")
        spec.output(
            "stop_reason",
            valid_type=orm.Str,
            help="converged | max_iterations | dft_budget; initial_labelling_failed | training_failed (exit 401, 402)",
        )
        spec.exit_code(
            401, "ERROR_INITIAL_LABELLING_FAILED", message="No initial structure could be labelled: {reasons}"
        )
        spec.exit_code(402, "ERROR_TRAINING_FAILED", message="Training version {version} failed: {message}")

    @classmethod
    def _training_steps(cls) -> tuple:
        """Train the next version (first or continued) and register it."""
        return (
            cls.plan_training,
            cls.submit_training,
            while_(cls.training_pending)(cls.inspect_training),
            cls.gather_training,
            cls.register,
        )

    # -- set-up -------------------------------------------------------------------------------------

    def setup(self):
        """Counters, the registry name and the data so far."""
        self.ctx.campaign = self.inputs.campaign.value if "campaign" in self.inputs else f"lifelong-{self.node.pk}"
        self.node.base.extras.set("lmlp_campaign", self.ctx.campaign)
        self.ctx.iteration = 0
        self.ctx.version = -1
        self.ctx.potential = self.inputs.parent_potential.pk if "parent_potential" in self.inputs else None
        self.ctx.labelled = []  # pks of labelled datasets, the data stream of the campaign
        self.ctx.stream = []  # [pk, tier] segments of that stream, what training takes (see data_stream)
        self.ctx.dft_used = 0
        self.ctx.quiet = 0  # consecutive iterations below the convergence fraction
        self.ctx.stop_reason = None
        self.ctx.iterations = []
        self.ctx.dropped = []
        # what the screenings know: the last screening's ``known`` output (every geometry labelled or
        # selected so far, with fingerprints) and how many of ``labelled`` it has seen; a screening gets
        # those two instead of every dataset of the campaign (one input link costs a query in aiida-core)
        self.ctx.known = None
        self.ctx.screened = 0
        self.ctx.explore_start = None  # pk of the start set when it differs from the initial structures
        self.ctx.explore_uploads = False  # True: explorations upload the model, never link it
        structures = self.inputs.structures
        if structures.base.attributes.get("labelled_count") == structures.count:
            self._add_to_stream(structures.pk)
        if self.ctx.potential is not None:
            self.ctx.version = 0
            self._register(self.inputs.parent_potential, parent=None)
        self.report(f"campaign {self.ctx.campaign}: {structures.count} initial structures")
        self._report_candidate_ceiling()

    def _report_candidate_ceiling(self) -> None:
        """Say so when the trajectories cannot yield ``max_per_iteration`` candidates (one each at most)."""
        from .candidates import SelectionSettings, candidate_ceiling

        protocol = self.inputs.explore.protocol.get_dict() if "protocol" in self.inputs.explore else {}
        starts = self.inputs.get("explore_structures", self.inputs.structures).count
        ceiling = candidate_ceiling(protocol, starts, self.inputs.explore_stop_at.value)
        selection = self.inputs.selection.get_dict() if "selection" in self.inputs else {}
        wanted = SelectionSettings.from_dict(selection).max_per_iteration
        if ceiling is not None and ceiling < wanted:
            hint = " (explore.protocol.replicas runs several MD trajectories per start)"
            self.report(
                f"exploration: {ceiling} trajectories, each ending at its first uncertain conformation, give at "
                f"most {ceiling} candidates per iteration, fewer than selection.max_per_iteration {wanted}"
                + (hint if protocol.get("kind", "md") == "md" else "")
            )

    def needs_initial_labels(self):
        """True when the initial structures carry no labels."""
        return not self.ctx.labelled

    def _label_inputs(self, structures: LmlpDatasetData, link: str) -> dict:
        inputs = self.exposed_inputs(LabelWorkChain, "label")
        inputs["structures"] = structures
        inputs["metadata"] = {**inputs.get("metadata", {}), "call_link_label": link}  # a copy: inputs stay as given
        return inputs

    def label_initial(self):
        """Label the initial structures (counts against the DFT budget)."""
        self.ctx.dft_used += self.inputs.structures.count
        return ToContext(
            initial=self.submit(LabelWorkChain, **self._label_inputs(self.inputs.structures, "label_initial"))
        )

    def inspect_initial_labels(self):
        """Keep what was labelled; nothing labelled ends the campaign before it starts."""
        node = self.ctx.initial
        dropped = node.outputs.dropped.get_list() if "dropped" in node.outputs else []
        self.ctx.dropped.extend(dropped)
        if "labelled" not in node.outputs:
            reasons = sorted({str(entry.get("reason")) for entry in dropped})
            shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else "")
            self.out("stop_reason", orm.Str("initial_labelling_failed").store())
            return self.exit_codes.ERROR_INITIAL_LABELLING_FAILED.format(
                reasons=shown or f"the labelling ended with exit status {node.exit_status}: {node.exit_message}"
            )
        self._add_to_stream(node.outputs.labelled.pk)
        if dropped and "explore_structures" not in self.inputs:
            # MD from a structure no DFT run could label (a wrong charge or spin, say) only visits more
            # such structures: they would be chosen as uncertain and waste the DFT budget failing again.
            lost = {int(d["index"]) for d in dropped}
            kept = [i for i in range(self.inputs.structures.count) if i not in lost]
            start = select_conformations(self.inputs.structures, orm.List(kept))
            self.ctx.explore_start = start.pk
            self.report(f"exploring from the {len(kept)} initial structures that could be labelled")
        return None

    def needs_first_version(self):
        """True unless a parent version was given."""
        return self.ctx.potential is None

    def _add_to_stream(self, pk: int) -> None:
        """A labelled dataset joins the data stream; the stream's trailing segments merge when due."""
        self.ctx.labelled.append(pk)
        if "stream" not in self.ctx:  # checkpointed by an earlier aiida-lmlp: training takes ``labelled``
            return
        self.ctx.stream.append([pk, 0])
        width = self.inputs.stream_merge_width.value
        while count := segments_to_merge([tier for _, tier in self.ctx.stream], width):
            segments = self.ctx.stream[-count:]
            tier = segments[-1][1] + 1
            allow = {"allow_mixed_protocols": self.inputs.allow_mixed_protocols} if self._mixed_allowed() else {}
            merged = merge_datasets(
                **{f"s{i:03d}": self._data_node(pk) for i, (pk, _) in enumerate(segments)},
                **allow,
                metadata={"call_link_label": f"merge_stream_{self.ctx.iteration:03d}_tier{tier}"},
            )
            self.ctx.stream = [*self.ctx.stream[:-count], [merged.pk, tier]]

    def _mixed_allowed(self) -> bool:
        return "allow_mixed_protocols" in self.inputs and self.inputs.allow_mixed_protocols.value

    def _data_node(self, pk: int) -> orm.Node:
        """The stored data node ``pk``, loaded once while this process is in memory.

        ``load_node`` is a query per call (5–10 ms here), and a step loads the data stream,
        the current version and the known conformations again and again; stored data nodes
        do not change, and after a daemon restart the process starts with an empty cache. The
        datasets among them forget their arrays at every call, so that the worker holds at most
        those of the step at hand.
        """
        loaded = self.__dict__.setdefault("_loaded_nodes", {})
        for node in loaded.values():  # what the calculations of earlier steps read is not kept
            if isinstance(node, LmlpDatasetData):
                node.release_arrays()
        if pk not in loaded:
            loaded[pk] = orm.load_node(pk)
        return loaded[pk]

    def _dataset_size(self) -> int:
        """Distinct conformations in the data stream; each dataset's ids read once while this process
        is in memory, and only those of the stream's current segments kept.

        Read from nodes of their own, so that the cached nodes of :meth:`_data_node` do not keep
        their datasets' arrays in the daemon's memory.
        """
        stream = self._stream_pks()
        known = self.__dict__.get("_dataset_ids", {})
        known = {pk: known[pk] if pk in known else frozenset(orm.load_node(pk).ids) for pk in stream}
        self.__dict__["_dataset_ids"] = known  # merged segments are forgotten
        return len(frozenset().union(*known.values()))

    def _stream_pks(self) -> list[int]:
        return [pk for pk, _ in self.ctx.stream] if "stream" in self.ctx else self.ctx.labelled

    def _datasets(self) -> dict:
        return {f"d{i:03d}": self._data_node(pk) for i, pk in enumerate(self._stream_pks())}

    def training_request(self) -> TrainingRequest:
        """The next version: the first from ``train.parameters``, later ones continue the current version
        (with ``continue_parameters`` when given) on the whole data stream."""
        train = self.exposed_inputs(TrainEnsembleWorkChain, "train")
        continuing = self.ctx.potential is not None
        parameters = train.get("parameters")
        if continuing and "continue_parameters" in self.inputs:
            parameters = self.inputs.continue_parameters
        return TrainingRequest(
            job_inputs=dict(train.get("train", {})),
            datasets=self._datasets(),
            parent_potential=self._data_node(self.ctx.potential) if continuing else None,
            parameters=parameters.get_dict() if parameters is not None else {},
            members_per_job=train["members_per_job"].value if "members_per_job" in train else None,
            max_restarts=train["max_restarts"].value if "max_restarts" in train else DEFAULT_MAX_RESTARTS,
            gather_code=train.get("gather_code"),
            link_prefix=f"train_v{self.ctx.version + 1:03d}_",
        )

    def training_failed(self, job: str | None, message: str) -> ExitCode:
        """The campaign ends: a version could not be trained."""
        what = f"{job} failed for good" if job else "gathering the member blocks failed"
        if "stop_reason" not in self.node.outputs:
            self.out("stop_reason", orm.Str("training_failed").store())
        return self.exit_codes.ERROR_TRAINING_FAILED.format(version=self.ctx.version + 1, message=f"{what}: {message}")

    def _register(self, potential: LmlpPotentialData, parent: LmlpPotentialData | None) -> None:
        size = self._dataset_size()
        register_version(
            potential,
            self.ctx.campaign,
            version=self.ctx.version,
            parent=parent,
            iteration=self.ctx.iteration,
            dataset_size=size,
        )
        self.out(f"versions.v{self.ctx.version:03d}", potential)

    def register(self):
        """Record the new version in the campaign's group, with its parent."""
        outputs = self.training_outputs()
        if isinstance(outputs, ExitCode):
            return outputs
        parent = self._data_node(self.ctx.potential) if self.ctx.potential is not None else None
        self.ctx.version += 1
        potential = outputs["potential"]
        self._register(potential, parent)
        self.ctx.potential = potential.pk
        a = potential.base.attributes
        self.report(
            f"version {self.ctx.version}: test RMSE {1000 * a.get('rmse_energy_per_atom'):.2f} meV/atom, "
            f"{1000 * a.get('rmse_forces'):.1f} meV/Å"
        )
        return None

    # -- the loop -----------------------------------------------------------------------------------

    def should_continue(self):
        """Explore again unless converged, out of iterations or out of DFT budget."""
        if self.ctx.stop_reason:
            return False
        if self.ctx.iteration >= self.inputs.max_iterations.value:
            self.ctx.stop_reason = "max_iterations"
        elif self.ctx.dft_used >= self.inputs.dft_budget.value:
            self.ctx.stop_reason = "dft_budget"
        return self.ctx.stop_reason is None

    def explore(self):
        """Explore from the starting structures with the current version (a new MD seed every iteration)."""
        self.ctx.iteration += 1
        self.ctx.record = {"iteration": self.ctx.iteration, "version": self.ctx.version}
        inputs = self.exposed_inputs(LmlpExploreCalculation, "explore")
        inputs["potential"] = self._data_node(self.ctx.potential)
        if self.ctx.explore_start is not None:
            inputs["structures"] = self._data_node(self.ctx.explore_start)
        else:
            inputs["structures"] = self.inputs.get("explore_structures", self.inputs.structures)
        protocol = inputs["protocol"].get_dict() if "protocol" in inputs else {}
        if protocol.get("kind", "md") == "md":
            protocol["seed"] = int(protocol.get("seed", 0)) + self.ctx.iteration
        for key, value in self._trajectory_stop(inputs["potential"]).items():
            if protocol.get(key) is None and value is not None:
                protocol[key] = value
        if protocol:
            inputs["protocol"] = orm.Dict(protocol)
        # the model file is linked from its training job's folder on the same computer, unless a file linked
        # so was gone once (scratch purged): then the campaign's explorations upload it
        folder = self._parent_folder(inputs["potential"], inputs["code"])
        if folder is not None and not self.ctx.get("explore_uploads", True):
            inputs["potential_folder"] = folder
        inputs["metadata"] = {**inputs.get("metadata", {}), "call_link_label": f"explore_{self.ctx.iteration:03d}"}
        return ToContext(exploration=self.submit(LmlpExploreCalculation, **inputs))

    def _trajectory_stop(self, potential: LmlpPotentialData) -> dict:
        from .candidates import SelectionSettings

        settings = SelectionSettings.from_dict(self.inputs.selection.get_dict() if "selection" in self.inputs else {})
        a = potential.base.attributes
        return settings.trajectory_stop(
            a.get("rmse_energy_per_atom", 0.0), a.get("rmse_forces", 0.0), self.inputs.explore_stop_at.value
        )

    def screen(self):
        """Choose what to label; a failed exploration leaves nothing to choose this iteration."""
        node = self.ctx.exploration
        outputs = outputs_of(node)
        self.ctx.candidates = None
        if "summary" in outputs:
            self.ctx.record.update(trajectory_counts(outputs["summary"].get_dict()))
        if node.exit_status == LmlpExploreCalculation.exit_codes.ERROR_LINKED_INPUT_MISSING.status:
            self.ctx.explore_uploads = True
        if "visited" not in outputs:
            self.report(f"exploration {node.process_label}<{node.pk}> gave nothing ({node.exit_message}); going on")
            self.ctx.record["explore_failed"] = node.exit_message or str(node.exit_status)
            self.ctx.record["fraction_uncertain"] = None
            return
        settings = self.inputs.selection if "selection" in self.inputs else orm.Dict({})
        budget = orm.Int(max(self.inputs.dft_budget.value - self.ctx.dft_used, 0))
        if "known" in self.ctx:
            known = {"known": self._data_node(self.ctx.known)} if self.ctx.known is not None else {}
            first = self.ctx.screened
            previous = {f"l{first + i:03d}": self._data_node(pk) for i, pk in enumerate(self.ctx.labelled[first:])}
        else:  # a campaign checkpointed by an earlier aiida-lmlp: every dataset so far, as then
            known = {}
            previous = {f"s{i:03d}": orm.load_node(pk) for i, pk in enumerate(self.ctx.get("selected", []))}
            previous.update({f"l{i:03d}": orm.load_node(pk) for i, pk in enumerate(self.ctx.labelled)})
        result = screen_candidates(
            outputs["visited"],
            self._data_node(self.ctx.potential),
            settings,
            budget,
            **known,
            **previous,
            metadata={"call_link_label": f"screen_{self.ctx.iteration:03d}"},
        )
        self.ctx.known = result["known"].pk
        self.ctx.screened = len(self.ctx.labelled)
        report = result["report"].get_dict()
        self.ctx.record.update(
            {
                k: report[k]
                for k in ("visited", "known", "uncertain", "unphysical", "too_close", "selected", "fraction_uncertain")
            }
        )
        if "selected" in result:
            self.ctx.candidates = result["selected"].pk
        self.report(
            f"iteration {self.ctx.iteration}: {report['visited']} visited, {report['uncertain']} uncertain "
            f"({report['fraction_uncertain']:.1%}), {report['unphysical']} unphysical, {report['selected']} selected; "
            f"{self.ctx.record.get('stopped_early', 0)} of {self.ctx.record.get('trajectories', 0)} trajectories "
            "stopped uncertain"
        )

    def has_candidates(self):
        """True when the screening chose anything."""
        return self.ctx.candidates is not None

    def label(self):
        """Label the chosen conformations (counted against the budget when submitted)."""
        candidates = orm.load_node(self.ctx.candidates)
        self.ctx.dft_used += candidates.count
        inputs = self._label_inputs(candidates, f"label_{self.ctx.iteration:03d}")
        return ToContext(labelling=self.submit(LabelWorkChain, **inputs))

    def inspect_labels(self):
        """Add what was labelled to the data stream; record what was dropped; never fail here."""
        node = self.ctx.labelling
        outputs = outputs_of(node)
        self.ctx.new_data = False
        if "dropped" in outputs:
            dropped = outputs["dropped"].get_list()
            self.ctx.dropped.extend({**d, "iteration": self.ctx.iteration} for d in dropped)
            self.ctx.record["dropped"] = len(dropped)
        if "labelled" in outputs:
            self._add_to_stream(outputs["labelled"].pk)
            self.ctx.record["labelled"] = outputs["labelled"].count
            self.ctx.new_data = True
        else:
            self.report(f"labelling {node.process_label}<{node.pk}> gave no data ({node.exit_message}); going on")
            self.ctx.record["labelled"] = 0

    def has_new_data(self):
        """True when this iteration labelled anything."""
        return self.ctx.new_data

    def check_convergence(self):
        """Converged after ``convergence_patience`` quiet iterations in a row."""
        fraction = self.ctx.record.get("fraction_uncertain")
        if fraction is not None and fraction < self.inputs.convergence_fraction.value:
            self.ctx.quiet += 1
        elif fraction is not None:
            self.ctx.quiet = 0
        potential = self._data_node(self.ctx.potential)
        self.ctx.record.update(
            {
                "version_after": self.ctx.version,
                "rmse_energy_per_atom": potential.base.attributes.get("rmse_energy_per_atom"),
                "rmse_forces": potential.base.attributes.get("rmse_forces"),
                "dft_used": self.ctx.dft_used,
            }
        )
        self.ctx.iterations.append(self.ctx.record)
        if self.ctx.quiet >= self.inputs.convergence_patience.value:
            self.ctx.stop_reason = "converged"

    # -- results ------------------------------------------------------------------------------------

    def results(self):
        """The latest version, every labelled dataset, the report and why the campaign stopped."""
        self.out("potential", self._data_node(self.ctx.potential))
        for i, pk in enumerate(self.ctx.labelled):
            self.out(f"labelled.d{i:03d}", self._data_node(pk))
        if self.ctx.dropped:
            self.out("dropped", orm.List(self.ctx.dropped).store())
        report = {
            "campaign": self.ctx.campaign,
            "iterations": self.ctx.iterations,
            "versions": self.ctx.version + 1,
            "dft_used": self.ctx.dft_used,
            "stop_reason": self.ctx.stop_reason,
        }
        self.out("report", orm.Dict(report).store())
        self.out("stop_reason", orm.Str(self.ctx.stop_reason).store())
        self.report(
            f"campaign {self.ctx.campaign} stopped: {self.ctx.stop_reason} after {self.ctx.iteration} iterations"
        )
