"""Campaign specification files: the shipped ones are valid; invalid ones are refused before anything is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiida import orm
from click.testing import CliRunner

from aiida_lmlp.campaign import SpecError, load_spec
from aiida_lmlp.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "workflows" / "quickstart.yaml"


def _variant(tmp_path, change) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["structures"] = str(QUICKSTART.resolve().parent / spec["structures"])
    change(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", ["quickstart.yaml", "sn2_campaign.yaml", "hpc_slurm.yaml"])
def test_shipped_specs_are_valid(name):
    spec = load_spec(ROOT / "workflows" / name)
    assert spec.structures.is_file() and spec.stop["max_iterations"] >= 1


def _set(path: str, value):
    def change(spec):
        *parents, key = path.split(".")
        target = spec
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("stop.dft_budgt", 10), "unknown key 'stop.dft_budgt'"),
        (_set("stop.dft_budget", -5), "stop.dft_budget must be an integer ≥ 1, got -5"),
        (_set("selection.energy_lower", 40.0), "'energy_lower' and 'energy_upper'.*wrong order"),
        (_set("train.parameters.epoch", 3), "train.parameters: unknown configuration key 'epoch'"),
        (_set("label.parameters.bassis", "sto-3g"), "label.parameters: .*'bassis'"),
        (_set("explore.protocol.temprature", 300), "explore.protocol: .*temprature"),
        (_set("structures", "missing.extxyz"), "missing.extxyz does not exist"),
        (_set("codes", {}), "codes: give the AiiDA code"),
        (_set("stop.convergence_fraction", 2), "convergence_fraction must be a number between 0 and 1"),
        (_set("train.options.queue", "gpu"), "unknown key 'train.options.queue'"),
        (_set("explore.stop_at", "first"), "explore.stop_at must be one of lower, upper, never, got 'first'"),
        (_set("explore.device", "gpu"), "explore.device must be one of auto, cpu, cuda, got 'gpu'"),
    ],
)
def test_invalid_specs_name_the_problem(tmp_path, change, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_variant(tmp_path, change))


def test_launch_refuses_a_missing_code_before_storing_anything(tmp_path, aiida_profile):
    path = _variant(tmp_path, _set("codes", {"lmlp": "no-such-code@localhost"}))
    before = orm.QueryBuilder().append(orm.Node).count()
    result = CliRunner().invoke(main, ["campaign", "launch", str(path)])
    assert result.exit_code != 0
    assert "codes.train: code 'no-such-code@localhost' cannot be loaded" in result.output
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path):
    """YAML itself keeps the last of two equal keys without a word; a spec must not."""
    text = (ROOT / "workflows" / "quickstart.yaml").read_text()
    assert "  stop_at: lower" in text
    path = tmp_path / "twice.yaml"
    path.write_text(text.replace("  stop_at: lower", "  stop_at: lower\n  stop_at: never", 1))
    line = text[: text.index("  stop_at: lower")].count("\n") + 1
    message = rf"found the key 'stop_at' twice \(first at line {line}\)(.|\n)*line {line + 1}"
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_explore_device_and_replicas_reach_the_campaign_inputs(tmp_path, lmlp_code):
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    code = lmlp_code("lmlp.explore")

    def change(spec):
        spec["codes"] = {"lmlp": code.full_label}
        spec["explore"]["device"] = "cpu"
        spec["explore"]["protocol"]["replicas"] = 3

    inputs = load_spec(_variant(tmp_path, change)).build_inputs("device-test")
    assert inputs["explore"]["device"].value == "cpu"
    assert inputs["explore"]["protocol"].get_dict()["replicas"] == 3
    port = LifelongWorkChain.spec().inputs["explore"]["device"]  # the campaign passes it on to lmlp.explore
    assert port.validate(inputs["explore"]["device"]) is None and port.validate(orm.Str("gpu")) is not None
    # without the key, the exploration job decides (lmlp explore --device auto)
    inputs = load_spec(_variant(tmp_path, lambda spec: spec.update(codes={"lmlp": code.full_label}))).build_inputs()
    assert "device" not in inputs["explore"]
