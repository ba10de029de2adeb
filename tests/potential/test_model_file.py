"""The .lmlp model file: round trip, no unpickling, damage detection, atomic writes."""

import json
import struct

import numpy as np
import pytest
import torch

from aiida_lmlp.potential import Ensemble, ModelFileError
from aiida_lmlp.potential.model.model_file import read_model_file


def test_round_trip_reproduces_predictions_exactly(tmp_path, sn2_model, sn2_frames):
    sn2_model.rmse_energy_per_atom, sn2_model.rmse_forces = 0.002, 0.05
    try:
        sha = sn2_model.save(tmp_path / "model.lmlp")
        loaded = Ensemble.load(tmp_path / "model.lmlp")
    finally:
        sn2_model.rmse_energy_per_atom, sn2_model.rmse_forces = 0.0, 0.0
    assert loaded.content_sha256 == sha
    assert loaded.elements == sn2_model.elements and loaded.members == sn2_model.members
    assert loaded.reference_energies == sn2_model.reference_energies
    assert loaded.rmse_energy_per_atom == 0.002 and loaded.rmse_forces == 0.05
    a, b = sn2_model.evaluate(sn2_frames[:3]), loaded.evaluate(sn2_frames[:3])
    np.testing.assert_array_equal(a.energy_members, b.energy_members)
    np.testing.assert_array_equal(a.forces_members, b.forces_members)
    # saving the same model twice gives the same content hash
    assert loaded.save(tmp_path / "again.lmlp") == sha


def test_file_is_safetensors_with_documented_metadata(tmp_path, sn2_model):
    path = tmp_path / "model.lmlp"
    sn2_model.save(path)
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    meta = header["__metadata__"]
    assert meta["format"] == "aiida-lmlp-model" and meta["format_version"] == "1"
    config = json.loads(meta["config"])
    assert config["descriptor"]["kind"] == "eeacsf" and config["units"]["energy"] == "eV"
    assert b"\x80\x04" not in data[:2]  # not a pickle
    assert any(name.startswith("networks.") for name in header if name != "__metadata__")
    # no temporary file is left behind by the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lmlp"]


def test_training_state_travels_with_the_model(tmp_path, sn2_model):
    import copy

    model = copy.deepcopy(sn2_model)
    model.training_state = {"core.step": torch.tensor([7]), "selection.l_old": torch.rand(5, dtype=torch.float64)}
    model.training_config = {"epoch": 7}
    model.save(tmp_path / "m.lmlp")
    loaded = Ensemble.load(tmp_path / "m.lmlp")
    assert loaded.training_config == {"epoch": 7}
    assert torch.equal(loaded.training_state["selection.l_old"], model.training_state["selection.l_old"])


def test_truncated_file_fails_with_a_clear_error(tmp_path, sn2_model):
    path = tmp_path / "model.lmlp"
    sn2_model.save(path)
    data = path.read_bytes()
    for cut in (4, 200, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.lmlp").write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated|corrupt"):
            Ensemble.load(tmp_path / "cut.lmlp")


def test_altered_weights_or_config_fail_the_sha256_check(tmp_path, sn2_model):
    path = tmp_path / "model.lmlp"
    sn2_model.save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # flip one bit of the last weight
    (tmp_path / "flipped.lmlp").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered"):
        Ensemble.load(tmp_path / "flipped.lmlp")
    text = path.read_bytes().replace(b"1.59223*tanh", b"1.59224*tanh")
    (tmp_path / "edited.lmlp").write_bytes(text)
    with pytest.raises(ModelFileError, match="altered"):
        read_model_file(tmp_path / "edited.lmlp")


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        Ensemble.load(tmp_path / "missing.lmlp")
    torch.save({"a": torch.zeros(2)}, tmp_path / "pickle.pt")
    with pytest.raises(ModelFileError):
        Ensemble.load(tmp_path / "pickle.pt")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not an aiida-lmlp model"):
        Ensemble.load(tmp_path / "plain.safetensors")


def test_a_model_saved_before_the_engine_moved_predicts_as_it_did():
    """The model file format did not change when the engine moved into subpackages: a model file
    written before, with predictions recorded by the code of then, predicts the same now."""
    from pathlib import Path

    from ase import Atoms

    from aiida_lmlp.potential import LmlpCalculator

    data = Path(__file__).parents[1] / "data"
    recorded = json.loads((data / "model_before_move" / "predictions.json").read_text())
    model = Ensemble.load(data / "train_outputs" / "complete" / "model.lmlp")
    assert len(recorded["predictions"]) == 4
    for before in recorded["predictions"]:
        atoms = Atoms(numbers=before["numbers"], positions=before["positions"])
        atoms.calc = LmlpCalculator(model)
        np.testing.assert_allclose(atoms.get_potential_energy(), before["energy"], rtol=1e-7)
        np.testing.assert_allclose(atoms.get_forces(), before["forces"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(atoms.calc.results["energy_uncertainty"], before["energy_uncertainty"], rtol=1e-5)
        np.testing.assert_allclose(atoms.calc.results["forces_uncertainty"], before["forces_uncertainty"], atol=1e-5)
