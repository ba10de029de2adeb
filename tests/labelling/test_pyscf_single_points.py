"""PySCF single points in-process: agreement with PySCF itself, units, finite differences, batches."""

import json
import subprocess
import sys

import numpy as np
import pyscf
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

from aiida_lmlp.labelling import ParameterError, PyscfParameters, label_batch, single_point
from aiida_lmlp.labelling.pyscf_single_points import resolve_charge_multiplicity

HF_STO3G = dict(xc="HF", basis="sto-3g", threads=1)  # one thread: steadier on a shared machine


@pytest.fixture(scope="module")
def cl_frames(sn2_frames):
    """Cl⁻ + CH3Cl conformations (6 atoms, charge −1 singlet in their info)."""
    frames = [atoms for atoms in sn2_frames if atoms.info["reaction"] == "Cl+CH3Cl"]
    assert len(frames) >= 2
    return frames


def _direct_pyscf(atoms, charge, spin, xc, basis, grid_level=3, conv_tol=1e-9):
    """The same single point written straight against PySCF: (energy in Eh, gradient in Eh/Bohr)."""
    from pyscf import df, dft, gto, scf

    mol = gto.M(
        atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        unit="Angstrom",
        basis=basis,
        charge=charge,
        spin=spin,
        verbose=0,
    )
    if xc == "HF":
        mf = scf.RHF(mol) if spin == 0 else scf.UHF(mol)
    else:
        mf = dft.RKS(mol, xc=xc) if spin == 0 else dft.UKS(mol, xc=xc)
        mf.grids.level = grid_level
    mf = mf.density_fit(auxbasis=df.make_auxbasis(mol))
    mf.conv_tol = conv_tol
    energy = mf.kernel()
    assert mf.converged
    return energy, mf.nuc_grad_method().kernel()


def test_restricted_hf_agrees_with_direct_pyscf_in_ase_units(cl_frames):
    atoms = cl_frames[0]
    result = single_point(atoms, PyscfParameters(**HF_STO3G))
    energy, gradient = _direct_pyscf(atoms, -1, 0, "HF", "sto-3g")
    assert result.converged and result.cycles > 1
    assert (result.charge, result.multiplicity) == (-1, 1)  # from atoms.info
    # eV and eV/Å with ase.units' constants, nothing else
    assert abs(result.energy - energy * units.Hartree) < 1e-8
    assert np.abs(result.forces - (-gradient * units.Hartree / units.Bohr)).max() < 1e-8
    assert result.forces.shape == (len(atoms), 3)
    assert abs(result.forces.sum(axis=0)).max() < 1e-3  # translational invariance (no grid)


def test_unrestricted_dft_takes_charge_and_multiplicity_from_info(cl_frames):
    methyl = cl_frames[0][[i for i, s in enumerate(cl_frames[0].get_chemical_symbols()) if s in "CH"]]
    methyl.info.update(charge=0, multiplicity=2)  # the CH3 radical of the conformation: UKS
    parameters = PyscfParameters(xc="PBE", basis="sto-3g", grid_level=1, threads=1)
    from pyscf import lib

    threads = lib.num_threads()
    result = single_point(methyl, parameters)
    assert lib.num_threads() == threads  # the thread setting is put back
    energy, gradient = _direct_pyscf(methyl, 0, 1, "PBE", "sto-3g", grid_level=1)
    assert result.converged and (result.charge, result.multiplicity) == (0, 2)
    assert abs(result.energy - energy * units.Hartree) < 1e-8
    assert np.abs(result.forces - (-gradient * units.Hartree / units.Bohr)).max() < 1e-8


def test_parameters_override_info_charge_and_multiplicity():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"charge": 1, "multiplicity": 2})
    assert resolve_charge_multiplicity(atoms, PyscfParameters()) == (1, 2)
    assert resolve_charge_multiplicity(atoms, PyscfParameters(charge=0, multiplicity=1)) == (0, 1)
    assert resolve_charge_multiplicity(Atoms("H2"), PyscfParameters()) == (0, 1)
    atoms.info["charge"] = 0.5
    with pytest.raises(ValueError, match="charge"):
        resolve_charge_multiplicity(atoms, PyscfParameters())


