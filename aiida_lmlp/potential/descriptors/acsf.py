"""Conventional element-resolved ACSFs (Behler), Tokita & Behler Eqs. 4–6.

Radial, one set per neighbour element (Eq. 5)::

    G_rad = Σ_j exp(−η (R_ij − R_s)²) f_c(R_ij)

Angular, one set per unordered neighbour-element pair (Eq. 6, ordered double sum)::

    G_ang = 2^(1−ζ) Σ_{j≠i} Σ_{k≠i,j} (1 + λ cos θ_ijk)^ζ exp(−η (R_ij² + R_ik² + R_jk²)) f_c(R_ij) f_c(R_ik) f_c(R_jk)

with the cosine cutoff of Eq. 4. The vector has ``S · E_rad + S (S + 1)/2 · E_ang · L · Z``
entries: it grows with the number of element pairs, unlike the eeACSFs.

Feature order: radial functions by neighbour element, then η; angular functions by element
pair ``(a ≤ b)`` in the model's element order, then η, λ, ζ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...formats.elements import validate_elements
from ..descriptors.symmetry_functions import (
    AtomCenteredDescriptor,
    BucketSlots,
    cosine_cutoff,
    half_one_plus_lambda_cos,
)

__all__ = ["ACSF"]


class ACSF(AtomCenteredDescriptor):
    """Element-resolved atom-centred symmetry functions with the cosine cutoff."""

    kind = "acsf"

    def __init__(
        self,
        elements: Sequence[str],
        cutoff: float,
        radial_eta: Sequence[float],
        angular_eta: Sequence[float],
        lambdas: Sequence[float],
        zetas: Sequence[float],
        radial_shift: float = 0.0,
    ):
        super().__init__(validate_elements(elements), cutoff)
        if any(v < 0 for v in list(radial_eta) + list(angular_eta)):
            raise ValueError("η values must be ≥ 0")
        if any(v not in (-1, 1) for v in lambdas):
            raise ValueError(f"lambdas must be ±1, got {list(lambdas)}")
        if any(v < 1 for v in zetas):
            raise ValueError(f"zetas must be ≥ 1, got {list(zetas)}")
        self.radial_eta = [float(v) for v in radial_eta]
        self.angular_eta = [float(v) for v in angular_eta]
        self.lambdas = [float(v) for v in lambdas]
        self.zetas = [float(v) for v in zetas]
        self.radial_shift = float(radial_shift)
        for name, values in (
            ("radial_eta_t", self.radial_eta),
            ("angular_eta_t", self.angular_eta),
            ("lambdas_t", self.lambdas),
            ("zetas_t", self.zetas),
        ):
            self.register_buffer(name, torch.as_tensor(values, dtype=torch.float64), persistent=False)
        pairs = [(a, b) for i, a in enumerate(self.elements) for b in self.elements[i:]]
        self.feature_names = [f"radial {s} eta={e:g}" for s in self.elements for e in self.radial_eta] + [
            f"angular {a}-{b} eta={e:g} lambda={lam:+g} zeta={z:g}"
            for a, b in pairs
            for e in self.angular_eta
            for lam in self.lambdas
            for z in self.zetas
        ]

    @classmethod
    def like(cls, descriptor, elements: Sequence[str] | None = None) -> ACSF:
        """ACSFs with the same cutoff, η, λ and ζ as another descriptor (e.g. an :class:`EeACSF`)."""
        return cls(
            elements if elements is not None else descriptor.elements,
            descriptor.cutoff,
            descriptor.radial_eta,
            descriptor.angular_eta,
            descriptor.lambdas,
            descriptor.zetas,
        )

    @staticmethod
    def count(n_elements: int, n_radial: int, n_angular: int) -> int:
        """Length of the vector for ``n_elements`` elements: ``S·n_radial + S(S+1)/2·n_angular``."""
        return n_elements * n_radial + n_elements * (n_elements + 1) // 2 * n_angular

    def to_config(self) -> dict:
        """Parameters as a JSON-serialisable dictionary."""
        return {
            "kind": self.kind,
            "elements": list(self.elements),
            "cutoff": self.cutoff,
            "radial_eta": self.radial_eta,
            "angular_eta": self.angular_eta,
            "lambdas": self.lambdas,
            "zetas": self.zetas,
            "radial_shift": self.radial_shift,
        }

    def with_elements(self, elements: Sequence[str]) -> ACSF:
        """The same functions for another element list (the vector length changes)."""
        config = self.to_config()
        config.pop("kind")
        config["elements"] = list(elements)
        return ACSF(**config)

    def radial_features(self, r: torch.Tensor) -> torch.Tensor:
        """``exp(−η (r − R_s)²) f_c(r)`` per pair, ``(P, E_rad)``."""
        eta = self.radial_eta_t.to(r.dtype)
        return torch.exp(-eta * (r[:, None] - self.radial_shift) ** 2) * cosine_cutoff(r, self.cutoff)[:, None]

    def angular_pair_features(self, r: torch.Tensor) -> torch.Tensor:
        """``exp(−η r²) f_c(r)`` per pair and angular η, ``(P, E_ang)``."""
        return torch.exp(-self.angular_eta_t.to(r.dtype) * (r * r)[:, None]) * cosine_cutoff(r, self.cutoff)[:, None]

    def triplet_features(self, v_a, v_b, part_a, part_b) -> torch.Tensor:
        """Eq. 6 summand for the unordered pair, counted twice (ordered sum), ``(T, E_ang·L·Z)``."""
        dtype = v_a.dtype
        r_a = torch.linalg.vector_norm(v_a, dim=-1)
        r_b = torch.linalg.vector_norm(v_b, dim=-1)
        r_c = torch.linalg.vector_norm(v_b - v_a, dim=-1)
        cos = (v_a * v_b).sum(-1) / (r_a * r_b)
        # the pair parts carry exp(−η R_ij²) f_c(R_ij) and exp(−η R_ik²) f_c(R_ik); add the j–k term
        jk = torch.exp(-self.angular_eta_t.to(dtype) * (r_c * r_c)[:, None]) * cosine_cutoff(r_c, self.cutoff)[:, None]
        radial = part_a * part_b * jk  # (T, E_ang)
        base = half_one_plus_lambda_cos(cos, self.lambdas_t)  # (T, L)
        # 2^(1−ζ) (1 + λ cos)^ζ = 2 (½ + ½ λ cos)^ζ, and the ordered double sum counts {j, k} twice
        angle = 4.0 * base[:, :, None] ** self.zetas_t.to(dtype)  # (T, L, Z)
        return (radial[:, :, None, None] * angle[:, None]).flatten(1)

    def values_from_sums(
        self, radial: torch.Tensor, angular: torch.Tensor, slots: BucketSlots | None = None
    ) -> torch.Tensor:
        """The sums themselves: ``(A, S·E_rad + Q·F)``; sums per slot are put back in their buckets."""
        if slots is not None:
            n_atoms = radial.shape[0]
            atom = torch.arange(n_atoms, device=radial.device)[:, None]
            # accumulate: padding slots (empty sums) share bucket 0 with a real one
            full = radial.new_zeros(n_atoms, self.n_species, radial.shape[2])
            radial = full.index_put(
                (atom.expand_as(slots.radial_buckets), slots.radial_buckets), radial, accumulate=True
            )
            full = angular.new_zeros(n_atoms, self.n_species_pairs, angular.shape[2])
            angular = full.index_put(
                (atom.expand_as(slots.angular_buckets), slots.angular_buckets), angular, accumulate=True
            )
        return torch.cat([radial.flatten(1), angular.flatten(1)], dim=1)

    def sums_cotangent_rows(
        self, values: torch.Tensor, cotangent: torch.Tensor, slots: BucketSlots | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """VJP of :meth:`values_from_sums`: the cotangent split back into the two blocks of sums, by rows."""
        n_radial = self.n_species * len(self.radial_eta)
        members, n_atoms = cotangent.shape[:2]
        rows = cotangent.transpose(0, 1)  # (A, M, G)
        radial = rows[..., :n_radial].unflatten(-1, (self.n_species, -1)).transpose(1, 2)  # (A, S, M, E)
        angular = rows[..., n_radial:].unflatten(-1, (self.n_species_pairs, -1)).transpose(1, 2)  # (A, Q, M, F)
        if slots is not None:  # each atom's own buckets: (A, S', M, E) and (A, Q', M, F)
            atom = torch.arange(n_atoms, device=cotangent.device)[:, None]
            radial, angular = radial[atom, slots.radial_buckets], angular[atom, slots.angular_buckets]
        return radial.reshape(n_atoms * radial.shape[1], members, -1), angular.reshape(
            n_atoms * angular.shape[1], members, -1
        )
