"""A continued training links the parent model and the data the parent's job had, instead of uploading them again.

Real ``lmlp.train`` jobs through core.local + core.direct: their remote folders are folders of
this machine, so the tests look at what each job's folder holds (links or uploaded files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import LmlpTrainCalculation
from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.workflows.train_ensemble import TrainEnsembleWorkChain

FIRST = {"epochs": 2, "members": 2, "hidden": [6], "seed": 1, "fit_per_epoch": 1.0, "test_fraction": 0.25}
MORE = {**FIRST, "epochs": 2}
OPTIONS = {"metadata": {"options": {"max_wallclock_seconds": 600}}}


def _workdir(node) -> Path:
    return Path(node.outputs.remote_folder.get_remote_path())


def _train(code, datasets, parameters, **extra):
    results, node = run_get_node(
        LmlpTrainCalculation, code=code, datasets=datasets, parameters=orm.Dict(parameters), **OPTIONS, **extra
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results, node


@pytest.fixture(scope="module")
def new_data(aiida_profile, sn2_frames):
    return LmlpDatasetData.from_atoms(sn2_frames[40:52]).store()


@pytest.fixture(scope="module")
def first(lmlp_code, sn2_dataset):
    """Version 0, trained on the 40 SN2 conformations."""
    return _train(lmlp_code("lmlp.train"), {"d0": sn2_dataset}, FIRST)


@pytest.fixture(scope="module")
def second(first, lmlp_code, sn2_dataset, new_data):
    """Version 1, continued from the first with new data, its files linked from the first job's folder."""
    results, job = first
    return _train(
        lmlp_code("lmlp.train"),
        {"d0": sn2_dataset, "d1": new_data},
        MORE,
        parent_potential=results["potential"],
        parent_folder=job.outputs.remote_folder,
    )


@pytest.fixture(scope="module")
def purged(lmlp_code, sn2_dataset):
    """A version whose job's folder lost its data and model file, as a scratch purge leaves it."""
    results, job = _train(lmlp_code("lmlp.train"), {"d0": sn2_dataset}, {**FIRST, "seed": 3})
    for name in ("data_0.npz", "model.lmlp"):
        (_workdir(job) / name).unlink()
    return results, job


def test_a_continued_job_links_the_parent_and_the_old_data_and_uploads_the_new(
    first, second, lmlp_code, sn2_dataset, new_data
):
    (results, job), (linked, node) = first, second
    parent = results["potential"]
    datasets = {"d0": sn2_dataset, "d1": new_data}
    uploaded, plain = _train(lmlp_code("lmlp.train"), datasets, MORE, parent_potential=parent)
    workdir = _workdir(node)
    assert os.readlink(workdir / "parent.lmlp") == str(_workdir(job) / "model.lmlp")
    assert os.readlink(workdir / "data_0.npz") == str(_workdir(job) / "data_0.npz")
    assert not (workdir / "data_1.npz").is_symlink() and (workdir / "data_1.npz").is_file()  # the new data
    for name in ("parent.lmlp", "data_0.npz", "data_1.npz"):
        assert not (_workdir(plain) / name).is_symlink()
    # the same training: linking changes where the files come from, nothing else
    assert linked["potential"].content_sha256 == uploaded["potential"].content_sha256
    # provenance: the parent stays an input, and so does the folder the files came from
    assert node.inputs.parent_potential.pk == parent.pk
    assert node.inputs.parent_folder.pk == job.outputs.remote_folder.pk
    assert {n.pk for n in node.inputs.datasets.values()} == {sn2_dataset.pk, new_data.pk}


