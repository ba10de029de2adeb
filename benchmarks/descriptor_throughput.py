"""Descriptor + force throughput of the eeACSFs, side by side with TorchANI's AEVComputer.

Run with the peer's virtual environment (TorchANI pins a click newer than aiida-core allows):

    python3 -m venv benchmarks/.venv-torchani
    benchmarks/.venv-torchani/bin/pip install torch==2.13.0 && benchmarks/.venv-torchani/bin/pip install torchani
    benchmarks/.venv-torchani/bin/pip install ase vesin safetensors scipy
    benchmarks/.venv-torchani/bin/pip install --no-deps -e .
    TORCHANI_NO_WARN_EXTENSIONS=1 benchmarks/.venv-torchani/bin/python benchmarks/descriptor_throughput.py

``--device cuda`` runs both codes on the GPU (results in ``descriptor_throughput_cuda.json``).

Two eeACSF rows per molecular set: "from ASE Atoms" reads and checks the Atoms objects and
builds the graph each call (what ``Ensemble.evaluate`` does: on the CPU the vesin cell list, on
a GPU the all-pairs search of each molecule there); "from tensors" starts, like the TorchANI
rows, from coordinates and species already on the device and searches all pairs of each
molecule there (``molecule_graph``). The neighbour search is part of every measured time.

"Descriptor + force" = the descriptor matrix and the gradient of a fixed random projection of it
with respect to the positions (what a force evaluation costs on top of the networks), including
the neighbour search of each code. The same structures and the same dtype (float64, float32) go
to both codes in one run, timed in alternation (medians of ``--repeats`` rounds); ratios are
reported per structure set and per descriptor entry.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from structures import SN2_ELEMENTS, sn2_conformations, water_box  # noqa: E402
from timing import cpu_model, interleaved_medians  # noqa: E402

from aiida_lmlp.potential import EeACSF  # noqa: E402
from aiida_lmlp.potential.descriptors.neighbors import graph_tensors, molecule_graph  # noqa: E402


def eeacsf_case(structures, elements, cutoff, dtype, device="cpu", from_tensors=False, compiled=False):
    """``(run, entries, atoms)``; ``compiled`` runs the descriptor through ``torch.compile`` (an experiment)."""
    descriptor = EeACSF.from_paper(elements, cutoff=cutoff).to(device)
    n_atoms = sum(len(a) for a in structures)
    entries = len(descriptor)
    weights = torch.randn(n_atoms, entries, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(device)
    if compiled:
        descriptor = torch.compile(descriptor, dynamic=True)
    index = {e: k for k, e in enumerate(elements)}
    coords = torch.as_tensor(np.concatenate([a.positions for a in structures]), dtype=dtype, device=device)
    species = torch.as_tensor([index[s] for a in structures for s in a.get_chemical_symbols()], device=device)
    counts = [len(a) for a in structures]

    def graph():
        if from_tensors:
            return molecule_graph(coords.clone(), species, counts, cutoff)
        return graph_tensors(structures, elements, cutoff, device, dtype)

    def run():
        t = graph()
        positions = t["positions"].requires_grad_(True)
        values = descriptor(positions, t["cells"], t)
        (grad,) = torch.autograd.grad((values * weights).sum(), positions)
        return grad

    return run, entries, n_atoms


def ani_case(structures, elements, dtype, radial_cutoff=None, angular_cutoff=None, device="cpu"):
    from torchani.aev import AEVComputer

    kwargs = {"num_species": len(elements)}
    if radial_cutoff:
        kwargs["radial_cutoff"] = radial_cutoff
    if angular_cutoff:
        kwargs["angular_cutoff"] = angular_cutoff
    periodic = bool(structures[0].pbc.any())
    if periodic:
        kwargs["neighborlist"] = "cell_list"
    aev = AEVComputer.like_2x(**kwargs).to(dtype=dtype, device=device)
    index = {e: k for k, e in enumerate(elements)}
    n_max = max(len(a) for a in structures)
    species = torch.full((len(structures), n_max), -1, dtype=torch.long)
    coords = torch.zeros(len(structures), n_max, 3, dtype=dtype)
    for m, atoms in enumerate(structures):
        species[m, : len(atoms)] = torch.tensor([index[s] for s in atoms.get_chemical_symbols()])
        coords[m, : len(atoms)] = torch.as_tensor(atoms.positions, dtype=dtype)
    species, coords = species.to(device), coords.to(device)
    cell = torch.as_tensor(structures[0].cell.array, dtype=dtype, device=device) if periodic else None
    pbc = torch.tensor([True, True, True], device=device) if periodic else None
    with torch.no_grad():
        length = aev(species[:1], coords[:1], cell=cell, pbc=pbc).shape[-1]
    weights = torch.randn(len(structures), n_max, length, dtype=dtype, generator=torch.Generator().manual_seed(0))
    weights = weights.to(device)

    def run():
        positions = coords.clone().requires_grad_(True)
        values = aev(species, positions, cell=cell, pbc=pbc)
        (grad,) = torch.autograd.grad((values * weights).sum(), positions)
        return grad

    return run, length, int((species >= 0).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, help="default: results/descriptor_throughput[_DEVICE].json")
    args = parser.parse_args()
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    args.out = args.out or Path(__file__).parent / "results" / f"descriptor_throughput{suffix}.json"
    torch.set_num_threads(torch.get_num_threads())
    sets = {
        "sn2 (899 conformations, gas phase)": (sn2_conformations(), SN2_ELEMENTS, 12.0),
        "water box (1002 atoms, periodic)": ([water_box(334)], ["H", "O"], 6.0),
    }
    rows = []
    for name, (structures, elements, cutoff) in sets.items():
        for dtype in (torch.float64, torch.float32):
            cases = {
                f"eeACSF Table 1 (Rc {cutoff:g} Å)": eeacsf_case(structures, elements, cutoff, dtype, args.device),
                **(
                    {}
                    if structures[0].pbc.any()
                    else {
                        f"eeACSF Table 1 (Rc {cutoff:g} Å), from tensors": eeacsf_case(
                            structures, elements, cutoff, dtype, args.device, from_tensors=True
                        )
                    }
                ),
                "TorchANI AEV, ANI-2x radii (5.1/3.5 Å)": ani_case(structures, elements, dtype, device=args.device),
                # TorchANI needs the angular cutoff strictly below the radial one
                f"TorchANI AEV, radii {cutoff:g}/{cutoff - 0.01:g} Å": ani_case(
                    structures, elements, dtype, cutoff, cutoff - 0.01, args.device
                ),
            }
            # timed in alternation: the machine's noise spreads over the codes alike
            medians = interleaved_medians({label: case[0] for label, case in cases.items()}, args.repeats)
            for label, (_, length, n_atoms) in cases.items():
                seconds = medians[label]
                rows.append(
                    {
                        "structures": name,
                        "dtype": str(dtype).removeprefix("torch."),
                        "descriptor": label,
                        "entries": length,
                        "atoms": n_atoms,
                        "seconds": seconds,
                        "atoms_per_s": n_atoms / seconds,
                        "entries_x_atoms_per_s": n_atoms * length / seconds,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
