"""The explicit descriptor Jacobian (used for per-member forces) against autograd."""

import numpy as np
import pytest
import torch

import aiida_lmlp.potential.model.ensemble as ensemble_module
from aiida_lmlp.potential import ACSF, EeACSF, Ensemble
from aiida_lmlp.potential.descriptors import symmetry_functions
from aiida_lmlp.potential.descriptors.neighbors import build_graph
from aiida_lmlp.potential.descriptors.symmetry_functions import AtomCenteredDescriptor, half_one_plus_lambda_cos

from .helpers import random_box


@pytest.mark.parametrize("layout", ["pair", "triplet"])
@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
def test_pair_gradients_equal_the_autograd_vector_jacobian_products(kind, layout, sn2_frames, monkeypatch):
    monkeypatch.setattr(symmetry_functions, "MIN_SUMS_FOR_SLOTS", 0)  # slots for a batch this small too
    descriptor = EeACSF.from_paper(["H", "C", "N", "O", "F", "S", "Cl", "Br"], cutoff=6.0)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    t = build_graph(sn2_frames[:8], descriptor.elements, descriptor.cutoff).tensors()
    positions = t["positions"].clone().requires_grad_(True)
    values = descriptor(positions, t["cells"], t)
    cotangent = torch.randn(3, *values.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.autograd.grad(values, positions, cotangent, is_grads_batched=True)[0]  # (3, A, 3)

    jacobian = descriptor.sums_and_jacobian(t["positions"], t["cells"], t, chunk_size=50, layout=layout)  # chunks
    assert jacobian.layout == layout
    # molecules with 3-4 of the 8 elements: the per-triplet layout keeps each atom's own buckets
    assert (jacobian.slots is not None) == (layout == "triplet")
    radial, angular = jacobian.radial.requires_grad_(), jacobian.angular.requires_grad_()
    again = descriptor.values_from_sums(radial, angular, jacobian.slots)
    torch.testing.assert_close(again, values.detach(), rtol=0, atol=1e-13)
    cotangents = torch.autograd.grad(again, (radial, angular), cotangent, is_grads_batched=True)
    pair = descriptor.pair_gradients(jacobian, t, *cotangents)  # (3, P, 3)
    gradient = torch.zeros_like(expected)
    gradient.index_add_(1, t["neighbors"], pair)
    gradient.index_add_(1, t["centers"], -pair)
    torch.testing.assert_close(gradient, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("layout", ["pair", "triplet"])
@pytest.mark.parametrize("block_bytes", [1, 20_000, 1 << 40], ids=["one atom per block", "several", "one block"])
def test_value_pair_gradients_in_atom_blocks_equal_the_autograd_vector_jacobian_products(layout, block_bytes):
    from ase import Atoms

    descriptor = EeACSF.from_paper(["H", "C", "O"], cutoff=5.0)
    # lone atoms (no pairs, no triplets: empty ranges in their blocks) before, between and after
    lone = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    structures = [lone, random_box("H8C4O4", 7.0, seed=3), lone, random_box("H6C3O3", 6.5, seed=4), lone]
    t = build_graph(structures, descriptor.elements, descriptor.cutoff).tensors()
    positions = t["positions"].clone().requires_grad_(True)
    values = descriptor(positions, t["cells"], t)
    cotangent = torch.randn(3, *values.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = torch.autograd.grad(values, positions, cotangent, is_grads_batched=True)[0]  # (3, A, 3)

    jacobian = descriptor.sums_and_jacobian(t["positions"], t["cells"], t, layout=layout)
    pair = descriptor.value_pair_gradients(jacobian, t, values.detach(), cotangent, block_bytes=block_bytes)
    gradient = torch.zeros_like(expected)
    gradient.index_add_(1, t["neighbors"], pair)
    gradient.index_add_(1, t["centers"], -pair)
    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
def test_closed_form_sums_cotangents_equal_autograd(kind):
    from ase import Atoms

    descriptor = EeACSF.from_paper(["H", "C", "O"], cutoff=5.0)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    # a lone atom (all its functions exactly 0: the square root's kink) beside a periodic box
    lone = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    graph = build_graph([random_box("H8C4O4", 7.0, seed=3), lone], descriptor.elements, descriptor.cutoff)
    t = graph.tensors()
    radial, angular = (x.detach().requires_grad_() for x in descriptor.sums(t["positions"], t["cells"], t))
    values = descriptor.values_from_sums(radial, angular)
    assert (values[-1] == 0).all() and (values[:-1] != 0).any()
    cotangent = torch.randn(4, *values.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = torch.autograd.grad(values, (radial, angular), cotangent, is_grads_batched=True)
    ours = descriptor.sums_cotangents(values.detach(), cotangent)
    for mine, reference in zip(ours, expected):
        assert mine.shape == reference.shape
        torch.testing.assert_close(mine, reference, rtol=1e-12, atol=1e-14)


def test_auto_layout_is_per_triplet_for_molecules_and_per_pair_for_dense_boxes(sn2_frames):
    elements = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]
    descriptor = EeACSF.from_paper(elements, cutoff=6.0)
    molecule = build_graph(sn2_frames[:4], elements, 6.0).tensors()
    assert descriptor.sums_and_jacobian(molecule["positions"], molecule["cells"], molecule).layout == "triplet"
    box = build_graph([random_box("H40C20O20", 9.0, seed=1)], elements, 6.0).tensors()
    assert descriptor.sums_and_jacobian(box["positions"], box["cells"], box).layout == "pair"


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
    for method in (
        descriptor.triplet_jacobian,
        lambda *a, **k: AtomCenteredDescriptor.triplet_jacobian(descriptor, *a, **k),
    ):
        out = torch.full((300, len(descriptor.angular_eta) * 2 * 3, 6), float("nan"), dtype=torch.float64)
        values, d_a, d_b = method(*args, out=out)  # the derivatives written into out, v_a's first
        torch.testing.assert_close(values, closed[0], rtol=0, atol=1e-15)
        torch.testing.assert_close(out, torch.cat([closed[1], closed[2]], dim=-1), rtol=1e-10, atol=1e-12)
        assert d_a.data_ptr() == out.data_ptr() and torch.equal(d_b, out[..., 3:])


def test_both_force_paths_of_the_ensemble_agree(monkeypatch):
    elements = ["H", "C", "O"]
    model = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=5.0), members=3, hidden=(12,), seed=2)
    atoms = random_box("H8C4O4", 7.0, seed=4)
    monkeypatch.setattr(ensemble_module, "JACOBIAN_MIN_TRIPLETS", 0)
    via_jacobian = model.evaluate(atoms, stress=True)
    monkeypatch.setattr(ensemble_module, "JACOBIAN_MIN_TRIPLETS", 10**12)
    via_autograd = model.evaluate(atoms, stress=True)
    np.testing.assert_allclose(via_jacobian.forces_members, via_autograd.forces_members, atol=1e-10)
    np.testing.assert_allclose(via_jacobian.stress, via_autograd.stress, atol=1e-12)
    np.testing.assert_allclose(via_jacobian.energy_members, via_autograd.energy_members, atol=1e-10)
    mean_only = model.evaluate(atoms, stress=True, member_forces=False)
    np.testing.assert_allclose(mean_only.forces, via_jacobian.forces, atol=1e-10)
    np.testing.assert_allclose(mean_only.stress, via_jacobian.stress, atol=1e-12)


def test_the_angle_factor_keeps_its_gradient_where_rounding_clamps_it():
    """Rounding can put cos θ an ulp beyond −1: the value is raised to 0, the gradient stays λ/2."""
    cos = torch.tensor([-1.0 - 2.0**-52, -1.0, 0.3], dtype=torch.float64, requires_grad=True)
    base = half_one_plus_lambda_cos(cos, torch.tensor([-1.0, 1.0]))
    assert base[0, 1].item() == 0.0 and base[1, 1].item() == 0.0 and base.min().item() >= 0.0
    assert base[2].tolist() == pytest.approx([0.35, 0.65], abs=1e-15)
    (gradient,) = torch.autograd.grad(base[:, 1].sum(), cos)
    assert gradient.tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
def test_descriptor_gradients_are_stable_at_a_straight_angle(kind, sn2_frames):
    """Conformation 15 has a Cl–C–F angle 1.5e-8 rad from 180°: 1e-13 Å moves must not move the gradient.

    With a clamp at 1 + λ cos θ = 0 the ζ = 1 functions lost the cos θ term whenever the
    last bit of cos θ put it beyond −1, and the gradients jumped by 1e-9 (CPU and GPU
    then disagreed at 1e-7 in the forces of a model with large standardisation weights).
    """
    atoms = sn2_frames[15]
    assert atoms.get_angle(1, 0, 2) == pytest.approx(180.0, abs=1e-6)
    elements = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]
    descriptor = EeACSF.from_paper(elements)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    t = build_graph([atoms], elements, descriptor.cutoff).tensors()
    projection = torch.randn(
        len(atoms), len(descriptor), dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )

    def gradients(positions):
        positions = positions.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad((descriptor(positions, t["cells"], t) * projection).sum(), positions)
        return gradient

    moved = t["positions"] + 1e-13 * torch.randn(
        t["positions"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    assert (gradients(moved) - gradients(t["positions"])).abs().max().item() < 1e-11


def test_the_jacobian_and_backward_paths_agree_closely_on_sn2(sn2_model, sn2_frames):
    """Both per-member force paths on 30 conformations with near-straight angles: equal to rounding."""
    jacobian_path = sn2_model.evaluate(sn2_frames[:30])  # enough triplets for the descriptor Jacobian
    backward_path = sn2_model.evaluate(sn2_frames[:30], member_forces=False)  # one backward pass
    assert (
        build_graph(sn2_frames[:30], sn2_model.elements, 12.0).triplets.shape[0]
        >= ensemble_module.JACOBIAN_MIN_TRIPLETS
    )
    np.testing.assert_allclose(jacobian_path.forces, backward_path.forces, rtol=0, atol=1e-11)


def test_closed_form_pair_derivatives_equal_forward_mode_differentiation_and_finite_differences():
    descriptor = EeACSF.from_paper(["H", "C", "Cl"], cutoff=6.0)
    # inside, just below the cutoff (where f_c and every derivative vanish), at and beyond it
    r = torch.cat([torch.linspace(0.4, 5.9, 200), torch.tensor([5.999, 6.0, 6.5])]).to(torch.float64)
    closed = descriptor.pair_features_and_derivatives(r)
    generic = AtomCenteredDescriptor.pair_features_and_derivatives(descriptor, r)  # torch.func.jvp
    for a, b in zip(closed, generic):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    radial, d_radial, part, d_part = closed
    torch.testing.assert_close(radial, descriptor.radial_features(r), rtol=0, atol=0)
    torch.testing.assert_close(part, descriptor.angular_pair_features(r), rtol=0, atol=0)
    h = 1e-6
    inner = r[:200]
    for features, derivative in ((descriptor.radial_features, d_radial), (descriptor.angular_pair_features, d_part)):
        central = (features(inner + h) - features(inner - h)) / (2 * h)
        torch.testing.assert_close(derivative[:200], central, rtol=1e-6, atol=1e-9)
        assert torch.all(derivative[200:] == 0)


def test_the_eeacsf_jacobian_path_does_not_import_torch_dynamo(tmp_path):
    """torch.func (forward mode) imports torch._dynamo on first use: 1-3 s in every lmlp process."""
    import subprocess
    import sys

    script = """
import sys
from ase.io import read
from aiida_lmlp.potential import EeACSF, Ensemble
from aiida_lmlp.potential.model.ensemble import JACOBIAN_MIN_TRIPLETS
from aiida_lmlp.potential.descriptors.neighbors import build_graph
frames = read(sys.argv[1], ":20")
elements = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]
model = Ensemble.new(elements, EeACSF.from_paper(elements), members=3, hidden=(8,), seed=0,
                     reference_energies={e: 0.0 for e in elements})
assert build_graph(frames, elements, 12.0).tensors()["triplets"].shape[0] >= JACOBIAN_MIN_TRIPLETS
model.evaluate(frames, forces=True, member_forces=True)
print("torch._dynamo" in sys.modules)
"""
    from ..conftest import SN2

    out = subprocess.run(
        [sys.executable, "-c", script, str(SN2 / "pool_a.extxyz")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_used_bucket_slots_number_each_atoms_buckets_in_order():
    from aiida_lmlp.potential.descriptors.symmetry_functions import used_bucket_slots

    # atom 0 uses buckets 4 and 1 (1 twice), atom 1 none, atom 2 bucket 0: rows atom·5 + bucket
    buckets, slot = used_bucket_slots(torch.tensor([4, 1, 1, 10]), n_atoms=3, n_buckets=5)
    assert buckets.tolist() == [[1, 4], [0, 0], [0, 0]]  # width 2; padding holds bucket 0
    assert slot[0, 1] == 0 and slot[0, 4] == 1 and slot[2, 0] == 0


@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
@pytest.mark.parametrize("block_bytes", [1, 300_000, 1 << 40], ids=["one atom per block", "several", "one block"])
def test_per_atom_bucket_slots_give_the_same_pair_gradients_as_all_buckets(kind, block_bytes, sn2_frames, monkeypatch):
    import dataclasses

    monkeypatch.setattr(symmetry_functions, "MIN_SUMS_FOR_SLOTS", 0)
    descriptor = EeACSF.from_paper(["H", "C", "N", "O", "F", "S", "Cl", "Br"], cutoff=6.0)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    t = build_graph(sn2_frames[:12], descriptor.elements, descriptor.cutoff).tensors()
    jacobian = descriptor.sums_and_jacobian(t["positions"], t["cells"], t, layout="triplet")
    slots = jacobian.slots
    # an SN2 conformation has 3-4 of the 8 elements: each atom's slots are far fewer than the buckets
    assert slots.radial_buckets.shape[1] <= 4 < descriptor.n_species
    assert slots.angular_buckets.shape[1] <= 10 < descriptor.n_species_pairs
    values = descriptor.values_from_sums(jacobian.radial, jacobian.angular, slots)
    cotangent = torch.randn(3, *values.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    compact = descriptor.value_pair_gradients(jacobian, t, values, cotangent, block_bytes=block_bytes)
    every_bucket = dataclasses.replace(jacobian, slots=None)
    full = descriptor.value_pair_gradients(every_bucket, t, values, cotangent, block_bytes=block_bytes)
    torch.testing.assert_close(compact, full, rtol=1e-13, atol=1e-15)
    assert compact.abs().max() > 0


@pytest.mark.parametrize("kind", ["eeacsf", "acsf"])
def test_descriptor_from_each_atoms_buckets_equals_the_one_from_every_bucket(kind, sn2_frames, monkeypatch):
    monkeypatch.setattr(symmetry_functions, "MIN_SUMS_FOR_SLOTS", 0)
    descriptor = EeACSF.from_paper(["H", "C", "N", "O", "F", "S", "Cl", "Br"], cutoff=6.0)
    if kind == "acsf":
        descriptor = ACSF.like(descriptor)
    t = build_graph(sn2_frames[:12], descriptor.elements, descriptor.cutoff).tensors()
    assert descriptor.bucket_slots(t, t["positions"].shape[0]) is not None
    positions = t["positions"].clone().requires_grad_(True)
    compact = descriptor(positions, t["cells"], t)  # forward: sums per slot
    every_bucket = descriptor.values_from_sums(*descriptor.sums(positions, t["cells"], t))  # (A, S, E), (A, Q, F)
    torch.testing.assert_close(compact, every_bucket, rtol=1e-13, atol=1e-14)
    weights = torch.randn(compact.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (g_compact,) = torch.autograd.grad((compact * weights).sum(), positions)
    (g_every,) = torch.autograd.grad((every_bucket * weights).sum(), positions)
    torch.testing.assert_close(g_compact, g_every, rtol=1e-12, atol=1e-13)


def test_no_bucket_slots_where_every_atom_sees_every_species_or_the_batch_is_small(sn2_frames, monkeypatch):
    elements = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]
    descriptor = EeACSF.from_paper(elements, cutoff=6.0)
    dense = build_graph([random_box("H4C4N4O4F4S4Cl4Br4", 8.0, seed=1)], elements, 6.0).tensors()
    small = build_graph(sn2_frames[:8], elements, 6.0).tensors()  # 52 atoms: 26 k numbers in the sums
    assert descriptor.bucket_slots(small, small["positions"].shape[0]) is None
    monkeypatch.setattr(symmetry_functions, "MIN_SUMS_FOR_SLOTS", 0)
    assert descriptor.bucket_slots(small, small["positions"].shape[0]) is not None
    assert descriptor.bucket_slots(dense, dense["positions"].shape[0]) is None  # all 8 species around every atom
    few = EeACSF.from_paper(["H", "C", "Cl"], cutoff=6.0)  # 3 species: never
    assert few.bucket_slots(small, small["positions"].shape[0]) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("path", ["jacobian", "autograd"])
def test_ensemble_with_bucket_slots_predicts_what_it_predicts_without(dtype, path, sn2_frames, monkeypatch):
    elements = ["H", "C", "N", "O", "F", "S", "Cl", "Br"]
    model = Ensemble.new(
        elements, EeACSF.from_paper(elements, cutoff=6.0), members=3, hidden=(16,), seed=1, dtype=dtype
    )
    frames = sn2_frames[:40]  # about 260 atoms: over MIN_SUMS_FOR_SLOTS with 8 elements
    t = build_graph(frames, elements, 6.0).tensors()
    assert model.descriptor.bucket_slots(t, t["positions"].shape[0]) is not None
    threshold = 0 if path == "jacobian" else 10**12
    monkeypatch.setattr(ensemble_module, "JACOBIAN_MIN_TRIPLETS", threshold)
    with_slots = model.evaluate(frames)
    monkeypatch.setattr(symmetry_functions, "MIN_SPECIES_FOR_SLOTS", 10**6)  # every bucket
    without = model.evaluate(frames)
    tolerance = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    np.testing.assert_allclose(with_slots.energy_members, without.energy_members, **tolerance)
    np.testing.assert_allclose(with_slots.forces_members, without.forces_members, **tolerance)
    np.testing.assert_allclose(with_slots.forces_uncertainty, without.forces_uncertainty, **tolerance)
