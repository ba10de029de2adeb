"""The training data stream in merged segments: the merge plan, and training that cannot tell the difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from aiida_lmlp.data import LmlpDatasetData, merge_datasets
from aiida_lmlp.formats.conformation_arrays import ConformationArrays
from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential.training.run import run_training
from aiida_lmlp.workflows.data_stream import segments_to_merge


def _stream(appends: int, width: int) -> list[int]:
    """Tiers of the segments after ``appends`` datasets, merging as the campaign does."""
    tiers: list[int] = []
    for _ in range(appends):
        tiers.append(0)
        while count := segments_to_merge(tiers, width):
            tiers[-count:] = [tiers[-1] + 1]
    return tiers


def test_the_merge_plan_by_hand():
    assert segments_to_merge([], 3) == 0
    assert segments_to_merge([0, 0], 3) == 0
    assert segments_to_merge([0, 0, 0], 3) == 3
    assert segments_to_merge([1, 0, 0], 3) == 0
    assert segments_to_merge([1, 1, 0, 0, 0], 3) == 3
    assert segments_to_merge([2, 1, 1, 1], 3) == 3
    assert _stream(2, 2) == [1] and _stream(3, 2) == [1, 0] and _stream(7, 3) == [1, 1, 0]
    with pytest.raises(ValueError, match="at least 2, got 1"):
        segments_to_merge([0], 1)


@pytest.mark.parametrize("width", [2, 3, 8])
def test_the_segments_are_the_digits_of_the_dataset_count(width):
    """After N datasets the stream holds one tier-t segment per unit of the base-``width`` digit t of N."""
    for appends in range(1, 300):
        tiers = _stream(appends, width)
        digits, n = [], appends
        while n:
            digits.append(n % width)
            n //= width
        expected = [t for t in reversed(range(len(digits))) for _ in range(digits[t])]
        assert tiers == expected
        assert len(tiers) <= (width - 1) * len(digits)
        # every segment holds width**tier datasets: all of them, each once
        assert sum(width**t for t in tiers) == appends


def _archive(dataset: LmlpDatasetData, path: Path) -> Path:
    path.write_bytes(dataset.conformations.to_bytes())
    return path


def test_continued_training_on_merged_segments_equals_training_on_the_datasets(aiida_profile, sn2_frames, tmp_path):
    """[a, b, c] and [merge(a, b), c] give the same model, bit for bit (b carries arrays a lacks)."""
    a = LmlpDatasetData.from_atoms(sn2_frames[:12]).store()
    arrays = dict(LmlpDatasetData.from_atoms(sn2_frames[12:20]).conformations.arrays)
    arrays["fingerprint"] = np.random.default_rng(0).normal(size=(8, 4))  # as exploration's selections carry
    b = LmlpDatasetData(ConformationArrays(arrays), label_method="exploration").store()
    c = LmlpDatasetData.from_atoms(sn2_frames[20:26]).store()
    merged = merge_datasets(s000=a, s001=b)
    assert merged.ids == a.ids + b.ids
    config = merge_config(
        default_config(),
        {"members": 2, "hidden": [6], "epochs": 3, "fit_per_epoch": 0.5, "test_fraction": 0.2, "checkpoint_every": 100},
    )
    parent = tmp_path / "parent.lmlp"
    run_training([_archive(a, tmp_path / "a.npz")], config, parent)
    files = {name: _archive(node, tmp_path / f"{name}.npz") for name, node in {"b": b, "c": c, "ab": merged}.items()}
    separate, segments = tmp_path / "separate.lmlp", tmp_path / "segments.lmlp"
    first = run_training([tmp_path / "a.npz", files["b"], files["c"]], config, separate, parent=parent)
    second = run_training([files["ab"], files["c"]], config, segments, parent=parent)
    assert first == second
    one, two = load_file(separate), load_file(segments)
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # and the comparison can tell: the same data in another order trains another model
    reordered = tmp_path / "reordered.lmlp"
    run_training([files["c"], files["ab"]], config, reordered, parent=parent)
    three = load_file(reordered)
    assert any(not np.array_equal(one[name], three[name]) for name in one if name.startswith("networks."))
