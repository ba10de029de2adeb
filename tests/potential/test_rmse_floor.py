"""The RMSE of Eq. 23's floor (and of the selection thresholds): the mean of the members' own test RMSEs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.model.ensemble import RMSE_ENSEMBLE_TEST_UNION, RMSE_MEMBERS_OWN_TEST
from aiida_lmlp.potential.model.member_blocks import split_trained
from aiida_lmlp.potential.training.trainer import Trainer, gather_trained

DATA = Path(__file__).parents[1] / "data"


def _planted(sn2_frames, free_atoms, biases):
    """Members whose atomic energy is the constant ``biases[m]`` eV (last layer zero), on relabelled frames.

    Every frame r gets the energy ``Σ E_ref + N e_r`` and forces ``F_r`` drawn at random, so member m's
    error per atom on r is ``b_m − e_r`` exactly and its force error is ``−F_r`` (its forces are zero).
    """
    rng = np.random.default_rng(5)
    frames = []
    for source in sn2_frames[:40]:
        atoms = source.copy()
        reference = sum(free_atoms[s] for s in atoms.get_chemical_symbols())
        atoms.info["energy"] = reference + len(atoms) * rng.normal(0.2, 0.02)
        atoms.arrays["forces"] = rng.normal(0.0, 0.3, (len(atoms), 3))
        frames.append(atoms)
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    model = Ensemble.new(elements, members=len(biases), hidden=(4,), reference_energies=free_atoms, seed=3)
    model.initialize_standardization(frames)
    with torch.no_grad():
        for net in model.networks.networks.values():
            net.weights[-1].zero_()
            net.biases[-1].copy_(torch.as_tensor(biases, dtype=torch.float64)[:, None])
    return model, frames


def test_the_floor_is_the_mean_of_the_members_own_test_rmses(sn2_frames, free_atoms):
    biases = [0.1, 0.15, 0.25, 0.3]  # errors of ±0.05 and ±0.1 eV/atom that cancel in the ensemble mean
    model, frames = _planted(sn2_frames, free_atoms, biases)
    config = merge_config(default_config(), {"members": 4, "test_fraction": 0.25})
    trainer = Trainer(model, frames, config, log=lambda message: None)
    trainer.record_test_rmses(trainer.metrics())

    residual = {}
    for atoms in frames:
        reference = sum(free_atoms[s] for s in atoms.get_chemical_symbols())
        residual[trainer.ids[frames.index(atoms)]] = (atoms.info["energy"] - reference) / len(atoms)
    by_id = dict(zip(trainer.ids, frames))
    own_energy, own_forces = [], []
    for m, b in enumerate(biases):
        test = sorted(trainer.test_ids[m])
        assert len(test) == 10
        own_energy.append(np.sqrt(np.mean([(b - residual[i]) ** 2 for i in test])))
        own_forces.append(np.sqrt(np.mean(np.concatenate([by_id[i].arrays["forces"].ravel() ** 2 for i in test]))))
    assert model.rmse_kind == RMSE_MEMBERS_OWN_TEST
    assert model.member_test_rmse_energy_per_atom == pytest.approx(own_energy, rel=1e-9)
    assert model.rmse_energy_per_atom == pytest.approx(np.mean(own_energy), rel=1e-9)
    assert model.rmse_forces == pytest.approx(np.mean(own_forces), rel=1e-9)
    # not the ensemble mean's RMSE over the union of the test sets (what the floor was before)
    union = sorted(set().union(*trainer.test_ids))
    ensemble = np.sqrt(np.mean([(np.mean(biases) - residual[i]) ** 2 for i in union]))
    assert model.rmse_energy_per_atom > 2.5 * ensemble

    # Eq. 23 with c = 0.5: c times the members' spread (0.5 · 0.091 eV/atom) is below the floor, which wins
    model.uncertainty_scale = 0.5
    prediction = model.evaluate(frames[:3])
    n_atoms = np.array([len(a) for a in frames[:3]])
    np.testing.assert_allclose(prediction.energy_uncertainty, np.mean(own_energy) * n_atoms, rtol=1e-9)
    np.testing.assert_allclose(prediction.forces_uncertainty, np.mean(own_forces), rtol=1e-9)


def test_the_floor_travels_with_the_model_and_through_member_blocks(tmp_path, sn2_frames, free_atoms):
    model, frames = _planted(sn2_frames, free_atoms, [0.1, 0.15, 0.25, 0.3])
    config = merge_config(default_config(), {"members": 4, "test_fraction": 0.25, "fit_per_epoch": 5})
    trainer = Trainer(model, frames, config, log=lambda message: None)
    trainer.run(1, tmp_path / "model.lmlp")
    loaded = Ensemble.load(tmp_path / "model.lmlp")
    assert loaded.rmse_kind == RMSE_MEMBERS_OWN_TEST and len(loaded.member_test_rmse_energy_per_atom) == 4
    assert loaded.rmse_energy_per_atom == pytest.approx(np.mean(loaded.member_test_rmse_energy_per_atom), rel=1e-12)
    # blocks trained in separate jobs: the gathered floor is the mean over all members, not one block's
    blocks = [split_trained(loaded, 0, 1), split_trained(loaded, 1, 4)]
    assert blocks[0].rmse_energy_per_atom == loaded.rmse_energy_per_atom  # inherited until trained
    blocks[0].set_test_rmses([0.01], [0.1])
    blocks[1].set_test_rmses([0.02, 0.03, 0.04], [0.2, 0.3, 0.4])
    gathered = gather_trained(blocks)
    assert gathered.rmse_energy_per_atom == pytest.approx(0.025) and gathered.rmse_forces == pytest.approx(0.25)
    assert gathered.rmse_kind == RMSE_MEMBERS_OWN_TEST


def test_a_model_file_without_the_kind_keeps_its_rmse_and_says_which_it_is():
    from click.testing import CliRunner

    from aiida_lmlp.cli.main import main

    path = DATA / "train_outputs" / "complete" / "model.lmlp"
    model = Ensemble.load(path)
    assert model.rmse_kind == RMSE_ENSEMBLE_TEST_UNION and model.member_test_rmse_energy_per_atom is None
    assert model.rmse_energy_per_atom > 0
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "union of the members' test sets" in result.output
