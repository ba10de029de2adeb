"""``lmlp.train`` run for real through core.local + core.direct, and refused inputs."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import LmlpTrainCalculation
from aiida_lmlp.data import LmlpDatasetData, LmlpPotentialData

SMALL = {"epochs": 12, "members": 3, "hidden": [12, 8], "seed": 1, "fit_per_epoch": 1.0, "test_fraction": 0.25}


def _inputs(code, datasets, **extra):
    return {
        "code": code,
        "datasets": datasets,
        "metadata": {"options": {"max_wallclock_seconds": 600}},
        **extra,
    }


@pytest.fixture(scope="module")
def trained(lmlp_code, sn2_dataset):
    """A first version trained on 40 SN2 conformations."""
    inputs = _inputs(lmlp_code("lmlp.train"), {"sn2": sn2_dataset}, parameters=orm.Dict(SMALL))
    results, node = run_get_node(LmlpTrainCalculation, **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message, node.outputs.retrieved.list_object_names())
    return results, node


def test_train_produces_a_potential_that_fits_its_training_data(trained, sn2_dataset):
    results, node = trained
    potential = results["potential"]
    assert isinstance(potential, LmlpPotentialData) and potential.is_stored
    attributes = potential.base.attributes.all
    assert attributes["members"] == 3 and attributes["epochs"] == 12
    assert attributes["elements"] == sn2_dataset.elements
    # the potential predicts its own training data within its recorded (held-out) test RMSE
    calculator = potential.get_calculator()
    frames = sn2_dataset.to_atoms()
    errors = []
    for atoms in frames:
        reference = atoms.get_potential_energy()
        atoms.calc = calculator
        errors.append((atoms.get_potential_energy() - reference) / len(atoms))
    train_rmse = float(np.sqrt(np.mean(np.square(errors))))
    assert train_rmse <= attributes["rmse_energy_per_atom"] * 1.05, (train_rmse, attributes["rmse_energy_per_atom"])
    # metrics: one row per epoch, a column per member
    metrics = results["metrics"]
    np.testing.assert_array_equal(metrics.get_array("epoch"), np.arange(1, 13))
    assert metrics.get_array("test_rmse_forces").shape == (12, 3)
    summary = results["output_parameters"].get_dict()
    assert summary["data_report"]["used"] == 40 and summary["epochs"] == 12
    # the uncertainty floor: the mean of the members' own test RMSEs, not the ensemble's over their union
    assert summary["rmse_energy_per_atom"] == pytest.approx(metrics.get_array("test_rmse_energy_per_atom")[-1].mean())
    assert potential.base.attributes.get("rmse_kind") == "members_own_test_mean"


def test_continued_training_links_to_the_parent_and_reaches_the_labelling(trained, lmlp_code, sn2_frames):
    results, first = trained
    parent = results["potential"]
    more = LmlpDatasetData.from_atoms(sn2_frames[40:50], label_method="PBE/def2-SVP RI-J (PySCF)").store()
    inputs = _inputs(
        lmlp_code("lmlp.train"),
        {"old": first.inputs.datasets["sn2"], "new": more},
        parent_potential=parent,
        parameters=orm.Dict({"epochs": 4}),
    )
    results, node = run_get_node(LmlpTrainCalculation, **inputs)
    assert node.is_finished_ok, node.exit_message
    child = results["potential"]
    assert child.base.attributes.get("epochs") == 16  # lifelong: the epoch counter carries on
    assert child.content_sha256 != parent.content_sha256
    # provenance: child <- train calculation <- parent potential and both datasets
    query = orm.QueryBuilder()
    query.append(LmlpPotentialData, filters={"id": child.pk}, tag="child")
    query.append(LmlpTrainCalculation, with_outgoing="child", tag="calc")
    query.append(LmlpPotentialData, with_outgoing="calc", project="id")
    assert query.all(flat=True) == [parent.pk]
    query = orm.QueryBuilder()
    query.append(LmlpPotentialData, filters={"id": child.pk}, tag="child")
    query.append(LmlpTrainCalculation, with_outgoing="child", tag="calc")
    query.append(LmlpDatasetData, with_outgoing="calc", project="id")
    assert sorted(query.all(flat=True)) == sorted([first.inputs.datasets["sn2"].pk, more.pk])


def test_bad_inputs_are_refused_before_submission(lmlp_code, sn2_dataset, sn2_frames, trained, tmp_path):
    code = lmlp_code("lmlp.train")
    nodes_before = orm.QueryBuilder().append(orm.Node).count()
    calcs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match="parameters: unknown configuration key 'epoch'"):
        run_get_node(LmlpTrainCalculation, **_inputs(code, {"a": sn2_dataset}, parameters=orm.Dict({"epoch": 3})))
    with pytest.raises(ValueError, match="is empty"):
        run_get_node(LmlpTrainCalculation, **_inputs(code, {"a": LmlpDatasetData.from_atoms([]).store()}))
    from ase import Atoms

    unlabelled = LmlpDatasetData.from_atoms([Atoms(a.get_chemical_symbols(), a.positions) for a in sn2_frames[:2]])
    with pytest.raises(ValueError, match="2 of 2 conformations have no energy or forces"):
        run_get_node(LmlpTrainCalculation, **_inputs(code, {"a": unlabelled.store()}))
    # an element a conventional-ACSF parent lacks: its descriptor cannot grow (an eeACSF parent adds it,
    # test_a_continued_model_gains_the_element_its_new_data_bring)
    import torch

    from aiida_lmlp.potential import ACSF, EeACSF, Ensemble

    acsf = Ensemble.new(["H", "C"], ACSF.like(EeACSF.from_paper(["H", "C"])), members=1, hidden=(4,))
    acsf.training_config = {"trainer": {"epoch": 1, "members": [], "baseline_keys": []}}
    path = tmp_path / "acsf.lmlp"
    acsf.to(torch.float64).save(path)
    parent = LmlpPotentialData(path).store()
    zinc = Atoms("Zn2", positions=[[0, 0, 0], [0, 0, 2.5]])
    zinc.info["energy"] = -10.0
    zinc.arrays["forces"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"has networks for .* the data contain Zn \(in datasets.zn\).*cannot take"):
        run_get_node(
            LmlpTrainCalculation,
            **_inputs(code, {"zn": LmlpDatasetData.from_atoms([zinc]).store()}, parent_potential=parent),
        )
    # nothing was stored by the refused submissions but the datasets and the parent made for them
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == calcs_before
    assert orm.QueryBuilder().append(orm.Node).count() == nodes_before + 4


def test_a_continued_model_gains_the_element_its_new_data_bring(trained, lmlp_code, sn2_frames):
    """Lifelong learning of a new chemical system: data with an element the parent lacks continue it."""
    from ase import Atoms

    results, first = trained
    parent = results["potential"]
    assert "Si" not in parent.elements
    silanes = []
    for k in range(4):  # SiH4 at four bond lengths, with made-up labels: the element is what matters here
        d = 0.86 + 0.01 * k
        atoms = Atoms("SiH4", positions=[[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]])
        atoms.info["energy"] = -7925.0 + 0.5 * k
        atoms.arrays["forces"] = np.zeros((5, 3))
        silanes.append(atoms)
    new = LmlpDatasetData.from_atoms(silanes, label_method="PBE/def2-SVP RI-J (PySCF)").store()
    inputs = _inputs(
        lmlp_code("lmlp.train"),
        {"old": first.inputs.datasets["sn2"], "new": new},
        parent_potential=parent,
        parameters=orm.Dict({"epochs": 2}),
    )
    results, node = run_get_node(LmlpTrainCalculation, **inputs)
    assert node.is_finished_ok, node.exit_message
    child = results["potential"]
    assert child.elements == parent.elements + ["Si"]
    assert child.base.attributes.get("epochs") == 14  # continued, not started afresh
    assert child.base.attributes.get("reference_kinds")["Si"] == "least_squares"  # not given: fitted
    summary = results["output_parameters"].get_dict()
    assert summary["data_report"]["used"] == 44  # nothing skipped as "element not in the model"