def test_links_point_at_the_original_files_never_at_links(first, second, lmlp_code, sn2_dataset, new_data):
    """Iteration after iteration the old data stay where they were first uploaded (no chain of links)."""
    (_, job), (second_results, second_job) = first, second
    _, third = _train(
        lmlp_code("lmlp.train"),
        {"d0": sn2_dataset, "d1": new_data},
        MORE,
        parent_potential=second_results["potential"],
        parent_folder=second_job.outputs.remote_folder,
    )
    workdir = _workdir(third)
    assert os.readlink(workdir / "data_0.npz") == str(_workdir(job) / "data_0.npz")
    assert os.readlink(workdir / "data_1.npz") == str(_workdir(second_job) / "data_1.npz")
    assert os.readlink(workdir / "parent.lmlp") == str(_workdir(second_job) / "model.lmlp")
    regular = [path.name for path in workdir.iterdir() if path.is_file() and not path.is_symlink()]
    assert not any(name.endswith((".npz", ".lmlp")) for name in regular if name != "model.lmlp"), regular


def test_files_of_a_cleaned_folder_are_uploaded(first, second, lmlp_code, sn2_dataset, new_data):
    (_, job), (second_results, second_job) = first, second
    job.outputs.remote_folder.base.extras.set(orm.RemoteData.KEY_EXTRA_CLEANED, True)  # as cleanworkdir marks it
    try:
        _, node = _train(
            lmlp_code("lmlp.train"),
            {"d0": sn2_dataset, "d1": new_data},
            MORE,
            parent_potential=second_results["potential"],
            parent_folder=second_job.outputs.remote_folder,
        )
    finally:
        job.outputs.remote_folder.base.extras.delete(orm.RemoteData.KEY_EXTRA_CLEANED)
    workdir = _workdir(node)
    assert not (workdir / "data_0.npz").is_symlink()  # it was in the cleaned folder
    assert os.readlink(workdir / "data_1.npz") == str(_workdir(second_job) / "data_1.npz")


def test_a_parent_folder_of_another_job_is_refused(first, second, lmlp_code, sn2_dataset):
    (results, _), (_, other) = first, second
    with pytest.raises(ValueError, match="is not the folder of the job that wrote parent_potential"):
        run_get_node(
            LmlpTrainCalculation,
            code=lmlp_code("lmlp.train"),
            datasets={"d0": sn2_dataset},
            parent_potential=results["potential"],
            parent_folder=other.outputs.remote_folder,
            **OPTIONS,
        )


def test_a_purged_file_makes_the_training_upload_everything(purged, lmlp_code, sn2_dataset, new_data):
    """Scratch purged under the parent's job: the linking job fails (304), the work chain resubmits it uploading."""
    results, _ = purged
    parent = results["potential"]
    outputs, node = run_get_node(
        TrainEnsembleWorkChain,
        train={"code": lmlp_code("lmlp.train"), **OPTIONS},
        datasets={"d0": sn2_dataset, "d1": new_data},
        parent_potential=parent,
        parameters=orm.Dict(MORE),
    )
    assert node.is_finished_ok, node.exit_message
    jobs = sorted(node.called, key=lambda n: n.ctime)
    assert [j.exit_status for j in jobs] == [LmlpTrainCalculation.exit_codes.ERROR_LINKED_INPUT_MISSING.status, 0]
    assert "data_0.npz" in jobs[0].exit_message or "parent.lmlp" in jobs[0].exit_message
    assert "parent_folder" in jobs[0].inputs and "parent_folder" not in jobs[1].inputs
    assert not (_workdir(jobs[1]) / "data_0.npz").is_symlink()
    assert jobs[1].inputs.parent_potential.pk == parent.pk
    assert outputs["potential"].base.attributes.get("epochs") == FIRST["epochs"] + MORE["epochs"]


