"""``lmlp report``: PNG plots and a text summary of one active-learning campaign.

The campaign is found by its name: the ``lmlp.lifelong`` work chain that carries it (extra
``lmlp_campaign`` or input ``campaign``), else the creating work chain of its registered
versions, else the registry alone. A campaign still running is reported as far as it got:
what is missing is left out of the plots (a plot with nothing to show says so).

Plots (energies in meV/atom, forces in meV/Å):

- ``learning_curves.png``: ensemble test RMSE against the cumulative epoch, one line per version;
- ``parity.png``: the latest version against its training data (train and test conformations);
- ``uncertainty_vs_error.png``: ensemble uncertainty against the actual error, per conformation;
- ``dataset_and_exclusions.png``: conformations in the data stream and those excluded, per epoch;
- ``selections.png``: the screening outcome of every iteration and the fraction uncertain.

Imports aiida; matplotlib (Agg canvas, no pyplot) inside the plotting functions; torch only
through :meth:`LmlpPotentialData.get_ensemble` when the parity data are computed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.links import LinkType

from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData
from aiida_lmlp.potential.exploration import trajectory_counts
from aiida_lmlp.registry import list_campaigns, list_versions, training_state

__all__ = [
    "CampaignData",
    "ParityData",
    "ReportFiles",
    "UnknownCampaignError",
    "collect_campaign",
    "find_campaign_workchain",
    "known_campaigns",
    "parity_data",
    "plot_dataset_and_exclusions",
    "plot_learning_curves",
    "plot_parity",
    "plot_selections",
    "plot_uncertainty_vs_error",
    "summary_text",
    "version_metrics",
    "write_report",
    "write_summary",
]

LIFELONG = "aiida.workflows:lmlp.lifelong"
MEV = 1000.0  # eV → meV
SCREENING_KEYS = ("visited", "known", "uncertain", "unphysical", "too_close", "selected", "fraction_uncertain")


class UnknownCampaignError(KeyError):
    """No campaign of that name in the profile; the message names the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class ReportFiles:
    """Paths of what :func:`write_report` wrote."""

    folder: Path
    learning_curves: Path
    parity: Path
    uncertainty_vs_error: Path
    dataset_and_exclusions: Path
    selections: Path
    summary: Path

    @property
    def plots(self) -> list[Path]:
        """The PNG files."""
        return [
            self.learning_curves,
            self.parity,
            self.uncertainty_vs_error,
            self.dataset_and_exclusions,
            self.selections,
        ]

    @property
    def all(self) -> list[Path]:
        """The PNG files and the summary."""
        return [*self.plots, self.summary]


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


def _training_datasets(potential: LmlpPotentialData) -> list[LmlpDatasetData]:
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
    datasets = list(datasets) or _training_datasets(potential)
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
    from aiida_lmlp.potential.errors import StructureError

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


def _figure(width: float = 10.0, height: float = 4.2):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _empty(figure, message: str) -> None:
    for axis in figure.axes:
        axis.set_axis_off()
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color="0.35")


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(count - 1, 1)) for i in range(count)]


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isfinite(y)
    return x[mask], y[mask]


def _version_parents(data: CampaignData) -> dict[int, int | None]:
    by_uuid = {row["uuid"]: row["version"] for row in data.versions}
    return {row["version"]: by_uuid.get(row["parent"]) for row in data.versions}


