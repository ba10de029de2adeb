"""What the versions table measures and how noisy it is; the RMSE floor in the uncertainty-vs-error plot."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_lmlp import registry
from aiida_lmlp.cli import main

from .conftest import SMALL_CAMPAIGN


@pytest.fixture(scope="module")
def campaign(small_campaign):
    """The shared small campaign (tests/aiida/conftest.py)."""
    return small_campaign


def test_the_versions_table_says_what_it_measures_and_how_noisy(campaign):
    result = CliRunner().invoke(main, ["models", "list", SMALL_CAMPAIGN])
    assert result.exit_code == 0, result.output
    held_out = len(registry.training_state(registry.get_version(SMALL_CAMPAIGN, 0))["test"])
    assert held_out >= 1
    text = " ".join(result.output.split())
    assert f"the {held_out} conformation{'s' if held_out > 1 else ''} that version 0's members held out" in text
    assert f"±{100 / math.sqrt(2 * held_out):.0f} %" in text  # the standard error of an RMSE from n samples
    assert "benchmarks/quickstart_learning_curve.py" in text


def _parity(floor_energy: float, floor_forces: float):
    from aiida_lmlp.reporting import ParityData

    n_atoms = np.array([6, 6, 6, 6])
    energy_uncertainty = np.array([floor_energy, floor_energy, 3 * floor_energy, 5 * floor_energy]) * n_atoms
    return ParityData(
        version=1,
        n_atoms=n_atoms,
        energy_reference=np.zeros(4),
        energy_predicted=np.array([0.001, -0.002, 0.01, 0.003]) * n_atoms,
        energy_uncertainty=energy_uncertainty,
        forces_reference=np.zeros((24, 3)),
        forces_predicted=np.full((24, 3), 0.1),
        is_test=np.array([False, False, True, False]),
        force_is_test=np.repeat([False, False, True, False], 6),
        max_force_error=np.array([0.1, 0.2, 0.3, 0.4]),
        max_force_uncertainty=np.array([floor_forces, 2 * floor_forces, 3 * floor_forces, floor_forces]),
    )


def test_the_uncertainty_plot_marks_the_rmse_floor(tmp_path):
    from matplotlib.image import imread

    from aiida_lmlp.reporting import CampaignData
    from aiida_lmlp.reporting.plots import plot_uncertainty_vs_error, uncertainty_vs_error_figure

    floor_energy, floor_forces = 0.002, 0.05  # eV/atom, eV/Å: the version's test RMSEs (Eq. 23)
    versions = [
        {"version": 0, "rmse_energy_per_atom": 0.5, "rmse_forces": 0.9},
        {"version": 1, "rmse_energy_per_atom": floor_energy, "rmse_forces": floor_forces},
    ]
    data = CampaignData(
        name="floor",
        workchain=None,
        versions=versions,
        iterations=[],
        metrics={},
        labelled=[],
        dropped=[],
        dft_used=None,
        stop_reason=None,
        state="finished",
    )
    parity = _parity(floor_energy, floor_forces)
    figure = uncertainty_vs_error_figure(data, parity)
    energy_axis, forces_axis = figure.axes[:2]
    for axis, floor_mev, at_floor, unit in ((energy_axis, 2.0, 2, "meV/atom"), (forces_axis, 50.0, 2, "meV/Å")):
        (line,) = [line for line in axis.get_lines() if "RMSE floor" in line.get_label()]
        assert np.allclose(line.get_xdata(), floor_mev)  # a vertical line at the floor of version 1, not 0
        assert f"{floor_mev:g} {unit}" in line.get_label() and f"{at_floor} at it" in line.get_label()
    path = plot_uncertainty_vs_error(data, parity, tmp_path / "u.png")
    assert imread(path).shape[0] >= 300
