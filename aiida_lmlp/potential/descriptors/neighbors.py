"""Neighbour graphs of one or many structures: validated input, pairs and angular triplets.

The pair list comes from `vesin` (chosen over matscipy and ASE on measured speed, see
``benchmarks/neighbour_lists.py``) and is NumPy; the differentiable geometry (distances,
angles) is computed from these indices in PyTorch so that forces and stress follow by
automatic differentiation. The angular triplets, which outnumber the pairs by the number of
neighbours (3.6 million for a 1000-atom water box at 6 Å), are built from the centre-sorted
pairs only when needed and where they are used: on the GPU for a model on the GPU.

Several structures are concatenated into one graph: atom indices are global, and
``structure`` maps every atom to its structure, so a batch is evaluated in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import vesin
from ase.data import atomic_numbers, chemical_symbols

from ...formats.errors import StructureError, structure_label

__all__ = ["NeighborGraph", "build_graph", "graph_tensors", "molecule_graph", "molecule_pairs", "pair_triplets"]

#: Default smallest interatomic distance accepted, in Å.
DEFAULT_MIN_DISTANCE = 0.5

#: Most ordered atom pairs ``Σ n_k²`` of a batch of molecules that :func:`graph_tensors` searches
#: on a GPU by enumerating all pairs of each molecule (128 MB of indices); larger batches go to
#: vesin's cell list on the CPU.
ALL_PAIRS_LIMIT = 1 << 23


@dataclass
class NeighborGraph:
    """Indices describing a batch of structures for the symmetry functions.

    Shapes: ``A`` atoms, ``P`` directed pairs (both ``i→j`` and ``j→i``), ``T`` angular
    triplets (unordered neighbour pairs ``{j, k}`` of one centre), ``S`` structures.
    """

    positions: np.ndarray  # (A, 3) float64, Å
    cells: np.ndarray  # (S, 3, 3) float64, Å, rows are cell vectors
    species: np.ndarray  # (A,) int64, index into the model's element list
    structure: np.ndarray  # (A,) int64, structure of each atom
    centers: np.ndarray  # (P,) int64, sorted
    neighbors: np.ndarray  # (P,) int64
    shifts: np.ndarray  # (P, 3) float64, integer multiples of the cell vectors
    _triplets: np.ndarray | None = None

    @property
    def triplets(self) -> np.ndarray:
        """``(T, 2)`` int64 indices of the pairs ``(i→j, i→k)``, ``j`` before ``k`` (built on first use)."""
        if self._triplets is None:
            self._triplets = pair_triplets(self.centers, self.n_atoms)
        return self._triplets

    @property
    def n_triplets(self) -> int:
        """Number of angular triplets ``T = Σ_i n_i (n_i − 1) / 2``, without building them."""
        counts = np.bincount(self.centers, minlength=self.n_atoms).astype(np.int64)
        return int((counts * (counts - 1) // 2).sum())

    @property
    def n_atoms(self) -> int:
        """Number of atoms in the batch."""
        return int(self.species.shape[0])

    @property
    def n_structures(self) -> int:
        """Number of structures in the batch."""
        return int(self.cells.shape[0])

    def tensors(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> dict:
        """The graph as tensors on ``device``: floats in ``dtype``, indices as int64."""
        as_float = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        as_long = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        centers = as_long(self.centers)
        if self._triplets is not None:
            triplets = as_long(self._triplets)
        else:  # built where they are used, rather than built here and copied over
            triplets = pair_triplets(centers, self.n_atoms)
            if triplets.device.type == "cpu":
                self._triplets = triplets.numpy()
        return {
            "positions": as_float(self.positions),
            "cells": as_float(self.cells),
            "species": as_long(self.species),
            "structure": as_long(self.structure),
            "centers": centers,
            "neighbors": as_long(self.neighbors),
            "shifts": as_float(self.shifts),
            "triplets": triplets,
            "n_structures": self.n_structures,
        }


def pair_triplets(centers: np.ndarray | torch.Tensor, n_atoms: int) -> np.ndarray | torch.Tensor:
    """All unordered pairs of pairs that share a centre, for a centre-sorted pair list.

    Returns ``(T, 2)`` pair indices ``(a, b)`` with ``a < b`` and ``centers[a] == centers[b]``;
    ``T = Σ_i n_i (n_i − 1) / 2``, as a NumPy array for a NumPy ``centers`` and as a tensor on
    ``centers``' device for a tensor. Fully vectorised: the local index ``q`` of a triplet of
    centre ``i`` is mapped to its position ``(a, b)`` in the upper triangle by inverting the
    triangular numbers.
    """
    if isinstance(centers, np.ndarray):
        return pair_triplets(torch.from_numpy(centers.astype(np.int64, copy=False)), n_atoms).numpy()
    device = centers.device
    counts = torch.bincount(centers, minlength=n_atoms)
    starts = torch.cumsum(counts, 0) - counts
    n_trip = counts * (counts - 1) // 2
    total = int(n_trip.sum())
    if total == 0:
        return torch.zeros((0, 2), dtype=torch.long, device=device)
    owner = torch.repeat_interleave(torch.arange(n_atoms, device=device), n_trip, output_size=total)
    q = torch.arange(total, device=device) - torch.repeat_interleave(
        torch.cumsum(n_trip, 0) - n_trip, n_trip, output_size=total
    )
    b = torch.floor((1.0 + torch.sqrt(1.0 + 8.0 * q.double())) / 2.0).long()
    # exact integer correction of the floating-point square root
    b -= ((b * (b - 1) // 2) > q).long()
    b += (((b + 1) * b // 2) <= q).long()
    a = q - b * (b - 1) // 2
    base = starts[owner]
    return torch.stack([base + a, base + b], dim=1)


def molecule_pairs(
    positions: torch.Tensor, counts: torch.Tensor | np.ndarray, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered pairs ``i ≠ j`` closer than ``cutoff`` within each molecule, on ``positions``' device.

    ``positions`` ``(A, 3)`` holds the molecules one after another, ``counts`` their atom
    counts. Every pair of atoms of a molecule is enumerated (``Σ n_k²``, as TorchANI's
    all-pairs search does for molecules), so this suits batches of small molecules: it runs
    where the model runs, without a round trip through the CPU. Returns the centre-sorted
    ``centers``, ``neighbors`` and the distances of the pairs kept.
    """
    device = positions.device
    counts = torch.as_tensor(counts, dtype=torch.long).cpu()
    squares = counts * counts
    total = int(squares.sum())
    counts, squares = counts.to(device), squares.to(device)
    molecule = torch.repeat_interleave(torch.arange(counts.shape[0], device=device), squares, output_size=total)
    # local index q of an ordered pair of molecule k: i = q // n_k, j = q % n_k
    q = torch.arange(total, device=device) - (torch.cumsum(squares, 0) - squares)[molecule]
    n = counts[molecule]
    first = (torch.cumsum(counts, 0) - counts)[molecule]
    centers, neighbors = first + torch.div(q, n, rounding_mode="floor"), first + q % n
    distances = torch.linalg.vector_norm(positions[neighbors] - positions[centers], dim=-1)
    keep = torch.nonzero((distances < cutoff) & (centers != neighbors)).squeeze(1)
    return centers[keep], neighbors[keep], distances[keep]


