"""A real one-node SLURM cluster on this machine, reached over SSH: started and stopped by the tests.

``munged``, ``slurmctld`` and ``slurmd`` (Debian's ``munge`` and ``slurm-wlm``) and an ``sshd``
(``openssh-server``) on a port of 127.0.0.1, each with its own configuration, key, state, spool
and log files in one folder; nothing of the machine's own configuration is read or changed
(``/etc/slurm``, ``/etc/munge``, ``/etc/ssh`` and the system's daemons are left alone). The SSH
sessions get ``SLURM_CONF`` from the sshd (``SetEnv``), so ``sbatch`` and ``squeue`` run over
SSH reach this cluster, as on a login node.

The node has 2 CPUs (``SlurmdParameters=config_overrides``: whatever the machine has) and
consumable cores and memory, so two one-core jobs run at once and a third waits in the queue.
Finished jobs are written to ``jobcomp.txt`` (``jobcomp/filetxt``): one line per job with its
id, name, state and times, which the tests read to count submissions. There is no accounting
database (``sacct`` answers with an error; AiiDA's ``core.slurm`` then reads the job's stderr).

Needs root (the daemons switch to the job's user) and the Debian packages ``slurm-wlm``,
``munge`` and ``openssh-server``; :func:`unavailable_reason` says what is missing. Run as a
script to start a cluster by hand (``python -m tests.slurm.cluster``) and stop it with Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SSH_ALIAS", "ClusterError", "SlurmCluster", "unavailable_reason"]

SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "sshd")
PROGRAMS += ("ssh-keygen",)
PACKAGES = "slurm-wlm munge openssh-server"
NODE = "lmlp-node"
SSH_ALIAS = "lmlp-test-cluster"
PARTITION = "debug"
CPUS = 2


class ClusterError(RuntimeError):
    """A daemon of the cluster did not start or a cluster command failed; the message quotes its log."""


def _which(program: str) -> str | None:
    return shutil.which(program, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def unavailable_reason() -> str | None:
    """Why the cluster cannot be started here (``None`` if it can): not root, or a program is missing."""
    missing = [p for p in PROGRAMS if _which(p) is None]
    if missing:
        return f"{', '.join(missing)} not found: install the Debian packages {PACKAGES} (apt-get install {PACKAGES})"
    if os.geteuid() != 0:
        return "the SLURM daemons (slurmd, slurmctld, munged, sshd) must be started as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    """The node's memory for SLURM: what ``slurmd -C`` reports, at most 8 GB (the node is shared with the tests)."""
    found = re.search(r"RealMemory=(\d+)", subprocess.run([_which("slurmd"), "-C"], **_CAPTURE).stdout)
    return min(int(found.group(1)) if found else 4096, 8192)


_CAPTURE = {"capture_output": True, "text": True, "timeout": 60}


