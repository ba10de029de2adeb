"""A campaign archived with ``verdi archive create -N <work chain>`` and imported into another profile.

The archive is made with aiida-core's archive API (what ``verdi archive create`` calls, with its
default traversal rules); the import and the queries run in a second, fresh profile through the
real ``verdi`` and ``lmlp`` commands, in their own processes and their own AiiDA configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_lmlp import registry

from .conftest import SMALL_CAMPAIGN

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def campaign(small_campaign):
    """The shared small campaign (tests/aiida/conftest.py)."""
    return small_campaign


def _run(environment: dict, *command: str) -> str:
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_an_archived_campaign_is_found_in_the_profile_it_is_imported_into(campaign, tmp_path):
    from aiida.tools.archive import create_archive

    results, node = campaign
    archive = create_archive([node], filename=tmp_path / "campaign.aiida")  # = verdi archive create -N <pk>
    versions = registry.list_versions(SMALL_CAMPAIGN)
    latest = registry.get_version(SMALL_CAMPAIGN, -1)
    dft = registry.lineage(latest)["dft_calculations"]

    environment = {**os.environ, "AIIDA_PATH": str(tmp_path / "other-config")}
    _run(
        environment,
        str(BIN / "verdi"),
        "profile",
        "setup",
        "core.sqlite_dos",
        "-n",
        "--profile-name",
        "colleague",
        "--email",
        "colleague@example.org",
        "--first-name",
        "A",
        "--last-name",
        "Colleague",
        "--institution",
        "Elsewhere",
        "--broker",
        "none",
        "--filepath",
        str(tmp_path / "colleague-storage"),
    )
    _run(environment, str(BIN / "verdi"), "archive", "import", str(archive))

    rows = json.loads(_run(environment, str(BIN / "lmlp"), "campaign", "status", "--json"))
    assert [(row["campaign"], row["versions"]) for row in rows] == [(SMALL_CAMPAIGN, len(versions))]
    assert rows[0]["stop_reason"] == results["stop_reason"].value

    listing = _run(environment, str(BIN / "lmlp"), "models", "list", SMALL_CAMPAIGN)
    assert f"campaign {SMALL_CAMPAIGN}: {len(versions)} version(s)" in listing

    shown = json.loads(_run(environment, str(BIN / "lmlp"), "models", "show", SMALL_CAMPAIGN, "-1"))
    assert shown["uuid"] == latest.uuid and shown["lmlp_version"] == versions[-1]["version"]
    imported_lineage = json.loads(_run(environment, str(BIN / "lmlp"), "models", "lineage", SMALL_CAMPAIGN, "-1"))
    assert len(imported_lineage["dft_calculations"]) == len(dft)

    def summary(rows):  # pks differ between the profiles
        return sorted((row["structures"], row["labelled"], row["exit_status"]) for row in rows)

    assert summary(imported_lineage["dft_calculations"]) == summary(dft)
