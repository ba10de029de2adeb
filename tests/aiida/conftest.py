"""Fixtures for the AiiDA layer: ``lmlp`` codes on localhost (core.local + core.direct) and stored datasets.

aiida-core's fixtures (``aiida_profile``: a temporary SQLite profile) give the profile; the
computer and codes here are session-scoped so that expensive results (a trained potential)
can be shared by the tests of a module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LMLP_EXECUTABLE = Path(sys.executable).with_name("lmlp")


@pytest.fixture(scope="session")
def localhost(aiida_profile, tmp_path_factory):
    """This machine as an AiiDA computer: ``core.local`` transport, ``core.direct`` scheduler."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_computer("localhost-lmlp")
    except NotExistent:
        pass
    computer = orm.Computer(
        label="localhost-lmlp",
        hostname="localhost",
        transport_type="core.local",
        scheduler_type="core.direct",
        workdir=str(tmp_path_factory.mktemp("aiida-work")),
    ).store()
    computer.set_minimum_job_poll_interval(0.0)
    computer.set_default_mpiprocs_per_machine(1)
    computer.configure(safe_interval=0.0, use_login_shell=False)  # a login shell costs ~0.15 s per command
    return computer


@pytest.fixture(scope="session")
def lmlp_code(localhost):
    """Factory: the ``lmlp`` executable of this environment as an InstalledCode for a calculation plugin."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    assert LMLP_EXECUTABLE.is_file(), f"the lmlp console script is not installed next to {sys.executable}"

    def factory(plugin: str):
        label = f"lmlp-{plugin.replace('.', '-')}"
        try:
            return orm.load_code(f"{label}@{localhost.label}")
        except NotExistent:
            return orm.InstalledCode(
                label=label,
                computer=localhost,
                filepath_executable=str(LMLP_EXECUTABLE),
                default_calc_job_plugin=plugin,
            ).store()

    return factory


@pytest.fixture(scope="session")
def sn2_dataset(aiida_profile, sn2_frames):
    """40 labelled SN2 conformations (PBE/def2-SVP), stored."""
    from aiida_lmlp.data import LmlpDatasetData

    return LmlpDatasetData.from_atoms(sn2_frames[:40], label_method="PBE/def2-SVP RI-J (PySCF)").store()


SMALL_CAMPAIGN = "small-campaign"


@pytest.fixture(scope="session")
def small_campaign(lmlp_code):
    """One real campaign shared by the campaign, registry and report tests (about 100 s).

    9 initial Cl⁻ + CH3Cl geometries (the last one impossible to label), HF/STO-3G labels,
    2 members, 2 iterations: see ``campaign_inputs.py``. Returns ``(outputs, node)``.
    """
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    from .campaign_inputs import campaign_inputs, initial_structures

    structures = initial_structures(count=9, impossible=1)
    inputs = campaign_inputs(lmlp_code("lmlp.train"), structures, campaign=orm.Str(SMALL_CAMPAIGN))
    results, node = run_get_node(LifelongWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    return results, node
