"""A long campaign's screening: every dataset as an input vs the previous screening's ``known`` output.

    python benchmarks/screening_inputs.py [--datasets 10 50 200]

A campaign's data stream grows by one labelled dataset per iteration. The screening
calcfunction used to take every labelled and every selected dataset of the campaign as inputs
(2 per iteration), and aiida-core validates each input link of a new process with its own
recursive query. It now takes the previous screening's ``known`` output (every geometry key
and the fingerprints so far) and the datasets labelled since. This times one screening of 40
visited conformations after N iterations both ways, on a fresh embedded profile (SQLite),
with N datasets of 20 labelled Cl⁻ + CH3Cl conformations each.

Results: ``benchmarks/results/screening_inputs.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from scratch_profile import RESULTS, SN2, scratch_profile, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", type=int, default=[10, 50, 200])
    parser.add_argument("--out", type=Path, default=RESULTS / "screening_inputs.json")
    args = parser.parse_args()
    with scratch_profile("screening"):
        from aiida import orm
        from ase.io import read

        from aiida_lmlp.data import LmlpDatasetData
        from aiida_lmlp.formats.conformation_arrays import ConformationArrays
        from aiida_lmlp.workflows.screening import screen_candidates

        frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"]
        rng = np.random.default_rng(0)

        def labelled() -> LmlpDatasetData:
            batch = []
            for atoms in frames[:20]:
                copy = atoms.copy()
                copy.positions += rng.normal(0.0, 0.01, copy.positions.shape)
                copy.calc = atoms.calc
                batch.append(copy)
            return LmlpDatasetData.from_atoms(batch).store()

        arrays = dict(LmlpDatasetData.from_atoms(frames[:40]).conformations.arrays)
        count, atoms = len(arrays["counts"]), int(arrays["counts"].sum())
        arrays.update(
            predicted_energy=arrays["energy"],
            predicted_forces=arrays["forces"],
            energy_uncertainty=rng.uniform(0.0, 2.0, count),
            forces_uncertainty=rng.uniform(0.0, 10.0, (atoms, 3)),
            fingerprint=rng.normal(size=(count, 153)),
        )
        visited = LmlpDatasetData(ConformationArrays(arrays), label_method="").store()
        potential = orm.Dict({"rmse_energy_per_atom": 0.05, "rmse_forces": 1.0}).store()
        settings, budget = orm.Dict({}).store(), orm.Int(10).store()
        stream: list = []
        rows = []
        for n in sorted(args.datasets):
            while len(stream) < n:
                stream.append(labelled())
            start = time.perf_counter()
            screen_candidates(visited, potential, settings, budget, **{f"l{i:03d}": d for i, d in enumerate(stream)})
            every = time.perf_counter() - start
            earlier = screen_candidates(
                visited, potential, settings, budget, **{f"l{i:03d}": d for i, d in enumerate(stream[:-1])}
            )
            start = time.perf_counter()
            screen_candidates(visited, potential, settings, budget, known=earlier["known"], newest=stream[-1])
            carried = time.perf_counter() - start
            rows.append({"datasets": n, "every_dataset_s": round(every, 3), "known_and_newest_s": round(carried, 3)})
            print(f"{n:4d} datasets: every dataset as input {every:.2f} s, known + newest {carried:.2f} s", flush=True)
    write_result(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
