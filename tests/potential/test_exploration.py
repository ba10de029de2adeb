"""Exploration (the engine of ``lmlp explore``): protocols, recorded frames, uncertainty stops and bad structures."""

import json

import numpy as np
import pytest
from ase import Atoms

from aiida_lmlp.potential import LmlpCalculator
from aiida_lmlp.potential.exploration import (
    FINGERPRINT_KEY,
    ExplorationProtocol,
    ProtocolError,
    descriptor_fingerprints,
    explore,
    read_visited,
    trajectory_counts,
)

INFO_KEYS = {
    "start_index",
    "step",
    "lmlp_energy",
    "lmlp_energy_uncertainty",
    "stopped",
    "charge",
    "multiplicity",
    "lmlp_fingerprint",
}


def assert_clean(frames):
    """No DFT-label keys, no calculator, the contract's info keys and arrays on every frame."""
    for frame in frames:
        assert frame.calc is None
        assert "energy" not in frame.info and "forces" not in frame.arrays
        assert INFO_KEYS <= set(frame.info)
        assert frame.arrays["lmlp_forces"].shape == frame.arrays["lmlp_forces_uncertainty"].shape == (len(frame), 3)
        fingerprint = frame.info[FINGERPRINT_KEY]
        assert isinstance(fingerprint, np.ndarray) and fingerprint.dtype == np.float64 and fingerprint.ndim == 1
        assert np.isfinite(fingerprint).all()


def test_protocol_defaults_and_errors_name_the_key():
    md = ExplorationProtocol.from_dict({"kind": "md"}).to_dict()
    assert md == {
        "kind": "md",
        "temperature": 300.0,
        "timestep": 0.5,
        "friction": 0.01,
        "seed": 0,
        "replicas": 1,
        "steps": 200,
        "sample_every": 10,
        "stop_energy_uncertainty_per_atom": None,
        "stop_forces_uncertainty": None,
        "max_frames": 10000,
    }
    relax = ExplorationProtocol.from_dict({"kind": "relax", "optimizer": "FIRE"})
    assert (relax.optimizer, relax.fmax, relax.steps, relax.sample_every) == ("fire", 0.05, 200, 1)
    neb = ExplorationProtocol.from_dict({"kind": "neb"})
    assert (neb.images, neb.fmax, neb.steps, neb.climb, neb.sample_every) == (5, 0.1, 100, True, 1)
    assert ExplorationProtocol.from_dict({"kind": "evaluate"}).to_dict()["max_frames"] == 10000
    assert ExplorationProtocol.from_dict({}).to_dict() == md  # kind defaults to md
    # YAML 1.1 reads 1e-3 as a string; it is still a number
    assert (
        ExplorationProtocol.from_dict({"kind": "md", "stop_forces_uncertainty": "1e-3"}).stop_forces_uncertainty == 1e-3
    )
    bad = [
        ({"kind": "md", "temprature": 300}, "temprature", "unknown key"),
        ({"kind": "md", "fmax": 0.1}, "fmax", "does not apply to kind 'md'"),
        ({"kind": "md", "timestep": 0}, "timestep", "> 0"),
        ({"kind": "md", "temperature": -1}, "temperature", "≥ 0"),
        ({"kind": "md", "steps": 2.5}, "steps", "integer"),
        ({"kind": "md", "steps": True}, "steps", "integer"),
        ({"kind": "relax", "optimizer": "lbfgs"}, "optimizer", "bfgs, fire"),
        ({"kind": "neb", "climb": "yes"}, "climb", "true or false"),
        ({"kind": "neb", "images": 0}, "images", "≥ 1"),
        ({"kind": "evaluate", "sample_every": 0}, "sample_every", "≥ 1"),
        ({"kind": "evaluate", "stop_energy_uncertainty_per_atom": -0.1}, "stop_energy_uncertainty_per_atom", "≥ 0"),
        ({"kind": "evaluate", "max_frames": 0}, "max_frames", "≥ 1"),
        ({"kind": "dance"}, "kind", "md, relax, neb, evaluate"),
        ({"kind": None}, "kind", "md, relax, neb, evaluate"),
    ]
    for data, key, words in bad:
        with pytest.raises(ProtocolError) as error:
            ExplorationProtocol.from_dict(data)
        assert error.value.key == key and f"'{key}'" in str(error.value) and words in str(error.value), str(error.value)


