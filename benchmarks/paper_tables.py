"""The paper's tables at its full protocol: Table 4 (optimisers), Table 3 (eeACSF vs ACSF), data reduction (Fig. 3).

    python benchmarks/paper_tables.py --study table4 --seeds 0 1                 # CoRe, Adam, RPROP, SGD
    python benchmarks/paper_tables.py --study table4 --optimizers core --seeds 0 --time-epochs 5   # cost estimate
    python benchmarks/paper_tables.py --study table3 --seeds 0 1                 # eeACSF vs ACSF, CoRe
    python benchmarks/paper_tables.py --summary                                  # tables from the results so far

Protocol (Eckhoff & Reiher 2023, section 3): 10 members of 102-61-44 networks, float64, 2000
epochs (RPROP 1500), 10 % of the training conformations fitted per epoch with the lifelong
adaptive data selection, loss Eq. 10 with q = 10.9, every member its own 90/10 train/test split,
energies referenced to the free atoms (``free_atoms.json``), conformations with a force component
above 15 eV/Å skipped; new models start as ``lmlp train`` starts them (standardisation from the
data, output biases at the least-squares offset). Data: ``pool_a`` trains (the members' splits
are drawn from it), ``pool_b`` (force-capped alike) is a common hold-out set no member trains on.

Every run writes ``benchmarks/results/paper_tables/<run>.json`` after every block of epochs
(``--block``, default 10): the learning curves (members' own train/test RMSEs, the ensemble on
the union of the test sets, on all training data and on the hold-out), the selection counts per
member, timing, machine and command. A run killed at any point resumes from its last block: the
model with its complete training state is checkpointed in ``--checkpoints`` (default
``~/.cache/aiida-lmlp-benchmarks``; not part of the repository, about 80 MB per run), and the
JSON file is extended. With ``--selection-log`` (on for CoRe by default) every application of
Algorithm 2 is recorded per conformation and member (epoch, L_rel, S_hist before and after,
exclusion strikes) in ``<checkpoints>/<run>.selection/<first>-<last>.npz``, one file per block,
and the JSON gets per-epoch counts of S_hist resets (to 1 from below or above), exclusions and
active conformations. At the end the calibration of Eq. 23 on the hold-out set is recorded:
the fraction of energies and force components whose error is within ΔE, ΔF at c = 2.

Runs never use more than ``--threads`` torch threads (default 1) so that several can share a
machine; start long ones with ``nohup nice -n 10 ... &``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "paper_tables"
sys.path.insert(0, str(HERE))
from timing import cpu_model  # noqa: E402

from aiida_lmlp.formats.labels import conformation_id, reference_label  # noqa: E402
from aiida_lmlp.formats.training_config import default_config, merge_config  # noqa: E402
from aiida_lmlp.potential import ACSF, EeACSF, Ensemble  # noqa: E402
from aiida_lmlp.potential.training.adaptive_selection import AdaptiveSelection  # noqa: E402
from aiida_lmlp.potential.training.trainer import Trainer, filter_training_data  # noqa: E402

PAPER_HIDDEN = [102, 61, 44]
EPOCHS = {"core": 2000, "adam": 2000, "sgd": 2000, "rprop": 1500}
#: The paper's numbers (Table 4: individual test RMSE, ensemble RMSE; meV/atom, meV/Å).
PAPER_TABLE4 = {
    "individual_test": {"sgd": (37, 557), "rprop": (10.0, 205), "adam": (6.4, 127), "core": (4.5, 116)},
    "ensemble": {"sgd": (33, 529), "rprop": (6.8, 131), "adam": (3.9, 95), "core": (2.6, 64)},
}


def default_data() -> Path:
    """The SN2 data: in the repository once moved there, else the shared copy."""
    for candidate in (ROOT / "workflows" / "data" / "sn2", ROOT.parent / "shared" / "data" / "sn2"):
        if (candidate / "pool_a.extxyz").exists():
            return candidate
    return ROOT.parent / "shared" / "data" / "sn2"


def load_data(folder: Path, force_cap: float = 15.0):
    """Training pool (pool_a), common hold-out (pool_b within the force cap) and free-atom energies."""
    from ase.io import read

    pool = read(folder / "pool_a.extxyz", ":")
    references = json.loads((folder / "free_atoms.json").read_text())
    elements = sorted({s for a in pool for s in a.get_chemical_symbols()})
    holdout, _, report = filter_training_data(read(folder / "pool_b.extxyz", ":"), elements, force_cap)
    pool_ids = {conformation_id(a) for a in pool}
    holdout = [a for a in holdout if conformation_id(a) not in pool_ids]
    return pool, holdout, references, report


class SelectionLog:
    """Records every application of Algorithm 2 by wrapping the members' :meth:`AdaptiveSelection.update`."""

    def __init__(self, trainer: Trainer, position: dict[str, int], enabled: bool):
        self.trainer = trainer
        self.position = position
        self.enabled = enabled
        self.rows: list[np.ndarray] = []
        self.counts: list[dict] = []
        for m, selection in enumerate(trainer.selections):
            selection.update = self._wrap(m, selection)

    def _wrap(self, member: int, selection: AdaptiveSelection):
        original = selection.update

        def update(fitted, l_new, l_new_total):
            before = selection.s_hist[fitted].copy()
            original(fitted, l_new, l_new_total)
            after = selection.s_hist[fitted]
            rel = np.asarray(l_new, dtype=np.float64) / l_new_total
            epoch = self.trainer.epoch + 1  # the trainer counts the epoch after the update
            self.counts.append(
                {
                    "epoch": epoch,
                    "member": member,
                    "fitted": int(len(fitted)),
                    "reset_up": int(((before < 1) & (after == 1)).sum()),
                    "reset_down": int(((before > 1) & (after == 1)).sum()),
                    "excluded_now": int(((before > 0) & (after == 0)).sum()),
                    "active": int(selection.active.sum()),
                    "p_good": selection.p_good,
                }
            )
            if self.enabled:
                index = np.array([self.position[selection.ids[k]] for k in fitted], dtype=np.float64)
                strikes = selection.strikes[fitted].astype(np.float64)
                block = np.stack(
                    [
                        np.full(len(fitted), epoch, float),
                        np.full(len(fitted), member, float),
                        index,
                        rel,
                        before,
                        after,
                        strikes,
                    ],
                    axis=1,
                )
                self.rows.append(block)

        return update

    def flush(self, folder: Path) -> dict:
        """Write the rows since the last flush (one npz per block); return and clear the per-epoch counts."""
        counts = self.counts
        self.counts = []
        if self.enabled and self.rows:
            rows = np.concatenate(self.rows)
            self.rows = []
            folder.mkdir(parents=True, exist_ok=True)
            first, last = int(rows[0, 0]), int(rows[-1, 0])
            np.savez_compressed(
                folder / f"{first:05d}-{last:05d}.npz",
                rows=rows,
                columns=np.array(["epoch", "member", "conformation", "L_rel", "S_before", "S_after", "strikes"]),
            )
        return _per_epoch(counts)