def molecule_graph(
    positions: torch.Tensor,
    species: torch.Tensor,
    counts: torch.Tensor | np.ndarray,
    cutoff: float,
    *,
    elements: Sequence[str] | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    labels: Sequence[str] | None = None,
) -> dict:
    """The graph dictionary of :meth:`NeighborGraph.tensors` for molecules already held as tensors.

    The pairs come from :func:`molecule_pairs` and the angular triplets from
    :func:`pair_triplets`, both on ``positions``' device, so a batch whose positions are on
    the GPU never leaves it. Molecules have no periodic images: ``shifts`` is None and the cells
    are zero. Raises :class:`StructureError` naming the molecule (``labels[k]``, else its index)
    and the two atoms when two atoms are closer than ``min_distance``.
    """
    device = positions.device
    counts_cpu = torch.as_tensor(counts, dtype=torch.long).cpu()
    centers, neighbors, distances = molecule_pairs(positions, counts_cpu, cutoff)
    n_molecules = counts_cpu.shape[0]
    structure = torch.repeat_interleave(
        torch.arange(n_molecules, device=device), counts_cpu.to(device), output_size=positions.shape[0]
    )
    if distances.numel() and bool((distances < min_distance).any()):
        k = int(torch.argmin(distances))
        i, j = int(centers[k]), int(neighbors[k])
        owner = int(structure[i])
        first = int(counts_cpu[:owner].sum())
        symbol = lambda atom: elements[int(species[atom])] if elements is not None else "?"  # noqa: E731
        raise StructureError(
            labels[owner] if labels is not None else f"#{owner}",
            f"atoms {i - first} ({symbol(i)}) and {j - first} ({symbol(j)}) are {float(distances[k]):.3f} Å "
            f"apart, closer than the minimum distance {min_distance:g} Å",
        )
    return {
        "positions": positions,
        "cells": positions.new_zeros(n_molecules, 3, 3),
        "species": species,
        "structure": structure,
        "centers": centers,
        "neighbors": neighbors,
        "shifts": None,  # molecules: no periodic images (pair_vectors then skips the cell term)
        "triplets": pair_triplets(centers, positions.shape[0]),
        "n_structures": n_molecules,
    }


