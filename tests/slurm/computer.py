"""The test cluster as an AiiDA computer: ``core.ssh`` to the cluster's sshd, ``core.slurm``, ``lmlp`` codes.

Used by the session fixtures (``conftest.py``) and by the daemon scripts, which make their own
profile and get the cluster's coordinates as JSON (:meth:`ClusterAccess.to_json`).

The computer's work directory is a folder on the cluster side that only the SSH transport
writes to: nothing assumes that the daemon and the jobs share a filesystem. Both of aiida-core's
SSH transports are used: ``core.ssh`` (paramiko) takes the port and the key as configuration
(the tests in this process use it); ``core.ssh_async`` (asyncssh, the one aiida-core recommends)
reads them from a ``Host`` entry of ``~/.ssh/config`` and needs the host key in
``~/.ssh/known_hosts``, so its users run with ``HOME`` set to the cluster's
:attr:`~tests.slurm.cluster.SlurmCluster.client_home` (the daemon tests do).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .cluster import SSH_ALIAS

__all__ = ["LMLP_EXECUTABLE", "POLL_INTERVAL", "ClusterAccess", "slurm_code", "slurm_computer"]

LMLP_EXECUTABLE = Path(sys.executable).with_name("lmlp")
POLL_INTERVAL = 1.0
"""Seconds between ``squeue`` polls of the cluster (aiida-core's default for SSH computers is 10)."""


@dataclass
class ClusterAccess:
    """How AiiDA reaches the cluster: transport, SSH port, user and key, and the work directory on the cluster side."""

    port: int
    username: str
    key_filename: str
    workdir: str
    transport: str = "core.ssh"
    host: str = SSH_ALIAS  # the ``Host`` of ``client_home/.ssh/config`` (``core.ssh_async``)

    @classmethod
    def of(cls, cluster, name: str, transport: str = "core.ssh") -> ClusterAccess:
        """For the running ``cluster`` (:class:`~tests.slurm.cluster.SlurmCluster`), work directory ``name``."""
        return cls(cluster.ssh_port, cluster.username, str(cluster.ssh_key), str(cluster.remote / name), transport)

    def to_json(self) -> str:
        """For a script's command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ClusterAccess:
        """From :meth:`to_json`."""
        return cls(**json.loads(text))


def slurm_computer(access: ClusterAccess, label: str = "slurm-ssh"):
    """The cluster as a stored, configured AiiDA computer (loaded if ``label`` exists)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_computer(label)
    except NotExistent:
        pass
    computer = orm.Computer(
        label=label,
        hostname="127.0.0.1",
        description="one-node SLURM cluster of the tests, over SSH",
        transport_type=access.transport,
        scheduler_type="core.slurm",
        workdir=access.workdir,
    ).store()
    computer.set_minimum_job_poll_interval(POLL_INTERVAL)
    computer.set_default_mpiprocs_per_machine(1)
    if access.transport == "core.ssh_async":
        # asyncssh reads the port, user, key and host key from $HOME/.ssh (see the module's docstring)
        computer.configure(host=access.host, safe_interval=0.0, use_login_shell=False)
        return computer
    computer.configure(
        username=access.username,
        port=access.port,
        key_filename=access.key_filename,
        look_for_keys=False,
        allow_agent=False,
        load_system_host_keys=False,
        key_policy="AutoAddPolicy",  # the fixture's host key is new every session
        timeout=30,
        safe_interval=0.0,  # one sshd on this machine: no need to space connections out
        use_login_shell=False,
    )
    return computer


def slurm_code(computer, plugin: str):
    """The ``lmlp`` executable of this environment as an InstalledCode on ``computer`` for ``plugin``."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    label = f"lmlp-{plugin.replace('.', '-')}"
    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        return orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=str(LMLP_EXECUTABLE),
            default_calc_job_plugin=plugin,
        ).store()
