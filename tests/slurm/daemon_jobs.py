"""Labelling jobs on the SLURM test cluster run by a real daemon; prints one JSON line with what happened.

Run with ``AIIDA_PATH`` pointing to an empty folder and, for ``core.ssh_async``, ``HOME`` set to
the cluster's ``client_home`` (``test_daemon_on_slurm.py`` does both):

    python tests/slurm/daemon_jobs.py CLUSTER_ROOT ACCESS_JSON

Makes an embedded profile (``verdi presto --use-zeromq``: SQLite, aiida-core's ZeroMQ broker)
with the cluster as a computer (the transport ACCESS_JSON names, with ``core.slurm``), starts a
daemon with 2 workers and
runs two scenarios, one after the other:

``queued``
    20 ``lmlp.pyscf`` jobs submitted at once: they wait in SLURM's queue (2 cores) while the
    two workers poll them.
``restart``
    4 jobs (each sleeps 8 s in its job script before labelling); the daemon is stopped once all
    are submitted and SLURM has some running and some queued, stays stopped until at least one
    of them has ended on the cluster, and is started again.

Caching is off in this profile: every calculation must reach the cluster. The test compares
the calculations with SLURM's record of finished jobs (``jobcomp.txt``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from aiida_lmlp.campaign.profiles import create_profile, verdi  # noqa: E402
from tests.slurm.cluster import SlurmCluster  # noqa: E402
from tests.slurm.computer import ClusterAccess, slurm_code, slurm_computer  # noqa: E402

PROFILE = "slurm-daemon"
WORKERS = 2
LABEL_PARAMETERS = {"xc": "HF", "basis": "sto-3g", "threads": 1}


def wait(condition, timeout: float, what: str, every: float = 0.5) -> None:
    """Poll ``condition`` until it is true; raise naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def main(root: str, access: str) -> dict:
    cluster = SlurmCluster(Path(root))  # the running cluster's files: its queue and its record of jobs
    create_profile("embedded", PROFILE, Path(os.environ["AIIDA_PATH"]))
    verdi("config", "unset", "caching.enabled_for", profile=PROFILE)
    from aiida import load_profile

    load_profile(PROFILE, allow_switch=True)
    computer = slurm_computer(ClusterAccess.from_json(access))
    code = slurm_code(computer, "lmlp.pyscf")
    frames = structures(24)
    verdi("daemon", "start", str(WORKERS), "--timeout", "60", profile=PROFILE)
    try:
        return {
            "transport": computer.transport_type,
            "queued": queued(cluster, code, frames[:20]),
            "restart": restart(cluster, code, frames[20:]),
        }
    finally:
        verdi("daemon", "stop", "--timeout", "60", profile=PROFILE)


def structures(count: int) -> list:
    """``count`` different Cl⁻ + CH3Cl geometries of the SN2 pool, one dataset each (labels dropped)."""
    from ase.io import read

    from aiida_lmlp.data import LmlpDatasetData
    from tests.conftest import SN2

    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:count]
    assert len(frames) == count, f"the SN2 pool has only {len(frames)} Cl+CH3Cl geometries"
    datasets = []
    for atoms in frames:
        atoms.calc = None
        datasets.append(LmlpDatasetData.from_atoms([atoms]).store())
    return datasets


def submit_all(code, datasets, options: dict) -> list:
    from aiida import orm
    from aiida.engine import submit

    from aiida_lmlp.calculations import PyscfCalculation

    return [
        submit(
            PyscfCalculation,
            code=code,
            structures=dataset,
            parameters=orm.Dict(LABEL_PARAMETERS),
            metadata={"options": {"max_wallclock_seconds": 600, **options}},
        )
        for dataset in datasets
    ]


def ours(cluster: SlurmCluster, nodes: list) -> list[dict]:
    """The jobs in SLURM's queue that belong to ``nodes`` (by job id)."""
    ids = {n.get_job_id() for n in nodes if n.get_job_id()}
    return [job for job in cluster.jobs() if job["id"] in ids]


def summary(nodes: list) -> list[dict]:
    """What the test checks of each calculation."""
    from aiida.common.links import LinkType

    rows = []
    for node in nodes:
        created = node.base.links.get_outgoing(link_type=LinkType.CREATE).all_link_labels()
        rows.append(
            {
                "pk": node.pk,
                "job_id": node.get_job_id(),
                "workdir": node.get_remote_workdir(),
                "terminated": node.is_terminated,
                "exit_status": node.exit_status,
                "retrieved_links": created.count("retrieved"),
                "remote_folder_links": created.count("remote_folder"),
                "labelled": node.outputs.labelled.count if "labelled" in node.outputs else 0,
            }
        )
    return rows


def queued(cluster: SlurmCluster, code, datasets) -> dict:
    start = time.monotonic()
    nodes = submit_all(code, datasets, {})
    most_pending = 0

    def done() -> bool:
        nonlocal most_pending
        most_pending = max(most_pending, sum(job["state"] == "PENDING" for job in ours(cluster, nodes)))
        return all(node.is_terminated for node in nodes)

    wait(done, 600, "the 20 labelling jobs")
    return {"seconds": time.monotonic() - start, "most_pending": most_pending, "calculations": summary(nodes)}


def restart(cluster: SlurmCluster, code, datasets) -> dict:
    nodes = submit_all(code, datasets, {"prepend_text": "sleep 8"})

    def running_and_queued() -> bool:
        states = [job["state"] for job in ours(cluster, nodes)]
        return len(states) == len(nodes) and "RUNNING" in states and "PENDING" in states

    wait(running_and_queued, 300, "all jobs submitted, some running and some queued", every=0.2)
    at_stop = [job["state"] for job in ours(cluster, nodes)]  # as the stop is asked for: it may take seconds
    verdi("daemon", "stop", "--timeout", "60", profile=PROFILE)
    ended = {r["JobId"] for r in cluster.finished_jobs()}
    wait(lambda: any(n.get_job_id() in {r["JobId"] for r in cluster.finished_jobs()} - ended for n in nodes), 120,
         "a job to end on the cluster while the daemon is stopped")  # fmt: skip
    while_stopped = [n.get_job_id() for n in nodes if n.get_job_id() in {r["JobId"] for r in cluster.finished_jobs()}]
    terminated_while_stopped = sum(n.is_terminated for n in nodes)
    verdi("daemon", "start", str(WORKERS), "--timeout", "60", profile=PROFILE)
    wait(lambda: all(n.is_terminated for n in nodes), 600, "the jobs after the daemon's restart")
    return {
        "at_stop": at_stop,
        "ended_while_stopped": while_stopped,
        "terminated_while_stopped": terminated_while_stopped,
        "calculations": summary(nodes),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
