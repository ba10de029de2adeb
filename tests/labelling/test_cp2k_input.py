"""The CP2K input built from a protocol, and the labels read from real CP2K outputs (``tests/data/cp2k_outputs``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.io import read

from aiida_lmlp.labelling.cp2k_input import (
    Cp2kOutputError,
    Cp2kParameters,
    cp2k_input,
    escalate,
    molecule_box,
    parse_single_point,
)
from aiida_lmlp.labelling.protocol import RYDBERG, LabelProtocol
from aiida_lmlp.labelling.pyscf_single_points import ParameterError

OUTPUTS = Path(__file__).resolve().parents[1] / "data" / "cp2k_outputs"
CASES = json.loads((OUTPUTS / "cases.json").read_text())


def _case(name: str) -> tuple[Atoms, str]:
    from io import StringIO

    return read(StringIO(CASES[name]["structure"]), format="extxyz"), (OUTPUTS / name / "aiida.out").read_text()


def test_a_molecule_gets_a_box_the_wavelet_solver_and_no_stress():
    water = molecule("H2O")
    data, structure, mesh = cp2k_input(water, Cp2kParameters(vacuum=3.0))
    extent = np.ptp(water.positions, axis=0).max()
    assert structure.cell.lengths() == pytest.approx([molecule_box(water, 3.0)] * 3)
    assert extent + 6.0 <= structure.cell.lengths()[0] < extent + 6.5  # rounded up to 0.5 Å
    np.testing.assert_array_equal(structure.positions, water.positions)  # CP2K centres them
    dft = data["FORCE_EVAL"]["DFT"]
    assert dft["POISSON"] == {"PERIODIC": "NONE", "PSOLVER": "WAVELET"}
    assert data["FORCE_EVAL"]["SUBSYS"]["CELL"]["PERIODIC"] == "NONE"
    assert "STRESS_TENSOR" not in data["FORCE_EVAL"] and mesh == (1, 1, 1)
    assert dft["MGRID"]["CUTOFF"] == pytest.approx(400.0)  # Ry, from the default 400 Ry in eV
    assert {k["_"]: k["POTENTIAL"] for k in data["FORCE_EVAL"]["SUBSYS"]["KIND"]} == {"H": "GTH-PBE", "O": "GTH-PBE"}
    assert "OT" in dft["SCF"] and "UKS" not in dft


def test_charge_and_multiplicity_come_from_the_structure_and_open_shells_run_uks():
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    radical.info.update(charge=0, multiplicity=2)
    dft = cp2k_input(radical, Cp2kParameters())[0]["FORCE_EVAL"]["DFT"]
    assert (dft["CHARGE"], dft["MULTIPLICITY"], dft["UKS"]) == (0, 2, True)
    anion = Atoms("Cl", positions=[[0, 0, 0]])
    anion.info["charge"] = -1
    dft = cp2k_input(anion, Cp2kParameters(charge=-1, spin="unrestricted"))[0]["FORCE_EVAL"]["DFT"]
    assert (dft["CHARGE"], dft["MULTIPLICITY"], dft["UKS"]) == (-1, 1, True)


def test_a_periodic_cell_keeps_its_cell_and_gets_stress_kpoints_and_smearing():
    silicon = bulk("Si", "diamond", 5.43)
    parameters = Cp2kParameters(kpoint_density=3.0, smearing=0.1, dispersion="d3bj")
    data, structure, mesh = cp2k_input(silicon, parameters)
    np.testing.assert_array_equal(structure.cell.array, silicon.cell.array)
    assert data["FORCE_EVAL"]["STRESS_TENSOR"] == "ANALYTICAL"
    assert data["FORCE_EVAL"]["DFT"]["POISSON"]["PERIODIC"] == "XYZ"
    # ASE's rule: ceil(density · 2π |b_i|) k-points along reciprocal vector b_i: 3.0 · 2π · 0.319 Å⁻¹ = 6.01 → 7;
    # a 2×2×2 supercell at the same density: 3.006 → 4, the same sampling of the same crystal
    reciprocal = 2 * np.pi * np.linalg.norm(silicon.cell.reciprocal(), axis=1)
    assert 3.0 * reciprocal == pytest.approx([6.0126] * 3, abs=1e-4)
    assert mesh == (7, 7, 7)
    assert cp2k_input(silicon * (2, 2, 2), parameters)[2] == (4, 4, 4)
    scf = data["FORCE_EVAL"]["DFT"]["SCF"]
    assert "OT" not in scf and scf["DIAGONALIZATION"]["_"] == "ON"  # OT can do neither k-points nor smearing
    assert scf["SMEAR"]["ELECTRONIC_TEMPERATURE"] == pytest.approx(0.1 / units.kB)
    pair = data["FORCE_EVAL"]["DFT"]["XC"]["VDW_POTENTIAL"]["PAIR_POTENTIAL"]
    assert pair["TYPE"] == "DFTD3(BJ)" and pair["REFERENCE_FUNCTIONAL"] == "PBE"


def test_partly_periodic_cells_are_refused_by_name():
    slab = bulk("Si", "diamond", 5.43, cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match=r"pbc \[True, True, False\]"):
        cp2k_input(slab, Cp2kParameters())


@pytest.mark.parametrize(
    "data, key",
    [
        ({"method": "B3LYP"}, "method"),
        ({"basis": "def2-SVP"}, "basis"),
        ({"cutoff": 400}, "cutoff"),  # 400 eV: someone meant Ry
        ({"scf": "ot", "smearing": 0.1}, "scf"),
        ({"poisson": "fft"}, "poisson"),
        ({"dispersion": "d4"}, "dispersion"),
        ({"max_scf": 0}, "max_scf"),
        ({"cuttoff": 5000}, "cuttoff"),
    ],
)
def test_bad_parameters_name_the_key(data, key):
    with pytest.raises(ParameterError, match=f"'{key}'"):
        Cp2kParameters.from_dict(data)


def test_the_protocol_holds_the_physics_and_only_the_physics():
    parameters = Cp2kParameters(max_scf=200, mixing_alpha=0.1, dispersion="d3bj")
    protocol = parameters.protocol()
    assert protocol == Cp2kParameters(dispersion="d3bj").protocol()  # SCF settings are not physics
    assert protocol.cutoff == pytest.approx(400 * RYDBERG) and protocol.labeller == "cp2k"
    again = Cp2kParameters.from_protocol(protocol, {"max_scf": 200})
    assert again.protocol() == protocol and again.max_scf == 200
    with pytest.raises(ParameterError, match="'cutoff' is part of the protocol"):
        Cp2kParameters.from_protocol(protocol, {"cutoff": 300 * RYDBERG})
    with pytest.raises(ParameterError, match="labeller 'xtb'"):
        Cp2kParameters.from_protocol(LabelProtocol(labeller="xtb", method="GFN2-xTB"))


def test_scf_escalation_doubles_then_switches_then_shifts():
    first = escalate({"max_scf": 20}, 0)
    second = escalate(first, 1)
    third = escalate(second, 2)
    assert first == {"max_scf": 40}
    assert second["max_scf"] == 80 and second["scf"] == "diagonalization" and second["mixing_alpha"] == 0.2
    assert third["level_shift"] == pytest.approx(0.1 * units.Hartree)
    for settings in (first, second, third):
        assert Cp2kParameters.from_dict(settings).protocol() == Cp2kParameters().protocol()


def test_a_real_molecule_output_in_ev():
    atoms, text = _case("water_molecule")
    point = parse_single_point(text, len(atoms))
    hartree_lines = [line for line in text.splitlines() if line.startswith(" ENERGY| Total FORCE_EVAL")]
    assert point.energy == pytest.approx(float(hartree_lines[-1].split()[-1]) * units.Hartree)
    assert point.forces.shape == (3, 3) and point.stress is None and point.scf_steps > 0
    # the oxygen's x force as printed (Hartree/Bohr), converted
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "ATOMIC FORCES in [a.u.]" in line)
    oxygen = [float(x) for x in lines[start + 3].split()[3:6]]
    np.testing.assert_allclose(point.forces[0], np.array(oxygen) * units.Hartree / units.Bohr)


def test_a_real_periodic_output_gives_the_stress_with_ases_sign():
    atoms, text = _case("water_cell")
    point = parse_single_point(text, len(atoms))
    lines = [line.split() for line in text.splitlines() if line.startswith(" STRESS|      x")]
    printed = float(lines[0][2]) * units.GPa  # CP2K's xx entry, GPa, positive under compression
    assert point.stress[0, 0] == pytest.approx(-printed)
    np.testing.assert_allclose(point.stress, point.stress.T)


def test_the_newer_force_and_energy_layout_is_read():
    # the layout CP2K prints from 2025 on: "[hartree]" without colon, and FORCES| lines; values made up here
    text = "\n".join(
        [
            " ENERGY| Total FORCE_EVAL ( QS ) energy [hartree]             -3.5",
            " FORCES| Atomic forces [hartree/bohr]",
            " FORCES|   Atom     x               y               z               |f|",
            " FORCES|      1 -1.00000000E-01  2.00000000E-01 -3.00000000E-01   3.74165739E-01",
            " FORCES|      2  4.00000000E-01 -5.00000000E-01  6.00000000E-01   8.77496439E-01",
            " FORCES| Sum     3.00000000E-01 -3.00000000E-01  3.00000000E-01",
            " FORCES| Total atomic force                                        5.19615242E-01",
        ]
    )
    point = parse_single_point(text, 2)
    assert point.energy == pytest.approx(-3.5 * units.Hartree)
    expected = np.array([[-0.1, 0.2, -0.3], [0.4, -0.5, 0.6]]) * units.Hartree / units.Bohr
    np.testing.assert_allclose(point.forces, expected)


def test_an_output_without_forces_names_what_is_missing():
    atoms, text = _case("water_molecule")
    cut = text[: text.index("ATOMIC FORCES in")]
    with pytest.raises(Cp2kOutputError, match="no forces"):
        parse_single_point(cut, len(atoms))
    with pytest.raises(Cp2kOutputError, match="forces of 3 atoms printed for 4 atoms"):
        parse_single_point(text, 4)
    with pytest.raises(Cp2kOutputError, match="no 'ENERGY"):
        parse_single_point("", 3)
