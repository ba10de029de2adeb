"""What a campaign report shows, read from the profile: versions, iterations, metrics, data and parity.

The campaign is found by its name: the ``lmlp.lifelong`` work chain that carries it (extra
``lmlp_campaign`` or input ``campaign``), else the creating work chain of its registered
versions, else the registry alone. A campaign still running is read as far as it got.
Imports aiida; torch only through :meth:`LmlpPotentialData.get_ensemble` when the parity data
are computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.links import LinkType

from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.formats.exploration import trajectory_counts
from aiida_lmlp.registry import list_campaigns, list_versions, training_state

LIFELONG = "aiida.workflows:lmlp.lifelong"
MEV = 1000.0  # eV → meV
SCREENING_KEYS = ("visited", "known", "uncertain", "unphysical", "too_close", "selected", "fraction_uncertain")


class UnknownCampaignError(KeyError):
    """No campaign of that name in the profile; the message names the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class CampaignData:
    """Everything the report shows, read from the profile once.

    ``versions``: registry rows (:func:`aiida_lmlp.registry.list_versions`) with the node under
    ``"node"``; ``iterations``: per-iteration records as in the work chain's ``report`` output;
    ``metrics``: per version number, the per-epoch arrays of :func:`version_metrics`.
    """

    name: str
    workchain: orm.WorkChainNode | None
    versions: list[dict]
    iterations: list[dict]
    metrics: dict[int, dict[str, np.ndarray]]
    labelled: list[LmlpDatasetData]
    dropped: list[dict]
    dft_used: int | None
    stop_reason: str | None
    state: str
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> LmlpPotentialData | None:
        """The newest version, if any."""
        return self.versions[-1]["node"] if self.versions else None


@dataclass
class ParityData:
    """Predictions of one version on its training data, per conformation (eV, Å).

    ``is_test`` marks the conformations of the members' test sets; ``forces_*`` are the
    flattened force components of all conformations (``force_is_test`` marks them).
    """

    version: int | None
    n_atoms: np.ndarray
    energy_reference: np.ndarray
    energy_predicted: np.ndarray
    energy_uncertainty: np.ndarray
    forces_reference: np.ndarray
    forces_predicted: np.ndarray
    is_test: np.ndarray
    force_is_test: np.ndarray
    max_force_error: np.ndarray
    max_force_uncertainty: np.ndarray

    @property
    def count(self) -> int:
        """Number of conformations."""
        return int(self.n_atoms.shape[0])

    def energy_error_per_atom(self) -> np.ndarray:
        """Predicted minus reference energy per atom (eV/atom)."""
        return (self.energy_predicted - self.energy_reference) / self.n_atoms

    def rmse_energy_per_atom(self, subset: np.ndarray | None = None) -> float:
        """RMSE of the energy per atom (eV/atom) over all conformations or a boolean ``subset``."""
        error = self.energy_error_per_atom()
        error = error if subset is None else error[subset]
        return float(np.sqrt(np.mean(error**2))) if error.size else math.nan

    def rmse_forces(self, subset: np.ndarray | None = None) -> float:
        """RMSE over force components (eV/Å), all conformations or a boolean per-conformation ``subset``."""
        error = self.forces_predicted - self.forces_reference
        if subset is not None:
            error = error[np.repeat(subset, 3 * self.n_atoms)]
        return float(np.sqrt(np.mean(error**2))) if error.size else math.nan


# -- finding the campaign -------------------------------------------------------------------------------


def _lifelong_nodes_named(name: str) -> list[orm.WorkChainNode]:
    """Lifelong work chains with extra ``lmlp_campaign`` or input ``campaign`` equal to ``name``."""
    nodes: dict[int, orm.WorkChainNode] = {}
    by_extra = orm.QueryBuilder().append(
        orm.WorkChainNode,
        filters={"process_type": {"like": "%lmlp.lifelong"}, "extras.lmlp_campaign": name},
        project="*",
    )
    for node in by_extra.all(flat=True):
        nodes[node.pk] = node
    by_input = orm.QueryBuilder()
    by_input.append(orm.Str, filters={"attributes.value": name}, tag="name")
    by_input.append(
        orm.WorkChainNode,
        with_incoming="name",
        edge_filters={"label": "campaign"},
        filters={"process_type": {"like": "%lmlp.lifelong"}},
        project="*",
    )
    for node in by_input.all(flat=True):
        nodes[node.pk] = node
    return [nodes[pk] for pk in sorted(nodes)]


def _lifelong_caller(node: orm.Node) -> orm.WorkChainNode | None:
    """The lifelong work chain above the process that created ``node``, if any."""
    process = node.creator
    while process is not None:
        if (process.process_type or "").endswith("lmlp.lifelong"):
            return process
        process = process.caller
    return None