def test_evaluate_reproduces_the_calculator_frame_by_frame(sn2_model, sn2_frames, tmp_path):
    starts = sn2_frames[:4]
    no_charge = starts[3].copy()
    no_charge.info = {}
    starts[3] = no_charge
    out = tmp_path / "visited.extxyz"
    result = explore(sn2_model, starts, {"kind": "evaluate"}, out=out)
    written = read_visited(out)
    assert len(result.frames) == len(written) == 4
    assert_clean(result.frames)
    assert_clean(written)
    for index, (atoms, frame, read_back) in enumerate(zip(starts, result.frames, written)):
        reference = atoms.copy()
        reference.calc = LmlpCalculator(sn2_model)
        reference.get_forces()
        r = reference.calc.results
        assert frame.info["start_index"] == index and frame.info["step"] == 0 and frame.info["stopped"] is False
        # the four structures were evaluated in one batch: equal up to the rounding of a batched evaluation
        assert frame.info["lmlp_energy"] == pytest.approx(r["energy"], rel=1e-13)
        assert frame.info["lmlp_energy_uncertainty"] == pytest.approx(r["energy_uncertainty"], rel=1e-11)
        np.testing.assert_allclose(frame.arrays["lmlp_forces"], r["forces"], rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(frame.arrays["lmlp_forces_uncertainty"], r["forces_uncertainty"], rtol=1e-11)
        np.testing.assert_array_equal(read_back.positions, atoms.positions)
        assert read_back.info["lmlp_energy"] == pytest.approx(r["energy"], abs=1e-8)
        np.testing.assert_allclose(read_back.arrays["lmlp_forces"], r["forces"], atol=1e-7)
        np.testing.assert_allclose(read_back.arrays["lmlp_forces_uncertainty"], r["forces_uncertainty"], atol=1e-7)
        assert read_back.info["stopped"] is False
    # charge and multiplicity are carried through, with defaults 0 and 1
    assert [(f.info["charge"], f.info["multiplicity"]) for f in written] == [(-1, 1)] * 3 + [(0, 1)]
    text = out.read_text()
    assert " energy=" not in text and ":forces:" not in text and "Properties=species:S:1:pos:R:3:lmlp_forces" in text
    for t in result.trajectories:
        assert (t.steps, t.frames, t.stopped_early, t.reason, t.error) == (0, 1, False, None, None)
    # the summary is plain JSON and counts the frames
    summary = json.loads(json.dumps(result.summary()))
    assert summary["frames"] == 4 and summary["protocol"]["kind"] == "evaluate" and summary["complete"] is True


def test_relax_lowers_the_energy_and_records_every_step(sn2_model, sn2_frames):
    for optimizer in ("bfgs", "fire"):
        # the untrained model's surface is arbitrary: from conformation 0, BFGS pulls C and Cl
        # together until the minimum-distance check stops it, which a later test covers
        result = explore(
            sn2_model, sn2_frames[1:2], {"kind": "relax", "optimizer": optimizer, "steps": 12, "fmax": 0.05}
        )
        (trajectory,) = result.trajectories
        steps = [f.info["step"] for f in result.frames]
        assert steps == list(range(trajectory.steps + 1)) and trajectory.frames == len(steps)
        energies = [f.info["lmlp_energy"] for f in result.frames]
        assert energies[-1] < energies[0] - 0.05
        largest_force = np.linalg.norm(result.frames[-1].arrays["lmlp_forces"], axis=1).max()
        assert (trajectory.converged and largest_force < 0.05) or (not trajectory.converged and trajectory.steps == 12)
        assert_clean(result.frames)


def test_md_is_reproducible_and_records_every_nth_and_the_last_step(sn2_model, sn2_frames):
    protocol = {"kind": "md", "steps": 12, "sample_every": 5, "temperature": 500, "seed": 7}
    first = explore(sn2_model, sn2_frames[:2], protocol)
    repeated = explore(sn2_model, sn2_frames[:2], protocol)
    again = explore(sn2_model, sn2_frames[:1], protocol)  # trajectory 0 does not depend on the others
    other = explore(sn2_model, sn2_frames[:1], {**protocol, "seed": 8})
    assert [(f.info["start_index"], f.info["step"]) for f in first.frames] == [
        (i, s) for i in (0, 1) for s in (0, 5, 10, 12)
    ]
    assert all(t.steps == 12 and t.frames == 4 and t.converged is None for t in first.trajectories)
    for a, b in zip(first.frames, repeated.frames):  # the same run twice: the same bits
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.info["lmlp_energy"] == b.info["lmlp_energy"]
    assert len(again.frames) == 4
    for a, b in zip(first.frames, again.frames):  # alone, it was evaluated unbatched: equal up to rounding
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-11)
        assert a.info["lmlp_energy"] == pytest.approx(b.info["lmlp_energy"], rel=1e-13)
    assert np.abs(first.frames[3].positions - other.frames[3].positions).max() > 1e-4
    assert np.abs(first.frames[3].positions - first.frames[0].positions).max() > 1e-3  # the atoms moved
    assert_clean(first.frames)


