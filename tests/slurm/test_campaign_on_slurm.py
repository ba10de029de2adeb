"""The quickstart campaign with every job on the SLURM cluster, reached over SSH (``core.ssh`` + ``core.slurm``).

The computer's work directory is on the cluster side: inputs reach the jobs and results come
back only through the SSH transport, as from a workstation to an HPC cluster.
"""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp import registry

from ..aiida.campaign_inputs import campaign_inputs, initial_structures

pytestmark = pytest.mark.slurm

CAMPAIGN = "slurm-quickstart"


@pytest.fixture(scope="module")
def campaign(cluster_code):
    """The small campaign of ``tests/aiida`` (2 members, 1 iteration: 2 versions) with every job on the cluster."""
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    inputs = campaign_inputs(
        cluster_code("lmlp.train"), initial_structures(count=6), campaign=orm.Str(CAMPAIGN), max_iterations=orm.Int(1)
    )
    results, node = run_get_node(LifelongWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    return results, node


def _calculations(node) -> list[orm.CalcJobNode]:
    query = orm.QueryBuilder().append(type(node), filters={"id": node.pk}, tag="campaign")
    query.append(orm.ProcessNode, with_incoming="campaign", tag="child")
    query.append(orm.CalcJobNode, with_incoming="child", project="*")
    inner = {n.pk: n for (n,) in query.all()}
    direct = orm.QueryBuilder().append(type(node), filters={"id": node.pk}, tag="campaign")
    direct.append(orm.CalcJobNode, with_incoming="campaign", project="*")
    inner.update({n.pk: n for (n,) in direct.all()})
    return sorted(inner.values(), key=lambda n: n.pk)


def test_the_campaign_runs_through_slurm_over_ssh_and_registers_its_versions(campaign, cluster_computer, slurm_cluster):
    results, node = campaign
    versions = registry.list_versions(CAMPAIGN)
    assert [v["version"] for v in versions] == list(range(len(results["versions"]))) and len(versions) >= 2
    assert results["potential"].uuid == versions[-1]["uuid"]
    for older, newer in zip(versions, versions[1:]):
        assert newer["parent"] == older["uuid"] and newer["epochs"] == older["epochs"] + 10

    # every job of the campaign ran on the cluster: a SLURM job of its own, ended COMPLETED
    calculations = _calculations(node)
    kinds = {c.process_type.rsplit(":", 1)[1] for c in calculations}
    assert {"lmlp.pyscf", "lmlp.train", "lmlp.explore"} <= kinds
    finished = {record["JobId"]: record for record in slurm_cluster.finished_jobs()}
    for calculation in calculations:
        assert calculation.computer.pk == cluster_computer.pk
        assert calculation.is_finished_ok, calculation.exit_message
        job = finished[calculation.get_job_id()]
        assert job["JobState"] == "COMPLETED" and job["Name"] == f"aiida-{calculation.pk}"
        assert job["WorkDir"] == calculation.get_remote_workdir()
        assert "#SBATCH --job-name=" in calculation.base.repository.get_object_content("_aiidasubmit.sh")
    # one SLURM job per calculation, none submitted twice
    assert len({c.get_job_id() for c in calculations}) == len(calculations)


def test_the_latest_version_has_lineage_to_the_labelling_jobs_on_the_cluster(campaign, cluster_computer):
    results, node = campaign
    lineage = registry.lineage(results["potential"])
    dft = lineage["dft_calculations"]
    assert dft
    labelled_total = sum(d.count for d in results["labelled"].values())
    assert sum(row["labelled"] for row in dft) == labelled_total
    for row in dft:
        calculation = orm.load_node(row["pk"])
        assert calculation.process_type == "aiida.calculations:lmlp.pyscf"
        assert calculation.computer.pk == cluster_computer.pk and calculation.get_job_id()
