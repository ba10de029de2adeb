"""lMLP training: stacked ensemble members, CoRe, lifelong adaptive data selection, resumable state.

Optimisers: CoRe (the paper's), the torch baselines Adam, RPROP and SGD, and the extended
Kalman filter (:mod:`.kalman`), which updates each member conformation by conformation.

Every member has its own train/test split, subsample per epoch and selection state; the
members' weights are stacked and trained in one pass (each member's loss only involves its own
weights and its own conformations, so this equals training them one by one). The descriptor
Jacobians of all conformations are prepared once.

The complete state — weights, CoRe state per weight (or the Kalman covariance blocks and
forgetting factors), selection state per conformation and member, every random-number
generator and the epoch counter — is written into the model file, so a killed run resumed
from its last checkpoint ends with the same weights as an uninterrupted one.

Data with an element the model lacks (lifelong learning of a new chemical system) make the
model grow (:func:`add_new_elements`): a new atomic network per member, the existing networks,
their optimiser state and every member's selection state untouched.

The floor of the uncertainty (Eq. 23) and the campaign's selection thresholds are set from the
members' own test RMSEs at every checkpoint (:meth:`Ensemble.set_test_rmses`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from ...formats.labels import conformation_id
from ..model.ensemble import Ensemble
from ..training.adaptive_selection import AdaptiveSelection, SelectionSettings, fit_count
from ..training.batches import (
    PreparedBatch,
    conformation_losses,
    gather_structures,
    packed_loss_eq10,
    predict_batch,
    predict_packed,
    prepare_batch,
    reference_label,
    select_structures,
)
from ..training.kalman import ExtendedKalmanFilter, covariance_bytes, kalman_parameter_blocks
from ..training.paper_core import PaperCoRe, core_parameter_groups
from ..training.progress import TrainingProgress

__all__ = [
    "DataReport",
    "Trainer",
    "add_new_elements",
    "conformation_id",
    "filter_training_data",
    "gather_trained",
    "make_optimizer",
]


def gather_trained(models: Sequence[Ensemble]) -> Ensemble:
    """Gather member blocks trained in several jobs, with their CoRe (or EKF) and selection state.

    The jobs must have run the same number of epochs with CoRe or all with the EKF (the torch
    baselines keep per-tensor step counters that cannot be split by member).
    """
    models = sorted(models, key=lambda m: m.networks.member_offset)
    gathered = Ensemble.gather(models)
    trainers = [m.training_config.get("trainer") for m in models]
    if not all(trainers):
        return gathered
    configs = [m.training_config.get("config", {}) for m in models]
    if len({t["epoch"] for t in trainers}) != 1:
        raise ValueError(f"cannot gather jobs at different epochs: {[t['epoch'] for t in trainers]}")
    optimizers = {c.get("optimizer", "core") for c in configs}
    if optimizers not in ({"core"}, {"ekf"}):
        raise ValueError("only CoRe or extended-Kalman-filter training state can be gathered by member")
    tensors, members = {}, []
    if optimizers == {"ekf"}:
        keys = [sorted(k for k in m.training_state if k.startswith("ekf.")) for m in models]
        if any(k != keys[0] for k in keys):
            raise ValueError("cannot gather Kalman filter states with different covariance blocks")
        for key in keys[0]:
            tensors[key] = torch.cat([m.training_state[key] for m in models])
    n_params = len(list(gathered.networks.parameters()))
    for k in range(n_params):
        for key in ("step", "g", "h", "s", "S"):
            parts = [m.training_state.get(f"core.{k}.{key}") for m in models]
            if all(p is not None for p in parts):
                tensors[f"core.{k}.{key}"] = torch.cat(parts)
    for model, trainer in zip(models, trainers):
        for m, member in enumerate(trainer["members"]):
            index = len(members)
            members.append(member)
            for key in ("s_hist", "l_old", "strikes"):
                tensors[f"selection.{index}.{key}"] = model.training_state[f"selection.{m}.{key}"]
    gathered.training_state = tensors
    config = dict(configs[0])
    config["members"] = gathered.members
    config["member_offset"] = gathered.networks.member_offset
    gathered.training_config = {
        "trainer": {"epoch": trainers[0]["epoch"], "members": members, "baseline_keys": []},
        "config": config,
    }
    return gathered


def make_optimizer(model: Ensemble, config: dict) -> torch.optim.Optimizer | ExtendedKalmanFilter:
    """CoRe with the paper's parameter groups, a torch baseline (Adam, RPROP, SGD) or the EKF.

    The baselines act elementwise and the EKF keeps its covariance blocks per member, so
    stacked members remain independent trainings. The EKF refuses to start when its
    covariance blocks would need more than ``ekf.max_memory_gib``.
    """
    name = config["optimizer"]
    if name == "ekf":
        settings = config["ekf"]
        blocks = kalman_parameter_blocks(model.networks, settings["decoupling"])
        need = covariance_bytes(blocks) / 2**30
        if need > settings["max_memory_gib"]:
            sizes = ", ".join(f"{n}: {sum(p[0].numel() for p in b)}" for n, b in blocks.items())
            raise ValueError(
                f"the Kalman covariance blocks ({settings['decoupling']}-decoupled; weights per block {sizes}) "
                f"would need {need:.3g} GiB for {model.members} member(s), more than ekf.max_memory_gib = "
                f"{settings['max_memory_gib']}: use smaller networks, decoupling: layer, or fewer members per job"
            )
        return ExtendedKalmanFilter(
            blocks,
            p0=settings["p0"],
            lambda_start=settings["lambda_start"],
            lambda_0=settings["lambda_0"],
            process_noise=settings["process_noise"],
        )
    if name == "core":
        core = {k: tuple(v) if isinstance(v, list) else v for k, v in config["core"].items()}
        return PaperCoRe(core_parameter_groups(model.networks, frozen=core.pop("frozen")), **core)
    lr = config["baseline_lr"][name]
    params = list(model.networks.parameters())
    return {"adam": torch.optim.Adam, "rprop": torch.optim.Rprop, "sgd": torch.optim.SGD}[name](params, lr=lr)


@dataclass
class DataReport:
    """What happened to the input conformations: counts per reason, and every skipped frame by its index."""

    total: int = 0
    kept: int = 0
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad: list[tuple[int, str]] = field(default_factory=list)
    """``(index in the input, reason)`` of every skipped frame."""
    formulas: dict[int, str] = field(default_factory=dict)

    #: skipped frames listed one per line in :meth:`summary` (the counts cover them all)
    LISTED = 50

    def summary(self) -> str:
        """A line for a log, then one line per skipped frame: its index, formula and reason."""
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "none"
        lines = [f"{self.kept} of {self.total} conformations used; skipped: {skipped}; duplicates: {self.duplicates}"]
        for index, reason in self.bad[: self.LISTED]:
            lines.append(f"  skipped frame {index} ({self.formulas.get(index, '?')}): {reason}")
        if len(self.bad) > self.LISTED:
            lines.append(f"  ... and {len(self.bad) - self.LISTED} more skipped frames")
        return "\n".join(lines)

    def nothing_usable(self) -> str:
        """The error when no frame is left: the first skipped frames with their reasons."""
        named = "; ".join(f"frame {i} ({self.formulas.get(i, '?')}): {why}" for i, why in self.bad[:10])
        more = f"; and {len(self.bad) - 10} more" if len(self.bad) > 10 else ""
        return f"no usable training conformations among {self.total}: {named or 'none given'}{more}"


def _geometry_problem(atoms: Atoms, elements: Sequence[str], cutoff: float, min_distance: float) -> str | None:
    """Why ``atoms`` cannot be evaluated (atoms too close, a bad cell, ...), as the model would refuse it."""
    from ...formats.errors import StructureError
    from ..descriptors.neighbors import build_graph

    try:
        build_graph([atoms], elements, cutoff, min_distance=min_distance, labels=["frame"])
    except StructureError as error:
        return str(error).removeprefix("structure 'frame': ").removeprefix("frame: ")
    return None


def filter_training_data(
    structures: Sequence[Atoms],
    elements: Sequence[str],
    force_cap: float,
    *,
    cutoff: float | None = None,
    min_distance: float | None = None,
):
    """Keep conformations with finite energy and forces within ``force_cap``; report the rest.

    With ``cutoff``, a conformation the model cannot evaluate (two atoms closer than
    ``min_distance``, a periodic cell narrower than the cutoff, ...) is skipped as well. Every
    skipped frame is named in the report with its index and reason: one bad frame never stops
    a training, which stops only when nothing usable is left (:class:`Trainer`).

    Returns ``(kept structures, their ids, DataReport)``. Never uses a bad label silently.
    """
    from ..descriptors.neighbors import DEFAULT_MIN_DISTANCE

    min_distance = DEFAULT_MIN_DISTANCE if min_distance is None else min_distance
    report = DataReport(total=len(structures))
    reasons = {
        "missing energy": 0,
        "missing forces": 0,
        "NaN or infinite labels": 0,
        f"force above {force_cap:g} eV/Å": 0,
        "element not in the model": 0,
        "geometry the model cannot evaluate": 0,
    }
    kept, ids, seen = [], [], set()

    def skip(index: int, atoms: Atoms, why: str, reason: str) -> None:
        reasons[why] += 1
        report.bad.append((index, reason))
        report.formulas[index] = atoms.get_chemical_formula()

    for index, atoms in enumerate(structures):
        energy, forces = reference_label(atoms, "energy"), reference_label(atoms, "forces")
        if energy is None:
            skip(index, atoms, "missing energy", "no reference energy")
            continue
        if forces is None:
            skip(index, atoms, "missing forces", "no reference forces")
            continue
        forces = np.asarray(forces, dtype=np.float64)
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            what = f"energy {energy}" if not np.isfinite(energy) else "forces"
            skip(index, atoms, "NaN or infinite labels", f"NaN or infinite labels ({what})")
            continue
        if np.abs(forces).max() > force_cap:
            cap = f"force above {force_cap:g} eV/Å"
            skip(index, atoms, cap, f"{cap} ({np.abs(forces).max():.3g} eV/Å; force_cap)")
            continue
        foreign = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if foreign:
            skip(index, atoms, "element not in the model", f"element(s) {', '.join(foreign)} not in the model")
            continue
        if cutoff is not None:
            problem = _geometry_problem(atoms, elements, cutoff, min_distance)
            if problem is not None:
                skip(index, atoms, "geometry the model cannot evaluate", problem)
                continue
        key = conformation_id(atoms)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(atoms)
        ids.append(key)
    report.kept = len(kept)
    report.skipped = reasons
    return kept, ids, report


def add_new_elements(model: Ensemble, structures: Sequence[Atoms], config: dict, log=None) -> list[str]:
    """Give ``model`` an atomic network for every element of the usable ``structures`` it lacks.

    The reference energy of a new element is taken from ``config["reference_energies"]`` (a
    free-atom energy) when it is there; otherwise it is fitted by least squares to the totals
    of the conformations that contain it, the other elements' reference energies fixed (zero when
    the model has none). The new networks' standardisation comes from those conformations, and
    their output biases from a least-squares fit of what the existing networks leave unexplained
    (:meth:`Ensemble.initialize_output_offset`, when ``config["output_offset"]``). Existing
    networks and everything about them stay as they are, so the model predicts conformations
    of its old elements exactly as before. A descriptor whose length depends on the elements
    (conventional ACSF) cannot grow: its model is left alone and the trainer skips such data.
    Returns the added elements.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    present = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    new = [e for e in present if e not in model.elements]
    if not new:
        return []
    grown = model.descriptor.with_elements(model.elements + new)
    if len(grown) != len(model.descriptor):
        log(f"the {model.descriptor.kind} descriptor cannot take new elements ({', '.join(new)}): data skipped")
        return []
    usable, _, _ = filter_training_data(
        structures, model.elements + new, config["force_cap"], cutoff=model.descriptor.cutoff
    )
    new = [e for e in new if any(e in atoms.get_chemical_symbols() for atoms in usable)]
    if not new:
        return []
    given = config.get("reference_energies") or {}
    kinds = set(model.reference_kinds.values())
    references, kind = {}, {}
    missing = []
    for element in new:
        if element in given:
            references[element], kind[element] = float(given[element]), "free_atom"
        elif kinds == {"none"}:
            references[element], kind[element] = 0.0, "none"
        else:
            missing.append(element)
    if missing:
        rows = [a for a in usable if set(missing) & set(a.get_chemical_symbols())]
        counts = np.array([[a.get_chemical_symbols().count(e) for e in missing] for a in rows], float)
        rest = np.array(
            [
                reference_label(a, "energy")
                - math.fsum(model.reference_energies.get(s, 0.0) for s in a.get_chemical_symbols() if s not in missing)
                for a in rows
            ]
        )
        solution, *_ = np.linalg.lstsq(counts, rest, rcond=None)
        for element, value in zip(missing, solution):
            references[element], kind[element] = float(value), "least_squares"
    for element in new:
        model.add_element(element, references[element], kind[element])
    carrying = [a for a in usable if set(new) & set(a.get_chemical_symbols())]
    model.initialize_standardization(carrying, elements=new)
    if config.get("output_offset", True):
        model.initialize_output_offset(carrying, [reference_label(a, "energy") for a in carrying], elements=new)
    log(
        "new element(s) added to the model: "
        + ", ".join(f"{e} (reference energy {references[e]:.6g} eV, {kind[e].replace('_', ' ')})" for e in new)
        + f", from {len(carrying)} conformations"
    )
    return new


