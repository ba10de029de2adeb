"""Per-member forces of 10 members: explicit descriptor Jacobian vs vectorised backward passes.

Sets ``aiida_lmlp.potential.model.ensemble.JACOBIAN_MIN_TRIPLETS`` to force one path or the other and
times, in alternation in one process, one member, ten members with mean forces and ten members
with per-member forces by each path, on SN2 batches of 1 to 200 conformations (12 Å) and a
64-atom fcc Cu cell (4.5 Å). Medians; the threshold in the engine comes from here.

    python3 benchmarks/per_member_paths.py

Writes ``results/per_member_paths.json``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _case(name: str, structures, elements, cutoff: float, rounds: int) -> dict:
    from timing import interleaved_medians

    import aiida_lmlp.potential.model.ensemble as ensemble_module
    from aiida_lmlp.potential import EeACSF, Ensemble
    from aiida_lmlp.potential.descriptors.neighbors import build_graph

    descriptor = EeACSF.from_paper(elements, cutoff=cutoff)
    one = Ensemble.new(elements, descriptor, members=1, seed=0)
    ten = Ensemble.new(elements, descriptor, members=10, seed=0)

    def forced(threshold: int):
        def run():
            saved = ensemble_module.JACOBIAN_MIN_TRIPLETS
            ensemble_module.JACOBIAN_MIN_TRIPLETS = threshold
            try:
                return ten.evaluate(structures)
            finally:
                ensemble_module.JACOBIAN_MIN_TRIPLETS = saved

        return run

    variants = {
        "1 member": lambda: one.evaluate(structures),
        "10 members, mean forces": lambda: ten.evaluate(structures, member_forces=False),
        "10 members, per-member forces, Jacobian": forced(0),
        "10 members, per-member forces, backward passes": forced(10**15),
    }
    seconds = interleaved_medians(variants, rounds)
    graph = build_graph(list(structures), elements, cutoff)
    row = {
        "case": name,
        "atoms": graph.n_atoms,
        "triplets": int(graph.triplets.shape[0]),
        "seconds": seconds,
        "ratio_to_1_member": {key: value / seconds["1 member"] for key, value in seconds.items()},
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    """Run every case and write the results file."""
    import torch
    from ase.build import bulk
    from structures import SN2_ELEMENTS, sn2_conformations

    sn2 = sn2_conformations()
    rows = [_case(f"sn2 x{n}", sn2[:n], SN2_ELEMENTS, 12.0, rounds=31 if n < 32 else 9) for n in (1, 4, 8, 32, 200)]
    copper = bulk("Cu", "fcc", a=3.6).repeat((4, 4, 4))
    rows.append(_case("fcc Cu 64 atoms", [copper], ["Cu"], 4.5, rounds=5))
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = HERE / "results" / "per_member_paths.json"
    result = {"command": "python3 benchmarks/per_member_paths.py", "machine": machine, "rows": rows}
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