def test_a_campaign_continues_each_version_from_the_files_of_the_one_before(small_campaign):
    """The real campaign: each continued version's job links its parent model and the data its parent's job had.

    Data the stream merged since (``stream_merge_width`` 2 here) are new nodes: uploaded.
    """
    _, campaign = small_campaign
    jobs = [n for n in campaign.called_descendants if n.process_type == "aiida.calculations:lmlp.train"]
    continued = [job for job in jobs if "parent_potential" in job.inputs]
    assert continued, "the campaign trained no continued version"
    linked_data = 0
    for job in continued:
        parent_job = job.inputs.parent_potential.creator
        assert job.inputs.parent_folder.creator.pk == parent_job.pk
        workdir = _workdir(job)
        assert os.readlink(workdir / "parent.lmlp") == str(_workdir(parent_job) / "model.lmlp")
        had = {node.uuid for node in parent_job.inputs.datasets.values()}
        record = json.loads(job.base.repository.get_object_content("lmlp.inputs.json"))
        for name, entry in record.items():
            if name.startswith("data_"):
                assert (workdir / name).is_symlink() is (entry["uuid"] in had), name
                linked_data += (workdir / name).is_symlink()
                assert not Path(os.path.realpath(workdir / name)).is_symlink()
    assert linked_data >= 1
    # every exploration after the first version's links the model its training job wrote
    explorations = [n for n in campaign.called if n.process_type == "aiida.calculations:lmlp.explore"]
    assert explorations
    for node in explorations:
        writer = node.inputs.potential.creator
        assert node.inputs.potential_folder.creator.pk == writer.pk
        assert os.readlink(_workdir(node) / "model.lmlp") == str(_workdir(writer) / "model.lmlp")


EXPLORE = {"kind": "md", "steps": 6, "sample_every": 2, "temperature": 300, "seed": 4}


def _explore(code, potential, starts, **extra):
    from aiida_lmlp.calculations import LmlpExploreCalculation

    return run_get_node(
        LmlpExploreCalculation,
        code=code,
        potential=potential,
        structures=starts,
        protocol=orm.Dict(EXPLORE),
        **OPTIONS,
        **extra,
    )


def test_an_exploration_links_the_model_its_training_job_wrote(first, lmlp_code, sn2_frames):
    results, job = first
    starts = LmlpDatasetData.from_atoms(sn2_frames[:2]).store()
    code = lmlp_code("lmlp.explore")
    linked, node = _explore(code, results["potential"], starts, potential_folder=job.outputs.remote_folder)
    uploaded, plain = _explore(code, results["potential"], starts)
    assert node.is_finished_ok and plain.is_finished_ok, (node.exit_message, plain.exit_message)
    assert os.readlink(_workdir(node) / "model.lmlp") == str(_workdir(job) / "model.lmlp")
    assert not (_workdir(plain) / "model.lmlp").is_symlink()
    assert linked["visited"].count == uploaded["visited"].count == 8
    energies = [[a.info["lmlp_energy"] for a in r["visited"].to_atoms()] for r in (linked, uploaded)]
    assert energies[0] == energies[1]
    assert node.inputs.potential.pk == results["potential"].pk


def test_a_campaign_whose_model_file_was_purged_explores_again_uploading(purged, lmlp_code, sn2_dataset, sn2_frames):
    """The first exploration finds its linked model gone (304) and gives nothing; the next one uploads it."""
    from aiida_lmlp.calculations import LmlpExploreCalculation
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    from .campaign_inputs import campaign_inputs

    results, _ = purged
    starts = [a.copy() for a in sn2_frames if a.info["reaction"] == "Cl+CH3Cl"][:2]
    inputs = campaign_inputs(
        lmlp_code("lmlp.train"),
        sn2_dataset,
        parent_potential=results["potential"],
        explore_structures=LmlpDatasetData.from_atoms(starts).store(),
        continue_parameters=orm.Dict(MORE),
        selection=orm.Dict({"max_per_iteration": 1}),
    )
    del inputs["train"]
    outputs, campaign = run_get_node(LifelongWorkChain, **inputs)
    assert campaign.is_finished_ok, campaign.exit_message
    explorations = sorted(
        (n for n in campaign.called if n.process_type == "aiida.calculations:lmlp.explore"), key=lambda n: n.ctime
    )
    assert len(explorations) == 2
    first_try, second_try = explorations
    assert first_try.exit_status == LmlpExploreCalculation.exit_codes.ERROR_LINKED_INPUT_MISSING.status
    assert "potential_folder" in first_try.inputs and "potential_folder" not in second_try.inputs
    assert second_try.is_finished_ok and not (_workdir(second_try) / "model.lmlp").is_symlink()
    report = outputs["report"].get_dict()["iterations"]
    assert "explore_failed" in report[0] and "explore_failed" not in report[1]
