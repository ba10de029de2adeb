"""The screening calcfunction: what a campaign already has is carried from one screening to the next.

Hand-made visited conformations (SN2 geometries with chosen uncertainties and fingerprints) and
labelled datasets; the screenings run for real as calcfunctions on aiida-core's test profile.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.formats.conformation_arrays import ConformationArrays
from aiida_lmlp.workflows.screening import KNOWN_FINGERPRINTS, KNOWN_KEYS, geometry_keys, screen_candidates

WIDTH = 4  # fingerprint length


def _visited(frames, seed: int) -> LmlpDatasetData:
    """``frames`` as an exploration's output: every one uncertain (3-5 eV/atom), random fingerprints."""
    rng = np.random.default_rng(seed)
    arrays = dict(LmlpDatasetData.from_atoms(frames).conformations.arrays)
    count, atoms = len(frames), int(arrays["counts"].sum())
    arrays.update(
        predicted_energy=np.zeros(count),
        predicted_forces=np.zeros((atoms, 3)),
        energy_uncertainty=rng.uniform(3.0, 5.0, count) * arrays["counts"],
        forces_uncertainty=np.zeros((atoms, 3)),
        fingerprint=rng.normal(size=(count, WIDTH)),
    )
    return LmlpDatasetData(ConformationArrays(arrays), label_method="").store()


def _labelled(frames) -> LmlpDatasetData:
    return LmlpDatasetData.from_atoms(frames).store()


def _screen(visited, **inputs) -> dict:
    potential = orm.Dict({"rmse_energy_per_atom": 0.05, "rmse_forces": 1.0}).store()
    settings = orm.Dict({"max_per_iteration": 3, "energy_upper": 1000.0})
    return screen_candidates(visited, potential, settings, orm.Int(100), **inputs)


@pytest.fixture(scope="module")
def two_iterations(aiida_profile, sn2_frames):
    """Two screenings as a campaign runs them, and the second again with every dataset as input."""
    initial = _labelled(sn2_frames[:6])
    first_visited = _visited(sn2_frames[:3] + sn2_frames[10:20], seed=1)  # 3 of them are initial geometries
    first = _screen(first_visited, l000=initial)
    # the labels of the selection as a labelling job returns them: the same arrays (fingerprints
    # included) with energies and forces (here: the pool's own labels of those geometries)
    pool = dict(zip(geometry_keys(_labelled(sn2_frames[10:20])), sn2_frames[10:20]))
    arrays = dict(first["selected"].conformations.arrays)
    frames = [pool[key] for key in geometry_keys(first["selected"])]
    arrays["energy"] = np.array([frame.get_potential_energy() for frame in frames])
    arrays["forces"] = np.concatenate([frame.get_forces() for frame in frames])
    labelled = LmlpDatasetData(ConformationArrays(arrays), label_method="pool").store()
    second_visited = _visited(sn2_frames[:2] + sn2_frames[10:30], seed=2)
    carried = _screen(second_visited, known=first["known"], l001=labelled)
    everything = _screen(second_visited, s000=first["selected"], l000=initial, l001=labelled)
    return initial, first, labelled, carried, everything


def test_the_known_output_holds_every_geometry_and_the_selections_fingerprints(two_iterations):
    initial, first, _, _, _ = two_iterations
    known = first["known"]
    keys = {key.decode() for key in known.get_array(KNOWN_KEYS)}
    assert keys == set(geometry_keys(initial)) | set(geometry_keys(first["selected"]))
    # the initial labels carry no fingerprints; the three selected conformations do
    np.testing.assert_array_equal(known.get_array(KNOWN_FINGERPRINTS), first["selected"].get_array("fingerprint"))
    assert first["report"]["already_labelled"] == 3 and first["report"]["selected"] == 3


def test_a_screening_from_the_carried_state_decides_as_one_given_every_dataset(two_iterations):
    _, first, _, carried, everything = two_iterations
    assert carried["report"].get_dict() == everything["report"].get_dict()
    assert carried["selected"].ids == everything["selected"].ids
    # the geometries of the initial data and of both selections are known after the second screening
    assert carried["report"]["already_labelled"] == 2 + 3  # two initial geometries, the three labelled ones
    second = {key.decode() for key in carried["known"].get_array(KNOWN_KEYS)}
    assert second >= {key.decode() for key in first["known"].get_array(KNOWN_KEYS)}
    assert second >= set(geometry_keys(carried["selected"]))
    # fingerprints: the first selection's once (its labelled copy adds none), then the second's
    fingerprints = carried["known"].get_array(KNOWN_FINGERPRINTS)
    assert fingerprints.shape == (6, WIDTH)
