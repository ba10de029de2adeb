"""Training batches: forces from the prepared Jacobian, Eq. 10, gradients in the weights."""

import numpy as np
import pytest
import torch

from aiida_lmlp.potential.training.batches import (
    PreparedBatch,
    conformation_losses,
    gather_structures,
    loss_eq10,
    masked_loss_eq10,
    packed_loss_eq10,
    predict_batch,
    predict_packed,
    prepare_batch,
    select_structures,
)
from aiida_lmlp.potential.training.paper_core import PaperCoRe, core_parameter_groups


def test_predictions_equal_the_ensemble_evaluation(sn2_model, sn2_frames):
    batch = prepare_batch(sn2_model, sn2_frames[:6])
    energies, forces = predict_batch(sn2_model, batch)
    reference = sn2_model.evaluate(sn2_frames[:6])
    # the networks' part: the totals less the reference energies (the training target's scale)
    totals = energies.detach().numpy() + batch.reference_sum.numpy()
    np.testing.assert_allclose(totals, reference.energy_members, rtol=0, atol=1e-9)
    np.testing.assert_allclose(forces.detach().numpy(), reference.forces_members, rtol=0, atol=1e-9)
    references = [sum(sn2_model.reference_energies[s] for s in a.get_chemical_symbols()) for a in sn2_frames[:6]]
    np.testing.assert_allclose(batch.reference_sum.numpy(), references, rtol=1e-15)
    np.testing.assert_allclose(
        batch.energy.numpy(), [a.get_potential_energy() - r for a, r in zip(sn2_frames[:6], references)], atol=1e-9
    )


def test_loss_gradient_equals_double_backward_through_the_descriptor(sn2_model, sn2_frames):
    batch = prepare_batch(sn2_model, sn2_frames[:4])
    weight = sn2_model.networks.networks["C"].weights[0]
    (fast,) = torch.autograd.grad(loss_eq10(*predict_batch(sn2_model, batch), batch).sum(), weight)
    t = batch.graph
    positions = t["positions"].clone().requires_grad_(True)
    atomic = sn2_model.networks(sn2_model.descriptor(positions, t["cells"], t), t["species"])
    energies = atomic.new_zeros(sn2_model.members, 4).index_add(1, t["structure"], atomic)
    forces = torch.stack(
        [-torch.autograd.grad(energies[m].sum(), positions, create_graph=True)[0] for m in range(sn2_model.members)]
    )
    (reference,) = torch.autograd.grad(loss_eq10(energies, forces, batch).sum(), weight)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-10)


def test_equation_10_on_a_hand_made_case():
    batch = PreparedBatch(
        graph={},
        jacobian=None,
        n_atoms=torch.tensor([2.0, 4.0], dtype=torch.float64),
        reference_sum=torch.zeros(2, dtype=torch.float64),
        energy=torch.tensor([1.0, -2.0], dtype=torch.float64),
        forces=torch.zeros(6, 3, dtype=torch.float64),
    )
    energies = torch.tensor([[1.2, -2.4]], dtype=torch.float64)  # errors 0.2/2 = 0.1 and −0.4/4 = −0.1 per atom
    forces = torch.zeros(1, 6, 3, dtype=torch.float64)
    forces[0, 0, 0], forces[0, 5, 2] = 0.3, -0.6
    q = 10.9
    expected = q**2 * (0.1**2 + 0.1**2) / 2 + (0.3**2 + 0.6**2) / (3 * 6)
    assert loss_eq10(energies, forces, batch, q=q).item() == pytest.approx(expected, rel=1e-12)
    assert loss_eq10(energies, None, batch, q=q).item() == pytest.approx(q**2 * 0.01, rel=1e-12)


def test_a_few_core_steps_lower_every_members_loss(sn2_model, sn2_frames):
    import copy

    model = copy.deepcopy(sn2_model)
    batch = prepare_batch(model, sn2_frames[:20])
    optimizer = PaperCoRe(core_parameter_groups(model.networks), lr=1e-3, score_history=5)
    with torch.no_grad():
        start = loss_eq10(*predict_batch(model, batch), batch)
    for _ in range(15):
        optimizer.zero_grad()
        loss = loss_eq10(*predict_batch(model, batch), batch)
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        end = loss_eq10(*predict_batch(model, batch), batch)
    assert torch.all(end < 0.7 * start), (start, end)


def test_a_selected_sub_batch_equals_a_batch_prepared_from_those_structures(sn2_model, sn2_frames):
    full = prepare_batch(sn2_model, sn2_frames[:10])
    picked = [1, 4, 7, 8]
    sub = select_structures(full, torch.tensor(picked))
    direct = prepare_batch(sn2_model, [sn2_frames[k] for k in picked])
    e_sub, f_sub = predict_batch(sn2_model, sub)
    e_dir, f_dir = predict_batch(sn2_model, direct)
    torch.testing.assert_close(e_sub, e_dir, rtol=0, atol=1e-10)
    torch.testing.assert_close(f_sub, f_dir, rtol=0, atol=1e-10)
    torch.testing.assert_close(loss_eq10(e_sub, f_sub, sub), loss_eq10(e_dir, f_dir, direct))