def _curves(data: CampaignData, value) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per version (epoch, value) with the parent's last point prepended, so continued lines join up."""
    parents = _version_parents(data)
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in data.versions:
        metrics = data.metrics.get(row["version"]) or {}
        if "epoch" not in metrics:
            continue
        x, y = _finite(metrics["epoch"].astype(np.float64), value(metrics))
        if not len(x):
            continue
        parent = parents.get(row["version"])
        if parent in curves and len(curves[parent][0]) and curves[parent][0][-1] < x[0]:
            x = np.concatenate([curves[parent][0][-1:], x])
            y = np.concatenate([curves[parent][1][-1:], y])
        curves[row["version"]] = (x, y)
    return [(version, x, y) for version, (x, y) in curves.items()]


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def plot_learning_curves(data: CampaignData, path: str | os.PathLike) -> Path:
    """Ensemble test RMSE of energy (meV/atom) and forces (meV/Å) against the cumulative epoch, per version.

    Solid lines: on each version's own test sets, which grow with the data; dashed: on the test
    conformations of the first version, held out in every version (models trained since
    2026-11-26 record them), so that versions compare on the same conformations. A star marks
    each version's recorded test RMSE at its last epoch: on the line for a version
    trained in one job; for member blocks the line averages the blocks' RMSEs and the star is
    the whole gathered ensemble's.
    """
    path = Path(path)
    figure = _figure()
    energy_axis, forces_axis = figure.subplots(1, 2)
    keys = (
        ("ensemble_test_rmse_energy_per_atom", "rmse_energy_per_atom", energy_axis, "energy RMSE / meV/atom"),
        ("ensemble_test_rmse_forces", "rmse_forces", forces_axis, "force RMSE / meV/Å"),
    )
    colours = _colours(len(data.versions))
    index = {row["version"]: i for i, row in enumerate(data.versions)}
    plotted = False
    for key, attribute, axis, label in keys:
        curves = _curves(data, lambda m, key=key: MEV * m[key] if key in m else np.full(len(m["epoch"]), np.nan))
        values = [y for _, _, y in curves]
        shown = {version for version, _, _ in curves}
        for version, x, y in curves:
            axis.plot(x, y, "-o", ms=3, lw=1.5, color=colours[index[version]], label=f"v{version}")
        # the first version's test conformations, held out in every version: comparable across them
        first_key = key.replace("ensemble_test", "ensemble_first_test")
        first = _curves(data, lambda m, k=first_key: MEV * m[k] if k in m else np.full(len(m["epoch"]), np.nan))
        for i, (version, x, y) in enumerate(first):
            axis.plot(x, y, "--", lw=1.0, color=colours[index[version]], label="on v0's test set" if i == 0 else None)
            values.append(y)
        recorded = [
            (row, MEV * row[attribute])
            for row in data.versions
            if row["version"] in shown
            and row.get(attribute) is not None
            and row.get("epochs") is not None
            and math.isfinite(row[attribute])
        ]
        for i, (row, value) in enumerate(recorded):
            axis.plot(
                row["epochs"],
                value,
                marker="*",
                ms=12,
                ls="none",
                color=colours[index[row["version"]]],
                markeredgecolor="k",
                label="recorded test RMSE of the version" if i == 0 else None,
            )
            values.append(np.array([value]))
        plotted = plotted or bool(curves)
        axis.set_xlabel("cumulative epoch")
        axis.set_ylabel(f"ensemble test {label}")
        if values and all((v > 0).all() for v in values):
            axis.set_yscale("log")
        axis.grid(alpha=0.3, which="both")
    if plotted:
        energy_axis.legend(fontsize=8)
        figure.suptitle(f"{data.name}: learning curves (ensemble mean on the members' test sets)")
    else:
        _empty(figure, f"{data.name}: no training metrics yet")
    return _save(figure, path)


