"""Label protocols on datasets: recorded, kept through selections, and never mixed by accident."""

from __future__ import annotations

import pytest
from aiida import orm
from ase.build import molecule

from aiida_lmlp.data import LmlpDatasetData, merge_datasets, select_conformations
from aiida_lmlp.formats.conformation_arrays import DatasetError
from aiida_lmlp.labelling.cp2k_input import Cp2kParameters
from aiida_lmlp.labelling.pyscf_single_points import PyscfParameters
from aiida_lmlp.labelling.xtb_single_points import XtbParameters

from .campaign_inputs import campaign_inputs


def _labelled(protocol: dict | None, shift: float) -> LmlpDatasetData:
    water = molecule("H2O")
    water.positions[0, 0] += shift
    water.info["energy"] = -10.0 - shift
    water.arrays["forces"] = water.positions * 0.1
    return LmlpDatasetData.from_atoms([water], label_method=f"method {shift}", label_protocol=protocol).store()


CP2K = Cp2kParameters().protocol().to_dict()
PYSCF = PyscfParameters(xc="PBE", basis="def2-SVP").protocol().to_dict()


def test_merging_two_protocols_is_refused_naming_both(aiida_profile):
    first, second = _labelled(CP2K, 0.0), _labelled(PYSCF, 0.1)
    with pytest.raises(DatasetError) as refused:
        merge_datasets(a=first, b=second)
    message = str(refused.value)
    assert "cp2k PBE/DZVP-MOLOPT-SR-GTH cutoff 5442.28 eV (400 Ry)" in message
    assert "pyscf PBE/def2-SVP" in message and f"<{first.pk}>" in message and f"<{second.pk}>" in message
    merged = merge_datasets(a=first, b=second, allow_mixed_protocols=orm.Bool(True))
    assert merged.count == 2 and merged.label_protocol is None  # mixed: no single protocol to claim
    assert merged.label_method == "method 0.0; method 0.1"


def test_the_same_protocol_merges_and_is_kept_through_selections(aiida_profile):
    merged = merge_datasets(a=_labelled(CP2K, 0.2), b=_labelled(CP2K, 0.3))
    assert merged.label_protocol == CP2K
    assert select_conformations(merged, orm.List([1])).label_protocol == CP2K
    assert merged.subset([0]).label_protocol == CP2K


def test_labels_without_a_recorded_protocol_merge_with_any(aiida_profile):
    merged = merge_datasets(a=_labelled(None, 0.4), b=_labelled(CP2K, 0.5))
    assert merged.count == 2 and merged.label_protocol is None


def test_a_bad_protocol_is_refused_on_the_dataset(aiida_profile):
    with pytest.raises(DatasetError, match="label_protocol: protocol 'spin'"):
        _labelled({**CP2K, "spin": "sideways"}, 0.6)


def test_a_campaign_refuses_initial_labels_of_another_protocol(lmlp_code):
    from aiida.engine import run_get_node

    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    initial = _labelled(XtbParameters().protocol().to_dict(), 0.7)
    inputs = campaign_inputs(lmlp_code("lmlp.train"), initial)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=r"labelled with xtb GFN2-xTB.*campaign labels with pyscf HF/sto-3g"):
        run_get_node(LifelongWorkChain, **inputs)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before
    inputs = campaign_inputs(lmlp_code("lmlp.train"), initial, allow_mixed_protocols=orm.Bool(True))
    namespace = LifelongWorkChain.spec().inputs
    assert namespace.validate(namespace.pre_process(inputs)) is None  # accepted when asked for