def test_conformation_losses_and_masked_loss_agree_with_equation_10(sn2_model, sn2_frames):
    batch = prepare_batch(sn2_model, sn2_frames[:6])
    energies, forces = predict_batch(sn2_model, batch)
    per_conformation = conformation_losses(energies, forces, batch)
    # with equal atom counts (the SN2 frames have 6 or 7 atoms) check the definition directly
    for s in range(6):
        sub = select_structures(batch, torch.tensor([s]))
        torch.testing.assert_close(
            per_conformation[:, s], loss_eq10(energies[:, s : s + 1], forces[:, sub_atoms(batch, s)], sub)
        )
    mask = torch.tensor([[True, False, True, True, False, False]] * sn2_model.members)
    picked = select_structures(batch, torch.tensor([0, 2, 3]))
    expected = loss_eq10(energies[:, [0, 2, 3]], forces[:, picked_atoms(batch, [0, 2, 3])], picked)
    torch.testing.assert_close(masked_loss_eq10(energies, forces, batch, mask), expected)


def sub_atoms(batch, s):
    return (batch.graph["structure"] == s).nonzero().squeeze(1)


def picked_atoms(batch, structures):
    return torch.isin(batch.graph["structure"], torch.tensor(structures)).nonzero().squeeze(1)


def test_a_gathered_batch_with_repeats_equals_a_batch_prepared_from_those_structures(sn2_model, sn2_frames):
    full = prepare_batch(sn2_model, sn2_frames[:10])
    picked = [7, 1, 7, 4, 1]  # any order, repeats allowed
    gathered = gather_structures(full, torch.tensor(picked))
    direct = prepare_batch(sn2_model, [sn2_frames[k] for k in picked])
    for key in ("species", "structure", "centers", "neighbors", "positions", "shifts"):
        torch.testing.assert_close(gathered.graph[key], direct.graph[key], rtol=0, atol=1e-12, msg=key)
    torch.testing.assert_close(gathered.graph["triplets"].shape, direct.graph["triplets"].shape)
    e_gat, f_gat = predict_batch(sn2_model, gathered)
    e_dir, f_dir = predict_batch(sn2_model, direct)
    torch.testing.assert_close(e_gat, e_dir, rtol=0, atol=1e-10)
    torch.testing.assert_close(f_gat, f_dir, rtol=0, atol=1e-10)


def test_packed_members_see_only_their_own_structures(sn2_model, sn2_frames):
    """Member m's packed energies, forces, Eq. 10 and its weight gradient equal those of its subsample alone."""
    members = sn2_model.members
    full = prepare_batch(sn2_model, sn2_frames[:12])
    own = [[0, 3, 5], [5, 2], [11, 0, 7, 8]][:members] + [[m % 12] for m in range(3, members)]
    packed = gather_structures(full, torch.tensor([s for subset in own for s in subset]))
    owner = torch.tensor([m for m, subset in enumerate(own) for _ in subset])
    energies, forces = predict_packed(sn2_model, packed, owner)
    losses = packed_loss_eq10(energies, forces, packed, owner, members)
    weight = next(iter(sn2_model.networks.parameters()))
    (packed_gradient,) = torch.autograd.grad(losses.sum(), weight)
    start = 0
    for m, subset in enumerate(own):
        alone = select_structures(full, torch.tensor(sorted(subset)))
        e_alone, f_alone = predict_batch(sn2_model, alone)
        order = torch.argsort(torch.tensor(subset))  # the packed copy keeps the given order
        torch.testing.assert_close(energies[start : start + len(subset)][order], e_alone[m], rtol=0, atol=1e-10)
        expected = loss_eq10(e_alone[m : m + 1], f_alone[m : m + 1], alone)[0]
        torch.testing.assert_close(losses[m], expected, rtol=1e-12, atol=1e-14)
        (gradient,) = torch.autograd.grad(expected, weight)
        torch.testing.assert_close(packed_gradient[m], gradient[m], rtol=1e-9, atol=1e-12)
        start += len(subset)
    atoms_of_first = int(packed.n_atoms[: len(own[0])].sum())
    first = select_structures(full, torch.tensor(sorted(own[0])))
    _, f_first = predict_batch(sn2_model, first)
    # own[0] is already sorted, so the packed atoms of member 0 come in the same order
    torch.testing.assert_close(forces[:atoms_of_first], f_first[0], rtol=0, atol=1e-10)


def test_labels_are_referenced_in_float64_in_a_float32_run(sn2_model, sn2_frames):
    """E − Σ E_ref is formed in float64 and only then rounded to float32, once."""
    model = sn2_model.to(torch.float32)
    try:
        batch = prepare_batch(model, sn2_frames[:40])
    finally:
        sn2_model.to(torch.float64)
    labels = np.array([a.get_potential_energy() for a in sn2_frames[:40]])
    references = np.array([sum(model.reference_energies[s] for s in a.get_chemical_symbols()) for a in sn2_frames[:40]])
    assert batch.energy.dtype == torch.float32 and batch.reference_sum.dtype == torch.float64
    np.testing.assert_array_equal(batch.energy.numpy(), (labels - references).astype(np.float32))
    # referencing in float32 (the labels and the sum rounded first) differs by up to a meV per conformation
    in_float32 = labels.astype(np.float32) - references.astype(np.float32)
    assert np.abs(in_float32 - (labels - references)).max() > 1e-4
