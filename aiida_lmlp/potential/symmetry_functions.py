"""Vectorised geometry shared by the eeACSF and ACSF descriptors.

Both descriptors are sums over neighbour pairs ``(i, j)`` and over unordered neighbour pairs
``{j, k}`` of a centre ``i`` (angular triplets) of a geometric factor times an element factor.
The element factor depends only on the species of ``j`` (radial) or of ``{j, k}`` (angular),
so the geometric factors are first summed per centre and per neighbour species (radial) or
species pair (angular) with one ``index_add_`` each, like TorchANI's AEV computer, and the
element factors are applied afterwards by a small dense contraction. The work per pair and
per triplet is therefore the same for both descriptors and for any number of elements.

Shapes in comments: ``A`` atoms, ``P`` pairs, ``T`` triplets, ``S`` species,
``Q = S (S + 1) / 2`` unordered species pairs, ``F`` geometric features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import structure_label
from .neighbors import DEFAULT_MIN_DISTANCE, build_graph

__all__ = [
    "AtomCenteredDescriptor",
    "bump_cutoff",
    "cosine_cutoff",
    "safe_sqrt",
    "species_pair_table",
]


def bump_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Eq. 5 of Eckhoff & Reiher: ``exp(1 − 1 / (1 − r²/Rc²))`` for ``r < Rc``, else 0.

    All derivatives vanish at ``Rc``. The argument is clamped so that neither the value nor
    the gradient becomes NaN at or beyond the cutoff.
    """
    x = 1.0 - (r / cutoff) ** 2
    inside = x > 0
    safe_x = torch.where(inside, x, torch.ones_like(x))
    return torch.where(inside, torch.exp(1.0 - 1.0 / safe_x), torch.zeros_like(x))


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Behler's cosine cutoff (Tokita & Behler, Eq. 4): ``0.5 [cos(π r / Rc) + 1]`` for ``r ≤ Rc``."""
    value = 0.5 * (torch.cos(torch.pi * r / cutoff) + 1.0)
    return torch.where(r <= cutoff, value, torch.zeros_like(r))


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Square root whose gradient is 0 (not infinite) where ``x == 0``.

    A function with no contributing neighbour is exactly 0 and stays 0 under small
    displacements, so 0 is the correct one-sided derivative (as in the authors' code).
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def species_pair_table(n_species: int) -> np.ndarray:
    """``(S, S)`` symmetric table of the index of the unordered species pair ``{a, b}``."""
    table = np.zeros((n_species, n_species), dtype=np.int64)
    index = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = index
            index += 1
    return table


class AtomCenteredDescriptor(torch.nn.Module):
    """Base class of the atom-centred symmetry-function descriptors.

    Subclasses define :meth:`forward` and the configuration round trip. ``len(descriptor)``
    is the number of functions per atom; :attr:`feature_names` names each of them.
    """

    kind: str = ""
    elements: tuple[str, ...]
    cutoff: float
    feature_names: list[str]

    def __len__(self) -> int:
        return len(self.feature_names)

    def __init__(self, elements: Sequence[str], cutoff: float):
        super().__init__()
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        self.elements = tuple(elements)
        self.cutoff = float(cutoff)
        n = len(self.elements)
        self.register_buffer("pair_table", torch.as_tensor(species_pair_table(n)), persistent=False)

    @property
    def n_species(self) -> int:
        """Number of elements the descriptor distinguishes."""
        return len(self.elements)

    @property
    def n_species_pairs(self) -> int:
        """Number of unordered element pairs."""
        return self.n_species * (self.n_species + 1) // 2

    # -- geometry ---------------------------------------------------------------------------

    @staticmethod
    def pair_vectors(positions: torch.Tensor, cells: torch.Tensor, graph: dict) -> torch.Tensor:
        """Vectors ``r_j + shift − r_i`` of all pairs, ``(P, 3)``, differentiable in positions and cells."""
        centers, neighbors = graph["centers"], graph["neighbors"]
        cell_of_pair = cells[graph["structure"][centers]]  # (P, 3, 3)
        offsets = torch.einsum("pk,pkl->pl", graph["shifts"], cell_of_pair)
        return positions[neighbors] - positions[centers] + offsets

    def radial_sums(self, features: torch.Tensor, graph: dict, n_atoms: int) -> torch.Tensor:
        """Sum pair features ``(P, F)`` per centre and neighbour species: ``(A, S, F)``."""
        s = self.n_species
        index = graph["centers"] * s + graph["species"][graph["neighbors"]]
        out = features.new_zeros(n_atoms * s, features.shape[1])
        out.index_add_(0, index, features)
        return out.view(n_atoms, s, features.shape[1])

    def angular_sums(self, features: torch.Tensor, graph: dict, n_atoms: int) -> torch.Tensor:
        """Sum triplet features ``(T, F)`` per centre and unordered neighbour-species pair: ``(A, Q, F)``."""
        q = self.n_species_pairs
        pair_a, pair_b = graph["triplets"][:, 0], graph["triplets"][:, 1]
        species = graph["species"]
        neighbors = graph["neighbors"]
        pair_species = self.pair_table[species[neighbors[pair_a]], species[neighbors[pair_b]]]
        index = graph["centers"][pair_a] * q + pair_species
        out = features.new_zeros(n_atoms * q, features.shape[1])
        out.index_add_(0, index, features)
        return out.view(n_atoms, q, features.shape[1])

    @staticmethod
    def triplet_geometry(vectors: torch.Tensor, distances: torch.Tensor, graph: dict):
        """``cos θ_ijk`` of every triplet and the indices of its two pairs."""
        pair_a, pair_b = graph["triplets"][:, 0], graph["triplets"][:, 1]
        cos = (vectors[pair_a] * vectors[pair_b]).sum(-1) / (distances[pair_a] * distances[pair_b])
        return cos, pair_a, pair_b

    # -- API --------------------------------------------------------------------------------

    def forward(self, positions: torch.Tensor, cells: torch.Tensor, graph: dict) -> torch.Tensor:
        """Descriptor matrix ``(A, len(self))`` of a neighbour graph (see :mod:`.neighbors`)."""
        raise NotImplementedError

    def compute(
        self,
        atoms,
        *,
        min_distance: float = DEFAULT_MIN_DISTANCE,
        allow_self_images: bool = False,
    ) -> np.ndarray:
        """Descriptor of one ASE ``Atoms`` object as a float64 array ``(n_atoms, len(self))``."""
        graph = build_graph(
            [atoms],
            self.elements,
            self.cutoff,
            min_distance=min_distance,
            allow_self_images=allow_self_images,
            labels=[structure_label(atoms)],
        )
        t = graph.tensors(dtype=torch.float64)
        with torch.no_grad():
            values = self(t["positions"], t["cells"], t)
        return values.cpu().numpy()

    def to_config(self) -> dict:
        """JSON-serialisable parameters; ``descriptor_from_config`` rebuilds the descriptor."""
        raise NotImplementedError
