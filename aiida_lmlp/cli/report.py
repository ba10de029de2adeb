"""``lmlp report CAMPAIGN``: PNG plots and a text summary of an active-learning campaign."""

from __future__ import annotations

from pathlib import Path

import click

from aiida_lmlp.cli.campaign import load_profile, profile_option

__all__ = ["report"]


@click.command("report")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the plots and summary.txt (default: ./lmlp-report-CAMPAIGN).",
)
@profile_option
def report(campaign_name: str, out: Path | None, profile: str | None) -> None:
    """Plots (learning curves, parity, uncertainty vs error, data stream, selections) and a summary of CAMPAIGN.

    Works on a campaign still running: what exists so far is reported.
    """
    load_profile(profile)
    from aiida_lmlp.reporting import UnknownCampaignError, write_report

    folder = out if out is not None else Path(f"lmlp-report-{campaign_name}")
    try:
        files = write_report(campaign_name, folder)
    except UnknownCampaignError as error:
        raise click.ClickException(str(error)) from None
    click.echo(files.summary.read_text(encoding="utf-8"), nl=False)
    click.echo("")
    click.echo(f"wrote {len(files.all)} files to {files.folder}:")
    for path in files.all:
        click.echo(f"  {path}")
