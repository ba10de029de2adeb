"""``lmlp.lifelong`` trains each version itself, with the steps it shares with ``lmlp.train_ensemble``."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ExitCode

from aiida_lmlp.calculations.train import LmlpTrainCalculation
from aiida_lmlp.workflows.ensemble_training import RESUMABLE

from .campaign_inputs import TRAIN_PARAMETERS, campaign_inputs


def test_every_version_comes_from_training_jobs_the_campaign_calls_itself(small_campaign):
    results, node = small_campaign
    calls = {link.link_label: link.node for link in node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all()}
    assert not [n for n in calls.values() if n.process_type.endswith("lmlp.train_ensemble")]
    jobs = {
        link.link_label: link.node
        for link in node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()
        if link.node.process_type.endswith("lmlp.train")
    }
    versions = [results["versions"][key] for key in sorted(results["versions"].keys())]
    assert sorted(jobs) == [f"train_v{v:03d}_block_00_try_00" for v in range(len(versions))]
    for v, version in enumerate(versions):
        job = jobs[f"train_v{v:03d}_block_00_try_00"]
        assert version.creator.pk == job.pk and job.is_finished_ok
        if v == 0:  # the first from train.parameters, from scratch
            assert "parent_potential" not in job.inputs
            assert job.inputs.parameters.get_dict() == TRAIN_PARAMETERS
        else:  # the others continue the previous version with continue_parameters
            assert job.inputs.parent_potential.pk == versions[v - 1].pk
            assert job.inputs.parameters["epochs"] == 10


@pytest.fixture
def fresh_campaign(lmlp_code, sn2_dataset):
    """A never-started campaign with members_per_job 1 (two blocks), at version 2 of the given potential."""
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    def factory(potential):
        inputs = campaign_inputs(lmlp_code("lmlp.train"), sn2_dataset)
        inputs["train"]["members_per_job"] = orm.Int(1)
        inputs["train"]["max_restarts"] = orm.Int(1)
        process = instantiate_process(get_manager().get_runner(), LifelongWorkChain, **inputs)
        process.ctx.stream = [[sn2_dataset.pk, 0]]
        process.ctx.potential, process.ctx.version = potential.pk, 2
        return process

    return factory


def test_a_continued_version_in_member_blocks(fresh_campaign, small_campaign):
    potential = small_campaign[0]["potential"]
    process = fresh_campaign(potential)
    request = process.training_request()
    assert request.parent_potential.pk == potential.pk and request.parameters["epochs"] == 10
    process.plan_training()
    assert process.ctx.blocks == [(0, 1), (1, 2)] and process.ctx.epochs == 10
    inputs = process._job_inputs(request, 1, None)
    assert inputs["member_block"].get_list() == [1, 2]
    assert inputs["parent_potential"].pk == potential.pk
    assert inputs["metadata"]["call_link_label"] == "train_v003_block_01_try_00"
    assert [d.pk for d in inputs["datasets"].values()] == [process.ctx.stream[0][0]]
    assert inputs["metadata"]["options"]["max_wallclock_seconds"] == 900


def _finished_train_job(computer, exit_status: int, message: str) -> orm.CalcJobNode:
    from aiida.engine import ProcessState

    node = orm.CalcJobNode(computer=computer, process_type="aiida.calculations:lmlp.train")
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(exit_status)
    node.set_exit_message(message)
    node.set_process_label("LmlpTrainCalculation")
    return node.store()


@pytest.mark.parametrize("resumable", [False, True], ids=["hopeless", "resumable, out of restarts"])
def test_a_job_that_fails_for_good_ends_the_campaign_naming_it(fresh_campaign, small_campaign, localhost, resumable):
    process = fresh_campaign(small_campaign[0]["potential"])
    process.plan_training()
    codes = LmlpTrainCalculation.exit_codes
    status = (codes.ERROR_SCHEDULER_OUT_OF_WALLTIME if resumable else codes.ERROR_NO_USABLE_DATA).status
    assert (status in RESUMABLE) is resumable
    failed = _finished_train_job(localhost, status, "the job said why")
    finished = _finished_train_job(localhost, 0, "")
    process.ctx.jobs = [finished.pk, failed.pk]
    process.ctx.done = [small_campaign[0]["potential"].pk, None]  # block 0 is done
    process.ctx.restarts = [0, 1]  # max_restarts 1: a resumable block has had its one resubmission
    result = process.inspect_training()
    assert isinstance(result, ExitCode) and result.status == process.exit_codes.ERROR_TRAINING_FAILED.status
    expected = f"Training version 3 failed: LmlpTrainCalculation<{failed.pk}> failed for good: the job said why"
    assert result.message == expected
