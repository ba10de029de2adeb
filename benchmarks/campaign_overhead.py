"""Engine overhead of a campaign, and 50 labelling jobs at once, on the embedded and the production profile.

    python benchmarks/campaign_overhead.py overhead [--profiles embedded production]
    python benchmarks/campaign_overhead.py fifty [--profiles embedded production] [--workers 2]
    python benchmarks/campaign_overhead.py phases RESULTS.json   # per-phase figures of a recorded run
    python benchmarks/campaign_overhead.py overhead --profiles embedded --worker-profile worker.speedscope
    python benchmarks/campaign_overhead.py worker worker.speedscope  # where the daemon worker's time went

``overhead``: runs the quickstart campaign (workflows/quickstart.yaml) through the daemon on a
fresh profile. Every calculation job records the wall-clock time at which its command starts
and ends (``prepend_text``/``append_text``, retrieved with the job); the engine overhead is the
campaign's wall time minus the time covered by running jobs: everything AiiDA does around the
jobs (submission, polling, upload, retrieval, parsing, calcfunctions, work-chain steps). It also
reports the process-level figure: wall time minus the time covered by calculation processes
(jobs from creation to end, and calcfunctions), i.e. what the work chains and the daemon add
between calculations.
Targets (issue 5): ≤ 10 % of the campaign and ≤ 2 s per iteration on the embedded profile.

``fifty``: submits 50 ``lmlp.label`` work chains (one Cl⁻ + CH3Cl geometry each, HF/STO-3G) at
once to ``--workers`` daemon workers and checks that all finish with their labels (no loss).

``--warm``: before the campaign, one ``lmlp.label`` of its first structure runs through the
daemon, so that the campaign meets a worker that has run a process before (as on a cluster,
where the daemon runs for days); without it the campaign is the fresh worker's first process,
as in ``lmlp quickstart``.

``--worker-profile FILE``: samples the daemon worker with py-spy (``pip install py-spy``; every
sample, idle ones included, 200 per second) during the campaign; ``worker FILE`` then sums the
worker's busy seconds by what it was doing (:data:`WORKER_ACTIVITIES`).

Results go to ``benchmarks/results/campaign_overhead_*.json`` / ``labelling_fifty_*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiida_lmlp.campaign.profiles import create_profile, delete_profile, verdi

sys.path.insert(0, str(Path(__file__).parent))
from timing import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAMPS = ("_lmlp_job_start", "_lmlp_job_end")
WORK_CHAINS = ("LifelongWorkChain", "LabelWorkChain", "TrainEnsembleWorkChain")

#: What a daemon worker's busy samples are counted as: (name, frame pattern). A sample counts
#: for every activity whose pattern occurs in its stack (``file:function``), so they overlap. A
#: tuple of patterns must match consecutive frames (a caller and the function it calls).
WORKER_ACTIVITIES = (
    ("scheduler polls (task_update_job)", "tasks.py:task_update_job"),
    ("  blocked on transport subprocesses (ps, ...)", "selectors.py:_PollLikeSelector.select"),
    ("SQLite/SQL commits", "default.py:DefaultDialect.do_commit"),
    ("process checkpoints: saving (YAML)", "persistence.py:AiiDAPersister.save_checkpoint"),
    ("  inputs encoded (YAML; by aiida-core at every checkpoint)", "process.py:Process.encode_input_args"),
    ("process checkpoints: loading (YAML)", "load_instance_state"),
    ("  inputs decoded (and their nodes loaded)", "decode_input_args"),
    ("creating processes (instantiate_process)", "utils.py:instantiate_process"),
    ("  link validation (validate_incoming)", "validate_incoming"),
    ("    of which cycle queries", ("links.py:NodeLinks.validate_incoming", "querybuilder.py:QueryBuilder.count")),
    ("work-chain steps (_do_step)", "workchain.py:WorkChain._do_step"),
    ("uploads (task_upload_job)", "tasks.py:task_upload_job"),
    ("retrievals (task_retrieve_job)", "tasks.py:task_retrieve_job"),
    ("parsers (Parser.parse)", "base.py:LmlpParser.parse"),
    ("calcfunctions", "engine/processes/functions.py:"),
    ("imports", "<frozen importlib._bootstrap>:_find_and_load"),
    ("torch imported", "torch/__init__.py:<module>"),
)


def _occurs(pattern: str | tuple[str, ...], stack: list[str]) -> bool:
    """Whether ``pattern`` occurs in one frame of ``stack`` (a tuple: in consecutive frames, root first)."""
    if isinstance(pattern, str):
        return any(pattern in frame for frame in stack)
    return any(
        all(part in frame for part, frame in zip(pattern, stack[k : k + len(pattern)]))
        for k in range(len(stack) - len(pattern) + 1)
    )


def _machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def _timestamped(options: dict) -> dict:
    options = dict(options)
    options["prepend_text"] = (options.get("prepend_text", "") + f"\ndate +%s.%N > {STAMPS[0]}").strip()
    options["append_text"] = (options.get("append_text", "") + f"\ndate +%s.%N > {STAMPS[1]}").strip()
    options["additional_retrieve_list"] = list(STAMPS)
    return options


def _job_phases(root) -> dict:
    """Mean seconds per job before its command starts (upload, submit) and after it ends (poll, retrieve, parse)."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.tools.graph.graph_traversers import traverse_graph

    pks = traverse_graph([root.pk], get_links=False, links_forward=[LinkType.CALL_CALC, LinkType.CALL_WORK])["nodes"]
    before, after = [], []
    for pk in pks:
        node = orm.load_node(pk)
        if not isinstance(node, orm.CalcJobNode) or "retrieved" not in node.outputs:
            continue
        repository = node.outputs.retrieved.base.repository
        if not all(s in repository.list_object_names() for s in STAMPS):
            continue
        start, end = (float(repository.get_object_content(s).strip()) for s in STAMPS)
        before.append(start - node.ctime.timestamp())
        after.append(node.outputs.retrieved.ctime.timestamp() - end)
    return {
        "mean_s_from_creation_to_command_start": round(sum(before) / len(before), 2) if before else None,
        "mean_s_from_command_end_to_retrieved": round(sum(after) / len(after), 2) if after else None,
    }


