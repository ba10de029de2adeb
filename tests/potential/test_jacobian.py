"""The explicit descriptor Jacobian (used for per-member forces) against autograd."""

import numpy as np
import pytest
import torch

import aiida_lmlp.potential.ensemble as ensemble_module
from aiida_lmlp.potential import ACSF, EeACSF, Ensemble
from aiida_lmlp.potential.neighbors import build_graph
from aiida_lmlp.potential.symmetry_functions import AtomCenteredDescriptor

from .helpers import random_box


@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
def test_pair_gradients_equal_the_autograd_vector_jacobian_products(kind, sn2_frames):
    descriptor = EeACSF.from_paper(["H", "C", "N", "O", "F", "S", "Cl", "Br"], cutoff=6.0)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    t = build_graph(sn2_frames[:8], descriptor.elements, descriptor.cutoff).tensors()
    positions = t["positions"].clone().requires_grad_(True)
    values = descriptor(positions, t["cells"], t)
    cotangent = torch.randn(3, *values.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.autograd.grad(values, positions, cotangent, is_grads_batched=True)[0]  # (3, A, 3)

    jacobian = descriptor.sums_and_jacobian(t["positions"], t["cells"], t, chunk_size=50)  # several chunks
    radial, angular = jacobian.radial.requires_grad_(), jacobian.angular.requires_grad_()
    again = descriptor.values_from_sums(radial, angular)
    torch.testing.assert_close(again, values.detach(), rtol=0, atol=1e-13)
    cotangents = torch.autograd.grad(again, (radial, angular), cotangent, is_grads_batched=True)
    pair = descriptor.pair_gradients(jacobian, t, *cotangents)  # (3, P, 3)
    gradient = torch.zeros_like(expected)
    gradient.index_add_(1, t["neighbors"], pair)
    gradient.index_add_(1, t["centers"], -pair)
    torch.testing.assert_close(gradient, expected, rtol=1e-8, atol=1e-8)


def test_closed_form_triplet_jacobian_equals_forward_mode_differentiation():
    descriptor = EeACSF.from_paper(["H", "O"], cutoff=6.0)
    generator = torch.Generator().manual_seed(1)
    v_a = 2.0 * torch.randn(300, 3, dtype=torch.float64, generator=generator)
    v_b = 2.0 * torch.randn(300, 3, dtype=torch.float64, generator=generator)
    v_a[0], v_b[0] = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-2.0, 0.0, 0.0])  # collinear, as in SN2
    r_a, r_b = torch.linalg.vector_norm(v_a, dim=-1), torch.linalg.vector_norm(v_b, dim=-1)
    parts = []
    for r in (r_a, r_b):
        parts.extend(torch.func.jvp(descriptor.angular_pair_features, (r,), (torch.ones_like(r),)))
    args = (v_a, v_b, parts[0], parts[2], parts[1], parts[3])
    closed = descriptor.triplet_jacobian(*args)
    generic = AtomCenteredDescriptor.triplet_jacobian(descriptor, *args)
    for ours, reference in zip(closed, generic):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_both_force_paths_of_the_ensemble_agree(monkeypatch):
    elements = ["H", "C", "O"]
    model = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=5.0), members=3, hidden=(12,), seed=2)
    atoms = random_box("H8C4O4", 7.0, seed=4)
    monkeypatch.setattr(ensemble_module, "JACOBIAN_MIN_TRIPLETS_PER_ATOM", 0)
    via_jacobian = model.evaluate(atoms, stress=True)
    monkeypatch.setattr(ensemble_module, "JACOBIAN_MIN_TRIPLETS_PER_ATOM", 10**12)
    via_autograd = model.evaluate(atoms, stress=True)
    np.testing.assert_allclose(via_jacobian.forces_members, via_autograd.forces_members, atol=1e-10)
    np.testing.assert_allclose(via_jacobian.stress, via_autograd.stress, atol=1e-12)
    np.testing.assert_allclose(via_jacobian.energy_members, via_autograd.energy_members, atol=1e-10)
    mean_only = model.evaluate(atoms, stress=True, member_forces=False)
    np.testing.assert_allclose(mean_only.forces, via_jacobian.forces, atol=1e-10)
    np.testing.assert_allclose(mean_only.stress, via_jacobian.stress, atol=1e-12)
