"""Running an exploration protocol with an lMLP ensemble: MD, relaxations, NEB and single points.

The engine side of ``lmlp explore`` (and of the ``lmlp.explore`` CalcJob): starting structures
are propagated with :class:`~aiida_lmlp.potential.LmlpCalculator` according to an
:class:`~aiida_lmlp.formats.exploration.ExplorationProtocol`; visited conformations are recorded
with the predicted energy, forces and their uncertainties and a descriptor fingerprint
(:func:`descriptor_fingerprints`, for farthest-point sampling of candidates). A trajectory stops as
soon as the energy uncertainty per atom or the largest force-component uncertainty exceeds the
protocol's threshold. A structure the model cannot handle is reported in its trajectory's
``error`` and never takes down the other trajectories. Units: eV, Å, fs, K; forces eV/Å.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms, units

from ...formats.conformation_arrays import FINGERPRINT_KEY, write_frames
from ...formats.exploration import ExplorationProtocol, ExplorationResult, TrajectoryReport

if TYPE_CHECKING:  # torch is imported only when exploring
    from ..exploration.lockstep import Lockstep
    from ..model.ensemble import Ensemble

__all__ = ["descriptor_fingerprints", "explore"]


def descriptor_fingerprints(model: Ensemble, structures: Sequence[Atoms]) -> np.ndarray:
    """The descriptor fingerprint of every structure, ``(S, G)`` float64 with ``G`` the descriptor length.

    Each atom's descriptor vector ``G_i`` is standardised as the model's atomic networks do,
    ``α_e (G_i − β_e)`` with ``α_e``, ``β_e`` of the atom's element ``e``, averaged over the
    ensemble members (``mean_p α_p,e · G_i − mean_p α_p,e β_p,e``), and the fingerprint is the
    mean of these vectors over the atoms of the structure. Invariant to rotations, translations
    and permutations of the atoms; for the element-embracing eeACSF the length does not depend
    on the composition. Structures the model cannot handle raise
    :class:`~aiida_lmlp.potential.StructureError`; a non-finite fingerprint raises
    :class:`FloatingPointError`.
    """
    import torch

    structures = list(structures)
    if not structures:
        return np.zeros((0, len(model.descriptor)), dtype=np.float64)
    values, species = model.descriptors_of(structures)
    with torch.no_grad():
        networks = [model.networks.networks[element] for element in model.elements]
        scale = torch.stack([n.alpha.mean(0) for n in networks]).to(values)  # (E, G)
        shift = torch.stack([(n.alpha * n.beta).mean(0) for n in networks]).to(values)  # (E, G)
        standardised = (scale[species] * values - shift[species]).to(torch.float64).cpu().numpy()  # (A, G)
    counts = np.array([len(atoms) for atoms in structures], dtype=np.int64)
    sums = np.add.reduceat(standardised, np.cumsum(counts) - counts, axis=0)
    fingerprints = sums / counts[:, None]
    if not np.isfinite(fingerprints).all():
        raise FloatingPointError("non-finite descriptor fingerprint")
    return fingerprints


class _FrameSink:
    """Records frames in memory and appends them, one write and flush per frame, to the output file."""

    def __init__(
        self,
        out: str | os.PathLike | None,
        max_frames: int,
        keep: bool,
        fingerprints: Callable[[Sequence[Atoms]], np.ndarray] | None = None,
    ):
        self.handle = open(out, "w", encoding="utf-8") if out is not None else None  # noqa: SIM115
        self.max_frames = max_frames
        self.keep = keep
        self.fingerprints = fingerprints
        self.count = 0
        self._recorded: list[tuple[int, Atoms]] = []  # (trajectory ordinal, frame) in recording order

    @property
    def frames(self) -> list[Atoms]:
        """The kept frames trajectory by trajectory (recording interleaves the trajectories run in lockstep)."""
        return [frame for _, frame in sorted(self._recorded, key=lambda item: item[0])]

    @property
    def full(self) -> bool:
        return self.count >= self.max_frames

    def add(self, frames: Sequence[Atoms], ordinal: int = 0) -> int:
        """Record ``frames`` of trajectory ``ordinal`` with their fingerprints; the number recorded.

        Fewer than ``len(frames)`` means the cap kept the rest out. The fingerprints are computed
        before anything is written, so a failure records none of ``frames``. Computing them may
        suspend this trajectory (other trajectories record meanwhile), so the cap is applied
        only afterwards.
        """
        from ase.io import write

        frames = list(frames)
        if self.full:
            return 0
        if frames and self.fingerprints is not None:
            for frame, fingerprint in zip(frames, self.fingerprints(frames)):
                frame.info[FINGERPRINT_KEY] = fingerprint
        fitting = frames[: max(self.max_frames - self.count, 0)]
        for frame in fitting:
            if self.handle is not None:
                buffer = io.StringIO()
                write(buffer, frame, format="extxyz")
                self.handle.write(buffer.getvalue())
                self.handle.flush()
            if self.keep:
                self._recorded.append((ordinal, frame))
            self.count += 1
        return len(fitting)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@dataclass
class _Snapshot:
    frame: Atoms
    energy_uncertainty_per_atom: float
    max_forces_uncertainty: float


def _snapshot(atoms: Atoms, start_index: int, step: int, carried: dict, image: int | None) -> _Snapshot:
    """Evaluate ``atoms`` (cached when unchanged) and build the frame to record, without a calculator."""
    atoms.get_forces()
    results = atoms.calc.results
    energy = float(results["energy"])
    energy_unc = float(results["energy_uncertainty"])
    forces = np.array(results["forces"], dtype=np.float64)
    forces_unc = np.array(results["forces_uncertainty"], dtype=np.float64)
    if not (np.isfinite([energy, energy_unc]).all() and np.isfinite(forces).all() and np.isfinite(forces_unc).all()):
        raise FloatingPointError(f"non-finite predicted energy, forces or uncertainty at step {step}")
    frame = Atoms(
        numbers=atoms.get_atomic_numbers(), positions=atoms.get_positions(), cell=atoms.cell.array.copy(), pbc=atoms.pbc
    )
    frame.info.update(
        {
            "start_index": int(start_index),
            "step": int(step),
            "lmlp_energy": energy,
            "lmlp_energy_uncertainty": energy_unc,
            "stopped": False,
            **carried,
        }
    )
    if image is not None:
        frame.info["neb_image"] = int(image)
    frame.arrays["lmlp_forces"] = forces
    frame.arrays["lmlp_forces_uncertainty"] = forces_unc
    return _Snapshot(frame, energy_unc / len(atoms), float(forces_unc.max()))


def _carried(atoms: Atoms) -> dict:
    """Charge and multiplicity of a start structure (0 and 1 when absent)."""
    info = atoms.info or {}
    carried = {}
    for key, default in (("charge", 0), ("multiplicity", 1)):
        value = info.get(key, default)
        if isinstance(value, np.generic):
            value = value.item()
        carried[key] = value
    return carried


def _stop(snapshots: Sequence[_Snapshot], protocol: ExplorationProtocol) -> tuple[int, str] | None:
    """Index of the snapshot that ends the trajectory and the reason, or None."""
    threshold = protocol.stop_energy_uncertainty_per_atom
    if threshold is not None:
        worst = max(range(len(snapshots)), key=lambda k: snapshots[k].energy_uncertainty_per_atom)
        value = snapshots[worst].energy_uncertainty_per_atom
        if value > threshold:
            return worst, f"energy uncertainty {value:.4g} eV/atom > {threshold:g}"
    threshold = protocol.stop_forces_uncertainty
    if threshold is not None:
        worst = max(range(len(snapshots)), key=lambda k: snapshots[k].max_forces_uncertainty)
        value = snapshots[worst].max_forces_uncertainty
        if value > threshold:
            return worst, f"forces uncertainty {value:.4g} eV/Å > {threshold:g}"
    return None


# A trajectory is set up as a stepper, which yields (step, converged) every time the system has
# reached a new state, and a function giving the (image index or None, atoms) of the system at a step.
_Stepper = Iterator[tuple[int, bool | None]]
_ImagesOf = Callable[[int], Sequence[tuple[int | None, Atoms]]]

#: Errors that end one trajectory but not the run: StructureError (a ValueError), non-finite
#: predictions, ASE's linear algebra in optimisers and interpolation.
_TRAJECTORY_ERRORS = (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError)


def _drive(
    report: TrajectoryReport,
    setup: Callable[[], tuple[_Stepper, _ImagesOf]],
    carried: dict,
    protocol: ExplorationProtocol,
    sink: _FrameSink,
    ordinal: int = 0,
) -> None:
    """Run trajectory ``ordinal``: evaluate every step, stop on uncertainty, record sampled and last frames."""
    pending: list[_Snapshot] | None = None  # the last evaluated step, if not recorded yet

    def record(snapshots: Sequence[_Snapshot]) -> bool:
        recorded = sink.add([s.frame for s in snapshots], ordinal)
        report.frames += recorded
        return recorded == len(snapshots)

    try:
        stepper, images_of = setup()
        for step, converged in stepper:
            snapshots = [_snapshot(atoms, report.start_index, step, carried, image) for image, atoms in images_of(step)]
            report.steps = step
            report.converged = converged
            for key, attribute in (
                ("max_energy_uncertainty_per_atom", "energy_uncertainty_per_atom"),
                ("max_forces_uncertainty", "max_forces_uncertainty"),
            ):
                value = max(getattr(s, attribute) for s in snapshots)
                previous = getattr(report, key)
                setattr(report, key, value if previous is None else max(previous, value))
            stop = _stop(snapshots, protocol)
            if stop is not None:
                trigger, report.reason = stop
                report.stopped_early = True
                snapshots[trigger].frame.info["stopped"] = True
                pending = None
                if not record(snapshots):
                    report.truncated = True
                break
            if step % protocol.sample_every == 0:
                pending = None
                if not record(snapshots):
                    report.truncated = True
                    break
                if sink.full:
                    # the cap is reached: the trajectory is truncated unless it was over anyway
                    try:
                        report.truncated = next(stepper, None) is not None
                    except _TRAJECTORY_ERRORS:
                        report.truncated = True
                    break
            else:
                pending = snapshots
    except _TRAJECTORY_ERRORS as error:
        report.error = str(error) if str(error) else type(error).__name__
    if pending is not None:
        try:
            if not record(pending):
                report.truncated = True
        except _TRAJECTORY_ERRORS as error:  # its fingerprint failed: the frame is not recorded
            report.error = report.error or str(error) or type(error).__name__


def _working_copy(atoms: Atoms, hub: Lockstep) -> Atoms:
    copy = atoms.copy()
    copy.calc = hub.calculator(forces_uncertainty=True)
    return copy


def _setup_evaluate(atoms: Atoms, hub: Lockstep) -> Callable[[], tuple[_Stepper, _ImagesOf]]:
    def setup():
        working = _working_copy(atoms, hub)
        return iter([(0, None)]), lambda step: [(None, working)]

    return setup


def _setup_md(atoms: Atoms, hub: Lockstep, protocol: ExplorationProtocol, index: int, replica: int):
    def setup():
        from ase.md import velocitydistribution
        from ase.md.langevin import Langevin

        working = _working_copy(atoms, hub)
        # replica 0 draws what a run without replicas draws
        rng = np.random.default_rng([protocol.seed, index] if replica == 0 else [protocol.seed, index, replica])
        # thermalize_momenta (ASE ≥ 3.29) is MaxwellBoltzmannDistribution under its new name
        thermalize = getattr(velocitydistribution, "thermalize_momenta", None)
        if thermalize is None:  # pragma: no cover - ASE < 3.29
            thermalize = velocitydistribution.MaxwellBoltzmannDistribution
        thermalize(working, temperature_K=protocol.temperature, rng=rng)
        velocitydistribution.Stationary(working)
        dynamics = Langevin(
            working,
            protocol.timestep * units.fs,
            temperature_K=protocol.temperature,
            friction=protocol.friction / units.fs,
            fixcm=False,
            rng=rng,
        )

        def stepper():
            for _ in dynamics.irun(protocol.steps):
                yield dynamics.nsteps, None

        return stepper(), lambda step: [(None, working)]

    return setup


def _optimizer(name: str, target, **kwargs):
    from ase.optimize import BFGS, FIRE

    return {"bfgs": BFGS, "fire": FIRE}[name](target, logfile=None, **kwargs)


def _setup_relax(atoms: Atoms, hub: Lockstep, protocol: ExplorationProtocol):
    def setup():
        working = _working_copy(atoms, hub)
        optimizer = _optimizer(protocol.optimizer, working)

        def stepper():
            for converged in optimizer.irun(fmax=protocol.fmax, steps=protocol.steps):
                yield optimizer.nsteps, bool(converged)

        return stepper(), lambda step: [(None, working)]

    return setup


def _setup_neb(initial: Atoms, final: Atoms, hub: Lockstep, protocol: ExplorationProtocol):
    def setup():
        from ase.mep import NEB

        if len(initial) != len(final) or list(initial.numbers) != list(final.numbers):
            raise ValueError(
                f"the NEB endpoints differ in their atoms ({initial.get_chemical_formula()} with {len(initial)} "
                f"atoms, {final.get_chemical_formula()} with {len(final)}); they need the same atoms in the same order"
            )
        first, last = _working_copy(initial, hub), _working_copy(final, hub)
        for endpoint in (first, last):  # fail early on a structure the model cannot handle
            endpoint.get_forces()
        images = [first] + [_working_copy(initial, hub) for _ in range(protocol.images)] + [last]

        class BatchedNEB(NEB):
            """ASE's NEB, its images evaluated in one batch (ASE asks for them one by one)."""

            def get_forces(self):
                hub.prefetch(self.images)
                return super().get_forces()

        neb = BatchedNEB(images, climb=protocol.climb, method="improvedtangent")
        neb.interpolate(method="idpp", mic=bool(np.any(initial.pbc)))
        optimizer = _optimizer(protocol.optimizer, neb)
        numbered = list(enumerate(images))

        def stepper():
            for converged in optimizer.irun(fmax=protocol.fmax, steps=protocol.steps):
                yield optimizer.nsteps, bool(converged)

        return stepper(), lambda step: numbered if step == 0 else numbered[1:-1]

    return setup


