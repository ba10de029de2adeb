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
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jvp, vmap

from ...formats.errors import structure_label
from ..descriptors.neighbors import DEFAULT_MIN_DISTANCE, build_graph

__all__ = [
    "AtomCenteredDescriptor",
    "BucketSlots",
    "SumsJacobian",
    "bump_cutoff",
    "cosine_cutoff",
    "half_one_plus_lambda_cos",
    "safe_sqrt",
    "species_pair_table",
]


def bump_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Eq. 5 of Eckhoff & Reiher: ``exp(1 − 1 / (1 − r²/Rc²))`` for ``r < Rc``, else 0.

    All derivatives vanish at ``Rc``. The argument is clamped so that neither the value nor
    the gradient becomes NaN at or beyond the cutoff.
    """
    x = 1.0 - (r * r) * (1.0 / cutoff**2)
    inside = x > 0
    # scalars, not ones_like/zeros_like: each saves a kernel launch, which is what small GPU batches pay for
    return torch.where(inside, torch.exp(1.0 - 1.0 / torch.where(inside, x, 1.0)), 0.0)


def bump_cutoff_derivative(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``d f_c / dr`` of :func:`bump_cutoff`: ``f_c(r) · (−2r / Rc²) / (1 − r²/Rc²)²`` for ``r < Rc``, else 0."""
    x = 1.0 - (r * r) * (1.0 / cutoff**2)
    inside = x > 0
    safe = torch.where(inside, x, 1.0)
    return torch.where(inside, torch.exp(1.0 - 1.0 / safe) * (-2.0 / cutoff**2) * r / (safe * safe), 0.0)


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
    return torch.where(positive, torch.sqrt(torch.where(positive, x, 1.0)), 0.0)


