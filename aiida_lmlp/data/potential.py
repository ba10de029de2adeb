"""``lmlp.potential``: one model version, the engine's ``.lmlp`` file with its training state.

The file is verified against its content SHA-256 when the node is made (without torch: the
daemon never imports it), and its elements, members, descriptor, test RMSEs and epoch count
become attributes (``rmse_energy_per_atom`` and ``rmse_forces``: the mean of the members' own test
RMSEs, ``rmse_kind`` says so). The same model stored twice is recognised by that hash.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from aiida import orm

from aiida_lmlp.formats.model_header import ModelHeader, read_model_header

__all__ = ["LmlpPotentialData"]

LOGGER = logging.getLogger(__name__)
FILENAME = "model.lmlp"


def _attributes(header: ModelHeader) -> dict:
    config = header.config
    descriptor = config.get("descriptor", {})
    training = config.get("training") or {}
    trainer = training.get("trainer") or {}
    members = trainer.get("members") or []
    return {
        "content_sha256": header.content_sha256,
        "file_sha256": header.file_sha256,
        "elements": list(config.get("elements", [])),
        "members": int(config.get("members", 0)),
        "member_offset": int(config.get("member_offset", 0)),
        "hidden": list(config.get("hidden", [])),
        "descriptor": descriptor.get("kind"),
        "cutoff": descriptor.get("cutoff"),
        "dtype": config.get("dtype"),
        # the floor of the uncertainty and the unit of the selection thresholds (eV/atom, eV/Å)
        "rmse_energy_per_atom": float(config.get("rmse_energy_per_atom", 0.0)),
        "rmse_forces": float(config.get("rmse_forces", 0.0)),
        # which RMSE that is: the engine's RMSE_MEMBERS_OWN_TEST ("members_own_test_mean"), or for model
        # files written before it was recorded the ensemble RMSE over the union of the test sets
        "rmse_kind": config.get("rmse_kind", "ensemble_test_union"),
        # element -> free_atom | least_squares | none; empty for files written before it was recorded
        "reference_kinds": dict(config.get("reference_kinds") or {}),
        # None for models trained before these were recorded
        "first_test_rmse_energy_per_atom": config.get("first_test_rmse_energy_per_atom"),
        "first_test_rmse_forces": config.get("first_test_rmse_forces"),
        "epochs": int(trainer.get("epoch", 0)),
        "optimizer": (training.get("config") or {}).get("optimizer"),
        "has_training_state": bool(trainer),
        "training_conformations": len({i for m in members for i in m.get("selection_ids", []) + m.get("test", [])}),
    }


class LmlpPotentialData(orm.SinglefileData):
    """An lMLP ensemble model file (safetensors + SHA-256) with its full training state."""

    def __init__(self, file: str | os.PathLike, **kwargs):
        header = read_model_header(file)
        super().__init__(file=str(file), filename=FILENAME, **kwargs)
        for key, value in _attributes(header).items():
            self.base.attributes.set(key, value)

    @classmethod
    def find(cls, content_sha256: str) -> LmlpPotentialData | None:
        """The first stored potential with this content SHA-256, or None."""
        query = orm.QueryBuilder().append(cls, filters={"attributes.content_sha256": content_sha256}, project="*")
        query.order_by({cls: {"id": "asc"}})
        result = query.first()
        return result[0] if result else None

    @classmethod
    def get_or_create(cls, file: str | os.PathLike, **kwargs) -> tuple[LmlpPotentialData, bool]:
        """The stored potential holding the same model as ``file``, or a new stored one; ``(node, created)``."""
        header = read_model_header(file)
        existing = cls.find(header.content_sha256)
        if existing is not None:
            return existing, False
        return cls(file, **kwargs).store(), True

    def store(self, *args, **kwargs):
        """Store; a model already stored under another node is recorded in the extra ``duplicate_of``."""
        if not self.is_stored:
            existing = self.find(self.content_sha256)
            if existing is not None:
                LOGGER.warning(
                    "lmlp.potential: model %s is already stored as node %s", self.content_sha256, existing.pk
                )
                self.base.extras.set("duplicate_of", existing.uuid)
        return super().store(*args, **kwargs)

    # -- access -------------------------------------------------------------------------------------

    @property
    def content_sha256(self) -> str:
        """SHA-256 of the model's configuration and tensors (the engine's ``content_sha256``)."""
        return self.base.attributes.get("content_sha256")

    @property
    def elements(self) -> list[str]:
        """Elements with an atomic network."""
        return self.base.attributes.get("elements")

    @property
    def members(self) -> int:
        """Ensemble members."""
        return self.base.attributes.get("members")

    def export(self, path: str | os.PathLike) -> Path:
        """Write the model file to ``path`` and verify it against its SHA-256."""
        path = Path(path)
        with self.open(mode="rb") as source:
            path.write_bytes(source.read())
        header = read_model_header(path)
        if header.content_sha256 != self.content_sha256:  # pragma: no cover - repository corruption
            raise ValueError(f"lmlp.potential<{self.pk}>: exported file does not match the recorded SHA-256")
        return path

    def get_ensemble(self, device: str = "cpu"):
        """The engine's :class:`~aiida_lmlp.potential.Ensemble` (imports torch)."""
        from aiida_lmlp.potential import Ensemble

        with tempfile.TemporaryDirectory() as folder:
            return Ensemble.load(self.export(Path(folder) / FILENAME), device=device)

    def get_calculator(self, **kwargs):
        """An ASE :class:`~aiida_lmlp.potential.LmlpCalculator` of this version (imports torch)."""
        from aiida_lmlp.potential import LmlpCalculator

        return LmlpCalculator(self.get_ensemble(), **kwargs)
