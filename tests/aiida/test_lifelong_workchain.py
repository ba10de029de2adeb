"""``lmlp.lifelong`` run for real: label, train, explore, screen, label, continue training, register."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_lmlp import registry
from aiida_lmlp.reporting import version_metrics

from .conftest import SMALL_CAMPAIGN


@pytest.fixture(scope="module")
def campaign(small_campaign):
    """The shared small campaign (tests/aiida/conftest.py)."""
    return small_campaign


def test_campaign_learns_lifelong_and_registers_every_version(campaign):
    results, node = campaign
    report = results["report"].get_dict()
    assert results["stop_reason"].value in ("max_iterations", "converged", "dft_budget")
    assert report["stop_reason"] == results["stop_reason"].value
    versions = registry.list_versions(SMALL_CAMPAIGN)
    assert [v["version"] for v in versions] == list(range(len(versions))) and len(versions) >= 1
    # lifelong: every later version continues its parent (epochs add up, never from scratch)
    for older, newer in zip(versions, versions[1:]):
        assert newer["parent"] == older["uuid"]
        assert newer["epochs"] == older["epochs"] + 10
        assert newer["dataset_size"] >= older["dataset_size"]
    assert versions[0]["epochs"] == 30
    # every version is also measured on version 0's test conformations: at version 0 they are its test
    # sets, and that figure is the ensemble's RMSE over their union (the RMSE of the uncertainty floor
    # is the mean of the members' own test RMSEs instead, Eq. 23)
    assert all(v["first_test_rmse_energy_per_atom"] is not None for v in versions)
    first = version_metrics(orm.load_node(versions[0]["pk"]))
    assert versions[0]["first_test_rmse_energy_per_atom"] == pytest.approx(
        first["ensemble_test_rmse_energy_per_atom"][-1]
    )
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


def test_exploration_starts_only_from_structures_that_could_be_labelled(campaign):
    from aiida.orm import QueryBuilder

    from aiida_lmlp.calculations import LmlpExploreCalculation

    results, node = campaign
    impossible = results["dropped"].get_list()[0]["id"]
    expected = [key for key in node.inputs.structures.ids if key != impossible]
    explorations = QueryBuilder().append(type(node), filters={"id": node.pk}, tag="campaign")
    explorations.append(LmlpExploreCalculation, with_incoming="campaign")
    starts = [calc.inputs.structures for (calc,) in explorations.all()]
    assert starts, "the campaign explored"
    for start in starts:
        # the impossible structure (index 8, dropped by the initial labelling) is not among them
        assert start.count == 8 and start.ids == expected


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

    versions = registry.list_versions(SMALL_CAMPAIGN)
    first = registry.get_version(SMALL_CAMPAIGN, 0)
    latest = registry.get_version(SMALL_CAMPAIGN, -1)
    difference = registry.diff_versions(first, latest)
    assert difference["conformations_new"] == difference["conformations_old"] + len(difference["added"])
    assert not difference["removed"]
    model, data = registry.export_version(latest, tmp_path)
    frames = read(data, ":")
    assert len(frames) == registry.training_state(latest)["ids"].__len__()
    assert model.stat().st_size > 0 and versions[-1]["dataset_size"] >= len(frames)


def test_a_querybuilder_path_leads_from_the_latest_version_to_its_dft_calculations(campaign):
    from aiida import orm

    from aiida_lmlp.calculations import LmlpTrainCalculation, PyscfCalculation
    from aiida_lmlp.data import LmlpDatasetData, LmlpPotentialData

    results, _ = campaign
    query = orm.QueryBuilder()
    query.append(LmlpPotentialData, filters={"id": results["potential"].pk}, tag="version")
    query.append(LmlpTrainCalculation, with_outgoing="version", tag="training")
    query.append(LmlpDatasetData, with_outgoing="training", tag="data")
    query.append(PyscfCalculation, with_outgoing="data", project="id")
    found = set(query.all(flat=True))
    # the latest version was trained on data labelled by PySCF jobs of the campaign
    lineage = {row["pk"] for row in registry.lineage(results["potential"])["dft_calculations"]}
    assert found and found <= lineage


def test_every_trajectory_ends_at_its_first_uncertain_conformation(campaign):
    """``explore_stop_at`` (default ``lower``): the stop thresholds are the screening's lower ones, per version."""
    import numpy as np
    from aiida.orm import QueryBuilder

    from aiida_lmlp.calculations import LmlpExploreCalculation
    from aiida_lmlp.workflows.candidates import SelectionSettings, forces_uncertainty_max

    _, node = campaign
    assert node.inputs.explore_stop_at.value == "lower"
    explorations = QueryBuilder().append(type(node), filters={"id": node.pk}, tag="campaign")
    explorations.append(LmlpExploreCalculation, with_incoming="campaign")
    settings = SelectionSettings.from_dict(node.inputs.selection.get_dict())
    stopped_anywhere = 0
    for (calc,) in explorations.all():
        rmses = calc.inputs.potential.base.attributes
        expected = settings.trajectory_stop(rmses.get("rmse_energy_per_atom"), rmses.get("rmse_forces"), "lower")
        protocol = calc.inputs.protocol.get_dict()
        # AiiDA stores floats to 14 significant digits; the job used the stored values
        assert {key: protocol[key] for key in expected} == pytest.approx(expected, rel=1e-13)
        expected = {key: protocol[key] for key in expected}
        a = calc.outputs.visited.conformations.arrays
        energy = a["energy_uncertainty"] / a["counts"]
        forces = forces_uncertainty_max(a["forces_uncertainty"], a["counts"])
        above = (energy > expected["stop_energy_uncertainty_per_atom"]) | (forces > expected["stop_forces_uncertainty"])
        stopped = a["info.stopped"].astype(bool)
        # a recorded conformation passes a threshold exactly when its trajectory stopped there
        np.testing.assert_array_equal(above, stopped)
        stopped_anywhere += int(stopped.sum())
    assert stopped_anywhere, "some trajectory met an uncertain conformation (else the campaign selected nothing)"


