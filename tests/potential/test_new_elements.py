"""Lifelong learning of a new chemical system: continued training adds the element the data bring."""

import numpy as np
import pytest
import torch

from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential import EeACSF, Ensemble
from aiida_lmlp.potential.training.trainer import Trainer

CONFIG = {"members": 3, "hidden": [12, 6], "fit_per_epoch": 6, "test_fraction": 0.2, "checkpoint_every": 2}


def _split(frames):
    without = [a for a in frames if "S" not in a.get_chemical_symbols()]
    sulfur = [a for a in frames if "S" in a.get_chemical_symbols()]
    return without, sulfur


@pytest.fixture(scope="module")
def sulfur_frames():
    from ase.io import read

    from ..conftest import SN2

    frames = read(SN2 / "pool_a.extxyz", ":200")
    without, sulfur = _split(frames)
    assert len(sulfur) >= 5
    return without[:40], sulfur[:8]


def _parent(tmp_path, frames, free_atoms, optimizer="core"):
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    refs = {e: free_atoms[e] for e in elements}
    model = Ensemble.new(elements, EeACSF.from_paper(elements), members=3, hidden=(12, 6), reference_energies=refs)
    model.initialize_standardization(frames)
    model.initialize_output_offset(frames, [a.get_potential_energy() for a in frames])
    config = merge_config(default_config(), {**CONFIG, "optimizer": optimizer})
    Trainer(model, frames, config, log=lambda message: None).run(4, tmp_path / "parent.lmlp")
    return Ensemble.load(tmp_path / "parent.lmlp"), config


@pytest.mark.parametrize("given", [True, False], ids=["free-atom reference given", "reference fitted"])
def test_a_continued_model_gains_the_new_element_and_keeps_the_old_ones(tmp_path, sulfur_frames, free_atoms, given):
    old, sulfur = sulfur_frames
    parent, config = _parent(tmp_path, old, free_atoms)
    assert "S" not in parent.elements
    old_elements = list(parent.elements)
    before = parent.evaluate(old[:6])
    weights = {k: v.clone() for k, v in parent.networks.state_dict().items()}
    state = {k: v.clone() for k, v in parent.training_state.items()}
    parent_members = parent.training_config["trainer"]["members"]
    if given:
        config = merge_config(config, {"reference_energies": {"S": free_atoms["S"]}})
    messages = []
    trainer = Trainer(parent, old + sulfur, config, log=messages.append)
    model = trainer.model
    assert trainer.added_elements == ["S"] and model.elements[-1] == "S"
    assert any("new element(s) added to the model: S" in m for m in messages)
    assert trainer.report.kept == len(old) + len(sulfur) and trainer.report.skipped["element not in the model"] == 0
    if given:
        assert model.reference_energies["S"] == free_atoms["S"] and model.reference_kinds["S"] == "free_atom"
    else:
        assert model.reference_kinds["S"] == "least_squares"
    # before training resumes: the old elements' networks, and so their conformations, are unchanged
    after = model.evaluate(old[:6])
    np.testing.assert_allclose(after.energy_members, before.energy_members, rtol=1e-13, atol=0)
    np.testing.assert_allclose(after.forces_members, before.forces_members, rtol=1e-11, atol=1e-12)
    for name, value in weights.items():
        assert torch.equal(model.networks.state_dict()[name], value), name
    # the new network starts at its offset: sulfur conformations within 0.1 eV/atom on average
    prediction = model.evaluate(sulfur, forces=False)
    labels = np.array([a.get_potential_energy() for a in sulfur])
    errors = (prediction.energy_members - labels) / np.array([len(a) for a in sulfur])
    assert np.abs(errors.mean(1)).max() < 0.1
    # CoRe state and selection state carried over; the new conformations join every member
    parameters = list(model.networks.parameters())
    n_old = len(weights) - 2 * len(old_elements)  # parameters of the old networks (state_dict less 2 buffers each)
    for k in range(n_old):
        assert torch.equal(trainer.optimizer.state[parameters[k]]["S"], state[f"core.{k}.S"])
    assert all(parameters[k] not in trainer.optimizer.state for k in range(n_old, len(parameters)))
    assert trainer.epoch == 4
    sulfur_ids = set(trainer.ids[len(old) :])
    for m, selection in enumerate(trainer.selections):
        carried = parent_members[m]["selection_ids"]
        s_hist = state[f"selection.{m}.s_hist"].numpy()
        np.testing.assert_array_equal(selection.s_hist[selection.index(carried)], s_hist)
        assert sulfur_ids <= set(selection.ids) | trainer.test_ids[m]
    # training resumes, and the result saves and loads with the new element
    trainer.run(2, tmp_path / "child.lmlp")
    child = Ensemble.load(tmp_path / "child.lmlp")
    assert child.elements == old_elements + ["S"] and np.isfinite(child.evaluate(sulfur[:2]).energy).all()


def test_the_kalman_filter_starts_the_new_elements_block_afresh(tmp_path, sulfur_frames, free_atoms):
    old, sulfur = sulfur_frames
    config_ekf = {"optimizer": "ekf", "hidden": [3], "ekf": {"forces_used": 1}}
    elements = sorted({s for a in old for s in a.get_chemical_symbols()})
    model = Ensemble.new(elements, members=2, hidden=(3,), reference_energies={e: free_atoms[e] for e in elements})
    model.initialize_standardization(old)
    config = merge_config(default_config(), {**CONFIG, **config_ekf, "members": 2, "fit_per_epoch": 2})
    Trainer(model, old, config, log=lambda message: None).run(2, tmp_path / "ekf.lmlp")
    parent = Ensemble.load(tmp_path / "ekf.lmlp")
    messages = []
    trainer = Trainer(parent, old + sulfur, config, log=messages.append)
    assert any("S" in m and "start afresh" in m for m in messages)
    for element in elements:
        torch.testing.assert_close(trainer.optimizer.covariance[element], parent.training_state[f"ekf.P.{element}"])
    trainer.train_epoch()


def test_a_conventional_acsf_model_cannot_grow_and_skips_the_data(sulfur_frames, free_atoms):
    from aiida_lmlp.potential import ACSF

    old, sulfur = sulfur_frames
    elements = sorted({s for a in old for s in a.get_chemical_symbols()})
    model = Ensemble.new(elements, ACSF.like(EeACSF.from_paper(elements)), members=1, hidden=(4,))
    model.initialize_standardization(old[:10])
    messages = []
    config = merge_config(default_config(), {**CONFIG, "members": 1})
    trainer = Trainer(model, old[:10] + sulfur, config, log=messages.append)
    assert trainer.added_elements == [] and "S" not in model.elements
    assert trainer.report.skipped["element not in the model"] == len(sulfur)
    assert any("cannot take new elements (S)" in m for m in messages)
