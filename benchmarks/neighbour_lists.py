"""Neighbour-list libraries side by side: vesin, matscipy and ASE (full lists, i, j, shifts, d).

    python benchmarks/neighbour_lists.py

Results: benchmarks/results/neighbour_lists.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from structures import sn2_conformations, water_box  # noqa: E402
from timing import median_time  # noqa: E402


def vesin_list(atoms, cutoff):
    import vesin

    box = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
    return vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
        atoms.positions, box, bool(atoms.pbc.any()), "ijSd"
    )


def matscipy_list(atoms, cutoff):
    from matscipy.neighbours import neighbour_list

    if not atoms.pbc.any():  # matscipy needs a non-singular cell even for molecules
        atoms = atoms.copy()
        atoms.cell = np.eye(3) * (np.ptp(atoms.positions, axis=0).max() + 2 * cutoff + 1.0)
    return neighbour_list("ijSd", atoms, cutoff)


def ase_list(atoms, cutoff):
    from ase.neighborlist import neighbor_list

    return neighbor_list("ijSd", atoms, cutoff)


def main():
    cases = {
        "water box 1002 atoms, 6 Å": ([water_box(334)], 6.0),
        "water box 8016 atoms, 6 Å": ([water_box(2672)], 6.0),
        "899 SN2 molecules, 12 Å (one call each)": (sn2_conformations(), 12.0),
    }
    rows = []
    for name, (structures, cutoff) in cases.items():
        counts = {}
        for library, fn in (("vesin", vesin_list), ("matscipy", matscipy_list), ("ase", ase_list)):
            seconds = median_time(lambda fn=fn, s=structures, c=cutoff: [fn(a, c) for a in s], 3)
            counts[library] = sum(len(fn(a, cutoff)[0]) for a in structures)
            rows.append({"case": name, "library": library, "seconds": seconds, "pairs": counts[library]})
            print(json.dumps(rows[-1]), flush=True)
        assert len(set(counts.values())) == 1, counts
    (HERE / "results" / "neighbour_lists.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
