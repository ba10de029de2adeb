"""Exploration cost: trajectories in lockstep with batched evaluations vs one structure per evaluation.

    python benchmarks/exploration_lockstep.py [--steps 50] [--rounds 3] [--members 10]

Langevin MD (ASE's integrator, 0.5 fs) from 10 SN2 start conformations with the paper's
ensemble (10 members, 102-61-44 networks, eeACSF at 12 Å, float64), as ``lmlp explore`` runs
it in a campaign, with 1 and with 5 replicas per start (10 and 50 trajectories). Both variants
run the same code (:func:`aiida_lmlp.potential.exploration.explore`); ``batch_atoms=1``
evaluates every structure on its own, which is what running the trajectories one after
another costs (except that the recorded frames' fingerprints are still batched there, so that
variant is, if anything, too fast). A fifth variant runs the batched 5-replica exploration with ASE's own
``Calculator.check_state`` instead of ``LmlpCalculator``'s (the same answer in fewer NumPy calls).
The networks are untrained (standardised on the SN2 data, last layer scaled by 1/100, at
50 K: weak forces, so that no trajectory runs into the minimum-distance check): the cost of a
step does not depend on the weights, and no uncertainty stop is set, so every trajectory runs
all its steps (the script checks it). Timed in alternation, medians of ``--rounds``.

Results: ``benchmarks/results/exploration_lockstep.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scratch_profile import RESULTS, write_result  # noqa: E402
from structures import SN2_ELEMENTS, sn2_conformations  # noqa: E402
from timing import interleaved_medians  # noqa: E402

from aiida_lmlp.potential import EeACSF, Ensemble  # noqa: E402
from aiida_lmlp.potential.exploration import explore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "exploration_lockstep.json")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    pool = sn2_conformations()
    starts = pool[:: len(pool) // args.starts][: args.starts]
    model = Ensemble.new(SN2_ELEMENTS, EeACSF.from_paper(SN2_ELEMENTS, cutoff=12.0), members=args.members, seed=0)
    model.initialize_standardization(pool[:200])
    with torch.no_grad():  # weak untrained forces: no trajectory runs into the minimum-distance check
        for network in model.networks.networks.values():
            network.weights[-1].mul_(0.01)
    protocol = {"kind": "md", "temperature": 50, "timestep": 0.5, "steps": args.steps, "sample_every": 10}
    variants, runs = {}, {}
    for replicas in (1, 5):
        for name, batch_atoms in (("one structure per evaluation", 1), ("lockstep, batched", None)):
            key = f"{replicas} replica(s), {name}"

            def run(key=key, replicas=replicas, batch_atoms=batch_atoms):
                runs[key] = explore(model, starts, {**protocol, "replicas": replicas}, batch_atoms=batch_atoms)

            variants[key] = run

    def with_ases_check_state():
        """The 5-replica lockstep run with ASE's own ``Calculator.check_state`` (numpy.allclose per array)."""
        from ase.calculators.calculator import Calculator

        from aiida_lmlp.potential import LmlpCalculator

        ours = LmlpCalculator.check_state
        LmlpCalculator.check_state = Calculator.check_state
        try:
            runs[ases] = explore(model, starts, {**protocol, "replicas": 5})
        finally:
            LmlpCalculator.check_state = ours

    ases = "5 replica(s), lockstep, batched, ASE's check_state"
    variants[ases] = with_ases_check_state
    medians = interleaved_medians(variants, args.rounds)
    rows = []
    for key, seconds in medians.items():
        result = runs[key]
        steps = sum(t.steps for t in result.trajectories)
        errors = [t.error for t in result.trajectories if t.error]
        if errors or any(t.steps != args.steps for t in result.trajectories):
            raise SystemExit(f"{key}: not every trajectory ran {args.steps} steps: {errors[:3]}")
        rows.append(
            {
                "variant": key,
                "trajectories": len(result.trajectories),
                "trajectory_steps": steps,
                "seconds": round(seconds, 3),
                "ms_per_trajectory_step": round(1000 * seconds / steps, 3),
            }
        )
        per_step = rows[-1]["ms_per_trajectory_step"]
        print(f"{key:48s} {len(result.trajectories):3d} trajectories  {seconds:7.2f} s  {per_step:6.2f} ms/step")
    speedups = {}
    for replicas in (1, 5):
        one = medians[f"{replicas} replica(s), one structure per evaluation"]
        batched = medians[f"{replicas} replica(s), lockstep, batched"]
        speedups[f"{replicas} replica(s)"] = round(one / batched, 2)
    speedups["5 replica(s): ASE's check_state vs ours"] = round(
        medians[ases] / medians["5 replica(s), lockstep, batched"], 2
    )
    print("speed-ups:", speedups)
    write_result(
        args.out,
        {
            "start_structures": len(starts),
            "atoms_per_structure": sorted({len(a) for a in starts}),
            "members": args.members,
            "hidden": [102, 61, 44],
            "steps": args.steps,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "rows": rows,
            "speedup_lockstep_vs_one_by_one": speedups,
        },
    )


if __name__ == "__main__":
    main()
