"""The report's PNG plots (energies in meV/atom, forces in meV/Å); matplotlib's Agg canvas, no pyplot.

- ``learning_curves.png``: ensemble test RMSE against the cumulative epoch, one line per version;
- ``parity.png``: the latest version against its training data (train and test conformations);
- ``uncertainty_vs_error.png``: ensemble uncertainty against the actual error, per conformation, with
  the version's RMSE floor (Eq. 23) where the uncertainty of conformations the members agree on sits;
- ``dataset_and_exclusions.png``: conformations in the data stream and those excluded, per epoch;
- ``selections.png``: the screening outcome of every iteration and the fraction uncertain.

A plot with nothing to show says so.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from aiida_lmlp.reporting.queries import MEV, CampaignData, ParityData


def _figure(width: float = 10.0, height: float = 4.2):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _empty(figure, message: str) -> None:
    for axis in figure.axes:
        axis.set_axis_off()
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color="0.35")


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(count - 1, 1)) for i in range(count)]


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isfinite(y)
    return x[mask], y[mask]


def _version_parents(data: CampaignData) -> dict[int, int | None]:
    by_uuid = {row["uuid"]: row["version"] for row in data.versions}
    return {row["version"]: by_uuid.get(row["parent"]) for row in data.versions}


def _curves(data: CampaignData, value) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per version (epoch, value) with the parent's last point prepended, so continued lines join up."""
    parents = _version_parents(data)
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in data.versions:
        metrics = data.metrics.get(row["version"]) or {}
        if "epoch" not in metrics:
            continue
        x, y = _finite(metrics["epoch"].astype(np.float64), value(metrics))
        if not len(x):
            continue
        parent = parents.get(row["version"])
        if parent in curves and len(curves[parent][0]) and curves[parent][0][-1] < x[0]:
            x = np.concatenate([curves[parent][0][-1:], x])
            y = np.concatenate([curves[parent][1][-1:], y])
        curves[row["version"]] = (x, y)
    return [(version, x, y) for version, (x, y) in curves.items()]


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def plot_learning_curves(data: CampaignData, path: str | os.PathLike) -> Path:
    """Ensemble test RMSE of energy (meV/atom) and forces (meV/Å) against the cumulative epoch, per version.

    Solid lines: on each version's own test sets, which grow with the data; dashed: on the test
    conformations of the first version, held out in every version (models trained since
    2026-11-26 record them), so that versions compare on the same conformations. A star marks
    each version's recorded test RMSE at its last epoch: on the line for a version
    trained in one job; for member blocks the line averages the blocks' RMSEs and the star is
    the whole gathered ensemble's.
    """
    path = Path(path)
    figure = _figure()
    energy_axis, forces_axis = figure.subplots(1, 2)
    keys = (
        ("ensemble_test_rmse_energy_per_atom", "rmse_energy_per_atom", energy_axis, "energy RMSE / meV/atom"),
        ("ensemble_test_rmse_forces", "rmse_forces", forces_axis, "force RMSE / meV/Å"),
    )
    colours = _colours(len(data.versions))
    index = {row["version"]: i for i, row in enumerate(data.versions)}
    plotted = False
    for key, attribute, axis, label in keys:
        curves = _curves(data, lambda m, key=key: MEV * m[key] if key in m else np.full(len(m["epoch"]), np.nan))
        values = [y for _, _, y in curves]
        shown = {version for version, _, _ in curves}
        for version, x, y in curves:
            axis.plot(x, y, "-o", ms=3, lw=1.5, color=colours[index[version]], label=f"v{version}")
        # the first version's test conformations, held out in every version: comparable across them
        first_key = key.replace("ensemble_test", "ensemble_first_test")
        first = _curves(data, lambda m, k=first_key: MEV * m[k] if k in m else np.full(len(m["epoch"]), np.nan))
        for i, (version, x, y) in enumerate(first):
            axis.plot(x, y, "--", lw=1.0, color=colours[index[version]], label="on v0's test set" if i == 0 else None)
            values.append(y)
        recorded = [
            (row, MEV * row[attribute])
            for row in data.versions
            if row["version"] in shown
            and row.get(attribute) is not None
            and row.get("epochs") is not None
            and math.isfinite(row[attribute])
        ]
        for i, (row, value) in enumerate(recorded):
            axis.plot(
                row["epochs"],
                value,
                marker="*",
                ms=12,
                ls="none",
                color=colours[index[row["version"]]],
                markeredgecolor="k",
                label="recorded test RMSE of the version" if i == 0 else None,
            )
            values.append(np.array([value]))
        plotted = plotted or bool(curves)
        axis.set_xlabel("cumulative epoch")
        axis.set_ylabel(f"ensemble test {label}")
        if values and all((v > 0).all() for v in values):
            axis.set_yscale("log")
        axis.grid(alpha=0.3, which="both")
    if plotted:
        energy_axis.legend(fontsize=8)
        figure.suptitle(f"{data.name}: learning curves (ensemble mean on the members' test sets)")
    else:
        _empty(figure, f"{data.name}: no training metrics yet")
    return _save(figure, path)