def _per_epoch(counts: list[dict]) -> list[dict]:
    epochs: dict[int, dict] = {}
    for row in counts:
        entry = epochs.setdefault(row["epoch"], {"epoch": row["epoch"], "members": {}})
        entry["members"][row["member"]] = {k: v for k, v in row.items() if k not in ("epoch", "member")}
    result = []
    for epoch in sorted(epochs):
        members = [epochs[epoch]["members"][m] for m in sorted(epochs[epoch]["members"])]
        result.append({"epoch": epoch, **{key: [m[key] for m in members] for key in members[0]}})
    return result


def holdout_metrics(model: Ensemble, holdout, chunk: int = 200) -> dict:
    """Ensemble and per-member RMSEs on the hold-out set, and the calibration of Eq. 23 at the model's c."""
    energy, energy_members, energy_unc, forces, forces_members, forces_unc = [], [], [], [], [], []
    for start in range(0, len(holdout), chunk):
        part = holdout[start : start + chunk]
        p = model.evaluate(part)
        energy.append(p.energy)
        energy_members.append(p.energy_members)
        energy_unc.append(p.energy_uncertainty)
        forces.append(p.forces)
        forces_members.append(p.forces_members)
        forces_unc.append(p.forces_uncertainty)
    n_atoms = np.array([len(a) for a in holdout], dtype=float)
    labels = np.array([reference_label(a, "energy") for a in holdout])
    label_forces = np.concatenate([np.asarray(reference_label(a, "forces")) for a in holdout])
    e_err = np.concatenate(energy) - labels
    f_err = np.concatenate(forces) - label_forces
    e_members = (np.concatenate(energy_members, axis=1) - labels) / n_atoms
    f_members = np.concatenate(forces_members, axis=1) - label_forces
    rms = lambda x, axis=None: np.sqrt(np.mean(np.square(x), axis=axis))  # noqa: E731
    return {
        "holdout_rmse_energy_per_atom": float(rms(e_err / n_atoms)),
        "holdout_rmse_forces": float(rms(f_err)),
        "holdout_member_rmse_energy_per_atom": rms(e_members, axis=1).tolist(),
        "holdout_member_rmse_forces": rms(f_members.reshape(model.members, -1), axis=1).tolist(),
        "holdout_energy_within_uncertainty": float(np.mean(np.abs(e_err) <= np.concatenate(energy_unc))),
        "holdout_forces_within_uncertainty": float(np.mean(np.abs(f_err) <= np.concatenate(forces_unc))),
        "holdout_conformations": len(holdout),
    }


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    os.replace(tmp, path)


