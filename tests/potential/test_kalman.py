"""Extended Kalman filter (Tokita & Behler Eqs. 14–18): equations by hand, least squares, λ(t), trainer."""

import math

import pytest
import torch

from aiida_lmlp.formats.training_config import ConfigError, default_config, merge_config
from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.training.batches import loss_eq10, predict_batch, prepare_batch
from aiida_lmlp.potential.training.kalman import ExtendedKalmanFilter, forgetting_factor, kalman_parameter_blocks
from aiida_lmlp.potential.training.trainer import Trainer, gather_trained, make_optimizer

from ..conftest import SN2_ELEMENTS

# -- the filter on linear models: y = Xᵀ w, Jacobian X ----------------------------------------------


def _linear_filter(sizes, members, generator, **settings):
    """Stacked weights ``(M, n_b)`` per block, and their filter."""
    blocks = {f"b{i}": [torch.randn(members, n, dtype=torch.float64, generator=generator)] for i, n in enumerate(sizes)}
    return blocks, ExtendedKalmanFilter(blocks, **settings)


def _predict(blocks, design):
    """Linear observations ``(M, k)``: ``ŷ_m = X_mᵀ w_m`` with ``design`` ``(M, n, k)``."""
    w = torch.cat([params[0] for params in blocks.values()], dim=1)
    return torch.einsum("mn,mnk->mk", w, design)


def _spd(n, generator):
    a = torch.randn(n, n, dtype=torch.float64, generator=generator)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64)


def test_one_update_follows_equations_15_to_18_computed_by_hand():
    """Two blocks (3 + 2 weights), two members, two observations per update, one member masked out later."""
    g = torch.Generator().manual_seed(1)
    lambda_start, lambda_0 = 0.95, 0.99
    blocks, ekf = _linear_filter((3, 2), 2, g, lambda_start=lambda_start, lambda_0=lambda_0)
    for name, n in (("b0", 3), ("b1", 2)):  # a general block-diagonal P(k−1)
        ekf.covariance[name] = torch.stack([_spd(n, g), _spd(n, g)])
    w_before = torch.cat([blocks["b0"][0], blocks["b1"][0]], dim=1).clone()
    p_before = {name: p.clone() for name, p in ekf.covariance.items()}
    design = torch.randn(2, 5, 2, dtype=torch.float64, generator=g)
    targets = torch.randn(2, 2, dtype=torch.float64, generator=g)
    for params in blocks.values():
        params[0].requires_grad_(True)
    ekf.observe(_predict(blocks, design), targets)

    for m in range(2):
        P = torch.block_diag(p_before["b0"][m], p_before["b1"][m])
        J = design[m]
        xi = targets[m] - J.T @ w_before[m]
        K = P @ J @ torch.linalg.inv(lambda_start * torch.eye(2, dtype=torch.float64) + J.T @ P @ J)  # Eq. 15
        w = w_before[m] + K @ xi  # Eq. 16
        lam = lambda_start * lambda_0 + 1 - lambda_0  # Eq. 18
        P_new = (torch.eye(5, dtype=torch.float64) - K @ J.T) @ P / lam  # Eq. 17
        got_w = torch.cat([blocks["b0"][0][m], blocks["b1"][0][m]]).detach()
        torch.testing.assert_close(got_w, w, rtol=1e-12, atol=1e-12)
        # decoupled: the diagonal blocks of the full update (P(k−1) was block diagonal, so the gain is exact)
        torch.testing.assert_close(ekf.covariance["b0"][m], P_new[:3, :3], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ekf.covariance["b1"][m], P_new[3:, 3:], rtol=1e-12, atol=1e-12)
        assert float(ekf.forgetting[m]) == pytest.approx(lam, abs=1e-15)
    assert ekf.steps.tolist() == [1, 1]

    # member 1 observes nothing: its weights, P and λ stay; member 0's block b1 has a zero Jacobian: b1 stays
    state = {k: v.clone() for k, v in ekf.state_dict().items()}
    w_mid = [params[0].detach().clone() for params in blocks.values()]
    design2 = design.clone()
    design2[:, 3:] = 0.0
    ekf.observe(_predict(blocks, design2), targets, torch.tensor([[True, True], [False, False]]))
    assert torch.equal(blocks["b0"][0][1], w_mid[0][1]) and torch.equal(blocks["b1"][0], w_mid[1])
    assert torch.equal(ekf.covariance["b0"][1], state["ekf.P.b0"][1])
    assert torch.equal(ekf.covariance["b1"], state["ekf.P.b1"])  # no forgetting without an observation
    assert not torch.equal(ekf.covariance["b0"][0], state["ekf.P.b0"][0])
    assert ekf.steps.tolist() == [2, 1] and float(ekf.forgetting[1]) == float(state["ekf.lambda"][1])