def test_the_training_data_stream_is_merged_in_segments(campaign):
    """Width 2: the initial data and the first iteration's labels merge; the last training takes 2 segments."""
    from aiida.common.links import LinkType

    from aiida_lmlp.calculations import LmlpTrainCalculation
    from aiida_lmlp.workflows.screening import geometry_keys

    results, node = campaign
    labelled = [results["labelled"][key] for key in sorted(results["labelled"].keys())]
    calls = {link.link_label: link.node for link in node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()}
    merges = sorted(label for label in calls if label.startswith("merge_stream_"))
    assert merges == ["merge_stream_001_tier1"] and len(labelled) == 3
    merged = calls["merge_stream_001_tier1"]
    inputs = merged.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all_nodes()
    assert {n.pk for n in inputs} == {labelled[0].pk, labelled[1].pk}
    (segment,) = merged.base.links.get_outgoing().all_nodes()
    assert segment.ids == labelled[0].ids + labelled[1].ids  # in stream order
    last = results["potential"].creator
    assert isinstance(last.process_class, type) and issubclass(last.process_class, LmlpTrainCalculation)
    datasets = [last.inputs.datasets[key] for key in sorted(last.inputs.datasets)]
    assert [d.pk for d in datasets] == [segment.pk, labelled[2].pk]
    # the same conformations as every labelled dataset, in the same order
    assert [k for d in datasets for k in geometry_keys(d)] == [k for d in labelled for k in geometry_keys(d)]
    # the registry's data size counts them from the segments: every distinct labelled conformation
    size = results["potential"].base.extras.get("lmlp_dataset_size")
    assert size == len({i for d in labelled for i in d.ids}) == sum(d.count for d in labelled)


def test_a_campaign_checkpointed_before_known_and_stream_goes_on_as_then(campaign, lmlp_code):
    """Contexts without ``known`` / ``stream`` (saved by an earlier aiida-lmlp): every dataset as input, as then.

    The step methods run on a fresh, never-started instance with the context such a checkpoint holds;
    the screening decides as the campaign's own (carried-state) screening did.
    """
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager
    from aiida.orm import load_node

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    from .campaign_inputs import campaign_inputs

    results, node = campaign
    calls = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    labelled = [results["labelled"][key] for key in sorted(results["labelled"].keys())]
    inputs = campaign_inputs(lmlp_code("lmlp.train"), node.inputs.structures)
    process = instantiate_process(get_manager().get_runner(), LifelongWorkChain, **inputs)
    ctx = process.ctx
    ctx.labelled = [d.pk for d in labelled[:2]]
    ctx.selected = [calls["screen_001"].outputs.selected.pk]
    ctx.exploration, ctx.potential = calls["explore_002"], calls["explore_002"].inputs.potential.pk
    ctx.iteration, ctx.dft_used, ctx.record = 2, node.outputs.report["iterations"][0]["dft_used"], {}
    # the training stream: the datasets one by one, nothing merged
    assert [d.pk for d in process._datasets().values()] == ctx.labelled
    process._add_to_stream(labelled[2].pk)
    assert "stream" not in ctx and [d.pk for d in process._datasets().values()] == [d.pk for d in labelled]
    # the screening of iteration 2 from every dataset: the same decision as the campaign's own
    ctx.labelled = [d.pk for d in labelled[:2]]
    process.screen()
    own = calls["screen_002"].outputs.report.get_dict()
    mine = ctx.record
    assert {k: mine[k] for k in ("visited", "known", "uncertain", "selected")} == {
        k: own[k] for k in ("visited", "known", "uncertain", "selected")
    }
    if "selected" in calls["screen_002"].outputs:
        assert load_node(ctx.candidates).ids == calls["screen_002"].outputs.selected.ids
    else:
        assert ctx.candidates is None


def test_every_labelling_shares_the_campaigns_default_nodes(campaign):
    """lmlp.label's own defaults (max_iterations, clean_workdir, max_attempts) reach every labelling as
    one stored node each, with the values lmlp.label would have made for itself: the campaign's
    ``label`` namespace gets them once, when the campaign is created, instead of each labelling
    storing and linking new ones (a query per link)."""
    from aiida.orm import QueryBuilder

    from aiida_lmlp.workflows.label import LabelWorkChain

    _, node = campaign
    labellings = QueryBuilder().append(type(node), filters={"id": node.pk}, tag="campaign")
    labellings.append(LabelWorkChain, with_incoming="campaign")
    nodes = [label for (label,) in labellings.all()]
    assert len(nodes) >= 2, "the campaign labelled more than once"
    for name in ("max_iterations", "clean_workdir", "max_attempts"):
        inputs = [label.inputs[name] for label in nodes]
        assert len({n.pk for n in inputs}) == 1, name
        default = LabelWorkChain.spec().inputs[name].default()
        assert inputs[0].value == default.value, name
