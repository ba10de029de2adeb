"""Training-step throughput with forces: 1 member, 10 stacked members, 10 members one after another.

    python benchmarks/training_throughput.py

One step = energies and forces of a batch of SN2 conformations for every member, the loss of
Eq. 10, its gradient and a CoRe update (paper networks 102-61-44, float64). The descriptor
Jacobians are prepared once, as in a training run. The three variants are timed in
alternation in one process. Results: benchmarks/results/training_throughput.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from structures import SN2_ELEMENTS, sn2_conformations  # noqa: E402

from aiida_lmlp.potential import Ensemble  # noqa: E402
from aiida_lmlp.potential.paper_core import PaperCoRe, core_parameter_groups  # noqa: E402
from aiida_lmlp.potential.training_batch import loss_eq10, predict_batch, prepare_batch  # noqa: E402


def trainer(members: int, structures, seed: int):
    model = Ensemble.new(SN2_ELEMENTS, members=members, seed=seed)
    model.initialize_standardization(structures)
    batch = prepare_batch(model, structures)
    optimizer = PaperCoRe(core_parameter_groups(model.networks))

    def step():
        optimizer.zero_grad()
        loss_eq10(*predict_batch(model, batch), batch).sum().backward()
        optimizer.step()

    return step


def main(n_structures: int = 90, rounds: int = 5):
    structures = sn2_conformations()[:n_structures]
    one = trainer(1, structures, 0)
    stacked = trainer(10, structures, 0)
    singles = [trainer(1, structures, seed) for seed in range(10)]
    variants = {
        "1 member": one,
        "10 members stacked": stacked,
        "10 members one after another": lambda: [s() for s in singles],
    }
    samples = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    rows = {}
    for name, values in samples.items():
        seconds = statistics.median(values)
        members = 1 if name == "1 member" else 10
        rows[name] = {"seconds_per_step": seconds, "member_conformations_per_s": members * n_structures / seconds}
    rows["speed-up stacked vs one after another"] = samples and statistics.median(
        samples["10 members one after another"]
    ) / statistics.median(samples["10 members stacked"])
    result = {
        "conformations": n_structures,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    (HERE / "results" / "training_throughput.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
