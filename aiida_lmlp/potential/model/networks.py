"""Atomic neural networks of the HDNNP (Eqs. 1–2), stacked over ensemble members.

Every element has one feed-forward network per ensemble member. The weights of all members
are stacked in one tensor per (element, layer, weight type), shape ``(M, n_in, n_out)``, so
a whole ensemble is evaluated with one batched matrix product per layer instead of one
Python call per member (TorchANI's ``BmmEnsemble`` idea).

Each network starts with the trainable standardisation of the paper, ``α (G − β)``, with
``β`` and ``α`` initialised from the mean and inverse standard deviation of each descriptor
over the initial training data (:meth:`ElementNetwork.set_standardization`), and uses the
activation ``f(x) = 1.59223 tanh(x)`` in the hidden layers and a linear output neuron.

**How α and β are trained.** With ``x = α (G − β)``, ``∂L/∂β = −α ∂L/∂x``: β's gradient is
scaled by α, which reaches 10² for descriptors of small spread (158 on the SN2 data). A step
``δβ`` moves the standardised input by ``α δβ``; a fixed learning rate of 10⁻³ then moves it by
0.16 (Adam, RPROP and CoRe take steps of about the learning rate whatever the gradient's size),
and plain SGD, whose step is the gradient itself, is scaled by ``α²`` and diverges at the
paper's learning rate. α's gradient ``(G − β) ∂L/∂x`` is of the standardised input's size and
needs no change. The trainable parameters are therefore measured in units of the initial
spread (``standardization="relative"``, the default of new models)::

    α = α₀ · scale,   β = β₀ + shift / α₀        (α₀, β₀: fixed buffers set from the data)
    x = α (G − β):    ∂x/∂shift = −scale ≈ −1,   ∂x/∂scale = α₀ (G − β) ≈ x

so ``scale`` starts at 1 and ``shift`` at 0, and a step of the learning rate moves the
standardised input by about the learning rate, for every descriptor alike. The function is
the paper's Eq. 2 either way; only the coordinates the optimiser steps in differ, and the
weight decay of CoRe (0.01 for α and β, i.e. ``|w| ≤ 100``) bounds ``scale`` and ``shift``
instead of α and β (α = 158 would otherwise sit above its own bound). With
``standardization="paper"`` α₀ = 1 and β₀ = 0: ``scale`` is α and ``shift`` is β, as the paper
trains them and as every model file written before this parametrisation holds them.

Weight initialisation matched to that activation: with unit-variance inputs, weights drawn
from a normal distribution of variance ``1 / n_in`` (truncated at ±2σ and rescaled to keep
that variance) give unit-variance pre-activations, and 1.59223 is the factor for which
``Var[f(z)] = 1`` for ``z ~ N(0, 1)``, so every layer again receives unit-variance input.
Biases start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "ACTIVATION_SCALE",
    "RELATIVE_SPREAD_FLOOR",
    "ElementNetwork",
    "StackedAtomicNetworks",
    "scaled_tanh",
    "scaled_tanh_and_slope",
]

ACTIVATION_SCALE = 1.59223

#: the smallest spread the standardisation divides by, as a fraction of the root mean square of all
#: the element's descriptor values; below it α stays 1: see :meth:`ElementNetwork.set_standardization`
RELATIVE_SPREAD_FLOOR = 1e-3

# variance of a standard normal truncated at ±2σ
_TRUNCATED_VARIANCE = 1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0))


def scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    """The paper's activation ``1.59223 · tanh(x)``."""
    return ACTIVATION_SCALE * torch.tanh(x)


