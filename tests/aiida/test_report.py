"""``lmlp report``: plots and summary of a real small campaign, checked against the registry and the work chain."""

from __future__ import annotations

import re

import numpy as np
import pytest
from aiida import orm

from aiida_lmlp import registry

from .conftest import SMALL_CAMPAIGN

NAME = SMALL_CAMPAIGN
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def campaign(small_campaign):
    """The shared small campaign (tests/aiida/conftest.py)."""
    return small_campaign


@pytest.fixture(scope="module")
def report(campaign, tmp_path_factory):
    """The report of the campaign, written once."""
    from aiida_lmlp.reporting import write_report

    return write_report(NAME, tmp_path_factory.mktemp("report"))


def _summary_section(text: str, heading: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    section = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        section.append(line)
    return section


def test_every_png_is_a_readable_image(report):
    from matplotlib.image import imread

    assert [p.name for p in report.plots] == [
        "learning_curves.png",
        "parity.png",
        "uncertainty_vs_error.png",
        "dataset_and_exclusions.png",
        "selections.png",
    ]
    for path in report.plots:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        image = imread(path)
        height, width = image.shape[:2]
        assert 300 <= height <= 2000 and 500 <= width <= 2000, (path, image.shape)
        assert image.shape[2] in (3, 4) and float(image[..., :3].std()) > 0.05, f"{path} looks blank"


def test_summary_versions_table_equals_the_registry(report):
    text = report.summary.read_text(encoding="utf-8")
    assert text.startswith(f"lMLP campaign report: {NAME}")
    rows = registry.list_versions(NAME)
    table = _summary_section(text, "versions (")
    assert "meV/atom" in table[0] and "meV/Å" in table[0]
    parsed = [line.split() for line in table[1:]]
    assert len(parsed) == len(rows) >= 2
    for fields, row in zip(parsed, rows):
        version, pk, iteration, size, epochs, energy, forces = fields
        assert (int(version), int(pk), int(iteration), int(size), int(epochs)) == (
            row["version"],
            row["pk"],
            row["iteration"],
            row["dataset_size"],
            row["epochs"],
        )
        assert energy == f"{1000 * row['rmse_energy_per_atom']:.2f}"
        assert forces == f"{1000 * row['rmse_forces']:.1f}"
    assert f"versions         {len(rows)}" in text


def test_summary_counts_equal_the_work_chain_report(campaign, report):
    results, _ = campaign
    expected = results["report"].get_dict()
    text = report.summary.read_text(encoding="utf-8")
    assert f"stop reason      {results['stop_reason'].value}" in text
    assert f"DFT used         {expected['dft_used']} structures submitted for labelling (budget 40)" in text
    labelled = sum(d.count for d in results["labelled"].values())
    assert f"labelled         {labelled} conformations in {len(results['labelled'])} dataset(s)" in text
    assert f"dropped          {len(results['dropped'].get_list())} structures" in text
    lines = [line for line in text.splitlines() if line.startswith("iteration ")]
    assert len(lines) == len(expected["iterations"]) >= 1
    pattern = re.compile(
        r"iteration (\d+) \(explored with v(\d+)\): (\d+) visited: (\d+) known, (\d+) uncertain \((\d+) selected\), "
        r"(\d+) unphysical, (\d+) too close; ([\d.]+) % uncertain; "
        r"(\d+) of (\d+) trajectories stopped uncertain, ([\d.]+) steps on average; (\d+) labelled, (\d+) dropped"
    )
    keys = ("iteration", "version", "visited", "known", "uncertain", "selected", "unphysical", "too_close")
    for line, record in zip(lines, expected["iterations"]):
        match = pattern.match(line)
        assert match, line
        assert [int(match.group(i + 1)) for i in range(len(keys))] == [record[k] for k in keys]
        assert float(match.group(9)) == pytest.approx(100 * record["fraction_uncertain"], abs=0.051)
        assert (int(match.group(10)), int(match.group(11))) == (record["stopped_early"], record["trajectories"])
        assert float(match.group(12)) == pytest.approx(record["mean_steps"], abs=0.051)
        assert (int(match.group(13)), int(match.group(14))) == (record.get("labelled", 0), record.get("dropped", 0))


def test_a_running_campaign_is_read_from_its_calls(campaign):
    """Without the ``report`` output (a campaign still running) the records come from the called processes."""
    from aiida_lmlp.reporting.queries import _iterations_so_far, find_campaign_workchain

    results, node = campaign
    assert find_campaign_workchain(NAME).pk == node.pk
    records = _iterations_so_far(node, registry.list_versions(NAME))
    expected = results["report"].get_dict()["iterations"]
    keys = ("iteration", "version", "visited", "known", "uncertain", "selected", "unphysical", "too_close", "labelled")
    keys += ("dropped", "trajectories", "stopped_early", "mean_steps")
    assert [{k: r.get(k, 0) for k in keys} for r in records] == [{k: r.get(k, 0) for k in keys} for r in expected]
    assert [r["version_after"] for r in records] == [r["version_after"] for r in expected]


def test_parity_rmse_matches_an_independent_evaluation(campaign, report, tmp_path):
    from ase.io import read

    from aiida_lmlp.reporting import version_metrics

    latest = registry.get_version(NAME, -1)
    _, data = registry.export_version(latest, tmp_path)
    frames = read(data, ":")
    calculator = latest.get_calculator()
    energy_errors, force_errors = [], []
    for atoms in frames:
        reference_energy, reference_forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calculator
        energy_errors.append((atoms.get_potential_energy() - reference_energy) / len(atoms))
        force_errors.append((atoms.get_forces() - reference_forces).ravel())
    rmse_energy = 1000 * np.sqrt(np.mean(np.square(energy_errors)))
    rmse_forces = 1000 * np.sqrt(np.mean(np.square(np.concatenate(force_errors))))
    text = report.summary.read_text(encoding="utf-8")
    heading = f"parity of version {latest.base.extras.get('lmlp_version')} on its training data ({len(frames)} "
    assert heading in text
    match = re.search(r"  all +energy RMSE ([\d.]+) meV/atom, force RMSE ([\d.]+) meV/Å", text)
    assert match, text
    assert float(match.group(1)) == pytest.approx(rmse_energy, rel=1e-4, abs=0.006)
    assert float(match.group(2)) == pytest.approx(rmse_forces, rel=1e-4, abs=0.06)
    # the parity on the test conformations is the ensemble's RMSE over the union of the members' test
    # sets, which the trainer recorded at the last epoch (not the floor's mean of the members' own RMSEs)
    test = re.search(r"  test +energy RMSE ([\d.]+) meV/atom, force RMSE ([\d.]+) meV/Å", text)
    assert test, text
    recorded = version_metrics(latest)
    assert float(test.group(1)) == pytest.approx(1000 * recorded["ensemble_test_rmse_energy_per_atom"][-1], abs=0.02)
    assert float(test.group(2)) == pytest.approx(1000 * recorded["ensemble_test_rmse_forces"][-1], abs=0.2)


def test_learning_curves_continue_from_the_parent(campaign):
    from aiida_lmlp.reporting import version_metrics

    rows = registry.list_versions(NAME)
    previous_end = 0
    for row in rows:
        metrics = version_metrics(orm.load_node(row["pk"]))
        epochs = metrics["epoch"]
        assert epochs[0] == previous_end + 1 and epochs[-1] == row["epochs"]
        assert metrics["active"].shape == (len(epochs), 2) and metrics["excluded"].shape == (len(epochs), 2)
        previous_end = row["epochs"]


def test_an_empty_campaign_gives_placeholder_plots(tmp_path):
    from matplotlib.image import imread

    import aiida_lmlp.reporting as module

    data = module.CampaignData(
        name="empty",
        workchain=None,
        versions=[],
        iterations=[],
        metrics={},
        labelled=[],
        dropped=[],
        dft_used=None,
        stop_reason=None,
        state="created",
    )
    paths = [
        module.plot_learning_curves(data, tmp_path / "a.png"),
        module.plot_parity(data, None, tmp_path / "b.png"),
        module.plot_uncertainty_vs_error(data, None, tmp_path / "c.png"),
        module.plot_dataset_and_exclusions(data, tmp_path / "d.png"),
        module.plot_selections(data, tmp_path / "e.png"),
    ]
    for path in paths:
        assert imread(path).shape[0] >= 300
    text = module.summary_text(data)
    assert "not stopped yet" in text and "(no version yet)" in text and "(no iteration yet)" in text


def test_cli_writes_the_folder_and_names_known_campaigns(campaign, tmp_path):
    from click.testing import CliRunner

    from aiida_lmlp.cli.main import main

    runner = CliRunner()
    out = tmp_path / "cli-report"
    result = runner.invoke(main, ["report", NAME, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"lMLP campaign report: {NAME}" in result.output and str(out / "summary.txt") in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "dataset_and_exclusions.png",
            "learning_curves.png",
            "parity.png",
            "selections.png",
            "summary.txt",
            "uncertainty_vs_error.png",
        ]
    )
    missing = runner.invoke(main, ["report", "no-such-campaign", "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0
    assert "no campaign 'no-such-campaign'" in missing.output and NAME in missing.output
    assert not (tmp_path / "x").exists()
