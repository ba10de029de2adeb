"""``lmlp models`` on a real campaign, with the argument vectors the README prints."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from aiida import get_profile
from click.testing import CliRunner

from aiida_lmlp import registry
from aiida_lmlp.cli import main

from .conftest import SMALL_CAMPAIGN

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_models_commands() -> list[list[str]]:
    """Every ``lmlp models …`` line of the README as an argument vector (comment dropped, `lmlp` removed)."""
    vectors = []
    for line in README.read_text().splitlines():
        if line.startswith("lmlp models "):
            vectors.append(shlex.split(line.split("#", 1)[0])[1:])
    return vectors


@pytest.fixture(scope="module")
def campaign(small_campaign):
    """The shared small campaign (tests/aiida/conftest.py)."""
    return small_campaign


def test_readme_lists_the_negative_version_commands():
    vectors = _readme_models_commands()
    assert ["models", "lineage", "quickstart", "-1"] in vectors
    assert ["models", "export", "quickstart", "-1", "exported/"] in vectors


def test_readme_model_commands_with_negative_versions_run(campaign, tmp_path, monkeypatch):
    """The README's vectors verbatim except the campaign name: the test profile's campaign is the small one."""
    monkeypatch.chdir(tmp_path)
    latest = registry.get_version(SMALL_CAMPAIGN, -1)
    runner = CliRunner()
    vectors = [v for v in _readme_models_commands() if "-1" in v] + [["models", "show", "quickstart", "-1"]]
    assert len(vectors) >= 3
    for vector in vectors:
        arguments = [SMALL_CAMPAIGN if token == "quickstart" else token for token in vector]
        result = runner.invoke(main, arguments)
        assert result.exit_code == 0, f"{vector}: {result.output}"
        if vector[1] == "lineage":
            assert json.loads(result.output)["potential"] == latest.pk
        elif vector[1] == "show":
            assert json.loads(result.output)["pk"] == latest.pk
        elif vector[1] == "export":
            assert (tmp_path / vector[-1] / "model.lmlp").is_file()


def test_negative_versions_count_from_the_latest(campaign):
    versions = registry.list_versions(SMALL_CAMPAIGN)
    assert len(versions) >= 2
    runner = CliRunner()
    profile = get_profile().name
    result = runner.invoke(main, ["models", "show", SMALL_CAMPAIGN, "-2", "--profile", profile])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pk"] == versions[-2]["pk"]
    result = runner.invoke(main, ["models", "diff", SMALL_CAMPAIGN, "0", "-1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"v0 -> v{versions[-1]['version']}:")
    too_old = -len(versions) - 1
    result = runner.invoke(main, ["models", "show", SMALL_CAMPAIGN, str(too_old)])
    assert result.exit_code != 0 and f"no version {too_old}" in result.output and "Traceback" not in result.output


def test_an_unknown_option_is_still_refused(campaign, tmp_path):
    result = CliRunner().invoke(main, ["models", "export", SMALL_CAMPAIGN, "-1", "--force", str(tmp_path / "x")])
    assert result.exit_code == 2 and "No such option: --force" in result.output
    assert not (tmp_path / "x").exists() and not re.search(r"Traceback", result.output)