def test_md_replicas_run_from_every_start_with_their_own_noise(sn2_model, sn2_frames):
    protocol = {"kind": "md", "steps": 6, "sample_every": 3, "temperature": 500, "seed": 4}
    single = explore(sn2_model, sn2_frames[:2], protocol)
    result = explore(sn2_model, sn2_frames[:2], {**protocol, "replicas": 3})
    assert [(t.start_index, t.replica) for t in result.trajectories] == [(i, r) for i in (0, 1) for r in range(3)]
    assert [(f.info["start_index"], f.info["replica"], f.info["step"]) for f in result.frames] == [
        (i, r, s) for i in (0, 1) for r in range(3) for s in (0, 3, 6)
    ]
    assert "replica" not in single.frames[0].info and single.summary()["trajectories"][0]["replica"] == 0
    # replica 0 is the trajectory a run without replicas makes (up to the rounding of other batches)
    for a, b in zip([f for f in result.frames if f.info["replica"] == 0], single.frames):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-10)
    # the replicas of one start structure draw their own velocities and noise
    last = {(f.info["start_index"], f.info["replica"]): f.positions for f in result.frames if f.info["step"] == 6}
    for i in (0, 1):
        assert min(np.abs(last[i, r] - last[i, q]).max() for r, q in ((0, 1), (0, 2), (1, 2))) > 1e-3
    assert_clean(result.frames)
    for bad, problem in (({"kind": "relax", "replicas": 2}, "does not apply"), ({"replicas": 0}, "≥ 1")):
        with pytest.raises(ProtocolError, match=problem) as caught:
            ExplorationProtocol.from_dict(bad)
        assert caught.value.key == "replicas"


def test_a_tiny_threshold_stops_every_trajectory_at_the_first_step(sn2_model, sn2_frames):
    for kind, key, words in (
        ("md", "stop_energy_uncertainty_per_atom", "energy uncertainty"),
        ("relax", "stop_forces_uncertainty", "forces uncertainty"),
    ):
        result = explore(sn2_model, sn2_frames[:3], {"kind": kind, key: 1e-6, "steps": 5})
        assert len(result.frames) == 3
        for index, (trajectory, frame) in enumerate(zip(result.trajectories, result.frames)):
            assert trajectory.stopped_early and trajectory.steps == 0 and trajectory.frames == 1
            assert trajectory.reason.startswith(words) and trajectory.reason.endswith("> 1e-06")
            assert frame.info["stopped"] is True and frame.info["step"] == 0 and frame.info["start_index"] == index