def half_one_plus_lambda_cos(cos: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """``½ (1 + λ cos θ)`` for every λ, ``(T, L)``: never negative, with the gradient of the formula.

    At a straight angle rounding can put ``cos θ`` an ulp beyond ±1. The value is then raised to
    0, but the gradient stays that of ``½ (1 + λ cos θ)``: a clamp's zero gradient there would
    flip the forces by about ``|∂cos θ/∂r|`` (10⁻⁹ eV/Å for a Cl–C–F angle 10⁻⁸ rad from 180°)
    with the last bit of ``cos θ``, so that CPU and GPU rounding gave different forces.
    """
    raw = 0.5 + 0.5 * lambdas.to(cos.dtype) * cos[:, None]
    return raw - raw.clamp_max(0.0).detach()


def species_pair_table(n_species: int) -> np.ndarray:
    """``(S, S)`` symmetric table of the index of the unordered species pair ``{a, b}``."""
    table = np.zeros((n_species, n_species), dtype=np.int64)
    index = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = index
            index += 1
    return table


#: descriptors with fewer species (at most 6 buckets per atom) keep every bucket
#: (:meth:`AtomCenteredDescriptor.bucket_slots`)
MIN_SPECIES_FOR_SLOTS = 4
#: ... and batches with fewer numbers in all their sums (one SN2 conformation with 8 elements: 3.5 k;
#: 8 conformations: 26 k, where the slots did not pay; 200: 650 k, where they did)
MIN_SUMS_FOR_SLOTS = 1 << 16

#: temporaries per block of :meth:`AtomCenteredDescriptor.value_pair_gradients` on the CPU: cotangent
#: rows and the rows gathered for the block's pairs and triplets (6–8 MB measured fastest for 200 SN2
#: conformations with 10 members, 2 and 12 MB slower; a 1002-atom water box 2.4× faster than in one block)
CPU_BLOCK_BYTES = 8 << 20
#: the same on a GPU: memory is no concern below this, kernel launches per block are
DEVICE_BLOCK_BYTES = 1 << 30


@dataclass
class BucketSlots:
    """The species buckets each atom's sums use, numbered per atom.

    A molecule's atom sees few species: in 200 SN2 conformations with an 8-element descriptor,
    at most 4 of the 8 radial and 8 of the 36 angular buckets of an atom have a neighbour (or a
    neighbour pair). With slots (:meth:`AtomCenteredDescriptor.bucket_slots`) the sums and the
    per-member cotangent rows of :meth:`AtomCenteredDescriptor.value_pair_gradients` keep these
    buckets only; the others are zero and would never be gathered.
    """

    radial_buckets: torch.Tensor  # (A, S'): species of each radial slot (padding: 0, never gathered)
    radial_slot: torch.Tensor  # (A, S): slot of each species, where the atom uses it
    angular_buckets: torch.Tensor  # (A, Q'): species pair of each angular slot
    angular_slot: torch.Tensor  # (A, Q)

    def of_atoms(self, atoms: torch.Tensor | slice) -> BucketSlots:
        """The slots of some atoms (an index tensor or a slice), in that order."""
        return BucketSlots(
            self.radial_buckets[atoms], self.radial_slot[atoms], self.angular_buckets[atoms], self.angular_slot[atoms]
        )


def used_bucket_slots(rows: torch.Tensor, n_atoms: int, n_buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom slots of the buckets in use, from their flat row numbers ``atom · n_buckets + bucket``.

    Returns the bucket of every slot ``(A, width)`` (width: the most buckets any atom uses;
    padding slots hold bucket 0) and the slot of every bucket ``(A, n_buckets)`` (meaningful
    where the atom uses the bucket).
    """
    used = torch.zeros(n_atoms * n_buckets, dtype=torch.bool, device=rows.device)
    used[rows] = True
    used = used.view(n_atoms, n_buckets)
    slot = used.cumsum(1) - 1
    width = max(1, int(used.sum(1).max())) if n_atoms else 1
    buckets = torch.zeros(n_atoms, width, dtype=torch.long, device=rows.device)
    atom, bucket = used.nonzero(as_tuple=True)
    buckets[atom, slot[atom, bucket]] = bucket
    return buckets, slot


@dataclass
class SumsJacobian:
    """Species-resolved sums of a batch and their derivatives with respect to the pair vectors."""

    radial: torch.Tensor  # (A, S, E)
    angular: torch.Tensor  # (A, Q, F)
    vectors: torch.Tensor  # (P, 3) pair vectors
    radial_derivative: torch.Tensor  # (P, E): d radial_features / d r
    #: "pair" layout: (P, S, F, 3), Σ over the pair's triplets whose other neighbour has species s
    angular_jacobian: torch.Tensor | None = None
    #: "triplet" layout: (T, F, 6), d triplet_features / d (v_a, v_b) of every triplet
    triplet_jacobian: torch.Tensor | None = None
    #: "triplet" layout, where they pay: the buckets each atom uses; then ``radial`` and ``angular``
    #: are (A, S', E) and (A, Q', F), and so are the per-member cotangent rows
    slots: BucketSlots | None = None

    @property
    def layout(self) -> str:
        """``"pair"`` (condensed phase: many triplets per pair) or ``"triplet"`` (molecules)."""
        return "triplet" if self.triplet_jacobian is not None else "pair"


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
        """Vectors ``r_j + shift − r_i`` of all pairs, ``(P, 3)``, differentiable in positions and cells.

        A graph of molecules only (``shifts`` None, see :func:`.neighbors.molecule_graph`) has no
        periodic images, so no cell term.
        """
        centers, neighbors = graph["centers"], graph["neighbors"]
        # index_select, not indexing: its gradient is an index_add, where that of indexing is an
        # accumulating index_put, which sorts the indices on a GPU (a dozen kernels per gather)
        vectors = positions.index_select(0, neighbors) - positions.index_select(0, centers)
        if graph["shifts"] is None:
            return vectors
        cell_of_pair = cells.index_select(0, graph["structure"].index_select(0, centers))  # (P, 3, 3)
        return vectors + torch.einsum("pk,pkl->pl", graph["shifts"], cell_of_pair)

    def bucket_slots(self, graph: dict, n_atoms: int) -> BucketSlots | None:
        """The species buckets each atom of ``graph`` uses (:class:`BucketSlots`), or None where that
        would not shrink the sums by a quarter at least (every atom sees most species, as in most
        condensed phases), the descriptor has at most :data:`MIN_SPECIES_FOR_SLOTS` − 1 species (at
        most 6 buckets an atom) or the batch's sums are small (:data:`MIN_SUMS_FOR_SLOTS`): there the
        per-atom tables cost more than they save."""
        s, q = self.n_species, self.n_species_pairs
        n_radial, n_angular = len(self.radial_eta), len(self.angular_eta) * len(self.lambdas) * len(self.zetas)
        if s < MIN_SPECIES_FOR_SLOTS or n_atoms * (s * n_radial + q * n_angular) < MIN_SUMS_FOR_SLOTS:
            return None
        centers, triplets = graph["centers"], graph["triplets"]
        neighbor_species = graph["species"][graph["neighbors"]]
        species_pairs = self.pair_table[neighbor_species[triplets[:, 0]], neighbor_species[triplets[:, 1]]]
        radial_buckets, radial_slot = used_bucket_slots(centers * s + neighbor_species, n_atoms, s)
        angular_buckets, angular_slot = used_bucket_slots(centers[triplets[:, 0]] * q + species_pairs, n_atoms, q)
        compact = radial_buckets.shape[1] * n_radial + angular_buckets.shape[1] * n_angular
        if compact > 0.75 * (s * n_radial + q * n_angular):
            return None
        return BucketSlots(radial_buckets, radial_slot, angular_buckets, angular_slot)

    def radial_row_numbers(
        self, center: torch.Tensor, species: torch.Tensor, slots: BucketSlots | None
    ) -> tuple[int, torch.Tensor]:
        """Rows per atom, and the row of each neighbour species ``species`` of a centre ``center``:
        the species itself, or its slot in the centre's ``slots``. Row ``center · width + row``."""
        if slots is None:
            return self.n_species, species
        return slots.radial_buckets.shape[1], slots.radial_slot[center, species]

    def angular_row_numbers(
        self, center: torch.Tensor, pair: torch.Tensor, slots: BucketSlots | None
    ) -> tuple[int, torch.Tensor]:
        """:meth:`radial_row_numbers` for the unordered species pairs ``pair`` of angular triplets."""
        if slots is None:
            return self.n_species_pairs, pair
        return slots.angular_buckets.shape[1], slots.angular_slot[center, pair]

    @staticmethod
    def _sum_per_row(features: torch.Tensor, center: torch.Tensor, row: torch.Tensor, width: int, n_atoms: int):
        out = features.new_zeros(n_atoms * width, features.shape[1])
        out.index_add_(0, center * width + row, features)
        return out.view(n_atoms, width, features.shape[1])

    def radial_sums(
        self, features: torch.Tensor, graph: dict, n_atoms: int, slots: BucketSlots | None = None
    ) -> torch.Tensor:
        """Sum pair features ``(P, F)`` per centre and neighbour species: ``(A, S, F)``, or ``(A, S', F)`` per slot."""
        centers, neighbor_species = graph["centers"], graph["species"][graph["neighbors"]]
        width, row = self.radial_row_numbers(centers, neighbor_species, slots)
        return self._sum_per_row(features, centers, row, width, n_atoms)

    def angular_sums(
        self, features: torch.Tensor, graph: dict, n_atoms: int, slots: BucketSlots | None = None
    ) -> torch.Tensor:
        """Sum triplet features ``(T, F)`` per centre and unordered neighbour-species pair: ``(A, Q, F)``
        (``(A, Q', F)`` in ``slots``)."""
        pair_a, pair_b = graph["triplets"][:, 0], graph["triplets"][:, 1]
        neighbor_species = graph["species"][graph["neighbors"]]
        center = graph["centers"][pair_a]
        pair_species = self.pair_table[neighbor_species[pair_a], neighbor_species[pair_b]]
        width, row = self.angular_row_numbers(center, pair_species, slots)
        return self._sum_per_row(features, center, row, width, n_atoms)

    # -- what a descriptor defines -----------------------------------------------------------

    def radial_features(self, r: torch.Tensor) -> torch.Tensor:
        """Geometric factors of the radial functions per pair, ``(P,) → (P, E)``."""
        raise NotImplementedError

    def angular_pair_features(self, r: torch.Tensor) -> torch.Tensor:
        """The per-pair factor of the angular functions (radial part with cutoff), ``(P,) → (P, E_ang)``."""
        raise NotImplementedError

    def pair_features(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`radial_features` and :meth:`angular_pair_features` of the same pairs.

        Descriptors whose two factors share a form override it to compute both at once.
        """
        return self.radial_features(r), self.angular_pair_features(r)

    def triplet_features(
        self, v_a: torch.Tensor, v_b: torch.Tensor, part_a: torch.Tensor, part_b: torch.Tensor
    ) -> torch.Tensor:
        """Geometric factors of the angular functions per triplet, ``(T, F)``.

        ``v_a``, ``v_b`` are the triplet's pair vectors, ``part_a``, ``part_b`` their
        :meth:`angular_pair_features` (computed once per pair, not per triplet).
        """
        raise NotImplementedError

    def values_from_sums(
        self, radial: torch.Tensor, angular: torch.Tensor, slots: BucketSlots | None = None
    ) -> torch.Tensor:
        """Descriptor matrix ``(A, len(self))`` from the species-resolved sums ``(A, S, E)`` and ``(A, Q, F)``,
        or from the sums of each atom's ``slots`` ``(A, S', E)`` and ``(A, Q', F)``."""
        raise NotImplementedError

    def pair_features_and_derivatives(
        self, r: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`radial_features`, :meth:`angular_pair_features` and their derivatives with respect to ``r``.

        Generic version by forward-mode differentiation; descriptors may override it with closed
        forms (``torch.func`` imports ``torch._dynamo`` on first use: seconds in every process).
        """
        radial, d_radial = jvp(self.radial_features, (r,), (torch.ones_like(r),))
        part, d_part = jvp(self.angular_pair_features, (r,), (torch.ones_like(r),))
        return radial, d_radial, part, d_part

    def triplet_jacobian(self, v_a, v_b, part_a, part_b, d_part_a, d_part_b, out=None):
        """Triplet features ``(T, F)`` and their derivatives with respect to ``v_a`` and ``v_b``, ``(T, F, 3)``.

        ``d_part_*`` are the derivatives of the pair parts with respect to the distance. With
        ``out`` ``(T, F, 6)``, the derivatives are written into it (``v_a`` first) and returned
        as its two halves. Generic version by forward-mode differentiation (six tangents, the
        pair parts following by the chain rule); descriptors may override it with closed forms.
        """
        count = v_a.shape[0]
        basis = torch.eye(6, dtype=v_a.dtype, device=v_a.device)
        tangent_a = basis[:, None, :3].expand(6, count, 3)
        tangent_b = basis[:, None, 3:].expand(6, count, 3)
        u_a = v_a / torch.linalg.vector_norm(v_a, dim=-1, keepdim=True)
        u_b = v_b / torch.linalg.vector_norm(v_b, dim=-1, keepdim=True)
        tangent_part_a = d_part_a * (tangent_a * u_a).sum(-1, keepdim=True)  # (6, t, E)
        tangent_part_b = d_part_b * (tangent_b * u_b).sum(-1, keepdim=True)

        def directional(ta, tb, tpa, tpb):
            return jvp(self.triplet_features, (v_a, v_b, part_a, part_b), (ta, tb, tpa, tpb))

        values, tangents = vmap(directional)(tangent_a, tangent_b, tangent_part_a, tangent_part_b)
        d_a, d_b = tangents[:3].permute(1, 2, 0), tangents[3:].permute(1, 2, 0)
        if out is not None:
            out[..., :3], out[..., 3:] = d_a, d_b
            d_a, d_b = out[..., :3], out[..., 3:]
        return values[0], d_a, d_b

    # -- evaluation -------------------------------------------------------------------------

    def sums(self, positions: torch.Tensor, cells: torch.Tensor, graph: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Species-resolved radial ``(A, S, E)`` and angular ``(A, Q, F)`` sums (differentiable)."""
        return self.sums_from_vectors(self.pair_vectors(positions, cells, graph), graph, positions.shape[0])

    def sums_from_vectors(
        self, vectors: torch.Tensor, graph: dict, n_atoms: int, slots: BucketSlots | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sums of :meth:`sums` from the pair vectors ``(P, 3)`` (per slot with ``slots``)."""
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (P,)
        radial_features, part = self.pair_features(r)  # (P, E), (P, E_ang)
        radial = self.radial_sums(radial_features, graph, n_atoms, slots)
        pair_a, pair_b = graph["triplets"][:, 0], graph["triplets"][:, 1]
        features = self.triplet_features(
            vectors.index_select(0, pair_a),
            vectors.index_select(0, pair_b),
            part.index_select(0, pair_a),
            part.index_select(0, pair_b),
        )
        return radial, self.angular_sums(features, graph, n_atoms, slots)

    def forward(self, positions: torch.Tensor, cells: torch.Tensor, graph: dict) -> torch.Tensor:
        """Descriptor matrix ``(A, len(self))`` of a neighbour graph (see :mod:`.neighbors`).

        The sums go per atom into the buckets it uses (:meth:`bucket_slots`): a molecule's atoms
        see few of a many-element descriptor's species.
        """
        n_atoms = positions.shape[0]
        slots = self.bucket_slots(graph, n_atoms)
        vectors = self.pair_vectors(positions, cells, graph)
        return self.values_from_sums(*self.sums_from_vectors(vectors, graph, n_atoms, slots), slots)

    def sums_and_jacobian(
        self,
        positions: torch.Tensor,
        cells: torch.Tensor,
        graph: dict,
        chunk_size: int = 1 << 18,
        layout: str = "auto",
    ) -> SumsJacobian:
        """The sums of :meth:`sums` and their derivatives with respect to every pair vector.

        Two layouts of the angular Jacobian, both mapping any cotangent of the sums to pair
        gradients by small contractions (:meth:`pair_gradients`), however many ensemble
        members ask:

        * ``"pair"``: per pair and partner species, ``(P, S, F, 3)``; all triplets of a pair whose
          other neighbour has species ``s`` fall into the same bucket. Compact where a pair
          has many triplets (condensed phase: thousands per atom).
        * ``"triplet"``: per triplet, ``(T, F, 6)``. Compact for molecules, where a pair has
          few triplets and most species buckets would be empty.

        ``"auto"`` takes the smaller. Triplets are processed in chunks of ``chunk_size`` with
        :meth:`triplet_jacobian`.
        """
        if layout not in ("auto", "pair", "triplet"):
            raise ValueError(f"layout must be 'auto', 'pair' or 'triplet', got {layout!r}")
        with torch.no_grad():
            n_atoms = positions.shape[0]
            s = self.n_species
            vectors = self.pair_vectors(positions, cells, graph)
            r = torch.linalg.vector_norm(vectors, dim=-1)
            radial_values, radial_derivative, part, d_part = self.pair_features_and_derivatives(r)

            centers = graph["centers"]
            neighbor_species = graph["species"][graph["neighbors"]]  # (P,)
            triplets = graph["triplets"]
            if layout == "auto":
                layout = "triplet" if 2 * triplets.shape[0] <= s * vectors.shape[0] else "pair"
            # the pair layout's Jacobian has a row per partner species: its sums keep every bucket
            slots = self.bucket_slots(graph, n_atoms) if layout == "triplet" else None
            radial = self.radial_sums(radial_values, graph, n_atoms, slots)
            q_width = self.n_species_pairs if slots is None else slots.angular_buckets.shape[1]
            n_features = len(self.angular_eta) * len(self.lambdas) * len(self.zetas)
            angular = vectors.new_zeros(n_atoms * q_width, n_features)
            if layout == "triplet":
                per_triplet = vectors.new_empty(triplets.shape[0], n_features, 6)
            else:
                jacobian = vectors.new_zeros(vectors.shape[0] * s, n_features, 3)
            for start in range(0, triplets.shape[0], chunk_size):
                pair_a, pair_b = triplets[start : start + chunk_size, 0], triplets[start : start + chunk_size, 1]
                values, d_a, d_b = self.triplet_jacobian(  # (t, F), (t, F, 3), (t, F, 3)
                    vectors[pair_a],
                    vectors[pair_b],
                    part[pair_a],
                    part[pair_b],
                    d_part[pair_a],
                    d_part[pair_b],
                    out=per_triplet[start : start + chunk_size] if layout == "triplet" else None,
                )
                species_a, species_b = neighbor_species[pair_a], neighbor_species[pair_b]
                _, row = self.angular_row_numbers(centers[pair_a], self.pair_table[species_a, species_b], slots)
                angular.index_add_(0, centers[pair_a] * q_width + row, values)
                if layout == "pair":
                    jacobian.index_add_(0, pair_a * s + species_b, d_a)
                    jacobian.index_add_(0, pair_b * s + species_a, d_b)
            sums = {
                "radial": radial,
                "angular": angular.view(n_atoms, q_width, n_features),
                "vectors": vectors,
                "radial_derivative": radial_derivative,
            }
            if layout == "triplet":
                return SumsJacobian(**sums, triplet_jacobian=per_triplet, slots=slots)
            return SumsJacobian(**sums, angular_jacobian=jacobian.view(vectors.shape[0], s, n_features, 3))

    def sums_cotangent_rows(
        self, values: torch.Tensor, cotangent: torch.Tensor, slots: BucketSlots | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cotangents of the sums for cotangents ``(M, A, G)`` of the descriptor ``values`` ``(A, G)``.

        The vector-Jacobian product of :meth:`values_from_sums`, one per member, in closed form
        (linear in ``cotangent``, so differentiable in it), laid out by rows as
        :meth:`pair_gradients_from_rows` gathers them: radial ``(A·S, M, E)``, angular
        ``(A·Q, M, F)``; with ``slots``, only the buckets each atom uses: ``(A·S', M, E)`` and
        ``(A·Q', M, F)``. Each descriptor defines it.
        """
        raise NotImplementedError

    def sums_cotangents(self, values: torch.Tensor, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sums_cotangent_rows` in the layout of the sums: ``(M, A, S, E)`` and ``(M, A, Q, F)``."""
        members, n_atoms = cotangent.shape[:2]
        radial, angular = self.sums_cotangent_rows(values, cotangent)
        return (
            radial.view(n_atoms, self.n_species, members, -1).permute(2, 0, 1, 3),
            angular.view(n_atoms, self.n_species_pairs, members, -1).permute(2, 0, 1, 3),
        )

    def pair_gradients(
        self, jacobian: SumsJacobian, graph: dict, radial_cotangent: torch.Tensor, angular_cotangent: torch.Tensor
    ) -> torch.Tensor:
        """``∂E/∂v`` for every pair vector, ``(M, P, 3)``, from cotangents ``(M, A, S, E)``, ``(M, A, Q, F)``
        of the Jacobian's sums (per slot, ``(M, A, S', E)`` and ``(M, A, Q', F)``, where it has slots).

        Differentiable in the cotangents (so training can take forces through it).
        """
        members, n_atoms = radial_cotangent.shape[:2]
        # rows: (atom, bucket) first, members and features contiguous behind them
        radial = radial_cotangent.reshape(members, n_atoms * radial_cotangent.shape[2], -1).transpose(0, 1)
        angular = angular_cotangent.reshape(members, n_atoms * angular_cotangent.shape[2], -1).transpose(0, 1)
        return self.pair_gradients_from_rows(
            jacobian, graph, radial.contiguous(), angular.contiguous(), slots=jacobian.slots
        )

    def value_pair_gradients(
        self,
        jacobian: SumsJacobian,
        graph: dict,
        values: torch.Tensor,
        cotangent: torch.Tensor,
        block_bytes: int | None = None,
    ) -> torch.Tensor:
        """``∂E/∂v`` ``(M, P, 3)`` from the cotangents ``∂E/∂G`` ``(M, A, G)`` of the descriptor ``values``.

        The per-member force path: :meth:`sums_cotangent_rows`, then :meth:`pair_gradients_from_rows`,
        for as many centre atoms at a time as keep the block's temporaries (cotangent rows, and
        the rows gathered for its pairs and triplets) under ``block_bytes`` (pairs and triplets
        are sorted by centre, so a block of atoms owns a contiguous range of both). Large
        temporaries are slow on the CPU: glibc hands out blocks above 32 MB as fresh pages from
        the kernel on every call (about 0.3 ms per MB here), and a block that stays in the
        cache is faster still; so the default is :data:`CPU_BLOCK_BYTES` there and
        :data:`DEVICE_BLOCK_BYTES` on a GPU, where every block costs its own kernel launches.
        Blocks of atoms rather than of members keep every member in each of the small batched
        products, whose cost is mostly per product (2× faster per member at 10 members than at
        3). With :attr:`SumsJacobian.slots` (molecules), the rows are those of the buckets each
        atom uses.
        """
        if block_bytes is None:
            block_bytes = CPU_BLOCK_BYTES if cotangent.device.type == "cpu" else DEVICE_BLOCK_BYTES
        members, n_atoms = cotangent.shape[:2]
        slots = jacobian.slots
        step = max(1, block_bytes // max(1, members * cotangent.element_size() * self._numbers_per_atom(jacobian)))
        if step >= n_atoms:
            rows = self.sums_cotangent_rows(values, cotangent, slots)
            return self.pair_gradients_from_rows(jacobian, graph, *rows, slots=slots)
        centers = graph["centers"]
        starts = torch.arange(0, n_atoms + step, step, device=centers.device).clamp_max_(n_atoms)
        pair_bounds = torch.searchsorted(centers, starts).tolist()
        triplet_bounds = None
        if jacobian.layout == "triplet":
            triplet_bounds = torch.searchsorted(centers[graph["triplets"][:, 0]], starts).tolist()
        blocks = []
        for k, (a0, a1) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist())):
            p0, p1 = pair_bounds[k], pair_bounds[k + 1]
            if p0 == p1:  # atoms without neighbours
                continue
            block_graph = {
                "centers": centers[p0:p1] - a0,
                "neighbors": graph["neighbors"][p0:p1],
                "species": graph["species"],
            }
            block_jacobian = SumsJacobian(
                radial=jacobian.radial[a0:a1],
                angular=jacobian.angular[a0:a1],
                vectors=jacobian.vectors[p0:p1],
                radial_derivative=jacobian.radial_derivative[p0:p1],
            )
            if triplet_bounds is None:
                block_jacobian.angular_jacobian = jacobian.angular_jacobian[p0:p1]
            else:
                t0, t1 = triplet_bounds[k], triplet_bounds[k + 1]
                block_graph["triplets"] = graph["triplets"][t0:t1] - p0
                block_jacobian.triplet_jacobian = jacobian.triplet_jacobian[t0:t1]
            block_slots = None if slots is None else slots.of_atoms(slice(a0, a1))
            rows = self.sums_cotangent_rows(values[a0:a1], cotangent[:, a0:a1], block_slots)
            blocks.append(self.pair_gradients_from_rows(block_jacobian, block_graph, *rows, slots=block_slots))
        return torch.cat(blocks, dim=1) if blocks else cotangent.new_zeros(members, 0, 3)

    def _numbers_per_atom(self, jacobian: SumsJacobian) -> int:
        """Numbers per member and centre atom in the temporaries of :meth:`value_pair_gradients`.

        Cotangent rows (the buckets of the atom, or of its slots) plus, on average, what is
        gathered for its pairs and triplets.
        """
        n_atoms = max(1, jacobian.radial.shape[0])
        e, f = jacobian.radial.shape[2], jacobian.angular.shape[2]
        if jacobian.slots is None:
            rows = jacobian.radial[0].numel() + jacobian.angular[0].numel()  # S·E + Q·F
        else:
            rows = jacobian.slots.radial_buckets.shape[1] * e + jacobian.slots.angular_buckets.shape[1] * f
        pairs = jacobian.vectors.shape[0]
        if jacobian.layout == "triplet":
            gathered = jacobian.triplet_jacobian.shape[0] * (f + 6)  # rows per triplet, and (v_a, v_b) parts
        else:
            gathered = pairs * self.n_species * f  # rows per pair and partner species
        return rows + (gathered + pairs * e) // n_atoms

    def pair_gradients_from_rows(
        self,
        jacobian: SumsJacobian,
        graph: dict,
        radial_rows: torch.Tensor,
        angular_rows: torch.Tensor,
        slots: BucketSlots | None = None,
    ) -> torch.Tensor:
        """:meth:`pair_gradients` from cotangent rows ``(A·S, M, E)`` and ``(A·Q, M, F)``.

        With ``slots`` (``"triplet"`` layout only), the rows are those of the buckets each atom
        uses, ``(A·S', M, E)`` and ``(A·Q', M, F)`` (:meth:`sums_cotangent_rows` with the same slots).
        """
        centers = graph["centers"]
        neighbor_species = graph["species"][graph["neighbors"]]
        unit = jacobian.vectors / torch.linalg.vector_norm(jacobian.vectors, dim=-1, keepdim=True)
        width, row = self.radial_row_numbers(centers, neighbor_species, slots)
        radial = radial_rows.index_select(0, centers * width + row)  # (P, M, E)
        out = (radial * jacobian.radial_derivative[:, None, :]).sum(-1)[..., None] * unit[:, None, :]  # (P, M, 3)
        if jacobian.layout == "triplet":
            out = out + self._triplet_pair_gradients(jacobian.triplet_jacobian, graph, angular_rows, slots)
        else:
            if slots is not None:
                raise ValueError("bucket slots apply to the 'triplet' layout only")
            out = out + self._bucket_pair_gradients(jacobian.angular_jacobian, graph, angular_rows)
        return out.transpose(0, 1)  # (M, P, 3)

    def _triplet_pair_gradients(
        self, per_triplet: torch.Tensor, graph: dict, flat_angular: torch.Tensor, slots: BucketSlots | None
    ):
        """Angular part of :meth:`pair_gradients` from the ``"triplet"`` layout: ``(P, M, 3)``."""
        centers, triplets = graph["centers"], graph["triplets"]
        neighbor_species = graph["species"][graph["neighbors"]]
        members, f = flat_angular.shape[1:]
        out = flat_angular.new_zeros(centers.shape[0], members, 3)
        chunk = max(1, (1 << 23) // (members * f))  # bounds the gathered block to 8 M numbers
        for start in range(0, triplets.shape[0], chunk):
            pair_a, pair_b = triplets[start : start + chunk, 0], triplets[start : start + chunk, 1]
            center = centers[pair_a]
            width, row = self.angular_row_numbers(
                center, self.pair_table[neighbor_species[pair_a], neighbor_species[pair_b]], slots
            )
            rows = center * width + row
            both = torch.bmm(flat_angular.index_select(0, rows), per_triplet[start : start + chunk])  # (t, M, 6)
            out = out.index_add(0, pair_a, both[..., :3]).index_add(0, pair_b, both[..., 3:])
        return out

    def _bucket_pair_gradients(self, per_bucket: torch.Tensor, graph: dict, flat_angular: torch.Tensor):
        """Angular part of :meth:`pair_gradients` from the ``"pair"`` layout: ``(P, M, 3)``."""
        centers = graph["centers"]
        neighbor_species = graph["species"][graph["neighbors"]]
        buckets = self.pair_table[neighbor_species]  # (P, S): bucket of (species of j, partner species)
        rows = centers[:, None] * self.n_species_pairs + buckets  # (P, S)
        members, f = flat_angular.shape[1:]
        s = self.n_species
        jacobian_rows = per_bucket.reshape(-1, s * f, 3)  # (P, S·F, 3)
        chunk = max(1, (1 << 23) // (s * members * f))  # bounds the gathered block to 8 M numbers
        pieces = []
        for start in range(0, rows.shape[0], chunk):
            block = flat_angular.index_select(0, rows[start : start + chunk].reshape(-1))  # (p·S, M, F)
            block = block.view(-1, s, members, f).transpose(1, 2).reshape(-1, members, s * f)  # (p, M, S·F)
            pieces.append(torch.bmm(block, jacobian_rows[start : start + chunk]))  # (p, M, 3)
        return torch.cat(pieces) if pieces else flat_angular.new_zeros(0, members, 3)

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
