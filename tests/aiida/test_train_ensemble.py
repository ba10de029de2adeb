"""``lmlp.train_ensemble``: member blocks in parallel; a job killed at its wall time resumes from a checkpoint."""

from __future__ import annotations

import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.workflows.train_ensemble import TrainEnsembleWorkChain

PARAMETERS = {
    "epochs": 60,
    "members": 3,
    "hidden": [4],
    "seed": 5,
    "fit_per_epoch": 0.5,
    "test_fraction": 0.25,
    "checkpoint_every": 1,
}


@pytest.fixture(scope="module")
def dataset(aiida_profile):
    from ase.io import read

    from ..conftest import SN2

    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:12]
    return LmlpDatasetData.from_atoms(frames, label_method="PBE/def2-SVP").store()


def _weights(potential):
    return potential.get_ensemble().networks.state_dict()


def _run(code, dataset, **extra):
    options = extra.pop("options", {"max_wallclock_seconds": 600})
    return run_get_node(
        TrainEnsembleWorkChain,
        datasets={"data": dataset},
        parameters=orm.Dict(PARAMETERS),
        train={"code": code, "metadata": {"options": options}},
        **extra,
    )


@pytest.fixture(scope="module")
def single_job(lmlp_code, dataset):
    results, node = _run(lmlp_code("lmlp.train"), dataset)
    assert node.is_finished_ok, node.exit_message
    return results["potential"]


def test_member_blocks_in_parallel_jobs_equal_one_job(lmlp_code, dataset, single_job):
    results, node = _run(lmlp_code("lmlp.train"), dataset, members_per_job=orm.Int(2))
    assert node.is_finished_ok, node.exit_message
    trains = [c for c in node.called if c.process_type.endswith("lmlp.train")]
    gathers = [c for c in node.called if c.process_type.endswith("lmlp.gather")]
    assert len(trains) == 2 and len(gathers) == 1
    assert sorted(c.inputs.parameters["member_offset"] for c in trains) == [0, 2]
    potential = results["potential"]
    assert potential.members == 3 and potential.base.attributes.get("epochs") == 60
    expected = _weights(single_job)
    for name, value in _weights(potential).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-12, msg=name)
    assert potential.base.attributes.get("rmse_forces") == pytest.approx(single_job.base.attributes.get("rmse_forces"))


def test_a_job_killed_at_its_wall_time_continues_from_its_checkpoint(lmlp_code, dataset, single_job, tmp_path):
    # stands in for the scheduler's kill at the wall time: SIGTERM to lmlp once its first checkpoint is on
    # disk, in the first job only (core.direct has no wall-time limit of its own)
    marker = tmp_path / "killed-once"
    killer = (
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "( while [ ! -e model.lmlp ]; do sleep 0.05; done; pkill -TERM -P $$ -f 'lmlp.* train' ) & fi"
    )
    options = {"max_wallclock_seconds": 600, "prepend_text": killer}
    results, node = _run(lmlp_code("lmlp.train"), dataset, options=options)
    assert node.is_finished_ok, node.exit_message
    trains = sorted((c for c in node.called if c.process_type.endswith("lmlp.train")), key=lambda c: c.ctime)
    assert len(trains) == 2
    first, second = trains
    assert first.exit_status == first.process_class.exit_codes.ERROR_TRAINING_INCOMPLETE.status
    checkpoint = first.outputs.potential
    done = checkpoint.base.attributes.get("epochs")
    assert 1 <= done < 60
    # the resumed job starts from the checkpoint, for the epochs still owed
    assert second.inputs.parent_potential.pk == checkpoint.pk
    assert second.inputs.parameters["epochs"] == 60 - done
    potential = results["potential"]
    assert potential.base.attributes.get("epochs") == 60
    # and ends exactly where an uninterrupted run ends
    expected = _weights(single_job)
    for name, value in _weights(potential).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
