"""``lmlp explore``: run MD, relaxations, NEB or single points with an lMLP ensemble and record what it visits."""

from __future__ import annotations

from pathlib import Path

import click


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _read_protocol(path: Path):
    import yaml

    from aiida_lmlp.formats.exploration import ExplorationProtocol, ProtocolError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise click.ClickException(f"cannot read protocol {path}: {_one_line(error)}") from None
    except yaml.YAMLError as error:
        raise click.ClickException(f"cannot parse protocol {path}: {_one_line(error)}") from None
    try:
        return ExplorationProtocol.from_dict(data if data is not None else {})
    except ProtocolError as error:
        raise click.ClickException(f"{path}: {error}") from None


def _read_structures(path: Path):
    from aiida_lmlp.formats.conformation_arrays import DatasetError, read_frames

    try:
        structures = read_frames(path)
    except DatasetError as error:
        raise click.ClickException(_one_line(error)) from None
    if not structures:
        raise click.ClickException(f"cannot read structures from {path}: it holds no structure")
    return structures


@click.command("explore")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="The .lmlp model file.")
@click.option(
    "--structures",
    "structures_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Start structures, extxyz or conformation archive (.npz) (NEB: endpoint pairs initial, final, ...).",
)
@click.option(
    "--protocol",
    "protocol_path",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML protocol: kind md|relax|neb|evaluate and its settings (see docs/exploration.md).",
)
@click.option(
    "--out",
    "out",
    default="visited.extxyz",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="extxyz file receiving the visited conformations, frame by frame.",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the visited conformations as one conformation archive (.npz) when the run completes.",
)
@click.option(
    "--keep-out/--no-keep-out",
    default=True,
    show_default=True,
    help="With --archive: keep the extxyz once the archive is written; --no-keep-out removes it, so that the "
    "frames of a completed run are in one file (what a job hands back), those of a run cut short in the extxyz.",
)
@click.option(
    "--summary",
    "summary",
    default="summary.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON summary of the resolved protocol and of every trajectory.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the ensemble runs: auto takes a CUDA device when there is one (the trajectories' "
    "structures are evaluated together, in batches, so a GPU pays off).",
)
def explore(model_path, structures_path, protocol_path, out, archive, keep_out, summary, device):
    """Explore from the start structures with an lMLP ensemble; trajectories stop once the model is unsure.

    Writes every recorded conformation with lmlp_energy, lmlp_forces and their uncertainties
    (never energy/forces, which are kept for reference labels) and a summary. Exits 0 when the
    run completed, also if single structures could not be handled (see their "error").
    """
    from aiida_lmlp.potential import Ensemble, ModelFileError
    from aiida_lmlp.potential.allocator import keep_freed_memory
    from aiida_lmlp.potential.exploration.runner import explore as run_exploration

    keep_freed_memory()
    protocol = _read_protocol(protocol_path)
    structures = _read_structures(structures_path)
    if protocol.kind == "neb" and len(structures) % 2:
        raise click.ClickException(
            f"{structures_path}: NEB needs pairs of endpoints (initial, final, ...), "
            f"got an odd number of structures: {len(structures)}"
        )
    from aiida_lmlp.potential.training.run import resolve_device

    try:
        where = resolve_device(device)
    except ValueError as error:
        raise click.ClickException(f"--device {device}: {error}") from None
    try:
        model = Ensemble.load(model_path, device=where)
    except ModelFileError as error:
        raise click.ClickException(_one_line(error)) from None

    def report(trajectory):
        if trajectory.error is not None:
            click.echo(f"trajectory {trajectory.start_index}: {trajectory.error}", err=True)

    result = run_exploration(
        model,
        structures,
        protocol,
        out=out,
        summary=summary,
        keep_frames=False,
        on_trajectory=report,
        archive=archive,
    )
    frames = sum(t.frames for t in result.trajectories)
    stopped = sum(t.stopped_early for t in result.trajectories)
    failed = sum(t.error is not None for t in result.trajectories)
    written = out
    if archive is not None and not keep_out:
        out.unlink(missing_ok=True)
        written = archive
    click.echo(
        f"wrote {written} ({frames} frames) and {summary}: {len(result.trajectories)} trajectories, "
        f"{stopped} stopped for uncertainty, {failed} with errors"
    )
