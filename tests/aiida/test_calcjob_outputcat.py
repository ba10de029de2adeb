"""``verdi calcjob outputcat <pk>`` shows an ``lmlp`` job's output: the jobs declare ``output_filename``."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.cmdline.commands.cmd_calcjob import calcjob_outputcat
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from aiida.plugins.entry_point import get_entry_point_names
from click.testing import CliRunner

from aiida_lmlp.calculations import PyscfCalculation
from aiida_lmlp.calculations.base import LmlpCalcJob
from aiida_lmlp.data import LmlpDatasetData

LMLP_CALCULATIONS = [name for name in get_entry_point_names("aiida.calculations") if name.startswith("lmlp.")]


def test_the_plugin_calculations_are_found():
    assert {"lmlp.train", "lmlp.explore", "lmlp.gather", "lmlp.pyscf"} <= set(LMLP_CALCULATIONS)


@pytest.mark.parametrize("entry_point", LMLP_CALCULATIONS)
def test_every_lmlp_job_names_its_output_file(entry_point):
    options = CalculationFactory(entry_point).spec().inputs["metadata"]["options"]
    assert options["output_filename"].default == LmlpCalcJob.STDOUT
    assert options["scheduler_stderr"].default == "_scheduler-stderr.txt"  # aiida-core's own, untouched


def test_verdi_calcjob_outputcat_prints_what_the_job_printed(lmlp_code, sn2_frames):
    frames = [sn2_frames[0].copy()]
    frames[0].calc = None
    _, node = run_get_node(
        PyscfCalculation,
        code=lmlp_code("lmlp.pyscf"),
        structures=LmlpDatasetData.from_atoms(frames).store(),
        parameters=orm.Dict({"xc": "HF", "basis": "sto-3g", "density_fit": False, "threads": 1}),
    )
    assert node.is_finished_ok, node.exit_message
    result = CliRunner().invoke(calcjob_outputcat, [str(node.pk)])
    assert result.exit_code == 0, result.output
    printed = node.outputs.retrieved.base.repository.get_object_content(LmlpCalcJob.STDOUT)
    assert printed.strip() and result.output == printed
