"""``lmlp.lifelong`` run for real: label, train, explore, screen, label, continue training, register."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp import registry
from aiida_lmlp.workflows.lifelong import LifelongWorkChain

from .campaign_inputs import campaign_inputs, initial_structures


@pytest.fixture(scope="module")
def campaign(lmlp_code, aiida_profile):
    structures = initial_structures(count=9, impossible=1)
    inputs = campaign_inputs(lmlp_code("lmlp.train"), structures, campaign=orm.Str("test-campaign"))
    results, node = run_get_node(LifelongWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    return results, node


def test_campaign_learns_lifelong_and_registers_every_version(campaign):
    results, node = campaign
    report = results["report"].get_dict()
    assert results["stop_reason"].value in ("max_iterations", "converged", "dft_budget")
    assert report["stop_reason"] == results["stop_reason"].value
    versions = registry.list_versions("test-campaign")
    assert [v["version"] for v in versions] == list(range(len(versions))) and len(versions) >= 1
    # lifelong: every later version continues its parent (epochs add up, never from scratch)
    for older, newer in zip(versions, versions[1:]):
        assert newer["parent"] == older["uuid"]
        assert newer["epochs"] == older["epochs"] + 10
        assert newer["dataset_size"] >= older["dataset_size"]
    assert versions[0]["epochs"] == 30
    assert results["potential"].uuid == versions[-1]["uuid"]
    for record in report["iterations"]:
        assert record["selected"] <= 3
        assert record["visited"] == record["known"] + record["uncertain"] + record["unphysical"] + record["too_close"]
    assert report["dft_used"] <= 40


def test_a_labelling_failure_is_recorded_and_the_campaign_goes_on(campaign):
    results, node = campaign
    dropped = results["dropped"].get_list()
    assert [d["index"] for d in dropped] == [8]
    assert "PySCF error" in dropped[0]["reason"] and "spin" in dropped[0]["reason"]
    assert results["labelled"]["d000"].count == 8
    assert node.is_finished_ok and len(results["versions"]) >= 2


def test_no_structure_is_labelled_twice(campaign):
    from aiida_lmlp.workflows.screening import geometry_keys

    results, _ = campaign
    keys = [key for dataset in results["labelled"].values() for key in geometry_keys(dataset)]
    assert len(keys) == len(set(keys))


def test_lineage_reaches_the_dft_calculations(campaign):
    results, node = campaign
    latest = results["potential"]
    lineage = registry.lineage(latest)
    dft = lineage["dft_calculations"]
    assert dft and all(row["labelled"] >= 1 for row in dft if row["exit_status"] == 0)
    # the initial labelling is among them, and every labelled conformation of the campaign is accounted for
    labelled_total = sum(d.count for d in results["labelled"].values())
    assert sum(row["labelled"] for row in dft) == labelled_total


def test_diff_and_export(campaign, tmp_path):
    from ase.io import read

    versions = registry.list_versions("test-campaign")
    first = registry.get_version("test-campaign", 0)
    latest = registry.get_version("test-campaign", -1)
    difference = registry.diff_versions(first, latest)
    assert difference["conformations_new"] == difference["conformations_old"] + len(difference["added"])
    assert not difference["removed"]
    model, data = registry.export_version(latest, tmp_path)
    frames = read(data, ":")
    assert len(frames) == registry.training_state(latest)["ids"].__len__()
    assert model.stat().st_size > 0 and versions[-1]["dataset_size"] >= len(frames)
