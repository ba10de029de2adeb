"""Record real outputs of ``lmlp train`` for the parser tests of ``lmlp.train``.

Run from the repository root: ``python tests/data/train_outputs/record.py``. Every case folder
holds what the CalcJob retrieves (``model.lmlp``, ``model.metrics.jsonl``, ``lmlp.out``,
``lmlp.err``) plus ``parameters.json``, the parameters the CalcJob would have been given.

Cases: ``complete`` (2 epochs asked, 2 done; the parser test also reads it as a run that asked
for more epochs, which is what a job killed at its wall time leaves: its last checkpoint); ``refused`` (a configuration
value out of range); ``no_usable_data`` (every conformation above the force cap); ``corrupt``
(the complete model cut short, as by a failed copy); ``crashed`` (nothing but an empty stderr).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from ase.io import read, write

HERE = Path(__file__).resolve().parent
SN2 = HERE.parents[2] / "workflows" / "data" / "sn2"
LMLP = Path(sys.executable).with_name("lmlp")
SMALL = {"members": 2, "hidden": [4], "dtype": "float32", "seed": 0, "fit_per_epoch": 1.0, "test_fraction": 0.25}


def run(case: str, parameters: dict, frames) -> Path:
    folder = HERE / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    write(folder / "data_0.extxyz", frames, format="extxyz")
    (folder / "config.yaml").write_text(yaml.safe_dump(parameters))
    with open(folder / "lmlp.out", "w") as out, open(folder / "lmlp.err", "w") as err:
        subprocess.run(
            [str(LMLP), "train", "--data", "data_0.extxyz", "--config", "config.yaml", "--out", "model.lmlp"],
            cwd=folder,
            stdout=out,
            stderr=err,
            check=False,
        )
    (folder / "data_0.extxyz").unlink()
    (folder / "config.yaml").unlink()
    (folder / "parameters.json").write_text(json.dumps(parameters, indent=1, sort_keys=True))
    return folder


def main() -> None:
    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:8]
    complete = run("complete", {**SMALL, "epochs": 2}, frames)
    run("refused", {**SMALL, "epochs": 2, "q": -1.0}, frames)
    run("no_usable_data", {**SMALL, "epochs": 2, "force_cap": 1e-3}, frames)
    corrupt = HERE / "corrupt"
    shutil.rmtree(corrupt, ignore_errors=True)
    shutil.copytree(complete, corrupt)
    data = (corrupt / "model.lmlp").read_bytes()
    (corrupt / "model.lmlp").write_bytes(data[: len(data) // 2])
    crashed = HERE / "crashed"
    shutil.rmtree(crashed, ignore_errors=True)
    crashed.mkdir()
    (crashed / "lmlp.err").write_text("")
    (crashed / "parameters.json").write_text(json.dumps({**SMALL, "epochs": 2}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
