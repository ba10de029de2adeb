"""Jobs that SLURM ends early: killed at their time limit, or cancelled with ``scancel`` while running.

A training job killed at its wall time is resubmitted from its last checkpoint and ends with
exactly the model of an uninterrupted run (CPU, float64). A labelling job cancelled while it
runs is recorded with a clear exit and its structures are labelled by a resubmitted job: no
silent hang, nothing lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage import get_manager

from aiida_lmlp.calculations import LmlpTrainCalculation, PyscfCalculation
from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.workflows.ensemble_training import RESUMABLE

from ..conftest import SN2

pytestmark = pytest.mark.slurm

EPOCHS = 60
PARAMETERS = {
    "epochs": EPOCHS,
    "members": 2,
    "hidden": [4],
    "seed": 5,
    "fit_per_epoch": 0.5,
    "test_fraction": 0.25,
    "checkpoint_every": 1,
    "dtype": "float64",
    "device": "cpu",
}
WALL_TIME = 60  # SLURM's shortest time limit: whole minutes


def _frames(count: int, labelled: bool = True):
    from ase.io import read

    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:count]
    if not labelled:
        for atoms in frames:
            atoms.calc = None
    return frames


def _wait_for(node: orm.ProcessNode, timeout: float) -> None:
    """Let this process's event loop run (the engine of ``node``, launched with ``runner.submit``) until it ends."""
    runner = get_manager().get_runner()
    deadline = time.monotonic() + timeout
    while not node.is_terminated:
        assert time.monotonic() < deadline, f"{node.process_label}<{node.pk}> did not finish in {timeout} s"
        runner.loop.run_until_complete(asyncio.sleep(0.5))


def _finished_job(cluster, job_id: str) -> dict:
    records = {record["JobId"]: record for record in cluster.finished_jobs()}
    return records[job_id]


def test_a_training_job_killed_at_its_time_limit_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run(
    cluster_code, slurm_cluster
):
    from aiida_lmlp.workflows.train_ensemble import TrainEnsembleWorkChain

    code = cluster_code("lmlp.train")
    dataset = LmlpDatasetData.from_atoms(_frames(12), label_method="PBE/def2-SVP").store()
    # SLURM checks time limits every 30 s, so a job with the shortest limit (1 min) dies 60-90 s after it
    # starts. The first job's lmlp is paused (SIGSTOP) once half its epochs are done, so that the kill
    # finds it in the middle of training on a machine of any speed without 90 s of computing; the job
    # script touches the marker (on the cluster side), so that only the first job of this test pauses.
    marker = slurm_cluster.remote / f"paused-{uuid.uuid4().hex}"
    pause = (
        f"if [ ! -e {marker} ]; then touch {marker}; ( "
        f'while [ "$(cat model.metrics.jsonl 2>/dev/null | wc -l)" -lt {EPOCHS // 2} ]; do sleep 0.1; done; '
        "pkill -STOP -P $$ -f 'lmlp.* train ' ) & fi"
    )

    def inputs(options: dict) -> dict:
        return {
            "datasets": {"data": dataset},
            "parameters": orm.Dict(PARAMETERS),
            "train": {"code": code, "metadata": {"options": options}},
        }

    runner = get_manager().get_runner()
    # the uninterrupted run, on the cluster's other core at the same time
    reference = runner.submit(TrainEnsembleWorkChain, **inputs({"max_wallclock_seconds": 600}))
    results, node = run_get_node(
        TrainEnsembleWorkChain, **inputs({"max_wallclock_seconds": WALL_TIME, "prepend_text": pause})
    )
    _wait_for(reference, 600)
    assert node.is_finished_ok, node.exit_message
    assert reference.is_finished_ok, reference.exit_message

    jobs = sorted((c for c in node.called if c.process_type.endswith("lmlp.train")), key=lambda c: c.ctime)
    assert len(jobs) >= 2, "the first job was not stopped early (was its lmlp paused before SLURM killed it?)"
    killed, resumed = jobs[0], jobs[1]
    # SLURM killed the first job at its time limit, and core.slurm recognised the kill from the job's stderr
    assert _finished_job(slurm_cluster, killed.get_job_id())["JobState"] == "TIMEOUT"
    stderr = killed.outputs.retrieved.base.repository.get_object_content("_scheduler-stderr.txt")
    assert "DUE TO TIME LIMIT" in stderr
    walltime = LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    logs = [log.message for log in orm.Log.collection.get_logs_for(killed)]
    assert any(f"scheduler parser returned exit code<{walltime}>" in message for message in logs), logs
    # lmlp's parser keeps that finding (the job's exit says why it stopped), hands back the checkpoint,
    # and the exit is one the training resumes from
    assert killed.exit_status == walltime and walltime in RESUMABLE
    checkpoint = killed.outputs.potential
    done = checkpoint.base.attributes.get("epochs")
    assert EPOCHS // 2 <= done < EPOCHS
    # the resubmitted job continues from that checkpoint for the epochs still owed
    assert resumed.inputs.parent_potential.pk == checkpoint.pk
    assert resumed.inputs.parameters["epochs"] == EPOCHS - done
    assert all(job.is_finished_ok for job in jobs[1:])

    # and ends exactly where the uninterrupted run ends: weights and the whole training state
    reference_jobs = [c for c in reference.called if c.process_type.endswith("lmlp.train")]
    assert len(reference_jobs) == 1 and reference_jobs[0].is_finished_ok
    potential, expected = results["potential"], reference.outputs.potential
    assert potential.base.attributes.get("epochs") == expected.base.attributes.get("epochs") == EPOCHS
    a, b = potential.get_ensemble(), expected.get_ensemble()
    for (name, x), (_, y) in zip(a.networks.state_dict().items(), b.networks.state_dict().items()):
        assert x.dtype == torch.float64 and torch.equal(x, y), name
    assert sorted(a.training_state) == sorted(b.training_state)
    for name in a.training_state:
        torch.testing.assert_close(a.training_state[name], b.training_state[name], rtol=0, atol=0, equal_nan=True)


