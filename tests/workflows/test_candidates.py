"""Candidate selection of the active-learning campaign on hand-made cases (pure NumPy, no profile needed)."""

import dataclasses
import json
import math

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import get_distances

from aiida_lmlp.workflows.candidates import (
    TRAJECTORY_STOPS,
    SelectionSettings,
    SelectionSettingsError,
    candidate_ceiling,
    forces_uncertainty_max,
    min_interatomic_distances,
    select_candidates,
)

# powers of two: every threshold and ratio below is exact in floating point
RMSE_E = 2.0**-9  # eV/atom, above the default floor of 1e-3
RMSE_F = 0.125  # eV/Å, above the default floor of 0.05
BELOW, ABOVE = 1 - 1e-9, 1 + 1e-9


def select(energy, forces, distances=None, fingerprints=None, settings=None, budget=0, already=None, rmse=None):
    """select_candidates with the module's RMSEs, all distances 1 Å unless given."""
    energy = np.asarray(energy, dtype=float)
    distances = np.ones_like(energy) if distances is None else distances
    rmse_e, rmse_f = (RMSE_E, RMSE_F) if rmse is None else rmse
    return select_candidates(energy, forces, distances, fingerprints, rmse_e, rmse_f, settings, budget, already)


def test_settings_defaults_and_validation_name_the_keys():
    settings = SelectionSettings.from_dict({})
    assert settings == SelectionSettings() == SelectionSettings.from_dict(None)
    assert settings.to_dict() == {
        "energy_lower": 3.0,
        "forces_lower": 6.0,
        "energy_upper": 30.0,
        "forces_upper": 60.0,
        "min_distance": 0.65,
        "max_per_iteration": 20,
        "rmse_floor_energy": 1e-3,
        "rmse_floor_forces": 0.05,
    }
    custom = SelectionSettings.from_dict(
        {"energy_lower": "1e-1", "forces_upper": math.inf, "max_per_iteration": 5.0, "min_distance": 0}
    )
    assert (custom.energy_lower, custom.forces_upper, custom.max_per_iteration, custom.min_distance) == (
        0.1,
        math.inf,
        5,
        0.0,
    )
    assert isinstance(custom.max_per_iteration, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.energy_lower = 1.0
    bad = [
        ({"energy_lowr": 3}, ("energy_lowr",), "unknown key"),
        ({"energy_lower": 40}, ("energy_lower", "energy_upper"), "thresholds in the wrong order"),
        ({"energy_lower": 30}, ("energy_lower", "energy_upper"), "thresholds in the wrong order"),  # equal
        ({"forces_upper": 5}, ("forces_lower", "forces_upper"), "thresholds in the wrong order"),
        ({"energy_lower": -1}, ("energy_lower",), "≥ 0"),
        ({"min_distance": -0.1}, ("min_distance",), "≥ 0"),
        ({"forces_lower": "many"}, ("forces_lower",), "must be a number"),
        ({"energy_upper": True}, ("energy_upper",), "must be a number"),
        ({"energy_upper": None}, ("energy_upper",), "must be a number"),
        ({"energy_lower": math.nan}, ("energy_lower",), "finite"),
        ({"energy_lower": math.inf}, ("energy_lower",), "finite"),
        ({"max_per_iteration": 0}, ("max_per_iteration",), "integer ≥ 1"),
        ({"max_per_iteration": 2.5}, ("max_per_iteration",), "integer"),
        ({"max_per_iteration": "3"}, ("max_per_iteration",), "integer"),
        ({"rmse_floor_energy": 0}, ("rmse_floor_energy",), "> 0"),
        ({"rmse_floor_forces": -1}, ("rmse_floor_forces",), "> 0"),
    ]
    for data, keys, words in bad:
        with pytest.raises(SelectionSettingsError) as error:
            SelectionSettings.from_dict(data)
        assert error.value.keys == keys and words in str(error.value), str(error.value)
        assert all(f"'{key}'" in str(error.value) for key in keys)
        assert isinstance(error.value, ValueError)
    with pytest.raises(SelectionSettingsError, match="'energy_lower'"):
        SelectionSettings(energy_lower=-1.0)  # constructed directly: validated as well
    with pytest.raises(SelectionSettingsError, match="mapping"):
        SelectionSettings.from_dict([("energy_lower", 3)])


def test_every_category_boundary():
    e_low, e_up, f_low, f_up = 3 * RMSE_E, 30 * RMSE_E, 6 * RMSE_F, 60 * RMSE_F
    e_quiet, f_quiet = 0.5 * e_low, 0.5 * f_low  # well inside "known"
    cases = [
        # (ΔE/N eV/atom, max ΔF eV/Å, smallest distance Å, expected category)
        (e_low * BELOW, f_low * BELOW, 1.0, "known"),
        (e_low, f_low, 1.0, "known"),  # at a threshold is not above it
        (e_low * ABOVE, f_quiet, 1.0, "uncertain"),
        (e_quiet, f_low * ABOVE, 1.0, "uncertain"),
        (e_up * BELOW, f_quiet, 1.0, "uncertain"),
        (e_up, f_quiet, 1.0, "uncertain"),
        (e_up * ABOVE, f_quiet, 1.0, "unphysical"),
        (e_quiet, f_up * BELOW, 1.0, "uncertain"),
        (e_quiet, f_up, 1.0, "uncertain"),
        (e_quiet, f_up * ABOVE, 1.0, "unphysical"),
        (e_up * ABOVE, f_low * ABOVE, 1.0, "unphysical"),  # above one upper threshold rejects
        (e_low * ABOVE, f_up * ABOVE, 1.0, "unphysical"),
        (e_up * BELOW, f_up * BELOW, 1.0, "uncertain"),
        (math.nan, f_quiet, 1.0, "unphysical"),  # a non-finite uncertainty is never trusted
        (e_quiet, math.inf, 1.0, "unphysical"),
        (e_low * ABOVE, f_quiet, 0.65 * BELOW, "too_close"),  # too_close wins over everything
        (e_up * ABOVE, f_up * ABOVE, 0.6, "too_close"),
        (e_quiet, f_quiet, 0.64, "too_close"),
        (e_quiet, f_quiet, 0.65, "known"),  # at the minimum distance is allowed
        (e_quiet, f_quiet, math.nan, "too_close"),
    ]
    energy, forces, distances, expected = (list(column) for column in zip(*cases))
    result = select(energy, forces, distances)
    assert result.category.tolist() == expected
    assert result.selected.tolist() == [] and result.n_selected == 0  # no budget
    assert (result.visited, result.known, result.uncertain, result.unphysical, result.too_close) == (20, 3, 7, 6, 4)
    assert result.fraction_uncertain == 7 / 20
    np.testing.assert_array_equal(result.energy_ratio[:2], [3 * BELOW, 3.0])
    # with budget every uncertain one is selected and still counts as uncertain
    chosen = select(energy, forces, distances, budget=100)
    assert sorted(chosen.selected.tolist()) == [i for i, c in enumerate(expected) if c == "uncertain"]
    assert chosen.category.tolist() == [c.replace("uncertain", "selected") for c in expected]
    counts = chosen.counts()
    assert (counts["visited"], counts["uncertain"], counts["selected"], counts["fraction_uncertain"]) == (
        20,
        7,
        7,
        0.35,
    )
    assert counts["energy_thresholds"] == [e_low, e_up] and counts["forces_thresholds"] == [f_low, f_up]
    json.dumps(counts)
    # an infinite upper threshold never rejects
    lenient = select(energy, forces, distances, settings={"energy_upper": math.inf, "forces_upper": math.inf})
    assert lenient.category.tolist()[6] == lenient.category.tolist()[9] == "uncertain"
    assert lenient.category.tolist()[13] == "unphysical" and lenient.counts()["energy_thresholds"][1] is None


def test_nothing_visited():
    result = select([], [])
    assert (result.visited, result.uncertain, result.fraction_uncertain, result.selected.tolist()) == (0, 0, 0.0, [])


def test_zero_rmse_is_floored():
    # an untrained model or one without test set reports RMSE 0: the floors 1e-3 eV/atom and 0.05 eV/Å apply
    energy = [0.002, 0.004, 0.031, 0.001]  # ratios 2, 4, 31, 1
    forces = [0.1, 0.1, 0.1, 0.35]  # ratios 2, 2, 2, 7
    result = select(energy, forces, rmse=(0.0, 0.0))
    assert (result.rmse_energy_per_atom, result.rmse_forces) == (1e-3, 0.05)
    assert result.category.tolist() == ["known", "uncertain", "unphysical", "uncertain"]
    # a positive RMSE below the floor is floored as well; above it, it is used as it is
    assert select(energy, forces, rmse=(1e-4, 0.01)).category.tolist() == result.category.tolist()
    assert select(energy, forces, rmse=(2e-3, 0.1)).rmse_energy_per_atom == 2e-3
    own = select(energy, forces, rmse=(0.0, 0.0), settings={"rmse_floor_energy": 1e-4, "rmse_floor_forces": 0.01})
    # ratios energy 20, 40, 310, 10 and forces 10, 10, 10, 35
    assert own.category.tolist() == ["uncertain", "unphysical", "unphysical", "uncertain"]
    for rmse in ((-1e-3, 0.1), (1e-3, math.nan)):
        with pytest.raises(ValueError, match="rmse"):
            select(energy, forces, rmse=rmse)


# hand-placed 2-D fingerprints; index 5 is known and index 6 unphysical, both far away: never picked
POINTS = np.array([[0, 0], [1, 0], [10, 0], [0, 5], [10, 5], [100, 100], [-100, -100]], dtype=float)
#                          uncertain (ratios 4, 5, 9, 6, 7)            known   unphysical
ENERGY = np.array([4, 5, 9, 6, 7, 1, 50]) * RMSE_E
FORCES = np.full(7, RMSE_F)


def test_farthest_point_sampling_in_the_worked_out_order():
    # start at the most uncertain, index 2 at (10, 0). Nearest-pick distances then:
    #   0: 10, 1: 9, 3: √125, 4: 5                     -> 3 (0, 5)
    #   0: min(10, 5) = 5, 1: min(9, √26) = √26, 4: 5   -> 1 (1, 0)
    #   0: min(5, 1) = 1, 4: 5                          -> 4, then 0
    result = select(ENERGY, FORCES, fingerprints=POINTS, budget=10)
    assert result.selected.tolist() == [2, 3, 1, 4, 0]
    assert result.category.tolist() == ["selected"] * 5 + ["known", "unphysical"]
    # max_per_iteration and the budget left cap the same sequence
    assert select(
        ENERGY, FORCES, fingerprints=POINTS, budget=10, settings={"max_per_iteration": 3}
    ).selected.tolist() == [
        2,
        3,
        1,
    ]
    capped = select(ENERGY, FORCES, fingerprints=POINTS, budget=2)
    assert capped.selected.tolist() == [2, 3]
    assert capped.category.tolist() == [
        "uncertain",
        "uncertain",
        "selected",
        "selected",
        "uncertain",
        "known",
        "unphysical",
    ]
    assert (capped.uncertain, capped.n_selected) == (5, 2)
    assert select(ENERGY, FORCES, fingerprints=POINTS, budget=0).selected.tolist() == []


def test_ties_go_to_the_lowest_index():
    # start at 0 (most uncertain) at (0, 0); then 4 at (10, 5) is farthest; then 2 (10, 0) and 3 (0, 5)
    # are both 5 from the nearest pick: the lower index, 2, comes first
    energy = np.array([9, 5, 4, 6, 7, 1, 50]) * RMSE_E
    assert select(energy, FORCES, fingerprints=POINTS, budget=10).selected.tolist() == [0, 4, 2, 3, 1]
    # equal uncertainties: the lowest index starts
    same = np.full(4, 4 * RMSE_E)
    assert select(same, FORCES[:4], fingerprints=POINTS[:4], budget=1).selected.tolist() == [0]
    assert select(same, FORCES[:4], budget=2).selected.tolist() == [0, 1]


def test_already_selected_fingerprints_steer_the_choice():
    # labelled before at (0, 0): the first pick is the farthest from it, 4 at (10, 5), not the most
    # uncertain; then 2 and 3 tie at 5 (lowest index first), then 1 at 1, last 0, a repeat of what was labelled
    near_origin = select(ENERGY, FORCES, fingerprints=POINTS, budget=10, already=[[0.0, 0.0]])
    assert near_origin.selected.tolist() == [4, 2, 3, 1, 0]
    # labelled before at (10, 5): 0 is farthest (√125); then 2 and 3 tie at 5, then 1, and 4 comes last
    assert select(ENERGY, FORCES, fingerprints=POINTS, budget=10, already=[[10.0, 5.0]]).selected.tolist() == [
        0,
        2,
        3,
        1,
        4,
    ]
    # the nearest of several labelled fingerprints counts; an empty history is no history
    both = select(ENERGY, FORCES, fingerprints=POINTS, budget=1, already=[[10.0, 5.0], [0.0, 0.0]])
    assert both.selected.tolist() == [2]  # distances to the nearest: 0: 0, 1: 1, 2: 5, 3: 5, 4: 0
    assert select(ENERGY, FORCES, fingerprints=POINTS, budget=10, already=np.zeros((0, 2))).selected.tolist() == [
        2,
        3,
        1,
        4,
        0,
    ]
    with pytest.raises(ValueError, match=r"already_selected_fingerprints must have shape \(K, 2\)"):
        select(ENERGY, FORCES, fingerprints=POINTS, budget=1, already=[[0.0, 0.0, 0.0]])


def test_without_fingerprints_the_most_uncertain_come_first():
    # ratios: energy 4 5 9 6 7 and forces 8 on index 0 -> scores 8 5 9 6 7
    forces = FORCES.copy()
    forces[0] = 8 * RMSE_F
    result = select(ENERGY, forces, budget=10)
    assert result.selected.tolist() == [2, 0, 4, 3, 1]
    assert select(ENERGY, forces, budget=10, already=[[0.0, 0.0]]).selected.tolist() == [2, 0, 4, 3, 1]


def test_input_checks():
    with pytest.raises(ValueError, match="forces_uncertainty_max must have shape"):
        select([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="fingerprints must have shape"):
        select([0.1, 0.2], [0.1, 0.1], fingerprints=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="fingerprints must be finite"):
        select([0.1], [0.1], fingerprints=[[math.nan, 0.0]])
    with pytest.raises(ValueError, match="must not be negative"):
        select([-0.1], [0.1])
    for budget in (-1, 2.0, True):
        with pytest.raises(ValueError, match="budget_left"):
            select([0.1], [0.1], budget=budget)
    with pytest.raises(SelectionSettingsError, match="'max_per_iteratio'"):
        select([0.1], [0.1], settings={"max_per_iteratio": 3})


def flat(frames):
    """(positions, counts, cells, pbc) of ASE frames, as the dataset layer stores them."""
    return (
        np.concatenate([a.positions for a in frames]),
        np.array([len(a) for a in frames]),
        np.array([a.cell.array for a in frames]),
        np.array([a.pbc for a in frames]),
    )


def test_min_distance_filter_on_hand_built_pairs():
    frames = [
        Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.6]]),
        Atoms("H2", positions=[[1, 1, 1], [1.7, 1, 1]]),
        Atoms("H"),
        Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
        # periodic: 9.4 Å apart in the cell, 0.6 Å through the boundary
        Atoms("H2", positions=[[0.2, 5, 5], [9.6, 5, 5]], cell=[10, 10, 10], pbc=True),
        Atoms("H2", positions=[[0.2, 5, 5], [9.6, 5, 5]], cell=[10, 10, 10], pbc=False),  # the same, not periodic
        Atoms("H2", positions=[[0.2, 5, 5], [9.6, 5, 5]], cell=[10, 10, 10], pbc=[False, True, True]),
        Atoms("H", cell=[3.0, 4.0, 5.0], pbc=True),  # the atom and its own images: 3 Å
    ]
    distances = min_interatomic_distances(*flat(frames))
    np.testing.assert_allclose(distances[:2], [0.6, 0.7], rtol=1e-12)
    assert distances[2] == math.inf
    assert distances[3] == pytest.approx(min(0.96, math.hypot(0.24, 0.93), math.hypot(1.2, 0.93)))
    np.testing.assert_allclose(distances[4:8], [0.6, 9.4, 9.4, 3.0], rtol=1e-12)
    result = select(np.zeros(8), np.zeros(8), distances)
    assert result.category.tolist() == ["too_close", "known", "known", "known", "too_close", "known", "known", "known"]
    assert select(np.zeros(8), np.zeros(8), distances, settings={"min_distance": 0.55}).too_close == 0


