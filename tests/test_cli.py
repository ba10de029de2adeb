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


def test_train_end_to_end_on_200_sn2_conformations_and_continue(tmp_path):
    import json

    from aiida_lmlp.potential import Ensemble

    data = tmp_path / "sn2_200.extxyz"
    write(data, read(SN2 / "pool_a.extxyz", ":200"))
    model = tmp_path / "m.lmlp"
    runner = CliRunner()
    args = ["train", "--data", str(data), "--out", str(model), "--epochs", "20"]
    args += ["--reference-energies", str(SN2 / "free_atoms.json")]
    result = runner.invoke(main, args)  # paper defaults: 10 members, 102-61-44, CoRe, adaptive selection
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 21))
    assert records[-1]["ensemble_all_rmse_forces"] < 0.8 * records[0]["ensemble_all_rmse_forces"]
    assert len(records[0]["members"]) == 10 and records[0]["members"][0]["active"] > 150
    ensemble = Ensemble.load(model)
    assert ensemble.members == 10 and ensemble.training_config["trainer"]["epoch"] == 20
    # the uncertainty floor: the mean of the members' own test RMSEs
    assert ensemble.rmse_forces == records[-1]["members_mean_test_rmse_forces"]

    more = tmp_path / "m2.lmlp"
    result = runner.invoke(
        main, ["train", "--data", str(data), "--out", str(more), "--continue-from", str(model), "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    assert Ensemble.load(more).training_config["trainer"]["epoch"] == 22
    assert [json.loads(x)["epoch"] for x in (tmp_path / "m2.metrics.jsonl").read_text().splitlines()] == [21, 22]

    # a new training at the same --out starts a new metrics history instead of appending to the old one
    result = runner.invoke(main, args + ["--epochs", "2"])  # the last --epochs counts
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["epoch"] for x in (tmp_path / "m.metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_train_refuses_bad_configuration_naming_the_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.1\n")
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(SN2 / "pool_b.extxyz"), "--out", str(tmp_path / "m.lmlp"), "--config", str(config)],
    )
    assert result.exit_code != 0 and "unknown configuration key 'learning_rate'" in result.output
    printed = CliRunner().invoke(main, ["train", "--print-config"])
    assert printed.exit_code == 0 and "fit_per_epoch" in printed.output and "sqrt_tx" in printed.output