def plot_parity(data: CampaignData, parity: ParityData | None, path: str | os.PathLike) -> Path:
    """Predicted vs reference energy per atom (meV/atom) and force components (meV/Å) of the latest version."""
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    figure = _figure(10.0, 4.8)
    energy_axis, forces_axis = figure.subplots(1, 2)
    if parity is None:
        _empty(figure, f"{data.name}: no version or no labelled training data yet")
        return _save(figure, path)
    train = ~parity.is_test
    energy_ref = MEV * parity.energy_reference / parity.n_atoms
    energy_pred = MEV * parity.energy_predicted / parity.n_atoms
    offset = float(np.mean(energy_ref))  # energies per atom shown relative to their mean, for readable ticks
    for axis, ref, pred, masks, unit, rmse in (
        (
            energy_axis,
            energy_ref - offset,
            energy_pred - offset,
            (train, parity.is_test),
            "meV/atom",
            parity.rmse_energy_per_atom,
        ),
        (
            forces_axis,
            MEV * parity.forces_reference,
            MEV * parity.forces_predicted,
            (~parity.force_is_test, parity.force_is_test),
            "meV/Å",
            parity.rmse_forces,
        ),
    ):
        conformation_masks = (train, parity.is_test)
        for mask, cmask, name, style in zip(
            masks,
            conformation_masks,
            ("train", "test"),
            ({"marker": "o", "color": "C0"}, {"marker": "^", "color": "C3"}),
        ):
            if not mask.any():
                continue
            value = MEV * rmse(cmask)
            axis.scatter(
                ref[mask],
                pred[mask],
                s=14 if axis is energy_axis else 6,
                alpha=0.75,
                label=f"{name} ({int(cmask.sum())}): RMSE {value:.2f} {unit}",
                **style,
            )
        low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (high - low or 1.0)
        axis.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8, label="y = x")
        axis.set_xlim(low - pad, high + pad)
        axis.set_ylim(low - pad, high + pad)
        axis.set_aspect("equal", adjustable="box")
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.yaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    energy_axis.set_xlabel("reference E/N − ⟨E/N⟩ / meV/atom")
    energy_axis.set_ylabel("predicted E/N − ⟨E/N⟩ / meV/atom")
    energy_axis.text(
        0.98,
        0.03,
        f"⟨E/N⟩ = {offset / MEV:.4f} eV/atom (reference mean)",
        transform=energy_axis.transAxes,
        ha="right",
        fontsize=8,
        color="0.3",
    )
    energy_axis.set_title(
        f"energy per atom (all: RMSE {MEV * parity.rmse_energy_per_atom():.2f} meV/atom)", fontsize=10
    )
    forces_axis.set_xlabel("reference force component / meV/Å")
    forces_axis.set_ylabel("predicted force component / meV/Å")
    forces_axis.set_title(f"forces (all: RMSE {MEV * parity.rmse_forces():.1f} meV/Å)", fontsize=10)
    figure.suptitle(f"{data.name}: version {parity.version} on its training data ({parity.count} conformations)")
    return _save(figure, path)


