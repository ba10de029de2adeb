"""Jobs pin PyTorch, PySCF, OpenMP, MKL and OpenBLAS to the cores AiiDA allocated: real jobs on core.direct.

Each job runs ``lmlp --record-threads lmlp.threads.json ...``, which writes the thread counts
the libraries ran with; the record comes back in the job's ``retrieved`` folder.
"""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import LmlpTrainCalculation, PyscfCalculation
from aiida_lmlp.calculations.base import allocated_cores
from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.formats.threads import THREAD_VARIABLES


def _resources(cores: int) -> dict:
    return {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": cores}


def _record(node) -> dict:
    return json.loads(node.outputs.retrieved.base.repository.get_object_content("lmlp.threads.json"))


def _script(node) -> list[str]:
    return node.base.repository.get_object_content("_aiidasubmit.sh").splitlines()


def test_a_training_job_runs_torch_on_its_one_core(lmlp_code, sn2_dataset):
    """One core allocated: one thread, where torch would take every core of this machine by itself."""
    results, node = run_get_node(
        LmlpTrainCalculation,
        code=lmlp_code("lmlp.train"),
        datasets={"sn2": sn2_dataset},
        parameters=orm.Dict({"epochs": 1, "members": 1, "hidden": [4], "fit_per_epoch": 1.0}),
        metadata={"options": {"resources": _resources(1), "max_wallclock_seconds": 600}},
    )
    assert node.is_finished_ok, node.exit_message
    record = _record(node)
    assert record["torch"] == 1
    assert record["environment"] == dict.fromkeys(THREAD_VARIABLES, "1")
    assert {f"export {name}='1'" for name in THREAD_VARIABLES} <= set(_script(node))
    assert node.get_option("environment_variables") == dict.fromkeys(THREAD_VARIABLES, "1")


@pytest.fixture(scope="module")
def h2(aiida_profile):
    from ase import Atoms

    return LmlpDatasetData.from_atoms([Atoms("H2", positions=[(0, 0, 0), (0, 0, 0.74)])]).store()


@pytest.mark.parametrize("cores", [1, 2])
def test_a_labelling_job_runs_pyscf_on_its_cores(lmlp_code, h2, cores):
    """PySCF's ``threads`` unset: it takes the cores the job owns (2 = num_cores_per_mpiproc × 1 process)."""
    results, node = run_get_node(
        PyscfCalculation,
        code=lmlp_code("lmlp.pyscf"),
        structures=h2,
        parameters=orm.Dict({"xc": "HF", "basis": "sto-3g", "charge": 0, "multiplicity": 1}),
        metadata={"options": {"resources": _resources(cores), "max_wallclock_seconds": 600}},
    )
    assert node.is_finished_ok, node.exit_message
    record = _record(node)
    assert record["pyscf"] == cores
    assert record["environment"] == dict.fromkeys(THREAD_VARIABLES, str(cores))


def test_environment_variables_given_in_the_options_win(lmlp_code, h2):
    _, node = run_get_node(
        PyscfCalculation,
        code=lmlp_code("lmlp.pyscf"),
        structures=h2,
        parameters=orm.Dict({"xc": "HF", "basis": "sto-3g", "charge": 0, "multiplicity": 1}),
        metadata={
            "options": {
                "resources": _resources(2),
                "environment_variables": {"OMP_NUM_THREADS": "1", "OTHER": "x"},
                "max_wallclock_seconds": 600,
            }
        },
    )
    assert node.is_finished_ok, node.exit_message
    record = _record(node)
    assert record["pyscf"] == 1
    assert record["environment"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    assert "export OTHER='x'" in _script(node)


@pytest.mark.parametrize(
    ("scheduler", "resources", "default_mpiprocs", "cores"),
    [
        ("core.slurm", {"num_machines": 1, "num_mpiprocs_per_machine": 1}, None, 1),  # SLURM: one CPU per task
        ("core.slurm", {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 16}, None, 16),
        ("core.slurm", {"num_machines": 1, "num_mpiprocs_per_machine": 4, "num_cores_per_mpiproc": 2}, None, 8),
        ("core.slurm", {"num_machines": 2, "num_mpiprocs_per_machine": 4}, None, 4),  # lmlp runs on one of them
        ("core.slurm", {"num_machines": 1}, 6, 6),  # the computer's default processes per machine
        ("core.direct", {"num_machines": 1, "num_cores_per_machine": 12, "num_mpiprocs_per_machine": 3}, None, 12),
        ("core.sge", {"parallel_env": "smp", "tot_num_mpiprocs": 8}, None, 8),
    ],
)
def test_allocated_cores(aiida_profile, scheduler, resources, default_mpiprocs, cores):
    computer = orm.Computer(
        label=f"cores-{scheduler}", hostname="h", transport_type="core.local", scheduler_type=scheduler
    )
    computer.set_default_mpiprocs_per_machine(default_mpiprocs)
    assert allocated_cores(resources, computer) == cores


def test_the_overrides_switch_leaves_the_options_as_given(lmlp_code, sn2_dataset, monkeypatch):
    """With ``AIIDA_LMLP_OVERRIDES=off`` the job's options are aiida-core's: no thread variables added."""
    from aiida_lmlp.overrides import SWITCH

    monkeypatch.setenv(SWITCH, "off")
    _, node = run_get_node(
        LmlpTrainCalculation,
        code=lmlp_code("lmlp.train"),
        datasets={"sn2": sn2_dataset},
        parameters=orm.Dict({"epochs": 1, "members": 1, "hidden": [4], "fit_per_epoch": 1.0}),
        metadata={"dry_run": True, "options": {"resources": _resources(2), "environment_variables": {"OTHER": "x"}}},
    )
    assert node.get_option("environment_variables") == {"OTHER": "x"}
