"""Ensemble cost (10 members vs 1), peak memory, and scaling with elements and atoms.

    python benchmarks/ensemble_and_scaling.py [--quick]
    python benchmarks/ensemble_and_scaling.py --device cuda   # the ensemble cases on a GPU

Every case runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own.
Results go to benchmarks/results/ensemble_and_scaling.json (``_cuda.json`` for ``--device cuda``,
which runs only the 10-vs-1-member cases, in float64 and float32, with the peak GPU memory).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from timing import cpu_model, interleaved_medians, median_time  # noqa: E402


def run_case(case: dict) -> dict:
    """Executed in the child process."""
    import torch

    sys.path.insert(0, str(HERE))
    from structures import SN2_ELEMENTS, mixed_box, sn2_conformations, water_box

    from aiida_lmlp.potential import ACSF, EeACSF, Ensemble
    from aiida_lmlp.potential.descriptors.neighbors import build_graph

    dtype = getattr(torch, case.get("dtype", "float64"))
    kind = case["kind"]
    if kind == "ensemble_ratio":
        return _ensemble_ratio(case)
    if kind == "elements_interleaved":
        return _elements_interleaved(case)
    if kind == "ensemble":
        if case["structures"] == "sn2":
            structures, elements, cutoff = sn2_conformations()[:200], SN2_ELEMENTS, 12.0
        else:
            structures, elements, cutoff = [water_box(334)], ["H", "O"], 6.0
        model = Ensemble.new(
            elements,
            EeACSF.from_paper(elements, cutoff=cutoff),
            members=case["members"],
            hidden=(102, 61, 44),
            seed=0,
            dtype=dtype,
        )
        fn = lambda: model.evaluate(structures, member_forces=case["member_forces"])  # noqa: E731
        n_atoms = sum(len(a) for a in structures)
    else:  # descriptor + force for one box
        elements = case["elements"]
        box = mixed_box(case["atoms"], elements, seed=1)
        descriptor_cls = EeACSF if kind == "eeacsf" else ACSF
        descriptor = EeACSF.from_paper(elements, cutoff=6.0)
        if descriptor_cls is ACSF:
            descriptor = ACSF.like(descriptor)
        n_atoms = len(box)

        def fn():
            graph = build_graph([box], elements, 6.0)
            t = graph.tensors(dtype=dtype)
            positions = t["positions"].requires_grad_(True)
            values = descriptor(positions, t["cells"], t)
            torch.autograd.grad(values.sum(), positions)

        case["entries"] = len(descriptor)
    seconds = median_time(fn, case.get("repeats", 3))
    case.update(
        seconds=seconds,
        atoms=n_atoms,
        us_per_atom=1e6 * seconds / n_atoms,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return case


def _ensemble_ratio(case: dict) -> dict:
    """1 member, 10 members (mean forces) and 10 members (per-member forces), interleaved.

    The machine is noisy (the same case varies by up to 1.6x between runs), so the three
    variants are timed in alternation in one process and compared by their medians.
    """
    from structures import SN2_ELEMENTS, sn2_conformations, water_box

    from aiida_lmlp.potential import EeACSF, Ensemble

    if case["structures"] == "sn2":
        structures, elements, cutoff = sn2_conformations()[:200], SN2_ELEMENTS, 12.0
    else:
        structures, elements, cutoff = [water_box(334)], ["H", "O"], 6.0
    import torch

    device = case.get("device", "cpu")
    dtype = getattr(torch, case.get("dtype", "float64"))
    descriptor = EeACSF.from_paper(elements, cutoff=cutoff)
    one = Ensemble.new(elements, descriptor, members=1, seed=0, dtype=dtype).to(device)
    ten = Ensemble.new(elements, descriptor, members=10, seed=0, dtype=dtype).to(device)
    variants = {
        "1 member": lambda: one.evaluate(structures),
        "10 members, mean forces": lambda: ten.evaluate(structures, member_forces=False),
        "10 members, per-member forces": lambda: ten.evaluate(structures),
    }
    if device == "cuda":
        peaks = {}
        for name, fn in variants.items():
            fn()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            peaks[name] = torch.cuda.max_memory_allocated() / 2**20
        case["peak_gpu_mb"] = peaks
        case["gpu"] = torch.cuda.get_device_name()
    medians = interleaved_medians(variants, case.get("rounds", 7))
    case["seconds"] = medians
    case["ratio_to_1_member"] = {name: value / medians["1 member"] for name, value in medians.items()}
    case["atoms"] = sum(len(a) for a in structures)
    return case


def _elements_interleaved(case: dict) -> dict:
    """eeACSF and ACSF descriptor + force at 1, 4 and 10 elements, timed in alternation."""
    import torch
    from structures import mixed_box

    from aiida_lmlp.potential import ACSF, EeACSF
    from aiida_lmlp.potential.descriptors.neighbors import build_graph

    ten = ["H", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br"]
    variants = {}
    for n in (1, 4, 10):
        elements = ten[:n]
        box = mixed_box(case["atoms"], elements, seed=1)
        t = build_graph([box], elements, 6.0).tensors()
        for descriptor in (EeACSF.from_paper(elements, cutoff=6.0), ACSF.like(EeACSF.from_paper(elements, cutoff=6.0))):

            def run(descriptor=descriptor, t=t):
                positions = t["positions"].clone().requires_grad_(True)
                values = descriptor(positions, t["cells"], t)
                torch.autograd.grad(values.sum(), positions)

            variants[f"{descriptor.kind} {n} elements ({len(descriptor)} entries)"] = run
    samples = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(case.get("rounds", 3)):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    case["ms_per_atom"] = {name: 1e3 * statistics.median(v) / case["atoms"] for name, v in samples.items()}
    return case


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the largest boxes")
    parser.add_argument(
        "--only-ensemble",
        action="store_true",
        help="rerun only the ensemble cases and replace their rows in the existing results file",
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the ensemble cases on a GPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return
    ten = ["H", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br"]
    cases = []
    if args.device != "cpu":
        for dtype in ("float64", "float32"):
            for structures in ("sn2", "water"):
                cases.append(
                    {
                        "kind": "ensemble_ratio",
                        "structures": structures,
                        "rounds": 7,
                        "device": args.device,
                        "dtype": dtype,
                    }
                )
    for structures in ("sn2", "water"):
        for dtype in ("float64", "float32"):
            rounds = 7 if structures == "sn2" else 3
            cases.append({"kind": "ensemble_ratio", "structures": structures, "rounds": rounds, "dtype": dtype})
        for members, member_forces in ((1, True), (10, False), (10, True)):
            # one evaluation each, for the peak memory of every variant on its own
            cases.append(
                {
                    "kind": "ensemble",
                    "structures": structures,
                    "members": members,
                    "member_forces": member_forces,
                    "repeats": 1,
                }
            )
    cases.append({"kind": "elements_interleaved", "atoms": 1000, "rounds": 3})
    for n_elements in (1, 4, 10):
        for kind in ("eeacsf", "acsf"):
            cases.append({"kind": kind, "elements": ten[:n_elements], "atoms": 1000})
    sizes = (100, 300, 1000, 3000) if args.quick else (100, 300, 1000, 3000, 10000)
    for n in sizes:
        cases.append(
            {
                "kind": "eeacsf",
                "elements": ["H", "O"],
                "atoms": n,
                "repeats": 1 if n > 3000 else 3,
                "dtype": "float32" if n > 3000 else "float64",
            }
        )
    if args.only_ensemble:
        cases = [case for case in cases if case["kind"].startswith("ensemble")]
    if args.device != "cpu":
        cases = [case for case in cases if case.get("device") == args.device]
    rows = []
    for case in cases:
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True)
        if done.returncode != 0:
            case["error"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            rows.append(case)
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    import torch

    machine = {
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    out = HERE / "results" / f"ensemble_and_scaling{suffix}.json"
    result = {"machine": machine, "rows": rows}
    if args.only_ensemble and args.device == "cpu" and out.exists():
        kept = [row for row in json.loads(out.read_text())["rows"] if not row["kind"].startswith("ensemble")]
        result = {"machine": machine, "ensemble_rows_from": "--only-ensemble", "rows": rows + kept}
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
