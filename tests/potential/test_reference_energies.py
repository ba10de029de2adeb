"""Reference energies: the user's (the paper's free atoms) when given, a least-squares fit otherwise; recorded."""

import json
from pathlib import Path

import pytest
import yaml
from ase.io import write
from click.testing import CliRunner

from aiida_lmlp.cli.main import main
from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.training.run import fit_reference_energies, run_training

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("given", [True, False], ids=["free atoms given", "no reference energies"])
def test_lmlp_train_uses_given_reference_energies_and_records_the_kind(tmp_path, sn2_frames, free_atoms, given):
    write(tmp_path / "data.extxyz", sn2_frames[:20])
    override = {"epochs": 0, "members": 2, "hidden": [6]}
    if given:
        override["reference_energies"] = free_atoms
    run_training([tmp_path / "data.extxyz"], merge_config(default_config(), override), tmp_path / "m.lmlp")
    model = Ensemble.load(tmp_path / "m.lmlp")
    elements = model.elements
    if given:
        assert model.reference_energies == {e: free_atoms[e] for e in elements}
        assert set(model.reference_kinds.values()) == {"free_atom"}
    else:
        fitted = fit_reference_energies(sn2_frames[:20], elements)
        assert model.reference_energies == pytest.approx(fitted, rel=1e-12)
        assert set(model.reference_kinds.values()) == {"least_squares"}
    info = CliRunner().invoke(main, ["info", str(tmp_path / "m.lmlp")])
    assert info.exit_code == 0, info.output
    expected = "free atoms for every element" if given else "least squares for every element"
    assert f"references     {expected}" in info.output
    assert "members' RMSEs on their own test sets" in info.output


def test_lmlp_train_takes_reference_energies_from_the_command_line(tmp_path, sn2_frames, free_atoms):
    write(tmp_path / "data.extxyz", sn2_frames[:12])
    (tmp_path / "refs.json").write_text(json.dumps(free_atoms))
    arguments = ["train", "--data", str(tmp_path / "data.extxyz"), "--out", str(tmp_path / "m.lmlp")]
    arguments += ["--reference-energies", str(tmp_path / "refs.json"), "--epochs", "0", "--members", "1"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    model = Ensemble.load(tmp_path / "m.lmlp")
    assert model.reference_energies == {e: free_atoms[e] for e in model.elements}
    assert set(model.reference_kinds.values()) == {"free_atom"}


def test_a_model_file_without_the_kind_says_it_is_not_recorded():
    path = ROOT / "tests" / "data" / "train_outputs" / "complete" / "model.lmlp"
    assert Ensemble.load(path).reference_kinds == {}
    info = CliRunner().invoke(main, ["info", str(path)])
    assert "kind not recorded" in info.output


@pytest.mark.parametrize("name", ["sn2_campaign.yaml", "hpc_slurm.yaml"])
def test_the_shipped_sn2_specs_give_the_free_atom_energies(name, free_atoms):
    spec = yaml.safe_load((ROOT / "workflows" / name).read_text())
    given = spec["train"]["parameters"]["reference_energies"]
    assert given == free_atoms  # every SN2 element, at the labels' level (PBE/def2-SVP)
    merge_config(default_config(), spec["train"]["parameters"])  # a valid training configuration
