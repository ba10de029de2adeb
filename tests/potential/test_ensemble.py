"""Ensemble predictions and uncertainties (Eqs. 21–23), stacking, standardisation, new elements."""

import copy
import math

import numpy as np
import pytest
import torch
from ase import Atoms

from aiida_lmlp.potential import EeACSF, Ensemble
from aiida_lmlp.potential.model.networks import ACTIVATION_SCALE, RELATIVE_SPREAD_FLOOR, scaled_tanh

from ..conftest import SN2_ELEMENTS


def _constant_member_model(biases, reference):
    model = Ensemble.new(["H", "C", "Cl"], members=len(biases), hidden=(5,), reference_energies=reference, seed=0)
    with torch.no_grad():
        for net in model.networks.networks.values():
            net.weights[-1].zero_()
            net.biases[-1].copy_(torch.tensor(biases, dtype=torch.float64)[:, None])
    return model


def test_energy_uncertainty_is_equation_23_on_a_hand_made_case():
    # every atom of member p contributes b_p: E_p = 7 b_p + sum of reference energies
    reference = {"H": -13.5, "C": -1027.0, "Cl": -12511.0}
    model = _constant_member_model([0.1, 0.2, 0.6], reference)
    atoms = Atoms(
        "CH3Cl2H",
        positions=[
            [0, 0, 0],
            [1.09, 0, 0],
            [-0.36, 1.03, 0],
            [-0.36, -0.51, 0.89],
            [-0.6, -0.6, -1.5],
            [3, 0, 0],
            [0, 3.2, 0],
        ],
    )
    offset = -1027.0 - 4 * 13.5 - 2 * 12511.0
    # E_p = 0.7, 1.4, 4.2 (+offset); mean 2.1; squared deviations 1.96 + 0.49 + 4.41 = 6.86
    p = model.evaluate(atoms)
    np.testing.assert_allclose(p.energy_members[:, 0], np.array([0.7, 1.4, 4.2]) + offset, atol=1e-9)
    assert p.energy[0] == pytest.approx(2.1 + offset, abs=1e-9)
    assert p.energy_uncertainty[0] == pytest.approx(2 * math.sqrt(6.86 / 2), rel=1e-12)
    # c = 3 scales it; an RMSE floor of 0.6 eV/atom x 7 atoms = 4.2 eV wins over 2 * 1.852 eV
    model.uncertainty_scale = 3.0
    assert model.evaluate(atoms).energy_uncertainty[0] == pytest.approx(3 * math.sqrt(3.43), rel=1e-12)
    model.uncertainty_scale = 2.0
    model.rmse_energy_per_atom = 0.6
    assert model.evaluate(atoms).energy_uncertainty[0] == pytest.approx(4.2, rel=1e-12)


def test_force_uncertainty_is_the_scaled_sample_std_with_the_rmse_floor(sn2_model, sn2_frames):
    model = copy.deepcopy(sn2_model)
    p = model.evaluate(sn2_frames[4])
    members = p.forces_members
    np.testing.assert_allclose(p.forces, members.mean(0), atol=1e-12)
    std = np.sqrt(((members - members.mean(0)) ** 2).sum(0) / (members.shape[0] - 1))
    np.testing.assert_allclose(p.forces_uncertainty, 2 * std, rtol=1e-10)
    model.rmse_forces = float(np.median(2 * std))
    floored = model.evaluate(sn2_frames[4]).forces_uncertainty
    np.testing.assert_allclose(floored, np.maximum(model.rmse_forces, 2 * std), rtol=1e-10)
    # mean forces do not depend on whether per-member forces were computed
    np.testing.assert_allclose(model.evaluate(sn2_frames[4], member_forces=False).forces, p.forces, atol=1e-10)


