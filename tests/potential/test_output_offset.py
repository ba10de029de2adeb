"""Output offset of fresh networks and the parametrisation of the trainable standardisation α (G − β)."""

import numpy as np
import torch

from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.model.networks import ElementNetwork


def _fresh(frames, free_atoms, **kwargs):
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    model = Ensemble.new(elements, members=4, hidden=(16, 8), reference_energies=free_atoms, seed=1, **kwargs)
    model.initialize_standardization(frames)
    return model


def _errors_per_atom(model, frames):
    prediction = model.evaluate(frames, forces=False)
    labels = np.array([a.get_potential_energy() for a in frames])
    return (prediction.energy_members - labels) / np.array([len(a) for a in frames])  # (M, S)


def test_a_fresh_ensemble_starts_within_a_tenth_of_an_ev_per_atom_of_the_labels(sn2_frames, free_atoms):
    frames = sn2_frames[:40]
    model = _fresh(frames, free_atoms)
    # with free-atom references the networks would have to learn the atomisation energy from zero
    assert np.abs(_errors_per_atom(model, frames).mean(1)).min() > 1.0
    shifts = model.initialize_output_offset(frames, [a.get_potential_energy() for a in frames])
    errors = _errors_per_atom(model, frames)
    assert np.abs(errors.mean(1)).max() < 0.1  # every member, on average over the data
    assert abs(float(errors.mean())) < 0.1  # the ensemble
    assert set(shifts) == set(model.elements) and all(len(v) == 4 for v in shifts.values())
    assert model.output_offsets == shifts  # recorded with the model


def test_lmlp_train_starts_new_models_at_the_offset(tmp_path, sn2_frames, free_atoms):
    from ase.io import write

    from aiida_lmlp.formats.training_config import default_config, merge_config
    from aiida_lmlp.potential.training.run import run_training

    write(tmp_path / "data.extxyz", sn2_frames[:30])
    config = merge_config(
        default_config(), {"epochs": 0, "members": 3, "hidden": [8], "reference_energies": free_atoms}
    )
    run_training([tmp_path / "data.extxyz"], config, tmp_path / "model.lmlp")
    model = Ensemble.load(tmp_path / "model.lmlp")
    assert np.abs(_errors_per_atom(model, sn2_frames[:30]).mean(1)).max() < 0.1
    assert model.reference_energies == {e: free_atoms[e] for e in model.elements}


def test_the_standardisation_shift_is_trained_in_units_of_the_initial_spread():
    """Same function either way; β's gradient is scaled by α in the paper's coordinates, not in the relative ones."""
    generator = torch.Generator().manual_seed(0)
    spread = torch.tensor([0.01, 1.0, 5.0], dtype=torch.float64)  # α = 100, 1, 0.2
    data = 3.0 + spread * torch.randn(200, 3, generator=generator, dtype=torch.float64)
    seeds = [torch.Generator().manual_seed(7)]
    relative = ElementNetwork(3, (5,), 1, seeds)
    paper = ElementNetwork(3, (5,), 1, [torch.Generator().manual_seed(7)])
    relative.set_standardization(data, "relative")
    paper.set_standardization(data, "paper")
    torch.testing.assert_close(relative.alpha, paper.alpha, rtol=0, atol=0)
    torch.testing.assert_close(relative.beta, paper.beta, rtol=0, atol=0)
    x = data[:20]
    torch.testing.assert_close(relative(x), paper(x), rtol=1e-15, atol=1e-15)
    # ∂L/∂x of the standardised input, by autograd through an explicit copy
    alpha = paper.alpha.detach()
    standardised = (alpha * (x - paper.beta.detach())).requires_grad_()
    out = standardised.unsqueeze(0)
    for k, (w, b) in enumerate(zip(paper.weights, paper.biases)):
        out = torch.baddbmm(b[:, None, :], out, w)
        if k < len(paper.weights) - 1:
            out = 1.59223 * torch.tanh(out)
    (d_x,) = torch.autograd.grad(out.sum(), standardised)
    relative(x).sum().backward()
    paper(x).sum().backward()
    # paper: ∂L/∂β = −α Σ ∂L/∂x (100× for the narrow descriptor); relative: ∂L/∂shift = −Σ ∂L/∂x
    torch.testing.assert_close(paper.shift.grad[0], -alpha[0] * d_x.sum(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(relative.shift.grad[0], -d_x.sum(0), rtol=1e-12, atol=1e-14)
    # α's gradient is of the standardised input's size in both, Σ (G − β) ∂L/∂x, times α₀ = 1/spread for `scale`
    centred = (x - paper.beta.detach())[None]
    torch.testing.assert_close(paper.scale.grad, (centred * d_x).sum(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(relative.scale.grad, (alpha * centred * d_x).sum(1), rtol=1e-12, atol=1e-14)


def test_adam_at_the_papers_rate_moves_the_narrow_input_by_about_the_rate():
    """One Adam step of 1e-3 on β moves the standardised input by α·1e-3 in the paper's coordinates."""
    data = 3.0 + torch.tensor([0.01, 1.0], dtype=torch.float64) * torch.randn(
        100, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    moves, alphas = {}, {}
    for kind in ("relative", "paper"):
        net = ElementNetwork(2, (4,), 1, [torch.Generator().manual_seed(3)])
        net.set_standardization(data, kind)
        before = (net.alpha * (data[:1] - net.beta)).detach()
        optimizer = torch.optim.Adam([net.shift], lr=1e-3)
        net(data[:10]).sum().backward()
        optimizer.step()
        moves[kind] = ((net.alpha * (data[:1] - net.beta)).detach() - before).abs()[0]
        alphas[kind] = net.alpha.detach()[0]
    torch.testing.assert_close(moves["relative"], torch.full((2,), 1e-3, dtype=torch.float64), rtol=1e-6, atol=0)
    # Adam's first step is the rate itself: the paper's β moves the input by α·1e-3 (α ≈ 100, 1 here)
    assert float(alphas["paper"][0]) > 90
    torch.testing.assert_close(moves["paper"], 1e-3 * alphas["paper"], rtol=1e-6, atol=0)


def test_a_model_file_of_the_papers_parametrisation_keeps_it(tmp_path, sn2_frames, free_atoms):
    model = _fresh(sn2_frames[:10], free_atoms, standardization="paper")
    model.save(tmp_path / "paper.lmlp")
    loaded = Ensemble.load(tmp_path / "paper.lmlp")
    assert loaded.standardization == "paper"
    net = loaded.networks.networks["C"]
    assert torch.equal(net.scale0, torch.ones_like(net.scale0))
    assert not torch.equal(net.scale, torch.ones_like(net.scale))
    np.testing.assert_array_equal(loaded.evaluate(sn2_frames[:3]).energy, model.evaluate(sn2_frames[:3]).energy)
