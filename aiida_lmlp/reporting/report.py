"""``lmlp report``: the plots and the text summary of one campaign, written into a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aiida_lmlp.reporting.plots import (
    plot_dataset_and_exclusions,
    plot_learning_curves,
    plot_parity,
    plot_selections,
    plot_uncertainty_vs_error,
)
from aiida_lmlp.reporting.queries import collect_campaign, parity_data, training_datasets
from aiida_lmlp.reporting.summary import write_summary

__all__ = ["ReportFiles", "write_report"]


@dataclass
class ReportFiles:
    """Paths of what :func:`write_report` wrote."""

    folder: Path
    learning_curves: Path
    parity: Path
    uncertainty_vs_error: Path
    dataset_and_exclusions: Path
    selections: Path
    summary: Path

    @property
    def plots(self) -> list[Path]:
        """The PNG files."""
        return [
            self.learning_curves,
            self.parity,
            self.uncertainty_vs_error,
            self.dataset_and_exclusions,
            self.selections,
        ]

    @property
    def all(self) -> list[Path]:
        """The PNG files and the summary."""
        return [*self.plots, self.summary]


def write_report(campaign: str, folder: str | os.PathLike) -> ReportFiles:
    """Write the five PNG plots and ``summary.txt`` of ``campaign`` into ``folder`` (created if needed).

    Raises :class:`UnknownCampaignError` (naming the known campaigns) when there is no such campaign.
    """
    data = collect_campaign(campaign)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    latest = data.latest
    parity = parity_data(latest, training_datasets(latest) or data.labelled) if latest is not None else None
    plots = {
        "learning_curves": plot_learning_curves(data, folder / "learning_curves.png"),
        "parity": plot_parity(data, parity, folder / "parity.png"),
        "uncertainty_vs_error": plot_uncertainty_vs_error(data, parity, folder / "uncertainty_vs_error.png"),
        "dataset_and_exclusions": plot_dataset_and_exclusions(data, folder / "dataset_and_exclusions.png"),
        "selections": plot_selections(data, folder / "selections.png"),
    }
    summary = write_summary(data, folder / "summary.txt", parity, list(plots.values()))
    return ReportFiles(folder=folder, summary=summary, **plots)
