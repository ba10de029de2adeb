"""The README's engine commands, read out of README.md and run as written, from a copy of the repository layout.

The commands run in a temporary folder holding a copy of ``workflows/`` (the shipped SN2 data):
no file outside the repository is needed. To keep the suite short, the copies of the two pools
are their first frames and ``--epochs`` is 2; every path and every other option is the README's.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ase.io import read, write

ROOT = Path(__file__).resolve().parents[1]
LMLP = Path(sys.executable).with_name("lmlp")
ENGINE_COMMANDS = ("train", "predict", "info")  # the commands that need no AiiDA profile


def readme_commands() -> list[list[str]]:
    """Every ``lmlp train|predict|info`` line of the README's bash blocks, split as a shell would."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if len(words) > 1 and words[0] == "lmlp" and words[1] in ENGINE_COMMANDS:
                commands.append(words)
    return commands


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_readme_names_the_engine_commands_and_shipped_files():
    commands = readme_commands()
    assert [words[1] for words in commands] == ["train", "predict", "info"]
    train, predict, info = commands
    # every file the commands read is in the repository, named relative to its root
    inputs = [word for words in commands for word in words if "/" in word]
    assert len(inputs) == 3
    for path in inputs:
        assert not Path(path).is_absolute() and ".." not in Path(path).parts, path
        assert (ROOT / path).is_file(), f"README: {path} is not in the repository"
    # predict and info read what train wrote
    assert _option(predict, "--model") == _option(train, "--out") == info[2]


def test_readme_engine_commands_run_from_a_copy_of_the_repository(tmp_path):
    commands = readme_commands()
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    for name, frames in (("pool_a", 60), ("pool_b", 12)):
        path = tmp_path / "workflows" / "data" / "sn2" / f"{name}.extxyz"
        write(path, read(path, f":{frames}"))
    for words in commands:
        if words[1] == "train":
            words[words.index("--epochs") + 1] = "2"
        result = subprocess.run([str(LMLP), *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(words)} failed:\n{result.stdout}\n{result.stderr}"
        if words[1] == "info":
            assert "members        10" in result.stdout
            assert "elements       Br, C, Cl, F, H, N, O, S" in result.stdout
    predict = next(words for words in commands if words[1] == "predict")
    predicted = read(tmp_path / _option(predict, "--out"), ":")
    assert len(predicted) == 12
    assert all(math.isfinite(atoms.info["lmlp_energy"]) for atoms in predicted)