def test_a_labelling_job_cancelled_with_scancel_is_recorded_and_its_structures_labelled_by_a_resubmitted_job(
    cluster_code, slurm_cluster
):
    from aiida_lmlp.workflows.label import LabelWorkChain
    from aiida_lmlp.workflows.screening import geometry_keys

    structures = LmlpDatasetData.from_atoms(_frames(3, labelled=False)).store()
    inputs = {
        "structures": structures,
        "pyscf": {
            "code": cluster_code("lmlp.pyscf"),
            # 3-4 s per structure (HF/STO-3G would finish the batch before the cancellation lands)
            "parameters": orm.Dict({"xc": "HF", "basis": "def2-svp", "threads": 1}),
            "metadata": {"options": {"max_wallclock_seconds": 600}},
        },
        "max_attempts": orm.Int(2),
    }
    runner = get_manager().get_runner()
    chain = runner.submit(LabelWorkChain, **inputs)
    deadline = time.monotonic() + 120
    while not any(isinstance(c, orm.CalcJobNode) and c.get_remote_workdir() for c in chain.called):
        assert time.monotonic() < deadline, "the labelling work chain uploaded no calculation"
        runner.loop.run_until_complete(asyncio.sleep(0.2))
    first = next(c for c in chain.called if isinstance(c, orm.CalcJobNode))
    name, status = f"aiida-{first.pk}", f"{first.get_remote_workdir()}/{PyscfCalculation.STATUS}"
    cancelled: dict = {}

    def cancel_while_labelling() -> None:
        # watches the job's status file on the cluster (read over SSH, as a user would) and cancels the job
        # once it has labelled its first structure: the others are still to do
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            lines = slurm_cluster.ssh(f"cat {status} 2>/dev/null | wc -l").stdout.strip()
            running = [j["id"] for j in slurm_cluster.jobs() if j["name"] == name and j["state"] == "RUNNING"]
            if running and int(lines or 0) >= 2:
                slurm_cluster.command("scancel", running[0])
                cancelled["id"] = running[0]
                return
            time.sleep(0.2)

    canceller = threading.Thread(target=cancel_while_labelling, daemon=True)
    canceller.start()
    _wait_for(chain, 600)
    canceller.join(5)

    assert chain.is_finished_ok, chain.exit_message
    assert cancelled.get("id") == first.get_job_id(), "the first labelling job was never seen running"
    assert _finished_job(slurm_cluster, first.get_job_id())["JobState"] == "CANCELLED"
    # recorded with a clear exit: lmlp label-pyscf was terminated, and the parser says so
    assert first.exit_status == PyscfCalculation.exit_codes.ERROR_TERMINATED.status, first.exit_message
    assert "terminated" in first.exit_message
    stderr = first.outputs.retrieved.base.repository.get_object_content("_scheduler-stderr.txt")
    assert "CANCELLED AT" in stderr
    # the structures it did not finish went to a new job, and in the end every structure is labelled once
    calculations = sorted((c for c in chain.called if isinstance(c, orm.CalcJobNode)), key=lambda c: c.pk)
    assert len(calculations) >= 2 and all(c.is_finished_ok for c in calculations[1:])
    finished = first.outputs.labelled.count if "labelled" in first.outputs else 0
    assert 1 <= finished < 3 and calculations[1].inputs.structures.count == 3 - finished
    assert chain.outputs.labelled.count == 3 and not chain.outputs.dropped.get_list()
    assert sorted(geometry_keys(chain.outputs.labelled)) == sorted(geometry_keys(structures))
