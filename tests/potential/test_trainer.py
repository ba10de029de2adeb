"""Training: bad data, exclusion of a wrong label, resume bit-identity, configuration errors."""

import numpy as np
import pytest
import torch
from ase.io import read

from aiida_lmlp.formats.training_config import ConfigError, default_config, merge_config
from aiida_lmlp.potential import EeACSF, Ensemble
from aiida_lmlp.potential.training.trainer import Trainer, conformation_id, filter_training_data

from ..conftest import SN2, SN2_ELEMENTS


def _model(members, free_atoms, frames, seed=0):
    model = Ensemble.new(
        SN2_ELEMENTS,
        EeACSF.from_paper(SN2_ELEMENTS),
        members=members,
        hidden=(24, 12),
        reference_energies=free_atoms,
        seed=seed,
    )
    model.initialize_standardization(frames)
    return model


def test_bad_labels_are_counted_and_skipped(sn2_frames):
    frames = [a.copy() for a in sn2_frames[:8]]
    for a, source in zip(frames, sn2_frames[:8]):
        a.calc = source.calc
    frames[0].calc = None  # no energy, no forces
    frames[1] = frames[1].copy()
    frames[1].calc = None
    frames[1].info["energy"] = -100.0  # energy but no forces
    frames[2] = sn2_frames[2].copy()
    frames[2].info["energy"] = float("nan")
    frames[2].arrays["forces"] = np.zeros((len(frames[2]), 3))
    frames[3] = sn2_frames[3].copy()
    frames[3].info["energy"] = -1.0
    frames[3].arrays["forces"] = np.full((len(frames[3]), 3), 20.0)  # above the 15 eV/Å cap
    frames.append(sn2_frames[7])  # a duplicate of frames[7]
    kept, ids, report = filter_training_data(frames, SN2_ELEMENTS, 15.0)
    assert report.total == 9 and report.kept == 4 and report.duplicates == 1
    assert report.skipped["missing energy"] == 1 and report.skipped["missing forces"] == 1
    assert report.skipped["NaN or infinite labels"] == 1 and report.skipped["force above 15 eV/Å"] == 1
    assert len(set(ids)) == 4 and ids[-1] == conformation_id(sn2_frames[7])


def test_a_deliberately_wrong_energy_is_excluded_within_a_short_training(free_atoms):
    frames = read(SN2 / "pool_a.extxyz", ":300")
    wrong = frames[7]
    wrong.calc.results["energy"] += 30.0
    config = merge_config(default_config(), {"members": 2, "fit_per_epoch": 150, "test_fraction": 0.0})
    trainer = Trainer(_model(2, free_atoms, frames), frames, config, log=lambda message: None)
    key = conformation_id(wrong)
    for _ in range(40):
        trainer.train_epoch()
        if all(s.s_hist[s.index([key])[0]] == 0 for s in trainer.selections):
            break
    assert all(s.s_hist[s.index([key])[0]] == 0 for s in trainer.selections), trainer.epoch
    # and it was the outlier strike counter that removed it, not data-set reduction
    assert all(s.strikes[s.index([key])[0]] >= config["adaptive"]["n_x"] for s in trainer.selections)
    assert all(int((s.s_hist == 0).sum()) <= 3 for s in trainer.selections)


