"""Split an ensemble into blocks of members, with their training state, for training in several jobs.

The inverse of :func:`aiida_lmlp.potential.training.trainer.gather_trained`: members ``start`` to
``stop - 1`` become a model of their own (``member_offset`` moved accordingly) that carries
exactly their weights, optimiser state (CoRe or EKF; stacked with the member axis first),
adaptive-selection state, test split and random-number state. Training the block alone then
gives each member the same result as training the whole stack, and gathering the blocks
gives back one ensemble.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from ...formats.labels import conformation_id, reference_label
from ..model.ensemble import Ensemble
from ..model.networks import StackedAtomicNetworks

__all__ = ["ensemble_test_rmse", "parse_member_block", "split_trained"]


def parse_member_block(text: str, members: int) -> tuple[int, int]:
    """``"START:STOP"`` (Python slice bounds, STOP exclusive) checked against ``members``."""
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"member block {text!r} is not START:STOP (two integers)") from None
    if not 0 <= start < stop <= members:
        raise ValueError(f"member block {start}:{stop} is outside the model's {members} members (0:{members})")
    return start, stop


def split_trained(model: Ensemble, start: int, stop: int) -> Ensemble:
    """Members ``start:stop`` of ``model`` as a model of their own, training state included."""
    members = model.members
    if not 0 <= start < stop <= members:
        raise ValueError(f"member block {start}:{stop} is outside the model's {members} members")
    networks = StackedAtomicNetworks(
        model.elements,
        len(model.descriptor),
        model.networks.hidden,
        stop - start,
        seed=model.networks.seed,
        member_offset=model.networks.member_offset + start,
    ).to(device=model.device, dtype=model.dtype)
    source = model.networks.state_dict()  # weights and the standardisation buffers, all stacked over members
    networks.load_state_dict({name: tensor[start:stop] for name, tensor in source.items()})
    block = Ensemble(
        model.descriptor,
        networks,
        model.reference_energies,
        uncertainty_scale=model.uncertainty_scale,
        rmse_energy_per_atom=model.rmse_energy_per_atom,
        rmse_forces=model.rmse_forces,
        first_test_rmse_energy_per_atom=model.first_test_rmse_energy_per_atom,
        first_test_rmse_forces=model.first_test_rmse_forces,
        rmse_kind=model.rmse_kind,
        member_test_rmse_energy_per_atom=_block(model.member_test_rmse_energy_per_atom, start, stop),
        member_test_rmse_forces=_block(model.member_test_rmse_forces, start, stop),
        reference_kinds=model.reference_kinds,
        standardization=model.standardization,
        output_offsets={e: v[start:stop] for e, v in model.output_offsets.items()},
    )
    trainer = model.training_config.get("trainer")
    if not trainer:
        return block
    optimizer = model.training_config.get("config", {}).get("optimizer", "core")
    if optimizer not in ("core", "ekf"):
        raise ValueError(
            f"the {optimizer} optimiser keeps per-tensor state that cannot be split by member; "
            "only CoRe or extended-Kalman-filter training can continue in member blocks"
        )
    state = {}
    for key, value in model.training_state.items():
        if key.startswith("selection."):
            _, m, name = key.split(".", 2)
            if start <= int(m) < stop:
                state[f"selection.{int(m) - start}.{name}"] = value.clone()
        elif value.dim() and value.shape[0] == members:  # stacked over members: CoRe and EKF state
            state[key] = value[start:stop].clone()
        else:
            state[key] = value.clone()
    block.training_state = state
    config = copy.deepcopy(model.training_config)
    config["trainer"]["members"] = config["trainer"]["members"][start:stop]
    if "config" in config:
        config["config"]["members"] = stop - start
        config["config"]["member_offset"] = model.networks.member_offset + start
    block.training_config = config
    return block


def _block(values: list[float] | None, start: int, stop: int) -> list[float] | None:
    return None if values is None else values[start:stop]


def ensemble_test_rmse(model: Ensemble, structures: Sequence[Atoms], which: str = "test") -> tuple[float, float, int]:
    """Ensemble-mean RMSE (eV/atom, eV/Å) on the conformations some member holds out as test data.

    A model gathered from blocks inherits one block's RMSEs; this gives the whole ensemble's,
    as the trainer computes them (the union of the members' test sets). Returns the count too.
    ``which="first_test"``: on the test sets of the model's first training session instead.
    """
    trainer = model.training_config.get("trainer") or {}
    test_ids = {i for member in trainer.get("members", []) for i in member.get(which, [])}
    test = [a for a in structures if conformation_id(a) in test_ids]
    if not test:
        return 0.0, 0.0, 0
    prediction = model.evaluate(test, member_forces=False)
    energy = np.array([reference_label(a, "energy") for a in test])
    n_atoms = np.array([len(a) for a in test])
    forces = np.concatenate([np.asarray(reference_label(a, "forces")) for a in test])
    rmse_energy = float(np.sqrt(np.mean(((prediction.energy - energy) / n_atoms) ** 2)))
    rmse_forces = float(np.sqrt(np.mean((prediction.forces - forces) ** 2)))
    return rmse_energy, rmse_forces, len(test)
