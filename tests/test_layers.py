"""The layers' import rules: the formats and the daemon side never import torch, the engine never imports aiida."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import aiida_lmlp

PACKAGE = Path(aiida_lmlp.__file__).parent

#: what the AiiDA daemon imports: never torch
DAEMON_SIDE = ["formats", "data", "calculations", "parsers", "workflows", "campaign", "reporting", "labelling"]
DAEMON_MODULES = ["aiida_lmlp.registry", "aiida_lmlp.overrides.checkpoints", "aiida_lmlp.overrides.process_links"]


def _modules(package: str) -> list[str]:
    """Every module of ``aiida_lmlp.<package>`` (the package itself included)."""
    root = PACKAGE / package
    names = [f"aiida_lmlp.{package}"]
    for info in pkgutil.walk_packages([str(root)], prefix=f"aiida_lmlp.{package}."):
        names.append(info.name)
    return names


def _imported_after(modules: list[str]) -> set[str]:
    """The top-level packages in ``sys.modules`` of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_formats_package_imports_neither_torch_nor_aiida():
    modules = _modules("formats")
    assert "aiida_lmlp.formats.conformation_arrays" in modules and len(modules) >= 9
    loaded = _imported_after(modules)
    assert "torch" not in loaded and "aiida" not in loaded


def test_the_daemon_side_never_imports_torch():
    modules = [name for package in DAEMON_SIDE for name in _modules(package)] + DAEMON_MODULES
    assert "aiida_lmlp.workflows.lifelong" in modules and "aiida_lmlp.reporting.plots" in modules
    loaded = _imported_after(modules)
    assert "aiida" in loaded  # the probe really imported the AiiDA layer
    assert "torch" not in loaded


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):  # function-level imports too: the engine may not import aiida anywhere
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "potential").rglob("*.py")), ids=lambda p: p.name)
def test_no_engine_module_imports_aiida(path):
    assert "aiida" not in _imports_of(path), f"{path.relative_to(PACKAGE.parent)} imports aiida"


def test_the_whole_engine_imports_without_aiida():
    loaded = _imported_after(_modules("potential"))
    assert "torch" in loaded and "aiida" not in loaded
