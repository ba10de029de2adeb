"""``lmlp label-pyscf``: PySCF single points for a batch of structures (the embedded-default DFT labeller)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _echo_progress(record: dict) -> None:
    energy = f"{record['energy']:.6f} eV" if record["energy"] is not None else "-"
    cycles = record["scf_cycles"] if record["scf_cycles"] is not None else "-"
    line = f"{record['index']:>5} {record['status']:<13} {energy:>22} {cycles:>4} cycles {record['seconds']:>8.2f} s"
    if record["message"]:
        line += f"  {record['message']}"
    click.echo(line)


@click.command("label-pyscf")
@click.option(
    "--structures",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="extxyz file; a frame's info may carry charge and multiplicity.",
)
@click.option(
    "--parameters",
    "parameters_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON object of PySCF settings (see docs/labelling.md); default: PBE/def2-SVP with density fitting.",
)
@click.option(
    "--out",
    default="labelled.extxyz",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="extxyz of the converged structures with energy (eV) and forces (eV/Å).",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the converged structures as a conformation archive (.npz) when the batch finishes.",
)
@click.option(
    "--status",
    default="status.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON lines: start, one line per structure, finished (or terminated).",
)
def label_pyscf(structures, parameters_path, out, archive, status):
    """PySCF energies and analytic forces of every structure in an extxyz file or conformation archive (.npz).

    Exit status 0 when every structure was attempted (some may not have converged), 143/130
    when stopped by SIGTERM/SIGINT, 1 or 2 for bad parameters or input.
    """
    from aiida_lmlp.formats.conformation_arrays import DatasetError, read_frames
    from aiida_lmlp.labelling.pyscf_single_points import ParameterError, PyscfParameters, run_interruptible

    data = {}
    if parameters_path is not None:
        try:
            data = json.loads(parameters_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise click.ClickException(f"cannot read parameters from {parameters_path}: {error}") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{parameters_path} must hold a JSON object of parameters")
    try:
        parameters = PyscfParameters.from_dict(data)
    except ParameterError as error:
        raise click.ClickException(str(error)) from None
    try:
        frames = read_frames(structures)
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{len(frames)} structures, {parameters.method_label()}")
    summary = run_interruptible(frames, parameters, out, status, progress=_echo_progress, archive=archive)
    click.echo(
        f"{summary.converged} converged, {summary.not_converged} not converged, {summary.errors} errors; "
        f"wrote {out} and {status}"
    )
