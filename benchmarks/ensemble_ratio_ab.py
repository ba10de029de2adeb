"""The ensemble-cost ratio (10 members against one) of an earlier commit and of this tree, in alternation.

    python benchmarks/ensemble_ratio_ab.py --before ea1af88 [--repeats 3] \
        [--cases sn2:float64 sn2:float32 water:float64]

The machines here drift by 10–20 % within minutes, so a before/after comparison is only
meaningful when both run in turn on the same machine. The earlier commit is checked out in a
temporary git worktree; each row is one child process of ``ensemble_and_scaling.py`` (from
this tree, so both sides run the same benchmark code) timing 1 member, 10 members with mean
forces and 10 members with every member's forces interleaved, with the package imported
from that side's tree (``PYTHONPATH``). The rows alternate before/after ``--repeats`` times
per case.

Results: ``benchmarks/results/ensemble_ratio_ab.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from timing import cpu_model  # noqa: E402

ROUNDS = {"sn2": 15, "water": 3}


def _child(tree: Path, structures: str, dtype: str) -> dict:
    case = {"kind": "ensemble_ratio", "structures": structures, "rounds": ROUNDS[structures], "dtype": dtype}
    environment = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, str(HERE / "ensemble_and_scaling.py"), "--child", json.dumps(case)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["sn2:float64", "sn2:float32", "water:float64"])
    parser.add_argument("--output", type=Path, default=HERE / "results" / "ensemble_ratio_ab.json")
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    before = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old_tree), args.before], cwd=ROOT, check=True)
        try:
            for case in args.cases:
                structures, dtype = case.split(":")
                for _ in range(args.repeats):
                    for code, tree in ((f"before ({before.stdout.strip()})", old_tree), ("after (this tree)", ROOT)):
                        result = _child(tree, structures, dtype)
                        row = {
                            "code": code,
                            "structures": structures,
                            "dtype": dtype,
                            "ms": {k: round(1e3 * v, 1) for k, v in result["seconds"].items()},
                            "ratio_to_1_member": {k: round(v, 2) for k, v in result["ratio_to_1_member"].items()},
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    result = {
        "command": "python benchmarks/ensemble_ratio_ab.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "after": f"{head.stdout.strip()} and the working tree",
        "note": "paper networks 102-61-44; each row one child process timing the three variants interleaved (medians)",
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
