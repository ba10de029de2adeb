"""``lmlp.cp2k`` on recorded outputs of real CP2K runs (``tests/data/cp2k_outputs/record.py``).

Every failure mode a labelling must survive gives ``Cp2kCalculation``'s exit code for it, and
only a finished, converged single point gives labels.
"""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from ase.io import read

from aiida_lmlp.labelling.cp2k_input import parse_single_point

from .calcjob_nodes import calc_job_node, parse

OUTPUTS = Path(__file__).resolve().parents[1] / "data" / "cp2k_outputs"
CASES = json.loads((OUTPUTS / "cases.json").read_text())


def _node(localhost, case: str, folder: Path | None = None):
    atoms = read(StringIO(CASES[case]["structure"]), format="extxyz")
    node = calc_job_node(
        "cp2k",
        localhost,
        folder or OUTPUTS / case,
        {"structure": orm.StructureData(ase=atoms)},
        temporary=False,
        options={"output_filename": "aiida.out"},  # what Cp2kCalculation sets
    )
    return node, atoms


def _parse(node):
    return parse("lmlp.cp2k", node)


def test_a_converged_single_point_gives_labels_in_ev(localhost):
    node, atoms = _node(localhost, "water_molecule")
    results, status, _ = _parse(node)
    assert status == 0
    expected = parse_single_point((OUTPUTS / "water_molecule" / "aiida.out").read_text(), len(atoms))
    labels = results["lmlp_labels"]
    assert labels.get_array("energy")[0] == pytest.approx(expected.energy)
    np.testing.assert_allclose(labels.get_array("forces"), expected.forces)
    assert "stress" not in labels.get_arraynames()
    assert results["output_parameters"]["cp2k_version"].startswith("CP2K version")


def test_a_periodic_single_point_gives_the_stress(localhost):
    node, _ = _node(localhost, "water_cell")
    results, status, _ = _parse(node)
    assert status == 0 and results["lmlp_labels"].get_array("stress").shape == (3, 3)


def test_an_unconverged_scf_gives_no_labels_although_cp2k_printed_forces(localhost):
    node, _ = _node(localhost, "water_not_converged")
    assert "ATOMIC FORCES" in (OUTPUTS / "water_not_converged" / "aiida.out").read_text()
    results, status, _ = _parse(node)
    assert status == 450 and "lmlp_labels" not in results


def test_an_abort_keeps_cp2ks_message(localhost):
    node, _ = _node(localhost, "radical_singlet")
    results, status, _ = _parse(node)
    assert status == 304
    assert results["output_parameters"]["abort_message"] == "Use the LSD option for an odd number of electrons"


def test_a_crash_and_missing_forces(localhost, tmp_path):
    text = (OUTPUTS / "water_molecule" / "aiida.out").read_text()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "aiida.out").write_text(text[: len(text) // 2])  # killed halfway: no closing banner
    node, _ = _node(localhost, "water_molecule", crashed)
    assert _parse(node)[1] == 303
    # forces block removed, the rest (closing banner included) as CP2K wrote it
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "ATOMIC FORCES in" in line)
    end = next(i for i, line in enumerate(lines) if "SUM OF ATOMIC FORCES" in line)
    no_forces = tmp_path / "no_forces"
    no_forces.mkdir()
    (no_forces / "aiida.out").write_text("".join(lines[:start] + lines[end + 1 :]))
    node, _ = _node(localhost, "water_molecule", no_forces)
    results, status, _ = _parse(node)
    assert status == 302 and "no forces" in results["output_parameters"]["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(OUTPUTS / "water_molecule" / "aiida.inp", empty / "aiida.inp")
    node, _ = _node(localhost, "water_molecule", empty)
    assert _parse(node)[1] == 210
