"""Bytes uploaded to the jobs' computer per campaign iteration, with the code before and after a change, alternated.

    python benchmarks/upload_bytes.py --before COMMIT [--after COMMIT] [--rounds 2] [--iterations 5]
    python benchmarks/upload_bytes.py run --out FILE [--iterations 5]     # one campaign, the code on PYTHONPATH

The quickstart campaign (``workflows/quickstart.yaml``: Cl⁻ + CH3Cl, HF/STO-3G, 4 members),
``--iterations`` long, on a scratch embedded profile with ``core.local`` + ``core.direct``, run in
a child process per side with the package imported from a git worktree of that side's commit
(``PYTHONPATH``; the jobs' ``lmlp`` inherits it). The sides alternate ``--rounds`` times.

What a job uploads is counted from what aiida-core recorded for it: the files of its sandbox
(its repository: job script, configuration, ``.aiida/``) and those of its ``local_copy_list``
(``.aiida/calcinfo.json``: node files copied from the repository); files of its
``remote_symlink_list`` are linked on the computer, not uploaded. The count is checked against
the job's remote folder: the regular files (not links) under those names have the same sizes.
Jobs are grouped by the campaign iteration they belong to: labelling and exploration by their
call link (``label_003``, ``explore_003``), training by the version it made (the registry's
iteration), the initial labelling and version 0 in iteration 0.

Results: ``benchmarks/results/upload_bytes.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from timing import cpu_model  # noqa: E402

STEPS = ("label", "train", "explore")


# -- one campaign (child process) ------------------------------------------------------------------


def _node_file_size(uuid: str, filename: str | None) -> int:
    from aiida import orm

    node = orm.load_node(uuid)
    if not filename:  # the whole repository
        return sum(_repository_sizes(node).values())
    with node.base.repository.open(filename, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


def _repository_sizes(node) -> dict[str, int]:
    sizes = {}
    for root, _, names in node.base.repository.walk():
        for name in names:
            path = (root / name).as_posix()
            with node.base.repository.open(path, "rb") as handle:
                sizes[path] = handle.seek(0, os.SEEK_END)
    return sizes


def job_bytes(job) -> dict:
    """What ``job`` uploaded (sandbox + local copies) and linked, checked against its remote folder."""
    if job.base.caching.is_created_from_cache:  # a cache hit runs nothing, uploads nothing
        return {"uploaded": 0, "sandbox": 0, "copied": {}, "linked": {}, "cached": True}
    sandbox = _repository_sizes(job)
    calcinfo = json.loads(job.base.repository.get_object_content(".aiida/calcinfo.json"))
    copies = {target: _node_file_size(uuid, filename) for uuid, filename, target in calcinfo["local_copy_list"]}
    links = {target: os.path.getsize(path) for _, path, target in calcinfo.get("remote_symlink_list") or []}
    workdir = Path(job.outputs.remote_folder.get_remote_path())
    on_disk = sum(
        (workdir / name).stat().st_size
        for name in [*sandbox, *copies]
        if (workdir / name).is_file() and not (workdir / name).is_symlink()
    )
    linked_on_disk = sum(1 for name in links if (workdir / name).is_symlink())
    uploaded = sum(sandbox.values()) + sum(copies.values())
    assert on_disk == uploaded, (job.pk, on_disk, uploaded)
    assert linked_on_disk == len(links), (job.pk, links)
    return {
        "uploaded": uploaded,
        "sandbox": sum(sandbox.values()),
        "copied": copies,
        "linked": links,
    }


def _call_label(node) -> str:
    from aiida.common.links import LinkType

    triple = node.base.links.get_incoming(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).first()
    return triple.link_label if triple is not None else ""


def _step_and_iteration(job, campaign, version_iteration: dict[int, int]) -> tuple[str, int, str]:
    """The campaign step ``job`` belongs to, its iteration, and the label of its top-level call."""
    node = job
    while node.caller is not None and node.caller.pk != campaign.pk:
        node = node.caller
    label = _call_label(node)
    if label == "label_initial":
        return "label", 0, label
    match = re.fullmatch(r"(label|explore)_(\d+)", label)
    if match:
        return match.group(1), int(match.group(2)), label
    match = re.match(r"train_v(\d+)_", label)
    if match:
        return "train", version_iteration[int(match.group(1))], label
    raise ValueError(f"{job.process_label}<{job.pk}>: unexpected call link {label!r}")


def run_campaign(iterations: int) -> dict:
    """One quickstart campaign of ``iterations`` on a scratch profile; the bytes of every job."""
    from scratch_profile import scratch_profile

    with scratch_profile(f"upload-{os.getpid()}"):
        from aiida import orm
        from aiida.engine import run_get_node

        import aiida_lmlp
        from aiida_lmlp.campaign import load_spec
        from aiida_lmlp.registry import list_versions
        from aiida_lmlp.workflows.lifelong import LifelongWorkChain

        inputs = load_spec(ROOT / "workflows" / "quickstart.yaml").build_inputs("upload")
        inputs["max_iterations"] = orm.Int(iterations)
        inputs["dft_budget"] = orm.Int(10 + 4 * iterations)
        inputs["convergence_patience"] = orm.Int(iterations + 1)
        start = time.time()
        _, campaign = run_get_node(LifelongWorkChain, **inputs)
        wall = time.time() - start
        assert campaign.is_finished_ok, campaign.exit_message
        version_iteration = {row["version"]: row["iteration"] for row in list_versions("upload")}
        jobs = []
        for job in sorted(campaign.called_descendants, key=lambda n: n.ctime):
            if not isinstance(job, orm.CalcJobNode):
                continue
            step, iteration, label = _step_and_iteration(job, campaign, version_iteration)
            jobs.append(
                {
                    "label": label,
                    "process": job.process_label,
                    "step": step,
                    "iteration": iteration,
                    **job_bytes(job),
                }
            )
        per_iteration = {}
        for job in jobs:
            row = per_iteration.setdefault(job["iteration"], {"iteration": job["iteration"], **dict.fromkeys(STEPS, 0)})
            row[job["step"]] += job["uploaded"]
        return {
            "package": str(Path(aiida_lmlp.__file__).parent),
            "campaign_wall_s": round(wall, 1),
            "versions": len(version_iteration),
            "iterations": [per_iteration[k] for k in sorted(per_iteration)],
            "jobs": jobs,
        }


# -- the alternation (parent process) --------------------------------------------------------------


def _child(tree: Path, iterations: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, str(Path(__file__).resolve()), "run", "--out", out.name]
        subprocess.run([*command, "--iterations", str(iterations)], env=env, check=True, cwd=tree)
        return json.loads(Path(out.name).read_text())


def _commit(revision: str) -> str:
    result = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["run"], help="run: one campaign with the code on PYTHONPATH")
    parser.add_argument("--before", help="the commit before the change")
    parser.add_argument("--after", default="HEAD", help="the commit with the change (default HEAD)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--out", type=Path, help="run: where the child writes its result")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "upload_bytes.json")
    args = parser.parse_args()
    if args.mode == "run":
        args.out.write_text(json.dumps(run_campaign(args.iterations)))
        return
    if not args.before:
        parser.error("--before COMMIT is required")
    sides = {"before": _commit(args.before), "after": _commit(args.after)}
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        trees = {}
        for side, commit in sides.items():
            trees[side] = Path(scratch) / side
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(trees[side]), commit], cwd=ROOT, check=True)
        try:
            for round_ in range(args.rounds):
                for side in ("before", "after"):
                    result = _child(trees[side], args.iterations)
                    runs.append({"side": side, "commit": sides[side], "round": round_, **result})
                    totals = [sum(row[s] for s in STEPS) for row in result["iterations"]]
                    print(f"{side} ({sides[side]}) round {round_}: bytes per iteration {totals}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    payload = {
        "command": "python benchmarks/upload_bytes.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
        "sides": sides,
        "campaign": f"workflows/quickstart.yaml, {args.iterations} iterations, core.local + core.direct",
        "runs": runs,
    }
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
