"""Does the quickstart campaign learn? Every version measured on independent reference data.

    python benchmarks/quickstart_learning_curve.py [--stops lower upper never] [--seeds 0 1 2]

Test data: the Cl⁻ + CH3Cl conformations of ``workflows/data/sn2`` (pool_a and pool_b, 82 geometries
along the reaction, displaced by up to 0.15 Å) relabelled here with PySCF at the quickstart's level
(HF/STO-3G), minus the 10 the quickstart starts from: 72 conformations no version trained on.

For each ``explore.stop_at`` (where an exploration trajectory ends: at its first conformation above
the selection's lower thresholds, at the upper (unphysical) ones, or never) and each seed (the
training seed, and the MD seed × 10), the quickstart campaign (``workflows/quickstart.yaml``) runs
in-process on a fresh embedded profile (``lmlp campaign launch --run``). Every registered version
is then evaluated on the test data: energy RMSE per atom and force-component RMSE of the ensemble
mean. Also recorded: the labelled conformations' reference energies and largest forces per
iteration (what exploration brought in).

Results: ``benchmarks/results/quickstart_learning_curve.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from scratch_profile import RESULTS, ROOT, SN2, scratch_profile, write_result  # noqa: E402

SPEC = ROOT / "workflows" / "quickstart.yaml"


def independent_test_set(spec: dict, workdir: Path) -> list:
    """The Cl⁻ + CH3Cl pool conformations the quickstart does not start from, labelled at its level."""
    from ase.io import read

    from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters, label_batch

    starts = read(SPEC.parent / spec["structures"], ":")
    frames = [
        atoms
        for pool in ("pool_a", "pool_b")
        for atoms in read(SN2 / f"{pool}.extxyz", ":")
        if atoms.info.get("reaction") == "Cl+CH3Cl"
    ]
    unseen = [a for a in frames if not any(np.allclose(a.positions, s.positions, atol=1e-6) for s in starts)]
    for atoms in unseen:
        atoms.calc = None
    parameters = PyscfParameters.from_dict({**spec["label"]["parameters"], "threads": os.cpu_count() or 1})
    out = workdir / "test_set.extxyz"
    summary = label_batch(unseen, parameters, out, workdir / "test_set.jsonl")
    labelled = read(out, ":")
    print(f"test set: {summary.converged} of {len(unseen)} unseen Cl- + CH3Cl conformations labelled")
    return labelled


def variant_spec(spec: dict, stop_at: str, seed: int, path: Path) -> str:
    """Write the quickstart spec with ``stop_at`` and ``seed``; returns the campaign name."""
    name = f"quickstart_{stop_at}_seed{seed}"
    variant = json.loads(json.dumps(spec))
    variant["campaign"] = name
    variant["structures"] = str(SPEC.parent / spec["structures"])
    variant["explore"]["stop_at"] = stop_at
    variant["explore"]["protocol"]["seed"] = 10 * seed
    variant["train"]["parameters"]["seed"] = seed
    path.write_text(yaml.safe_dump(variant))
    return name


def measure_versions(campaign: str, test: list) -> list[dict]:
    """Every version's ensemble-mean RMSEs on ``test`` (meV/atom, meV/Å) and its data size."""
    from aiida_lmlp.potential import Ensemble
    from aiida_lmlp.registry import get_version, list_versions

    energy = np.array([a.get_potential_energy() for a in test])
    atoms = np.array([len(a) for a in test])
    forces = np.concatenate([a.get_forces() for a in test])
    rows = []
    for row in list_versions(campaign):
        with tempfile.TemporaryDirectory() as folder:
            model = Ensemble.load(get_version(campaign, row["version"]).export(Path(folder) / "model.lmlp"))
        prediction = model.evaluate(test, member_forces=False)
        rmse_energy = float(np.sqrt(np.mean(((prediction.energy - energy) / atoms) ** 2)))
        rmse_forces = float(np.sqrt(np.mean((prediction.forces - forces) ** 2)))
        rows.append(
            {
                "version": row["version"],
                "dataset_size": row["dataset_size"],
                "test_rmse_energy_mev_per_atom": 1000 * rmse_energy,
                "test_rmse_forces_mev_per_angstrom": 1000 * rmse_forces,
            }
        )
    return rows


def labelled_per_iteration(campaign: str) -> list[dict]:
    """Reference energies (eV/atom above the lowest initial one) and largest |F| of each labelled set."""
    from aiida_lmlp.reporting import find_campaign_workchain

    node = find_campaign_workchain(campaign)
    datasets = [node.outputs.labelled[key] for key in sorted(node.outputs.labelled.keys())]
    lowest = None
    rows = []
    for i, dataset in enumerate(datasets):
        a = dataset.conformations.arrays
        per_atom = a["energy"] / a["counts"]
        lowest = per_atom.min() if lowest is None else lowest
        rows.append(
            {
                "iteration": i,
                "conformations": int(dataset.count),
                "max_energy_above_initial_ev_per_atom": float(per_atom.max() - lowest),
                "max_abs_force_ev_per_angstrom": float(np.abs(a["forces"]).max()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", nargs="+", default=["lower", "upper", "never"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "quickstart_learning_curve.json")
    args = parser.parse_args()
    spec = yaml.safe_load(SPEC.read_text())
    with scratch_profile("learning-curve") as workdir:
        test = independent_test_set(spec, workdir)
        runs = []
        for seed in args.seeds:
            for stop_at in args.stops:
                path = workdir / f"{stop_at}_{seed}.yaml"
                name = variant_spec(spec, stop_at, seed, path)
                start = time.perf_counter()
                subprocess.run(
                    [str(Path(sys.executable).parent / "lmlp"), "campaign", "launch", str(path), "--run"],
                    check=True,
                    capture_output=True,
                    env=os.environ,
                )
                seconds = time.perf_counter() - start
                versions = measure_versions(name, test)
                runs.append(
                    {
                        "stop_at": stop_at,
                        "seed": seed,
                        "seconds": round(seconds, 1),
                        "versions": versions,
                        "labelled": labelled_per_iteration(name),
                    }
                )
                curve = " → ".join(f"{v['test_rmse_forces_mev_per_angstrom']:.0f}" for v in versions)
                print(f"stop_at {stop_at:5s} seed {seed}: force RMSE per version (meV/Å) {curve}  [{seconds:.0f} s]")
    write_result(
        args.out,
        {
            "test_set": {
                "conformations": len(test),
                "level": "HF/STO-3G (PySCF)",
                "source": "sn2 pool_a + pool_b, Cl+CH3Cl, minus the quickstart's 10 starts",
            },
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
