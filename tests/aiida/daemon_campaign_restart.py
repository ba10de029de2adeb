"""A campaign whose daemon is stopped mid-run and started again; prints one JSON line with the checks.

Run with ``AIIDA_PATH`` pointing to an empty folder (the test does this):

    python tests/aiida/daemon_campaign_restart.py SPEC.yaml

Makes the embedded profile (``verdi presto --use-zeromq``), launches the campaign with
``lmlp campaign launch``, stops the daemon while the first loop labelling runs, starts it again,
waits for the end, and reports what a user must be able to rely on: the campaign finished, no
DFT calculation ran twice, and every labelled conformation reached the campaign's data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*command: str) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def main(spec: str) -> dict:
    import os

    from aiida_lmlp.campaign.profiles import create_profile

    create_profile("embedded", "restart", Path(os.environ["AIIDA_PATH"]))
    run(BIN / "verdi", "daemon", "start", "1", "--timeout", "60")
    try:
        launched = run(BIN / "lmlp", "campaign", "launch", spec, "--name", "restart-test")
        pk = int(launched.split("LifelongWorkChain<")[1].split(">")[0])
        return {"launched": pk, **follow(pk)}
    finally:
        subprocess.run([str(BIN / "verdi"), "daemon", "stop", "--timeout", "60"], capture_output=True, timeout=120)


def follow(pk: int) -> dict:
    from aiida import load_profile, orm

    load_profile("restart", allow_switch=True)
    campaign = orm.load_node(pk)

    def loop_labelling_running() -> bool:
        query = orm.QueryBuilder().append(orm.WorkChainNode, filters={"id": pk}, tag="c")
        query.append(orm.WorkChainNode, with_incoming="c", edge_filters={"label": {"like": "label_0%"}}, tag="l")
        query.append(orm.CalcJobNode, with_incoming="l", filters={"attributes.process_state": "waiting"})
        return query.count() > 0 or campaign.is_terminated

    wait(loop_labelling_running, 600, "the first loop labelling job")
    run(BIN / "verdi", "daemon", "stop", "--timeout", "60")
    stopped_during = [
        n.pk
        for n in orm.QueryBuilder()
        .append(orm.CalcJobNode, filters={"attributes.process_state": "waiting"})
        .all(flat=True)
    ]
    time.sleep(3)
    run(BIN / "verdi", "daemon", "start", "1", "--timeout", "60")
    wait(lambda: campaign.is_terminated, 900, "the campaign to finish")
    torch_in_workers = workers_with_torch("restart")

    from aiida_lmlp.workflows.screening import geometry_keys

    pyscf = (
        orm.QueryBuilder()
        .append(orm.CalcJobNode, filters={"process_type": "aiida.calculations:lmlp.pyscf"})
        .all(flat=True)
    )
    labelled_keys = [k for n in pyscf if "labelled" in n.outputs for k in geometry_keys(n.outputs.labelled)]
    campaign_keys = {k for d in campaign.outputs.labelled.values() for k in geometry_keys(d)}
    return {
        "finished_ok": campaign.is_finished_ok,
        "exit_status": campaign.exit_status,
        "stop_reason": campaign.outputs.stop_reason.value if "stop_reason" in campaign.outputs else None,
        "stopped_during": len(stopped_during),
        "pyscf_calculations": len(pyscf),
        "distinct_pyscf_inputs": len({n.inputs.structures.pk for n in pyscf}),
        "labelled_by_dft": len(labelled_keys),
        "distinct_labelled": len(set(labelled_keys)),
        "labelled_missing_from_campaign": len(set(labelled_keys) - campaign_keys),
        "versions": len(campaign.outputs.versions) if "versions" in campaign.outputs else 0,
        "daemon_workers_with_torch": torch_in_workers,
    }


def workers_with_torch(profile: str) -> int | None:
    """How many daemon workers of ``profile`` have torch's library loaded (None without /proc).

    The daemon must never import torch (ARCHITECTURE.md): it would cost every worker about a
    second and a few hundred MB. A loaded ``libtorch`` in the worker's memory map shows an
    import anywhere, also a lazy one inside a validator or a work-chain step.
    """
    import psutil

    loaded = 0
    command = f"-p {profile} daemon worker"
    workers = [p for p in psutil.process_iter(["cmdline"]) if command in " ".join(p.info["cmdline"] or [])]
    for worker in workers:
        try:
            maps = Path(f"/proc/{worker.pid}/maps").read_text()
        except OSError:
            return None
        loaded += "libtorch" in maps
    return loaded if workers else None


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
