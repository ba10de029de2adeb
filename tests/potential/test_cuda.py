"""The engine on a CUDA device gives what it gives on the CPU (float64).

These tests need a GPU, which CI machines do not have: there they are skipped, and they run on
the device machine (``benchmarks/gpu_session.sh`` runs them with ``--noconftest``, since the
device has no aiida). They therefore use no fixture of ``tests/conftest.py``.
"""

import json
import os

import numpy as np
import pytest
import torch
from ase import units
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from aiida_lmlp.formats.errors import StructureError
from aiida_lmlp.formats.training_config import default_config, merge_config
from aiida_lmlp.potential import EeACSF, Ensemble, LmlpCalculator
from aiida_lmlp.potential.descriptors.neighbors import build_graph, graph_tensors
from aiida_lmlp.potential.model.ensemble import JACOBIAN_MIN_TRIPLETS
from aiida_lmlp.potential.training.trainer import Trainer

from ..conftest import SN2, SN2_ELEMENTS
from .helpers import random_box

# LMLP_TEST_DEVICE=cpu runs the same comparisons CPU against CPU, to check the tests themselves
DEVICE = os.environ.get("LMLP_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA device (run on the device machine: benchmarks/gpu_session.sh)",
)


def _frames(count: int):
    return read(SN2 / "pool_a.extxyz", f":{count}")


def _free_atoms() -> dict:
    return json.loads((SN2 / "free_atoms.json").read_text())


def _model(members: int, hidden=(24, 12)) -> Ensemble:
    """Standardised on 30 conformations, as ``tests/conftest.py``'s ``sn2_model``."""
    model = Ensemble.new(SN2_ELEMENTS, members=members, hidden=hidden, reference_energies=_free_atoms(), seed=2)
    model.initialize_standardization(_frames(30))
    return model


def _assert_same_prediction(cpu, gpu, fields):
    for field in fields:
        a, b = getattr(cpu, field), getattr(gpu, field)
        assert b is not None, field
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10, err_msg=field)


@pytest.mark.parametrize("count", [2, 120], ids=["backward passes", "descriptor Jacobian"])
def test_ensemble_prediction_on_cuda_equals_the_cpu(count):
    frames = _frames(count)
    triplets = build_graph(frames, SN2_ELEMENTS, 12.0).triplets.shape[0]
    assert (triplets >= JACOBIAN_MIN_TRIPLETS) == (count == 120)  # both per-member force paths are covered
    cpu = _model(4)
    gpu = _model(4).to(DEVICE)
    assert gpu.device.type == DEVICE
    fields = ["energy", "energy_members", "energy_uncertainty", "atomic_energies", "forces", "forces_members"]
    _assert_same_prediction(cpu.evaluate(frames), gpu.evaluate(frames), fields + ["forces_uncertainty"])
    _assert_same_prediction(
        cpu.evaluate(frames, member_forces=False), gpu.evaluate(frames, member_forces=False), ["energy", "forces"]
    )


def test_periodic_stress_on_cuda_equals_the_cpu():
    box = random_box("CH4ClBr" * 4, 9.0, seed=3, min_distance=1.1)
    elements = ["H", "C", "Cl", "Br"]
    cpu = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=5.0), members=3, hidden=(16,), seed=1)
    cpu.initialize_standardization([box])
    gpu = Ensemble.new(elements, EeACSF.from_paper(elements, cutoff=5.0), members=3, hidden=(16,), seed=1)
    gpu.initialize_standardization([box])
    gpu = gpu.to(DEVICE)
    _assert_same_prediction(
        cpu.evaluate(box, stress=True), gpu.evaluate(box, stress=True), ["energy", "forces", "forces_members", "stress"]
    )


def test_a_model_saved_from_cuda_loads_on_the_cpu(tmp_path):
    frames = _frames(10)
    gpu = _model(2).to(DEVICE)
    gpu.save(tmp_path / "gpu.lmlp")
    cpu = Ensemble.load(tmp_path / "gpu.lmlp")
    assert cpu.device.type == "cpu"
    _assert_same_prediction(cpu.evaluate(frames), gpu.evaluate(frames), ["energy", "forces_members"])
    again = Ensemble.load(tmp_path / "gpu.lmlp", device=DEVICE)
    assert again.device.type == DEVICE


