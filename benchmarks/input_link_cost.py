"""What one input link of a new process costs in aiida-core, and how much of it is the cycle query.

    python benchmarks/input_link_cost.py [--links 200]

A calcfunction with ``--links`` stored dataset inputs runs three times on a fresh embedded
profile (SQLite): as aiida-core does it; with the cycle-check query skipped while the process
node is not yet stored (a node without a database row has no descendants, so no link to it can
close a cycle): the plugin's ``LinksWithoutVacuousQueries`` (``aiida_lmlp/overrides/process_links.py``,
mixed into all of its processes) on the same calcfunction; and with ``validate_link`` skipped
as well (what is left: storing the link rows and the process). Each run's wall time over the
link count is the cost per link. The quickstart creates about 35 input and call links per
iteration, so the cycle queries are a fixed share of its engine overhead.

Results: ``benchmarks/results/input_link_cost.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scratch_profile import RESULTS, SN2, scratch_profile, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "input_link_cost.json")
    args = parser.parse_args()
    with scratch_profile("links"):
        from aiida import orm
        from aiida.engine import calcfunction, run_get_node
        from ase.io import read

        from aiida_lmlp.data import LmlpDatasetData
        from aiida_lmlp.overrides import process_links
        from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries

        frames = read(SN2 / "pool_a.extxyz", ":5")
        datasets = [LmlpDatasetData.from_atoms(frames).store() for _ in range(args.links)]

        @calcfunction
        def count(**inputs):
            return orm.Int(len(inputs))

        # the same calcfunction with the plugin's link checks (as its own processes have them)
        lean = type("count", (LinksWithoutVacuousQueries, count.process_class), {})

        def per_link(process) -> float:
            start = time.perf_counter()
            run_get_node(process, **{f"d{i:04d}": d for i, d in enumerate(datasets)})
            return 1000 * (time.perf_counter() - start) / args.links

        for process in (count.process_class, lean):  # first calls pay one-off costs (imports, caches)
            run_get_node(process, d0000=datasets[0])
        rows = {
            "aiida-core as released": per_link(count.process_class),
            "no cycle query while the process node is unstored": per_link(lean),
        }
        validate_link = process_links.validate_link
        process_links.validate_link = lambda *_, **__: None
        try:
            rows["and no validate_link"] = per_link(lean)
        finally:
            process_links.validate_link = validate_link
        for name, ms in rows.items():
            print(f"{name:55s} {ms:6.2f} ms per input link")
    write_result(args.out, {"links": args.links, "ms_per_link": {name: round(ms, 2) for name, ms in rows.items()}})


if __name__ == "__main__":
    main()