def explore(
    model: Ensemble | str | os.PathLike,
    structures: Sequence[Atoms],
    protocol: ExplorationProtocol | Mapping[str, Any],
    *,
    out: str | os.PathLike | None = None,
    summary: str | os.PathLike | None = None,
    keep_frames: bool = True,
    on_trajectory: Callable[[TrajectoryReport], None] | None = None,
    archive: str | os.PathLike | None = None,
    batch_atoms: int | None = None,
) -> ExplorationResult:
    """Explore from every structure (every endpoint pair for NEB) with the ensemble ``model``.

    All trajectories run together, in lockstep (:mod:`.lockstep`): each step's structures of
    every running trajectory are evaluated in one batched call of at most ``batch_atoms`` atoms
    (default :data:`~.lockstep.BATCH_ATOMS`; 1 evaluates them one by one). MD runs
    ``protocol.replicas`` trajectories from every start structure.

    ``out``: append every recorded frame to this extxyz file as it is recorded (one write and
    flush per frame, the file is truncated first; the trajectories' frames interleave).
    ``summary``: rewrite this JSON file atomically whenever a trajectory ends (``complete``
    false until the end, the ended trajectories in their order). ``keep_frames=False`` leaves
    :attr:`ExplorationResult.frames` empty; otherwise it holds the frames trajectory by
    trajectory. ``on_trajectory`` is called with each finished :class:`TrajectoryReport`.
    ``archive``: once every trajectory has ended, write all recorded frames, trajectory by
    trajectory, as one conformation archive (``.npz``), before the summary says ``complete``; a
    run cut short leaves only ``out``. Every recorded frame carries its
    :func:`descriptor_fingerprints` row under the info key :data:`FINGERPRINT_KEY`, MD frames of
    a protocol with ``replicas`` > 1 also their ``replica``.

    Raises :class:`ProtocolError` for an invalid protocol and :class:`ValueError` for an odd
    number of NEB endpoints, before any file is touched. A structure the model cannot handle
    (:class:`~aiida_lmlp.potential.StructureError`) ends only its own trajectory.
    """
    from ..exploration.lockstep import BATCH_ATOMS, Lockstep
    from ..model.ensemble import Ensemble

    if not isinstance(protocol, ExplorationProtocol):
        protocol = ExplorationProtocol.from_dict(protocol)
    model = model if isinstance(model, Ensemble) else Ensemble.load(model)
    structures = list(structures)
    if protocol.kind == "neb" and len(structures) % 2:
        raise ValueError(
            f"NEB needs pairs of endpoints (initial, final, initial, final, ...), got an odd number: {len(structures)}"
        )
    hub = Lockstep(model, batch_atoms=BATCH_ATOMS if batch_atoms is None else batch_atoms)
    result = ExplorationResult(protocol=protocol, model_sha256=model.content_sha256)
    # (report, start structure, set-up, carried info) of every trajectory, in output order
    trajectories: list[tuple[TrajectoryReport, Atoms, Callable, dict]] = []
    if protocol.kind == "neb":
        for p in range(len(structures) // 2):
            setup = _setup_neb(structures[2 * p], structures[2 * p + 1], hub, protocol)
            trajectories.append((TrajectoryReport(start_index=p), structures[2 * p], setup, {}))
    elif protocol.kind == "md":
        for i, atoms in enumerate(structures):
            for r in range(protocol.replicas):
                extra = {"replica": r} if protocol.replicas > 1 else {}
                report = TrajectoryReport(start_index=i, replica=r)
                trajectories.append((report, atoms, _setup_md(atoms, hub, protocol, i, r), extra))
    else:
        setup_of = _setup_evaluate if protocol.kind == "evaluate" else lambda a, h: _setup_relax(a, h, protocol)
        for i, atoms in enumerate(structures):
            trajectories.append((TrajectoryReport(start_index=i), atoms, setup_of(atoms, hub), {}))
    if archive is not None:
        Path(archive).unlink(missing_ok=True)  # never a stale archive beside a new run
    keep = keep_frames or archive is not None

    def fingerprint_batch(frames: list[Atoms]) -> list[np.ndarray]:
        return list(descriptor_fingerprints(model, frames))

    # the frames that trajectories record in the same round get their fingerprints in one call
    sink = _FrameSink(out, protocol.max_frames, keep, lambda frames: hub.call(fingerprint_batch, frames))
    ended: dict[int, TrajectoryReport] = {}

    def simulation(ordinal: int) -> Callable[[], TrajectoryReport]:
        report, start, setup, extra = trajectories[ordinal]

        def run() -> TrajectoryReport:
            if sink.full:
                report.truncated = True
            else:
                _drive(report, setup, {**_carried(start), **extra}, protocol, sink, ordinal)
            return report

        return run

    def finished(ordinal: int, report: TrajectoryReport) -> None:
        ended[ordinal] = report
        if summary is not None:
            result.trajectories = [ended[k] for k in sorted(ended)]
            result.write_summary(summary)
        if on_trajectory is not None:
            on_trajectory(report)

    try:
        result.trajectories = hub.run([simulation(k) for k in range(len(trajectories))], on_finished=finished)
    finally:
        sink.close()
    frames = sink.frames if keep else []
    if archive is not None:
        write_frames(archive, frames)
    result.frames = frames if keep_frames else []
    result.complete = True
    if summary is not None:
        result.write_summary(summary)
    return result
