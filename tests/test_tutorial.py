"""The tutorial runs as written: every named code block of docs/tutorial.md, in order, on a fresh profile.

The blocks are read out of the page, so a command that changes without the tutorial fails here.
Shell blocks run line by line without a shell (each line split like a shell would), Python
blocks in a fresh interpreter, all in one scratch folder with its own ``AIIDA_PATH``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"```\{code-block\} (bash|python)\n:name: (tutorial-[a-z-]+)\n(.*?)```", re.S)


def tutorial_blocks() -> list[tuple[str, str, str]]:
    """``(language, name, code)`` of every named block, in page order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(TUTORIAL.read_text(encoding="utf-8"))]


def test_the_tutorial_names_its_steps():
    names = [name for _, name, _ in tutorial_blocks()]
    assert names == [
        "tutorial-quickstart",
        "tutorial-status",
        "tutorial-provenance",
        "tutorial-report",
        "tutorial-export",
        "tutorial-md",
        "tutorial-stop",
    ]


def _run(command: list[str], cwd: Path, env: dict, timeout: float) -> str:
    executable = BIN / command[0]
    done = subprocess.run(
        [str(executable) if executable.exists() else command[0], *command[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def test_every_tutorial_command_runs_as_written(tmp_path):
    env = {**os.environ, "AIIDA_PATH": str(tmp_path / "aiida")}
    env.pop("AIIDA_PROFILE", None)
    work = tmp_path / "work"
    work.mkdir()
    outputs = {}
    try:
        for language, name, code in tutorial_blocks():
            if language == "bash":
                outputs[name] = "".join(
                    _run(shlex.split(line), work, env, timeout=900) for line in code.splitlines() if line.strip()
                )
            else:
                outputs[name] = _run(["python", "-c", code], work, env, timeout=600)
    finally:
        subprocess.run(
            [str(BIN / "verdi"), "daemon", "stop", "--timeout", "60"], env=env, capture_output=True, timeout=120
        )
    assert "version 0" in outputs["tutorial-quickstart"]
    assert "quickstart" in outputs["tutorial-status"]
    assert "PySCF calculations behind its data" in outputs["tutorial-provenance"]
    assert sorted(p.name for p in (work / "report").glob("*.png")) and (work / "report" / "summary.txt").is_file()
    assert (work / "exported" / "model.lmlp").is_file()
    assert "largest energy uncertainty" in outputs["tutorial-md"]