def find_campaign_workchain(name: str) -> orm.WorkChainNode | None:
    """The ``lmlp.lifelong`` work chain of campaign ``name`` (the newest if several), else None.

    Looked up by the work chain's extra ``lmlp_campaign`` and its ``campaign`` input, then
    through the provenance of the campaign's registered versions.
    """
    nodes = _lifelong_nodes_named(name)
    if nodes:
        return nodes[-1]
    for row in reversed(list_versions(name)):
        caller = _lifelong_caller(orm.load_node(row["pk"]))
        if caller is not None:
            return caller
    return None


def known_campaigns() -> list[str]:
    """Campaign names in the registry and on lifelong work chains."""
    names = set(list_campaigns())
    query = orm.QueryBuilder().append(
        orm.WorkChainNode, filters={"process_type": {"like": "%lmlp.lifelong"}}, project="extras.lmlp_campaign"
    )
    names.update(name for name in query.all(flat=True) if name)
    return sorted(names)


# -- reading the campaign ------------------------------------------------------------------------------


def _calls(node: orm.Node, prefix: str) -> list[tuple[str, orm.ProcessNode]]:
    """Processes called by ``node`` whose call link label starts with ``prefix``, by label."""
    links = node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()
    return sorted((link.link_label, link.node) for link in links if link.link_label.startswith(prefix))


def _metrics_arrays(node: orm.ArrayData) -> dict[str, np.ndarray]:
    return {name: node.get_array(name) for name in node.get_arraynames()}