def scaled_tanh_and_slope(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(x) = s·tanh(x)`` and ``f'(x) = s(1 − tanh²x)``, for a tensor without autograd.

    Both from ``r = σ(−2|x|) = 1/(e^{2|x|} + 1)``: ``tanh|x| = 1 − 2r`` and ``1 − tanh²x = 4r(1 − r)``.
    On the CPU, ``torch.tanh`` in float64 costs three times an ``exp`` (SLEEF's 1-ulp ``tanh``),
    and ``torch.sigmoid`` (1.3 ulp) is one pass where ``exp``, ``+ 1`` and the reciprocal
    were three; so these eight passes take a third of the time of ``tanh`` followed by
    ``s − f²/s``, and the activation differs by a few ulp. With ``r ≤ 1/2`` the slope keeps
    its relative accuracy where the activation saturates, which ``s − f²/s`` loses to
    cancellation; for large ``|x|``, ``r`` underflows to 0, which gives ``f = ±s`` and ``f' = 0``
    as it should.
    """
    r = torch.sigmoid_(x.abs().mul_(-2.0))
    slope = torch.addcmul(r, r, r, value=-1.0).mul_(4.0 * ACTIVATION_SCALE)
    return r.mul_(-2.0 * ACTIVATION_SCALE).add_(ACTIVATION_SCALE).copysign_(x), slope


class ElementNetwork(torch.nn.Module):
    """The atomic networks of one element for ``members`` ensemble members."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], members: int, generators: Sequence[torch.Generator] = ()):
        super().__init__()
        self.n_inputs = int(n_inputs)
        self.hidden = tuple(int(h) for h in hidden)
        self.members = int(members)
        # registered first, in this order: optimiser state is stored by parameter index
        self.scale = torch.nn.Parameter(torch.ones(members, n_inputs, dtype=torch.float64))
        self.shift = torch.nn.Parameter(torch.zeros(members, n_inputs, dtype=torch.float64))
        self.register_buffer("scale0", torch.ones(members, n_inputs, dtype=torch.float64))
        self.register_buffer("shift0", torch.zeros(members, n_inputs, dtype=torch.float64))
        sizes = (self.n_inputs, *self.hidden, 1)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            std = 1.0 / math.sqrt(n_in * _TRUNCATED_VARIANCE)
            w = torch.empty(members, n_in, n_out, dtype=torch.float64)
            for m in range(members):  # every member from its own generator: independent of the member count
                generator = generators[m] if generators else None
                torch.nn.init.trunc_normal_(w[m], mean=0.0, std=std, a=-2.0 * std, b=2.0 * std, generator=generator)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(torch.zeros(members, n_out, dtype=torch.float64)))

    @property
    def alpha(self) -> torch.Tensor:
        """α of Eq. 2 ``(M, n_inputs)``: ``α₀ · scale`` (differentiable in ``scale``)."""
        return self.scale0 * self.scale

    @property
    def beta(self) -> torch.Tensor:
        """β of Eq. 2 ``(M, n_inputs)``: ``β₀ + shift / α₀`` (differentiable in ``shift``)."""
        return self.shift0 + self.shift / self.scale0

    def set_standardization(self, descriptors: torch.Tensor, parametrization: str = "relative") -> None:
        """Set ``β`` to the mean and ``α`` to the inverse standard deviation of ``descriptors`` ``(N, n_inputs)``.

        ``parametrization`` ``"relative"``: α₀, β₀ take these values and ``scale = 1``,
        ``shift = 0``; ``"paper"``: α₀ = 1, β₀ = 0 and ``scale``, ``shift`` are α and β (see the
        module docstring). Both give the same function.

        A descriptor whose spread is below :data:`RELATIVE_SPREAD_FLOOR` times the root mean
        square of all the values in ``descriptors`` (one scale per element), zero included,
        carries no usable scale yet and keeps ``α = 1``. Dividing by such a spread (an initial data
        set with one or two atoms of an element gives spreads of 10⁻⁷) made ``α`` 10⁶ and more:
        the model was then so ill-conditioned that forces changed by 10⁻⁷ eV/Å when positions
        changed by 10⁻¹³ Å (CPU and GPU rounding disagreed at that level), and a later
        conformation's descriptors landed deep in the saturated ``tanh``.
        """
        with torch.no_grad():
            mean = descriptors.mean(0)
            std = descriptors.std(0, unbiased=False) if descriptors.shape[0] > 1 else torch.zeros_like(mean)
            floor = max(RELATIVE_SPREAD_FLOOR * float(descriptors.square().mean().sqrt()), 1e-12)
            alpha = torch.where(std > floor, 1.0 / std.clamp_min(floor), 1.0)
            if parametrization == "relative":
                self.scale0.copy_(alpha.expand_as(self.scale0))
                self.shift0.copy_(mean.expand_as(self.shift0))
                self.scale.fill_(1.0)
                self.shift.zero_()
            elif parametrization == "paper":
                self.scale0.fill_(1.0)
                self.shift0.zero_()
                self.scale.copy_(alpha.expand_as(self.scale))
                self.shift.copy_(mean.expand_as(self.shift))
            else:
                raise ValueError(f"standardization must be relative or paper, got {parametrization!r}")

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Atomic energies ``(M, N)`` from descriptors ``(N, n_inputs)`` (shared) or ``(M, N, n_inputs)``."""
        x = self.alpha[:, None, :] * (descriptors - self.beta[:, None, :])  # (M, N, G), α and β as in Eq. 2
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b[:, None, :], x, w)  # (M, N, n_out)
            if k < last:
                x = scaled_tanh(x)
        return x.squeeze(-1)

    @torch.no_grad()
    def energies_and_input_gradients(self, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Atomic energies ``(M, N)`` and every member's ``∂E/∂G`` ``(M, N, n_inputs)`` for shared ``(N, n_inputs)``.

        The same function as :meth:`forward`, evaluated without autograd for the per-member
        forces: the standardisation is folded into the first layer, which then is one matrix
        product for all members (the input is shared), and the input gradients are propagated
        by hand with the slopes ``f'(z)`` stored on the way (:func:`scaled_tanh_and_slope`). Not differentiable.
        """
        n_atoms = descriptors.shape[0]
        alpha, beta = self.alpha, self.beta
        first = alpha[:, :, None] * self.weights[0]  # (M, G, h1): α folded into W1
        bias = self.biases[0] - torch.einsum("mg,mgh->mh", alpha * beta, self.weights[0])
        x = (descriptors @ first.transpose(0, 1).reshape(self.n_inputs, -1)).view(n_atoms, self.members, -1)
        x = x.transpose(0, 1) + bias[:, None, :]  # (M, N, h1)
        slopes = []
        last = len(self.weights) - 1
        for k in range(1, last + 1):
            x, slope = scaled_tanh_and_slope(x)
            slopes.append(slope)
            x = torch.baddbmm(self.biases[k][:, None, :], x, self.weights[k])
        energies = x.squeeze(-1)  # (M, N)
        output = first if last == 0 else self.weights[last]  # a network without hidden layers is linear
        delta = output[:, None, :, 0].expand(-1, n_atoms, -1)  # ∂E/∂(input of the output layer)
        for k in range(last, 0, -1):
            delta = slopes[k - 1].mul_(delta)
            weights = first if k == 1 else self.weights[k - 1]
            delta = torch.bmm(delta, weights.transpose(1, 2))  # through layer k − 1 (first: with α)
        return energies, delta


class StackedAtomicNetworks(torch.nn.Module):
    """One :class:`ElementNetwork` per element; maps descriptors to atomic energies ``(M, A)``."""

    def __init__(
        self,
        elements: Sequence[str],
        n_inputs: int,
        hidden: Sequence[int],
        members: int,
        seed: int = 0,
        member_offset: int = 0,
    ):
        super().__init__()
        self.elements = list(elements)
        self.n_inputs = int(n_inputs)
        self.hidden = tuple(int(h) for h in hidden)
        self.members = int(members)
        if self.members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {list(hidden)}")
        self.seed = int(seed)
        self.member_offset = int(member_offset)
        self.networks = torch.nn.ModuleDict()
        for element in self.elements:
            self._add(element)

    def _add(self, element: str) -> None:
        # a seed per (element, member): adding an element never changes the others, and member k
        # starts from the same weights whether trained in a stack of ten or alone (member_offset = k)
        element_seed = self.seed * 1_000_003 + sum(ord(c) * 131**k for k, c in enumerate(element))
        generators = [
            torch.Generator().manual_seed(element_seed * 10_007 + self.member_offset + m) for m in range(self.members)
        ]
        self.networks[element] = ElementNetwork(self.n_inputs, self.hidden, self.members, generators)

    def add_element(self, element: str) -> ElementNetwork:
        """Add a freshly initialised network for ``element``; the existing ones are untouched."""
        if element in self.networks:
            raise ValueError(f"element {element} already has an atomic network")
        self.elements.append(element)
        self._add(element)
        reference = next(iter(self.parameters()))
        self.networks[element].to(device=reference.device, dtype=reference.dtype)
        return self.networks[element]

    def forward(self, descriptors: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energies ``(M, A)``; ``descriptors`` is ``(A, G)`` or per member ``(M, A, G)``.

        Atoms are sorted by element once and the networks see contiguous blocks, so the
        backward pass scatters once instead of once per element.
        """
        order = torch.argsort(species, stable=True)
        counts = torch.bincount(species, minlength=len(self.elements)).tolist()
        blocks = torch.split(descriptors.index_select(-2, order), counts, dim=-2)
        energies = [
            self.networks[element](block) if count else descriptors.new_zeros(self.members, 0)
            for element, block, count in zip(self.elements, blocks, counts)
        ]
        return torch.cat(energies, dim=1).index_select(1, torch.argsort(order))

    @torch.no_grad()
    def energies_and_input_gradients(
        self, descriptors: torch.Tensor, species: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Atomic energies ``(M, A)`` and every member's ``∂E_atomic/∂G`` ``(M, A, G)``, without autograd.

        For shared descriptors ``(A, G)``; see :meth:`ElementNetwork.energies_and_input_gradients`.
        """
        n_atoms, n_inputs = descriptors.shape
        present = torch.unique(species).tolist()
        if len(present) == 1:  # one element: the atoms are already in their order
            return self.networks[self.elements[present[0]]].energies_and_input_gradients(descriptors)
        energies = descriptors.new_empty(self.members, n_atoms)
        gradients = descriptors.new_empty(self.members, n_atoms, n_inputs)
        for e in present:
            atoms = torch.nonzero(species == e).squeeze(1)
            element = self.elements[e]
            energy, gradient = self.networks[element].energies_and_input_gradients(descriptors.index_select(0, atoms))
            energies.index_copy_(1, atoms, energy)
            gradients.index_copy_(1, atoms, gradient)
        return energies, gradients

    def forward_packed(self, descriptors: torch.Tensor, species: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """Atomic energies ``(A,)``, every atom through its own member's network: ``descriptors`` ``(A, G)``.

        ``member`` ``(A,)`` says which ensemble member each atom belongs to, so members can see
        different atoms (each its own training subsample) in one batched product per layer:
        per element, every member's atoms are padded to the largest member's count.
        """
        energies = descriptors.new_zeros(descriptors.shape[0])
        for e, element in enumerate(self.elements):
            atoms = torch.nonzero(species == e).squeeze(1)
            if atoms.numel() == 0:
                continue
            owner = member[atoms]
            order = torch.argsort(owner, stable=True)
            atoms, owner = atoms[order], owner[order]
            counts = torch.bincount(owner, minlength=self.members)
            rank = torch.arange(atoms.shape[0], device=atoms.device) - (torch.cumsum(counts, 0) - counts)[owner]
            slots = torch.zeros(self.members, int(counts.max()), dtype=torch.long, device=atoms.device)
            slots[owner, rank] = atoms  # padding rows reuse atom ``atoms[0]``'s descriptor and are dropped below
            slots[counts[:, None].le(torch.arange(slots.shape[1], device=atoms.device))] = atoms[0]
            per_member = self.networks[element](descriptors[slots])  # (M, C)
            energies = energies.index_put((atoms,), per_member[owner, rank])
        return energies
