"""Files the engine writes atomically (temporary file + rename) get the mode the umask allows, as open() would."""

from __future__ import annotations

import os
import stat

import pytest

from aiida_lmlp.formats.exploration import ExplorationProtocol, ExplorationResult


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value)
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_model_file_mode_follows_the_umask(tmp_path, sn2_model, umask, mask, expected):
    umask(mask)
    path = tmp_path / "model.lmlp"
    sn2_model.save(path)
    assert _mode(path) == expected
    # the same as a file written with open(): what colleagues on a shared cluster may read
    (tmp_path / "plain").write_bytes(b"x")
    assert _mode(tmp_path / "plain") == expected
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_exploration_summary_mode_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    result = ExplorationResult(protocol=ExplorationProtocol(kind="md", temperature=300.0, steps=1), model_sha256=None)
    path = tmp_path / "summary.json"
    result.write_summary(path)
    assert _mode(path) == expected
