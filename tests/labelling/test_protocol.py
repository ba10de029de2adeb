"""Label protocols: validation, what counts as the same physics, the extras a labeller needs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ase import units

from aiida_lmlp.labelling.protocol import RYDBERG, LabelProtocol, ProtocolError, missing_extra
from aiida_lmlp.workflows.labellers import labeller_parameters


@pytest.mark.parametrize(
    "data, key",
    [
        ({"labeller": "vasp", "method": "PBE"}, "labeller"),
        ({"labeller": "cp2k", "method": ""}, "method"),
        ({"labeller": "cp2k", "method": "PBE", "cutoff": -1}, "cutoff"),
        ({"labeller": "cp2k", "method": "PBE", "smearing": 0}, "smearing"),
        ({"labeller": "cp2k", "method": "PBE", "spin": "restricted"}, "spin"),
        ({"labeller": "cp2k", "method": "PBE", "dispersion": "d4"}, "dispersion"),
        ({"labeller": "cp2k", "method": "PBE", "basis_set": "x"}, "basis_set"),
        ({"method": "PBE"}, "labeller"),
    ],
)
def test_bad_protocols_name_the_key(data, key):
    with pytest.raises(ProtocolError, match=f"'{key}'"):
        LabelProtocol.from_dict(data)


def test_describe_names_the_physics_in_ev_and_ry():
    protocol = LabelProtocol("cp2k", "PBE", "DZVP-MOLOPT-SR-GTH", cutoff=400 * RYDBERG, dispersion="d3bj")
    assert protocol.describe() == "cp2k PBE/DZVP-MOLOPT-SR-GTH cutoff 5442.28 eV (400 Ry), D3(BJ)"
    assert LabelProtocol.from_dict(protocol.to_dict()) == protocol


def test_labeller_parameters_translate_a_protocol_for_each_code():
    pyscf = labeller_parameters("pyscf", {"method": "PBE", "basis": "def2-SVP", "dispersion": "d3bj"}, {"threads": 1})
    assert (pyscf["xc"], pyscf["basis"], pyscf["dispersion"], pyscf["threads"]) == ("PBE", "def2-SVP", "d3bj", 1)
    cp2k = labeller_parameters("cp2k", {"method": "PBE", "cutoff": 300 * RYDBERG}, {"max_scf": 80})
    assert cp2k["cutoff"] == pytest.approx(300 * RYDBERG) and cp2k["max_scf"] == 80
    xtb = labeller_parameters("xtb", {"smearing": 600 * units.kB})
    assert xtb["method"] == "GFN2-xTB" and xtb["electronic_temperature"] == pytest.approx(600)
    assert labeller_parameters("xtb") == labeller_parameters("xtb", None, {})  # no protocol: the code's defaults


@pytest.mark.parametrize(
    "labeller, protocol, message",
    [
        ("xtb", {"kpoint_density": 3.0}, "Γ point only"),
        ("xtb", {"dispersion": "d3bj"}, "D4 dispersion built in"),
        ("pyscf", {"method": "PBE", "cutoff": 5000.0}, "molecules only"),
        ("cp2k", {"labeller": "pyscf", "method": "PBE"}, "but the labeller is 'cp2k'"),
        ("qe", {"method": "PBE"}, "no adapter"),
    ],
)
def test_what_a_code_cannot_do_is_refused(labeller, protocol, message):
    with pytest.raises(ValueError, match=message):
        labeller_parameters(labeller, protocol)


def test_a_missing_extra_is_named():
    """aiida-cp2k and tblite are installed here, so their absence is simulated in a child process
    (an import hook hides them): the real installation cannot be removed for one test."""
    code = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('aiida_cp2k', 'tblite'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from aiida_lmlp.labelling.protocol import missing_extra\n"
        "print(missing_extra('cp2k')); print(missing_extra('xtb')); print(missing_extra('pyscf'))\n"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "pip install 'aiida-lmlp[cp2k]'" in lines[0] and "'aiida_cp2k'" in lines[0]
    assert "pip install 'aiida-lmlp[xtb]'" in lines[1]
    assert lines[2] == "None"
    assert missing_extra("cp2k") is None and missing_extra("xtb") is None  # installed in this environment
