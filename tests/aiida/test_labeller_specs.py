"""Campaign specs with ``label.labeller`` and ``label.protocol``: validated, turned into ``lmlp.label`` inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiida import orm

from aiida_lmlp.campaign import SpecError, load_spec
from aiida_lmlp.labelling.protocol import RYDBERG

ROOT = Path(__file__).resolve().parents[2]
CP2K_SPEC = ROOT / "workflows" / "labellers" / "quickstart_cp2k.yaml"
XTB_SPEC = ROOT / "workflows" / "labellers" / "quickstart_xtb.yaml"


@pytest.fixture
def codes(localhost):
    """``lmlp@localhost`` and ``cp2k@localhost`` as the specs name them."""
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer("localhost")
    except NotExistent:
        computer = orm.Computer(
            label="localhost", hostname="localhost", transport_type="core.local", scheduler_type="core.direct"
        ).store()
        computer.set_default_mpiprocs_per_machine(1)
    lmlp = str(Path(sys.executable).with_name("lmlp"))
    for label, executable, plugin in (("lmlp", lmlp, None), ("cp2k", "/usr/bin/cp2k", "cp2k")):
        try:
            orm.load_code(f"{label}@localhost")
        except NotExistent:
            orm.InstalledCode(
                label=label, computer=computer, filepath_executable=executable, default_calc_job_plugin=plugin
            ).store()


def test_the_cp2k_quickstart_spec_becomes_cp2k_labelling_inputs(codes):
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    spec = load_spec(CP2K_SPEC, check_codes=True)
    inputs = spec.build_inputs(store=False)
    label = inputs["label"]
    assert set(label) == {"cp2k", "max_attempts"}
    parameters = label["cp2k"]["parameters"].get_dict()
    assert parameters["cutoff"] == pytest.approx(250 * RYDBERG, rel=1e-5) and parameters["basis"] == "SZV-MOLOPT-GTH"
    assert parameters["vacuum"] == 3.0 and parameters["scf"] == "diagonalization"
    assert label["cp2k"]["options"]["environment_variables"] == {"OMP_NUM_THREADS": "1"}
    assert label["cp2k"]["code"].default_calc_job_plugin == "cp2k"
    namespace = LifelongWorkChain.spec().inputs
    assert namespace.validate(namespace.pre_process(inputs)) is None


def test_the_xtb_quickstart_spec_labels_with_the_lmlp_code(codes):
    inputs = load_spec(XTB_SPEC, check_codes=True).build_inputs(store=False)
    xtb = inputs["label"]["xtb"]
    assert xtb["parameters"]["method"] == "GFN2-xTB" and xtb["code"].label == "lmlp"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label": {"labeller": "cp2k", "protocol": {"method": "PBE", "cutof": 3000}}}, "label.protocol: unknown"),
        ({"label": {"labeller": "cp2k", "protocol": {"cutoff": 3000}, "parameters": {"cutoff": 4000}}}, "part of"),
        ({"label": {"labeller": "xtb", "protocol": {"kpoint_density": 2.0}}}, "Γ point only"),
        ({"label": {"labeller": "vasp"}}, "label.labeller must be one of"),
        ({"label": {"labeller": "cp2k"}, "codes": {"lmlp": "lmlp@localhost"}}, "codes.label: the cp2k labeller"),
    ],
)
def test_bad_labeller_settings_are_named(tmp_path, change, message):
    import yaml

    data = yaml.safe_load(XTB_SPEC.read_text())
    data.update(change)
    data["structures"] = str(ROOT / "workflows" / "cl_ch3cl_start.extxyz")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_a_spec_names_the_extra_its_labeller_needs():
    """aiida-cp2k is installed here, so its absence is simulated in a child process (an import hook hides it)."""
    code = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'aiida_cp2k':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from aiida_lmlp.campaign import SpecError, load_spec\n"
        "try:\n"
        f"    load_spec({str(CP2K_SPEC)!r})\n"
        "except SpecError as error:\n"
        "    print(error)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "label.labeller: labeller 'cp2k' needs" in output and "pip install 'aiida-lmlp[cp2k]'" in output