def plot_parity(data: CampaignData, parity: ParityData | None, path: str | os.PathLike) -> Path:
    """Predicted vs reference energy per atom (meV/atom) and force components (meV/Å) of the latest version."""
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    figure = _figure(10.0, 4.8)
    energy_axis, forces_axis = figure.subplots(1, 2)
    if parity is None:
        _empty(figure, f"{data.name}: no version or no labelled training data yet")
        return _save(figure, path)
    train = ~parity.is_test
    energy_ref = MEV * parity.energy_reference / parity.n_atoms
    energy_pred = MEV * parity.energy_predicted / parity.n_atoms
    offset = float(np.mean(energy_ref))  # energies per atom shown relative to their mean, for readable ticks
    for axis, ref, pred, masks, unit, rmse in (
        (
            energy_axis,
            energy_ref - offset,
            energy_pred - offset,
            (train, parity.is_test),
            "meV/atom",
            parity.rmse_energy_per_atom,
        ),
        (
            forces_axis,
            MEV * parity.forces_reference,
            MEV * parity.forces_predicted,
            (~parity.force_is_test, parity.force_is_test),
            "meV/Å",
            parity.rmse_forces,
        ),
    ):
        conformation_masks = (train, parity.is_test)
        for mask, cmask, name, style in zip(
            masks,
            conformation_masks,
            ("train", "test"),
            ({"marker": "o", "color": "C0"}, {"marker": "^", "color": "C3"}),
        ):
            if not mask.any():
                continue
            value = MEV * rmse(cmask)
            axis.scatter(
                ref[mask],
                pred[mask],
                s=14 if axis is energy_axis else 6,
                alpha=0.75,
                label=f"{name} ({int(cmask.sum())}): RMSE {value:.2f} {unit}",
                **style,
            )
        low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (high - low or 1.0)
        axis.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8, label="y = x")
        axis.set_xlim(low - pad, high + pad)
        axis.set_ylim(low - pad, high + pad)
        axis.set_aspect("equal", adjustable="box")
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.yaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    energy_axis.set_xlabel("reference E/N − ⟨E/N⟩ / meV/atom")
    energy_axis.set_ylabel("predicted E/N − ⟨E/N⟩ / meV/atom")
    energy_axis.text(
        0.98,
        0.03,
        f"⟨E/N⟩ = {offset / MEV:.4f} eV/atom (reference mean)",
        transform=energy_axis.transAxes,
        ha="right",
        fontsize=8,
        color="0.3",
    )
    energy_axis.set_title(
        f"energy per atom (all: RMSE {MEV * parity.rmse_energy_per_atom():.2f} meV/atom)", fontsize=10
    )
    forces_axis.set_xlabel("reference force component / meV/Å")
    forces_axis.set_ylabel("predicted force component / meV/Å")
    forces_axis.set_title(f"forces (all: RMSE {MEV * parity.rmse_forces():.1f} meV/Å)", fontsize=10)
    figure.suptitle(f"{data.name}: version {parity.version} on its training data ({parity.count} conformations)")
    return _save(figure, path)


def plot_uncertainty_vs_error(data: CampaignData, parity: ParityData | None, path: str | os.PathLike) -> Path:
    """Ensemble ΔE per atom vs |error| per atom, and max ΔF vs max |force error|, per conformation (log-log)."""
    path = Path(path)
    figure = _figure(10.0, 4.8)
    energy_axis, forces_axis = figure.subplots(1, 2)
    if parity is None:
        _empty(figure, f"{data.name}: no version or no labelled training data yet")
        return _save(figure, path)
    floor = 1e-4  # meV: keeps exact zeros visible on a log axis
    pairs = (
        (
            energy_axis,
            MEV * parity.energy_uncertainty / parity.n_atoms,
            MEV * np.abs(parity.energy_error_per_atom()),
            "ensemble ΔE/N / meV/atom",
            "|E error|/N / meV/atom",
        ),
        (
            forces_axis,
            MEV * parity.max_force_uncertainty,
            MEV * parity.max_force_error,
            "max ΔF component / meV/Å",
            "max |force error| component / meV/Å",
        ),
    )
    for axis, uncertainty, error, xlabel, ylabel in pairs:
        x, y = np.maximum(uncertainty, floor), np.maximum(error, floor)
        for mask, name, style in (
            (~parity.is_test, "train", {"marker": "o", "color": "C0"}),
            (parity.is_test, "test", {"marker": "^", "color": "C3"}),
        ):
            if mask.any():
                axis.scatter(x[mask], y[mask], s=16, alpha=0.75, label=f"{name} ({int(mask.sum())})", **style)
        low = float(min(x.min(), y.min())) / 2
        high = float(max(x.max(), y.max())) * 2
        axis.plot([low, high], [low, high], "k--", lw=0.8, label="y = x")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlim(low, high)
        axis.set_ylim(low, high)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8, loc="upper left")
    figure.suptitle(f"{data.name}: uncertainty vs error of version {parity.version}, per conformation")
    return _save(figure, path)