def test_a_trajectory_stops_at_the_first_step_past_the_threshold(sn2_model, sn2_frames):
    protocol = {"kind": "md", "steps": 10, "sample_every": 1, "temperature": 800, "seed": 1}
    free = explore(sn2_model, sn2_frames[:1], protocol)
    values = [f.arrays["lmlp_forces_uncertainty"].max() for f in free.frames]
    assert max(values[1:]) > values[0], "the uncertainty should change along the trajectory"
    threshold = 0.5 * (values[0] + max(values[1:]))
    stop = next(k for k, v in enumerate(values) if v > threshold)
    stopped = explore(sn2_model, sn2_frames[:1], {**protocol, "stop_forces_uncertainty": threshold})
    (trajectory,) = stopped.trajectories
    assert trajectory.stopped_early and trajectory.steps == stop and trajectory.frames == stop + 1
    assert [f.info["stopped"] for f in stopped.frames] == [False] * stop + [True]
    np.testing.assert_array_equal(stopped.frames[-1].positions, free.frames[stop].positions)
    assert trajectory.reason == f"forces uncertainty {values[stop]:.4g} eV/Å > {threshold:g}"
    # two trajectories, one stopped at ``stop``, one run to the end: the campaign's per-iteration counts
    both = explore(sn2_model, sn2_frames[:1] * 2, {**protocol, "stop_forces_uncertainty": threshold})
    both.trajectories[1] = free.trajectories[0]
    assert trajectory_counts(both.summary()) == {"trajectories": 2, "stopped_early": 1, "mean_steps": (stop + 10) / 2}
    assert trajectory_counts({}) == {"trajectories": 0, "stopped_early": 0, "mean_steps": 0.0}


def test_neb_runs_endpoint_pairs_and_refuses_an_odd_count(sn2_model, sn2_frames, tmp_path):
    start = sn2_frames[0]
    end = start.copy()
    end.positions[3] += [0.15, -0.1, 0.05]
    other = sn2_frames[2]
    pairs = [start, end, other, sn2_frames[5]]  # the second pair does not fit together
    assert len(other) != len(sn2_frames[5])
    result = explore(sn2_model, pairs, {"kind": "neb", "images": 3, "steps": 3, "climb": False})
    first, second = result.trajectories
    assert first.error is None and second.error is not None and "endpoints differ" in second.error
    assert second.frames == 0
    path = [f for f in result.frames if f.info["start_index"] == 0]
    at_start = [f.info["neb_image"] for f in path if f.info["step"] == 0]
    assert at_start == [0, 1, 2, 3, 4]  # endpoints once, at step 0
    later = [(f.info["step"], f.info["neb_image"]) for f in path if f.info["step"] > 0]
    assert later == [(s, i) for s in range(1, first.steps + 1) for i in (1, 2, 3)]
    np.testing.assert_array_equal(path[0].positions, start.positions)
    np.testing.assert_array_equal(path[4].positions, end.positions)
    assert all(f.info["charge"] == -1 for f in path)
    assert_clean(result.frames)
    out = tmp_path / "visited.extxyz"
    with pytest.raises(ValueError, match="odd number"):
        explore(sn2_model, pairs[:3], {"kind": "neb"}, out=out)
    assert not out.exists()


def test_neb_images_are_evaluated_in_one_batch_per_step_as_ases_neb_does_one_by_one(sn2_model, sn2_frames):
    from ase.mep import NEB
    from ase.optimize import FIRE

    start = sn2_frames[0]
    end = start.copy()
    end.positions[3] += [0.15, -0.1, 0.05]
    calls = []
    evaluate = sn2_model.evaluate

    def counted(structures, **kwargs):
        calls.append(len(structures))
        return evaluate(structures, **kwargs)

    protocol = {"kind": "neb", "images": 3, "steps": 4, "climb": False}
    sn2_model.evaluate = counted
    try:
        result = explore(sn2_model, [start, end], protocol)
    finally:
        del sn2_model.evaluate  # the instance attribute shadowed the method
    # the endpoints once, then the three intermediate images together at every force call
    assert calls[0] == 1 and calls[1] == 1 and set(calls[2:]) == {3}
    # the same path as ASE's NEB with one LmlpCalculator per image, image by image
    images = [start.copy() for _ in range(4)] + [end.copy()]
    for image in images:
        image.calc = LmlpCalculator(sn2_model)
    neb = NEB(images, climb=False, method="improvedtangent")
    neb.interpolate(method="idpp", mic=False)
    FIRE(neb, logfile=None).run(fmax=0.1, steps=4)
    last = [f for f in result.frames if f.info["step"] == result.trajectories[0].steps]
    assert [f.info["neb_image"] for f in last] == [1, 2, 3]
    for frame, image in zip(last, images[1:4]):
        np.testing.assert_allclose(frame.positions, image.positions, rtol=0, atol=1e-10)