_KALMAN_COUNTS = ("ekf_energy_updates", "ekf_energy_skipped", "ekf_force_updates", "ekf_force_skipped")


def _member_rmses(
    energies: torch.Tensor, forces: torch.Tensor, batch: PreparedBatch, owner: torch.Tensor, members: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per member: energy RMSE per atom (eV/atom) and force-component RMSE (eV/Å) over its packed structures."""
    per_atom = ((energies - batch.energy) / batch.n_atoms) ** 2
    count = torch.bincount(owner, minlength=members).to(per_atom.dtype).clamp_min(1.0)
    energy = per_atom.new_zeros(members).index_add(0, owner, per_atom) / count
    squared = ((forces - batch.forces) ** 2).sum(-1)
    components = 3.0 * per_atom.new_zeros(members).index_add(0, owner, batch.n_atoms).clamp_min(1.0)
    force = squared.new_zeros(members).index_add(0, owner[batch.graph["structure"]], squared) / components
    return energy.sqrt().cpu().numpy(), force.sqrt().cpu().numpy()


def _rmse(values: torch.Tensor) -> float:
    return float(torch.sqrt((values**2).mean())) if values.numel() else math.nan


class Trainer:
    """Trains an :class:`Ensemble` on labelled conformations (see the module docstring)."""

    def __init__(self, model: Ensemble, structures: Sequence[Atoms], config: dict, *, log=None):
        self.model = model
        self.config = config
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.added_elements = add_new_elements(model, structures, config, self.log)
        structures, ids, self.report = filter_training_data(
            structures, model.elements, config["force_cap"], cutoff=model.descriptor.cutoff
        )
        self.log(self.report.summary())
        if not structures:
            raise ValueError(self.report.nothing_usable())
        self.ids = ids
        self.batch: PreparedBatch = prepare_batch(model, structures)
        self.settings = SelectionSettings(**config["adaptive"])
        self.optimizer = make_optimizer(model, config)
        self.epoch = 0
        self._restore_or_start()

    # -- state ------------------------------------------------------------------------------------

    def _restore_or_start(self) -> None:
        previous = self.model.training_config.get("trainer")
        members = self.model.members
        offset = self.model.networks.member_offset
        self.rngs = [np.random.default_rng([self.config["seed"], offset + m]) for m in range(members)]
        self.test_ids: list[set[str]] = []
        # the test sets of the first session: they stay test data, so their RMSE compares versions
        self.first_test_ids: list[set[str]] = []
        self.selections: list[AdaptiveSelection] = []
        if previous:
            self._restore(previous)
        # new conformations (first run, or data added since the last session) join every member:
        # a share test_fraction of them goes to its test set, the rest into its data stream
        for m in range(members):
            if m >= len(self.selections):
                self.selections.append(AdaptiveSelection((), self.settings))
                self.test_ids.append(set())
            known = set(self.selections[m].ids) | self.test_ids[m]
            new = [i for i in self.ids if i not in known]
            n_test = int(round(self.config["test_fraction"] * len(new)))
            picked = set(self.rngs[m].choice(len(new), size=n_test, replace=False).tolist()) if n_test else set()
            self.test_ids[m] |= {new[k] for k in picked}
            self.selections[m].add([i for k, i in enumerate(new) if k not in picked])
            present = set(self.ids)
            self.selections[m].remove([i for i in self.selections[m].ids if i not in present])
            if m >= len(self.first_test_ids):
                self.first_test_ids.append(set(self.test_ids[m]))

    def _restore(self, previous: dict) -> None:
        self.epoch = int(previous["epoch"])
        state = self.model.training_state
        for m, member in enumerate(previous["members"]):
            self.rngs[m].bit_generator.state = member["rng"]
            self.test_ids.append(set(member["test"]))
            # models trained before the first test sets were recorded: their test sets at this point
            self.first_test_ids.append(set(member.get("first_test", member["test"])))
            self.selections.append(
                AdaptiveSelection.from_state(
                    {
                        "ids": member["selection_ids"],
                        "s_hist": state[f"selection.{m}.s_hist"].numpy(),
                        "l_old": state[f"selection.{m}.l_old"].numpy(),
                        "strikes": state[f"selection.{m}.strikes"].numpy(),
                        "p_good": member["p_good"],
                        "l_old_total": member["l_old_total"],
                    },
                    self.settings,
                )
            )
        before = self.model.training_config.get("config", {}).get("optimizer", "core")
        if before != self.config["optimizer"]:
            self.log(f"optimizer changed from {before} to {self.config['optimizer']}: its state starts afresh")
            return
        if self.config["optimizer"] == "ekf":
            fresh = self.optimizer.load_state_dict(state)
            if fresh:
                self.log(f"Kalman covariance block(s) {', '.join(fresh)} not in the saved state: they start afresh")
            return
        if self.config["optimizer"] != "core":
            self._restore_baseline(previous)
            return
        for k, param in enumerate(self.model.networks.parameters()):
            if f"core.{k}.step" in state:
                self.optimizer.state[param] = {
                    "step": state[f"core.{k}.step"].to(device=param.device, dtype=torch.float64),
                    **{key: state[f"core.{k}.{key}"].to(param) for key in ("g", "h", "s", "S")},
                }

    def _restore_baseline(self, previous: dict) -> None:
        state = self.model.training_state
        params = list(self.model.networks.parameters())
        saved = previous["baseline_keys"]
        for k, param in enumerate(params):
            keys = saved[k] if k < len(saved) else []  # parameters of an element added since: fresh state
            if keys:
                self.optimizer.state[param] = {key: state[f"optim.{k}.{key}"].to(param.device) for key in keys}

    def _baseline_state(self, tensors: dict) -> list:
        keys = []
        for k, param in enumerate(self.model.networks.parameters()):
            state = self.optimizer.state.get(param, {})
            keys.append(sorted(state))
            for key, value in state.items():
                tensors[f"optim.{k}.{key}"] = torch.as_tensor(value)
        return keys

    def _write_state(self) -> None:
        members, tensors = [], {}
        for m, selection in enumerate(self.selections):
            saved = selection.state()
            members.append(
                {
                    "rng": self.rngs[m].bit_generator.state,
                    "test": sorted(self.test_ids[m]),
                    "first_test": sorted(self.first_test_ids[m]),
                    "selection_ids": saved["ids"],
                    "p_good": saved["p_good"],
                    "l_old_total": saved["l_old_total"] if math.isfinite(saved["l_old_total"]) else "inf",
                }
            )
            tensors[f"selection.{m}.s_hist"] = torch.as_tensor(saved["s_hist"])
            tensors[f"selection.{m}.l_old"] = torch.as_tensor(saved["l_old"])
            tensors[f"selection.{m}.strikes"] = torch.as_tensor(saved["strikes"])
        if self.config["optimizer"] == "core":
            for k, param in enumerate(self.model.networks.parameters()):
                for key, value in self.optimizer.state.get(param, {}).items():
                    tensors[f"core.{k}.{key}"] = value
        if self.config["optimizer"] == "ekf":
            tensors.update(self.optimizer.state_dict())
        baseline_keys = self._baseline_state(tensors) if self.config["optimizer"] not in ("core", "ekf") else []
        self.model.training_state = tensors
        self.model.training_config = {
            "trainer": {"epoch": self.epoch, "members": members, "baseline_keys": baseline_keys},
            "config": self.config,
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write the model with its complete training state (atomically)."""
        self._write_state()
        return self.model.save(path)

    # -- one epoch ------------------------------------------------------------------------------

    def _choose(self, m: int) -> np.ndarray:
        selection = self.selections[m]
        n_fit = self.config["fit_per_epoch"]
        if self.config["selection"] == "random":
            count = fit_count(n_fit, len(selection.ids))
            return np.sort(self.rngs[m].choice(len(selection.ids), size=count, replace=False))
        return selection.choose(n_fit, self.rngs[m])

    def train_epoch(self) -> dict:
        """Choose every member's subsample, optimise, update the selection.

        CoRe and the torch baselines take one step on the loss of Eq. 10 of the subsample; the
        EKF updates on every conformation of it in turn (:meth:`_kalman_epoch`). The reported
        loss and the selection's loss contributions are those before the epoch's update(s).
        """
        members = self.model.members
        position = {i: k for k, i in enumerate(self.ids)}
        chosen = [self._choose(m) for m in range(members)]
        structures_of = [
            np.array([position[self.selections[m].ids[k]] for k in chosen[m]], dtype=np.int64) for m in range(members)
        ]
        if not any(len(s) for s in structures_of):
            raise RuntimeError("every conformation has been excluded by the adaptive selection")
        # every member's own subsample, packed one after the other: each member evaluates only
        # its own conformations (the cost of training the members one by one, in one batched pass)
        packed = torch.as_tensor(np.concatenate(structures_of), device=self.model.device)
        owner = torch.as_tensor(
            np.repeat(np.arange(members), [len(s) for s in structures_of]), device=self.model.device
        )
        sub = gather_structures(self.batch, packed)
        q = self.config["q"]
        kalman = {}
        if self.config["optimizer"] == "ekf":
            with torch.no_grad():
                energies, forces = (x.detach() for x in predict_packed(self.model, sub, owner))
            losses = packed_loss_eq10(energies, forces, sub, owner, members, q)
            kalman = self._kalman_epoch(structures_of, *_member_rmses(energies, forces, sub, owner, members))
        else:
            self.optimizer.zero_grad()
            energies, forces = predict_packed(self.model, sub, owner)
            losses = packed_loss_eq10(energies, forces, sub, owner, members, q)
            losses.sum().backward()
            self.optimizer.step()
        contributions = conformation_losses(energies.detach()[None], forces.detach()[None], sub, q)[0].cpu().numpy()
        bounds = np.cumsum([0] + [len(s) for s in structures_of])
        for m in range(members):
            if self.config["selection"] == "adaptive" and len(chosen[m]):
                self.selections[m].update(
                    chosen[m], contributions[bounds[m] : bounds[m + 1]], float(losses[m].detach())
                )
        self.epoch += 1
        record = {"epoch": self.epoch, "loss": losses.detach().cpu().tolist(), "fitted": [len(c) for c in chosen]}
        return {**record, **kalman}

    # -- the extended Kalman filter -------------------------------------------------------------

    def _kalman_epoch(self, structures_of: list[np.ndarray], rmse_energy: np.ndarray, rmse_forces: np.ndarray) -> dict:
        """Every member goes through its subsample in its own random order, one conformation per step.

        At step j member m observes its j-th conformation: one update on the energy per atom
        (Eq. 14), then updates on ``ekf.forces_used`` randomly chosen force components,
        ``ekf.forces_per_update`` at a time, each after a new prediction. All members are
        evaluated together on the union of their current conformations and updated with one
        batched filter step; a member with nothing left to observe takes no update.

        Adaptive updates (Tokita & Behler, Box 5 and section on training): an energy (force
        component) whose error is at most ``ekf.energy_threshold`` (``ekf.force_threshold``)
        times the member's RMSE is not used, so the criteria tighten as the fit improves. The
        RMSEs (``rmse_energy`` eV/atom, ``rmse_forces`` eV/Å, per member) are those of the
        member's subsample with the weights the previous epoch left, the epoch's estimate of
        its training RMSE. Returns the counts of used and skipped observations per member.
        """
        members = self.model.members
        self._kalman_counts = {key: np.zeros(members, dtype=np.int64) for key in _KALMAN_COUNTS}
        self._kalman_rmse = (rmse_energy, rmse_forces)
        orders = [structures_of[m][self.rngs[m].permutation(len(structures_of[m]))] for m in range(members)]
        for j in range(max(len(order) for order in orders)):
            self._kalman_step([int(order[j]) if j < len(order) else -1 for order in orders])
        return {key: value.tolist() for key, value in self._kalman_counts.items()}

    def _force_count(self, n_components: int) -> int:
        used = self.config["ekf"]["forces_used"]
        if used == 0:
            return 0
        if used < 1:
            return min(n_components, max(1, int(round(used * n_components))))
        return min(n_components, int(used))

    def _kalman_step(self, current: list[int]) -> None:
        """The filter updates of one conformation per member (``-1``: none for this member)."""
        ekf: ExtendedKalmanFilter = self.optimizer
        settings = self.config["ekf"]
        device = self.model.device
        present = sorted({s for s in current if s >= 0})
        where = {s: k for k, s in enumerate(present)}
        sub = select_structures(self.batch, torch.as_tensor(present, device=device))
        column = torch.as_tensor([where.get(s, 0) for s in current], device=device)
        active = torch.as_tensor([s >= 0 for s in current], device=device)

        # energy per atom, Eq. 14: observation E/N (in energy_unit), its Jacobian ∂(E/N)/∂w
        energies, _ = predict_batch(self.model, sub, forces=False)
        per_atom = sub.n_atoms[column] * settings["energy_unit"]
        prediction = energies.gather(1, column[:, None]) / per_atom[:, None]
        target = (sub.energy[column] / per_atom)[:, None]
        rmse_energy, rmse_forces = (torch.as_tensor(r, dtype=target.dtype, device=device) for r in self._kalman_rmse)
        # adaptive update: the error per atom (in eV) must exceed the threshold times the member's RMSE
        error = (prediction.detach() - target).abs()[:, 0] * settings["energy_unit"]
        used = active & (error > settings["energy_threshold"] * rmse_energy) if settings["energy_threshold"] else active
        self._count("energy", active, used)
        if bool(used.any()):
            ekf.observe(prediction, target, used[:, None])

        # force components: drawn per member from its own random stream, then k at a time
        k = settings["forces_per_update"]
        atoms_of = sub.n_atoms.to(torch.int64).tolist()
        first_atom = np.concatenate([[0], np.cumsum(atoms_of)[:-1]]).astype(np.int64)
        chosen: list[np.ndarray] = []
        for m, s in enumerate(current):
            if s < 0:
                chosen.append(np.zeros(0, dtype=np.int64))
                continue
            n_components = 3 * atoms_of[where[s]]
            count = self._force_count(n_components)
            picked = self.rngs[m].choice(n_components, size=count, replace=False) if count else np.zeros(0, int)
            chosen.append(3 * first_atom[where[s]] + np.asarray(picked, dtype=np.int64))
        n_updates = max((len(c) + k - 1) // k for c in chosen)
        weight = settings["length_unit"] / settings["energy_unit"]  # force components in energy_unit/length_unit
        for u in range(n_updates):
            index = np.zeros((len(current), k), dtype=np.int64)
            observed = np.zeros((len(current), k), dtype=bool)
            for m, c in enumerate(chosen):
                group = c[u * k : (u + 1) * k]
                index[m, : len(group)] = group
                observed[m, : len(group)] = True
            index_t = torch.as_tensor(index, device=device)
            _, forces = predict_batch(self.model, sub)
            prediction = forces.reshape(len(current), -1).gather(1, index_t)
            target = sub.forces.reshape(-1)[index_t]
            observed_t = torch.as_tensor(observed, device=device)
            used = observed_t
            if settings["force_threshold"]:
                error = (prediction.detach() - target).abs()
                used = used & (error > settings["force_threshold"] * rmse_forces[:, None])
            self._count("force", observed_t, used)
            if bool(used.any()):
                ekf.observe(weight * prediction, weight * target, used)

    def _count(self, kind: str, offered: torch.Tensor, used: torch.Tensor) -> None:
        offered, used = offered.reshape(offered.shape[0], -1), used.reshape(used.shape[0], -1)
        self._kalman_counts[f"ekf_{kind}_updates"] += used.sum(1).cpu().numpy()
        self._kalman_counts[f"ekf_{kind}_skipped"] += (offered & ~used).sum(1).cpu().numpy()

    # -- metrics ---------------------------------------------------------------------------------

    @torch.no_grad()
    def metrics(self) -> dict:
        """Train and test RMSE (energy per atom, force components) per member and of the ensemble."""
        energies, forces = predict_batch(self.model, self.batch)
        energies, forces = energies.detach(), forces.detach()
        b = self.batch
        energy_error = (energies - b.energy) / b.n_atoms  # (M, S)
        force_error = forces - b.forces  # (M, A, 3)
        structure = b.graph["structure"]
        result = {"members": []}
        test_union = np.zeros(len(self.ids), dtype=bool)
        first_union = np.zeros(len(self.ids), dtype=bool)
        for m in range(self.model.members):
            test = np.array([i in self.test_ids[m] for i in self.ids])
            test_union |= test
            first_union |= np.array([i in self.first_test_ids[m] for i in self.ids])
            row = {}
            for name, mask in (("train", ~test), ("test", test)):
                s = torch.as_tensor(mask, device=energies.device)
                a = s[structure]
                row[f"{name}_rmse_energy_per_atom"] = _rmse(energy_error[m, s])
                row[f"{name}_rmse_forces"] = _rmse(force_error[m, a])
            selection = self.selections[m]
            row["active"] = int(selection.active.sum())
            row["excluded"] = int((~selection.active).sum())
            row["p_good"] = selection.p_good
            result["members"].append(row)
        for key in ("test_rmse_energy_per_atom", "test_rmse_forces"):
            values = [row[key] for row in result["members"] if math.isfinite(row[key])]
            result[f"members_mean_{key}"] = float(np.mean(values)) if values else math.nan
        mean_energy = (energies.mean(0) - b.energy) / b.n_atoms
        mean_forces = forces.mean(0) - b.forces
        s = torch.as_tensor(test_union, device=energies.device)
        result["ensemble_test_rmse_energy_per_atom"] = _rmse(mean_energy[s])
        result["ensemble_test_rmse_forces"] = _rmse(mean_forces[s[structure]])
        s = torch.as_tensor(first_union, device=energies.device)
        result["ensemble_first_test_rmse_energy_per_atom"] = _rmse(mean_energy[s])
        result["ensemble_first_test_rmse_forces"] = _rmse(mean_forces[s[structure]])
        result["ensemble_all_rmse_energy_per_atom"] = _rmse(mean_energy)
        result["ensemble_all_rmse_forces"] = _rmse(mean_forces)
        return result

    # -- the run -----------------------------------------------------------------------------------

    def run(
        self,
        epochs: int,
        out: str | os.PathLike,
        metrics_path: str | os.PathLike | None = None,
        progress: TrainingProgress | None = None,
    ) -> dict:
        """Train ``epochs`` more epochs; metrics as JSON lines; checkpoints into ``out``.

        ``progress``: where the run reports its progress (default: a bar on a terminal, a line
        every 30 s otherwise, on stderr).
        """
        every, save_every = self.config["metrics_every"], self.config["checkpoint_every"]
        last = self.epoch + epochs
        metrics = None
        handle = open(metrics_path, "a", encoding="utf-8") if metrics_path else None
        progress = progress if progress is not None else TrainingProgress(epochs, start_epoch=self.epoch)
        try:
            for _ in range(epochs):
                record = self.train_epoch()
                evaluated = self.epoch % every == 0 or self.epoch == last
                if evaluated:
                    metrics = self.metrics()
                    record.update(metrics)
                progress.update(self.epoch, metrics if evaluated else None)
                if handle:
                    handle.write(json.dumps(record) + "\n")
                    handle.flush()
                if self.epoch % save_every == 0 or self.epoch == last:
                    self._finish_metrics(metrics)
                    self.save(out)
        finally:
            progress.close()
            if handle:
                handle.close()
        if epochs == 0:
            self.save(out)
        return metrics or {}

    def _finish_metrics(self, metrics: dict | None) -> None:
        self.record_test_rmses(metrics)

    def record_test_rmses(self, metrics: dict | None) -> None:
        """Set the model's RMSE floor (Eq. 23) from ``metrics``: the mean of the members' own test RMSEs.

        The first-session test RMSEs are recorded too (ensemble mean over those sets, for
        comparing versions).
        """
        if metrics:
            self.model.set_test_rmses(
                [row["test_rmse_energy_per_atom"] for row in metrics["members"]],
                [row["test_rmse_forces"] for row in metrics["members"]],
            )
            first = (metrics["ensemble_first_test_rmse_energy_per_atom"], metrics["ensemble_first_test_rmse_forces"])
            finite = all(math.isfinite(v) for v in first)
            self.model.first_test_rmse_energy_per_atom, self.model.first_test_rmse_forces = (
                first if finite else (None, None)
            )
