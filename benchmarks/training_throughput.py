"""Training-step throughput with forces: 1 member, 10 stacked members, 10 members one after another.

    python benchmarks/training_throughput.py [--subsample-only] [--device cuda]

One step = energies and forces of a batch of SN2 conformations for every member, the loss of
Eq. 10, its gradient and a CoRe update (paper networks 102-61-44, float64). The descriptor
Jacobians are prepared once, as in a training run. The three variants are timed in
alternation in one process. Results: benchmarks/results/training_throughput.json.

Second study (``subsample``): one epoch step as the trainer takes it, where every member fits
its own random 10 % of the 899 SN2 conformations (the paper's N_fit): the members packed
(each evaluates only its own conformations, :func:`predict_packed`, what ``Trainer`` does now)
against all members evaluated on the union of the subsamples with a mask (what it did before)
and against 10 one-member models one after another.

``--device cuda`` runs everything on the GPU; results in ``training_throughput_cuda.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from structures import SN2_ELEMENTS, sn2_conformations  # noqa: E402
from timing import interleaved_medians  # noqa: E402

from aiida_lmlp.potential import Ensemble  # noqa: E402
from aiida_lmlp.potential.training.batches import (  # noqa: E402
    gather_structures,
    loss_eq10,
    masked_loss_eq10,
    packed_loss_eq10,
    predict_batch,
    predict_packed,
    prepare_batch,
    select_structures,
)
from aiida_lmlp.potential.training.paper_core import PaperCoRe, core_parameter_groups  # noqa: E402


def trainer(members: int, structures, seed: int, device: str = "cpu"):
    model = Ensemble.new(SN2_ELEMENTS, members=members, seed=seed).to(device)
    model.initialize_standardization(structures)
    batch = prepare_batch(model, structures)
    optimizer = PaperCoRe(core_parameter_groups(model.networks))

    def step():
        optimizer.zero_grad()
        loss_eq10(*predict_batch(model, batch), batch).sum().backward()
        optimizer.step()

    return step


def subsample(members: int = 10, fraction: float = 0.1, rounds: int = 5, device: str = "cpu") -> dict:
    """One epoch step with a per-member random subsample: packed vs union + mask vs one after another."""
    structures = sn2_conformations()
    n_fit = int(round(fraction * len(structures)))
    generator = torch.Generator().manual_seed(0)
    own = [torch.randperm(len(structures), generator=generator)[:n_fit].sort().values for _ in range(members)]
    own = [index.to(device) for index in own]
    model = Ensemble.new(SN2_ELEMENTS, members=members, seed=0).to(device)
    model.initialize_standardization(structures)
    full = prepare_batch(model, structures)
    optimizer = PaperCoRe(core_parameter_groups(model.networks))
    singles = []
    for m in range(members):
        single = Ensemble.new(SN2_ELEMENTS, members=1, seed=0, member_offset=m).to(device)
        single.initialize_standardization(structures)
        singles.append((single, PaperCoRe(core_parameter_groups(single.networks))))
    owner = torch.repeat_interleave(torch.arange(members, device=device), n_fit)

    def packed():
        optimizer.zero_grad()
        sub = gather_structures(full, torch.cat(own))
        energies, forces = predict_packed(model, sub, owner)
        packed_loss_eq10(energies, forces, sub, owner, members).sum().backward()
        optimizer.step()

    def union():
        optimizer.zero_grad()
        union = torch.unique(torch.cat(own))
        where = torch.full((len(structures),), -1, dtype=torch.long, device=device)
        where[union] = torch.arange(len(union), device=device)
        mask = torch.zeros(members, len(union), dtype=torch.bool, device=device)
        for m in range(members):
            mask[m, where[own[m]]] = True
        sub = select_structures(full, union)
        masked_loss_eq10(*predict_batch(model, sub), sub, mask).sum().backward()
        optimizer.step()

    def one_after_another():
        for m, (single, single_optimizer) in enumerate(singles):
            single_optimizer.zero_grad()
            sub = select_structures(full, own[m])
            loss_eq10(*predict_batch(single, sub), sub).sum().backward()
            single_optimizer.step()

    union_size = len(torch.unique(torch.cat(own)))
    seconds = interleaved_medians(
        {
            f"{members} members packed (each its own subsample)": packed,
            f"{members} members on the union of the subsamples, masked (before)": union,
            f"{members} one-member models one after another": one_after_another,
        },
        rounds,
    )
    names = list(seconds)
    return {
        "conformations": len(structures),
        "fit_per_member": n_fit,
        "union_of_subsamples": union_size,
        "seconds_per_step": seconds,
        "speed-up packed vs union": seconds[names[1]] / seconds[names[0]],
        "speed-up packed vs one after another": seconds[names[2]] / seconds[names[0]],
    }


def packed_trainer(members: int, structures, seed: int, device: str = "cpu"):
    """Every member on all ``structures`` through the packed path (each structure once per member)."""
    model = Ensemble.new(SN2_ELEMENTS, members=members, seed=seed).to(device)
    model.initialize_standardization(structures)
    batch = gather_structures(prepare_batch(model, structures), torch.arange(len(structures)).repeat(members))
    owner = torch.repeat_interleave(torch.arange(members, device=device), len(structures))
    optimizer = PaperCoRe(core_parameter_groups(model.networks))

    def step():
        optimizer.zero_grad()
        packed_loss_eq10(*predict_packed(model, batch, owner), batch, owner, members).sum().backward()
        optimizer.step()

    return step


def main(n_structures: int = 90, rounds: int = 5, device: str = "cpu"):
    structures = sn2_conformations()[:n_structures]
    one = trainer(1, structures, 0, device)
    stacked = trainer(10, structures, 0, device)
    packed = packed_trainer(10, structures, 0, device)
    singles = [trainer(1, structures, seed, device) for seed in range(10)]
    variants = {
        "1 member": one,
        "10 members stacked": stacked,
        "10 members packed": packed,
        "10 members one after another": lambda: [s() for s in singles],
    }
    medians = interleaved_medians(variants, rounds)
    rows = {}
    for name, seconds in medians.items():
        members = 1 if name == "1 member" else 10
        rows[name] = {"seconds_per_step": seconds, "member_conformations_per_s": members * n_structures / seconds}
    for variant in ("stacked", "packed"):
        rows[f"speed-up {variant} vs one after another"] = (
            medians["10 members one after another"] / medians[f"10 members {variant}"]
        )
    result = {
        "conformations": n_structures,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "rows": rows,
        "subsample": subsample(rounds=rounds, device=device),
    }
    print(json.dumps(result, indent=1))
    suffix = "" if device == "cpu" else f"_{device}"
    (HERE / "results" / f"training_throughput{suffix}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsample-only", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--conformations", type=int, default=90, help="batch of the first study")
    args = parser.parse_args()
    if args.subsample_only:
        print(json.dumps(subsample(device=args.device), indent=1))
    else:
        main(args.conformations, device=args.device)
