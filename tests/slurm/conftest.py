"""Fixtures of the tests marked ``slurm``: a real one-node SLURM cluster reached over SSH, and its AiiDA computer.

The cluster (``cluster.py``) is started once per test session and stopped at its end. Where
its daemons cannot be started (not root, or the Debian packages missing) the tests skip and
say why; on the project's machines and in CI (``.ci/run`` installs the packages) they run.
"""

from __future__ import annotations

import pytest

from .cluster import ClusterError, SlurmCluster, unavailable_reason
from .computer import ClusterAccess, slurm_code, slurm_computer


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The running cluster (:class:`~tests.slurm.cluster.SlurmCluster`); its daemons stop when the session ends."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM cluster for the tests: {reason}")
    try:
        cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm-cluster"))
    except ClusterError as error:
        pytest.fail(f"the SLURM test cluster did not start: {error}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster_computer(aiida_profile, slurm_cluster):
    """The cluster in the test profile: ``core.ssh`` + ``core.slurm``, work directory on the cluster side."""
    return slurm_computer(ClusterAccess.of(slurm_cluster, "aiida-work"))


@pytest.fixture(scope="session")
def cluster_code(cluster_computer):
    """Factory: the ``lmlp`` executable as an InstalledCode on the cluster for a calculation plugin."""
    return lambda plugin: slurm_code(cluster_computer, plugin)