def test_stacked_members_equal_members_evaluated_alone(sn2_model, sn2_frames):
    stacked = sn2_model.evaluate(sn2_frames[:3])
    for member in range(sn2_model.members):
        alone = Ensemble.new(
            sn2_model.elements,
            sn2_model.descriptor,
            members=1,
            hidden=sn2_model.networks.hidden,
            reference_energies=sn2_model.reference_energies,
        )
        for element, net in sn2_model.networks.networks.items():
            # weights and the standardisation's fixed buffers
            state = {name: value[member : member + 1] for name, value in net.state_dict().items()}
            alone.networks.networks[element].load_state_dict(state)
        single = alone.evaluate(sn2_frames[:3])
        np.testing.assert_allclose(single.energy, stacked.energy_members[member], atol=1e-10)
        np.testing.assert_allclose(single.forces, stacked.forces_members[member], atol=1e-10)


def test_members_start_from_different_weights_and_seeds_reproduce():
    a = Ensemble.new(["H", "O"], members=3, hidden=(8,), seed=5)
    b = Ensemble.new(["H", "O"], members=3, hidden=(8,), seed=5)
    c = Ensemble.new(["H", "O"], members=3, hidden=(8,), seed=6)
    wa = a.networks.networks["H"].weights[0]
    assert torch.equal(wa, b.networks.networks["H"].weights[0])
    assert not torch.equal(wa, c.networks.networks["H"].weights[0])
    assert not torch.equal(wa[0], wa[1])


def test_standardization_centres_and_scales_the_initial_data(sn2_model, sn2_frames):
    values, species = sn2_model.descriptors_of(sn2_frames[:30])
    flat = 0
    for k, element in enumerate(sn2_model.elements):
        rows = values[species == k]
        net = sn2_model.networks.networks[element]
        standardized = net.alpha[0] * (rows - net.beta[0])
        std, floor = rows.std(0, unbiased=False), RELATIVE_SPREAD_FLOOR * rows.square().mean().sqrt()
        varying = std > floor
        assert varying.any()
        np.testing.assert_allclose(standardized.mean(0).detach().numpy(), 0.0, atol=1e-9)
        np.testing.assert_allclose(standardized[:, varying].std(0, unbiased=False).detach().numpy(), 1.0, rtol=1e-9)
        # a spread below the floor (zero included) carries no scale yet: α stays 1
        assert torch.all(net.alpha[0][~varying] == 1.0)
        flat += int((~varying).sum())
    assert flat > 0  # the rule was exercised


def test_an_element_with_two_atoms_gives_a_well_conditioned_model(sn2_frames, free_atoms):
    """Two N atoms in the initial data: α stays bounded and forces do not jump with rounding."""
    frames = sn2_frames[:10]
    model = Ensemble.new(SN2_ELEMENTS, members=2, hidden=(24, 12), reference_energies=free_atoms, seed=2)
    model.initialize_standardization(frames)
    values, species = model.descriptors_of(frames)
    nitrogen = values[species == model.elements.index("N")]
    assert nitrogen.shape[0] == 2 and nitrogen.std(0, unbiased=False).min() < 1e-6  # the ill-conditioned case
    assert model.networks.networks["N"].alpha.max() < 1e4  # 1.3e6 with α = 1/std
    moved = [a.copy() for a in frames]
    for atoms in moved:
        atoms.positions += np.random.default_rng(0).normal(size=atoms.positions.shape) * 1e-13
    change = np.abs(model.evaluate(moved).forces_members - model.evaluate(frames).forces_members).max()
    assert change < 2e-8  # 5e-9 measured; 4e-7 eV/Å with α = 1/std (up to 3e6)