def test_structures_the_model_cannot_handle_are_reported_and_skipped(sn2_model, sn2_frames):
    sodium = Atoms("NaCl", positions=[[0, 0, 0], [0, 0, 2.4]])
    squeezed = sn2_frames[1].copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.1, 0, 0]
    starts = [sn2_frames[0], sodium, squeezed, sn2_frames[2]]
    result = explore(sn2_model, starts, {"kind": "relax", "steps": 2})
    good0, na, close, good3 = result.trajectories
    assert "Na not in the model" in na.error and "closer than the minimum distance" in close.error
    assert (na.frames, close.frames, na.max_energy_uncertainty_per_atom) == (0, 0, None)
    assert good0.error is None and good3.error is None and good0.frames == good3.frames == 3
    assert {f.info["start_index"] for f in result.frames} == {0, 3}


def test_max_frames_caps_the_output(sn2_model, sn2_frames):
    result = explore(sn2_model, sn2_frames[:4], {"kind": "evaluate", "max_frames": 2})
    assert len(result.frames) == 2 and result.summary()["frames"] == 2
    assert [t.truncated for t in result.trajectories] == [False, False, True, True]
    # the trajectories run in lockstep, so the cap falls on both: steps 0 of both, then step 1 of the first
    result = explore(sn2_model, sn2_frames[:2], {"kind": "relax", "steps": 10, "max_frames": 3})
    assert len(result.frames) == 3 and [t.truncated for t in result.trajectories] == [True, True]
    assert [t.frames for t in result.trajectories] == [2, 1]
    assert [(f.info["start_index"], f.info["step"]) for f in result.frames] == [(0, 0), (0, 1), (1, 0)]


def test_progressive_output_survives_a_kill(sn2_model, sn2_frames, tmp_path):
    out, summary = tmp_path / "visited.extxyz", tmp_path / "summary.json"
    explore(sn2_model, sn2_frames[:3], {"kind": "evaluate"}, out=out, summary=summary)
    assert json.loads(summary.read_text())["complete"] is True
    text = out.read_text()
    cut = tmp_path / "cut.extxyz"
    cut.write_text(text[: len(text) - 40])  # killed while writing the last frame
    assert len(read_visited(cut)) == 2
    cut.write_text("")
    assert read_visited(cut) == []


def test_an_error_during_a_trajectory_keeps_its_frames_and_spares_the_others(sn2_model, sn2_frames, monkeypatch):
    from aiida_lmlp.potential import StructureError

    evaluate, first = sn2_model.evaluate, sn2_frames[0]
    calls, seen = [], []  # the number of structures of every evaluation; evaluations with the first

    def fail_from_the_fifth_evaluation_of_the_first(structures, **kwargs):
        calls.append(len(structures))
        if any(s.get_chemical_formula() == first.get_chemical_formula() for s in structures):
            seen.append(1)
            if len(seen) >= 5:  # the fifth batch with it, and every evaluation of it after that
                raise StructureError("#0", "atoms 0 (C) and 1 (Cl) are 0.2 Å apart")
        return evaluate(structures, **kwargs)

    assert sn2_frames[1].get_chemical_formula() != first.get_chemical_formula()
    monkeypatch.setattr(sn2_model, "evaluate", fail_from_the_fifth_evaluation_of_the_first)
    result = explore(sn2_model, sn2_frames[:2], {"kind": "relax", "steps": 6, "sample_every": 5})
    # both relaxations in one batch per step; the failed batch was retried structure by structure
    assert calls[:4] == [2, 2, 2, 2] and calls[4:7] == [2, 1, 1] and set(calls[7:]) == {1}
    broken, fine = result.trajectories
    assert "0.2 Å apart" in broken.error and broken.steps == 3
    assert [(f.info["start_index"], f.info["step"]) for f in result.frames] == [(0, 0), (0, 3), (1, 0), (1, 5), (1, 6)]
    assert broken.frames == 2 and fine.error is None and fine.frames == 3


