"""Training studies of issue 3 (a–c) on the SN2 data: optimisers, adaptive vs random selection, lifelong learning.

    python benchmarks/training_studies.py --quick                          # smoke run, about a minute
    python benchmarks/training_studies.py --study all --epochs 120 --seeds 2

Data: ``workflows/data/sn2`` (pool_a + pool_b, 899 conformations, PBE/def2-SVP), energies
referenced to the free atoms of ``free_atoms.json``, conformations with a force component
above 15 eV/Å skipped (as the paper and ``Trainer`` do). Protocol after Eckhoff & Reiher
(2023), section 3: every member its own random 90/10 train/test split, 10 % of the training
conformations fitted per epoch, loss of Eq. 10 (q = 10.9), the configuration defaults of
``training_config.py`` (the paper's hyperparameters).

Studies:

* ``a``: SGD, RPROP, Adam and CoRe at the paper's networks (102-61-44), and all five optimisers
  (with the extended Kalman filter) at a small network (``--small-hidden``, default one hidden
  layer of 8) where the Kalman covariance blocks fit; the EKF row runs ``--ekf-epochs``
  epochs only (each epoch is 72 conformations × 3 sequential filter updates per member) and is
  compared with the others at the same epoch from their learning curves.
* ``b``: CoRe with adaptive vs random selection (10 members), plus a long run of
  ``--long-members`` members for ``--long-epochs`` (default 2000, the paper's) epochs each for
  the training-set reduction curve (paper Fig. 3: the fraction of a member's training
  conformations that are not excluded, per epoch).
* ``c``: lifelong vs stationary. Stationary: all data from the start (the CoRe run of a/b).
  ``lifelong-distorted`` (Table 5 analogue: the paper adds the structurally distorted
  conformations of set C to B halfway): conformations displaced by at most 0.05 Å first, those
  displaced by 0.10 and 0.15 Å added at half the epochs. ``lifelong-reactions`` (Fig. 4,
  "additional chemical systems"): reactions sorted alphabetically by leaving group, then
  nucleophile (the paper's order; the central carbon is always methyl here); the five
  Y⁻ + CH3Br reactions first, the six Y⁻ + CH3Cl reactions (with SH⁻, so sulfur is new) added
  halfway, p_late = 0.54. New data are added as ``training_run.py`` continues from a parent
  file: each member is saved, loaded with ``Ensemble.load`` and a new ``Trainer`` on all data
  restores its state, the new conformations joining its stream and test split (10 %). The
  number of conformations fitted per epoch is the same count before and after (10 % of all
  training data; the paper counts late data in it too). An element without any atom in the
  initial data (sulfur) gets its input standardisation from the new data when they arrive.

Evaluation: besides each member's own test split (the paper's individual test RMSE), a
common hold-out set (``--holdout``, 10 % of the usable conformations, the same for every run
and seed) is given to no member, so that the ensemble RMSE is measured on data none of its
members trained on; the ensemble RMSE over all of the members' data (mostly trained, likely
the paper's "ensemble RMSE") and over the union of the members' test splits (``Trainer``'s
``ensemble_test``) are recorded too. RMSEs in meV/atom (energies) and meV/Å (force components).

Members are trained as independent single-member trainers (``member_offset = m``), which is
exactly the stacked training (each member's loss involves only its own weights and
conformations; checked at the start of every run of this script, ``stacking_check`` in the
output). When the recorded results were made this was about twice as fast as the stacked
trainer, which then evaluated every member on the union of all members' subsamples (about
65 % of the data for ten members at 10 %); the trainer now packs each member's own subsample
and is 2.5× faster than single members (``training_throughput.py``). The single-member
trainers of a run share one prepared batch (descriptor Jacobians) instead of preparing it ten
times. Results: ``benchmarks/results/training_studies_<study>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from structures import SN2, SN2_ELEMENTS, sn2_conformations  # noqa: E402
from timing import cpu_model  # noqa: E402

import aiida_lmlp.potential.training.trainer as trainer_module  # noqa: E402
from aiida_lmlp.formats.training_config import default_config, merge_config  # noqa: E402
from aiida_lmlp.potential import Ensemble  # noqa: E402
from aiida_lmlp.potential.training.batches import predict_batch, prepare_batch  # noqa: E402
from aiida_lmlp.potential.training.trainer import Trainer, filter_training_data  # noqa: E402

PAPER_HIDDEN = (102, 61, 44)
OPTIMIZERS = ("sgd", "rprop", "adam", "core")
#: Paper values quoted in the summaries (Table 4, Table 5, section 4.4).
PAPER = {
    "table4_individual_test": {"sgd": (37, 557), "rprop": (10.0, 205), "adam": (6.4, 127), "core": (4.5, 116)},
    "table4_ensemble": {"sgd": (33, 529), "rprop": (6.8, 131), "adam": (3.9, 95), "core": (2.6, 64)},
    "adaptive_vs_random_ensemble_improvement_percent": (31, 48),
    "reduction_fraction_after_2000_epochs": 0.29,
    "table5_individual_test": {"batch": (6.8, 182), "lifelong": (7.8, 205)},
    "table5_ensemble": {"batch": (4.3, 121), "lifelong": (4.5, 122)},
    "fig4_ensemble_increase_percent_p_late_0.5_to_0.8": 21,
}


@dataclass
class RunSpec:
    """One training run: ``members`` members of one configuration and seed."""

    study: str
    variant: str  # label in the tables, e.g. "core" or "core/random"
    optimizer: str
    hidden: tuple[int, ...]
    seed: int
    members: int
    epochs: int
    selection: str = "adaptive"
    scenario: str = "stationary"  # stationary | lifelong-distorted | lifelong-reactions
    metrics_every: int = 25

    @property
    def name(self) -> str:
        """Unique name of the run."""
        size = "x".join(map(str, self.hidden))
        return f"{self.variant}/{self.scenario}/{size}/m{self.members}/e{self.epochs}/seed{self.seed}"

    @property
    def add_at(self) -> int | None:
        """Epoch after which the late block is added (lifelong scenarios)."""
        return self.epochs // 2 if self.scenario != "stationary" else None


@dataclass
class Data:
    """Usable conformations split into the common hold-out set and the pool the members see."""

    pool: list
    holdout: list
    labels: dict = field(default_factory=dict)  # conformation id -> {grouping: label}
    ids: dict = field(default_factory=dict)  # id(atoms) -> conformation id


GROUPINGS = ("reaction", "reaction_block", "distortion_block")


def _labels(atoms) -> dict:
    reaction = atoms.info["reaction"]
    return {
        "reaction": reaction,
        "reaction_block": "late (CH3Cl)" if reaction.endswith("CH3Cl") else "initial (CH3Br)",
        "distortion_block": "late (0.10-0.15 A)" if atoms.info["displacement"] > 0.075 else "initial (<=0.05 A)",
    }


def load_data(holdout_fraction: float, seed: int) -> tuple[Data, str]:
    """The usable SN2 conformations (force cap 15 eV/Å, no duplicates) and a fixed random hold-out set."""
    structures, ids, report = filter_training_data(sn2_conformations(), SN2_ELEMENTS, 15.0)
    rng = np.random.default_rng(seed)
    n_holdout = int(round(holdout_fraction * len(structures)))
    chosen = set(rng.choice(len(structures), size=n_holdout, replace=False).tolist())
    data = Data(
        pool=[a for k, a in enumerate(structures) if k not in chosen],
        holdout=[a for k, a in enumerate(structures) if k in chosen],
    )
    for atoms, key in zip(structures, ids):
        data.labels[key] = _labels(atoms)
        data.ids[id(atoms)] = key
    return data, report.summary()


def scenario_blocks(data: Data, scenario: str) -> tuple[list, list]:
    """(initial, late) structures of the pool for a scenario."""
    if scenario == "stationary":
        return list(data.pool), []
    grouping = {"lifelong-distorted": "distortion_block", "lifelong-reactions": "reaction_block"}[scenario]
    late = [a for a in data.pool if data.labels[data.ids[id(a)]][grouping].startswith("late")]
    initial = [a for a in data.pool if not data.labels[data.ids[id(a)]][grouping].startswith("late")]
    return initial, late


# -- the shared prepared batch ---------------------------------------------------------------------

_BATCHES: dict = {}


@contextmanager
def shared_batches():
    """Let the single-member trainers of a run share one prepared batch of the same structures.

    ``prepare_batch`` depends on the model only through its elements, descriptor, reference
    energies, dtype and device, which all members of these runs share; the batch is never
    modified by training (sub-batches are copies).
    """
    original = trainer_module.prepare_batch

    def cached(model, structures):
        key = (tuple(id(a) for a in structures), str(model.dtype))
        if key not in _BATCHES:
            _BATCHES.clear()
            _BATCHES[key] = original(model, structures)
        return _BATCHES[key]

    trainer_module.prepare_batch = cached
    try:
        yield
    finally:
        trainer_module.prepare_batch = original
        _BATCHES.clear()


# -- building and training members ------------------------------------------------------------------


def make_config(spec: RunSpec, fit_per_epoch, dtype: str, member: int) -> dict:
    """Training configuration of one single-member trainer of ``spec``."""
    return merge_config(
        default_config(),
        {
            "members": 1,
            "member_offset": member,
            "seed": spec.seed,
            "dtype": dtype,
            "hidden": list(spec.hidden),
            "optimizer": spec.optimizer,
            "selection": spec.selection,
            "fit_per_epoch": fit_per_epoch,
            "metrics_every": 10**9,
            "checkpoint_every": 10**9,
        },
    )


def standardization_rows(structures, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Descriptor rows per element of ``structures`` (what ``initialize_standardization`` uses)."""
    template = Ensemble.new(SN2_ELEMENTS, members=1, hidden=(1,), dtype=dtype)
    values, species = template.descriptors_of(structures)
    return {e: values[species == k] for k, e in enumerate(SN2_ELEMENTS) if bool((species == k).any())}


