"""``lmlp.explore`` run for real through core.local + core.direct; inputs refused before submission."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_lmlp.calculations import LmlpExploreCalculation
from aiida_lmlp.data import LmlpDatasetData, LmlpPotentialData
from aiida_lmlp.potential import LmlpCalculator


@pytest.fixture(scope="module")
def potential(sn2_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("explore") / "model.lmlp"
    sn2_model.save(path)
    node, _ = LmlpPotentialData.get_or_create(path)
    return node


@pytest.fixture(scope="module")
def starts(aiida_profile, sn2_frames):
    return LmlpDatasetData.from_atoms(sn2_frames[:2]).store()


def _run(code, potential, starts, protocol, **extra):
    return run_get_node(
        LmlpExploreCalculation,
        code=code,
        potential=potential,
        structures=starts,
        protocol=orm.Dict(protocol),
        metadata={"options": {"max_wallclock_seconds": 300}},
        **extra,
    )


def test_md_visits_conformations_with_the_ensembles_predictions(lmlp_code, potential, starts, sn2_model):
    protocol = {"kind": "md", "steps": 6, "sample_every": 2, "temperature": 300, "seed": 4}
    results, node = _run(lmlp_code("lmlp.explore"), potential, starts, protocol, device=orm.Str("cpu"))
    assert node.is_finished_ok, node.exit_message
    assert "'--device' 'cpu'" in node.base.repository.get_object_content("_aiidasubmit.sh")
    visited, summary = results["visited"], results["summary"].get_dict()
    # steps 0, 2, 4, 6 of both trajectories
    assert visited.count == 8 and summary["frames"] == 8
    assert [t["steps"] for t in summary["trajectories"]] == [6, 6]
    assert visited.base.attributes.get("labelled_count") == 0  # predictions are never labels
    assert visited.base.attributes.get("has_predictions")
    # a visited conformation carries exactly what the ensemble predicts for it
    frames = visited.to_atoms()
    calculator = LmlpCalculator(sn2_model)
    for atoms in (frames[0], frames[-1]):
        reference = atoms.copy()
        reference.calc = calculator
        assert atoms.info["lmlp_energy"] == pytest.approx(reference.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(
            atoms.arrays["lmlp_forces_uncertainty"], calculator.get_forces_uncertainty(), atol=1e-6
        )
        assert atoms.info["charge"] == -1
    # provenance: the visited set was made by the exploration of this version
    assert visited.creator.pk == node.pk and node.inputs.potential.pk == potential.pk


def test_uncertainty_threshold_stops_each_trajectory_at_once(lmlp_code, potential, starts):
    protocol = {"kind": "md", "steps": 50, "stop_forces_uncertainty": 1e-9}
    results, node = _run(lmlp_code("lmlp.explore"), potential, starts, protocol)
    assert node.is_finished_ok
    summary = results["summary"].get_dict()
    assert all(t["stopped_early"] and t["steps"] == 0 for t in summary["trajectories"])
    assert [a.info["stopped"] for a in results["visited"].to_atoms()] == [True, True]


def test_bad_inputs_are_refused_before_submission(lmlp_code, potential, starts):
    code = lmlp_code("lmlp.explore")
    calcs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match="protocol: .*temprature"):
        _run(code, potential, starts, {"kind": "md", "temprature": 300})
    zinc = LmlpDatasetData.from_atoms([Atoms("Zn2", positions=[[0, 0, 0], [0, 0, 2.5]])]).store()
    with pytest.raises(ValueError, match="structures contain Zn, for which potential<.*> .* has no network"):
        _run(code, potential, zinc, {"kind": "evaluate"})
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, got 'gpu'"):
        _run(code, potential, starts, {"kind": "evaluate"}, device=orm.Str("gpu"))
    with pytest.raises(ValueError, match="NEB protocol needs endpoint pairs"):
        _run(code, potential, LmlpDatasetData.from_atoms(starts.to_atoms()[:1]).store(), {"kind": "neb"})
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == calcs_before