def mean_standardised_descriptor(model, atoms):
    """The fingerprint written out by hand: α (G − β) of each atom's element, mean over members, then over atoms."""
    import torch

    values, species = model.descriptors_of([atoms])
    rows = []
    for descriptor, k in zip(values, species.tolist()):
        network = model.networks.networks[model.elements[k]]
        rows.append(torch.stack([network.alpha[p] * (descriptor - network.beta[p]) for p in range(model.members)]))
    return torch.stack(rows).mean(dim=(0, 1)).detach().numpy()


def test_every_frame_carries_the_mean_standardised_descriptor(sn2_model, sn2_frames, tmp_path):
    import copy

    import torch

    model = copy.deepcopy(sn2_model)  # the fixture is shared
    with torch.no_grad():  # the standardisation must matter: α, β differ between members, as after training
        for network in model.networks.networks.values():  # (through their trainable coordinates)
            network.scale.mul_(torch.linspace(0.8, 1.2, model.members, dtype=torch.float64)[:, None])
            network.shift.add_(torch.linspace(-0.1, 0.1, model.members, dtype=torch.float64)[:, None])
    start = sn2_frames[0]
    rotated = start.copy()
    rotated.rotate(73, (1, -2, 0.5), center="COM")
    rotated.translate([3.0, -1.0, 2.0])
    rotated = rotated[np.random.default_rng(0).permutation(len(start))]
    starts = [start, rotated, sn2_frames[7]]
    out = tmp_path / "visited.extxyz"
    result = explore(model, starts, {"kind": "evaluate"}, out=out)
    neb = explore(model, [start, start], {"kind": "neb", "images": 2, "steps": 1})  # several frames per record
    assert_clean(result.frames + neb.frames)
    assert len(start) != len(sn2_frames[7])  # one length, whatever the composition
    for atoms, frame in zip(starts, result.frames):
        fingerprint = frame.info[FINGERPRINT_KEY]
        assert fingerprint.shape == (len(model.descriptor),)
        np.testing.assert_allclose(fingerprint, mean_standardised_descriptor(model, atoms), rtol=1e-12, atol=1e-12)
    # invariant to rotation, translation and permutation; different for another conformation
    first, turned, other = (f.info[FINGERPRINT_KEY] for f in result.frames)
    np.testing.assert_allclose(turned, first, rtol=1e-10, atol=1e-10)
    assert np.abs(other - first).max() > 1e-3
    assert np.abs(first - descriptor_fingerprints(sn2_model, [start])[0]).max() > 1e-3  # α, β are used
    for frame in neb.frames:
        np.testing.assert_array_equal(frame.info[FINGERPRINT_KEY], descriptor_fingerprints(model, [frame])[0])
    # the extxyz round trip is exact (shortest round-trip float representation) ...
    written = read_visited(out)
    for frame, read_back in zip(result.frames, written):
        np.testing.assert_array_equal(read_back.info[FINGERPRINT_KEY], frame.info[FINGERPRINT_KEY])
    # ... and the dataset layer stores the fingerprints as one (S, F) array
    from aiida_lmlp.formats.conformation_arrays import ConformationArrays

    packed = ConformationArrays.from_atoms(written)
    np.testing.assert_array_equal(packed.arrays["fingerprint"], np.array([first, turned, other]))


def test_read_visited_keeps_short_fingerprints_vectors(tmp_path):
    """ASE's extxyz reader turns 1 number into a scalar and 9 into a 3x3 matrix; read_visited undoes it."""
    from ase.io import write

    path = tmp_path / "visited.extxyz"
    for length in (1, 2, 9):
        frame = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        frame.info[FINGERPRINT_KEY] = np.linspace(-1.5, 2.25, length)
        write(path, frame, format="extxyz")
        (read_back,) = read_visited(path)
        np.testing.assert_array_equal(read_back.info[FINGERPRINT_KEY], frame.info[FINGERPRINT_KEY])