def new_member(spec: RunSpec, member: int, references: dict, rows: dict, dtype: torch.dtype) -> Ensemble:
    """Member ``member`` of the run (its own initial weights), standardised like ``initialize_standardization``."""
    model = Ensemble.new(
        SN2_ELEMENTS,
        members=1,
        hidden=spec.hidden,
        reference_energies=references,
        seed=spec.seed,
        dtype=dtype,
        member_offset=member,
    )
    for element, values in rows.items():
        model.networks.networks[element].set_standardization(values)
    return model


def stacking_check(data: Data, references: dict, dtype: str, epochs: int = 3) -> dict:
    """Two members trained stacked vs one by one with ``member_offset``: largest weight difference."""
    spec = RunSpec("check", "core", "core", PAPER_HIDDEN, 0, 2, epochs)
    torch_dtype = getattr(torch, dtype)
    rows = standardization_rows(data.pool, torch_dtype)
    config = merge_config(make_config(spec, 0.1, dtype, 0), {"members": 2})
    stacked_model = Ensemble.new(
        SN2_ELEMENTS, members=2, hidden=spec.hidden, reference_energies=references, seed=0, dtype=torch_dtype
    )
    for element, values in rows.items():
        stacked_model.networks.networks[element].set_standardization(values)
    stacked = Trainer(stacked_model, data.pool, config, log=lambda _: None)
    singles = [
        Trainer(
            new_member(spec, m, references, rows, torch_dtype),
            data.pool,
            make_config(spec, 0.1, dtype, m),
            log=lambda _: None,
        )
        for m in range(2)
    ]
    for _ in range(epochs):
        stacked.train_epoch()
        for single in singles:
            single.train_epoch()
    largest = 0.0
    for name, param in stacked.model.networks.named_parameters():
        for m, single in enumerate(singles):
            other = dict(single.model.networks.named_parameters())[name]
            largest = max(largest, float((param[m] - other[0]).detach().abs().max()))
    return {"epochs": epochs, "members": 2, "optimizer": "core", "max_abs_weight_difference": largest}