def _perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    cross = np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]])
    return volume / np.maximum(np.linalg.norm(cross, axis=1), 1e-300)


@dataclass
class _Batch:
    """The validated arrays of a batch of structures, read once from their ASE Atoms."""

    positions: np.ndarray  # (A, 3)
    counts: np.ndarray  # (S,) atoms per structure
    offsets: np.ndarray  # (S,) index of each structure's first atom
    cells: np.ndarray  # (S, 3, 3)
    pbc: np.ndarray  # (S, 3) bool
    species: np.ndarray  # (A,)

    def owner(self, atom: int) -> int:
        """The structure that global atom ``atom`` belongs to."""
        return int(np.searchsorted(self.offsets, atom, side="right") - 1)


def _read_structures(structures, label_of, elements, cutoff: float, allow_self_images: bool) -> _Batch:
    """Positions, cells, pbc and species of all ``structures``, refused with a named reason where bad.

    The checks run on the concatenated arrays, not structure by structure: a batch of a
    thousand small molecules is read in a few milliseconds.
    """
    positions = [np.asarray(atoms.positions, dtype=np.float64) for atoms in structures]
    counts = np.fromiter((p.shape[0] for p in positions), dtype=np.int64, count=len(positions))
    if (counts == 0).any():
        raise StructureError(label_of(int(np.argmin(counts))), "has no atoms")
    offsets = np.cumsum(counts) - counts
    owner = lambda atom: int(np.searchsorted(offsets, atom, side="right") - 1)  # noqa: E731
    all_positions = np.concatenate(positions)
    finite = np.isfinite(all_positions).all(axis=1)
    if not finite.all():
        atom = int(np.argmin(finite))
        bad = owner(atom)
        raise StructureError(label_of(bad), f"atom {atom - offsets[bad]} has a NaN or infinite coordinate")
    z_to_species = np.full(len(chemical_symbols), -1, dtype=np.int64)  # atomic number -> model element index
    for k, symbol in enumerate(elements):
        z_to_species[atomic_numbers[symbol]] = k
    numbers = np.concatenate([atoms.numbers for atoms in structures])
    species = z_to_species[np.clip(numbers, 0, len(z_to_species) - 1)]
    if (species < 0).any():
        bad = owner(int(np.argmin(species)))
        own = slice(offsets[bad], offsets[bad] + counts[bad])
        unknown = sorted({chemical_symbols[z] for z in numbers[own][species[own] < 0]})
        raise StructureError(
            label_of(bad),
            f"element(s) {', '.join(unknown)} not in the model (model elements: {', '.join(elements)})",
        )
    pbc = np.array([atoms.pbc for atoms in structures], dtype=bool).reshape(-1, 3)
    cells = np.array([atoms.cell.array for atoms in structures], dtype=np.float64).reshape(-1, 3, 3)
    for index in np.nonzero(pbc.any(axis=1))[0]:
        _check_cell(cells[index], pbc[index], label_of(int(index)), cutoff, allow_self_images)
    return _Batch(all_positions, counts, offsets, cells, pbc, species)