@pytest.mark.parametrize("optimizer", ["core", "ekf"])
def test_training_on_cuda_follows_the_cpu(optimizer):
    """Same data, seed and draws (NumPy generators): the two devices differ only by rounding."""
    frames = _frames(40)
    overrides = {"members": 2, "fit_per_epoch": 10, "core": {"score_history": 3}, "optimizer": optimizer}
    config = merge_config(default_config(), overrides)
    losses = {}
    models = {}
    for device in ("cpu", DEVICE):
        model = _model(2).to(device)
        trainer = Trainer(model, frames, config, log=lambda message: None)
        losses[device] = [trainer.train_epoch()["loss"] for _ in range(4)]
        models[device] = model
    # on the CPU, moving the positions by 1e-14 Å changes these losses by 1e-15 (CoRe) and 3e-14 (EKF)
    rtol = 1e-7
    np.testing.assert_allclose(losses[DEVICE], losses["cpu"], rtol=rtol)
    for (name, x), (_, y) in zip(
        models["cpu"].networks.state_dict().items(), models[DEVICE].networks.state_dict().items()
    ):
        torch.testing.assert_close(y.cpu(), x, rtol=10 * rtol, atol=1e-9, msg=name)


def test_langevin_md_with_a_cuda_model():
    frames = _frames(30)
    model = _model(4).to(DEVICE)
    atoms = frames[0].copy()
    atoms.calc = LmlpCalculator(model)
    reference = _model(4).evaluate(atoms)
    assert atoms.get_potential_energy() == pytest.approx(float(reference.energy[0]), abs=1e-9)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 0.25 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(1))
    dyn.run(50)
    assert dyn.nsteps == 50 and np.isfinite(atoms.get_potential_energy())
    assert np.all(np.isfinite(atoms.calc.results["forces_uncertainty"]))


def test_lockstep_exploration_with_a_cuda_model_follows_the_cpu():
    """Ten trajectories (5 starts x 2 replicas) evaluated in batches on the device (`lmlp explore --device cuda`)."""
    from aiida_lmlp.potential.exploration import explore

    starts = _frames(30)[::6]
    protocol = {"kind": "md", "steps": 10, "sample_every": 5, "temperature": 300, "replicas": 2}
    cpu = explore(_model(4), starts, protocol)
    gpu = explore(_model(4).to(DEVICE), starts, protocol)
    assert [(t.start_index, t.replica, t.steps) for t in gpu.trajectories] == [
        (t.start_index, t.replica, t.steps) for t in cpu.trajectories
    ]
    assert len(gpu.frames) == len(cpu.frames) == 10 * 3
    for a, b in zip(cpu.frames, gpu.frames):
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-8)
        assert b.info["lmlp_energy"] == pytest.approx(a.info["lmlp_energy"], abs=1e-8)
        np.testing.assert_allclose(b.arrays["lmlp_forces_uncertainty"], a.arrays["lmlp_forces_uncertainty"], atol=1e-7)
        np.testing.assert_allclose(b.info["lmlp_fingerprint"], a.info["lmlp_fingerprint"], atol=1e-9)


def test_molecules_are_searched_on_the_device_and_refused_there_by_name():
    frames = _frames(50)
    cpu = build_graph(frames, SN2_ELEMENTS, 12.0).tensors()
    gpu = graph_tensors(frames, SN2_ELEMENTS, 12.0, DEVICE)
    assert gpu["centers"].device.type == DEVICE
    pairs = lambda g: set(zip(g["centers"].tolist(), g["neighbors"].tolist()))  # noqa: E731
    assert pairs(gpu) == pairs(cpu)
    assert gpu["triplets"].shape == cpu["triplets"].shape
    frames[7].positions[1] = frames[7].positions[0] + [0.2, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"structure #7 .*atoms 0 \(\w+\) and 1 \(\w+\) are 0.200 Å apart"):
        graph_tensors(frames, SN2_ELEMENTS, 12.0, DEVICE)