# -- evaluation ----------------------------------------------------------------------------------


def _rmse(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if values.size else math.nan


def _errors(model: Ensemble, batch) -> tuple[np.ndarray, np.ndarray]:
    """Energy-per-atom errors (S,) in meV/atom and force errors (A, 3) in meV/Å of a one-member model."""
    energies, forces = predict_batch(model, batch)
    energy = ((energies[0].detach() - batch.energy) / batch.n_atoms).double().cpu().numpy() * 1000
    force = (forces[0].detach() - batch.forces).double().cpu().numpy() * 1000
    return energy, force


class Evaluator:
    """Per-member and ensemble RMSEs of a run's single-member trainers (on their data and the hold-out)."""

    def __init__(self, data: Data, holdout_batch):
        self.data = data
        self.holdout_batch = holdout_batch
        self.holdout_structure = holdout_batch.graph["structure"].cpu().numpy()
        holdout_ids = [data.ids[id(a)] for a in data.holdout]
        self.holdout_labels = {g: np.array([data.labels[i][g] for i in holdout_ids]) for g in GROUPINGS}

    def _groups(self, energy, force, structure, labels, mask) -> dict:
        result = {}
        for grouping, values in labels.items():
            result[grouping] = {}
            for label in sorted(set(values.tolist())):
                s = mask & (values == label)
                if s.any():
                    result[grouping][label] = [_rmse(energy[s]), _rmse(force[s[structure]])]
        return result

    @torch.no_grad()
    def __call__(self, trainers: list[Trainer], epoch: int, wall: float, diverged=None) -> dict:
        """RMSEs after ``epoch``: members (train, own test, hold-out), ensemble, and by group.

        Diverged members (``diverged[m]``: the epoch of a non-finite loss) get NaN RMSEs, and the
        ensemble is NaN when any member diverged.
        """
        diverged = diverged or [None] * len(trainers)
        first = trainers[0]
        structure = first.batch.graph["structure"].cpu().numpy()
        labels = {g: np.array([self.data.labels[i][g] for i in first.ids]) for g in GROUPINGS}
        members, energies, forces, h_energies, h_forces = [], [], [], [], []
        test_union = np.zeros(len(first.ids), dtype=bool)
        member_groups = []
        for trainer in trainers:
            if trainer.ids != first.ids:
                raise RuntimeError("the members of a run must see the same conformations")
            energy, force = _errors(trainer.model, trainer.batch)
            h_energy, h_force = _errors(trainer.model, self.holdout_batch)
            test = np.array([i in trainer.test_ids[0] for i in trainer.ids])
            test_union |= test
            selection = trainer.selections[0]
            members.append(
                {
                    "train": [_rmse(energy[~test]), _rmse(force[~test[structure]])],
                    "test": [_rmse(energy[test]), _rmse(force[test[structure]])],
                    "holdout": [_rmse(h_energy), _rmse(h_force)],
                    "active": int(selection.active.sum()),
                    "stream": len(selection.ids),
                    "diverged_at": diverged[len(members)],
                }
            )
            member_groups.append(self._groups(energy, force, structure, labels, test))
            energies.append(energy)
            forces.append(force)
            h_energies.append(h_energy)
            h_forces.append(h_force)
        for m, epoch_diverged in enumerate(diverged):
            if epoch_diverged is not None:
                members[m].update({k: [math.nan, math.nan] for k in ("train", "test", "holdout")})
        mean_energy, mean_force = np.mean(energies, 0), np.mean(forces, 0)
        mean_h_energy, mean_h_force = np.mean(h_energies, 0), np.mean(h_forces, 0)
        if any(d is not None for d in diverged):
            mean_energy, mean_h_energy = np.full_like(mean_energy, np.nan), np.full(len(self.data.holdout), np.nan)
            mean_force, mean_h_force = np.full_like(mean_force, np.nan), np.full_like(mean_h_force, np.nan)
        holdout_everything = np.ones(len(self.data.holdout), dtype=bool)
        individual_by_group = {}
        for grouping in GROUPINGS:
            individual_by_group[grouping] = {}
            for label in sorted({k for g in member_groups for k in g[grouping]}):
                values = [g[grouping][label] for g in member_groups if label in g[grouping]]
                individual_by_group[grouping][label] = np.mean(values, 0).tolist()
        return {
            "epoch": epoch,
            "wall_s": round(wall, 2),
            "members": members,
            "ensemble": {
                "holdout": [_rmse(mean_h_energy), _rmse(mean_h_force)],
                "test_union": [_rmse(mean_energy[test_union]), _rmse(mean_force[test_union[structure]])],
                "all": [_rmse(mean_energy), _rmse(mean_force)],
            },
            "by_group": {
                "ensemble_holdout": self._groups(
                    mean_h_energy, mean_h_force, self.holdout_structure, self.holdout_labels, holdout_everything
                ),
                "individual_test": individual_by_group,
            },
        }


def metric_epochs(spec: RunSpec) -> set[int]:
    """Epochs after which the RMSEs are evaluated: early doublings, every ``metrics_every``, the last."""
    epochs = {1, 2, 4, 8, 16, 32, spec.epochs}
    epochs |= set(range(spec.metrics_every, spec.epochs + 1, spec.metrics_every))
    if spec.add_at:
        epochs |= {spec.add_at, spec.add_at + 1, spec.add_at + 4, spec.add_at + 16}
    return {e for e in epochs if 1 <= e <= spec.epochs}


def train_run(spec: RunSpec, data: Data, evaluator: Evaluator, references: dict, dtype: str, log) -> dict:
    """Train the members of ``spec`` one by one per epoch; returns its curves and final metrics."""
    torch_dtype = getattr(torch, dtype)
    initial, late = scenario_blocks(data, spec.scenario)
    n_all = len(initial) + len(late)
    n_stream = n_all - int(round(0.1 * n_all))
    fit = 0.1 if spec.scenario == "stationary" else int(round(0.1 * n_stream))
    rows = standardization_rows(initial, torch_dtype)
    start = time.perf_counter()
    quiet = lambda _: None
    trainers = [
        Trainer(
            new_member(spec, m, references, rows, torch_dtype), initial, make_config(spec, fit, dtype, m), log=quiet
        )
        for m in range(spec.members)
    ]
    setup = time.perf_counter() - start
    schedule = metric_epochs(spec)
    curve, active = [], []
    diverged: list[int | None] = [None] * spec.members
    for epoch in range(1, spec.epochs + 1):
        for m, trainer in enumerate(trainers):
            if diverged[m] is None and not _train_epoch(trainer):
                diverged[m] = epoch
                log(f"  {spec.name}: member {m} diverged (non-finite loss) in epoch {epoch}; it trains no further")
        if all(d is not None for d in diverged):
            curve.append(evaluator(trainers, epoch, time.perf_counter() - start, diverged))
            break
        active.append([[int(t.selections[0].active.sum()), len(t.selections[0].ids)] for t in trainers])
        if epoch == spec.add_at:
            if epoch in schedule:
                curve.append(evaluator(trainers, epoch, time.perf_counter() - start, diverged))
            trainers = add_data(trainers, initial + late, late, rows, spec, fit, dtype)
            continue
        if epoch in schedule:
            curve.append(evaluator(trainers, epoch, time.perf_counter() - start, diverged))
            last = curve[-1]
            log(
                f"  {spec.name} epoch {epoch}: ensemble hold-out {last['ensemble']['holdout'][0]:.2f} meV/atom, "
                f"{last['ensemble']['holdout'][1]:.1f} meV/Å ({last['wall_s']:.0f} s)"
            )
    wall = time.perf_counter() - start
    return {
        "spec": {**asdict(spec), "name": spec.name, "add_at": spec.add_at},
        "fit_per_epoch": fit,
        "initial_conformations": len(initial),
        "late_conformations": len(late),
        "setup_s": round(setup, 2),
        "wall_s": round(wall, 1),
        "diverged_at_epoch": diverged,
        "curve": curve,
        "active": active,
        "final": curve[-1],
    }


def _train_epoch(trainer: Trainer) -> bool:
    """One epoch; False when the loss is not finite (or the selection fails on a non-finite loss)."""
    try:
        record = trainer.train_epoch()
    except (ValueError, RuntimeError):
        return False
    return all(math.isfinite(x) for x in record["loss"])


def add_data(trainers, structures, late, rows, spec: RunSpec, fit, dtype: str) -> list[Trainer]:
    """Continue every member on ``structures`` as ``training_run.py`` continues from a parent file."""
    torch_dtype = getattr(torch, dtype)
    new_rows = {e: v for e, v in standardization_rows(late, torch_dtype).items() if e not in rows}
    continued = []
    with tempfile.TemporaryDirectory() as tmp:
        for m, trainer in enumerate(trainers):
            path = Path(tmp) / f"member{m}.lmlp"
            trainer.save(path)
            model = Ensemble.load(path).to(torch_dtype)
            for element, values in new_rows.items():
                model.networks.networks[element].set_standardization(values)
            continued.append(Trainer(model, structures, make_config(spec, fit, dtype, m), log=lambda _: None))
    rows.update(new_rows)
    return continued


# -- summaries -------------------------------------------------------------------------------------


def _mean_std(values) -> list[float]:
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not values.size:
        return [math.nan, math.nan]
    return [float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0]


def summarize(runs: list[dict], epoch: int | None = None) -> dict:
    """Mean ± std per variant: individuals over all members of all seeds, ensembles over seeds.

    ``epoch``: read the curves at that epoch instead of the last one (runs without it are left out).
    """
    groups = defaultdict(list)
    for run in runs:
        point = run["final"]
        if epoch is not None:
            matching = [c for c in run["curve"] if c["epoch"] == epoch]
            if not matching:
                continue
            point = matching[0]
        spec = run["spec"]
        key = (spec["variant"], spec["scenario"], "-".join(map(str, spec["hidden"])), spec["members"], spec["epochs"])
        groups[key].append((run, point))
    table = {}
    for (variant, scenario, hidden, members, epochs), items in groups.items():
        row = {
            "variant": variant,
            "scenario": scenario,
            "hidden": hidden,
            "members": members,
            "epochs": epochs if epoch is None else epoch,
            "seeds": len(items),
            "wall_s_per_run": float(np.mean([r["wall_s"] for r, _ in items])),
        }
        for part in ("train", "test", "holdout"):
            for k, quantity in enumerate(("E", "F")):
                row[f"individual_{part}_{quantity}"] = _mean_std(m[part][k] for _, p in items for m in p["members"])
        for part in ("holdout", "all", "test_union"):
            for k, quantity in enumerate(("E", "F")):
                row[f"ensemble_{part}_{quantity}"] = _mean_std(p["ensemble"][part][k] for _, p in items)
        row["diverged_members"] = sum(m.get("diverged_at") is not None for _, p in items for m in p["members"])
        row["active_fraction"] = _mean_std(m["active"] / m["stream"] for _, p in items for m in p["members"])
        by_group = defaultdict(lambda: defaultdict(list))
        for _, p in items:
            for kind, groupings in p["by_group"].items():
                for grouping, labels in groupings.items():
                    for label, (e, f) in labels.items():
                        by_group[f"{kind}:{grouping}"][label].append((e, f))
        row["by_group"] = {
            kind: {label: np.mean(v, 0).tolist() for label, v in labels.items()} for kind, labels in by_group.items()
        }
        table[f"{variant}|{scenario}|{hidden}|m{members}|e{row['epochs']}"] = row
    return table


def _pm(value: list[float], digits: int) -> str:
    mean, std = value
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(mean) else "–"


def markdown_rows(table: dict) -> str:
    """The summary as a Markdown table (meV/atom, meV/Å)."""
    lines = [
        "| variant | scenario | network | members | epochs | seeds | indiv. test E | indiv. test F | "
        "indiv. hold-out E | indiv. hold-out F | ens. hold-out E | ens. hold-out F | ens. all E | ens. all F | "
        "active | diverged | s/run |",
        "|" + "---|" * 17,
    ]
    for row in table.values():
        lines.append(
            f"| {row['variant']} | {row['scenario']} | {row['hidden']} | {row['members']} | {row['epochs']} | "
            f"{row['seeds']} | {_pm(row['individual_test_E'], 1)} | {_pm(row['individual_test_F'], 0)} | "
            f"{_pm(row['individual_holdout_E'], 1)} | {_pm(row['individual_holdout_F'], 0)} | "
            f"{_pm(row['ensemble_holdout_E'], 1)} | {_pm(row['ensemble_holdout_F'], 0)} | "
            f"{_pm(row['ensemble_all_E'], 1)} | {_pm(row['ensemble_all_F'], 0)} | "
            f"{row['active_fraction'][0]:.2f} | {row['diverged_members']} | {row['wall_s_per_run']:.0f} |"
        )
    return "\n".join(lines)


def _change(new: float, reference: float) -> float:
    """Relative change of ``new`` against ``reference`` in percent (negative: lower)."""
    return 100.0 * (new - reference) / reference


def findings(study: str, table: dict, runs: list[dict]) -> dict:
    """The paper's comparisons, computed from the summary table."""

    def row(variant, scenario="stationary", hidden=None, long=False):
        hidden = hidden or "-".join(map(str, runs[0]["spec"]["hidden"]))
        matches = [
            v for v in table.values() if v["variant"] == variant and v["scenario"] == scenario and v["hidden"] == hidden
        ]
        matches.sort(key=lambda v: (v["epochs"], -v["members"]), reverse=long)
        return matches[0] if matches else None

    out = {}
    if study == "a":
        for hidden in {r["hidden"] for r in table.values()}:
            core, adam = row("core", hidden=hidden), row("adam", hidden=hidden)
            ordered = [
                (v["variant"], v["ensemble_holdout_E"][0], v["ensemble_holdout_F"][0])
                for v in table.values()
                if v["hidden"] == hidden
            ]
            out[hidden] = {
                "order_by_ensemble_holdout_E": [
                    v for v, *_ in sorted(ordered, key=lambda x: (not math.isfinite(x[1]), x[1]))
                ],
                "order_by_ensemble_holdout_F": [
                    v for v, *_ in sorted(ordered, key=lambda x: (not math.isfinite(x[2]), x[2]))
                ],
            }
            if core and adam:
                out[hidden]["core_vs_adam_ensemble_holdout_percent"] = [
                    _change(core["ensemble_holdout_E"][0], adam["ensemble_holdout_E"][0]),
                    _change(core["ensemble_holdout_F"][0], adam["ensemble_holdout_F"][0]),
                ]
                out[hidden]["core_vs_adam_ensemble_all_percent"] = [
                    _change(core["ensemble_all_E"][0], adam["ensemble_all_E"][0]),
                    _change(core["ensemble_all_F"][0], adam["ensemble_all_F"][0]),
                ]
                out[hidden]["core_vs_adam_individual_test_percent"] = [
                    _change(core["individual_test_E"][0], adam["individual_test_E"][0]),
                    _change(core["individual_test_F"][0], adam["individual_test_F"][0]),
                ]
    if study == "b":
        adaptive, random = row("core"), row("core/random")
        if adaptive and random:
            for part in ("ensemble_holdout", "ensemble_all", "individual_test", "individual_holdout"):
                out[f"adaptive_vs_random_{part}_percent"] = [
                    _change(adaptive[f"{part}_E"][0], random[f"{part}_E"][0]),
                    _change(adaptive[f"{part}_F"][0], random[f"{part}_F"][0]),
                ]
        adaptive, random = row("core", long=True), row("core/random", long=True)
        if adaptive and random and adaptive["epochs"] == random["epochs"] > row("core")["epochs"]:
            out["long_epochs"] = adaptive["epochs"]
            for part in ("individual_test", "individual_holdout"):
                out[f"long_adaptive_vs_random_{part}_percent"] = [
                    _change(adaptive[f"{part}_E"][0], random[f"{part}_E"][0]),
                    _change(adaptive[f"{part}_F"][0], random[f"{part}_F"][0]),
                ]
        for run in runs:
            if run["spec"]["epochs"] > row("core")["epochs"]:
                fractions = [a / n for a, n in run["active"][-1]]
                out[f"active_fraction_end_{run['spec']['variant']}_{run['spec']['epochs']}_epochs"] = fractions
    if study == "c":
        stationary = row("core")
        for scenario in ("lifelong-distorted", "lifelong-reactions"):
            lifelong = row("core", scenario)
            if stationary and lifelong:
                out[scenario] = {
                    f"{part}_percent": [
                        _change(lifelong[f"{part}_E"][0], stationary[f"{part}_E"][0]),
                        _change(lifelong[f"{part}_F"][0], stationary[f"{part}_F"][0]),
                    ]
                    for part in ("individual_test", "individual_holdout", "ensemble_holdout", "ensemble_all")
                }
    return out


# -- plots -----------------------------------------------------------------------------------------


def _curve_mean(runs: list[dict], pick) -> tuple[list[int], list[float]]:
    by_epoch = defaultdict(list)
    for run in runs:
        for point in run["curve"]:
            by_epoch[point["epoch"]].append(pick(point))
    epochs = sorted(e for e, v in by_epoch.items() if len(v) == len(runs))
    return epochs, [float(np.mean(by_epoch[e])) for e in epochs]


def plot(study: str, runs: list[dict], path: Path) -> None:
    """Learning curves (a), active fraction per epoch (b), RMSE by block and by reaction (c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = defaultdict(list)
    for run in runs:
        s = run["spec"]
        variants[(s["variant"], s["scenario"], "-".join(map(str, s["hidden"])), s["members"], s["epochs"])].append(run)
    ensemble = lambda k: lambda p: p["ensemble"]["holdout"][k]
    individual = lambda k: lambda p: float(np.mean([m["test"][k] for m in p["members"]]))
    if study in ("a", "b"):
        fig, axes = plt.subplots(1, 3 if study == "b" else 2, figsize=(15 if study == "b" else 11, 4.2))
        for key, group in sorted(variants.items()):
            label = f"{key[0]} {key[2]}" + (f" ({key[3]} members)" if key[3] <= 2 else "")
            style = "-" if key[2] == "102-61-44" else "--"
            for k, ax in enumerate(axes[:2]):
                epochs, values = _curve_mean(group, ensemble(k) if key[3] > 2 else individual(k))
                ax.plot(epochs, values, style, marker=".", label=label)
        for k, ax in enumerate(axes[:2]):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(("energy RMSE / meV atom$^{-1}$", "force RMSE / meV Å$^{-1}$")[k])
            ax.set_title("ensemble, hold-out (≤2 members: individual test)")
            ax.set_ylim(top=min(ax.get_ylim()[1], 1e4))  # diverged runs off the scale
        axes[0].legend(fontsize=7)
        if study == "b":
            ax = axes[2]
            for key, group in sorted(variants.items()):
                per_epoch = np.mean([[[a / n for a, n in ep] for ep in run["active"]] for run in group], 0)
                epochs = np.arange(1, len(per_epoch) + 1)
                line = ax.plot(epochs, per_epoch.mean(1), label=f"{key[0]} ({key[3]} members, {key[4]} epochs)")
                for m in range(per_epoch.shape[1]):
                    ax.plot(epochs, per_epoch[:, m], ".", ms=1, color=line[0].get_color(), alpha=0.3)
            ax.axhline(PAPER["reduction_fraction_after_2000_epochs"], ls=":", color="k", label="paper: 29 % at 2000")
            ax.set_xlabel("epoch")
            ax.set_ylabel("fraction of training conformations not excluded")
            ax.set_title("training-set reduction (paper Fig. 3)")
            ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
        for key, group in sorted(variants.items()):
            scenario = key[1]
            grouping = "distortion_block" if scenario == "lifelong-distorted" else "reaction_block"
            blocks = ("initial", "late")
            for block, style in zip(blocks, ("-", "--")):
                for k, ax in enumerate(axes[:2]):

                    def pick(p, k=k, block=block, grouping=grouping):
                        labels = p["by_group"]["ensemble_holdout"][grouping]
                        return next(v[k] for label, v in labels.items() if label.startswith(block))

                    epochs, values = _curve_mean(group, pick)
                    ax.plot(epochs, values, style, marker=".", label=f"{scenario}: {block} block ({grouping})")
        for k, ax in enumerate(axes[:2]):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(("energy RMSE / meV atom$^{-1}$", "force RMSE / meV Å$^{-1}$")[k])
            ax.set_title("ensemble hold-out RMSE by block")
        axes[0].legend(fontsize=6)
        ax = axes[2]
        width = 0.4
        for j, scenario in enumerate(("stationary", "lifelong-reactions")):
            group = [r for r in runs if r["spec"]["scenario"] == scenario]
            if not group:
                continue
            reactions = sorted(group[0]["final"]["by_group"]["individual_test"]["reaction"])
            reactions.sort(key=lambda r: (r.split("+")[1], r.split("+")[0]))
            values = [
                np.mean([run["final"]["by_group"]["individual_test"]["reaction"][r][1] for run in group])
                for r in reactions
            ]
            ax.bar(np.arange(len(reactions)) + (j - 0.5) * width, values, width, label=scenario)
            ax.set_xticks(np.arange(len(reactions)), reactions, rotation=60, fontsize=7)
        ax.set_ylabel("individual test force RMSE / meV Å$^{-1}$")
        ax.set_title("by reaction (CH3Cl reactions added halfway)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the plan and main ---------------------------------------------------------------------------


def plan(args) -> dict[str, list[RunSpec]]:
    """Run specifications per study; runs shared between studies appear in each (trained once)."""
    seeds = range(args.seeds)
    paper = tuple(args.hidden)
    small = tuple(args.small_hidden)
    common = {"members": args.members, "epochs": args.epochs, "metrics_every": args.metrics_every}
    core = [RunSpec("a", "core", "core", paper, s, **common) for s in seeds]
    studies = {"a": [], "b": [], "c": []}
    studies["a"] = core + [RunSpec("a", o, o, paper, s, **common) for o in ("adam", "rprop", "sgd") for s in seeds]
    studies["a"] += [RunSpec("a", o, o, small, s, **common) for o in OPTIMIZERS for s in seeds]
    studies["a"] += [
        RunSpec("a", "ekf", "ekf", small, s, args.members, args.ekf_epochs, metrics_every=args.metrics_every)
        for s in range(args.ekf_seeds)
    ]
    studies["b"] = core + [RunSpec("b", "core/random", "core", paper, s, selection="random", **common) for s in seeds]
    long_every = max(args.metrics_every, args.long_epochs // 20)
    for selection in args.long_selections:
        variant = "core" if selection == "adaptive" else "core/random"
        studies["b"].append(
            RunSpec(
                "b", variant, "core", paper, 0, args.long_members, args.long_epochs, selection, "stationary", long_every
            )
        )
    studies["c"] = core + [
        RunSpec("c", "core", "core", paper, s, scenario=scenario, **common)
        for scenario in ("lifelong-distorted", "lifelong-reactions")
        for s in seeds
    ]
    return studies


def machine() -> dict:
    """Where the numbers were taken."""
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=("a", "b", "c", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=120, help="epochs of the ten-member runs")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=list(PAPER_HIDDEN), help="the paper-size network")
    parser.add_argument("--small-hidden", type=int, nargs="+", default=[8], help="network of the EKF comparison")
    parser.add_argument("--ekf-epochs", type=int, default=4)
    parser.add_argument("--ekf-seeds", type=int, default=1)
    parser.add_argument("--long-epochs", type=int, default=2000, help="epochs of the long reduction runs (b)")
    parser.add_argument("--long-members", type=int, default=2)
    parser.add_argument("--long-selections", nargs="+", choices=("adaptive", "random"), default=["adaptive", "random"])
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in the output JSON files; train only the others"
    )
    parser.add_argument("--metrics-every", type=int, default=20)
    parser.add_argument("--holdout", type=float, default=0.1, help="common hold-out fraction")
    parser.add_argument("--holdout-seed", type=int, default=2023)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 members, few epochs, small networks")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and PNG files")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.epochs, args.seeds = 2, 6, 1
        args.hidden, args.small_hidden = [16], [4]
        args.ekf_epochs, args.long_epochs, args.long_members, args.metrics_every = 1, 10, 1, 5
    torch.set_num_threads(args.threads)
    log = lambda message: print(message, flush=True)
    command = "python3 " + shlex.join(["benchmarks/training_studies.py", *(argv if argv is not None else sys.argv[1:])])
    started = datetime.datetime.now(datetime.timezone.utc)
    data, report = load_data(args.holdout, args.holdout_seed)
    references = json.loads((SN2 / "free_atoms.json").read_text())
    log(f"{report}; hold-out {len(data.holdout)}, pool {len(data.pool)}")
    check = stacking_check(data, references, args.dtype)
    log(f"stacked vs one-by-one members: largest weight difference {check['max_abs_weight_difference']:.3g}")
    studies = plan(args)
    wanted = ("a", "b", "c") if args.study == "all" else (args.study,)
    done, commands = resume(args.out, wanted) if args.resume else ({}, [])
    if done:
        log(f"resuming: {len(done)} runs kept from the JSON files in {args.out}")
    header = {
        "command": command,
        "commands": commands if command in commands else [*commands, command],
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "dtype": args.dtype,
        "data": {
            "source": "workflows/data/sn2 pool_a + pool_b",
            "report": report,
            "holdout": len(data.holdout),
            "pool": len(data.pool),
            "reference_energies": "free_atoms.json",
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "stacking_check": check,
        "paper": PAPER,
        "units": "RMSE in meV/atom (energies) and meV/Å (force components); pairs are [E, F]",
    }
    template = Ensemble.new(
        SN2_ELEMENTS, members=1, hidden=(1,), reference_energies=references, dtype=getattr(torch, args.dtype)
    )
    holdout_batch = prepare_batch(template, data.holdout)
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in execution_order(studies, wanted):
        if spec.name in done:
            continue
        log(f"run {spec.name}")
        with shared_batches():
            done[spec.name] = train_run(spec, data, Evaluator(data, holdout_batch), references, args.dtype, log)
        log(f"  done in {done[spec.name]['wall_s']:.0f} s")
        for study in wanted:
            runs = [done[s.name] for s in studies[study] if s.name in done]
            if any(s.name == spec.name for s in studies[study]):
                write(study, header, runs, args.out, final=False)
    for study in wanted:
        write(study, header, [done[s.name] for s in studies[study]], args.out, final=True)
    log(f"total {(datetime.datetime.now(datetime.timezone.utc) - started).total_seconds():.0f} s")


def resume(out: Path, wanted) -> tuple[dict[str, dict], list[str]]:
    """Runs (by name) and commands recorded in the study files of an earlier, possibly cut-off, invocation."""
    runs, commands = {}, []
    for study in wanted:
        path = out / f"training_studies_{study}.json"
        if not path.exists():
            continue
        old = json.loads(path.read_text())
        for run in old["runs"]:
            runs[run["spec"]["name"]] = run
        for command in old.get("commands", [old["command"]]):
            if command not in commands:
                commands.append(command)
    return runs, commands


def execution_order(studies: dict[str, list[RunSpec]], wanted) -> list[RunSpec]:
    """Every run once, most informative first, so that a run cut short by the budget loses the least.

    Ten-member runs at the paper's size (a, then b, then c), the small-network runs of a, the
    EKF, and last the long reduction runs of b.
    """

    def priority(spec: RunSpec) -> tuple:
        if spec.optimizer == "ekf":
            return (2,)
        if spec.members != studies_members:
            return (3,)
        small = spec.hidden != paper_hidden
        return (1 if small else 0, spec.scenario != "stationary", spec.selection == "random")

    specs = {}
    for study in wanted:
        for spec in studies[study]:
            specs.setdefault(spec.name, spec)
    paper_hidden = studies[wanted[0]][0].hidden
    studies_members = studies[wanted[0]][0].members
    return sorted(specs.values(), key=priority)


def write(study: str, header: dict, runs: list[dict], out: Path, final: bool) -> None:
    """The study's JSON (after every run, so that a cut-off run keeps what it has) and, at the end, its PNG."""
    table = summarize(runs)
    result = {
        **header,
        "study": study,
        "complete": final,
        "summary": table,
        "findings": findings(study, table, runs),
        "markdown": markdown_rows(table),
        "runs": runs,
    }
    if study == "a":
        ekf = [r for r in runs if r["spec"]["optimizer"] == "ekf"]
        if ekf:
            at = ekf[0]["spec"]["epochs"]
            result["summary_at_ekf_epochs"] = summarize(
                [r for r in runs if tuple(r["spec"]["hidden"]) == tuple(ekf[0]["spec"]["hidden"])], epoch=at
            )
            result["markdown_at_ekf_epochs"] = markdown_rows(result["summary_at_ekf_epochs"])
    (out / f"training_studies_{study}.json").write_text(json.dumps(result, indent=1))
    if final:
        plot(study, runs, out / f"training_studies_{study}.png")
        print(result["markdown"], flush=True)
        print(json.dumps(result["findings"], indent=1), flush=True)


if __name__ == "__main__":
    main()