@dataclass
class SlurmCluster:
    """The daemons, files and ports of one running cluster (see the module's docstring)."""

    root: Path
    ssh_port: int = 0
    slurmctld_port: int = 0
    slurmd_port: int = 0
    memory_mb: int = 0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- paths --------------------------------------------------------------------------------------

    @property
    def conf(self) -> Path:
        """The ``slurm.conf``."""
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        """The socket of this cluster's ``munged``."""
        return self.root / "run" / "munge.socket"

    @property
    def ssh_key(self) -> Path:
        """The private key (ed25519, no passphrase) that the sshd accepts for this user."""
        return self.root / "etc" / "id_ed25519"

    @property
    def jobcomp(self) -> Path:
        """One line per finished job (``jobcomp/filetxt``)."""
        return self.root / "log" / "jobcomp.txt"

    @property
    def remote(self) -> Path:
        """A folder for what jobs write on the cluster side (AiiDA's work directory goes under it)."""
        return self.root / "remote"

    @property
    def client_home(self) -> Path:
        """A home folder whose ``~/.ssh`` reaches the cluster as ``ssh {SSH_ALIAS}`` (config entry, known host key).

        For clients that read only OpenSSH's files, as aiida-core's ``core.ssh_async`` does: run them
        with ``HOME`` set to this folder (the user's own ``~/.ssh`` is never touched).
        """
        return self.root / "client-home"

    @property
    def username(self) -> str:
        """The user that logs in over SSH and runs the jobs (the user running the tests)."""
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name

    # -- commands -----------------------------------------------------------------------------------

    @property
    def environment(self) -> dict[str, str]:
        """The environment of a shell on this cluster's login node (``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": f"{os.environ.get('PATH', '')}:{SBIN}"}

    def command(self, *arguments: str, check: bool = True) -> str:
        """Run a SLURM client command (``squeue``, ``scancel``, ...) against this cluster; its stdout."""
        result = subprocess.run([str(a) for a in arguments], env=self.environment, **_CAPTURE)
        if check and result.returncode:
            raise ClusterError(f"{' '.join(map(str, arguments))} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        """Run ``command`` on the login node through the sshd, as AiiDA's transport will."""
        return subprocess.run(
            [
                _which("ssh") or "ssh", "-p", str(self.ssh_port), "-i", str(self.ssh_key),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={self.root / 'etc' / 'known_hosts'}", "-o", "LogLevel=ERROR",
                f"{self.username}@127.0.0.1", command,
            ],
            **_CAPTURE,
        )  # fmt: skip

    def jobs(self) -> list[dict[str, str]]:
        """The jobs ``squeue`` knows (queued, running and recently finished): id, name and state."""
        out = self.command("squeue", "--noheader", "--states=all", "--format=%i|%j|%T")
        return [dict(zip(("id", "name", "state"), line.split("|"))) for line in out.splitlines() if line.strip()]

    def finished_jobs(self) -> list[dict[str, str]]:
        """Every job that ended, from ``jobcomp.txt``: ``JobId``, ``Name``, ``JobState``, ... as strings."""
        if not self.jobcomp.exists():
            return []
        records = []
        for line in self.jobcomp.read_text().splitlines():
            records.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return records

    # -- start and stop -----------------------------------------------------------------------------

    @classmethod
    def start(cls, root: str | os.PathLike) -> SlurmCluster:
        """Write the configuration under ``root`` (an empty folder) and start the daemons; stops them on failure."""
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        cluster = cls(Path(root), _free_port(), _free_port(), _free_port(), _memory_mb())
        try:
            cluster._write_files()
            cluster._start_munge()
            cluster._start_slurm()
            cluster._start_sshd()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop every daemon this cluster started (SIGTERM, then SIGKILL after 10 s) and the jobs still running."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.command("scancel", "--full", f"--partition={PARTITION}", check=False)
        for name in ("sshd", "slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def _write_files(self) -> None:
        for folder in ("etc", "run", "log", "state", "spool", "remote"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the munged refuses a socket folder that others may write to; 0755 is fine
        key = self.root / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        hostname = socket.gethostname().split(".")[0]
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=lmlp-test",
                    f"SlurmctldHost={hostname}(127.0.0.1)",
                    f"SlurmctldPort={self.slurmctld_port}",
                    f"SlurmdPort={self.slurmd_port}",
                    f"SlurmUser={self.username}",
                    f"SlurmdUser={self.username}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SwitchType=switch/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "DefMemPerCPU=1024",
                    "SchedulerType=sched/builtin",
                    "SlurmdParameters=config_overrides",
                    "ReturnToService=2",
                    "MinJobAge=300",
                    "KillWait=5",
                    "InactiveLimit=0",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=60",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.jobcomp}",
                    f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={hostname} CPUs={CPUS} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        etc = self.root / "etc"
        for name, kind in (("ssh_host_ed25519_key", "ed25519"), ("id_ed25519", "ed25519")):
            subprocess.run([_which("ssh-keygen"), "-q", "-t", kind, "-N", "", "-f", str(etc / name)], check=True)
        (etc / "authorized_keys").write_text((etc / "id_ed25519.pub").read_text())
        host_key = (etc / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        dot_ssh = self.client_home / ".ssh"
        dot_ssh.mkdir(parents=True, mode=0o700)
        (dot_ssh / "known_hosts").write_text(f"[127.0.0.1]:{self.ssh_port} {' '.join(host_key)}\n")
        (dot_ssh / "config").write_text(
            f"Host {SSH_ALIAS}\n  HostName 127.0.0.1\n  Port {self.ssh_port}\n  User {self.username}\n"
            f"  IdentityFile {self.ssh_key}\n  IdentitiesOnly yes\n"
        )
        sftp = next(
            (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server") if Path(p).exists()),
            "internal-sftp",
        )
        (etc / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.ssh_port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {etc / 'ssh_host_ed25519_key'}",
                    f"PidFile {self.root / 'run' / 'sshd.pid'}",
                    f"AuthorizedKeysFile {etc / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",  # the key lives in a temporary folder under /tmp (world-writable)
                    "MaxSessions 100",
                    "MaxStartups 100:30:200",
                    f"SetEnv SLURM_CONF={self.conf}",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            )
        )

    def _daemon(self, name: str, arguments: list[str], ready, what: str, timeout: float = 30) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")  # noqa: SIM115 (kept open by the daemon)
        self.processes[name] = subprocess.Popen(
            [_which(name), *arguments], stdout=log, stderr=subprocess.STDOUT, env=self.environment,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not ready():
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"{name} did not start ({what}):\n{self._logs(name)}")
            time.sleep(0.2)

    def _logs(self, name: str) -> str:
        text = []
        for path in sorted((self.root / "log").glob(f"{name}*")):
            text.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(text)

    def _start_munge(self) -> None:
        def ready() -> bool:
            if not self.munge_socket.exists():
                return False
            credential = subprocess.run([_which("munge"), "-n", "-S", str(self.munge_socket)], **_CAPTURE)
            return credential.returncode == 0

        self._daemon(
            "munged",
            [
                "--foreground", "--force", f"--socket={self.munge_socket}",
                f"--key-file={self.root / 'etc' / 'munge.key'}", f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}", f"--seed-file={self.root / 'state' / 'munged.seed'}",
            ],
            ready,
            "no credential from its socket",
        )  # fmt: skip

    def _start_slurm(self) -> None:
        def controller_up() -> bool:
            return "is UP" in self.command("scontrol", "ping", check=False)

        def node_idle() -> bool:
            states = self.command("sinfo", "--noheader", "--format=%T", check=False).split()
            return bool(states) and all(s == "idle" for s in states)

        self._daemon("slurmctld", ["-D", "-c", "-f", str(self.conf)], controller_up, "scontrol ping")
        self._daemon("slurmd", ["-D", "-N", NODE, "-f", str(self.conf)], node_idle, "node idle in sinfo")

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # the privilege separation folder sshd requires

        def reachable() -> bool:
            return self.ssh("true").returncode == 0

        sshd = _which("sshd")
        assert sshd is not None
        log = self.root / "log" / "sshd.log"
        self._daemon("sshd", ["-D", "-f", str(self.root / "etc" / "sshd_config"), "-E", str(log)], reachable, "ssh")


if __name__ == "__main__":
    import tempfile

    cluster = SlurmCluster.start(tempfile.mkdtemp(prefix="lmlp-slurm-"))
    print(f"SLURM_CONF={cluster.conf}  ssh -p {cluster.ssh_port} -i {cluster.ssh_key} 127.0.0.1")
    try:
        signal.pause()
    finally:
        cluster.stop()