def plot_uncertainty_vs_error(data: CampaignData, parity: ParityData | None, path: str | os.PathLike) -> Path:
    """Ensemble ΔE per atom vs |error| per atom, and max ΔF vs max |force error|, per conformation (log-log)."""
    return _save(uncertainty_vs_error_figure(data, parity), Path(path))


def _rmse_floor(data: CampaignData, version: int | None) -> tuple[float | None, float | None]:
    """The RMSE floor of Eq. 23 of ``version`` (eV/atom, eV/Å): its test RMSEs, below which ΔE and ΔF never go."""
    for row in data.versions:
        if row.get("version") == version:
            return row.get("rmse_energy_per_atom"), row.get("rmse_forces")
    return None, None


def uncertainty_vs_error_figure(data: CampaignData, parity: ParityData | None):
    """The figure of :func:`plot_uncertainty_vs_error`, with the version's RMSE floor as a dotted vertical line.

    The ensemble's uncertainty is never below the version's test RMSE (Eq. 23): where the members
    agree better than that, ΔE/N and ΔF sit on the floor, a column of points the line explains.
    """
    figure = _figure(10.0, 4.8)
    energy_axis, forces_axis = figure.subplots(1, 2)
    if parity is None:
        _empty(figure, f"{data.name}: no version or no labelled training data yet")
        return figure
    floor_energy, floor_forces = _rmse_floor(data, parity.version)
    floor = 1e-4  # meV: keeps exact zeros visible on a log axis
    pairs = (
        (
            energy_axis,
            MEV * parity.energy_uncertainty / parity.n_atoms,
            MEV * np.abs(parity.energy_error_per_atom()),
            "ensemble ΔE/N / meV/atom",
            "|E error|/N / meV/atom",
            floor_energy,
            "meV/atom",
        ),
        (
            forces_axis,
            MEV * parity.max_force_uncertainty,
            MEV * parity.max_force_error,
            "max ΔF component / meV/Å",
            "max |force error| component / meV/Å",
            floor_forces,
            "meV/Å",
        ),
    )
    for axis, uncertainty, error, xlabel, ylabel, rmse_floor, unit in pairs:
        x, y = np.maximum(uncertainty, floor), np.maximum(error, floor)
        for mask, name, style in (
            (~parity.is_test, "train", {"marker": "o", "color": "C0"}),
            (parity.is_test, "test", {"marker": "^", "color": "C3"}),
        ):
            if mask.any():
                axis.scatter(x[mask], y[mask], s=16, alpha=0.75, label=f"{name} ({int(mask.sum())})", **style)
        low = float(min(x.min(), y.min())) / 2
        high = float(max(x.max(), y.max())) * 2
        axis.plot([low, high], [low, high], "k--", lw=0.8, label="y = x")
        if rmse_floor is not None and math.isfinite(rmse_floor) and rmse_floor > 0:
            value = MEV * rmse_floor
            at_floor = int(np.sum(np.isclose(uncertainty, value, rtol=1e-6, atol=0.0)))
            axis.axvline(
                value,
                color="0.35",
                ls=":",
                lw=1.2,
                label=f"RMSE floor (Eq. 23): {value:.3g} {unit}; {at_floor} at it",
            )
            low, high = min(low, value / 2), max(high, value * 2)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlim(low, high)
        axis.set_ylim(low, high)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8, loc="upper left")
    figure.suptitle(f"{data.name}: uncertainty vs error of version {parity.version}, per conformation")
    return figure


