"""Conformation archives as job input and output: exact round trip, checked reading, named errors."""

import numpy as np
import pytest
from ase.io import read

from aiida_lmlp.formats.conformation_arrays import DatasetError, read_archive, read_frames, write_frames

from ..conftest import SN2


@pytest.fixture
def frames():
    return read(SN2 / "pool_a.extxyz", ":5")


def test_an_archive_gives_back_the_frames_exactly(frames, tmp_path):
    write_frames(tmp_path / "data.npz", frames)
    back = read_frames(tmp_path / "data.npz")
    assert len(back) == len(frames)
    for ours, theirs in zip(back, frames):
        assert ours.get_chemical_symbols() == theirs.get_chemical_symbols()
        np.testing.assert_array_equal(ours.positions, theirs.positions)  # bit for bit, unlike extxyz text
        assert ours.get_potential_energy() == theirs.get_potential_energy()
        np.testing.assert_array_equal(ours.get_forces(), theirs.get_forces())
        assert ours.info["charge"] == theirs.info.get("charge", 0)
    assert not list(tmp_path.glob("*.partial"))


def test_other_suffixes_are_extended_xyz(frames, tmp_path):
    write_frames(tmp_path / "data.extxyz", frames)
    assert (tmp_path / "data.extxyz").read_text().startswith(f"{len(frames[0])}\n")
    np.testing.assert_allclose(read_frames(tmp_path / "data.extxyz")[2].positions, frames[2].positions, atol=1e-8)


def test_reading_an_archive_refuses_bad_labels_and_recomputes_ids(frames, tmp_path):
    from aiida_lmlp.formats.conformation_arrays import ConformationArrays

    arrays = ConformationArrays.from_atoms(frames).arrays
    arrays["ids"] = np.array(["0" * 32] * len(frames))  # ids are not taken from the file
    (tmp_path / "ids.npz").write_bytes(ConformationArrays(arrays).to_bytes())
    assert set(read_archive(tmp_path / "ids.npz").arrays["ids"]) == set(
        ConformationArrays.from_atoms(frames).arrays["ids"]
    )
    arrays["energy"][3] = np.inf  # read as "no label" by to_atoms were it not refused
    (tmp_path / "inf.npz").write_bytes(ConformationArrays(arrays).to_bytes())
    with pytest.raises(DatasetError, match=r"inf\.npz: conformation 3 has an infinite energy"):
        read_archive(tmp_path / "inf.npz")


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_an_unreadable_archive_is_named(frames, tmp_path, damage):
    path = tmp_path / "data.npz"
    if damage == "truncated":
        write_frames(path, frames)
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="data.npz"):
        read_frames(path)
