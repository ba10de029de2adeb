"""The ``lmlp`` command line on the SN2 data."""

from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main

from .conftest import SN2


def test_init_info_predict(tmp_path):
    runner = CliRunner()
    data = tmp_path / "few.extxyz"
    write(data, read(SN2 / "pool_b.extxyz", ":6"))
    model = tmp_path / "m.lmlp"
    result = runner.invoke(
        main,
        [
            "init",
            "--data",
            str(data),
            "--reference-energies",
            str(SN2 / "free_atoms.json"),
            "--members",
            "3",
            "--hidden",
            "8,6",
            "--out",
            str(model),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "153 descriptors" in result.output
    result = runner.invoke(main, ["info", str(model)])
    assert result.exit_code == 0 and "members        3" in result.output
    out = tmp_path / "pred.extxyz"
    result = runner.invoke(main, ["predict", "--model", str(model), str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frames = read(out, ":")
    assert len(frames) == 6 and "lmlp_energy_uncertainty" in frames[0].info
    assert frames[0].arrays["lmlp_forces"].shape == (len(frames[0]), 3)


def test_damaged_model_is_reported_not_traced(tmp_path):
    bad = tmp_path / "bad.lmlp"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    result = CliRunner().invoke(main, ["info", str(bad)])
    assert result.exit_code != 0 and "truncated" in result.output and "Traceback" not in result.output


def test_missing_reference_energy_is_named(tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text('{"H": -13.6}')
    result = CliRunner().invoke(
        main, ["init", "--elements", "H,C", "--reference-energies", str(ref), "--out", str(tmp_path / "m.lmlp")]
    )
    assert result.exit_code != 0 and "no reference energy for C" in result.output
