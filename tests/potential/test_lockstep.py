"""Lockstep: ASE simulations whose force calls are batched into one ensemble evaluation per round."""

import numpy as np
import pytest
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.optimize import BFGS

from aiida_lmlp.potential import EeACSF, Ensemble, LmlpCalculator
from aiida_lmlp.potential.exploration.lockstep import Lockstep, LockstepCalculator


def langevin(atoms, calculator, steps, seed):
    """Run ``steps`` Langevin steps of a copy of ``atoms`` with ``calculator``; return the copy."""
    working = atoms.copy()
    working.calc = calculator
    dynamics = Langevin(working, 0.5, temperature_K=600, friction=0.02, fixcm=False, rng=np.random.default_rng(seed))
    dynamics.run(steps)
    return working


def test_simulations_in_lockstep_follow_their_sequential_runs_with_one_evaluation_per_round(sn2_model, sn2_frames):
    starts, steps = sn2_frames[:5], 8
    sequential = [langevin(atoms, LmlpCalculator(sn2_model), steps, seed) for seed, atoms in enumerate(starts)]
    hub = Lockstep(sn2_model)
    finished = []
    simulations = [
        (lambda atoms=atoms, seed=seed: langevin(atoms, hub.calculator(), steps, seed))
        for seed, atoms in enumerate(starts)
    ]
    together = hub.run(simulations, on_finished=lambda index, value: finished.append(index))
    assert sorted(finished) == [0, 1, 2, 3, 4]
    for alone, batched in zip(sequential, together):
        assert isinstance(batched.calc, LockstepCalculator)
        # batched evaluations round differently in the last bits (1e-16); 8 Langevin steps amplify that to
        # a few 1e-10 on some CPUs, still eight orders of magnitude below any real difference of dynamics
        np.testing.assert_allclose(batched.positions, alone.positions, rtol=0, atol=1e-8)
        np.testing.assert_allclose(batched.get_velocities(), alone.get_velocities(), rtol=0, atol=1e-8)
        assert batched.calc.results["energy"] == pytest.approx(alone.calc.results["energy"], rel=1e-12)
        # a standard deviation of nearly equal members loses digits: compared in eV
        assert batched.calc.results["energy_uncertainty"] == pytest.approx(
            alone.calc.results["energy_uncertainty"], abs=1e-9
        )
        np.testing.assert_allclose(
            batched.calc.results["forces_uncertainty"], alone.calc.results["forces_uncertainty"], rtol=0, atol=1e-8
        )
    # ASE's Langevin asks for forces once before the first step and once per step: one evaluation per
    # round for all five simulations
    assert hub.evaluations == steps + 1 and hub.structures_evaluated == 5 * (steps + 1)


def test_batch_atoms_caps_the_batch(sn2_model, sn2_frames):
    starts = sn2_frames[:4]
    sizes = [len(atoms) for atoms in starts]
    hub = Lockstep(sn2_model, batch_atoms=sizes[0] + sizes[1])
    hub.run([(lambda atoms=atoms: langevin(atoms, hub.calculator(), 2, 0)) for atoms in starts])
    assert sizes[0] + sizes[1] + sizes[2] > sizes[0] + sizes[1]  # three never fit
    assert hub.structures_evaluated == 4 * 3 and hub.evaluations > 3
    one_by_one = Lockstep(sn2_model, batch_atoms=1)
    one_by_one.run([(lambda atoms=atoms: langevin(atoms, one_by_one.calculator(), 2, 0)) for atoms in starts])
    assert one_by_one.evaluations == one_by_one.structures_evaluated == 4 * 3
    with pytest.raises(ValueError, match="batch_atoms must be at least 1"):
        Lockstep(sn2_model, batch_atoms=0)


def test_a_structure_the_model_cannot_handle_fails_only_its_own_simulation(sn2_model, sn2_frames):
    from aiida_lmlp.potential import StructureError

    squeezed = sn2_frames[1].copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.1, 0, 0]
    sodium = sn2_frames[2].copy()
    sodium.symbols[0] = "Na"
    hub = Lockstep(sn2_model)

    def guarded(atoms, seed):
        try:
            return langevin(atoms, hub.calculator(), 3, seed)
        except StructureError as error:
            return str(error)

    fine0, close, na, fine3 = hub.run(
        [lambda a=a, s=s: guarded(a, s) for s, a in enumerate([sn2_frames[0], squeezed, sodium, sn2_frames[3]])]
    )
    assert "closer than the minimum distance" in close and "Na not in the model" in na
    for seed, (atoms, batched) in enumerate(((sn2_frames[0], fine0), (sn2_frames[3], fine3))):
        alone = langevin(atoms, LmlpCalculator(sn2_model), 3, 3 * seed)
        np.testing.assert_allclose(batched.positions, alone.positions, rtol=0, atol=1e-10)