def test_min_distances_of_large_and_periodic_structures_match_brute_force():
    rng = np.random.default_rng(4)
    grid = np.stack(np.meshgrid(*[np.arange(7.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # 343 atoms
    dense = Atoms("C343", positions=1.1 * grid + rng.normal(scale=0.05, size=grid.shape))
    sparse = Atoms("C343", positions=5.0 * grid)  # no pair within the first neighbour-list cutoff
    cell = np.array([[6.0, 0, 0], [2.5, 5.5, 0], [-1.0, 1.5, 5.0]])  # triclinic
    box = Atoms("C12", positions=rng.random((12, 3)) @ cell, cell=cell, pbc=True)
    frames = [dense, sparse, box]
    distances = min_interatomic_distances(*flat(frames))
    _, d = get_distances(dense.positions)
    assert distances[0] == pytest.approx(d[np.triu_indices(343, 1)].min(), rel=1e-12)
    assert distances[1] == pytest.approx(5.0, rel=1e-12)
    # brute force over the neighbouring images, the atoms' own images included
    shifts = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3) @ cell
    vectors = box.positions[None, :, None, :] + shifts[None, None, :, :] - box.positions[:, None, None, :]
    lengths = np.linalg.norm(vectors, axis=-1)
    lengths[lengths < 1e-9] = np.inf  # an atom with itself
    assert distances[2] == pytest.approx(lengths.min(), rel=1e-12)
    with pytest.raises(ValueError, match="counts add up to"):
        min_interatomic_distances(dense.positions, [300], dense.cell.array[None], dense.pbc[None])


def test_forces_uncertainty_max():
    forces = np.array([[0.1, 0.2, 0.05], [0.3, 0.0, 0.1], [0.0, 0.0, 0.7], [0.2, 0.1, 0.1]])
    np.testing.assert_array_equal(forces_uncertainty_max(forces, [2, 1, 1]), [0.3, 0.7, 0.2])
    np.testing.assert_array_equal(forces_uncertainty_max(forces, [4]), [0.7])
    assert forces_uncertainty_max(np.zeros((0, 3)), np.zeros(0, dtype=int)).shape == (0,)
    with pytest.raises(ValueError, match="counts"):
        forces_uncertainty_max(forces, [2, 0, 2])
    with pytest.raises(ValueError, match=r"\(A, 3\)"):
        forces_uncertainty_max(forces[:, :2], [4])


def test_the_module_imports_neither_torch_nor_aiida():
    """It runs in the AiiDA daemon, which never imports torch; aiida is left to the WorkChains that use it."""
    import ast
    import subprocess
    import sys

    import aiida_lmlp.workflows.candidates as module

    code = "import sys, aiida_lmlp.workflows.candidates; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
    imported = set()
    for node in ast.walk(ast.parse(open(module.__file__, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "math", "collections", "dataclasses", "typing", "numpy", "ase"}, imported


def test_trajectory_stop_is_the_window_bound_in_absolute_units():
    settings = SelectionSettings(energy_lower=2.0, forces_lower=4.0, energy_upper=20.0, forces_upper=math.inf)
    assert TRAJECTORY_STOPS == ("lower", "upper", "never")
    assert settings.trajectory_stop(RMSE_E, RMSE_F, "lower") == {
        "stop_energy_uncertainty_per_atom": 2.0 * RMSE_E,
        "stop_forces_uncertainty": 4.0 * RMSE_F,
    }
    # an infinite upper threshold never stops; the floors apply as in the screening (1e-3 eV/atom, 0.05 eV/Å)
    assert settings.trajectory_stop(0.0, 0.0, "upper") == {
        "stop_energy_uncertainty_per_atom": 20.0 * 1e-3,
        "stop_forces_uncertainty": None,
    }
    assert settings.trajectory_stop(RMSE_E, RMSE_F, "never") == {
        "stop_energy_uncertainty_per_atom": None,
        "stop_forces_uncertainty": None,
    }
    with pytest.raises(SelectionSettingsError, match="'stop_at': must be one of lower, upper, never, got 'first'"):
        settings.trajectory_stop(RMSE_E, RMSE_F, "first")


def test_a_conformation_just_past_the_lower_stop_is_uncertain_and_one_just_before_is_known():
    """The stop of an exploration and the screening draw the same line."""
    settings = SelectionSettings()
    stop = settings.trajectory_stop(RMSE_E, RMSE_F, "lower")
    energy = stop["stop_energy_uncertainty_per_atom"] * np.array([BELOW, ABOVE, 0.0])
    forces = stop["stop_forces_uncertainty"] * np.array([BELOW, 0.0, ABOVE])
    result = select(energy, forces, settings=settings)
    assert list(result.category) == ["known", "uncertain", "uncertain"]


def test_candidate_ceiling_counts_trajectories_that_end_at_their_first_uncertain_conformation():
    assert candidate_ceiling({}, 10, "lower") == 10  # MD, one trajectory per start
    assert candidate_ceiling({"kind": "md", "replicas": 5}, 10, "lower") == 50
    assert candidate_ceiling({"kind": "relax"}, 7, "lower") == 7
    assert candidate_ceiling({"kind": "neb"}, 8, "lower") == 4  # endpoint pairs
    assert candidate_ceiling({"kind": "md", "replicas": 5}, 10, "upper") is None
    assert candidate_ceiling({}, 10, "never") is None
    # a fixed stop threshold in the protocol replaces the selection's lower line: no bound then
    assert candidate_ceiling({"stop_forces_uncertainty": 2.0}, 10, "lower") is None


def test_an_exploration_stopped_at_the_lower_line_yields_at_most_one_candidate_per_trajectory(sn2_model, sn2_frames):
    from aiida_lmlp.potential.exploration import explore

    settings = SelectionSettings()
    campaign_protocol = {"kind": "md", "steps": 30, "sample_every": 2, "temperature": 600, "replicas": 3}
    ceiling = candidate_ceiling(campaign_protocol, 2, "lower")
    # RMSEs that put the lower force line just above every start's uncertainty, so trajectories run a
    # while before they stop (the energy line out of reach)
    free = explore(sn2_model, sn2_frames[:2], campaign_protocol)
    start = max(f.arrays["lmlp_forces_uncertainty"].max() for f in free.frames if f.info["step"] == 0)
    rmse_e, rmse_f = 10.0, 1.02 * start / settings.forces_lower
    # what the campaign runs: its protocol with the stop thresholds of the current version's lower line
    result = explore(sn2_model, sn2_frames[:2], campaign_protocol | settings.trajectory_stop(rmse_e, rmse_f, "lower"))
    energy = np.array([f.info["lmlp_energy_uncertainty"] / len(f) for f in result.frames])
    forces = np.array([f.arrays["lmlp_forces_uncertainty"].max() for f in result.frames])
    chosen = select_candidates(energy, forces, np.ones(len(energy)), None, rmse_e, rmse_f, settings, budget_left=100)
    uncertain = int(np.isin(chosen.category, ("uncertain", "selected", "unphysical")).sum())
    assert len(result.frames) > ceiling == 6 and 0 < uncertain <= ceiling
    assert any(t.stopped_early and t.steps > 0 for t in result.trajectories)