def plot_dataset_and_exclusions(data: CampaignData, path: str | os.PathLike) -> Path:
    """Conformations in the data stream (active + excluded) and excluded ones, mean over members, per epoch."""
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    figure = _figure(10.0, 4.2)
    stream_axis, excluded_axis = figure.subplots(1, 2, sharex=True)

    def member_mean(key: str):
        def value(m: dict[str, np.ndarray]) -> np.ndarray:
            if key == "stream":
                if "active" not in m or "excluded" not in m:
                    return np.full(len(m["epoch"]), np.nan)
                total = m["active"] + m["excluded"]
            elif key in m:
                total = m[key]
            else:
                return np.full(len(m["epoch"]), np.nan)
            with np.errstate(all="ignore"):
                return np.where(np.isfinite(total).all(axis=1), total.mean(axis=1), np.nan)

        return value

    plotted = False
    colours = _colours(len(data.versions))
    index = {row["version"]: i for i, row in enumerate(data.versions)}
    for axis, key, label in (
        (stream_axis, "stream", "conformations in the data stream"),
        (excluded_axis, "excluded", "excluded conformations"),
    ):
        top = 0.0
        for version, x, y in _curves(data, member_mean(key)):
            axis.plot(x, y, "-o", ms=3, lw=1.5, color=colours[index[version]], label=f"v{version}")
            top = max(top, float(y.max()))
            plotted = True
        axis.set_xlabel("cumulative epoch")
        axis.set_ylabel(f"{label} (mean over members)")
        axis.grid(alpha=0.3)
        axis.set_ylim(0, max(1.15 * top, 1.0))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    if plotted:
        stream_axis.legend(title="version", fontsize=8)
        figure.suptitle(f"{data.name}: data stream and adaptive-selection exclusions (active + excluded = stream)")
    else:
        _empty(figure, f"{data.name}: no training metrics yet")
    return _save(figure, path)


def plot_selections(data: CampaignData, path: str | os.PathLike) -> Path:
    """Per iteration: stacked bars known / uncertain (not selected) / selected / unphysical / too close; % uncertain."""
    path = Path(path)
    figure = _figure(8.0, 4.5)
    axis = figure.subplots()
    records = [r for r in data.iterations if r.get("visited") is not None]
    if not records:
        failed = [r["iteration"] for r in data.iterations if r.get("explore_failed")]
        note = f" (exploration failed in iteration {', '.join(map(str, failed))})" if failed else ""
        _empty(figure, f"{data.name}: no screened iteration yet{note}")
        return _save(figure, path)
    failed = [r for r in data.iterations if r.get("visited") is None and r.get("explore_failed")]
    records = sorted(records + failed, key=lambda r: r["iteration"])
    iterations = np.array([r["iteration"] for r in records])
    stacks = (
        ("known", [r.get("known", 0) for r in records], "#9e9e9e"),
        ("uncertain, not selected", [r.get("uncertain", 0) - r.get("selected", 0) for r in records], "#f2a93b"),
        ("selected for DFT", [r.get("selected", 0) for r in records], "#d62728"),
        ("unphysical", [r.get("unphysical", 0) for r in records], "#6a3d9a"),
        ("too close to another", [r.get("too_close", 0) for r in records], "#1f78b4"),
    )
    bottom = np.zeros(len(records))
    for label, values, colour in stacks:
        values = np.asarray(values, dtype=np.float64)
        axis.bar(iterations, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom += values
    axis.set_xlabel("iteration")
    axis.set_ylabel("visited conformations")
    axis.set_xticks(iterations)
    top = max(bottom.max(), 1) * 1.3
    axis.set_ylim(0, top)
    for record in failed:
        axis.text(
            record["iteration"],
            0.1 * top,
            "exploration\nfailed",
            ha="center",
            va="bottom",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"},
            zorder=5,
        )
    fraction_axis = axis.twinx()
    fractions = np.array(
        [np.nan if r.get("fraction_uncertain") is None else 100 * r["fraction_uncertain"] for r in records]
    )
    fractions_shown = np.isfinite(fractions)
    fraction_axis.plot(
        iterations[fractions_shown], fractions[fractions_shown], "k-o", lw=1.5, label="fraction uncertain"
    )
    convergence = data.inputs.get("convergence_fraction")
    if convergence is not None:
        fraction_axis.axhline(100 * convergence, color="k", ls=":", lw=1, label="convergence threshold")
    fraction_axis.set_ylabel("fraction uncertain / %")
    fraction_axis.set_ylim(0, max(100.0, float(np.nanmax(fractions, initial=0.0)) * 1.1))
    handles, labels = axis.get_legend_handles_labels()
    more_handles, more_labels = fraction_axis.get_legend_handles_labels()
    axis.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="upper left", ncol=2)
    figure.suptitle(f"{data.name}: screening of the explored conformations per iteration")
    return _save(figure, path)