def test_activation_and_initialisation_preserve_unit_variance():
    z = torch.randn(400_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert ACTIVATION_SCALE == 1.59223
    assert scaled_tanh(z).var().item() == pytest.approx(1.0, abs=0.01)
    model = Ensemble.new(["H"], members=2, hidden=(200, 200), seed=0)
    net = model.networks.networks["H"]
    x = torch.randn(2, 5000, 153, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h = torch.baddbmm(net.biases[0][:, None, :], x, net.weights[0])
    assert h.var().item() == pytest.approx(1.0, abs=0.05)
    h = torch.baddbmm(net.biases[1][:, None, :], scaled_tanh(h), net.weights[1])
    assert h.var().item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_activation_and_slope_from_one_sigmoid_equal_tanh_and_its_derivative(dtype):
    from aiida_lmlp.potential.model.networks import scaled_tanh_and_slope

    x = torch.cat([torch.linspace(-30.0, 30.0, 6001, dtype=torch.float64), torch.tensor([-1e4, -400.0, 400.0, 1e4])])
    given = x.to(dtype)
    before = given.clone()
    activation, slope = scaled_tanh_and_slope(given)
    assert torch.equal(given, before)  # the input is left as it was
    assert activation.dtype == slope.dtype == dtype
    assert torch.isfinite(activation).all() and torch.isfinite(slope).all()  # σ(−2|x|) underflows to 0 for the largest
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(activation.double(), ACTIVATION_SCALE * torch.tanh(x), rtol=0, atol=8 * eps)
    # f'(x) = s / cosh²(x), to a few ulp relative on both sides, also deep in saturation (where s − f²/s
    # loses it to cancellation)
    exact = ACTIVATION_SCALE / torch.cosh(x) ** 2
    torch.testing.assert_close(slope.double(), exact, rtol=64 * eps, atol=1e-300 if dtype == torch.float64 else 1e-37)
    assert slope[x.abs() == 400].eq(0).all() and activation[-1] == ACTIVATION_SCALE == -activation[-4]


def test_adding_an_element_leaves_existing_networks_unchanged(sn2_frames):
    model = Ensemble.new(["H", "C", "Cl", "Br", "F", "O", "N", "S"], members=2, hidden=(8,), seed=2)
    before = model.evaluate(sn2_frames[:4])
    weights = {k: v.clone() for k, v in model.networks.state_dict().items()}
    model.add_element("Si", reference_energy=-7870.0)
    assert "Si" in model.elements and len(model.descriptor) == 153
    after = model.evaluate(sn2_frames[:4])
    # the same weights; one more element bucket changes the stacked matrix shapes, so BLAS may
    # sum in another order: equal to round-off (a few 1e-16 relative), not bit for bit
    np.testing.assert_allclose(after.energy_members, before.energy_members, rtol=1e-13, atol=0)
    np.testing.assert_allclose(after.forces_members, before.forces_members, rtol=1e-12, atol=1e-13)
    for name, value in weights.items():
        assert torch.equal(model.networks.state_dict()[name], value)
    silane = Atoms(
        "SiH4",
        positions=[[0, 0, 0], [0.86, 0.86, 0.86], [-0.86, -0.86, 0.86], [-0.86, 0.86, -0.86], [0.86, -0.86, -0.86]],
    )
    assert np.isfinite(model.evaluate(silane).energy[0])
    with pytest.raises(ValueError, match="twice"):
        model.add_element("Si", 0.0)


def test_acsf_models_cannot_grow_an_element():
    from aiida_lmlp.potential import ACSF

    model = Ensemble.new(["H", "O"], ACSF.like(EeACSF.from_paper(["H", "O"])), members=1, hidden=(4,))
    with pytest.raises(ValueError, match="would grow"):
        model.add_element("C", 0.0)


@pytest.mark.parametrize("elements", [["H", "C", "O"], ["O"]], ids=["three elements", "one element (written in place)"])
@pytest.mark.parametrize("hidden", [(7, 5, 3), (6,), ()])
def test_hand_written_input_gradients_equal_autograd(hidden, elements):
    from aiida_lmlp.potential.model.networks import StackedAtomicNetworks

    networks = StackedAtomicNetworks(elements, n_inputs=11, hidden=hidden, members=4, seed=3)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # a non-trivial standardisation α (G − β) and biases
        for parameter in networks.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, dtype=parameter.dtype, generator=generator))
    descriptors = torch.randn(23, 11, dtype=torch.float64, generator=generator)
    species = torch.tensor([0, 2, 1] * 7 + [2, 2]) % len(elements)  # every element, unsorted
    leaf = descriptors.unsqueeze(0).expand(4, -1, -1).clone().requires_grad_()
    expected = networks(leaf, species)
    (expected_gradients,) = torch.autograd.grad(expected.sum(), leaf)
    energies, gradients = networks.energies_and_input_gradients(descriptors, species)
    torch.testing.assert_close(energies, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradients, expected_gradients, rtol=1e-12, atol=1e-12)