def run_one(args, study: str, variant: str, optimizer: str, seed: int, data) -> Path:
    """One training run of ``args.members`` members, resumed from its checkpoint when there is one."""
    pool, holdout, references, holdout_report = data
    epochs = args.epochs or EPOCHS[optimizer]
    name = f"{study}_{variant}_seed{seed}" + (f"_{args.tag}" if args.tag else "")
    if args.time_epochs:
        name += "_timing"
    out = RESULTS / f"{name}.json"
    checkpoints = Path(args.checkpoints).expanduser()
    checkpoints.mkdir(parents=True, exist_ok=True)
    model_path = checkpoints / f"{name}.lmlp"
    elements = sorted({s for a in pool for s in a.get_chemical_symbols()})
    override = {
        "members": args.members,
        "seed": seed,
        "optimizer": optimizer,
        "dtype": "float64",
        "hidden": PAPER_HIDDEN,
        "metrics_every": args.block,
        "checkpoint_every": args.block,
        "reference_energies": {e: references[e] for e in elements},
        "standardization": args.standardization,
        "output_offset": not args.no_output_offset,
        "device": "cpu",
    }
    if args.core_smax is not None:
        override["core"] = {"step_sizes": [1.0e-6, args.core_smax]}
    config = merge_config(default_config(), override)
    log_lines: list[str] = []
    log = log_lines.append
    if out.exists() and json.loads(out.read_text()).get("finished"):
        print(f"{name}: finished before", flush=True)
        return out
    if model_path.exists() and out.exists():
        model = Ensemble.load(model_path)
        payload = json.loads(out.read_text())
    else:
        descriptor = EeACSF.from_paper(elements)
        if variant.startswith("acsf"):
            descriptor = ACSF.like(descriptor)
        model = Ensemble.new(
            elements,
            descriptor,
            members=args.members,
            hidden=tuple(PAPER_HIDDEN),
            reference_energies=config["reference_energies"],
            seed=seed,
            dtype=torch.float64,
            standardization=args.standardization,
        )
        model.initialize_standardization(pool)
        if config["output_offset"]:
            usable = [a for a in pool if np.isfinite(reference_label(a, "energy"))]
            model.initialize_output_offset(usable, [reference_label(a, "energy") for a in usable])
        payload = {
            "run": name,
            "study": study,
            "variant": variant,
            "optimizer": optimizer,
            "seed": seed,
            "members": args.members,
            "epochs_planned": epochs,
            "descriptor": {"kind": model.descriptor.kind, "length": len(model.descriptor)},
            "config": config,
            "data": {
                "folder": str(args.data),
                "pool": len(pool),
                "holdout": len(holdout),
                "holdout_filter": holdout_report.summary(),
            },
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
            "torch": {"version": torch.__version__, "threads": args.threads},
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "curves": [],
            "selection": [],
            "seconds_training": 0.0,
            "finished": False,
        }
    trainer = Trainer(model, pool, config, log=log)
    payload["data"]["report"] = trainer.report.summary()
    position = {i: k for k, i in enumerate(trainer.ids)}
    selection_log = SelectionLog(
        trainer, position, args.selection_log or (optimizer == "core" and not args.no_selection_log)
    )
    if "conformation_ids" not in payload:
        payload["conformation_ids"] = trainer.ids  # the row numbers of the selection log
    metrics_path = checkpoints / f"{name}.metrics.jsonl"
    while trainer.epoch < epochs:
        block = args.time_epochs or min(args.block, epochs - trainer.epoch)
        start = time.perf_counter()
        try:
            metrics = trainer.run(block, model_path, metrics_path)
        except (FloatingPointError, ValueError, RuntimeError) as error:  # a diverged run: recorded, the next starts
            payload["diverged"] = {"epoch": trainer.epoch, "error": f"{type(error).__name__}: {error}"}
            payload["finished"] = True
            _write_json(out, payload)
            print(f"{name}: stopped at epoch {trainer.epoch}: {payload['diverged']['error']}", flush=True)
            return out
        seconds = time.perf_counter() - start
        evaluation_start = time.perf_counter()
        row = {
            "epoch": trainer.epoch,
            "seconds_block": seconds,
            "members_train_rmse_energy_per_atom": [m["train_rmse_energy_per_atom"] for m in metrics["members"]],
            "members_test_rmse_energy_per_atom": [m["test_rmse_energy_per_atom"] for m in metrics["members"]],
            "members_train_rmse_forces": [m["train_rmse_forces"] for m in metrics["members"]],
            "members_test_rmse_forces": [m["test_rmse_forces"] for m in metrics["members"]],
            "active": [m["active"] for m in metrics["members"]],
            "excluded": [m["excluded"] for m in metrics["members"]],
            **{k: v for k, v in metrics.items() if k.startswith("ensemble_") or k.startswith("members_mean")},
            **holdout_metrics(model, holdout),
        }
        row["seconds_evaluation"] = time.perf_counter() - evaluation_start
        payload["curves"].append(row)
        payload["selection"].extend(selection_log.flush(checkpoints / f"{name}.selection"))
        payload["seconds_training"] += seconds
        payload["seconds_per_epoch"] = payload["seconds_training"] / max(trainer.epoch, 1)
        payload["finished"] = trainer.epoch >= epochs
        payload["log"] = log_lines[-20:]
        if not math.isfinite(row["holdout_rmse_energy_per_atom"]) or row["holdout_rmse_energy_per_atom"] > 1e3:
            payload["diverged"] = {
                "epoch": trainer.epoch,
                "error": "hold-out energy RMSE above 1 keV/atom or not finite",
            }
            payload["finished"] = True
        if args.time_epochs:
            per_epoch = seconds / block
            total = per_epoch * epochs + row["seconds_evaluation"] * epochs / args.block
            print(
                f"{name}: {block} epochs in {seconds:.1f} s ({per_epoch:.2f} s/epoch), one evaluation "
                f"{row['seconds_evaluation']:.1f} s; {epochs} epochs with an evaluation every {args.block}: "
                f"about {total / 3600:.2f} h",
                flush=True,
            )
            for path in (model_path, metrics_path):
                path.unlink(missing_ok=True)
            shutil.rmtree(checkpoints / f"{name}.selection", ignore_errors=True)
            return out
        _write_json(out, payload)
        if "diverged" in payload:
            print(f"{name}: diverged by epoch {trainer.epoch}", flush=True)
            return out
        holdout_e, holdout_f = 1000 * row["holdout_rmse_energy_per_atom"], 1000 * row["holdout_rmse_forces"]
        own = 1000 * row["members_mean_test_rmse_energy_per_atom"]
        print(
            f"{name}: epoch {trainer.epoch}/{epochs}, hold-out {holdout_e:.2f} meV/atom {holdout_f:.0f} meV/Å, "
            f"own test {own:.2f} meV/atom, active {np.mean(row['active']):.0f}, {seconds / block:.2f} s/epoch",
            flush=True,
        )
    payload["finished"] = True
    payload["ended"] = datetime.datetime.now().isoformat(timespec="seconds")
    _write_json(out, payload)
    return out


