"""The report's text summary: the campaign's state, its versions table and one line per iteration."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from aiida_lmlp.reporting.queries import MEV, CampaignData, ParityData


def _mev(value: float | None, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{MEV * value:.{digits}f}"


def _iteration_line(record: dict) -> str:
    iteration = record.get("iteration")
    head = f"iteration {iteration} (explored with v{record.get('version')}): "
    if record.get("explore_failed"):
        return head + f"exploration failed ({record['explore_failed']})"
    if record.get("visited") is None:
        return head + "not screened yet"
    fraction = record.get("fraction_uncertain")
    line = (
        head + f"{record['visited']} visited: {record.get('known', 0)} known, {record.get('uncertain', 0)} uncertain "
        f"({record.get('selected', 0)} selected), {record.get('unphysical', 0)} unphysical, "
        f"{record.get('too_close', 0)} too close; "
        f"{'n/a' if fraction is None else f'{100 * fraction:.1f} %'} uncertain"
    )
    if record.get("trajectories"):
        line += (
            f"; {record.get('stopped_early', 0)} of {record['trajectories']} trajectories stopped uncertain, "
            f"{record.get('mean_steps', 0.0):.1f} steps on average"
        )
    if "labelled" in record or "dropped" in record:
        line += f"; {record.get('labelled', 0)} labelled, {record.get('dropped', 0)} dropped"
    if record.get("version_after") is not None:
        line += (
            f"; then v{record['version_after']}: {_mev(record.get('rmse_energy_per_atom'), 2)} meV/atom, "
            f"{_mev(record.get('rmse_forces'), 1)} meV/Å"
        )
    if record.get("dft_used") is not None:
        line += f"; DFT used so far {record['dft_used']}"
    return line


def summary_text(data: CampaignData, parity: ParityData | None = None, files: Sequence[Path] = ()) -> str:
    """The text summary of :func:`write_report` (units in every heading)."""
    lines = [f"lMLP campaign report: {data.name}"]
    if data.workchain is not None:
        lines.append(f"work chain       LifelongWorkChain<{data.workchain.pk}> ({data.state})")
    else:
        lines.append(f"work chain       none found ({data.state})")
    lines.append(f"stop reason      {data.stop_reason or 'not stopped yet'}")
    budget = data.inputs.get("dft_budget")
    dft = "n/a" if data.dft_used is None else f"{data.dft_used} structures submitted for labelling"
    lines.append(f"DFT used         {dft}" + (f" (budget {budget})" if budget else ""))
    labelled = sum(d.count for d in data.labelled)
    lines.append(f"labelled         {labelled} conformations in {len(data.labelled)} dataset(s)")
    lines.append(f"dropped          {len(data.dropped)} structures no DFT run could label")
    lines.append(f"versions         {len(data.versions)}")
    lines.append("")
    lines.append(
        "versions (test RMSE: the mean of the members' RMSEs on their own test sets, the RMSE of the uncertainty "
        "floor; energy meV/atom, forces meV/Å)"
    )
    lines.append(
        f"{'version':>7} {'pk':>6} {'iteration':>9} {'dataset size':>12} {'epochs':>6} "
        f"{'E RMSE/meV/atom':>16} {'F RMSE/meV/Å':>13}"
    )
    for row in data.versions:
        lines.append(
            f"{row['version']:>7} {row['pk']:>6} {row['iteration']!s:>9} {row['dataset_size']!s:>12} "
            f"{row['epochs']!s:>6} {_mev(row['rmse_energy_per_atom'], 2):>16} {_mev(row['rmse_forces'], 1):>13}"
        )
    if not data.versions:
        lines.append("   (no version yet)")
    lines.append("")
    lines.append("iterations (counts of visited conformations; RMSEs of the version after the iteration)")
    lines.extend(_iteration_line(record) for record in data.iterations)
    if not data.iterations:
        lines.append("   (no iteration yet)")
    if data.dropped:
        lines.append("")
        lines.append("dropped structures")
        for d in data.dropped:
            where = f"iteration {d['iteration']}" if d.get("iteration") is not None else "initial data"
            lines.append(f"  {where}, index {d.get('index')}: {d.get('reason', '')}".rstrip())
    if parity is not None:
        test, train = parity.is_test, ~parity.is_test
        lines.append("")
        lines.append(
            f"parity of version {parity.version} on its training data ({parity.count} conformations, {int(test.sum())} "
            "in the test sets)"
        )
        lines.append(
            f"  all    energy RMSE {_mev(parity.rmse_energy_per_atom(), 2)} meV/atom, "
            f"force RMSE {_mev(parity.rmse_forces(), 1)} meV/Å"
        )
        for name, mask in (("train", train), ("test", test)):
            if mask.any():
                lines.append(
                    f"  {name:<6} energy RMSE {_mev(parity.rmse_energy_per_atom(mask), 2)} meV/atom, "
                    f"force RMSE {_mev(parity.rmse_forces(mask), 1)} meV/Å"
                )
    if files:
        lines.append("")
        lines.append("plots")
        lines.extend(f"  {Path(p).name}" for p in files)
    return "\n".join(lines) + "\n"


def write_summary(
    data: CampaignData, path: str | os.PathLike, parity: ParityData | None = None, files: Sequence[Path] = ()
) -> Path:
    """Write :func:`summary_text` to ``path``."""
    path = Path(path)
    path.write_text(summary_text(data, parity, files), encoding="utf-8")
    return path
