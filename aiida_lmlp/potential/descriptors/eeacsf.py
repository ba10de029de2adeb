"""Element-embracing atom-centred symmetry functions (eeACSFs), Eckhoff & Reiher (2023) Eqs. 3–9.

Radial function ``i`` of atom ``n`` (Eq. 3)::

    G_rad = [ 1/H_max Σ_j H_j exp(−η R_nj²) f_c(R_nj) ]^½

Angular function (Eq. 4), with every unordered neighbour pair ``{j, k}`` counted once::

    G_ang = [ 2^−ζ / H_ang_max Σ_{j<k} H_jk (1 + λ cos θ_njk)^ζ exp(−η (R_nj² + R_nk²)) f_c(R_nj) f_c(R_nk) ]^½

with the element terms of :mod:`.elements` and (Eqs. 7–9, with the absolute value of the
authors' code)::

    H_jk = |H_j + γ H_k| + C,   C = 0 if γ = +1 or H_j = H_k = 0, else 1,
    H_ang_max = 2 H_max (γ = +1),  H_max (γ = −1).

Feature order: radial functions by element term, then η; angular functions by
(element term, γ), then η, λ, ζ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...formats.elements import (
    ELEMENT_TERMS,
    PAPER_MAX_PERIOD,
    element_term_max,
    element_term_table,
    is_d_block,
    is_f_block,
    period_of,
    validate_elements,
)
from ..descriptors.eta_grid import eta_for_inflection, eta_grid, inflection_point
from ..descriptors.symmetry_functions import (
    AtomCenteredDescriptor,
    BucketSlots,
    bump_cutoff,
    bump_cutoff_derivative,
    half_one_plus_lambda_cos,
    safe_sqrt,
    species_pair_table,
)

__all__ = ["EeACSF", "PAPER_TABLE_1"]


#: Table 1 of Eckhoff & Reiher (2023), cutoff 12 Å.
PAPER_TABLE_1 = {
    "cutoff": 12.0,
    "radial_eta": [0.0, 0.010702, 0.023348, 0.044203, 0.066118, 0.104168, 0.180285, 0.370959, 1.115414],
    "angular_eta": [0.011238, 0.090144],
    "lambdas": [-1.0, 1.0],
    "zetas": [1.0, 2.409421, 9.996864],
    "radial_terms": ["1", "n", "m", "n_bar", "m_bar"],
    "angular_terms": [
        ["1", 1],
        ["n", 1],
        ["n", -1],
        ["m", 1],
        ["m", -1],
        ["n_bar", 1],
        ["n_bar", -1],
        ["m_bar", 1],
        ["m_bar", -1],
    ],
}

#: Terms joining Table 1 when a d-block element is present: 7 radial and 11 angular element
#: terms as the paper counts them (Section 2.2); ``d`` and ``d̄`` enter the angular functions
#: with γ = +1, like their radial counterparts.
D_BLOCK_RADIAL_TERMS = ["d", "d_bar"]
D_BLOCK_ANGULAR_TERMS = [["d", 1], ["d_bar", 1]]

#: Terms joining when an f-block element is present (the paper: "the group in the f-block can
#: be implemented in the same way as for the d-block"), with γ = +1 like ``d`` and ``d̄``.
F_BLOCK_RADIAL_TERMS = ["f", "f_bar"]
F_BLOCK_ANGULAR_TERMS = [["f", 1], ["f_bar", 1]]


def _rescaled_widths(etas: Sequence[float], cutoff: float, r_min: float) -> list[float]:
    """Map η values for 12 Å onto ``cutoff`` keeping the relative inflection-point positions."""
    r0_paper = inflection_point(0.0, PAPER_TABLE_1["cutoff"])
    r0 = inflection_point(0.0, cutoff)
    out = []
    for eta in etas:
        if eta == 0.0:
            out.append(0.0)
            continue
        fraction = (inflection_point(eta, PAPER_TABLE_1["cutoff"]) - r_min) / (r0_paper - r_min)
        out.append(eta_for_inflection(r_min + fraction * (r0 - r_min), cutoff))
    return out


class EeACSF(AtomCenteredDescriptor):
    """Element-embracing ACSFs; the number of functions does not depend on the element count.

    ``radial_terms`` are names from :data:`.elements.ELEMENT_TERMS`; ``angular_terms`` are
    ``(term, γ)`` pairs with γ = ±1.
    """

    kind = "eeacsf"

    def __init__(
        self,
        elements: Sequence[str],
        cutoff: float,
        radial_eta: Sequence[float],
        angular_eta: Sequence[float],
        lambdas: Sequence[float],
        zetas: Sequence[float],
        radial_terms: Sequence[str],
        angular_terms: Sequence[Sequence],
        max_period: int = PAPER_MAX_PERIOD,
    ):
        if max_period not in (PAPER_MAX_PERIOD, 7):
            raise ValueError(f"max_period must be 5 (the paper's H–Xe) or 7 (up to Og), got {max_period}")
        super().__init__(validate_elements(elements, max_period), cutoff)
        self.max_period = int(max_period)
        for name, values in (("radial_eta", radial_eta), ("angular_eta", angular_eta)):
            if any(v < 0 for v in values):
                raise ValueError(f"{name} values must be ≥ 0, got {list(values)}")
        if any(v not in (-1, 1) for v in lambdas):
            raise ValueError(f"lambdas must be ±1, got {list(lambdas)}")
        if any(v < 1 for v in zetas):
            raise ValueError(f"zetas must be ≥ 1, got {list(zetas)}")
        for term in list(radial_terms) + [t for t, _ in angular_terms]:
            if term not in ELEMENT_TERMS:
                raise ValueError(f"unknown element term {term!r}; choose from {', '.join(ELEMENT_TERMS)}")
        if any(int(g) not in (-1, 1) for _, g in angular_terms):
            raise ValueError("every angular element term needs γ = +1 or −1")
        self.radial_eta = [float(v) for v in radial_eta]
        self.angular_eta = [float(v) for v in angular_eta]
        self.lambdas = [float(v) for v in lambdas]
        self.zetas = [float(v) for v in zetas]
        self.radial_terms = [str(t) for t in radial_terms]
        self.angular_terms = [[str(t), int(g)] for t, g in angular_terms]

        table = element_term_table(self.elements, self.max_period).astype(np.float64)  # (S, 9)
        column = {name: k for k, name in enumerate(ELEMENT_TERMS)}
        term_max = element_term_max(self.max_period)
        radial_weights = np.stack([table[:, column[t]] / term_max[t] for t in self.radial_terms], axis=1)  # (S, H_rad)
        pairs = species_pair_table(self.n_species)
        angular_weights = np.zeros((self.n_species_pairs, len(self.angular_terms)))
        for a in range(self.n_species):
            for b in range(a, self.n_species):
                for h, (term, gamma) in enumerate(self.angular_terms):
                    h_j, h_k = table[a, column[term]], table[b, column[term]]
                    offset = 1.0 if gamma == -1 and not (h_j == 0 and h_k == 0) else 0.0
                    h_max = term_max[term] * (2.0 if gamma == 1 else 1.0)
                    angular_weights[pairs[a, b], h] = (abs(h_j + gamma * h_k) + offset) / h_max
        self.register_buffer("radial_weights", torch.as_tensor(radial_weights), persistent=False)
        self.register_buffer("angular_weights", torch.as_tensor(angular_weights), persistent=False)
        self.register_buffer("radial_eta_t", torch.as_tensor(self.radial_eta, dtype=torch.float64), persistent=False)
        self.register_buffer("angular_eta_t", torch.as_tensor(self.angular_eta, dtype=torch.float64), persistent=False)
        self.register_buffer("lambdas_t", torch.as_tensor(self.lambdas, dtype=torch.float64), persistent=False)
        # radial then angular η: both pair factors from one exp (pair_features)
        self.register_buffer("pair_eta_t", torch.cat([self.radial_eta_t, self.angular_eta_t]), persistent=False)
        self.register_buffer("zetas_t", torch.as_tensor(self.zetas, dtype=torch.float64), persistent=False)

        self.feature_names = [f"radial H={t} eta={e:g}" for t in self.radial_terms for e in self.radial_eta] + [
            f"angular H={t} gamma={g:+d} eta={e:g} lambda={lam:+g} zeta={z:g}"
            for t, g in self.angular_terms
            for e in self.angular_eta
            for lam in self.lambdas
            for z in self.zetas
        ]

    @classmethod
    def from_paper(cls, elements: Sequence[str], cutoff: float = 12.0, r_min: float | None = None) -> EeACSF:
        """The parameters of Table 1 of the paper (153 functions for main-group elements).

        With a d-block element among ``elements`` the ``d`` and ``d̄`` terms join (7 radial,
        11 angular element terms: 63 + 132 = 195 functions), with an f-block element ``f`` and
        ``f̄`` likewise; with any element beyond xenon the periods go up to 7 (``X − 1 = 7``, the
        paper's recipe for higher periods). For a cutoff other than 12 Å the
        radial η grid is re-derived with the tutorial's recipe (``η = 0`` plus equidistant
        inflection points down to ``r_min``, by default the innermost inflection point of
        Table 1, 0.667 Å) and the angular η keep their relative inflection-point positions.
        """
        elements = validate_elements(elements)
        max_period = PAPER_MAX_PERIOD if all(period_of(s) <= PAPER_MAX_PERIOD for s in elements) else 7
        table = PAPER_TABLE_1
        radial_terms = list(table["radial_terms"])
        angular_terms = [list(t) for t in table["angular_terms"]]
        if any(is_d_block(s) for s in elements):
            radial_terms = ["1", "n", "m", "d", "n_bar", "m_bar", "d_bar"]
            angular_terms += [list(t) for t in D_BLOCK_ANGULAR_TERMS]
        if any(is_f_block(s) for s in elements):
            radial_terms += F_BLOCK_RADIAL_TERMS
            angular_terms += [list(t) for t in F_BLOCK_ANGULAR_TERMS]
        radial_eta, angular_eta = list(table["radial_eta"]), list(table["angular_eta"])
        if abs(cutoff - table["cutoff"]) > 1e-12:
            innermost = inflection_point(max(radial_eta), table["cutoff"])
            r_min = innermost if r_min is None else float(r_min)
            radial_eta = eta_grid(cutoff, r_min, len(radial_eta))
            angular_eta = _rescaled_widths(angular_eta, cutoff, innermost)
        return cls(
            elements,
            cutoff,
            radial_eta,
            angular_eta,
            table["lambdas"],
            table["zetas"],
            radial_terms,
            angular_terms,
            max_period,
        )

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
            "radial_terms": self.radial_terms,
            "angular_terms": self.angular_terms,
            "max_period": self.max_period,
        }

    def with_elements(self, elements: Sequence[str]) -> EeACSF:
        """The same functions for another element list (the vector length is unchanged)."""
        config = self.to_config()
        config.pop("kind")
        config["elements"] = list(elements)
        return EeACSF(**config)

    def radial_features(self, r: torch.Tensor) -> torch.Tensor:
        """``exp(−η r²) f_c(r)`` per pair and radial η, ``(P, E_rad)``."""
        return torch.exp(-self.radial_eta_t.to(r.dtype) * (r * r)[:, None]) * bump_cutoff(r, self.cutoff)[:, None]

    def angular_pair_features(self, r: torch.Tensor) -> torch.Tensor:
        """``exp(−η r²) f_c(r)`` per pair and angular η, ``(P, E_ang)``."""
        return torch.exp(-self.angular_eta_t.to(r.dtype) * (r * r)[:, None]) * bump_cutoff(r, self.cutoff)[:, None]

    def pair_features(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both pair factors from one ``exp(−η r²) f_c(r)`` over the radial and angular η together."""
        n_radial = len(self.radial_eta)
        both = torch.exp(-self.pair_eta_t.to(r.dtype) * (r * r)[:, None]) * bump_cutoff(r, self.cutoff)[:, None]
        return both[:, :n_radial], both[:, n_radial:]

    def pair_features_and_derivatives(
        self, r: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed form of the base class's: ``d/dr [exp(−η r²) f_c] = exp(−η r²) (f_c' − 2ηr f_c)``."""
        n_radial = len(self.radial_eta)
        eta = self.pair_eta_t.to(r.dtype)
        gauss = torch.exp(-eta * (r * r)[:, None])  # (P, E_rad + E_ang)
        cutoff = bump_cutoff(r, self.cutoff)[:, None]
        both = gauss * cutoff
        d_both = gauss * (bump_cutoff_derivative(r, self.cutoff)[:, None] - 2.0 * eta * r[:, None] * cutoff)
        return both[:, :n_radial], d_both[:, :n_radial], both[:, n_radial:], d_both[:, n_radial:]

    def _angle_base(self, cos: torch.Tensor) -> torch.Tensor:
        """``½ (1 + λ cos)``, never negative (:func:`.half_one_plus_lambda_cos`), ``(T, L, 1)``."""
        return half_one_plus_lambda_cos(cos, self.lambdas_t)[:, :, None]

    def triplet_features(self, v_a, v_b, part_a, part_b) -> torch.Tensor:
        """``2^−ζ (1 + λ cos θ)^ζ exp(−η (R_a² + R_b²)) f_c(R_a) f_c(R_b)``, ``(T, E_ang·L·Z)``."""
        cos = (v_a * v_b).sum(-1) / (torch.linalg.vector_norm(v_a, dim=-1) * torch.linalg.vector_norm(v_b, dim=-1))
        angle = self._angle_base(cos) ** self.zetas_t.to(cos.dtype)  # (T, L, Z): 2^−ζ (1 + λ cos)^ζ
        return ((part_a * part_b)[:, :, None, None] * angle[:, None]).flatten(1)

    def triplet_jacobian(self, v_a, v_b, part_a, part_b, d_part_a, d_part_b, out=None):
        """Closed-form features and derivatives of :meth:`triplet_features` (see the base class)."""
        r_a = torch.linalg.vector_norm(v_a, dim=-1, keepdim=True)  # (T, 1)
        r_b = torch.linalg.vector_norm(v_b, dim=-1, keepdim=True)
        u_a, u_b = v_a / r_a, v_b / r_b
        cos = (u_a * u_b).sum(-1)  # (T,)
        zeta = self.zetas_t.to(cos.dtype)
        base = self._angle_base(cos)  # (T, L, 1)
        angle = base**zeta  # (T, L, Z)
        d_angle = zeta * base ** (zeta - 1.0)  # 0⁰ = 1: ζ = 1 keeps its derivative at a straight angle
        d_angle = d_angle * (0.5 * self.lambdas_t.to(cos.dtype))[None, :, None]  # ∂angle/∂cos

        def outer(radial, angular):  # (T, E) x (T, L, Z) -> (T, F)
            return (radial[:, :, None, None] * angular[:, None]).flatten(1)

        values = outer(part_a * part_b, angle)
        along_cos = outer(part_a * part_b, d_angle)
        d_cos_a = (u_b - cos[:, None] * u_a) / r_a  # (T, 3)
        d_cos_b = (u_a - cos[:, None] * u_b) / r_b
        if out is None:  # contiguous halves: the "pair" layout scatters them (index_add_ is slow from strided rows)
            d_a = values.new_empty(values.shape[0], values.shape[1], 3)
            d_b = torch.empty_like(d_a)
        else:
            d_a, d_b = out[..., :3], out[..., 3:]
        # written in place: each (T, F, 3) temporary is a pass over memory the size of the result
        torch.mul(outer(d_part_a * part_b, angle)[:, :, None], u_a[:, None], out=d_a)
        d_a.addcmul_(along_cos[:, :, None], d_cos_a[:, None])
        torch.mul(outer(part_a * d_part_b, angle)[:, :, None], u_b[:, None], out=d_b)
        d_b.addcmul_(along_cos[:, :, None], d_cos_b[:, None])
        return values, d_a, d_b

    def _element_term_tables(self, dtype: torch.dtype, slots: BucketSlots | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The element terms per bucket, ``(S, H)`` and ``(Q, H)``, or per atom and slot, ``(A, S', H)``
        and ``(A, Q', H)``."""
        radial, angular = self.radial_weights.to(dtype), self.angular_weights.to(dtype)
        if slots is None:
            return radial, angular
        return radial[slots.radial_buckets], angular[slots.angular_buckets]

    def values_from_sums(
        self, radial: torch.Tensor, angular: torch.Tensor, slots: BucketSlots | None = None
    ) -> torch.Tensor:
        """Element terms (Eqs. 6–9) and the square root: ``(A, len(self))``."""
        radial_weights, angular_weights = self._element_term_tables(radial.dtype, slots)
        # (H, S) @ (A, S, E) broadcast over atoms: no permuted copy of the sums (einsum made two,
        # forward and backward, of the mostly-zero per-species-pair sums)
        g_rad = torch.matmul(radial_weights.transpose(-1, -2), radial)  # (A, H_rad, E_rad)
        g_ang = torch.matmul(angular_weights.transpose(-1, -2), angular)  # (A, H_ang, F)
        return safe_sqrt(torch.cat([g_rad.flatten(1), g_ang.flatten(1)], dim=1))

    def sums_cotangent_rows(
        self, values: torch.Tensor, cotangent: torch.Tensor, slots: BucketSlots | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """VJP of :meth:`values_from_sums`: ``d√x = dx / (2√x)`` (0 where the value is 0), then the element terms."""
        dtype = values.dtype
        members, n_atoms = cotangent.shape[:2]
        positive = values > 0
        half_inverse = torch.where(positive, 0.5 / torch.where(positive, values, torch.ones_like(values)), 0.0)
        inner = (cotangent * half_inverse).transpose(0, 1)  # (A, M, G)
        n_radial_terms, n_angular_terms = self.radial_weights.shape[1], self.angular_weights.shape[1]
        n_radial = n_radial_terms * len(self.radial_eta)
        # (A, H, M·E) per atom, then one batched product with the element-term table (S, H) or (Q, H)
        radial = inner[..., :n_radial].unflatten(-1, (n_radial_terms, -1)).transpose(1, 2).flatten(2)
        angular = inner[..., n_radial:].unflatten(-1, (n_angular_terms, -1)).transpose(1, 2).flatten(2)
        radial_weights, angular_weights = self._element_term_tables(dtype, slots)
        radial = torch.matmul(radial_weights, radial)  # (A, S, M·E)
        angular = torch.matmul(angular_weights, angular)  # (A, Q, M·F)
        return radial.reshape(n_atoms * radial.shape[1], members, -1), angular.reshape(
            n_atoms * angular.shape[1], members, -1
        )