# -- the summary ---------------------------------------------------------------------------------------


def _mev(value: float | None, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{MEV * value:.{digits}f}"


def _iteration_line(record: dict) -> str:
    iteration = record.get("iteration")
    head = f"iteration {iteration} (explored with v{record.get('version')}): "
    if record.get("explore_failed"):
        return head + f"exploration failed ({record['explore_failed']})"
    if record.get("visited") is None:
        return head + "not screened yet"
    fraction = record.get("fraction_uncertain")
    line = (
        head + f"{record['visited']} visited: {record.get('known', 0)} known, {record.get('uncertain', 0)} uncertain "
        f"({record.get('selected', 0)} selected), {record.get('unphysical', 0)} unphysical, "
        f"{record.get('too_close', 0)} too close; "
        f"{'n/a' if fraction is None else f'{100 * fraction:.1f} %'} uncertain"
    )
    if record.get("trajectories"):
        line += (
            f"; {record.get('stopped_early', 0)} of {record['trajectories']} trajectories stopped uncertain, "
            f"{record.get('mean_steps', 0.0):.1f} steps on average"
        )
    if "labelled" in record or "dropped" in record:
        line += f"; {record.get('labelled', 0)} labelled, {record.get('dropped', 0)} dropped"
    if record.get("version_after") is not None:
        line += (
            f"; then v{record['version_after']}: {_mev(record.get('rmse_energy_per_atom'), 2)} meV/atom, "
            f"{_mev(record.get('rmse_forces'), 1)} meV/Å"
        )
    if record.get("dft_used") is not None:
        line += f"; DFT used so far {record['dft_used']}"
    return line


def summary_text(data: CampaignData, parity: ParityData | None = None, files: Sequence[Path] = ()) -> str:
    """The text summary of :func:`write_report` (units in every heading)."""
    lines = [f"lMLP campaign report: {data.name}"]
    if data.workchain is not None:
        lines.append(f"work chain       LifelongWorkChain<{data.workchain.pk}> ({data.state})")
    else:
        lines.append(f"work chain       none found ({data.state})")
    lines.append(f"stop reason      {data.stop_reason or 'not stopped yet'}")
    budget = data.inputs.get("dft_budget")
    dft = "n/a" if data.dft_used is None else f"{data.dft_used} structures submitted for labelling"
    lines.append(f"DFT used         {dft}" + (f" (budget {budget})" if budget else ""))
    labelled = sum(d.count for d in data.labelled)
    lines.append(f"labelled         {labelled} conformations in {len(data.labelled)} dataset(s)")
    lines.append(f"dropped          {len(data.dropped)} structures no DFT run could label")
    lines.append(f"versions         {len(data.versions)}")
    lines.append("")
    lines.append("versions (test RMSE: the ensemble on its members' test sets; energy meV/atom, forces meV/Å)")
    lines.append(
        f"{'version':>7} {'pk':>6} {'iteration':>9} {'dataset size':>12} {'epochs':>6} "
        f"{'E RMSE/meV/atom':>16} {'F RMSE/meV/Å':>13}"
    )
    for row in data.versions:
        lines.append(
            f"{row['version']:>7} {row['pk']:>6} {row['iteration']!s:>9} {row['dataset_size']!s:>12} "
            f"{row['epochs']!s:>6} {_mev(row['rmse_energy_per_atom'], 2):>16} {_mev(row['rmse_forces'], 1):>13}"
        )
    if not data.versions:
        lines.append("   (no version yet)")
    lines.append("")
    lines.append("iterations (counts of visited conformations; RMSEs of the version after the iteration)")
    lines.extend(_iteration_line(record) for record in data.iterations)
    if not data.iterations:
        lines.append("   (no iteration yet)")
    if data.dropped:
        lines.append("")
        lines.append("dropped structures")
        for d in data.dropped:
            where = f"iteration {d['iteration']}" if d.get("iteration") is not None else "initial data"
            lines.append(f"  {where}, index {d.get('index')}: {d.get('reason', '')}".rstrip())
    if parity is not None:
        test, train = parity.is_test, ~parity.is_test
        lines.append("")
        lines.append(
            f"parity of version {parity.version} on its training data ({parity.count} conformations, {int(test.sum())} "
            "in the test sets)"
        )
        lines.append(
            f"  all    energy RMSE {_mev(parity.rmse_energy_per_atom(), 2)} meV/atom, "
            f"force RMSE {_mev(parity.rmse_forces(), 1)} meV/Å"
        )
        for name, mask in (("train", train), ("test", test)):
            if mask.any():
                lines.append(
                    f"  {name:<6} energy RMSE {_mev(parity.rmse_energy_per_atom(mask), 2)} meV/atom, "
                    f"force RMSE {_mev(parity.rmse_forces(mask), 1)} meV/Å"
                )
    if files:
        lines.append("")
        lines.append("plots")
        lines.extend(f"  {Path(p).name}" for p in files)
    return "\n".join(lines) + "\n"


def write_summary(
    data: CampaignData, path: str | os.PathLike, parity: ParityData | None = None, files: Sequence[Path] = ()
) -> Path:
    """Write :func:`summary_text` to ``path``."""
    path = Path(path)
    path.write_text(summary_text(data, parity, files), encoding="utf-8")
    return path


def write_report(campaign: str, folder: str | os.PathLike) -> ReportFiles:
    """Write the five PNG plots and ``summary.txt`` of ``campaign`` into ``folder`` (created if needed).

    Raises :class:`UnknownCampaignError` (naming the known campaigns) when there is no such campaign.
    """
    data = collect_campaign(campaign)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    latest = data.latest
    parity = parity_data(latest, _training_datasets(latest) or data.labelled) if latest is not None else None
    plots = {
        "learning_curves": plot_learning_curves(data, folder / "learning_curves.png"),
        "parity": plot_parity(data, parity, folder / "parity.png"),
        "uncertainty_vs_error": plot_uncertainty_vs_error(data, parity, folder / "uncertainty_vs_error.png"),
        "dataset_and_exclusions": plot_dataset_and_exclusions(data, folder / "dataset_and_exclusions.png"),
        "selections": plot_selections(data, folder / "selections.png"),
    }
    summary = write_summary(data, folder / "summary.txt", parity, list(plots.values()))
    return ReportFiles(folder=folder, summary=summary, **plots)
