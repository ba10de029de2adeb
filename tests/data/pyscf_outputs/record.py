"""Record real outputs of ``lmlp label-pyscf`` for the ``lmlp.pyscf`` parser tests.

Regenerate (from the repository root, about half a minute)::

    python tests/data/pyscf_outputs/record.py

Every case runs the real command in a scratch folder, exactly as the CalcJob does::

    lmlp label-pyscf --structures structures.npz --parameters parameters.json \\
        --out labelled.extxyz --archive labelled.npz --status status.jsonl

and keeps what the run left: ``status.jsonl``, ``labelled.extxyz`` and ``labelled.npz`` (where
written: the archive only by a batch that finished), and the captured
output as ``lmlp.out`` / ``lmlp.err``. ``cases.json`` records per case the
input frames (of ``workflows/data/sn2/pool_a.extxyz``), the parameters and the exit status. All at
HF/sto-3g on 6–7-atom SN2 conformations, so the files stay small.

===================== =========================================================================== ======
case                  what happens                                                                 exit
===================== =========================================================================== ======
all_converged         2 structures, both converge                                                 0
partly_not_converged  2 structures, max_cycle 8, no second-order step: the second does not converge 0
structure_error       2 structures, the second neutral with 35 electrons as a singlet: "error"     0
terminated            3 structures, SIGTERM once the first is done: a "terminated" line            143
crash                 3 structures, SIGKILL once the first is done: no closing line                -9
bad_parameters        unknown key "fail_on": one line on stderr, no status file                    1
===================== =========================================================================== ======
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ase.io import read

from aiida_lmlp.formats.conformation_arrays import write_frames

HERE = Path(__file__).resolve().parent
POOL = HERE.parents[2] / "workflows" / "data" / "sn2" / "pool_a.extxyz"
FAST = {"xc": "HF", "basis": "sto-3g", "threads": 1}
COMMAND = [
    "label-pyscf",
    "--structures",
    "structures.npz",
    "--parameters",
    "parameters.json",
    "--out",
    "labelled.extxyz",
    "--archive",
    "labelled.npz",
    "--status",
    "status.jsonl",
]
KEPT = ("status.jsonl", "labelled.extxyz", "labelled.npz", "lmlp.out", "lmlp.err")

# case: (frames of pool_a, charge overrides per position, parameters, signal sent after the first structure)
CASES = {
    "all_converged": ([7, 3], {}, FAST, None),
    "partly_not_converged": ([7, 9], {}, {**FAST, "max_cycle": 8, "second_order": False}, None),
    "structure_error": ([7, 7], {1: 0}, FAST, None),
    "terminated": ([7, 3, 0], {}, FAST, signal.SIGTERM),
    "crash": ([7, 3, 0], {}, FAST, signal.SIGKILL),
    "bad_parameters": ([7], {}, {**FAST, "fail_on": 1}, None),
}
EXPECTED = {  # per-structure statuses the recording must show
    "all_converged": ["converged", "converged"],
    "partly_not_converged": ["converged", "not_converged"],
    "structure_error": ["converged", "error"],
    "terminated": ["converged"],
    "crash": ["converged"],
    "bad_parameters": [],
}


def run_case(frames, charges, parameters, signum, scratch: Path) -> int:
    """Run the command in ``scratch``; send ``signum`` once the first structure is done. Returns the exit status."""
    structures = [read(POOL, index) for index in frames]
    for position, charge in charges.items():
        structures[position].info["charge"] = charge
    write_frames(scratch / "structures.npz", structures)  # as the CalcJob copies a dataset's archive
    (scratch / "parameters.json").write_text(json.dumps(parameters, indent=1) + "\n")
    with open(scratch / "lmlp.out", "w") as stdout, open(scratch / "lmlp.err", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", "from aiida_lmlp.cli import main; main(prog_name='lmlp')", *COMMAND],
            cwd=scratch,
            stdout=stdout,
            stderr=stderr,
        )
        if signum is not None:
            status = scratch / "status.jsonl"
            while not (status.exists() and '"index": 0' in status.read_text()):
                if process.poll() is not None:
                    raise RuntimeError("the batch ended before the signal could be sent")
                time.sleep(0.01)
            process.send_signal(signum)
        return process.wait(timeout=600)


def main():
    """Record every case into its folder next to this script, and ``cases.json``."""
    summary = {}
    for case, (frames, charges, parameters, signum) in CASES.items():
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            exit_status = run_case(frames, charges, parameters, signum, scratch)
            target = HERE / case
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for name in KEPT:
                if (scratch / name).exists():
                    shutil.copy(scratch / name, target / name)
        statuses = []
        if (target / "status.jsonl").exists():
            lines = [json.loads(line) for line in (target / "status.jsonl").read_text().splitlines()]
            statuses = [line["status"] for line in lines if "status" in line]
        if statuses != EXPECTED[case]:
            raise RuntimeError(f"{case}: recorded {statuses}, expected {EXPECTED[case]}")
        summary[case] = {
            "pool_a_frames": frames,
            "charge_overrides": {str(k): v for k, v in charges.items()},
            "parameters": parameters,
            "signal": int(signum) if signum is not None else None,
            "exit_status": exit_status,
        }
        print(f"{case:<22} exit {exit_status:>4}  {statuses}")
    (HERE / "cases.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
