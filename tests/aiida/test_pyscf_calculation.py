"""``lmlp.pyscf`` run for real through core.local + core.direct, compared with PySCF called in-process."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import PyscfCalculation
from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters, single_point

PARAMETERS = {"xc": "HF", "basis": "sto-3g", "density_fit": False, "threads": 1}


def test_pyscf_labels_agree_with_an_in_process_call(lmlp_code, sn2_frames):
    frames = [a.copy() for a in sn2_frames[:2]]
    for atoms in frames:
        atoms.calc = None
    structures = LmlpDatasetData.from_atoms(frames).store()
    results, node = run_get_node(
        PyscfCalculation,
        code=lmlp_code("lmlp.pyscf"),
        structures=structures,
        parameters=orm.Dict(PARAMETERS),
        metadata={"options": {"max_wallclock_seconds": 600}},
    )
    assert node.is_finished_ok, node.exit_message
    labelled = results["labelled"]
    assert labelled.count == 2 and results["failed"].get_list() == []
    assert labelled.label_method.startswith("HF/sto-3g")
    for atoms, frame in zip(labelled.to_atoms(), frames):
        expected = single_point(frame, PyscfParameters.from_dict(PARAMETERS))
        assert atoms.get_potential_energy() == pytest.approx(expected.energy, abs=1e-6)  # eV
        np.testing.assert_allclose(atoms.get_forces(), expected.forces, atol=1e-6)  # eV/Å
        assert atoms.info["charge"] == -1 and atoms.info["multiplicity"] == 1
    assert results["output_parameters"]["converged"] == 2


def test_refused_parameters_never_reach_the_computer(lmlp_code, sn2_dataset):
    calcs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match="parameters: .*'bassis'"):
        run_get_node(
            PyscfCalculation,
            code=lmlp_code("lmlp.pyscf"),
            structures=sn2_dataset,
            parameters=orm.Dict({"bassis": "sto-3g"}),
        )
    with pytest.raises(ValueError, match="is empty: nothing to label"):
        run_get_node(PyscfCalculation, code=lmlp_code("lmlp.pyscf"), structures=LmlpDatasetData.from_atoms([]).store())
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == calcs_before
