"""Inputs of a small real campaign: Cl⁻ + CH3Cl, HF/STO-3G labels, a 2-member ensemble of tiny networks."""

from __future__ import annotations

from aiida import orm
from ase.io import read

from aiida_lmlp.data import LmlpDatasetData

from ..conftest import SN2

LABEL_PARAMETERS = {"xc": "HF", "basis": "sto-3g", "threads": 1}
TRAIN_PARAMETERS = {
    "epochs": 30,
    "members": 2,
    "hidden": [6],
    "fit_per_epoch": 1.0,
    "test_fraction": 0.25,
    "force_cap": 40.0,
    "checkpoint_every": 10,
}


def initial_structures(count: int = 8, impossible: int = 0) -> LmlpDatasetData:
    """Geometries of the SN2 pool (labels dropped: the campaign labels them itself).

    The last ``impossible`` of them are made neutral: an odd electron count as a singlet, which
    PySCF refuses, a labelling failure the campaign must survive and record.
    """
    frames = [a for a in read(SN2 / "pool_a.extxyz", ":") if a.info["reaction"] == "Cl+CH3Cl"][:count]
    for atoms in frames:
        atoms.calc = None
    for atoms in frames[len(frames) - impossible :]:
        atoms.info["charge"] = 0
    return LmlpDatasetData.from_atoms(frames).store()


def campaign_inputs(code: orm.Code, structures: LmlpDatasetData, **overrides) -> dict:
    """A campaign that labels, trains, explores 2 × 12 MD steps and selects up to 3 per iteration.

    Its training data stream merges pairs of segments (``stream_merge_width`` 2, default 8).
    """
    options = {"max_wallclock_seconds": 900}
    inputs = {
        "structures": structures,
        "label": {"pyscf": {"code": code, "parameters": orm.Dict(LABEL_PARAMETERS), "metadata": {"options": options}}},
        "train": {
            "train": {"code": code, "metadata": {"options": options}},
            "parameters": orm.Dict(TRAIN_PARAMETERS),
        },
        "continue_parameters": orm.Dict({**TRAIN_PARAMETERS, "epochs": 10}),
        "explore": {
            "code": code,
            "protocol": orm.Dict({"kind": "md", "steps": 12, "sample_every": 3, "temperature": 500, "timestep": 0.5}),
            "metadata": {"options": options},
        },
        "selection": orm.Dict({"max_per_iteration": 3}),
        "max_iterations": orm.Int(2),
        "dft_budget": orm.Int(40),
        # merge the data stream's segments in pairs, so that two iterations already merge once
        "stream_merge_width": orm.Int(2),
    }
    inputs.update(overrides)
    return inputs