def test_periodic_cells_and_molecules_are_evaluated_in_separate_batches():
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cell.rattle(0.05, seed=1)
    other = cell.copy()
    other.rattle(0.05, seed=2)
    cluster = cell.copy()
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    model = Ensemble.new(
        ["Cu"], EeACSF.from_paper(["Cu"], cutoff=4.5), members=2, hidden=(8,), reference_energies={"Cu": -1.0}, seed=0
    )
    model.initialize_standardization([cell, other, cluster])
    hub = Lockstep(model)

    def relax(atoms):
        working = atoms.copy()
        working.calc = hub.calculator()
        BFGS(working, logfile=None).run(fmax=0.01, steps=3)
        return working

    results = hub.run([lambda a=a: relax(a) for a in (cell, cluster, other)])
    for start, batched in zip((cell, cluster, other), results):
        alone = start.copy()
        alone.calc = LmlpCalculator(model)
        BFGS(alone, logfile=None).run(fmax=0.01, steps=3)
        np.testing.assert_allclose(batched.positions, alone.positions, rtol=0, atol=1e-10)
        if start.pbc.all():
            np.testing.assert_allclose(batched.get_stress(), alone.get_stress(), rtol=1e-10, atol=1e-12)
        else:
            assert "stress" not in batched.calc.results
    # every round: one batch of the two cells, one of the cluster
    assert hub.structures_evaluated == 3 * hub.evaluations / 2


def test_outside_a_run_the_calculator_refuses_and_errors_of_a_simulation_propagate(sn2_model, sn2_frames):
    hub = Lockstep(sn2_model)
    atoms = sn2_frames[0].copy()
    atoms.calc = hub.calculator()
    with pytest.raises(RuntimeError, match="only inside a simulation of Lockstep.run"):
        atoms.get_forces()

    def broken():
        langevin(sn2_frames[0], hub.calculator(), 1, 0)
        raise KeyError("a bug in a simulation")

    with pytest.raises(KeyError, match="a bug in a simulation"):
        hub.run([lambda: langevin(sn2_frames[1], hub.calculator(), 5, 1), broken])
    # the hub is free again afterwards
    assert len(hub.run([lambda: langevin(sn2_frames[1], hub.calculator(), 1, 1)])) == 1


def test_prefetch_evaluates_a_simulations_structures_in_one_request(sn2_model, sn2_frames):
    from aiida_lmlp.potential import StructureError

    squeezed = sn2_frames[1].copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.1, 0, 0]
    hub = Lockstep(sn2_model)
    structures = [a.copy() for a in (sn2_frames[0], squeezed, sn2_frames[2])]
    for atoms in structures:
        atoms.calc = hub.calculator()

    def simulation():
        hub.prefetch(structures)
        after_prefetch = hub.evaluations
        energies = [structures[0].get_potential_energy(), structures[2].get_potential_energy()]
        assert hub.evaluations == after_prefetch  # the simulation's own calls found the results
        with pytest.raises(StructureError, match="closer than the minimum distance"):
            structures[1].get_forces()  # the one that failed is evaluated again, alone, and fails
        hub.prefetch(structures[::2])  # nothing changed: nothing to evaluate
        return energies

    (energies,) = hub.run([simulation])
    # one batch of three that failed, the three again one by one, then the failed one alone
    assert hub.evaluations == 1 + 3 + 1 and hub.structures_evaluated == 3 + 3 + 1
    for atoms, energy in zip((sn2_frames[0], sn2_frames[2]), energies):
        assert energy == pytest.approx(float(sn2_model.evaluate(atoms).energy[0]), rel=1e-13)


def test_call_batches_what_the_simulations_pass_in_one_round_and_isolates_failures(sn2_model):
    hub = Lockstep(sn2_model)
    calls = []

    def square(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("cannot square 'bad'")
        return [x * x for x in items]

    def simulation(first, second):
        out = [hub.call(square, first)]
        try:
            out.append(hub.call(square, second))
        except ValueError as error:
            out.append(str(error))
        return out

    results = hub.run([lambda: simulation([1, 2], [3]), lambda: simulation([4], ["bad"]), lambda: simulation([5], [6])])
    assert results == [[[1, 4], [9]], [[16], "cannot square 'bad'"], [[25], [36]]]
    # round 1: one call for all; round 2: the combined call failed, then each simulation's own items
    assert calls == [[1, 2, 4, 5], [3, "bad", 6], [3], ["bad"], [6]]
    with pytest.raises(RuntimeError, match="only inside a simulation"):
        hub.call(square, [1])


def test_recorded_frames_get_their_fingerprints_in_one_call_per_round(sn2_model, sn2_frames, monkeypatch):
    from aiida_lmlp.potential.exploration import runner as exploration

    sizes = []
    original = exploration.descriptor_fingerprints

    def counted(model, frames):
        sizes.append(len(frames))
        return original(model, frames)

    monkeypatch.setattr(exploration, "descriptor_fingerprints", counted)
    result = exploration.explore(sn2_model, sn2_frames[:4], {"kind": "md", "steps": 4, "sample_every": 2, "seed": 1})
    assert sizes == [4, 4, 4]  # steps 0, 2, 4 of the four trajectories, one call each
    for frame in result.frames:  # the same fingerprint as computed for the frame alone
        np.testing.assert_allclose(
            frame.info["lmlp_fingerprint"], original(sn2_model, [frame])[0], rtol=1e-12, atol=1e-12
        )
