"""``lmlp train --member-block`` and ``lmlp gather``: an ensemble continued in two jobs equals one job."""

from __future__ import annotations

import yaml
from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main
from aiida_lmlp.potential import Ensemble

from .conftest import SN2


def test_continue_in_blocks_and_gather(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data.extxyz"
    write(data, [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:10])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"members": 3, "hidden": [4], "fit_per_epoch": 0.5, "test_fraction": 0.3}))

    def train(*arguments):
        result = runner.invoke(main, ["train", "--data", str(data), "--config", str(config), *arguments])
        assert result.exit_code == 0, result.output
        return result

    train("--epochs", "2", "--out", str(tmp_path / "v1.lmlp"))
    train("--epochs", "2", "--continue-from", str(tmp_path / "v1.lmlp"), "--out", str(tmp_path / "whole.lmlp"))
    for block in ("0:2", "2:3"):
        out = tmp_path / f"block{block[0]}.lmlp"
        train("--epochs", "2", "--continue-from", str(tmp_path / "v1.lmlp"), "--member-block", block, "--out", str(out))
    result = runner.invoke(
        main,
        ["gather", str(tmp_path / "block2.lmlp"), str(tmp_path / "block0.lmlp"), "--data", str(data)]
        + ["--out", str(tmp_path / "gathered.lmlp")],
    )
    assert result.exit_code == 0, result.output
    whole, gathered = Ensemble.load(tmp_path / "whole.lmlp"), Ensemble.load(tmp_path / "gathered.lmlp")
    assert gathered.members == 3
    for name, value in whole.networks.state_dict().items():
        assert (gathered.networks.state_dict()[name] - value).abs().max() < 1e-12, name
    # the gathered ensemble's RMSEs are its own (the whole stack's), not those of one block
    assert abs(gathered.rmse_energy_per_atom - whole.rmse_energy_per_atom) < 1e-9
    assert abs(gathered.rmse_forces - whole.rmse_forces) < 1e-9

    refused = runner.invoke(main, ["train", "--data", str(data), "--member-block", "0:9"] + ["--out", "x.lmlp"])
    assert refused.exit_code != 0 and "--member-block needs --continue-from" in refused.output
    refused = runner.invoke(
        main,
        ["train", "--data", str(data), "--continue-from", str(tmp_path / "v1.lmlp"), "--member-block", "0:9"]
        + ["--out", str(tmp_path / "x.lmlp")],
    )
    assert refused.exit_code != 0 and "outside the model's 3 members" in refused.output