@pytest.mark.parametrize("per_update", [1, 3])
def test_with_lambda_one_the_filter_is_recursive_least_squares(per_update):
    """λ ≡ 1 on a linear model: after all data, w = (XXᵀ + I/p0)⁻¹ (X y + w0/p0) and P = (XXᵀ + I/p0)⁻¹."""
    g = torch.Generator().manual_seed(7)
    n, count, members, p0 = 4, 12, 2, 5.0
    blocks, ekf = _linear_filter((n,), members, g, p0=p0, lambda_start=1.0, lambda_0=0.9)
    w0 = blocks["b0"][0].clone()
    blocks["b0"][0].requires_grad_(True)
    X = torch.randn(members, n, count, dtype=torch.float64, generator=g)  # every member its own data
    y = torch.randn(members, count, dtype=torch.float64, generator=g)
    for start in range(0, count, per_update):
        design = X[:, :, start : start + per_update]
        ekf.observe(_predict(blocks, design), y[:, start : start + per_update])
    for m in range(members):
        normal = X[m] @ X[m].T + torch.eye(n, dtype=torch.float64) / p0
        expected = torch.linalg.solve(normal, X[m] @ y[m] + w0[m] / p0)
        torch.testing.assert_close(blocks["b0"][0][m].detach(), expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ekf.covariance["b0"][m], torch.linalg.inv(normal), rtol=1e-10, atol=1e-12)
    assert torch.equal(ekf.forgetting, torch.ones(members, dtype=torch.float64))
    assert torch.equal(ekf.covariance["b0"], ekf.covariance["b0"].transpose(1, 2))  # symmetric to the last bit


def test_forgetting_factor_follows_eq_18_per_member():
    g = torch.Generator().manual_seed(3)
    lambda_start, lambda_0 = 0.9, 0.97
    blocks, ekf = _linear_filter((2,), 2, g, lambda_start=lambda_start, lambda_0=lambda_0)
    blocks["b0"][0].requires_grad_(True)
    recursion = [lambda_start, lambda_start]
    for t in range(25):
        active = torch.tensor([[True], [t % 3 == 0]])  # member 1 updates every third step only
        design = torch.randn(2, 2, 1, dtype=torch.float64, generator=g)
        ekf.observe(_predict(blocks, design), torch.zeros(2, 1, dtype=torch.float64), active)
        for m in range(2):
            if active[m, 0]:
                recursion[m] = recursion[m] * lambda_0 + 1 - lambda_0  # Eq. 18
    assert ekf.steps.tolist() == [25, 9]
    for m in range(2):
        closed = forgetting_factor(lambda_start, lambda_0, int(ekf.steps[m]))
        assert closed == pytest.approx(1 - (1 - lambda_start) * lambda_0 ** int(ekf.steps[m]), abs=1e-15)
        assert float(ekf.forgetting[m]) == pytest.approx(recursion[m], abs=1e-14)
        assert float(ekf.forgetting[m]) == pytest.approx(closed, abs=1e-14)
    assert math.isclose(forgetting_factor(0.98, 0.9987, 0), 0.98)


# -- the filter in the trainer ------------------------------------------------------------------------

EKF_SMALL = {"forces_used": 2, "forces_per_update": 2}


