"""What ``keep_freed_memory()`` (glibc mallopt) changes: energy + forces with and without it.

Each variant runs in its own process (the allocator setting is per process and cannot be
undone), the processes alternate, and the medians are compared. Cases: the 1002-atom water box
at 6 Å (condensed phase, gigabytes of triplet temporaries) and 200 SN2 conformations at 12 Å,
with 1 and 10 members (per-member forces).

    python3 benchmarks/allocator_effect.py [--rounds 3]

Writes ``results/allocator_effect.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_child(case: dict) -> dict:
    """One timed evaluation in this process (after one warm-up)."""
    if case["keep_freed_memory"]:
        from aiida_lmlp.potential.allocator import keep_freed_memory

        case["accepted"] = keep_freed_memory()
    from structures import SN2_ELEMENTS, sn2_conformations, water_box

    from aiida_lmlp.potential import EeACSF, Ensemble

    if case["structures"] == "water":
        structures, elements, cutoff = [water_box(334)], ["H", "O"], 6.0
    else:
        structures, elements, cutoff = sn2_conformations()[:200], SN2_ELEMENTS, 12.0
    model = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=cutoff), members=case["members"], seed=0)
    model.evaluate(structures)
    samples = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        model.evaluate(structures)
        samples.append(time.perf_counter() - start)
    case["seconds"] = statistics.median(samples)
    return case


def main() -> None:
    """Alternate the variants in child processes and write the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    rows = []
    for structures, repeats in (("water", 1), ("sn2", 5)):
        for members in (1, 10):
            times = {False: [], True: []}
            for _ in range(args.rounds):
                for keep in (False, True):
                    case = {"structures": structures, "members": members, "keep_freed_memory": keep, "repeats": repeats}
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True
                    )
                    if done.returncode != 0:
                        raise SystemExit(done.stderr)
                    times[keep].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
            row = {
                "structures": structures,
                "members": members,
                "seconds_default": statistics.median(times[False]),
                "seconds_keep_freed_memory": statistics.median(times[True]),
            }
            row["speed_up"] = row["seconds_default"] / row["seconds_keep_freed_memory"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    import torch

    out = HERE / "results" / "allocator_effect.json"
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    command = "python3 benchmarks/allocator_effect.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
    out.write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
