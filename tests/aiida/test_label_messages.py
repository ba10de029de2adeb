"""Labelling messages that say what happened: how many structures of a batch were labelled (never "the
others" when there were none), and no "restarting" when nothing is left to retry."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import PyscfCalculation
from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.workflows.label import LabelWorkChain

from .calcjob_nodes import parse
from .test_parsers import _pyscf_node

PARAMETERS = {"xc": "HF", "basis": "sto-3g", "density_fit": False, "threads": 1}


@pytest.fixture(scope="module")
def impossible(aiida_profile):
    """Two Cl⁻ + CH3Cl conformations made neutral: an odd electron count as a singlet, refused by PySCF."""
    from ase.io import read

    from ..conftest import SN2

    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:2]
    for atoms in frames:
        atoms.calc = None
        atoms.info["charge"] = 0
    return LmlpDatasetData.from_atoms(frames).store()


def test_the_count_of_labelled_structures():
    from aiida_lmlp.calculations.label_batch import labelled_text

    assert labelled_text(0, 2) == "none of the 2 structures is labelled"
    assert labelled_text(1, 2) == "1 of the 2 structures are labelled"
    assert labelled_text(0, 1) == "the structure is not labelled"


@pytest.mark.parametrize("case", ["partly_not_converged", "structure_error", "terminated"])
def test_a_partly_labelled_batch_says_how_many(localhost, case):
    node, count = _pyscf_node(localhost, case)
    results, status, message = parse("lmlp.pyscf", node)
    assert status != 0 and results["labelled"].count == 1 and count > 1
    assert message.endswith(f"1 of the {count} structures are labelled.") and "the others" not in message


def test_a_batch_with_nothing_labelled_says_none(lmlp_code, impossible):
    _, node = run_get_node(
        PyscfCalculation, code=lmlp_code("lmlp.pyscf"), structures=impossible, parameters=orm.Dict(PARAMETERS)
    )
    assert node.exit_status == PyscfCalculation.exit_codes.ERROR_STRUCTURE_FAILED.status
    assert "labelled" not in node.outputs
    assert node.exit_message.endswith("none of the 2 structures is labelled.")
    assert "the others" not in node.exit_message


def test_the_labelling_never_says_restarting_when_it_stops(lmlp_code, impossible):
    _, node = run_get_node(
        LabelWorkChain,
        structures=impossible,
        pyscf={"code": lmlp_code("lmlp.pyscf"), "parameters": orm.Dict(PARAMETERS)},
    )
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_NOTHING_LABELLED.status
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert not [r for r in reports if "restarting" in r], reports
    assert any("nothing left to label" in r for r in reports), reports
    assert len([c for c in node.called if c.process_type.endswith("lmlp.pyscf")]) == 1
