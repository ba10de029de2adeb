"""Campaign reports: queries of the profile (:mod:`.queries`), PNG plots (:mod:`.plots`), the text
summary (:mod:`.summary`) and ``lmlp report``'s folder of both (:mod:`.report`)."""

from aiida_lmlp.reporting.plots import (
    plot_dataset_and_exclusions,
    plot_learning_curves,
    plot_parity,
    plot_selections,
    plot_uncertainty_vs_error,
)
from aiida_lmlp.reporting.queries import (
    CampaignData,
    ParityData,
    UnknownCampaignError,
    collect_campaign,
    find_campaign_workchain,
    known_campaigns,
    parity_data,
    version_metrics,
)
from aiida_lmlp.reporting.report import ReportFiles, write_report
from aiida_lmlp.reporting.summary import summary_text, write_summary

__all__ = [
    "CampaignData",
    "ParityData",
    "ReportFiles",
    "UnknownCampaignError",
    "collect_campaign",
    "find_campaign_workchain",
    "known_campaigns",
    "parity_data",
    "plot_dataset_and_exclusions",
    "plot_learning_curves",
    "plot_parity",
    "plot_selections",
    "plot_uncertainty_vs_error",
    "summary_text",
    "version_metrics",
    "write_report",
    "write_summary",
]
