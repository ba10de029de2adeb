"""Parsers on recorded outputs of real runs: every failure mode gives its documented exit code.

The recorded folders were made by real runs of the executables:
``tests/data/train_outputs/record.py`` and ``tests/data/pyscf_outputs/record.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm

from aiida_lmlp.calculations import LmlpTrainCalculation, PyscfCalculation

from .calcjob_nodes import calc_job_node, parse

DATA = Path(__file__).resolve().parents[1] / "data"


def _train_node(localhost, sn2_dataset, case: str, temporary: bool = True, **parameters):
    folder = DATA / "train_outputs" / case
    recorded = json.loads((folder / "parameters.json").read_text())
    inputs = {"datasets": {"a": sn2_dataset}, "parameters": orm.Dict({**recorded, **parameters})}
    return calc_job_node("lmlp.train", localhost, folder, inputs, temporary=temporary)


@pytest.mark.parametrize("temporary", [True, False], ids=["model-retrieved-temporarily", "model-in-retrieved"])
def test_train_complete(localhost, sn2_dataset, temporary):
    node = _train_node(localhost, sn2_dataset, "complete", temporary=temporary)
    # the model file is stored once, in the potential node, unless an older node kept it in `retrieved`
    assert ("model.lmlp" in node.outputs.retrieved.base.repository.list_object_names()) is not temporary
    results, status, _ = parse("lmlp.train", node)
    assert status == 0
    assert results["potential"].base.attributes.get("epochs") == 2
    np.testing.assert_array_equal(results["metrics"].get_array("epoch"), [1, 2])
    assert results["output_parameters"]["data_report"] == {
        "used": 8,
        "total": 8,
        "skipped": "none",
        "duplicates": 0,
    }


@pytest.mark.parametrize(
    ("case", "parameters", "exit_code", "message"),
    [
        ("complete", {"epochs": 5}, "ERROR_TRAINING_INCOMPLETE", "epoch 2 of 5"),
        ("refused", {}, "ERROR_INVALID_INPUT", "'q' = -1.0: must be positive"),
        ("no_usable_data", {}, "ERROR_NO_USABLE_DATA", "0 of 8 conformations used; skipped: 8 force above"),
        ("corrupt", {}, "ERROR_CORRUPT_MODEL", "truncated"),
        ("crashed", {}, "ERROR_MISSING_MODEL", "no model file"),
    ],
)
def test_train_failure_modes(localhost, sn2_dataset, case, parameters, exit_code, message):
    results, status, text = parse("lmlp.train", _train_node(localhost, sn2_dataset, case, **parameters))
    assert status == LmlpTrainCalculation.exit_codes[exit_code].status
    assert message in text
    # a run cut off at its wall time still hands over its last checkpoint, to continue from
    assert ("potential" in results) == (exit_code == "ERROR_TRAINING_INCOMPLETE")


@pytest.mark.parametrize(("case", "checkpoint"), [("complete", True), ("crashed", False)])
def test_train_killed_at_its_wall_time_keeps_the_schedulers_exit(localhost, sn2_dataset, case, checkpoint):
    # as aiida-core leaves the node when the scheduler plugin found a wall-time kill (core.slurm: TIMEOUT)
    node = _train_node(localhost, sn2_dataset, case, epochs=5)
    walltime = LmlpTrainCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    node.set_exit_status(walltime)
    results, status, _ = parse("lmlp.train", node)
    assert status == walltime
    # the checkpoint (epoch 2 of 5) is still handed over, to continue from
    assert ("potential" in results) is checkpoint
    if checkpoint:
        assert results["potential"].base.attributes.get("epochs") == 2


def _pyscf_node(localhost, case: str):
    from ase.io import read

    from aiida_lmlp.data import LmlpDatasetData

    from ..conftest import SN2

    recorded = json.loads((DATA / "pyscf_outputs" / "cases.json").read_text())[case]
    pool = read(SN2 / "pool_a.extxyz", ":12")
    frames = [pool[i].copy() for i in recorded["pool_a_frames"]]
    for position, charge in recorded["charge_overrides"].items():
        frames[int(position)].info["charge"] = charge
    inputs = {"structures": LmlpDatasetData.from_atoms(frames), "parameters": orm.Dict(recorded["parameters"])}
    return calc_job_node("lmlp.pyscf", localhost, DATA / "pyscf_outputs" / case, inputs), len(frames)


@pytest.mark.parametrize(
    ("case", "exit_code", "labelled", "failed_statuses"),
    [
        ("all_converged", None, 2, []),
        ("partly_not_converged", "ERROR_SCF_NOT_CONVERGED", 1, ["not_converged"]),
        ("structure_error", "ERROR_STRUCTURE_FAILED", 1, ["error"]),
        ("terminated", "ERROR_TERMINATED", 1, ["not_attempted", "not_attempted"]),
        ("crash", "ERROR_CRASHED", 1, ["not_attempted", "not_attempted"]),
        ("bad_parameters", "ERROR_INVALID_INPUT", 0, None),
    ],
)
def test_pyscf_outputs(localhost, case, exit_code, labelled, failed_statuses):
    node, count = _pyscf_node(localhost, case)
    results, status, message = parse("lmlp.pyscf", node)
    expected = 0 if exit_code is None else PyscfCalculation.exit_codes[exit_code].status
    assert status == expected, message
    # what converged is always kept, whatever happened to the rest of the batch
    assert (results["labelled"].count if "labelled" in results else 0) == labelled
    if failed_statuses is None:
        assert "unknown parameter" in message and "failed" not in results
        return
    failed = results["failed"].get_list()
    assert [entry["status"] for entry in failed] == failed_statuses
    assert len(failed) + labelled == count
    ids = node.inputs.structures.ids
    assert all(entry["id"] == ids[entry["index"]] for entry in failed)


def _explore_node(localhost, case: str):
    from ase.io import read

    from aiida_lmlp.data import LmlpDatasetData, LmlpPotentialData

    from ..conftest import SN2

    folder = DATA / "explore_outputs" / case
    recorded = json.loads((folder / "inputs.json").read_text())
    pool = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"]
    starts = [pool[i] for i in recorded["pool_frames"]] or pool[:1]
    potential, _ = LmlpPotentialData.get_or_create(DATA / "explore_outputs" / "model.lmlp")
    inputs = {
        "potential": potential,
        "structures": LmlpDatasetData.from_atoms(starts),
        "protocol": orm.Dict(recorded["protocol"]),
    }
    return calc_job_node("lmlp.explore", localhost, folder, inputs)


@pytest.mark.parametrize(
    ("case", "exit_code", "visited", "message"),
    [
        ("complete", None, 2, None),
        ("all_failed", "ERROR_ALL_TRAJECTORIES_FAILED", 0, "Zn not in the model"),
        ("refused", "ERROR_INVALID_INPUT", 0, "protocol key 'temprature': unknown key"),
        ("cut_off", "ERROR_CRASHED", 12, "12 visited conformations were kept"),
    ],
)
def test_explore_outputs(localhost, case, exit_code, visited, message):
    from aiida_lmlp.calculations import LmlpExploreCalculation

    results, status, text = parse("lmlp.explore", _explore_node(localhost, case))
    expected = 0 if exit_code is None else LmlpExploreCalculation.exit_codes[exit_code].status
    assert status == expected, text
    if message:
        assert message in text
    # whatever was visited is kept, with predictions and fingerprints but never as labels
    assert (results["visited"].count if "visited" in results else 0) == visited
    if visited:
        node = results["visited"]
        assert node.base.attributes.get("labelled_count") == 0 and node.base.attributes.get("has_predictions")
        assert node.get_array("fingerprint").shape == (visited, 153)


def test_the_daemon_reads_finished_job_outputs_without_ase_io():
    """The work chains, CalcJobs, parsers and data types, and the archives of finished jobs, load without ase.io.

    ``ase.io`` pulls in ASE's constraints, space groups and SciPy: 0.3–0.45 s of the daemon
    worker's first work-chain step, when the CalcJobs wrote their inputs as extxyz. Their inputs
    are now the datasets' archives, copied as stored, and finished jobs leave an archive too.
    """
    code = (
        "import sys; import aiida_lmlp.workflows.lifelong, aiida_lmlp.parsers.explore, aiida_lmlp.parsers.pyscf; "
        "from aiida_lmlp.formats.conformation_arrays import read_archive; "
        f"a = read_archive({str(DATA / 'explore_outputs' / 'complete' / 'visited.npz')!r}); "
        f"b = read_archive({str(DATA / 'pyscf_outputs' / 'all_converged' / 'labelled.npz')!r}); "
        "print(a.count, b.count, 'ase.io' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "2", "False", "False"]


@pytest.mark.parametrize(
    ("folder", "archive", "stream"),
    [
        ("explore_outputs/complete", "visited.npz", "visited.extxyz"),
        ("pyscf_outputs/all_converged", "labelled.npz", "labelled.extxyz"),
    ],
)
def test_a_finished_jobs_archive_holds_what_its_extxyz_holds(folder, archive, stream):
    from aiida_lmlp.formats.conformation_arrays import ConformationArrays, read_archive
    from aiida_lmlp.potential.exploration import read_visited

    packed = read_archive(DATA / folder / archive).arrays
    streamed = ConformationArrays.from_atoms(read_visited(DATA / folder / stream)).arrays
    assert sorted(packed) == sorted(streamed)
    for key, value in packed.items():
        if value.dtype.kind == "f":  # extxyz keeps 8 significant decimals
            np.testing.assert_allclose(value, streamed[key], rtol=1e-7, atol=1e-7, err_msg=key)
        elif key != "ids":  # ids hash the exact positions, which the extxyz rounded
            np.testing.assert_array_equal(value, streamed[key], err_msg=key)
