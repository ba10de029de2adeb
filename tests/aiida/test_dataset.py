"""``lmlp.dataset``: compact storage, conversions, ids, validation and the merge calcfunction."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.exceptions import ModificationNotAllowed
from ase import Atoms
from ase.build import bulk

from aiida_lmlp.data import DatasetError, LmlpDatasetData, merge_datasets
from aiida_lmlp.formats.labels import conformation_id, reference_label

from ..conftest import SN2


def _labels(frames):
    return [reference_label(a, "energy") for a in frames], [reference_label(a, "forces") for a in frames]


def test_extxyz_round_trip_keeps_labels_and_ids(sn2_frames, tmp_path):
    frames = sn2_frames[:12]
    node = LmlpDatasetData.from_atoms(frames, label_method="PBE/def2-SVP").store()
    loaded = orm.load_node(node.pk)
    back = loaded.to_atoms()
    energies, forces = _labels(frames)
    assert len(back) == 12
    for atoms, original, energy, force in zip(back, frames, energies, forces):
        assert atoms.get_chemical_symbols() == original.get_chemical_symbols()
        np.testing.assert_array_equal(atoms.positions, original.positions)
        assert atoms.get_potential_energy() == energy
        np.testing.assert_array_equal(atoms.get_forces(), force)
        assert atoms.info["charge"] == original.info["charge"] == -1
        assert atoms.info["reaction"] == original.info["reaction"]
    # the id is the trainer's content hash, and it survives the round trip
    assert loaded.ids == [conformation_id(a) for a in frames] == [conformation_id(a) for a in back]
    path = loaded.write_extxyz(tmp_path / "out.extxyz")
    again = LmlpDatasetData.from_extxyz(path)
    assert again.ids == loaded.ids


def test_attributes_describe_the_data(sn2_frames):
    frames = sn2_frames[:20]
    node = LmlpDatasetData.from_atoms(frames, label_method="PBE/def2-SVP").store()
    energies, forces = _labels(frames)
    per_atom = [e / len(a) for e, a in zip(energies, frames)]
    attributes = node.base.attributes.all
    assert attributes["count"] == 20
    assert attributes["n_atoms"] == sum(len(a) for a in frames)
    assert attributes["elements"] == sorted({s for a in frames for s in a.get_chemical_symbols()})
    assert attributes["label_method"] == "PBE/def2-SVP"
    # attributes are JSON in the database (SQLite keeps 15 significant digits); the archive is exact
    assert attributes["energy_min"] == pytest.approx(min(energies), rel=1e-13)
    assert attributes["energy_max"] == pytest.approx(max(energies), rel=1e-13)
    assert attributes["energy_per_atom_min"] == pytest.approx(min(per_atom))
    assert attributes["force_max_abs"] == pytest.approx(max(np.abs(f).max() for f in forces), rel=1e-13)
    assert attributes["labelled_count"] == 20 and attributes["charges"] == [-1]
    # queryable: find datasets that contain carbon
    found = orm.QueryBuilder().append(
        LmlpDatasetData, filters={"id": node.pk, "attributes.elements": {"contains": ["C"]}}
    )
    assert found.count() == 1


def test_a_stored_dataset_forgets_its_arrays_and_reads_them_again(sn2_frames):
    node = LmlpDatasetData.from_atoms(sn2_frames[:3])
    node.release_arrays()  # not stored yet: the arrays are all it has, so they stay
    assert node.count == 3 and len(node.conformations.arrays["ids"]) == 3
    node.store()
    ids = node.ids
    first = node.conformations
    assert node.conformations is first  # read once, then kept
    node.release_arrays()
    again = node.conformations
    assert again is not first and node.ids == ids  # read from the repository again, the same
    np.testing.assert_array_equal(again.arrays["positions"], first.arrays["positions"])


def test_stored_dataset_is_immutable(sn2_frames):
    node = LmlpDatasetData.from_atoms(sn2_frames[:2]).store()
    with pytest.raises(ModificationNotAllowed):
        node.base.attributes.set("count", 5)
    with pytest.raises(ModificationNotAllowed):
        node.base.repository.put_object_from_bytes(b"x", "conformations.npz")


def test_nan_forces_are_refused_naming_the_conformation(sn2_frames):
    frames = [a.copy() for a in sn2_frames[:3]]
    for atoms, original in zip(frames, sn2_frames[:3]):
        atoms.info["energy"] = reference_label(original, "energy")
        atoms.arrays["forces"] = reference_label(original, "forces").copy()
    frames[2].arrays["forces"][1, 0] = np.nan
    with pytest.raises(DatasetError, match=r"conformation 2 \(.*\) has NaN or infinite forces"):
        LmlpDatasetData.from_atoms(frames)


def test_unlabelled_and_empty_datasets_are_not_trainable(sn2_frames):
    empty = LmlpDatasetData.from_atoms([])
    assert empty.count == 0 and empty.training_problems() == ["lmlp.dataset<unstored> is empty"]
    bare = [Atoms(a.get_chemical_symbols(), positions=a.positions) for a in sn2_frames[:3]]
    mixed = LmlpDatasetData.from_atoms([*sn2_frames[:2], *bare])
    assert mixed.base.attributes.get("labelled_count") == 2
    (problem,) = mixed.training_problems()
    assert "3 of 5 conformations have no energy or forces (index 2, 3, 4)" in problem


def test_structure_and_trajectory_conversions(sn2_frames):
    frames = sn2_frames[:4]
    structures = LmlpDatasetData.from_atoms(frames).to_structures()
    assert all(isinstance(s, orm.StructureData) for s in structures)
    unlabelled = LmlpDatasetData.from_structures(structures)
    np.testing.assert_allclose(unlabelled.get_array("positions"), np.concatenate([a.positions for a in frames]))
    assert unlabelled.base.attributes.get("labelled_count") == 0

    same_species = [a for a in sn2_frames if a.get_chemical_symbols() == frames[0].get_chemical_symbols()][:3]
    dataset = LmlpDatasetData.from_atoms(same_species)
    trajectory = dataset.to_trajectory()
    assert trajectory.numsteps == 3
    back = LmlpDatasetData.from_trajectory(trajectory)
    np.testing.assert_allclose(back.get_array("energy"), dataset.get_array("energy"))
    np.testing.assert_allclose(back.get_array("forces"), dataset.get_array("forces"))
    with pytest.raises(DatasetError, match="conformation 1 .* has other species"):
        LmlpDatasetData.from_atoms([sn2_frames[0], Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])]).to_trajectory()


def test_pymatgen_conversions_keep_labels(sn2_frames):
    from pymatgen.core import Molecule, Structure

    dataset = LmlpDatasetData.from_atoms(sn2_frames[:3])
    molecules = dataset.to_pymatgen()
    assert all(isinstance(m, Molecule) for m in molecules)
    assert molecules[0].charge == -1
    back = LmlpDatasetData.from_pymatgen(molecules)
    np.testing.assert_allclose(back.get_array("energy"), dataset.get_array("energy"))
    np.testing.assert_allclose(back.get_array("forces"), dataset.get_array("forces"))
    assert back.ids == dataset.ids

    crystal = bulk("Cu", "fcc", a=3.6, cubic=True)
    crystal.info["energy"] = -14.9
    crystal.arrays["forces"] = np.zeros((4, 3))
    periodic = LmlpDatasetData.from_atoms([crystal])
    (structure,) = periodic.to_pymatgen()
    assert isinstance(structure, Structure)
    np.testing.assert_allclose(structure.lattice.matrix, crystal.cell.array)
    again = LmlpDatasetData.from_pymatgen([structure])
    assert again.get_array("energy")[0] == -14.9 and again.get_array("pbc").all()


def test_merge_is_a_calcfunction_that_keeps_each_conformation_once(sn2_frames):
    first = LmlpDatasetData.from_atoms(sn2_frames[:5], label_method="PBE/def2-SVP").store()
    second = LmlpDatasetData.from_atoms(sn2_frames[3:9], label_method="PBE/def2-SVP").store()
    merged = merge_datasets(a=first, b=second)
    assert merged.count == 9
    assert merged.ids == [conformation_id(a) for a in sn2_frames[:9]]
    assert merged.label_method == "PBE/def2-SVP"
    # provenance: the merged set was created by a calcfunction whose inputs are both datasets
    creator = merged.creator
    assert {link.node.pk for link in creator.base.links.get_incoming().all()} == {first.pk, second.pk}


def test_extxyz_that_cannot_be_read_is_named(tmp_path):
    bad = tmp_path / "broken.extxyz"
    bad.write_text("3\nnot an extxyz header\nH 0 0\n")
    with pytest.raises(DatasetError, match="broken.extxyz"):
        LmlpDatasetData.from_extxyz(bad)


def test_full_sn2_pool_is_stored_compactly():
    dataset = LmlpDatasetData.from_extxyz(SN2 / "pool_b.extxyz").store()
    size = len(dataset.base.repository.get_object_content("conformations.npz", mode="rb"))
    # positions and forces in float64 plus per-conformation arrays: close to the raw numbers
    raw = dataset.base.attributes.get("n_atoms") * 7 * 8 + dataset.count * (9 * 8 + 3 + 4 * 8 + 32 * 4)
    assert dataset.count == 395 and size < 1.3 * raw + 20_000


def test_a_fully_labelled_stored_dataset_is_checked_without_reading_its_archive(sn2_frames):
    """Submitting a training job checks every dataset; the stored count answers, not the archive."""
    stored = LmlpDatasetData.from_atoms(sn2_frames[:4]).store()
    fresh = orm.load_node(stored.pk)
    assert fresh.training_problems() == []
    assert getattr(fresh, "_cache", None) is None  # the archive was not loaded
    assert fresh.conformations.labelled.all()  # and it agrees with the archive
