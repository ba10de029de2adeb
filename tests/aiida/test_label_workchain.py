"""``lmlp.label`` with real PySCF runs: SCF retries, a hopeless structure dropped, nothing lost."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.data import LmlpDatasetData
from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters, single_point
from aiida_lmlp.workflows.label import LabelWorkChain


@pytest.fixture(scope="module")
def structures(aiida_profile):
    """Three Cl⁻ + CH3Cl conformations, and a fourth made neutral: an odd electron count as a singlet."""
    from ase.io import read

    from ..conftest import SN2

    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:4]
    for atoms in frames:
        atoms.calc = None
    frames[3].info["charge"] = 0
    return frames, LmlpDatasetData.from_atoms(frames).store()


def test_label_retries_scf_and_drops_the_hopeless(lmlp_code, structures):
    frames, dataset = structures
    # no second-order fallback, so that 4 DIIS cycles converge nothing and the handler must act
    parameters = {"xc": "HF", "basis": "sto-3g", "max_cycle": 4, "threads": 1, "second_order": False}
    results, node = run_get_node(
        LabelWorkChain,
        structures=dataset,
        pyscf={
            "code": lmlp_code("lmlp.pyscf"),
            "parameters": orm.Dict(parameters),
            "metadata": {"options": {"max_wallclock_seconds": 600}},
        },
    )
    assert node.is_finished_ok, node.exit_message
    labelled, dropped = results["labelled"], results["dropped"].get_list()
    # the impossible spin state is dropped at once, naming PySCF's complaint; the rest is labelled
    assert [d["index"] for d in dropped] == [3] and dropped[0]["reason"].startswith("PySCF error")
    assert labelled.count == 3
    # 4 cycles converge nothing; the handler doubled max_cycle until everything converged
    calls = sorted(node.called, key=lambda n: n.ctime)
    retried = [c for c in calls if c.process_type.endswith("lmlp.pyscf")]
    assert retried[0].inputs.parameters["max_cycle"] == 4 and retried[1].inputs.parameters["max_cycle"] == 8
    assert all(c.exit_status in (0, 310, 311) for c in retried) and len(retried) >= 2
    # labels agree with a direct in-process PySCF call at converged settings
    reference = PyscfParameters.from_dict({**parameters, "max_cycle": 100})
    by_position = {tuple(a.positions.round(8).ravel()): a for a in labelled.to_atoms()}
    for atoms in frames[:3]:
        expected = single_point(atoms, reference)
        got = by_position[tuple(atoms.positions.round(8).ravel())]
        assert got.get_potential_energy() == pytest.approx(expected.energy, abs=1e-5)
    # provenance: every labelled conformation comes from a pyscf calculation of this work chain
    query = orm.QueryBuilder().append(LabelWorkChain, filters={"id": node.pk}, tag="wc")
    query.append(orm.CalcJobNode, with_incoming="wc", tag="calc", project="id")
    query.append(LmlpDatasetData, with_incoming="calc", edge_filters={"label": "labelled"})
    assert query.count() >= 2