def plot_dataset_and_exclusions(data: CampaignData, path: str | os.PathLike) -> Path:
    """Conformations in the data stream (active + excluded) and excluded ones, mean over members, per epoch."""
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    figure = _figure(10.0, 4.2)
    stream_axis, excluded_axis = figure.subplots(1, 2, sharex=True)

    def member_mean(key: str):
        def value(m: dict[str, np.ndarray]) -> np.ndarray:
            if key == "stream":
                if "active" not in m or "excluded" not in m:
                    return np.full(len(m["epoch"]), np.nan)
                total = m["active"] + m["excluded"]
            elif key in m:
                total = m[key]
            else:
                return np.full(len(m["epoch"]), np.nan)
            with np.errstate(all="ignore"):
                return np.where(np.isfinite(total).all(axis=1), total.mean(axis=1), np.nan)

        return value

    plotted = False
    colours = _colours(len(data.versions))
    index = {row["version"]: i for i, row in enumerate(data.versions)}
    for axis, key, label in (
        (stream_axis, "stream", "conformations in the data stream"),
        (excluded_axis, "excluded", "excluded conformations"),
    ):
        top = 0.0
        for version, x, y in _curves(data, member_mean(key)):
            axis.plot(x, y, "-o", ms=3, lw=1.5, color=colours[index[version]], label=f"v{version}")
            top = max(top, float(y.max()))
            plotted = True
        axis.set_xlabel("cumulative epoch")
        axis.set_ylabel(f"{label} (mean over members)")
        axis.grid(alpha=0.3)
        axis.set_ylim(0, max(1.15 * top, 1.0))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    if plotted:
        stream_axis.legend(title="version", fontsize=8)
        figure.suptitle(f"{data.name}: data stream and adaptive-selection exclusions (active + excluded = stream)")
    else:
        _empty(figure, f"{data.name}: no training metrics yet")
    return _save(figure, path)


def plot_selections(data: CampaignData, path: str | os.PathLike) -> Path:
    """Per iteration: stacked bars known / uncertain (not selected) / selected / unphysical / too close; % uncertain."""
    path = Path(path)
    figure = _figure(8.0, 4.5)
    axis = figure.subplots()
    records = [r for r in data.iterations if r.get("visited") is not None]
    if not records:
        failed = [r["iteration"] for r in data.iterations if r.get("explore_failed")]
        note = f" (exploration failed in iteration {', '.join(map(str, failed))})" if failed else ""
        _empty(figure, f"{data.name}: no screened iteration yet{note}")
        return _save(figure, path)
    failed = [r for r in data.iterations if r.get("visited") is None and r.get("explore_failed")]
    records = sorted(records + failed, key=lambda r: r["iteration"])
    iterations = np.array([r["iteration"] for r in records])
    stacks = (
        ("known", [r.get("known", 0) for r in records], "#9e9e9e"),
        ("uncertain, not selected", [r.get("uncertain", 0) - r.get("selected", 0) for r in records], "#f2a93b"),
        ("selected for DFT", [r.get("selected", 0) for r in records], "#d62728"),
        ("unphysical", [r.get("unphysical", 0) for r in records], "#6a3d9a"),
        ("too close to another", [r.get("too_close", 0) for r in records], "#1f78b4"),
    )
    bottom = np.zeros(len(records))
    for label, values, colour in stacks:
        values = np.asarray(values, dtype=np.float64)
        axis.bar(iterations, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom += values
    axis.set_xlabel("iteration")
    axis.set_ylabel("visited conformations")
    axis.set_xticks(iterations)
    top = max(bottom.max(), 1) * 1.3
    axis.set_ylim(0, top)
    for record in failed:
        axis.text(
            record["iteration"],
            0.1 * top,
            "exploration\nfailed",
            ha="center",
            va="bottom",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"},
            zorder=5,
        )
    fraction_axis = axis.twinx()
    fractions = np.array(
        [np.nan if r.get("fraction_uncertain") is None else 100 * r["fraction_uncertain"] for r in records]
    )
    fractions_shown = np.isfinite(fractions)
    fraction_axis.plot(
        iterations[fractions_shown], fractions[fractions_shown], "k-o", lw=1.5, label="fraction uncertain"
    )
    convergence = data.inputs.get("convergence_fraction")
    if convergence is not None:
        fraction_axis.axhline(100 * convergence, color="k", ls=":", lw=1, label="convergence threshold")
    fraction_axis.set_ylabel("fraction uncertain / %")
    fraction_axis.set_ylim(0, max(100.0, float(np.nanmax(fractions, initial=0.0)) * 1.1))
    handles, labels = axis.get_legend_handles_labels()
    more_handles, more_labels = fraction_axis.get_legend_handles_labels()
    axis.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="upper left", ncol=2)
    figure.suptitle(f"{data.name}: screening of the explored conformations per iteration")
    return _save(figure, path)


# -- the summary ---------------------------------------------------------------------------------------