def test_forces_are_the_negative_energy_gradient(cl_frames):
    """Central differences D(h) of the energy; the tolerance comes from the step.

    Truncation error of D(h) ≈ |D(h) − D(2h)| / 3 (Richardson, error ∝ h²); rounding error of
    D(h) ≤ 2 δE / (2h) with δE the SCF energy error (≤ conv_tol, in eV).
    """
    parameters = PyscfParameters(**HF_STO3G, conv_tol=1e-12)
    atoms = cl_frames[1]
    forces = single_point(atoms, parameters).forces
    h = 1e-3  # Å
    rounding = 2 * 1e-12 * units.Hartree / (2 * h)

    def energy(index, axis, shift):
        displaced = atoms.copy()
        displaced.positions[index, axis] += shift
        return single_point(displaced, parameters).energy

    index, axis = np.unravel_index(np.abs(forces).argmax(), forces.shape)  # sign and units show best here
    d = {s: -(energy(index, axis, s) - energy(index, axis, -s)) / (2 * s) for s in (h, 2 * h)}
    truncation = abs(d[h] - d[2 * h]) / 3
    tolerance = 2 * truncation + rounding
    assert tolerance < 1e-3 < abs(forces[index, axis])  # the check has teeth
    assert abs(forces[index, axis] - d[h]) <= tolerance, (index, axis, forces[index, axis], d)


def test_the_second_order_fallback_finishes_what_diis_left_unconverged(cl_frames):
    """DIIS stopped after 2 cycles; Newton from its orbitals reaches the converged DIIS labels."""
    reference = single_point(cl_frames[0], PyscfParameters(**HF_STO3G))
    assert reference.converged and reference.cycles > 2 and reference.second_order_cycles == 0
    stopped = single_point(cl_frames[0], PyscfParameters(**HF_STO3G, max_cycle=2, second_order=False))
    assert not stopped.converged and stopped.forces is None
    finished = single_point(cl_frames[0], PyscfParameters(**HF_STO3G, max_cycle=2))
    assert finished.converged and finished.cycles == 2 and finished.second_order_cycles >= 1
    assert abs(finished.energy - reference.energy) < 1e-6  # eV; conv_tol 1e-9 Eh
    np.testing.assert_allclose(finished.forces, reference.forces, atol=1e-3)


def test_batch_keeps_the_converged_and_reports_the_rest(cl_frames, tmp_path):
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"reaction": "none"})
    h2.calc = SinglePointCalculator(h2, energy=123.0, forces=np.ones((2, 3)))  # stale labels must not survive
    chloride = Atoms("Cl", info={"charge": -1})
    odd = cl_frames[0].copy()
    odd.info["charge"] = 0  # 43 electrons cannot be a singlet
    periodic = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=True)
    structures = [h2, cl_frames[0], chloride, odd, periodic]
    # max_cycle 2 and no second-order fallback: H2 and Cl⁻ converge in 2 cycles, the SN2
    # conformation needs about 9
    parameters = PyscfParameters(**HF_STO3G, max_cycle=2, second_order=False)
    out, status = tmp_path / "labelled.extxyz", tmp_path / "status.jsonl"
    summary = label_batch(structures, parameters, out, status)

    lines = [json.loads(line) for line in status.read_text().splitlines()]
    start, records, finished = lines[0], lines[1:-1], lines[-1]
    assert start["event"] == "start" and start["count"] == 5
    assert start["parameters"] == parameters.to_dict() and start["parameters"]["max_cycle"] == 2
    assert start["parameters"]["charge"] is None and start["pyscf_version"].startswith("2.")
    assert [r["status"] for r in records] == ["converged", "not_converged", "converged", "error", "error"]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert finished == {"event": "finished", "converged": 2, "not_converged": 1, "errors": 2}
    assert (summary.converged, summary.not_converged, summary.errors) == (2, 1, 2)
    for record in records:
        assert set(record) == {"index", "status", "energy", "scf_cycles", "seconds", "message"}
        assert record["seconds"] >= 0
    assert records[1]["energy"] is None and records[1]["scf_cycles"] == 2 and "not converged" in records[1]["message"]
    assert "Electron number" in records[3]["message"] and records[3]["scf_cycles"] is None
    assert "periodic" in records[4]["message"]
    assert records[0]["message"] is None

    labelled = read(out, ":")
    assert [a.info["index"] for a in labelled] == [0, 2]
    for atoms, source in zip(labelled, (h2, chloride)):
        record = records[atoms.info["index"]]
        assert atoms.get_potential_energy() == record["energy"]  # written at full precision
        expected = single_point(source, parameters)
        assert abs(atoms.get_potential_energy() - expected.energy) < 1e-8
        assert np.abs(atoms.get_forces() - expected.forces).max() < 1e-7  # extxyz keeps 8 decimals
        assert np.allclose(atoms.positions, source.positions) and not atoms.pbc.any()
        assert atoms.info["method"] == parameters.method_label() == f"HF/sto-3g RI-JK (PySCF {pyscf.__version__})"
        assert atoms.info["scf_cycles"] == record["scf_cycles"] and atoms.info["seconds"] == record["seconds"]
    assert (labelled[0].info["charge"], labelled[0].info["multiplicity"]) == (0, 1)
    assert (labelled[1].info["charge"], labelled[1].info["multiplicity"]) == (-1, 1)
    assert labelled[0].get_potential_energy() != 123.0 and labelled[0].info["reaction"] == "none"


