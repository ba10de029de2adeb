"""A campaign spec's problems are reported all at once, PySCF basis names included, before anything is stored;
a campaign that stops for any reason says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from aiida import orm
from click.testing import CliRunner

from aiida_lmlp.campaign import SpecError, load_spec
from aiida_lmlp.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "workflows" / "quickstart.yaml"


def _spec(tmp_path, change) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["structures"] = str(QUICKSTART.resolve().parent / spec["structures"])
    change(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def _three_problems(spec):
    spec["stop"]["dft_budgt"] = 10  # a typo
    spec["stop"]["max_iterations"] = -1
    spec["label"]["parameters"]["basis"] = "sto-3gg"  # PySCF knows no such basis


def test_three_problems_are_reported_in_one_run(tmp_path):
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, _three_problems))
    message = str(caught.value)
    assert "3 problems" in message
    assert "unknown key 'stop.dft_budgt'" in message
    assert "stop.max_iterations must be an integer ≥ 1, got -1" in message
    assert "label.parameters: basis 'sto-3gg': PySCF knows no basis of this name" in message


def test_a_basis_without_an_element_of_the_structures_is_named(tmp_path):
    def change(spec):
        spec["label"]["parameters"]["basis"] = {"H": "sto-3g", "C": "sto-3g"}  # no entry for Cl

    with pytest.raises(SpecError, match="label.parameters: basis has no entry for Cl"):
        load_spec(_spec(tmp_path, change))

    def change(spec):  # a basis PySCF has, but not for chlorine
        spec["label"]["parameters"]["basis"] = "6-31g"
        spec["label"]["parameters"]["auxbasis"] = "cc-pvdz-jkfit"

    spec = load_spec(_spec(tmp_path, change))  # both exist for H, C and Cl: accepted
    assert spec.label["parameters"]["basis"] == "6-31g"


def test_an_unknown_functional_is_named_with_the_other_problems(tmp_path):
    def change(spec):
        _three_problems(spec)
        spec["label"]["parameters"]["xc"] = "PBEE"

    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, change))
    message = str(caught.value)
    assert "unknown exchange-correlation functional" in message and "'PBEE'" in message
    assert "unknown key 'stop.dft_budgt'" in message and "max_iterations" in message


def test_dry_run_and_launch_report_every_problem_and_store_nothing(tmp_path, aiida_profile):
    def change(spec):
        _three_problems(spec)
        spec["codes"] = {"lmlp": "no-such-code@localhost"}

    path = _spec(tmp_path, change)
    before = orm.QueryBuilder().append(orm.Node).count()
    for arguments in (["campaign", "launch", "--dry-run", str(path)], ["campaign", "launch", str(path)]):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 1, result.output
        for expected in (
            "unknown key 'stop.dft_budgt'",
            "stop.max_iterations must be an integer ≥ 1",
            "basis 'sto-3gg'",
            "codes.train: code 'no-such-code@localhost' cannot be loaded",
            "codes.label: code 'no-such-code@localhost' cannot be loaded",
        ):
            assert expected in result.output, result.output
        assert "Traceback" not in result.output
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_a_campaign_whose_initial_labelling_fails_says_why(lmlp_code):
    """The issue's case: a basis PySCF does not know, past validation (here the work chain is run directly)."""
    from aiida.engine import run_get_node

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    from .campaign_inputs import campaign_inputs, initial_structures

    inputs = campaign_inputs(lmlp_code("lmlp.train"), initial_structures(count=2), campaign=orm.Str("bad-basis"))
    inputs["label"]["pyscf"]["parameters"] = orm.Dict({"xc": "HF", "basis": "sto-3gg", "density_fit": False})
    inputs["label"]["max_attempts"] = orm.Int(1)
    _, node = run_get_node(LifelongWorkChain, **inputs)
    assert node.exit_status == 401
    assert "sto-3gg" in node.exit_message
    rows = json.loads(CliRunner().invoke(main, ["campaign", "status", "--json"]).output)
    (row,) = [r for r in rows if r["pk"] == node.pk]
    assert row["stop_reason"].startswith("initial_labelling_failed") and "sto-3gg" in row["stop_reason"]
    assert node.outputs.stop_reason.value == "initial_labelling_failed"
