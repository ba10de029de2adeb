"""The quickstart campaign through SLURM over SSH against ``core.direct`` on this machine, timed in alternation.

    python benchmarks/quickstart_slurm.py [--rounds 2] [--variants direct slurm-ssh slurm-ssh_async]
    python benchmarks/quickstart_slurm.py --campaign small     # the tests' small campaign instead

Needs root and the Debian packages ``slurm-wlm``, ``munge`` and ``openssh-server``: the script
starts the one-node test cluster of ``tests/slurm/cluster.py`` (2 CPUs, ``munged``,
``slurmctld``, ``slurmd``, an ``sshd`` on a port of 127.0.0.1) and stops it at the end.

One scratch profile (SQLite, caching off: every run computes everything) with three computers:

``direct``
    ``core.local`` + ``core.direct``, configured as ``lmlp quickstart`` configures ``localhost``
    (no login shell, scheduler polled every 0.1 s);
``slurm-ssh``
    ``core.ssh`` (paramiko) + ``core.slurm``, ``squeue`` polled at most every ``--slurm-poll`` s
    (1 s; aiida-core's default for SSH computers is 10 s), work directory on the cluster side;
``slurm-ssh_async``
    the same with ``core.ssh_async`` (asyncssh; ``HOME`` points to a folder whose ``.ssh``
    reaches the cluster, as a user's ``~/.ssh/config`` entry would).

The campaign (``workflows/quickstart.yaml`` with its codes swapped, or ``--campaign small``: the
``tests/slurm`` campaign, 6 structures, 2 members, 1 iteration) runs in this process
(``run_get_node``) once per variant per round, the variants alternated in every round, so that
the machine's noise spreads over all of them. The same inputs every time: the same jobs.
Results: ``benchmarks/results/quickstart_slurm_<campaign>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from timing import cpu_model  # noqa: E402

VARIANTS = ("direct", "slurm-ssh", "slurm-ssh_async")


def machine() -> dict:
    """CPU model, cores and what ``lscpu`` says about them."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "lscpu": {k.strip(): fields[k].strip() for k in ("CPU(s)", "Model name", "Thread(s) per core") if k in fields},
        "python": platform.python_version(),
    }


def computers(cluster, poll: float) -> dict:
    """The three computers with an ``lmlp`` code each: ``{variant: code}``."""
    from aiida import orm

    from aiida_lmlp.campaign.localhost import tune_localhost
    from tests.slurm.computer import ClusterAccess, slurm_code, slurm_computer

    localhost = orm.load_computer("localhost")
    tune_localhost(localhost)
    codes = {"direct": orm.load_code("lmlp@localhost")}
    for variant, transport in (("slurm-ssh", "core.ssh"), ("slurm-ssh_async", "core.ssh_async")):
        access = ClusterAccess.of(cluster, f"aiida-{variant}", transport=transport)
        computer = slurm_computer(access, label=variant)
        computer.set_minimum_job_poll_interval(poll)
        codes[variant] = slurm_code(computer, "lmlp.train")
    return codes


def campaign_inputs(kind: str, code, name: str) -> dict:
    """The campaign's inputs with every job on ``code``'s computer."""
    from aiida import orm

    if kind == "small":
        from tests.aiida.campaign_inputs import campaign_inputs as small
        from tests.aiida.campaign_inputs import initial_structures

        return small(code, initial_structures(count=6), campaign=orm.Str(name), max_iterations=orm.Int(1))
    from aiida_lmlp.campaign.spec import load_spec

    spec = load_spec(ROOT / "workflows" / "quickstart.yaml")
    spec.codes = {"lmlp": code.full_label}
    return spec.build_inputs(campaign=name)


def run_once(kind: str, variant: str, code, index: int) -> dict:
    """One campaign on ``variant``: wall time, calculation jobs and how it ended."""
    from aiida import orm
    from aiida.manage import get_manager

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    inputs = campaign_inputs(kind, code, f"bench-{variant}-{index}")
    # the process-wide runner, made without a broker: core.ssh_async runs its blocking calls on the loop
    # of get_manager().get_runner(), which would otherwise be made with the (absent) ZeroMQ broker's
    # communicator, while aiida.engine.run_get_node runs the process on a runner of its own
    runner = get_manager().get_runner(communicator=None)
    start = time.perf_counter()
    results, node = runner.run_get_node(LifelongWorkChain, **inputs)
    wall = time.perf_counter() - start
    jobs = sum(isinstance(n, orm.CalcJobNode) for n in node.called_descendants)
    return {
        "variant": variant,
        "wall_s": round(wall, 2),
        "calcjobs": jobs,
        "finished_ok": node.is_finished_ok,
        "versions": len(results.get("versions", {})),
        "stop_reason": results["stop_reason"].value if "stop_reason" in results else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", choices=["quickstart", "small"], default="quickstart")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--slurm-poll", type=float, default=1.0, help="minimum squeue poll interval (s)")
    arguments = parser.parse_args()

    from tests.slurm.cluster import SlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot start the SLURM cluster: {reason}")
    scratch = Path(tempfile.mkdtemp(prefix="lmlp-bench-slurm-"))
    os.environ["AIIDA_PATH"] = str(scratch / "aiida")
    cluster = SlurmCluster.start(scratch / "cluster")
    os.environ["HOME"] = str(cluster.client_home)  # core.ssh_async reads $HOME/.ssh
    try:
        from aiida import load_profile

        from aiida_lmlp.campaign.profiles import create_profile, verdi

        create_profile("embedded", "bench", scratch)
        verdi("config", "unset", "caching.enabled_for", profile="bench")
        load_profile("bench", allow_switch=True)
        codes = computers(cluster, arguments.slurm_poll)
        runs = []
        for index in range(arguments.rounds):
            order = arguments.variants if index % 2 == 0 else arguments.variants[::-1]
            for variant in order:
                run = {"round": index, **run_once(arguments.campaign, variant, codes[variant], index)}
                print(json.dumps(run), flush=True)
                runs.append(run)
    finally:
        cluster.stop()
    medians = {v: statistics.median(r["wall_s"] for r in runs if r["variant"] == v) for v in arguments.variants}
    command = (
        f"python benchmarks/quickstart_slurm.py --campaign {arguments.campaign} --rounds {arguments.rounds} "
        f"--variants {' '.join(arguments.variants)} --slurm-poll {arguments.slurm_poll:g}"
    )
    out = RESULTS / f"quickstart_slurm_{arguments.campaign}.json"
    out.write_text(
        json.dumps(
            {
                "command": command,
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "slurm_node": {"cpus": 2, "memory_mb": cluster.memory_mb},
                "poll_interval_s": {"direct": 0.1, "slurm": arguments.slurm_poll},
                "median_wall_s": medians,
                "runs": runs,
            },
            indent=1,
        )
    )
    print(json.dumps(medians))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
