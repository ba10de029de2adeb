"""Record real outputs of ``lmlp explore`` for the parser tests of ``lmlp.explore``.

Run from the repository root: ``python tests/data/explore_outputs/record.py``. A tiny model
(C, H, Cl; 2 members; one hidden layer of 4; float32) is written to ``model.lmlp``; each case
folder holds what the CalcJob retrieves (``visited.extxyz``, ``visited.npz`` from a completed
run, ``summary.json``, ``lmlp.out``, ``lmlp.err``) and ``inputs.json`` (which pool_a frames were
the start structures, the protocol).

Cases: ``complete`` (2 structures evaluated); ``all_failed`` (the only start structure holds an
element the model lacks); ``refused`` (an unknown protocol key); ``cut_off`` (MD of 2 structures,
killed with SIGKILL once the first trajectory is done: a partial file and an incomplete summary).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from ase import Atoms
from ase.io import read

from aiida_lmlp.formats.conformation_arrays import write_frames

HERE = Path(__file__).resolve().parent
SN2 = HERE.parents[2] / "workflows" / "data" / "sn2"
LMLP = Path(sys.executable).with_name("lmlp")


def frames(indices):
    pool = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"]
    return [pool[i] for i in indices]


def run(case: str, structures, protocol: dict, kill_after_summary: bool = False, indices=()) -> None:
    folder = HERE / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    write_frames(folder / "start.npz", structures)  # as the CalcJob copies a dataset's archive
    (folder / "protocol.yaml").write_text(yaml.safe_dump(protocol))
    shutil.copy(HERE / "model.lmlp", folder / "model.lmlp")
    command = [str(LMLP), "explore", "--model", "model.lmlp", "--structures", "start.npz"]
    command += ["--protocol", "protocol.yaml", "--out", "visited.extxyz", "--archive", "visited.npz"]
    command += ["--summary", "summary.json"]
    with open(folder / "lmlp.out", "w") as out, open(folder / "lmlp.err", "w") as err:
        process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=err)
        if kill_after_summary:
            while not (folder / "summary.json").exists() and process.poll() is None:
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        process.wait()
    for name in ("start.npz", "protocol.yaml", "model.lmlp"):
        (folder / name).unlink()
    (folder / "inputs.json").write_text(json.dumps({"pool_frames": list(indices), "protocol": protocol}, indent=1))


def main() -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from aiida_lmlp.potential import Ensemble

    references = json.loads((SN2 / "free_atoms.json").read_text())
    model = Ensemble.new(["C", "Cl", "H"], members=2, hidden=(4,), reference_energies=references, seed=1)
    model.initialize_standardization(frames(range(6)))
    model.to(__import__("torch").float32).save(HERE / "model.lmlp")
    run("complete", frames([0, 1]), {"kind": "evaluate"}, indices=[0, 1])
    zinc = Atoms("Zn2", positions=[[0, 0, 0], [0, 0, 2.4]])
    zinc.info.update(charge=0, multiplicity=1)
    run("all_failed", [zinc], {"kind": "evaluate"})
    run("refused", frames([0]), {"kind": "md", "temprature": 300}, indices=[0])
    run(
        "cut_off",
        frames([0, 1]),
        {"kind": "md", "steps": 40, "sample_every": 4},
        kill_after_summary=True,
        indices=[0, 1],
    )


if __name__ == "__main__":
    main()
