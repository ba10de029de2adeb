"""Member blocks: split a trained ensemble, continue each block alone, gather — the same as continuing the stack."""

from __future__ import annotations

import pytest
import torch

from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.model.member_blocks import parse_member_block, split_trained
from aiida_lmlp.potential.training.trainer import Trainer, gather_trained

REFERENCES = {"C": -1030.0, "H": -13.6, "Cl": -12500.0}


@pytest.fixture(scope="module")
def frames():
    from ase.io import read

    from ..conftest import SN2

    return [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:10]


def _trained(frames, tmp_path, epochs=2):
    model = Ensemble.new(["C", "H", "Cl"], members=3, hidden=(5,), reference_energies=REFERENCES, seed=2)
    model.initialize_standardization(frames)
    config = merge_config(default_config(), {"members": 3, "hidden": [5], "fit_per_epoch": 0.5, "test_fraction": 0.2})
    Trainer(model, frames, config, log=lambda _: None).run(epochs, tmp_path / "first.lmlp")
    return Ensemble.load(tmp_path / "first.lmlp"), config


def test_split_then_gather_gives_back_the_model(frames, tmp_path):
    model, _ = _trained(frames, tmp_path)
    gathered = gather_trained([split_trained(model, 0, 2), split_trained(model, 2, 3)])
    for name, value in model.networks.state_dict().items():
        assert torch.equal(gathered.networks.state_dict()[name], value), name
    assert gathered.training_state.keys() == model.training_state.keys()
    for key, value in model.training_state.items():  # NaN marks a loss not yet seen
        torch.testing.assert_close(gathered.training_state[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    assert gathered.training_config["trainer"]["members"] == model.training_config["trainer"]["members"]


def test_blocks_continued_apart_equal_the_stack_continued(frames, tmp_path):
    model, config = _trained(frames, tmp_path)
    whole = Ensemble.load(tmp_path / "first.lmlp")
    Trainer(whole, frames, config, log=lambda _: None).run(2, tmp_path / "whole.lmlp")
    blocks = []
    for start, stop in ((0, 1), (1, 3)):
        block = split_trained(model, start, stop)
        block_config = merge_config(config, {"members": stop - start, "member_offset": start})
        Trainer(block, frames, block_config, log=lambda _: None).run(2, tmp_path / f"block{start}.lmlp")
        blocks.append(Ensemble.load(tmp_path / f"block{start}.lmlp"))
    gathered = gather_trained(blocks)
    for name, value in whole.networks.state_dict().items():
        torch.testing.assert_close(gathered.networks.state_dict()[name], value, rtol=0, atol=1e-12, msg=name)
    assert gathered.training_config["trainer"]["epoch"] == whole.training_config["trainer"]["epoch"] == 4


def test_member_block_bounds_are_checked():
    assert parse_member_block("2:5", 10) == (2, 5)
    with pytest.raises(ValueError, match="outside the model's 4 members"):
        parse_member_block("2:5", 4)
    with pytest.raises(ValueError, match="not START:STOP"):
        parse_member_block("2-5", 4)
