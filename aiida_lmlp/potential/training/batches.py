"""Training batches: descriptor Jacobians prepared once, energies and forces differentiable in the weights.

During training the structures do not move, so the descriptor sums and their Jacobian with
respect to the pair vectors (:meth:`AtomCenteredDescriptor.sums_and_jacobian`) are computed
once per conformation. Every epoch then costs the networks and one contraction per member:

    F_m = −Σ_pairs (∂E_m/∂sums) · J        (∂E_m/∂sums differentiable in the weights)

instead of a double backward pass through the descriptor. The loss is Eq. 10 of Eckhoff &
Reiher (2023), one value per ensemble member.

The networks are trained on the labels minus the reference energies, ``E − Σ E_ref``, which
are subtracted in float64 whatever the training dtype: in float32 a total of −15 000 eV is
only known to 1 meV, and subtracting the free-atom energies there adds about 0.5 meV/atom of
noise to the labels. The predictions of :func:`predict_batch` and :func:`predict_packed` are
therefore the networks' sums without the reference energies (``batch.reference_sum``, float64,
turns them into totals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from ...formats.labels import reference_label
from ..descriptors.neighbors import build_graph
from ..descriptors.symmetry_functions import SumsJacobian
from ..model.ensemble import Ensemble

__all__ = [
    "PreparedBatch",
    "conformation_losses",
    "loss_eq10",
    "gather_structures",
    "masked_loss_eq10",
    "packed_loss_eq10",
    "predict_batch",
    "predict_packed",
    "prepare_batch",
    "reference_label",
    "reference_sums",
    "select_structures",
]


@dataclass
class PreparedBatch:
    """Structures with their fixed descriptor sums, Jacobian and reference labels."""

    graph: dict  # tensors of the neighbour graph
    jacobian: SumsJacobian
    n_atoms: torch.Tensor  # (S,) atoms per structure
    reference_sum: torch.Tensor  # (S,) Σ reference energies of the atoms (free atoms or fitted), eV, float64
    energy: torch.Tensor | None  # (S,) labels minus reference_sum (subtracted in float64), eV, model dtype
    forces: torch.Tensor | None  # (A, 3) reference forces, eV/Å


def _labels(structures: Sequence[Atoms]) -> tuple[np.ndarray | None, np.ndarray | None]:
    energies = [reference_label(atoms, "energy") for atoms in structures]
    forces = [reference_label(atoms, "forces") for atoms in structures]
    energy = None if any(e is None for e in energies) else np.asarray(energies, dtype=np.float64)
    force = None if any(f is None for f in forces) else np.concatenate(forces).astype(np.float64)
    return energy, force


def prepare_batch(model: Ensemble, structures: Sequence[Atoms]) -> PreparedBatch:
    """Neighbour graph, descriptor sums and Jacobian of ``structures`` for ``model``.

    Reference energies and forces are read from ``atoms.info['energy']`` /
    ``atoms.arrays['forces']`` or a single-point calculator (as ASE's extxyz reader sets);
    the energies are referenced in float64 before they take the model's dtype.
    """
    structures = list(structures)
    graph = build_graph(structures, model.elements, model.descriptor.cutoff)
    t = graph.tensors(model.device, model.dtype)
    jacobian = model.descriptor.sums_and_jacobian(t["positions"], t["cells"], t)
    n_structures = t["n_structures"]
    reference_sum = reference_sums(structures, model.reference_energies)
    energy, forces = _labels(structures)
    if energy is not None:
        energy = energy - reference_sum  # float64
    as_tensor = lambda a: None if a is None else torch.as_tensor(a, dtype=model.dtype, device=model.device)  # noqa: E731
    return PreparedBatch(
        graph=t,
        jacobian=jacobian,
        n_atoms=torch.bincount(t["structure"], minlength=n_structures).to(model.dtype),
        reference_sum=torch.as_tensor(reference_sum, dtype=torch.float64, device=model.device),
        energy=as_tensor(energy),
        forces=as_tensor(forces),
    )


def reference_sums(structures: Sequence[Atoms], reference_energies: dict[str, float]) -> np.ndarray:
    """``Σ E_ref`` of every structure's atoms (eV), float64, summed in the order of the atoms."""
    return np.array(
        [math.fsum(reference_energies[s] for s in atoms.get_chemical_symbols()) for atoms in structures],
        dtype=np.float64,
    )


def _descriptors(model: Ensemble, batch: PreparedBatch) -> torch.Tensor:
    """The batch's descriptor values ``(A, G)``: constants of the training (no gradient)."""
    jacobian = batch.jacobian
    return model.descriptor.values_from_sums(jacobian.radial, jacobian.angular, jacobian.slots).detach()


def predict_batch(model: Ensemble, batch: PreparedBatch, *, forces: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies ``(M, S)`` and forces ``(M, A, 3)`` of every member, differentiable in the weights.

    The energies are the networks' sums, without the reference energies (compare with ``batch.energy``).
    """
    t = batch.graph
    descriptors = _descriptors(model, batch)  # (A, G)
    with torch.enable_grad():
        leaf = descriptors.unsqueeze(0).expand(model.members, -1, -1)
        if forces:
            leaf = leaf.detach().clone().requires_grad_(True)
        atomic = model.networks(leaf, t["species"])  # (M, A)
        energies = atomic.new_zeros(model.members, t["n_structures"]).index_add(1, t["structure"], atomic)
        if not forces:
            return energies, None
        (d_energy,) = torch.autograd.grad(energies.sum(), leaf, create_graph=True)  # (M, A, G)
        # closed-form VJP of the descriptor: linear in d_energy, so the forces stay differentiable
        pair_gradients = model.descriptor.value_pair_gradients(batch.jacobian, t, descriptors, d_energy)  # (M, P, 3)
        n_atoms = t["species"].shape[0]
        force = pair_gradients.new_zeros(model.members, n_atoms, 3)
        force = force.index_add(1, t["centers"], pair_gradients).index_add(1, t["neighbors"], -pair_gradients)
    return energies, force


def predict_packed(model: Ensemble, batch: PreparedBatch, member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies ``(S,)`` and forces ``(A, 3)``, every structure by its own ensemble member ``member`` ``(S,)``.

    The energies are the networks' sums, without the reference energies (compare with ``batch.energy``).

    The batch is typically every member's training subsample packed one after the other
    (:func:`gather_structures`): each member evaluates only its own conformations, so an epoch
    costs what training the members one by one would cost, in one batched pass.
    """
    t = batch.graph
    descriptors = _descriptors(model, batch)  # (A, G)
    atom_member = member[t["structure"]]
    with torch.enable_grad():
        leaf = descriptors.clone().requires_grad_(True)
        atomic = model.networks.forward_packed(leaf, t["species"], atom_member)  # (A,)
        energies = atomic.new_zeros(t["n_structures"]).index_add(0, t["structure"], atomic)
        (d_energy,) = torch.autograd.grad(energies.sum(), leaf, create_graph=True)  # (A, G)
        pair_gradients = model.descriptor.value_pair_gradients(batch.jacobian, t, descriptors, d_energy[None])[0]
        force = pair_gradients.new_zeros(t["species"].shape[0], 3)
        force = force.index_add(0, t["centers"], pair_gradients).index_add(0, t["neighbors"], -pair_gradients)
    return energies, force


def packed_loss_eq10(
    energies: torch.Tensor,
    forces: torch.Tensor,
    batch: PreparedBatch,
    member: torch.Tensor,
    members: int,
    q: float = 10.9,
) -> torch.Tensor:
    """Eq. 10 per member ``(M,)`` over the structures it owns in a packed batch (see :func:`predict_packed`)."""
    per_atom = (energies - batch.energy) / batch.n_atoms
    count = torch.bincount(member, minlength=members).to(energies.dtype).clamp_min(1.0)
    loss = q * q * per_atom.new_zeros(members).index_add(0, member, per_atom**2) / count
    squared = ((forces - batch.forces) ** 2).sum(-1)  # (A,)
    atoms = per_atom.new_zeros(members).index_add(0, member, batch.n_atoms).clamp_min(1.0)
    force_sum = squared.new_zeros(members).index_add(0, member[batch.graph["structure"]], squared)
    return loss + force_sum / (3.0 * atoms)


def loss_eq10(
    energies: torch.Tensor,
    forces: torch.Tensor | None,
    batch: PreparedBatch,
    q: float = 10.9,
) -> torch.Tensor:
    """Eq. 10 per member, ``(M,)``::

    L = q²/N_conf Σ_r ((E_r − E_ref,r)/N_atom,r)² + (3 Σ_r N_atom,r)⁻¹ Σ_r Σ_n Σ_α (F − F_ref)²
    """
    if batch.energy is None:
        raise ValueError("the batch has no reference energies")
    per_atom = (energies - batch.energy) / batch.n_atoms  # (M, S)
    loss = q * q * (per_atom**2).mean(1)
    if forces is not None:
        if batch.forces is None:
            raise ValueError("the batch has no reference forces")
        loss = loss + ((forces - batch.forces) ** 2).sum((1, 2)) / (3.0 * batch.n_atoms.sum())
    return loss


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenated ``arange(start, start + count)`` for every (start, count), without a Python loop."""
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts  # where each range begins in the output
    return torch.repeat_interleave(starts - offsets, counts, output_size=total) + torch.arange(
        total, device=counts.device
    )


def _grouped(owner: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items sorted by owner: the order, each group's start and count, and every item's rank in its group."""
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return order, starts, counts, rank - starts[owner]


def gather_structures(batch: PreparedBatch, structures: torch.Tensor) -> PreparedBatch:
    """The batch of the given structure indices, in the given order; a structure may appear several times.

    Atoms, pairs, triplets, sums and Jacobian rows are gathered and renumbered; nothing is
    recomputed. Used to pack every ensemble member's own subsample into one batch.
    """
    t = batch.graph
    structures = torch.as_tensor(structures, dtype=torch.long, device=t["structure"].device)
    n_structures = t["n_structures"]
    pair_structure = t["structure"][t["centers"]]
    atom_order, atom_starts, atom_counts, atom_rank = _grouped(t["structure"], n_structures)
    pair_order, pair_starts, pair_counts, pair_rank = _grouped(pair_structure, n_structures)
    atoms = atom_order[_ranges(atom_starts[structures], atom_counts[structures])]  # old atom of every new atom
    pairs = pair_order[_ranges(pair_starts[structures], pair_counts[structures])]
    new_atom_start = torch.cumsum(atom_counts[structures], 0) - atom_counts[structures]
    new_pair_start = torch.cumsum(pair_counts[structures], 0) - pair_counts[structures]
    copies = torch.arange(len(structures), device=structures.device)
    copy_of_atom = torch.repeat_interleave(copies, atom_counts[structures])
    copy_of_pair = torch.repeat_interleave(copies, pair_counts[structures])
    triplets = t["triplets"]
    if triplets.shape[0]:
        triplet_structure = pair_structure[triplets[:, 0]]
        order, starts, counts, _ = _grouped(triplet_structure, n_structures)
        old_triplets = order[_ranges(starts[structures], counts[structures])]
        copy_of_triplet = torch.repeat_interleave(copies, counts[structures])
        new_triplets = new_pair_start[copy_of_triplet, None] + pair_rank[triplets[old_triplets]]
    else:
        old_triplets, new_triplets = triplets[:, 0], triplets
    graph = {
        "positions": t["positions"][atoms],
        "cells": t["cells"][structures],
        "species": t["species"][atoms],
        "structure": copy_of_atom,
        "centers": new_atom_start[copy_of_pair] + atom_rank[t["centers"][pairs]],
        "neighbors": new_atom_start[copy_of_pair] + atom_rank[t["neighbors"][pairs]],
        "shifts": t["shifts"][pairs],
        "triplets": new_triplets,
        "n_structures": len(structures),
    }
    jac = batch.jacobian
    jacobian = SumsJacobian(
        radial=jac.radial[atoms],
        angular=jac.angular[atoms],
        vectors=jac.vectors[pairs],
        radial_derivative=jac.radial_derivative[pairs],
        angular_jacobian=None if jac.angular_jacobian is None else jac.angular_jacobian[pairs],
        triplet_jacobian=None if jac.triplet_jacobian is None else jac.triplet_jacobian[old_triplets],
        slots=None if jac.slots is None else jac.slots.of_atoms(atoms),
    )
    return PreparedBatch(
        graph=graph,
        jacobian=jacobian,
        n_atoms=batch.n_atoms[structures],
        reference_sum=batch.reference_sum[structures],
        energy=None if batch.energy is None else batch.energy[structures],
        forces=None if batch.forces is None else batch.forces[atoms],
    )


def select_structures(batch: PreparedBatch, structures: torch.Tensor) -> PreparedBatch:
    """The sub-batch of the given structure indices, in their order in the batch, each once."""
    structures = torch.as_tensor(structures, dtype=torch.long, device=batch.graph["structure"].device)
    return gather_structures(batch, torch.unique(structures))


def conformation_losses(
    energies: torch.Tensor, forces: torch.Tensor | None, batch: PreparedBatch, q: float = 10.9
) -> torch.Tensor:
    """Each conformation's own Eq. 10, ``(M, S)``: ``q² (ΔE/N)² + Σ ΔF² / (3N)``."""
    per_atom = (energies - batch.energy) / batch.n_atoms
    contributions = q * q * per_atom**2
    if forces is not None:
        squared = ((forces - batch.forces) ** 2).sum(-1)  # (M, A)
        per_structure = squared.new_zeros(squared.shape[0], batch.n_atoms.shape[0])
        per_structure = per_structure.index_add(1, batch.graph["structure"], squared)
        contributions = contributions + per_structure / (3.0 * batch.n_atoms)
    return contributions


def masked_loss_eq10(
    energies: torch.Tensor, forces: torch.Tensor | None, batch: PreparedBatch, mask: torch.Tensor, q: float = 10.9
) -> torch.Tensor:
    """Eq. 10 per member over its own conformations ``mask`` ``(M, S)``: ``(M,)``.

    Lets stacked members train on different subsamples of one evaluated batch.
    """
    weight = mask.to(energies.dtype)
    count = weight.sum(1).clamp_min(1.0)
    per_atom = (energies - batch.energy) / batch.n_atoms
    loss = q * q * (weight * per_atom**2).sum(1) / count
    if forces is not None:
        squared = ((forces - batch.forces) ** 2).sum(-1)  # (M, A)
        atom_weight = weight[:, batch.graph["structure"]]  # (M, A)
        atoms = (weight * batch.n_atoms).sum(1).clamp_min(1.0)
        loss = loss + (atom_weight * squared).sum(1) / (3.0 * atoms)
    return loss