@pytest.mark.parametrize("optimizer", ["core", "adam", "rprop"])
def test_a_resumed_run_ends_with_the_same_weights(tmp_path, sn2_frames, free_atoms, optimizer):
    frames = sn2_frames[:40]
    config = merge_config(
        default_config(),
        {
            "members": 2,
            "fit_per_epoch": 12,
            "checkpoint_every": 3,
            "core": {"score_history": 4},
            "optimizer": optimizer,
        },
    )
    straight = Trainer(_model(2, free_atoms, frames), frames, config, log=lambda message: None)
    straight.run(10, tmp_path / "straight.lmlp")

    first = Trainer(_model(2, free_atoms, frames), frames, config, log=lambda message: None)
    first.run(6, tmp_path / "killed.lmlp")  # "killed" after its checkpoint at epoch 6
    resumed_model = Ensemble.load(tmp_path / "killed.lmlp")
    resumed = Trainer(resumed_model, frames, config, log=lambda message: None)
    assert resumed.epoch == 6
    resumed.run(4, tmp_path / "resumed.lmlp")

    a = Ensemble.load(tmp_path / "straight.lmlp")
    b = Ensemble.load(tmp_path / "resumed.lmlp")
    for (name, x), (_, y) in zip(a.networks.state_dict().items(), b.networks.state_dict().items()):
        assert torch.equal(x, y), name
    assert sorted(a.training_state) == sorted(b.training_state)
    for name in a.training_state:
        torch.testing.assert_close(a.training_state[name], b.training_state[name], rtol=0, atol=0, equal_nan=True)
    assert a.training_config["trainer"] == b.training_config["trainer"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"epoch": 3}, "unknown configuration key 'epoch'"),
        ({"core": {"learning_rate": 1.0}}, "unknown configuration key 'core.learning_rate'"),
        ({"test_fraction": 1.5}, "'test_fraction' = 1.5"),
        ({"selection": "smart"}, "'selection'"),
        ({"adaptive": {"sqrt_t1": 2.0}}, "'adaptive'"),
        ({"core": {"etas": [1.5, 1.2]}}, "'core'"),
        ({"fit_per_epoch": 1.5}, "'fit_per_epoch' = 1.5: must be a count"),
        ({"fit_per_epoch": 0}, "'fit_per_epoch' = 0"),
        ({"fit_per_epoch": True}, "'fit_per_epoch' = True"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        merge_config(default_config(), override)


def test_stacked_members_train_exactly_as_members_trained_alone(sn2_frames, free_atoms):
    frames = sn2_frames[:40]
    config = merge_config(default_config(), {"members": 2, "fit_per_epoch": 10, "core": {"score_history": 3}})

    def trained(members, offset):
        model = Ensemble.new(
            SN2_ELEMENTS, members=members, hidden=(24, 12), reference_energies=free_atoms, seed=0, member_offset=offset
        )
        model.initialize_standardization(frames)
        trainer = Trainer(model, frames, config, log=lambda message: None)
        for _ in range(8):  # past t_hist: the plasticity factors freeze weights per member
            trainer.train_epoch()
        return model

    stacked = trained(2, 0)
    for member in range(2):
        alone = trained(1, member)
        for (name, x), (_, y) in zip(stacked.networks.state_dict().items(), alone.networks.state_dict().items()):
            torch.testing.assert_close(x[member : member + 1], y, rtol=1e-9, atol=1e-12, msg=name)


def test_members_trained_in_two_jobs_gather_into_the_stacked_ensemble(tmp_path, sn2_frames, free_atoms):
    from aiida_lmlp.potential.training.trainer import gather_trained

    frames = sn2_frames[:40]

    def job(members, offset, epochs, model=None):
        config = merge_config(
            default_config(),
            {"members": members, "member_offset": offset, "fit_per_epoch": 10, "core": {"score_history": 3}},
        )
        if model is None:
            model = Ensemble.new(
                SN2_ELEMENTS, members=members, hidden=(16,), reference_energies=free_atoms, seed=0, member_offset=offset
            )
            model.initialize_standardization(frames)
        trainer = Trainer(model, frames, config, log=lambda message: None)
        for _ in range(epochs):
            trainer.train_epoch()
        trainer._write_state()
        return model

    stacked = job(2, 0, 6)
    gathered = gather_trained([job(1, 1, 4), job(1, 0, 4)])  # any order
    assert gathered.members == 2 and gathered.training_config["trainer"]["epoch"] == 4
    gathered.save(tmp_path / "gathered.lmlp")
    continued = job(2, 0, 2, model=Ensemble.load(tmp_path / "gathered.lmlp"))
    for (name, x), (_, y) in zip(stacked.networks.state_dict().items(), continued.networks.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12, msg=name)
    with pytest.raises(ValueError, match="do not follow"):
        gather_trained([job(1, 0, 1), job(1, 2, 1)])


def test_the_first_test_set_stays_fixed_and_its_rmse_compares_versions(tmp_path, sn2_frames, free_atoms):
    """Version 0's test conformations stay held out when data are added, and their RMSE is recorded."""
    from aiida_lmlp.potential.model.member_blocks import ensemble_test_rmse

    config = merge_config(default_config(), {"members": 2, "fit_per_epoch": 10, "test_fraction": 0.25})
    first = Trainer(_model(2, free_atoms, sn2_frames[:40]), sn2_frames[:40], config, log=lambda message: None)
    first_tests = [set(t) for t in first.test_ids]
    assert first.first_test_ids == first_tests and all(len(t) == 10 for t in first_tests)
    first.run(3, tmp_path / "v0.lmlp")
    v0 = Ensemble.load(tmp_path / "v0.lmlp")
    # in the first session the first test sets are the test sets: the ensemble RMSE over their union
    assert v0.first_test_rmse_energy_per_atom == pytest.approx(ensemble_test_rmse(v0, sn2_frames[:40])[0], rel=1e-9)

    # version 1: continued on 20 more conformations; a quarter of them join each member's test set
    frames = sn2_frames[:60]
    second = Trainer(v0, frames, config, log=lambda message: None)
    assert second.first_test_ids == first_tests
    assert all(t > f and len(t) == 15 for t, f in zip(second.test_ids, first_tests))
    metrics = second.run(3, tmp_path / "v1.lmlp")
    v1 = Ensemble.load(tmp_path / "v1.lmlp")
    energy, forces, count = ensemble_test_rmse(v1, frames, "first_test")
    assert count == len(set().union(*first_tests))
    assert v1.first_test_rmse_energy_per_atom == pytest.approx(energy, rel=1e-9)
    assert v1.first_test_rmse_forces == pytest.approx(forces, rel=1e-9)
    assert metrics["ensemble_first_test_rmse_energy_per_atom"] == pytest.approx(energy, rel=1e-9)
    # the growing test set gives a different figure: the two measure different things
    assert v1.rmse_energy_per_atom != pytest.approx(energy, rel=1e-6)
    again = Trainer(Ensemble.load(tmp_path / "v1.lmlp"), frames, config, log=lambda message: None)
    assert again.first_test_ids == first_tests
