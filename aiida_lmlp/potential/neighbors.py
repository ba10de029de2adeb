"""Neighbour graphs of one or many structures: validated input, pairs and angular triplets.

The pair list comes from `vesin` (chosen over matscipy and ASE on measured speed, see
``benchmarks/neighbour_lists.py``). Everything here is NumPy and runs once per structure;
the differentiable geometry (distances, angles) is computed from these indices in PyTorch
so that forces and stress follow by automatic differentiation.

Several structures are concatenated into one graph: atom indices are global, and
``structure`` maps every atom to its structure, so a batch is evaluated in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import vesin

from .errors import StructureError, structure_label

__all__ = ["NeighborGraph", "build_graph", "pair_triplets"]

#: Default smallest interatomic distance accepted, in Å.
DEFAULT_MIN_DISTANCE = 0.5


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
    triplets: np.ndarray  # (T, 2) int64, indices of the pairs (i→j, i→k), j before k

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
        return {
            "positions": as_float(self.positions),
            "cells": as_float(self.cells),
            "species": as_long(self.species),
            "structure": as_long(self.structure),
            "centers": as_long(self.centers),
            "neighbors": as_long(self.neighbors),
            "shifts": as_float(self.shifts),
            "triplets": as_long(self.triplets),
            "n_structures": self.n_structures,
        }


def pair_triplets(centers: np.ndarray, n_atoms: int) -> np.ndarray:
    """All unordered pairs of pairs that share a centre, for a centre-sorted pair list.

    Returns ``(T, 2)`` pair indices ``(a, b)`` with ``a < b`` and ``centers[a] == centers[b]``;
    ``T = Σ_i n_i (n_i − 1) / 2``. Fully vectorised: the local index ``q`` of a triplet of
    centre ``i`` is mapped to its position ``(a, b)`` in the upper triangle by inverting the
    triangular numbers.
    """
    counts = np.bincount(centers, minlength=n_atoms).astype(np.int64)
    starts = np.cumsum(counts) - counts
    n_trip = counts * (counts - 1) // 2
    total = int(n_trip.sum())
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    owner = np.repeat(np.arange(n_atoms, dtype=np.int64), n_trip)
    q = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_trip) - n_trip, n_trip)
    b = np.floor((1.0 + np.sqrt(1.0 + 8.0 * q)) / 2.0).astype(np.int64)
    # exact integer correction of the floating-point square root
    b -= (b * (b - 1) // 2) > q
    b += ((b + 1) * b // 2) <= q
    a = q - b * (b - 1) // 2
    base = starts[owner]
    return np.stack([base + a, base + b], axis=1)


def _perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    cross = np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]])
    return volume / np.maximum(np.linalg.norm(cross, axis=1), 1e-300)


def _check_structure(atoms, label_of, index: int, elements: Sequence[str], cutoff: float, allow_self_images: bool):
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    if positions.shape[0] == 0:
        raise StructureError(label_of(index), "has no atoms")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise StructureError(label_of(index), f"atom {int(np.argmax(bad))} has a NaN or infinite coordinate")
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - set(elements))
    if unknown:
        raise StructureError(
            label_of(index), f"element(s) {', '.join(unknown)} not in the model (model elements: {', '.join(elements)})"
        )
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    cell = np.asarray(atoms.get_cell(), dtype=np.float64)
    if pbc.any():
        if not np.isfinite(cell).all():
            raise StructureError(label_of(index), "the cell has NaN or infinite entries")
        if abs(np.linalg.det(cell)) < 1e-6:
            raise StructureError(label_of(index), "is periodic but its cell has zero volume")
        widths = _perpendicular_widths(cell)
        too_small = [k for k in range(3) if pbc[k] and widths[k] < cutoff]
        if too_small and not allow_self_images:
            k = too_small[0]
            raise StructureError(
                label_of(index),
                f"the periodic cell is {widths[k]:.3f} Å wide along cell vector {k} (perpendicular "
                f"width), smaller than the {cutoff:g} Å cutoff, so atoms would see their own periodic "
                "images; repeat the cell (e.g. atoms.repeat) or allow self-images explicitly",
            )
    return positions, cell, pbc, symbols


def _molecule_layout(positions: list[np.ndarray], cutoff: float) -> list[np.ndarray]:
    """Translations that place non-periodic structures on a grid, further apart than ``cutoff``.

    All molecules then go through one neighbour search instead of one call each; the
    translations never reach the descriptor, which recomputes vectors from the original
    positions.
    """
    lows = [p.min(axis=0) for p in positions]
    extent = max(float((p.max(axis=0) - low).max()) for p, low in zip(positions, lows))
    spacing = extent + cutoff + 1.0
    side = int(np.ceil(len(positions) ** (1 / 3)))
    return [
        np.array([k % side, (k // side) % side, k // side**2], dtype=np.float64) * spacing - low
        for k, low in enumerate(lows)
    ]


def build_graph(
    structures: Sequence,
    elements: Sequence[str],
    cutoff: float,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    allow_self_images: bool = False,
    triplets: bool = True,
    labels: Sequence[str] | None = None,
) -> NeighborGraph:
    """Validate ``structures`` (ASE Atoms) and build their neighbour graph.

    Raises :class:`StructureError` naming the structure for: no atoms, NaN or infinite
    coordinates, an element outside ``elements``, two atoms closer than ``min_distance`` Å,
    a degenerate cell, or a periodic cell narrower than ``cutoff`` (unless
    ``allow_self_images``; the neighbour list handles multiple images correctly).
    """
    if min_distance > cutoff:
        raise ValueError(f"min_distance {min_distance} must not exceed the cutoff {cutoff}")
    structures = list(structures)
    single = len(structures) == 1

    def label(index: int) -> str:  # built only when an error is raised
        if labels is not None:
            return labels[index]
        return structure_label(structures[index], None if single else index)

    element_index = {symbol: k for k, symbol in enumerate(elements)}
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    checked = [
        _check_structure(atoms, label, index, elements, cutoff, allow_self_images)
        for index, atoms in enumerate(structures)
    ]
    counts = np.array([c[0].shape[0] for c in checked], dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    ci, cj, cs = [], [], []

    def add_pairs(i, j, shift, d):
        if d.size and d.min() < min_distance:
            k = int(np.argmin(d))
            owner = int(np.searchsorted(offsets, i[k], side="right") - 1)
            a, b = int(i[k] - offsets[owner]), int(j[k] - offsets[owner])
            symbols = checked[owner][3]
            raise StructureError(
                label(owner),
                f"atoms {a} ({symbols[a]}) and {b} ({symbols[b]}) are {d[k]:.3f} Å apart, "
                f"closer than the minimum distance {min_distance:g} Å",
            )
        ci.append(i)
        cj.append(j)
        cs.append(shift)

    molecules = [k for k, c in enumerate(checked) if not c[2].any()]
    if molecules:
        layout = _molecule_layout([checked[k][0] for k in molecules], cutoff)
        points = np.concatenate([checked[k][0] + shift for k, shift in zip(molecules, layout)])
        to_global = np.concatenate([np.arange(counts[k]) + offsets[k] for k in molecules])
        i, j, d = calculator.compute(points, np.zeros((3, 3)), False, "ijd")
        i, j = to_global[i.astype(np.int64)], to_global[j.astype(np.int64)]
        add_pairs(i, j, np.zeros((len(i), 3)), d)
    for k, (positions, cell, pbc, _) in enumerate(checked):
        if not pbc.any():
            continue
        i, j, shift, d = calculator.compute(positions, cell, pbc.tolist(), "ijSd")
        add_pairs(i.astype(np.int64) + offsets[k], j.astype(np.int64) + offsets[k], shift.astype(np.float64), d)

    centers = np.concatenate(ci)
    order = np.argsort(centers, kind="stable")
    centers = centers[order]
    n_atoms = int(counts.sum())
    graph = NeighborGraph(
        positions=np.concatenate([c[0] for c in checked]),
        cells=np.stack([c[1] for c in checked]),
        species=np.fromiter((element_index[x] for c in checked for x in c[3]), dtype=np.int64, count=n_atoms),
        structure=np.repeat(np.arange(len(structures), dtype=np.int64), counts),
        centers=centers,
        neighbors=np.concatenate(cj)[order],
        shifts=np.concatenate(cs).reshape(-1, 3)[order],
        triplets=np.zeros((0, 2), dtype=np.int64),
    )
    if triplets:
        graph.triplets = pair_triplets(centers, n_atoms)
    return graph