def _config(members, **override):
    base = {
        "members": members,
        "fit_per_epoch": 3,
        "optimizer": "ekf",
        "test_fraction": 0.0,
        "selection": "random",
        "ekf": EKF_SMALL,
    }
    return merge_config(default_config(), {**base, **override})


def _model(members, frames, free_atoms, offset=0):
    model = Ensemble.new(
        SN2_ELEMENTS, members=members, hidden=(3,), reference_energies=free_atoms, seed=0, member_offset=offset
    )
    model.initialize_standardization(frames)
    model.initialize_output_offset(frames, [a.get_potential_energy() for a in frames])  # as lmlp train starts
    return model


def test_stacked_members_train_exactly_as_members_trained_alone(sn2_frames, free_atoms):
    frames = sn2_frames[:12]
    config = _config(3, fit_per_epoch=3)

    def trained(members, offset):
        model = _model(members, frames, free_atoms, offset)
        trainer = Trainer(model, frames, merge_config(config, {"members": members}), log=lambda message: None)
        for _ in range(2):
            trainer.train_epoch()
        return model, trainer.optimizer

    def assert_same(x, y, name):
        # equal up to rounding: the energy error ξ = E_ref − E (a few eV) is the difference of two numbers of
        # ~1.6·10⁴ eV, so summation-order rounding enters ξ at ~10⁻¹², and near-exact fits amplify it further
        assert float((x - y).abs().max()) <= 1e-8 * float(y.abs().max()), name

    stacked, stacked_ekf = trained(3, 0)
    for member in range(3):
        alone, alone_ekf = trained(1, member)
        for (name, x), (_, y) in zip(stacked.networks.state_dict().items(), alone.networks.state_dict().items()):
            assert_same(x[member : member + 1], y, name)
        for name, p in alone_ekf.covariance.items():
            assert_same(stacked_ekf.covariance[name][member : member + 1], p, name)
        assert torch.equal(stacked_ekf.steps[member : member + 1], alone_ekf.steps)
        assert torch.equal(stacked_ekf.forgetting[member : member + 1], alone_ekf.forgetting)
    assert int(stacked_ekf.steps.min()) == 2 * 3 * (1 + 1)  # per conformation: one energy, one force update


def test_every_member_observes_its_own_conformation_energy_per_atom_and_force_components(sn2_frames, free_atoms):
    """The observations handed to the filter are the right labels, in Hartree and Hartree/Bohr."""
    frames = sn2_frames[:9]
    config = _config(3, fit_per_epoch=2, ekf={"forces_used": 3, "forces_per_update": 2})
    trainer = Trainer(_model(3, frames, free_atoms), frames, config, log=lambda message: None)
    energy_unit, length_unit = config["ekf"]["energy_unit"], config["ekf"]["length_unit"]
    calls, observe = [], trainer.optimizer.observe

    def recording(predictions, targets, mask=None):
        calls.append((targets.detach().clone(), mask.clone()))
        return observe(predictions, targets, mask)

    trainer.optimizer.observe = recording
    trainer.train_epoch()
    assert len(calls) == 2 * (1 + 2)  # two steps: energy, then 3 force components as 2 + 1
    # the networks' target: the energy less the free-atom energies, per atom
    references = [sum(free_atoms[s] for s in a.get_chemical_symbols()) for a in frames]
    labels = [((a.get_potential_energy() - r) / len(a), a.get_forces().ravel()) for a, r in zip(frames, references)]
    for step in range(2):
        energy_targets, _ = calls[3 * step]
        for m in range(3):  # member m's energy target is the referenced energy per atom of one of the frames
            per_atom = float(energy_targets[m, 0]) * energy_unit
            frame = min(range(len(frames)), key=lambda i: abs(labels[i][0] - per_atom))
            assert per_atom == pytest.approx(labels[frame][0], abs=1e-9)
            forces = [calls[3 * step + 1 + u] for u in range(2)]
            seen = [float(t[m, i]) * energy_unit / length_unit for t, mask in forces for i in range(2) if mask[m, i]]
            assert len(seen) == 3 and len(set(seen)) == 3
            for value in seen:
                assert min(abs(value - f) for f in labels[frame][1]) < 1e-9
        assert calls[3 * step + 2][1][:, 1].sum() == 0  # the last update carries one component per member