def _check_cell(cell: np.ndarray, pbc: np.ndarray, label: str, cutoff: float, allow_self_images: bool) -> None:
    if not np.isfinite(cell).all():
        raise StructureError(label, "the cell has NaN or infinite entries")
    if abs(np.linalg.det(cell)) < 1e-6:
        raise StructureError(label, "is periodic but its cell has zero volume")
    widths = _perpendicular_widths(cell)
    too_small = [k for k in range(3) if pbc[k] and widths[k] < cutoff]
    if too_small and not allow_self_images:
        k = too_small[0]
        raise StructureError(
            label,
            f"the periodic cell is {widths[k]:.3f} Å wide along cell vector {k} (perpendicular "
            f"width), smaller than the {cutoff:g} Å cutoff, so atoms would see their own periodic "
            "images; repeat the cell (e.g. atoms.repeat) or allow self-images explicitly",
        )


def _molecule_layout(positions: np.ndarray, starts: np.ndarray, cutoff: float) -> np.ndarray:
    """Translations, ``(S, 3)``, that place non-periodic structures on a grid further apart than ``cutoff``.

    ``positions`` holds the molecules one after another, molecule ``k`` from row ``starts[k]``.
    All molecules then go through one neighbour search instead of one call each; the
    translations never reach the descriptor, which recomputes vectors from the original
    positions.
    """
    lows = np.minimum.reduceat(positions, starts, axis=0)
    highs = np.maximum.reduceat(positions, starts, axis=0)
    spacing = float((highs - lows).max()) + cutoff + 1.0
    side = int(np.ceil(len(starts) ** (1 / 3)))
    k = np.arange(len(starts))
    grid = np.stack([k % side, (k // side) % side, k // side**2], axis=1).astype(np.float64)
    return grid * spacing - lows


def graph_tensors(
    structures: Sequence,
    elements: Sequence[str],
    cutoff: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    allow_self_images: bool = False,
    labels: Sequence[str] | None = None,
) -> dict:
    """Validate ``structures`` and return their graph as tensors on ``device`` (see :meth:`NeighborGraph.tensors`).

    On a GPU a batch of molecules small enough for :data:`ALL_PAIRS_LIMIT` is searched there
    (:func:`molecule_graph`): only the validated positions and species are copied over. Any
    other batch, and every batch for the CPU, goes through :func:`build_graph` (vesin).
    The checks and their errors are those of :func:`build_graph`.
    """
    structures = list(structures)
    device = torch.device(device)
    if device.type == "cpu" or not _all_pairs_fit(structures):
        graph = build_graph(
            structures,
            elements,
            cutoff,
            min_distance=min_distance,
            allow_self_images=allow_self_images,
            labels=labels,
        )
        return graph.tensors(device, dtype)
    if min_distance > cutoff:
        raise ValueError(f"min_distance {min_distance} must not exceed the cutoff {cutoff}")
    label_list = labels if labels is not None else _LazyLabels(structures, len(structures) == 1)
    batch = _read_structures(structures, label_list.__getitem__, list(elements), cutoff, allow_self_images)
    return molecule_graph(
        torch.as_tensor(batch.positions, dtype=dtype).to(device, non_blocking=True),
        torch.as_tensor(batch.species).to(device, non_blocking=True),
        batch.counts,
        cutoff,
        elements=list(elements),
        min_distance=min_distance,
        labels=label_list,
    )


def _all_pairs_fit(structures: Sequence) -> bool:
    """Whether ``structures`` are all molecules with at most :data:`ALL_PAIRS_LIMIT` ordered atom pairs."""
    pairs = 0
    for atoms in structures:
        if atoms.pbc.any():
            return False
        pairs += len(atoms) ** 2
    return pairs <= ALL_PAIRS_LIMIT


class _LazyLabels:
    """``labels[k]`` of structure ``k`` for error messages, built only when asked for."""

    def __init__(self, structures: Sequence, single: bool):
        self._structures = structures
        self._single = single

    def __getitem__(self, index: int) -> str:
        return structure_label(self._structures[index], None if self._single else index)


def build_graph(
    structures: Sequence,
    elements: Sequence[str],
    cutoff: float,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    allow_self_images: bool = False,
    triplets: bool = False,
    labels: Sequence[str] | None = None,
) -> NeighborGraph:
    """Validate ``structures`` (ASE Atoms) and build their neighbour graph.

    The angular triplets are built on first use (:attr:`NeighborGraph.triplets`, or on the
    target device by :meth:`NeighborGraph.tensors`); ``triplets=True`` builds them now.

    Raises :class:`StructureError` naming the structure for: no atoms, NaN or infinite
    coordinates, an element outside ``elements``, two atoms closer than ``min_distance`` Å,
    a degenerate cell, or a periodic cell narrower than ``cutoff`` (unless
    ``allow_self_images``; the neighbour list handles multiple images correctly).
    """
    if min_distance > cutoff:
        raise ValueError(f"min_distance {min_distance} must not exceed the cutoff {cutoff}")
    structures = list(structures)
    single = len(structures) == 1

    label = (labels if labels is not None else _LazyLabels(structures, single)).__getitem__
    batch = _read_structures(structures, label, list(elements), cutoff, allow_self_images)
    counts, offsets = batch.counts, batch.offsets
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    ci, cj, cs = [], [], []

    def add_pairs(i, j, shift, d):
        if d.size and d.min() < min_distance:
            k = int(np.argmin(d))
            owner = batch.owner(i[k])
            a, b = int(i[k] - offsets[owner]), int(j[k] - offsets[owner])
            symbols = structures[owner].get_chemical_symbols()
            raise StructureError(
                label(owner),
                f"atoms {a} ({symbols[a]}) and {b} ({symbols[b]}) are {d[k]:.3f} Å apart, "
                f"closer than the minimum distance {min_distance:g} Å",
            )
        ci.append(i)
        cj.append(j)
        cs.append(shift)

    periodic = batch.pbc.any(axis=1)
    molecules = np.nonzero(~periodic)[0]
    if len(molecules):
        atom_is_molecular = np.repeat(~periodic, counts)
        points = batch.positions[atom_is_molecular]
        local_counts = counts[molecules]
        starts = np.cumsum(local_counts) - local_counts
        points = points + np.repeat(_molecule_layout(points, starts, cutoff), local_counts, axis=0)
        to_global = np.nonzero(atom_is_molecular)[0]
        i, j, d = calculator.compute(points, np.zeros((3, 3)), False, "ijd")
        i, j = to_global[i.astype(np.int64)], to_global[j.astype(np.int64)]
        add_pairs(i, j, np.zeros((len(i), 3)), d)
    for k in np.nonzero(periodic)[0]:
        own = slice(offsets[k], offsets[k] + counts[k])
        i, j, shift, d = calculator.compute(batch.positions[own], batch.cells[k], batch.pbc[k].tolist(), "ijSd")
        add_pairs(i.astype(np.int64) + offsets[k], j.astype(np.int64) + offsets[k], shift.astype(np.float64), d)

    centers = np.concatenate(ci)
    order = np.argsort(centers, kind="stable")
    centers = centers[order]
    graph = NeighborGraph(
        positions=batch.positions,
        cells=batch.cells,
        species=batch.species,
        structure=np.repeat(np.arange(len(structures), dtype=np.int64), counts),
        centers=centers,
        neighbors=np.concatenate(cj)[order],
        shifts=np.concatenate(cs).reshape(-1, 3)[order],
    )
    if triplets:
        graph.triplets  # noqa: B018 (built now, on the CPU, rather than on first use)
    return graph