def summary() -> str:
    """Table 4 (and 3) from the finished runs: mean ± standard deviation over seeds, beside the paper."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = []
    by_variant: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        tag = run["run"].split(f"seed{run['seed']}", 1)[-1].lstrip("_")
        by_variant.setdefault((run["study"], run["variant"] + (f" [{tag}]" if tag else "")), []).append(run)
    for (study, variant), group in sorted(by_variant.items()):
        last = [r["curves"][-1] for r in group if r["curves"]]
        if not last:
            continue
        done = sum(r["finished"] for r in group)
        for run in group:
            if "diverged" in run:
                lines.append(f"{study} {variant} seed {run['seed']}: diverged by epoch {run['diverged']['epoch']}")
        last = [r["curves"][-1] for r in group if r["curves"] and "diverged" not in r]
        if not last:
            continue
        epochs = [r["curves"][-1]["epoch"] for r in group]

        def stat(key, scale=1000.0, member=False, last=last):
            values = [np.mean(row[key]) if member else row[key] for row in last]
            return f"{scale * np.mean(values):.1f} ± {scale * np.std(values):.1f}"

        lines.append(
            f"{study} {variant}: {len(group)} seeds ({done} finished, epochs {epochs}); "
            f"members' own test {stat('members_test_rmse_energy_per_atom', member=True)} meV/atom, "
            f"{stat('members_test_rmse_forces', member=True)} meV/Å; ensemble on hold-out "
            f"{stat('holdout_rmse_energy_per_atom')} meV/atom, {stat('holdout_rmse_forces')} meV/Å; "
            f"ensemble on the union of test sets {stat('ensemble_test_rmse_energy_per_atom')} meV/atom; "
            f"active {np.mean([np.mean(row['active']) for row in last]):.0f}"
        )
    return "\n".join(lines)


def reduction(name: str, checkpoints: Path, every: int = 100) -> str:
    """The data reduction of one run (paper Fig. 3): active share, S_hist resets and exclusions per window,
    test-RMSE spikes with the resets around them, and per conformation how often S_hist was reset."""
    run = json.loads((RESULTS / f"{name}.json").read_text())
    counts = {row["epoch"]: row for row in run["selection"]}
    pool = len(run["conformation_ids"])
    lines = [
        f"{name}: {run['curves'][-1]['epoch']} epochs, {pool} conformations (each member's training share of them)"
    ]
    lines.append("epochs      active/member  resets up  resets down  excluded  (sums over members per window)")
    last = max(counts) if counts else 0
    for start in range(1, last + 1, every):
        window = [counts[e] for e in range(start, min(start + every, last + 1)) if e in counts]
        if not window:
            continue
        lines.append(
            f"{start:5d}-{start + len(window) - 1:<5d} {np.mean(window[-1]['active']):8.1f}  "
            f"{sum(sum(r['reset_up']) for r in window):9d}  {sum(sum(r['reset_down']) for r in window):11d}  "
            f"{sum(sum(r['excluded_now']) for r in window):8d}"
        )
    test = np.array([row["members_mean_test_rmse_energy_per_atom"] for row in run["curves"]])
    epochs = np.array([row["epoch"] for row in run["curves"]])
    for k in range(5, len(test)):
        reference = np.median(test[max(0, k - 10) : k])
        if test[k] > 1.3 * reference:
            around = [counts[e] for e in range(epochs[k] - 9, epochs[k] + 1) if e in counts]
            up, down, out = (sum(sum(r[key]) for r in around) for key in ("reset_up", "reset_down", "excluded_now"))
            lines.append(
                f"spike at epoch {epochs[k]}: members' test RMSE {1000 * test[k]:.2f} vs {1000 * reference:.2f} "
                f"meV/atom; in its 10 epochs {up} resets up, {down} down, {out} excluded"
            )
    folder = checkpoints / f"{name}.selection"
    parts = sorted(folder.glob("*.npz"))
    if parts:
        rows = np.concatenate([np.load(path)["rows"] for path in parts])
        up = (rows[:, 4] < 1) & (rows[:, 5] == 1)
        down = (rows[:, 4] > 1) & (rows[:, 5] == 1)
        per_conformation = np.bincount(rows[up | down, 2].astype(int), minlength=pool)
        excluded = (rows[:, 4] > 0) & (rows[:, 5] == 0)
        lines.append(
            f"per conformation and member: {rows.shape[0]} applications of Algorithm 2, {int(up.sum())} resets up, "
            f"{int(down.sum())} down, {int(excluded.sum())} exclusions; resets per conformation: median "
            f"{np.median(per_conformation):.0f}, max {per_conformation.max()}; L_rel median "
            f"{np.median(rows[:, 3]):.2f}, share of L_rel >= T1 (0.81, a reset to S >= 1) "
            f"{np.mean(rows[:, 3] >= 0.81):.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=("table4", "table3"), default="table4")
    parser.add_argument("--optimizers", nargs="+", default=["core", "adam", "rprop", "sgd"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--epochs", type=int, help="override the paper's epochs (2000, RPROP 1500)")
    parser.add_argument("--block", type=int, default=10, help="epochs between evaluations and checkpoints")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--standardization", choices=("relative", "paper"), default="relative")
    parser.add_argument("--no-output-offset", action="store_true")
    parser.add_argument("--core-smax", type=float, help="CoRe's largest step size s_max (paper: 1)")
    parser.add_argument("--tag", default="", help="suffix of the run names (variants of the protocol)")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument(
        "--checkpoints", default=os.environ.get("LMLP_BENCH_CHECKPOINTS", "~/.cache/aiida-lmlp-benchmarks")
    )
    parser.add_argument(
        "--selection-log", action="store_true", help="log Algorithm 2 per conformation for every optimiser"
    )
    parser.add_argument("--no-selection-log", action="store_true")
    parser.add_argument("--time-epochs", type=int, help="time this many epochs of the first run and stop")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--reduction", metavar="RUN", help="the data-reduction analysis of a run (its name)")
    args = parser.parse_args()
    if args.summary:
        print(summary())
        return
    if args.reduction:
        print(reduction(args.reduction, Path(args.checkpoints).expanduser()))
        return
    torch.set_num_threads(args.threads)
    data = load_data(args.data)
    print(f"data: {len(data[0])} training pool, {len(data[1])} hold-out ({data[3].summary()})", flush=True)
    plan = []
    if args.study == "table4":
        plan = [(opt, opt) for opt in args.optimizers]
    else:
        plan = [("eeacsf", "core"), ("acsf", "core")]
    for seed in args.seeds:
        for variant, optimizer in plan:
            run_one(args, args.study, variant, optimizer, seed, data)
            if args.time_epochs:
                return


if __name__ == "__main__":
    main()
