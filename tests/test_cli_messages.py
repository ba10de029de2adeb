"""Messages that say what is wrong: a foreign file as a model, an empty data file, a model without a test set."""

from __future__ import annotations

from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main
from aiida_lmlp.potential import Ensemble, ModelFileError

from .conftest import SN2


def test_a_foreign_file_is_not_a_model_file(tmp_path):
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    for path in (SN2 / "pool_a.extxyz", SN2 / "free_atoms.json", png):
        result = CliRunner().invoke(main, ["info", str(path)])
        assert result.exit_code == 1
        assert f"{path} is not an aiida-lmlp model file" in result.output, result.output
        assert "announces" not in result.output and "truncated" not in result.output
        try:
            Ensemble.load(path)
        except ModelFileError as error:
            assert "is not an aiida-lmlp model file" in str(error)
        else:
            raise AssertionError(f"{path} loaded as a model")


def test_a_truncated_model_is_still_called_truncated(tmp_path, sn2_model):
    path = tmp_path / "m.lmlp"
    sn2_model.save(path)
    path.write_bytes(path.read_bytes()[:100])
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 1 and "is truncated" in result.output


def test_an_empty_data_file_is_named(tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    runner = CliRunner()
    for arguments in (
        ["train", "--data", str(empty), "--out", str(tmp_path / "m.lmlp"), "--epochs", "1"],
        ["init", "--data", str(empty), "--out", str(tmp_path / "m.lmlp")],
    ):
        result = runner.invoke(main, arguments)
        assert result.exit_code == 1, result.output
        assert f"{empty} holds no structures" in result.output
        assert "element list is empty" not in result.output
    assert not (tmp_path / "m.lmlp").exists()


def test_a_model_trained_without_test_conformations_says_so(tmp_path):
    one = tmp_path / "one.extxyz"
    write(one, read(SN2 / "pool_a.extxyz", "0"))
    model = tmp_path / "m.lmlp"
    runner = CliRunner()
    arguments = ["train", "--data", str(one), "--out", str(model), "--epochs", "2", "--members", "2"]
    result = runner.invoke(main, [*arguments, "--reference-energies", str(SN2 / "free_atoms.json")])
    assert result.exit_code == 0, result.output
    assert "nan" not in result.output.lower()
    assert "no test conformations" in result.output
    result = runner.invoke(main, ["info", str(model)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("test RMSE"))
    assert "0.000" not in line and "not measured: trained without test conformations" in line
