"""What ``lmlp train`` runs: read data, build or load the model, train, write model and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...formats.conformation_arrays import DatasetError, read_frames
from ..descriptors.eeacsf import EeACSF
from ..model.ensemble import Ensemble
from ..model.member_blocks import split_trained
from ..training.batches import reference_label
from ..training.progress import TrainingProgress
from ..training.trainer import Trainer, filter_training_data

__all__ = ["fit_reference_energies", "metrics_path_for", "resolve_device", "run_training"]


def fit_reference_energies(structures, elements: list[str]) -> dict[str, float]:
    """Per-element energies (eV) whose sums best fit the total energies (least squares).

    The default when no free-atom energies are given: the networks then learn the remainder,
    a few eV per atom instead of thousands.
    """
    rows, energies = [], []
    for atoms in structures:
        energy = reference_label(atoms, "energy")
        if energy is None or not np.isfinite(energy):
            continue
        symbols = atoms.get_chemical_symbols()
        rows.append([symbols.count(e) for e in elements])
        energies.append(energy)
    if not rows:
        raise ValueError("no conformation with an energy to fit reference energies to")
    solution, *_ = np.linalg.lstsq(np.asarray(rows, float), np.asarray(energies, float), rcond=None)
    return {e: float(v) for e, v in zip(elements, solution)}


def _finite_energy(atoms) -> bool:
    energy = reference_label(atoms, "energy")
    return energy is not None and bool(np.isfinite(energy))


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    return torch.device(name)


def metrics_path_for(out: Path) -> Path:
    """Metrics go next to the model: ``MODEL.metrics.jsonl``."""
    return out.with_suffix(".metrics.jsonl")


def run_training(
    data: list[Path],
    config: dict,
    out: Path,
    parent: Path | None = None,
    member_block: tuple[int, int] | None = None,
    progress_every: float = 30.0,
) -> dict:
    """Train on the conformations of ``data`` (conformation archives or extxyz files); returns the last metrics.

    ``member_block = (start, stop)`` continues only members ``start:stop`` of ``parent``
    (one job of an ensemble spread over several; :func:`.trainer.gather_trained` joins them).
    Progress goes to stderr: a bar on a terminal, else a line every ``progress_every`` seconds.
    """
    structures = []
    for path in data:
        try:
            frames = read_frames(path)
        except DatasetError as error:
            raise ValueError(str(error)) from None
        if not frames:
            raise ValueError(f"{path} holds no structures (an empty file?)")
        structures.extend(frames)
    # a new model is set up (elements, references, standardisation) from the usable frames only;
    # the trainer gets every frame and names each one it skips
    everything = structures
    if parent is None:
        present = sorted({s for atoms in everything for s in atoms.get_chemical_symbols()})
        structures, _, report = filter_training_data(everything, present, config["force_cap"], cutoff=config["cutoff"])
        if not structures:
            raise ValueError(report.nothing_usable())
    device = resolve_device(config["device"])
    dtype = getattr(torch, config["dtype"])
    if parent is not None:
        model = Ensemble.load(parent, device=device).to(dtype)
        if member_block is not None:
            model = split_trained(model, *member_block)
            config = {**config, "members": model.members, "member_offset": model.networks.member_offset}
    else:
        elements = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
        given = config["reference_energies"]
        references = given or fit_reference_energies(structures, elements)
        missing = [e for e in elements if e not in references]
        if missing:
            raise ValueError(f"reference_energies has no entry for {', '.join(missing)}")
        model = Ensemble.new(
            elements,
            EeACSF.from_paper(elements, cutoff=config["cutoff"]),
            members=config["members"],
            hidden=tuple(config["hidden"]),
            reference_energies=references,
            seed=config["seed"],
            dtype=dtype,
            member_offset=config["member_offset"],
            reference_kind="free_atom" if given else "least_squares",
            standardization=config["standardization"],
        ).to(device)
        model.initialize_standardization([a for a in structures if set(a.get_chemical_symbols()) <= set(elements)])
        if config["output_offset"]:
            labelled = [a for a in structures if _finite_energy(a)]
            model.initialize_output_offset(labelled, [reference_label(a, "energy") for a in labelled])
    trainer = Trainer(model, everything, config)
    metrics = metrics_path_for(out)
    if parent is None and metrics.exists():
        # a new model starts a new history; a continued one (--continue-from) appends to its own
        metrics.unlink()
    progress = TrainingProgress(config["epochs"], start_epoch=trainer.epoch, every=progress_every)
    return trainer.run(config["epochs"], out, metrics, progress=progress)
