"""Where the time of one eeACSF descriptor + force evaluation goes, next to TorchANI's, per device.

For the 899 SN2 conformations (float64 and float32), times the parts of the eeACSF evaluation
separately (graph from ASE Atoms, graph from tensors already on the device, forward, backward)
and records with ``torch.profiler`` how many kernels one evaluation launches and how long the
device is busy with them, against its wall time: on a GPU a gap between the two is launch and
Python overhead, not arithmetic. TorchANI's AEVComputer (``like_2x``, the same structures as
padded tensors) is profiled alike. Run next to ``descriptor_throughput.py`` with TorchANI on
the path; results in ``results/descriptor_profile[_DEVICE].json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from descriptor_throughput import ani_case, eeacsf_case  # noqa: E402
from structures import SN2_ELEMENTS, sn2_conformations  # noqa: E402
from timing import cpu_model  # noqa: E402

from aiida_lmlp.potential import EeACSF  # noqa: E402
from aiida_lmlp.potential.descriptors.neighbors import graph_tensors, molecule_graph  # noqa: E402


def _median_ms(function, device: str, repeats: int) -> float:
    """Median wall time of ``function`` in ms, the device synchronised around each call."""
    function()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _kernel_profile(function, device: str) -> dict:
    """Kernels launched by one call, the device's busy time and the ten costliest operators."""
    function()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        function()
        if device == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    operators = [e for e in events if e.device_type.name == "CPU" and e.name.startswith("aten::")]
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    top = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:10]
    return {
        "kernels": len(kernels),
        "kernel_busy_ms": 1e-3 * sum(e.device_time for e in kernels) if kernels else None,
        "aten_calls": len(operators),
        "top": [{"name": e.key, "calls": e.count, "ms": 1e-3 * getattr(e, key)} for e in top],
    }


def profile_dtype(
    structures, elements, cutoff: float, dtype: torch.dtype, device: str, repeats: int, compiled: bool = False
) -> dict:
    """Parts and whole evaluations of one dtype, timed and profiled (``compiled`` adds the torch.compile row)."""
    descriptor = EeACSF.from_paper(elements, cutoff=cutoff).to(device)
    t = graph_tensors(structures, elements, cutoff, device, dtype)
    counts = torch.bincount(t["structure"]).cpu()
    coords, species = t["positions"], t["species"]
    weights = torch.randn(coords.shape[0], len(descriptor), dtype=dtype, device=device)
    positions = coords.clone().requires_grad_(True)

    def forward():
        return descriptor(positions, t["cells"], t)

    def forward_backward():
        return torch.autograd.grad((forward() * weights).sum(), positions)

    parts = {
        "graph from ASE Atoms (graph_tensors)": lambda: graph_tensors(structures, elements, cutoff, device, dtype),
        "graph from device tensors (molecule_graph)": lambda: molecule_graph(coords, species, counts, cutoff),
        "descriptor forward": forward,
        "descriptor forward + backward": forward_backward,
    }
    whole = {
        "eeACSF from tensors": eeacsf_case(structures, elements, cutoff, dtype, device, from_tensors=True)[0],
        "eeACSF from ASE Atoms": eeacsf_case(structures, elements, cutoff, dtype, device)[0],
        "TorchANI like_2x": ani_case(structures, elements, dtype, device=device)[0],
    }
    row = {"dtype": str(dtype).removeprefix("torch."), "parts_ms": {}, "whole": {}}
    for name, function in parts.items():
        row["parts_ms"][name] = _median_ms(function, device, repeats)
    for name, function in whole.items():
        row["whole"][name] = {"ms": _median_ms(function, device, repeats), **_kernel_profile(function, device)}
    if compiled:
        row["whole"]["eeACSF from tensors, torch.compile (experiment)"] = _compiled(
            structures, elements, cutoff, dtype, device, repeats
        )
    return row


def _compiled(structures, elements, cutoff, dtype, device, repeats) -> dict:
    """The "from tensors" case with the descriptor through ``torch.compile(dynamic=True)``, or the error."""
    try:
        run = eeacsf_case(structures, elements, cutoff, dtype, device, from_tensors=True, compiled=True)[0]
        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
        return {"first_call_s": first, "ms": _median_ms(run, device, repeats), **_kernel_profile(run, device)}
    except Exception as error:  # an experiment: record why it failed rather than stop the profile
        return {"error": f"{type(error).__name__}: {str(error)[:500]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile experiment")
    args = parser.parse_args()
    device = args.device
    suffix = "" if device == "cpu" else f"_{device}"
    args.out = args.out or Path(__file__).parent / "results" / f"descriptor_profile{suffix}.json"
    structures, elements, cutoff = sn2_conformations(), SN2_ELEMENTS, 12.0
    rows = []
    for dtype in (torch.float64, torch.float32):
        rows.append(profile_dtype(structures, elements, cutoff, dtype, device, args.repeats, args.compile))
        print(json.dumps(rows[-1], indent=1), flush=True)
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "structures": "sn2 (899 conformations)", "rows": rows}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