def test_method_label_names_the_fitting():
    assert PyscfParameters().method_label().startswith("PBE/def2-SVP RI-J (PySCF ")
    assert PyscfParameters(xc="B3LYP").method_label().startswith("B3LYP/def2-SVP RI-JK")
    assert PyscfParameters(density_fit=False, basis="sto-3g").method_label().startswith("PBE/sto-3g (PySCF")


def test_defaults_and_round_trip():
    parameters = PyscfParameters.from_dict({})
    assert parameters.to_dict() == {
        "xc": "PBE",
        "basis": "def2-SVP",
        "density_fit": True,
        "auxbasis": None,
        "charge": None,
        "multiplicity": None,
        "conv_tol": 1e-9,
        "max_cycle": 100,
        "damping": 0.0,
        "diis_start_cycle": 1,
        "level_shift": 0.0,
        "second_order": True,
        "grid_level": 3,
        "max_memory": 2000,
        "threads": None,
        "dispersion": None,
    }
    custom = {"xc": "hf", "basis": {"H": "sto-3g", "Cl": "3-21g"}, "multiplicity": 2, "threads": 1}
    assert PyscfParameters.from_dict(PyscfParameters.from_dict(custom).to_dict()).to_dict()["basis"] == custom["basis"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"fail_on": 1}, "fail_on"),
        ({"xc": "NOT-A-FUNCTIONAL"}, "xc"),
        ({"basis": 3}, "basis"),
        ({"basis": ""}, "basis"),
        ({"density_fit": "yes"}, "density_fit"),
        ({"charge": 0.5}, "charge"),
        ({"charge": True}, "charge"),
        ({"multiplicity": 0}, "multiplicity"),
        ({"conv_tol": -1e-9}, "conv_tol"),
        ({"conv_tol": float("nan")}, "conv_tol"),
        ({"max_cycle": 0}, "max_cycle"),
        ({"max_cycle": 10.0}, "max_cycle"),
        ({"damping": 1.0}, "damping"),
        ({"damping": 0.5}, "damping"),  # without diis_start_cycle ≥ 3 it would do nothing
        ({"level_shift": -0.1}, "level_shift"),
        ({"grid_level": 10}, "grid_level"),
        ({"max_memory": 0}, "max_memory"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_parameters_name_the_key(data, key):
    with pytest.raises(ParameterError, match=f"'{key}'"):
        PyscfParameters.from_dict(data)


def test_damping_with_late_diis_is_accepted():
    assert PyscfParameters(damping=0.5, diis_start_cycle=4).damping == 0.5


def test_an_unexpected_exception_is_a_crash_without_closing_line(tmp_path, monkeypatch):
    """Outside PySCF nothing is caught: the exception reaches the caller and status.jsonl has no closing line."""
    from aiida_lmlp.labelling import pyscf_single_points, run_interruptible

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pyscf_single_points, "_labelled_frame", broken)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    status = tmp_path / "status.jsonl"
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_interruptible([h2, h2], PyscfParameters(**HF_STO3G), tmp_path / "labelled.extxyz", status)
    lines = [json.loads(line) for line in status.read_text().splitlines()]
    assert [line.get("event") for line in lines] == ["start"]


def test_importing_the_labeller_is_cheap():
    """No aiida, no torch, and PySCF only when a calculation runs."""
    code = "import sys, aiida_lmlp.labelling; print(sorted({'aiida', 'torch', 'pyscf'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