def _job_intervals(root) -> list[tuple[float, float, str]]:
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.tools.graph.graph_traversers import traverse_graph

    pks = traverse_graph([root.pk], get_links=False, links_forward=[LinkType.CALL_CALC, LinkType.CALL_WORK])["nodes"]
    intervals = []
    for pk in pks:
        node = orm.load_node(pk)
        if not isinstance(node, orm.CalcJobNode) or "retrieved" not in node.outputs:
            continue
        names = node.outputs.retrieved.base.repository.list_object_names()
        if all(s in names for s in STAMPS):
            start, end = (float(node.outputs.retrieved.base.repository.get_object_content(s).strip()) for s in STAMPS)
            intervals.append((start, end, node.process_label))
    return sorted(intervals)


def _timeline(root) -> list[dict]:
    """Every process under the campaign: seconds from the campaign's creation to its creation and end.

    For calculation jobs also: remote folder made (upload done), command start and end, files retrieved.
    """
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.tools.graph.graph_traversers import traverse_graph

    t0 = root.ctime.timestamp()
    pks = traverse_graph([root.pk], get_links=False, links_forward=[LinkType.CALL_CALC, LinkType.CALL_WORK])["nodes"]
    rows = []
    for pk in pks:
        node = orm.load_node(pk)
        row = {
            "pk": pk,
            "label": node.process_label,
            "created": node.ctime.timestamp() - t0,
            "ended": node.mtime.timestamp() - t0,
        }
        if isinstance(node, orm.CalcJobNode):
            if "remote_folder" in node.outputs:
                row["uploaded"] = node.outputs.remote_folder.ctime.timestamp() - t0
            if "retrieved" in node.outputs:
                repository = node.outputs.retrieved.base.repository
                row["retrieved"] = node.outputs.retrieved.ctime.timestamp() - t0
                if all(s in repository.list_object_names() for s in STAMPS):
                    row["command_start"], row["command_end"] = (
                        float(repository.get_object_content(s).strip()) - t0 for s in STAMPS
                    )
        rows.append({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    return sorted(rows, key=lambda r: r["created"])


def _calculation_processes(root) -> list[tuple[float, float, str]]:
    """(created, ended, label) of every calculation process (jobs and calcfunctions) under ``root``."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.tools.graph.graph_traversers import traverse_graph

    pks = traverse_graph([root.pk], get_links=False, links_forward=[LinkType.CALL_CALC, LinkType.CALL_WORK])["nodes"]
    nodes = [orm.load_node(pk) for pk in pks]
    return sorted(
        (n.ctime.timestamp(), n.mtime.timestamp(), n.process_label) for n in nodes if isinstance(n, orm.CalculationNode)
    )


def _covered(intervals) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, end, _ in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def by_phase(timeline: list[dict]) -> list[dict]:
    """Overhead per phase of a recorded campaign timeline: the set-up, then each iteration.

    An iteration runs from the creation of its exploration job to the creation of the next one
    (the last to the campaign's end), so it holds exploration, screening, labelling and
    training; the set-up is everything before the first exploration (initial labelling, first
    training, and each daemon worker's one-off imports on its first processes).
    """
    end = max(row["ended"] for row in timeline)
    starts = [row["created"] for row in timeline if row["label"] == "LmlpExploreCalculation"]
    bounds = [0.0, *starts, end]
    calculations = [r for r in timeline if r["label"] not in WORK_CHAINS]
    phases = []
    for index, (low, high) in enumerate(zip(bounds, bounds[1:])):
        inside = [r for r in calculations if low <= r["created"] < high]
        processes = _covered(sorted((r["created"], r["ended"], r["label"]) for r in inside))
        commands = _covered(
            sorted((r["command_start"], r["command_end"], r["label"]) for r in inside if "command_start" in r)
        )
        wall = high - low
        phases.append(
            {
                "phase": "set-up" if index == 0 else f"iteration {index}",
                "wall_s": round(wall, 2),
                "process_level_overhead_s": round(wall - processes, 2),
                "process_level_overhead_fraction": round((wall - processes) / wall, 4),
                "command_level_overhead_s": round(wall - commands, 2),
                "command_level_overhead_fraction": round((wall - commands) / wall, 4),
            }
        )
    return phases


def _worker_pid(profile: str) -> int:
    import psutil

    for _ in range(240):
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if f"-p {profile} daemon worker" in line:
                return process.pid
        time.sleep(0.25)
    raise RuntimeError(f"no daemon worker of profile {profile} found")


def worker_activities(path: Path) -> dict:
    """Busy seconds of a py-spy speedscope record of the daemon worker (idle samples included) by activity."""
    record = json.loads(path.read_text())
    frames = [f"{f.get('file', '')}:{f['name']}" for f in record["shared"]["frames"]]
    main = record["profiles"][0]  # the main thread, where the event loop runs
    busy: dict[str, float] = {name: 0.0 for name, _ in WORKER_ACTIVITIES}
    total = wall = 0.0
    for sample, weight in zip(main["samples"], main["weights"]):
        wall += weight
        stack = [frames[i] for i in sample]
        if not stack or stack[-1].endswith("selectors.py:EpollSelector.select"):
            continue  # the event loop waiting for work (a blocking subprocess call counts as busy)
        total += weight
        for name, pattern in WORKER_ACTIVITIES:
            if _occurs(pattern, stack):
                busy[name] += weight
    return {"sampled_s": round(wall, 2), "busy_s": round(total, 2), **{k: round(v, 2) for k, v in busy.items()}}


def _warm_up(inputs: dict) -> float:
    """One ``lmlp.label`` of the campaign's first structure through the daemon; its wall time.

    The daemon worker's first process pays one-off costs (the plugin's imports, SQLAlchemy's
    statement caches, the first connections); a worker that has run anything before does not.
    """
    from aiida.engine import submit

    from aiida_lmlp.data import LmlpDatasetData
    from aiida_lmlp.workflows.label import LabelWorkChain

    first = LmlpDatasetData.from_atoms(inputs["structures"].to_atoms()[:1])
    start = time.time()
    node = submit(LabelWorkChain, structures=first, pyscf=inputs["label"]["pyscf"])
    while not node.is_terminated:
        time.sleep(0.2)
    if not node.is_finished_ok:
        raise RuntimeError(f"the warm-up labelling failed: {node.exit_status} {node.exit_message}")
    return time.time() - start


def overhead(
    kind: str,
    job_poll: float,
    iterations: int | None = None,
    worker_profile: Path | None = None,
    warm: bool = False,
) -> dict:
    from aiida import load_profile
    from aiida.engine import submit
    from aiida.manage import get_manager

    from aiida_lmlp.campaign import load_spec
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    create_profile(kind, name, Path(os.environ["AIIDA_PATH"]))
    sampler = None
    try:
        from aiida.manage.configuration import reset_config

        reset_config()  # the profile was made by a verdi subprocess: re-read the configuration
        load_profile(name, allow_switch=True)
        from aiida import orm

        from aiida_lmlp.campaign.localhost import tune_localhost

        tune_localhost(orm.load_computer("localhost"), job_poll)  # as `lmlp quickstart` sets up its localhost
        verdi("daemon", "start", "1", "--timeout", "60", profile=name)
        if worker_profile is not None:
            import subprocess

            command = ["py-spy", "record", "--idle", "--rate", "200", "--format", "speedscope"]
            command += ["-o", str(worker_profile), "--pid", str(_worker_pid(name))]
            sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inputs = load_spec(ROOT / "workflows" / "quickstart.yaml").build_inputs("quickstart")
        for path in (("label", "pyscf"), ("train", "train"), ("explore",)):
            target = inputs
            for key in path:
                target = target[key]
            metadata = target.setdefault("metadata", {})
            metadata["options"] = _timestamped(metadata.get("options", {}))
        inputs["train"]["gather_code"] = inputs["train"]["train"]["code"]
        if iterations is not None:  # a longer campaign, for the trend of the overhead per iteration
            inputs["max_iterations"] = orm.Int(iterations)
            inputs["dft_budget"] = orm.Int(10 + 4 * iterations)
            inputs["convergence_patience"] = orm.Int(iterations + 1)
        warm_up_s = _warm_up(inputs) if warm else None
        submitted = time.time()
        node = submit(LifelongWorkChain, **inputs)
        while not node.is_terminated:
            time.sleep(0.5)
        # the campaign's own end (its node sealed), not when this loop happened to look
        finished = node.mtime.timestamp()
        intervals = _job_intervals(node)
        processes = _calculation_processes(node)
        report = node.outputs.report.get_dict()
        iterations = len(report["iterations"])
        wall = finished - submitted
        inside = _covered(intervals)
        by_kind: dict[str, float] = {}
        for start, end, label in intervals:
            by_kind[label] = by_kind.get(label, 0.0) + end - start
        result = {
            "profile": kind,
            "storage": get_manager().get_profile().storage_backend,
            "broker": get_manager().get_profile().process_control_backend,
            "minimum_job_poll_interval_s": job_poll,
            "warm_up_labelling_s": None if warm_up_s is None else round(warm_up_s, 2),
            "exit_status": node.exit_status,
            "stop_reason": report["stop_reason"],
            "iterations": iterations,
            "jobs": len(intervals),
            "wall_s": round(wall, 2),
            "submit_s": round(node.ctime.timestamp() - submitted, 2),  # validating and storing the inputs
            "inside_jobs_s": round(inside, 2),
            "overhead_s": round(wall - inside, 2),
            "overhead_fraction": round((wall - inside) / wall, 4),
            # the set-up phase (initial labelling and first training) counts as one more iteration
            "overhead_per_iteration_s": round((wall - inside) / (iterations + 1), 2),
            # the same, counting a calculation from its process's creation to its end (upload,
            # submission, polling, retrieval and parsing then count as inside the calculation)
            "inside_calculation_processes_s": round(_covered(processes), 2),
            "process_level_overhead_s": round(wall - _covered(processes), 2),
            "process_level_overhead_fraction": round((wall - _covered(processes)) / wall, 4),
            "process_level_overhead_per_iteration_s": round((wall - _covered(processes)) / (iterations + 1), 2),
            "seconds_in_jobs_by_kind": {k: round(v, 2) for k, v in sorted(by_kind.items())},
            "job_phases": _job_phases(node),
            "timeline": _timeline(node),
        }
        result["by_phase"] = by_phase(result["timeline"])
        get_manager().unload_profile()
        return result
    finally:
        verdi("daemon", "stop", "--timeout", "60", profile=name)
        if sampler is not None:
            sampler.wait(timeout=60)  # py-spy writes its record when the worker exits
        delete_profile(kind, name)


def fifty(kind: str, workers: int) -> dict:
    from aiida import load_profile, orm
    from aiida.engine import submit
    from aiida.manage import get_manager
    from ase.io import read

    from aiida_lmlp.data import LmlpDatasetData
    from aiida_lmlp.workflows.label import LabelWorkChain

    name = f"bench50-{kind}-{uuid.uuid4().hex[:6]}"
    create_profile(kind, name, Path(os.environ["AIIDA_PATH"]))
    try:
        verdi("daemon", "start", str(workers), "--timeout", "60", profile=name)
        from aiida.manage.configuration import reset_config

        reset_config()  # the profile was made by a verdi subprocess: re-read the configuration
        load_profile(name, allow_switch=True)
        frames = read(ROOT / "workflows" / "cl_ch3cl_start.extxyz", ":")
        code = orm.load_code("lmlp@localhost")
        structures = []
        for i in range(50):  # 50 distinct geometries: the start structures, slightly displaced
            atoms = frames[i % len(frames)].copy()
            atoms.positions += 0.01 * (i // len(frames)) * (1 + (i % 3))
            structures.append(LmlpDatasetData.from_atoms([atoms]).store())
        parameters = orm.Dict({"xc": "HF", "basis": "sto-3g", "density_fit": False, "threads": 1}).store()
        start = time.time()
        nodes = [
            submit(
                LabelWorkChain,
                structures=s,
                pyscf={
                    "code": code,
                    "parameters": parameters,
                    "metadata": {"options": {"max_wallclock_seconds": 1800}},
                },
            )
            for s in structures
        ]
        submitted = time.time() - start
        while not all(n.is_terminated for n in nodes):
            time.sleep(1)
        wall = time.time() - start
        labelled = sum(n.outputs.labelled.count for n in nodes if "labelled" in n.outputs)
        result = {
            "profile": kind,
            "storage": get_manager().get_profile().storage_backend,
            "broker": get_manager().get_profile().process_control_backend,
            "workers": workers,
            "submitted": len(nodes),
            "submit_s": round(submitted, 2),
            "finished_ok": sum(n.is_finished_ok for n in nodes),
            "labelled_conformations": labelled,
            "lost": 50 - labelled,
            "wall_s": round(wall, 1),
        }
        get_manager().unload_profile()
        return result
    finally:
        verdi("daemon", "stop", "--timeout", "60", profile=name)
        delete_profile(kind, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overhead", "fifty", "phases", "worker"])
    parser.add_argument(
        "file", nargs="?", type=Path, help="phases: a recorded overhead results file; worker: a py-spy record"
    )
    parser.add_argument("--worker-profile", type=Path, help="overhead: sample the daemon worker into this file")
    parser.add_argument("--profiles", nargs="+", default=["embedded", "production"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, help="overhead: run this many iterations instead of the spec's 3")
    parser.add_argument(
        "--job-poll", type=float, default=0.1, help="localhost minimum_job_poll_interval in s (lmlp quickstart: 0.1)"
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="overhead: one labelling through the daemon first (the campaign then meets a worker that has run before)",
    )
    arguments = parser.parse_args()
    if arguments.what == "phases":
        for run in json.loads(arguments.file.read_text())["results"]:
            print(run["profile"], json.dumps(by_phase(run["timeline"]), indent=1))
        return
    if arguments.what == "worker":
        print(json.dumps(worker_activities(arguments.file), indent=1))
        return
    os.environ.setdefault("AIIDA_PATH", tempfile.mkdtemp(prefix="lmlp-bench-"))
    results = []
    for kind in arguments.profiles:
        if arguments.what == "overhead":
            run = overhead(kind, arguments.job_poll, arguments.iterations, arguments.worker_profile, arguments.warm)
            if arguments.worker_profile is not None:
                run["worker_activities_s"] = worker_activities(arguments.worker_profile)
        else:
            run = fifty(kind, arguments.workers)
        print(json.dumps(run))
        results.append(run)
    profiles = "_".join(arguments.profiles)
    stem = (
        f"campaign_overhead_{profiles}_poll{arguments.job_poll:g}"
        + (f"_iterations{arguments.iterations}" if arguments.iterations else "")
        + ("_warm" if arguments.warm else "")
        if arguments.what == "overhead"
        else f"labelling_fifty_{profiles}"
    )
    out = RESULTS / f"{stem}.json"
    command = f"python benchmarks/campaign_overhead.py {arguments.what} --profiles {' '.join(arguments.profiles)}"
    if arguments.what == "fifty":
        command += f" --workers {arguments.workers}"
    else:
        command += f" --job-poll {arguments.job_poll:g}"
        if arguments.iterations:
            command += f" --iterations {arguments.iterations}"
        if arguments.warm:
            command += " --warm"
    out.write_text(
        json.dumps(
            {
                "command": command,
                "machine": _machine(),
                "date": time.strftime("%Y-%m-%d"),
                "results": results,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
