"""``lmlp.potential``: verified model files, attributes, duplicates by hash, the calculator; torch-free daemon."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from aiida_lmlp.data import LmlpPotentialData
from aiida_lmlp.potential import LmlpCalculator, ModelFileError


@pytest.fixture
def model_file(sn2_model, tmp_path):
    path = tmp_path / "model.lmlp"
    sha = sn2_model.save(path)
    return path, sha


def test_attributes_come_from_the_verified_file(model_file, sn2_model):
    path, sha = model_file
    node = LmlpPotentialData(path).store()
    attributes = node.base.attributes.all
    assert attributes["content_sha256"] == sha == node.content_sha256
    assert attributes["elements"] == sn2_model.elements
    assert attributes["members"] == 4 and attributes["hidden"] == [16, 12]
    assert attributes["descriptor"] == "eeacsf" and attributes["cutoff"] == sn2_model.descriptor.cutoff
    assert attributes["has_training_state"] is False and attributes["epochs"] == 0


def test_damaged_files_are_refused_and_nothing_is_stored(model_file, tmp_path):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    altered = tmp_path / "altered.lmlp"
    data[-5] ^= 0x01  # one bit of one weight
    altered.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered.lmlp was altered"):
        LmlpPotentialData(altered)
    truncated = tmp_path / "truncated.lmlp"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated.lmlp is truncated"):
        LmlpPotentialData(truncated)


def test_the_same_model_stored_twice_is_recognised(tmp_path):
    from aiida_lmlp.potential import Ensemble

    path = tmp_path / "unique.lmlp"  # a model no other test stores
    sha = Ensemble.new(["H", "O"], members=2, hidden=(5,), seed=20261122).save(path)
    first, created = LmlpPotentialData.get_or_create(path)
    again, created_again = LmlpPotentialData.get_or_create(path)
    assert created and not created_again and again.pk == first.pk
    duplicate = LmlpPotentialData(path).store()
    assert duplicate.base.extras.get("duplicate_of") == first.uuid
    assert LmlpPotentialData.find(sha).pk == first.pk


def test_calculator_of_a_stored_version_matches_the_engine(model_file, sn2_model, sn2_frames):
    path, _ = model_file
    node = LmlpPotentialData(path).store()
    atoms = sn2_frames[5].copy()
    atoms.calc = node.get_calculator()
    reference = sn2_frames[5].copy()
    reference.calc = LmlpCalculator(sn2_model)
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-10)
    assert atoms.calc.get_energy_uncertainty() == pytest.approx(reference.calc.get_energy_uncertainty(), abs=1e-10)


def test_daemon_side_modules_import_neither_torch_nor_pyscf():
    code = (
        "import sys; import aiida_lmlp.data, aiida_lmlp.calculations, aiida_lmlp.parsers.train, "
        "aiida_lmlp.parsers.explore, aiida_lmlp.parsers.pyscf; "
        "from aiida.plugins import CalculationFactory, ParserFactory, DataFactory; "
        "[CalculationFactory(e) for e in ('lmlp.train', 'lmlp.explore', 'lmlp.pyscf')]; "
        "[ParserFactory(e) for e in ('lmlp.train', 'lmlp.explore', 'lmlp.pyscf')]; "
        "[DataFactory(e) for e in ('lmlp.dataset', 'lmlp.potential')]; "
        "print(sorted(m for m in ('torch', 'pyscf') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_checking_training_parameters_does_not_import_torch():
    """The daemon validates a training job's parameters (EKF settings included) without torch.

    It once imported the Kalman filter module for its decoupling names, which cost the daemon
    worker about a second of torch import before the first training job of a campaign.
    """
    code = (
        "import sys; from aiida_lmlp.formats.training_config import default_config, merge_config; "
        "merge_config(default_config(), {'optimizer': 'ekf', 'ekf': {'decoupling': 'layer'}}); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