def test_a_resumed_run_ends_with_the_same_weights_and_filter_state(tmp_path, sn2_frames, free_atoms):
    frames = sn2_frames[:10]
    config = _config(2, fit_per_epoch=2, checkpoint_every=2, ekf={**EKF_SMALL, "decoupling": "layer"})
    straight = Trainer(_model(2, frames, free_atoms), frames, config, log=lambda message: None)
    straight.run(3, tmp_path / "straight.lmlp")
    first = Trainer(_model(2, frames, free_atoms), frames, config, log=lambda message: None)
    first.run(2, tmp_path / "killed.lmlp")  # "killed" after its checkpoint at epoch 2
    resumed = Trainer(Ensemble.load(tmp_path / "killed.lmlp"), frames, config, log=lambda message: None)
    assert resumed.epoch == 2 and resumed.optimizer.steps.tolist() == first.optimizer.steps.tolist()
    resumed.run(1, tmp_path / "resumed.lmlp")

    a, b = Ensemble.load(tmp_path / "straight.lmlp"), Ensemble.load(tmp_path / "resumed.lmlp")
    for (name, x), (_, y) in zip(a.networks.state_dict().items(), b.networks.state_dict().items()):
        assert torch.equal(x, y), name
    assert sorted(a.training_state) == sorted(b.training_state)
    assert {"ekf.P.C.std", "ekf.P.C.0", "ekf.P.C.1", "ekf.lambda", "ekf.steps"} <= set(a.training_state)
    for name in a.training_state:
        torch.testing.assert_close(a.training_state[name], b.training_state[name], rtol=0, atol=0, equal_nan=True)
    assert a.training_config["trainer"] == b.training_config["trainer"]


def test_a_short_training_lowers_the_loss(sn2_frames, free_atoms):
    frames = sn2_frames[:16]
    model = _model(2, frames, free_atoms)
    batch = prepare_batch(model, frames)

    def loss():
        with torch.no_grad():
            energies, forces = predict_batch(model, batch)
            return loss_eq10(energies.detach(), forces.detach(), batch)

    before = loss()
    trainer = Trainer(model, frames, _config(2, fit_per_epoch=4), log=lambda message: None)
    for _ in range(4):
        trainer.train_epoch()
    after = loss()
    assert torch.isfinite(after).all()
    # from the output offset on (the loss of the fresh networks' shapes, not of a 3 eV/atom offset)
    assert (after < 0.8 * before).all(), (before, after)


def test_gathered_jobs_carry_the_filter_state_of_each_member(sn2_frames, free_atoms):
    frames = sn2_frames[:8]

    def job(members, offset):
        config = _config(members, member_offset=offset, fit_per_epoch=2, ekf={"forces_used": 0})
        trainer = Trainer(_model(members, frames, free_atoms, offset), frames, config, log=lambda message: None)
        trainer.train_epoch()
        trainer._write_state()
        return trainer.model

    stacked = job(2, 0)
    gathered = gather_trained([job(1, 1), job(1, 0)])
    assert sorted(k for k in gathered.training_state if k.startswith("ekf.")) == sorted(
        k for k in stacked.training_state if k.startswith("ekf.")
    )
    for name, value in stacked.training_state.items():
        if name.startswith("ekf."):
            torch.testing.assert_close(gathered.training_state[name], value, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"optimizer": "kalman"}, "'optimizer'"),
        ({"ekf": {"decoupling": "atom"}}, "'ekf.decoupling'"),
        ({"ekf": {"p0": 0.0}}, "'ekf.p0' = 0.0"),
        ({"ekf": {"lambda_start": 1.2}}, "'ekf.lambda_start'"),
        ({"ekf": {"lambda_0": 0.0}}, "'ekf.lambda_0'"),
        ({"ekf": {"process_noise": -1e-6}}, "'ekf.process_noise'"),
        ({"ekf": {"forces_used": 1.5}}, "'ekf.forces_used'"),
        ({"ekf": {"forces_per_update": 0}}, "'ekf.forces_per_update'"),
        ({"ekf": {"length_unit": -1.0}}, "'ekf.length_unit'"),
        ({"ekf": {"energy_unit": 0}}, "'ekf.energy_unit'"),
        ({"ekf": {"max_memory_gib": 0}}, "'ekf.max_memory_gib'"),
        ({"ekf": {"lambda": 0.99}}, "unknown configuration key 'ekf.lambda'"),
    ],
)
def test_bad_filter_settings_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        merge_config(default_config(), override)


