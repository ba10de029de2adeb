"""``lmlp label-xtb``: GFN2-xTB single points through tblite for a batch of molecules or periodic cells."""

from __future__ import annotations

import json
from pathlib import Path

import click

from aiida_lmlp.cli.label_pyscf import _echo_progress


@click.command("label-xtb")
@click.option(
    "--structures",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="extxyz file or conformation archive (.npz); a frame's info may carry charge and multiplicity.",
)
@click.option(
    "--parameters",
    "parameters_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON object of tblite settings (see docs/labelling.md); default: GFN2-xTB at 300 K.",
)
@click.option(
    "--out",
    default="labelled.extxyz",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="extxyz of the converged structures with energy (eV), forces (eV/Å) and, for cells, stress (eV/Å³).",
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
def label_xtb(structures, parameters_path, out, archive, status):
    """GFN2-xTB energies, forces and stresses of every structure in an extxyz file or conformation archive.

    Needs tblite (``pip install 'aiida-lmlp[xtb]'``). Exit status 0 when every structure was
    attempted (some may not have converged), 143/130 when stopped by SIGTERM/SIGINT, 1 or 2 for
    bad parameters or input.
    """
    from aiida_lmlp.formats.conformation_arrays import DatasetError, read_frames
    from aiida_lmlp.labelling.protocol import missing_extra
    from aiida_lmlp.labelling.xtb_single_points import ParameterError, XtbParameters, run_xtb_interruptible

    problem = missing_extra("xtb")
    if problem is not None:
        raise click.ClickException(problem)
    data = {}
    if parameters_path is not None:
        try:
            data = json.loads(parameters_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise click.ClickException(f"cannot read parameters from {parameters_path}: {error}") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{parameters_path} must hold a JSON object of parameters")
    try:
        parameters = XtbParameters.from_dict(data)
    except ParameterError as error:
        raise click.ClickException(str(error)) from None
    try:
        frames = read_frames(structures)
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{len(frames)} structures, {parameters.method_label()}")
    summary = run_xtb_interruptible(frames, parameters, out, status, progress=_echo_progress, archive=archive)
    click.echo(
        f"{summary.converged} converged, {summary.not_converged} not converged, {summary.errors} errors; "
        f"wrote {out} and {status}"
    )