def _join_blocks(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Member blocks trained over the same epochs → one set of arrays (members side by side).

    The ensemble RMSEs of the blocks are averaged (each block's ensemble is a part of the whole).
    """
    blocks = [b for b in blocks if b and len(b.get("epoch", ()))]
    if not blocks:
        return {}
    if len(blocks) == 1:
        return blocks[0]
    epochs = blocks[0]["epoch"]
    for block in blocks[1:]:
        epochs = np.intersect1d(epochs, block["epoch"])
    rows = [np.searchsorted(block["epoch"], epochs) for block in blocks]
    joined: dict[str, np.ndarray] = {"epoch": epochs}
    for key, value in blocks[0].items():
        if key == "epoch":
            continue
        parts = [block[key][index] for block, index in zip(blocks, rows) if key in block]
        if value.ndim == 2:
            joined[key] = np.concatenate(parts, axis=1)
        else:
            with np.errstate(all="ignore"):
                stacked = np.stack(parts)
                joined[key] = np.where(np.isfinite(stacked).all(axis=0), stacked.mean(axis=0), np.nan)
    return joined


def _join_segments(segments: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Consecutive runs of one job (a resubmission continues a checkpoint): later rows win per epoch."""
    segments = [s for s in segments if s and len(s.get("epoch", ()))]
    if not segments:
        return {}
    if len(segments) == 1:
        return segments[0]
    keys = set.intersection(*(set(s) for s in segments))
    width = {key: max(s[key].shape[1] for s in segments) for key in keys if segments[0][key].ndim == 2}
    rows: dict[int, dict[str, np.ndarray]] = {}
    for segment in segments:
        for i, epoch in enumerate(segment["epoch"]):
            rows[int(epoch)] = {key: segment[key][i] for key in keys}
    epochs = sorted(rows)
    joined = {"epoch": np.array(epochs, dtype=np.int64)}
    for key in keys - {"epoch"}:
        values = [rows[e][key] for e in epochs]
        if key in width:
            values = [np.pad(v, (0, width[key] - v.shape[0]), constant_values=np.nan) for v in values]
        joined[key] = np.array(values, dtype=np.float64)
    return joined


def _job_metrics(potential: LmlpPotentialData) -> list[dict[str, np.ndarray]]:
    """Metrics of the training job(s) behind ``potential`` back to the last finished version.

    A resubmitted job continues from the checkpoint of an interrupted one: its potential's
    creator did not finish ok, and its metrics come first.
    """
    creator = potential.creator
    if creator is None:
        return []
    process_type = creator.process_type or ""
    if process_type.endswith("lmlp.gather"):
        blocks = [_join_segments(_job_metrics(block)) for _, block in sorted(creator.inputs.blocks.items())]
        joined = _join_blocks(blocks)
        return [joined] if joined else []
    if not process_type.endswith("lmlp.train"):
        return []
    segments = []
    parent = creator.inputs.parent_potential if "parent_potential" in creator.inputs else None
    if parent is not None and parent.creator is not None and not parent.creator.is_finished_ok:
        segments.extend(_job_metrics(parent))
    if "metrics" in creator.outputs:
        segments.append(_metrics_arrays(creator.outputs.metrics))
    return segments


def version_metrics(potential: LmlpPotentialData) -> dict[str, np.ndarray]:
    """Per-epoch metrics of the training that made ``potential`` (see :mod:`aiida_lmlp.parsers.train`).

    Arrays ``epoch`` (E,) counting from the first version's start (a continued version's
    epochs follow its parent's), ``ensemble_test_rmse_energy_per_atom``,
    ``ensemble_test_rmse_forces`` (E,) and per member ``active``, ``excluded``, ... (E, M).
    Member blocks trained in several jobs are joined; a job resumed from a checkpoint is
    joined to the run it continues. Empty when nothing was recorded.
    """
    return _join_segments(_job_metrics(potential))


def training_datasets(potential: LmlpPotentialData) -> list[LmlpDatasetData]:
    creator = potential.creator
    process_type = (creator.process_type or "") if creator is not None else ""
    if process_type.endswith(("lmlp.train", "lmlp.gather")) and "datasets" in creator.inputs:
        return [creator.inputs.datasets[key] for key in sorted(creator.inputs.datasets)]
    return []


def _labelled(workchain: orm.WorkChainNode | None) -> list[LmlpDatasetData]:
    if workchain is None:
        return []
    if "labelled" in workchain.outputs:
        return [workchain.outputs.labelled[key] for key in sorted(workchain.outputs.labelled)]
    datasets = []
    structures = workchain.inputs.structures if "structures" in workchain.inputs else None
    if structures is not None and structures.base.attributes.get("labelled_count") == structures.count:
        datasets.append(structures)
    for _, call in _calls(workchain, "label_"):
        if "labelled" in call.outputs:
            datasets.append(call.outputs.labelled)
    return datasets


def _dropped(workchain: orm.WorkChainNode | None) -> list[dict]:
    if workchain is None:
        return []
    if "dropped" in workchain.outputs:
        return list(workchain.outputs.dropped.get_list())
    dropped = []
    for label, call in _calls(workchain, "label_"):
        if "dropped" in call.outputs:
            iteration = None if label == "label_initial" else int(label.removeprefix("label_"))
            extra = {} if iteration is None else {"iteration": iteration}
            dropped.extend({**d, **extra} for d in call.outputs.dropped.get_list())
    return dropped


def _iterations_so_far(workchain: orm.WorkChainNode, versions: list[dict]) -> list[dict]:
    """Per-iteration records of a campaign without a ``report`` output yet, from its calls."""
    records: dict[int, dict] = {}
    for label, call in _calls(workchain, "explore_"):
        iteration = int(label.removeprefix("explore_"))
        potential = call.inputs.potential if "potential" in call.inputs else None
        version = potential.base.extras.get("lmlp_version", None) if potential is not None else None
        records[iteration] = {"iteration": iteration, "version": version}
        if "summary" in call.outputs:
            records[iteration].update(trajectory_counts(call.outputs.summary.get_dict()))
    for label, call in _calls(workchain, "screen_"):
        iteration = int(label.removeprefix("screen_"))
        if "report" in call.outputs:
            report = call.outputs.report.get_dict()
            records.setdefault(iteration, {"iteration": iteration}).update(
                {k: report[k] for k in SCREENING_KEYS if k in report}
            )
    for label, call in _calls(workchain, "label_"):
        if label == "label_initial":
            continue
        record = records.setdefault(int(label.removeprefix("label_")), {"iteration": int(label[6:])})
        if "labelled" in call.outputs:
            record["labelled"] = call.outputs.labelled.count
        if "dropped" in call.outputs:
            record["dropped"] = len(call.outputs.dropped.get_list())
    by_version = {row["version"]: row for row in versions}
    ordered = [records[i] for i in sorted(records)]
    for record, following in zip(ordered, [*ordered[1:], None]):
        # the version after an iteration: the one it registered, else the one the next iteration explored
        # with; an iteration still in progress has none yet
        registered = [row for row in versions if row["iteration"] == record["iteration"]]
        if registered:
            after = registered[-1]
        elif following is not None and following.get("version") in by_version:
            after = by_version[following["version"]]
        else:
            continue
        record["version_after"] = after["version"]
        record["rmse_energy_per_atom"] = after["rmse_energy_per_atom"]
        record["rmse_forces"] = after["rmse_forces"]
    return ordered


def _inputs_summary(workchain: orm.WorkChainNode | None) -> dict[str, Any]:
    if workchain is None:
        return {}
    summary = {}
    for key in ("max_iterations", "dft_budget", "convergence_fraction", "convergence_patience"):
        if key in workchain.inputs:
            summary[key] = workchain.inputs[key].value
    return summary


def collect_campaign(name: str) -> CampaignData:
    """Read campaign ``name`` from the loaded profile; :class:`UnknownCampaignError` if there is none."""
    workchain = find_campaign_workchain(name)
    versions = list_versions(name)
    if workchain is None and not versions:
        known = known_campaigns()
        raise UnknownCampaignError(
            f"no campaign {name!r} in this profile (known campaigns: {', '.join(known) if known else 'none'})"
        )
    for row in versions:
        row["node"] = orm.load_node(row["pk"])
    report = workchain.outputs.report.get_dict() if workchain is not None and "report" in workchain.outputs else None
    if report is not None:
        iterations = list(report.get("iterations", []))
    elif workchain is not None:
        iterations = _iterations_so_far(workchain, versions)
    else:
        iterations = []
    if workchain is None:
        state = "no work chain (registry only)"
    elif workchain.process_state is None:
        state = "created"
    else:
        state = workchain.process_state.value
        if workchain.exit_status is not None:
            state += f", exit status {workchain.exit_status}"
    stop_reason = None
    if workchain is not None and "stop_reason" in workchain.outputs:
        stop_reason = workchain.outputs.stop_reason.value
    elif report is not None:
        stop_reason = report.get("stop_reason")
    dft_used = report.get("dft_used") if report is not None else None
    if dft_used is None and workchain is not None:
        counts = [
            call.inputs.structures.count for _, call in _calls(workchain, "label_") if "structures" in call.inputs
        ]
        dft_used = sum(counts) if counts or workchain.is_terminated else None
    return CampaignData(
        name=name,
        workchain=workchain,
        versions=versions,
        iterations=iterations,
        metrics={row["version"]: version_metrics(row["node"]) for row in versions},
        labelled=_labelled(workchain),
        dropped=_dropped(workchain),
        dft_used=dft_used,
        stop_reason=stop_reason,
        state=state,
        inputs=_inputs_summary(workchain),
    )


# -- the parity data ------------------------------------------------------------------------------------


def parity_data(
    potential: LmlpPotentialData, datasets: Sequence[LmlpDatasetData] = (), batch: int = 64
) -> ParityData | None:
    """Predictions of ``potential`` on the labelled conformations it was trained and tested on.

    ``datasets`` default to those its training job read; only conformations among the version's
    training ids are kept (each once). One batched ensemble evaluation per ``batch`` conformations.
    None when there is nothing to evaluate.
    """
    datasets = list(datasets) or training_datasets(potential)
    state = training_state(potential)
    wanted, test = state["ids"], state["test"]
    frames, seen = [], set()
    for dataset in datasets:
        for identifier, atoms in zip(dataset.ids, dataset.to_atoms()):
            if identifier in seen or (wanted and identifier not in wanted):
                continue
            results = atoms.calc.results if atoms.calc is not None else {}
            if "energy" not in results or "forces" not in results:
                continue
            seen.add(identifier)
            frames.append((identifier, atoms, float(results["energy"]), np.asarray(results["forces"])))
    if not frames:
        return None
    from aiida_lmlp.formats.errors import StructureError

    ensemble = potential.get_ensemble()
    kept, energy, energy_unc, forces, forces_unc = [], [], [], [], []
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        try:
            parts = [(chunk, ensemble.evaluate([f[1] for f in chunk]))]
        except StructureError:  # a conformation the engine refuses (atoms too close, ...): the rest one by one
            parts = []
            for frame in chunk:
                try:
                    parts.append(([frame], ensemble.evaluate([frame[1]])))
                except StructureError:
                    continue
        for part, prediction in parts:
            kept.extend(part)
            energy.append(np.asarray(prediction.energy))
            energy_unc.append(np.asarray(prediction.energy_uncertainty))
            forces.append(np.asarray(prediction.forces))
            forces_unc.append(np.asarray(prediction.forces_uncertainty))
    if not kept:
        return None
    n_atoms = np.array([len(f[1]) for f in kept], dtype=np.int64)
    forces_predicted = np.concatenate(forces)
    forces_reference = np.concatenate([f[3] for f in kept])
    forces_uncertainty = np.concatenate(forces_unc)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    force_error = np.abs(forces_predicted - forces_reference).max(axis=1)
    is_test = np.array([f[0] in test for f in kept], dtype=bool)
    return ParityData(
        version=potential.base.extras.get("lmlp_version", None),
        n_atoms=n_atoms,
        energy_reference=np.array([f[2] for f in kept], dtype=np.float64),
        energy_predicted=np.concatenate(energy).astype(np.float64),
        energy_uncertainty=np.concatenate(energy_unc).astype(np.float64),
        forces_reference=forces_reference.reshape(-1),
        forces_predicted=forces_predicted.reshape(-1),
        is_test=is_test,
        force_is_test=np.repeat(is_test, 3 * n_atoms),
        max_force_error=np.maximum.reduceat(force_error, offsets),
        max_force_uncertainty=np.maximum.reduceat(forces_uncertainty.max(axis=1), offsets),
    )


# -- plots ---------------------------------------------------------------------------------------------
