"""``lmlp.label`` with xTB (tblite) and CP2K (Debian's ``cp2k`` through aiida-cp2k), run for real.

Units are checked against finite differences computed by the same labeller in the same batch
(forces as −dE/dx, the stress as the strain derivative per volume), and CP2K against PySCF on
an SN2 conformation. ``.ci/run`` installs the ``cp2k`` package.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms
from ase.build import bulk, molecule

from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.labelling.protocol import RYDBERG
from aiida_lmlp.labelling.xtb_single_points import XtbParameters, single_point
from aiida_lmlp.workflows.label import LabelWorkChain

CP2K_OPTIONS = {"max_wallclock_seconds": 1800, "environment_variables": {"OMP_NUM_THREADS": "1"}}
# small and fast: PBE, single-zeta MOLOPT, 250 Ry; the labels are checked for consistency, not accuracy
CHEAP_CP2K = {"basis": "SZV-MOLOPT-GTH", "cutoff": 250 * RYDBERG, "rel_cutoff": 40 * RYDBERG, "vacuum": 3.0}
H = 0.01  # Å, finite-difference step
EPS = 0.005  # finite-difference strain


@pytest.fixture(scope="module")
def cp2k_code(localhost):
    """Debian's cp2k as an InstalledCode for aiida-cp2k's ``cp2k`` plugin."""
    executable = shutil.which("cp2k")
    assert executable, "the cp2k executable is not on the PATH: apt-get install cp2k (as .ci/run does)"
    try:
        return orm.load_code(f"cp2k@{localhost.label}")
    except Exception:  # NotExistent: make it
        return orm.InstalledCode(
            label="cp2k", computer=localhost, filepath_executable=executable, default_calc_job_plugin="cp2k"
        ).store()


def _water() -> Atoms:
    water = molecule("H2O")
    water.positions[1] += [0.05, 0.1, -0.05]  # a force on every atom
    return water


def _water_cell() -> Atoms:
    cell = _water()
    cell.set_cell([5.0, 5.5, 6.0])
    cell.center()
    cell.pbc = True
    return cell


def _stretched(atoms: Atoms, step: float) -> Atoms:
    """The oxygen moved by ``step`` along z, each hydrogen by −step/2: the mean position stays, so CP2K
    centres every displaced molecule at the same place in its box (a rigid shift against the grid would
    add the grid's own small energy change)."""
    moved = atoms.copy()
    moved.positions[:, 2] += np.array([1.0, -0.5, -0.5]) * step
    return moved


def _scaled(atoms: Atoms, factor: float) -> Atoms:
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return scaled


def _radical_singlet() -> Atoms:
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    radical.info["multiplicity"] = 1  # 9 electrons: impossible
    return radical


def _by_position(dataset: LmlpDatasetData) -> dict:
    return {
        tuple(np.round(a.positions, 6).ravel()) + tuple(np.round(a.cell.array, 6).ravel()): a
        for a in dataset.to_atoms()
    }


def _find(labelled: dict, atoms: Atoms) -> Atoms:
    return labelled[tuple(np.round(atoms.positions, 6).ravel()) + tuple(np.round(atoms.cell.array, 6).ravel())]


def test_xtb_labels_molecules_and_cells_and_drops_the_impossible(lmlp_code):
    water, cell, radical = _water(), bulk("Si", "diamond", 5.43, cubic=True), _radical_singlet()
    cell.rattle(0.05, seed=3)
    structures = LmlpDatasetData.from_atoms([water, radical, cell]).store()
    results, node = run_get_node(
        LabelWorkChain,
        structures=structures,
        xtb={"code": lmlp_code("lmlp.xtb"), "metadata": {"options": {"max_wallclock_seconds": 600}}},
    )
    assert node.is_finished_ok, node.exit_message
    labelled = results["labelled"]
    dropped = results["dropped"].get_list()
    assert [d["index"] for d in dropped] == [1] and dropped[0]["reason"].startswith("tblite error")
    assert labelled.count == 2 and labelled.base.attributes.get("has_stress")
    assert labelled.label_protocol == XtbParameters().protocol().to_dict()
    found = _by_position(labelled)
    for atoms in (water, cell):
        expected = single_point(atoms)
        got = _find(found, atoms)
        assert got.get_potential_energy() == pytest.approx(expected.energy, abs=1e-6)
        np.testing.assert_allclose(got.get_forces(), expected.forces, atol=1e-6)
    np.testing.assert_allclose(_find(found, cell).get_stress(voigt=False), single_point(cell).stress, atol=1e-8)
    assert "stress" not in _find(found, water).calc.results


def test_cp2k_forces_and_stress_are_energy_derivatives_in_ev_units(cp2k_code):
    water, cell = _water(), _water_cell()
    frames = [water, _stretched(water, H), _stretched(water, -H)]
    frames += [cell, _scaled(cell, 1 + EPS), _scaled(cell, 1 - EPS), _radical_singlet()]
    structures = LmlpDatasetData.from_atoms(frames).store()
    results, node = run_get_node(
        LabelWorkChain,
        structures=structures,
        cp2k={"code": cp2k_code, "parameters": orm.Dict(CHEAP_CP2K), "options": orm.Dict(CP2K_OPTIONS)},
    )
    assert node.is_finished_ok, node.exit_message
    labelled, dropped = results["labelled"], results["dropped"].get_list()
    # CP2K refuses an odd electron count as a singlet; its own message is kept
    assert [d["index"] for d in dropped] == [6] and "LSD" in dropped[0]["reason"]
    assert dropped[0]["reason"].startswith("CP2K error")
    found = _by_position(labelled)
    energy = {i: _find(found, frames[i]).get_potential_energy() for i in range(6)}
    # forces (eV/Å) are −dE/dx (eV over Å) of the same code, along the stretch
    forces = _find(found, water).get_forces()[:, 2]
    assert forces @ [1.0, -0.5, -0.5] == pytest.approx(-(energy[1] - energy[2]) / (2 * H), rel=0.03)
    # the stress (eV/Å³, ASE's sign) is the strain derivative per volume: trace for a uniform strain
    stress = _find(found, cell).get_stress(voigt=False)
    assert np.trace(stress) == pytest.approx((energy[4] - energy[5]) / (2 * EPS) / cell.get_volume(), rel=0.05)
    assert "stress" not in _find(found, water).calc.results
    # the protocol is on the dataset; every conformation comes from a Cp2kCalculation of this work chain
    protocol = labelled.label_protocol
    assert protocol["labeller"] == "cp2k" and protocol["basis"] == "SZV-MOLOPT-GTH"
    assert protocol["cutoff"] == pytest.approx(250 * RYDBERG)
    query = orm.QueryBuilder().append(LabelWorkChain, filters={"id": node.pk}, tag="label")
    query.append(orm.WorkChainNode, with_incoming="label", tag="batch")
    query.append(orm.CalcJobNode, with_incoming="batch", tag="cp2k", filters={"attributes.exit_status": 0})
    query.append(orm.ArrayData, with_incoming="cp2k", edge_filters={"label": "lmlp_labels"})
    assert query.count() == 6


def test_cp2k_scf_failures_are_retried_with_escalating_settings(cp2k_code):
    structures = LmlpDatasetData.from_atoms([_water()]).store()
    parameters = {**CHEAP_CP2K, "scf": "diagonalization", "max_scf": 8, "mixing_alpha": 0.4}
    results, node = run_get_node(
        LabelWorkChain,
        structures=structures,
        cp2k={"code": cp2k_code, "parameters": orm.Dict(parameters), "options": orm.Dict(CP2K_OPTIONS)},
        max_attempts=orm.Int(6),
    )
    assert node.is_finished_ok, node.exit_message
    assert results["labelled"].count == 1
    batches = sorted(node.called, key=lambda n: n.ctime)
    assert [b.exit_status for b in batches[:-1]] == [310] * (len(batches) - 1)
    sent = [b.inputs.parameters.get_dict() for b in batches]
    assert len(sent) >= 2 and [p["max_scf"] for p in sent] == [8 * 2**i for i in range(len(sent))]
    # the first retry only doubles the iterations; from the second on the mixing is gentler
    assert sent[1]["mixing_alpha"] == 0.4 and all(p["mixing_alpha"] == 0.2 for p in sent[2:])
    # the unconverged SCF's energy and forces (CP2K prints them after a warning) never became labels
    calcs = [c for b in batches for c in b.called if isinstance(c, orm.CalcJobNode)]
    assert sum(c.exit_status == 450 for c in calcs) == len(batches) - 1


def test_cp2k_and_pyscf_forces_agree_on_an_sn2_conformation(cp2k_code, sn2_frames):
    """PBE with a double-zeta polarised basis in both codes: DZVP-MOLOPT-SR-GTH with GTH pseudopotentials
    (CP2K, 300 Ry, wavelet Poisson solver) and def2-SVP all-electron (PySCF, RI-J).

    The Cl⁻ + CH₃Cl conformation with the largest forces of the reference sample (displaced 0.15 Å
    from the reaction path): near equilibrium the forces are small and their direction is decided by
    what differs between the two setups (pseudopotentials, basis, grid), not by the chemistry.
    """
    from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters
    from aiida_lmlp.labelling.pyscf_single_points import single_point as pyscf_single_point

    candidates = [a for a in sn2_frames if a.info["reaction"] == "Cl+CH3Cl"]
    atoms = max(candidates, key=lambda a: np.linalg.norm(a.get_forces())).copy()
    atoms.calc = None
    structures = LmlpDatasetData.from_atoms([atoms]).store()
    cp2k = {"method": "PBE", "basis": "DZVP-MOLOPT-SR-GTH", "cutoff": 300 * RYDBERG, "vacuum": 3.0}
    results, node = run_get_node(
        LabelWorkChain,
        structures=structures,
        cp2k={
            "code": cp2k_code,
            "parameters": orm.Dict({**cp2k, "scf": "diagonalization"}),
            "options": orm.Dict(CP2K_OPTIONS),
        },
    )
    assert node.is_finished_ok, node.exit_message
    forces_cp2k = results["labelled"].to_atoms()[0].get_forces()
    forces_pyscf = pyscf_single_point(atoms, PyscfParameters(xc="PBE", basis="def2-SVP", threads=1)).forces
    a, b = forces_cp2k.ravel(), forces_pyscf.ravel()
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert cosine > 0.98, f"force directions differ: cos {cosine:.3f}"
    assert 0.85 < np.linalg.norm(a) / np.linalg.norm(b) < 1.15
    for atom in range(len(atoms)):  # atom by atom, where the force is large enough to have a direction
        if np.linalg.norm(forces_pyscf[atom]) > 0.5:
            cos_atom = forces_cp2k[atom] @ forces_pyscf[atom]
            cos_atom /= np.linalg.norm(forces_cp2k[atom]) * np.linalg.norm(forces_pyscf[atom])
            assert cos_atom > 0.9, f"atom {atom}: cos {cos_atom:.3f}"