def test_the_paper_network_is_refused_before_allocating_its_covariance():
    model = Ensemble.new(SN2_ELEMENTS, members=10, hidden=(102, 61, 44))
    blocks = kalman_parameter_blocks(model.networks, "element")
    assert [sum(p[0].numel() for p in b) for b in blocks.values()] == [25070] * 8
    layer = kalman_parameter_blocks(model.networks, "layer")
    assert [sum(p[0].numel() for p in layer[f"H.{k}"]) for k in ("std", 0, 1, 2, 3)] == [306, 15708, 6283, 2728, 45]
    with pytest.raises(ValueError, match="max_memory_gib"):
        make_optimizer(model, merge_config(default_config(), {"optimizer": "ekf"}))


def test_the_adaptive_threshold_skips_the_updates_whose_error_is_already_small(sn2_frames, free_atoms):
    """Tokita & Behler: only energies and forces whose error exceeds a multiple of the RMSE update the weights."""
    frames = sn2_frames[:12]
    thresholds = {"energy_threshold": 1.0, "force_threshold": 1.0}
    config = _config(2, fit_per_epoch=6, ekf={"forces_used": 4, "forces_per_update": 2, **thresholds})
    trainer = Trainer(_model(2, frames, free_atoms), frames, config, log=lambda message: None)
    energy_unit, length_unit = config["ekf"]["energy_unit"], config["ekf"]["length_unit"]
    calls, observe = [], trainer.optimizer.observe

    def recording(predictions, targets, mask=None):
        calls.append((predictions.detach().clone(), targets.detach().clone(), mask.clone()))
        return observe(predictions, targets, mask)

    trainer.optimizer.observe = recording
    record = trainer.train_epoch()
    rmse_energy, rmse_forces = trainer._kalman_rmse
    offered = 6 * (1 + 4)  # per member: 6 conformations, one energy and four force components each
    used = torch.tensor(record["ekf_energy_updates"]) + torch.tensor(record["ekf_force_updates"])
    skipped = torch.tensor(record["ekf_energy_skipped"]) + torch.tensor(record["ekf_force_skipped"])
    assert (used + skipped).tolist() == [offered, offered]
    assert skipped.min() > 0 and used.min() > 0  # about half of the errors lie below the RMSE
    # a filter update per used energy and per used pair of force components; a skipped one takes none
    assert trainer.optimizer.steps.max() < 6 * 3 and trainer.optimizer.steps.min() > 0
    assert calls
    for predictions, targets, mask in calls:  # every observation handed to the filter exceeds its threshold
        for m in range(2):
            for k in torch.nonzero(mask[m]).flatten().tolist():
                error = abs(float(predictions[m, k] - targets[m, k]))
                if predictions.shape[1] == 1:  # the energy per atom, in Hartree
                    assert error * energy_unit > rmse_energy[m]
                else:  # force components (two per update), in Hartree/Bohr
                    assert error * energy_unit / length_unit > rmse_forces[m]


def test_the_adaptive_thresholds_are_validated():
    for key in ("energy_threshold", "force_threshold"):
        with pytest.raises(ConfigError, match=rf"ekf.{key}"):
            merge_config(default_config(), {"ekf": {key: -0.5}})
        with pytest.raises(ConfigError, match=rf"ekf.{key}"):
            merge_config(default_config(), {"ekf": {key: "high"}})
    assert merge_config(default_config(), {"ekf": {"energy_threshold": 0.8}})["ekf"]["energy_threshold"] == 0.8
