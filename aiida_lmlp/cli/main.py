"""``lmlp`` commands that need no AiiDA profile: create, inspect and evaluate model files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from aiida_lmlp import __version__
from aiida_lmlp.cli.threads import record_threads_option


@click.group()
@click.version_option(__version__, prog_name="lmlp")
@record_threads_option
def main():
    """Lifelong machine-learning potentials (eeACSF HDNNP ensembles)."""


def _read_structures(path: Path):
    from aiida_lmlp.formats.conformation_arrays import DatasetError, read_frames

    try:
        frames = read_frames(path)
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    if not frames:
        raise click.ClickException(f"{path} holds no structures (an empty file?)")
    return frames


@main.command("init")
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="extxyz file(s) or conformation archives (.npz): elements and the standardisation are taken from them.",
)
@click.option("--elements", default=None, help="Comma-separated elements (default: those in --data).")
@click.option(
    "--reference-energies",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file {element: free-atom energy in eV}.",
)
@click.option("--members", default=10, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default="102,61,44", show_default=True, help="Hidden layer sizes.")
@click.option(
    "--cutoff",
    default=12.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Cutoff radius in Å (η grid re-derived away from the paper's 12 Å).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def init_model(data, elements, reference_energies, members, hidden, cutoff, seed, out):
    """Create a new, untrained ensemble with the paper's eeACSFs and network shape."""
    from aiida_lmlp.potential import EeACSF, Ensemble

    structures = [atoms for path in data for atoms in _read_structures(path)]
    if elements:
        element_list = [e.strip() for e in elements.split(",") if e.strip()]
    else:
        if not structures:
            raise click.UsageError("give --elements or --data")
        element_list = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    refs = json.loads(reference_energies.read_text()) if reference_energies else None
    if refs is not None:
        missing = [e for e in element_list if e not in refs]
        if missing:
            raise click.ClickException(f"{reference_energies} has no reference energy for {', '.join(missing)}")
    try:
        layers = tuple(int(x) for x in hidden.split(","))
        model = Ensemble.new(
            element_list,
            EeACSF.from_paper(element_list, cutoff=cutoff),
            members=members,
            hidden=layers,
            reference_energies=refs,
            seed=seed,
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if structures:
        model.initialize_standardization(structures)
    sha = model.save(out)
    click.echo(
        f"wrote {out}: {len(element_list)} elements, {members} members, "
        f"{len(model.descriptor)} descriptors, content sha256 {sha}"
    )


@main.command("info")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def info(model):
    """Show what a model file holds."""
    from aiida_lmlp.potential import Ensemble, ModelFileError

    try:
        ensemble = Ensemble.load(model)
    except ModelFileError as error:
        raise click.ClickException(str(error)) from None
    config = ensemble.config()
    click.echo(f"model          {model}")
    click.echo(f"content sha256 {ensemble.content_sha256}")
    click.echo(f"elements       {', '.join(ensemble.elements)}")
    click.echo(f"members        {ensemble.members}")
    click.echo(f"hidden layers  {'-'.join(map(str, config['hidden']))}")
    click.echo(
        f"descriptor     {ensemble.descriptor.kind}, {len(ensemble.descriptor)} functions, "
        f"cutoff {ensemble.descriptor.cutoff:g} Å"
    )
    click.echo(f"test RMSE      {_test_rmse_text(ensemble)}")
    click.echo(f"               ({_rmse_kind_text(ensemble)}; the floor of the uncertainty and the selection's unit)")
    click.echo(f"references     {_reference_text(ensemble)}")
    offsets = ", ".join(f"{e} {sum(v) / len(v):+.4f}" for e, v in ensemble.output_offsets.items() if v)
    click.echo(f"output offset  {offsets + ' eV/atom (member mean)' if offsets else 'none recorded'}")
    click.echo(f"standardization {ensemble.standardization}")
    click.echo(f"dtype          {config['dtype']}")


def _test_rmse_text(ensemble) -> str:
    """The model's test RMSEs, or why there are none (0 is what a model without any records)."""
    if ensemble.rmse_energy_per_atom == 0 and ensemble.rmse_forces == 0:
        trained = bool((ensemble.training_config or {}).get("trainer"))
        return "not measured: " + ("trained without test conformations" if trained else "untrained")
    return f"{1000 * ensemble.rmse_energy_per_atom:.3f} meV/atom, {1000 * ensemble.rmse_forces:.3f} meV/Å"


def _rmse_kind_text(ensemble) -> str:
    from aiida_lmlp.potential.model.ensemble import RMSE_MEMBERS_OWN_TEST

    if ensemble.rmse_kind == RMSE_MEMBERS_OWN_TEST:
        if ensemble.member_test_rmse_energy_per_atom is None:
            return "mean of the members' RMSEs on their own test sets, not evaluated yet"
        return f"mean of the {len(ensemble.member_test_rmse_energy_per_atom)} members' RMSEs on their own test sets"
    return (
        "ensemble RMSE over the union of the members' test sets, recorded before the kind was: "
        "mostly training data of the members, lower than their own test RMSEs"
    )


def _reference_text(ensemble) -> str:
    names = {"free_atom": "free atoms", "least_squares": "least squares", "none": "none (zero)"}
    if not ensemble.reference_kinds:
        return "kind not recorded (model file written before it was)"
    kinds = {names.get(k, k) for k in ensemble.reference_kinds.values()}
    if len(kinds) == 1:
        return f"{kinds.pop()} for every element"
    return ", ".join(f"{e}: {names.get(k, k)}" for e, k in ensemble.reference_kinds.items())


@main.command("predict")
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("structures", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the structures with lmlp_energy, lmlp_forces and uncertainties as extxyz "
    "(a skipped one carries lmlp_skipped, the reason).",
)
def predict(model, structures, out):
    """Energies, forces and uncertainties of every structure in an extxyz file.

    A structure the model cannot evaluate (an element it lacks, atoms too close, no atoms) is
    skipped and named with the reason; nothing predicted is an error. Where the structures carry
    reference energies and forces, the errors against them are reported.
    """
    import numpy as np
    from ase.io import write

    from aiida_lmlp.formats.labels import reference_label
    from aiida_lmlp.potential import Ensemble, ModelFileError, StructureError
    from aiida_lmlp.potential.allocator import keep_freed_memory

    keep_freed_memory()

    try:
        ensemble = Ensemble.load(model)
    except ModelFileError as error:
        raise click.ClickException(str(error)) from None
    frames = _read_structures(structures)
    if not frames:
        raise click.ClickException(f"{structures} holds no structures: nothing to predict")
    labelled = any(reference_label(atoms, "energy") is not None for atoms in frames)
    reference_header = f" {'E-Eref / meV/atom':>18} {'F RMSE / meV/Å':>15}" if labelled else ""
    click.echo(f"{'#':>5} {'formula':<12} {'E / eV':>16} {'ΔE / eV':>10} {'max ΔF / eV/Å':>14}{reference_header}")
    skipped, energy_errors, force_errors = [], [], []
    for index, atoms in enumerate(frames):
        formula = atoms.get_chemical_formula()
        try:
            p = ensemble.evaluate(atoms)
        except StructureError as error:
            skipped.append(f"structure {index} ({formula})")
            atoms.info["lmlp_skipped"] = str(error)
            click.echo(f"structure {index} ({formula}) skipped: {error}", err=True)
            continue
        atoms.info["lmlp_energy"] = float(p.energy[0])
        atoms.info["lmlp_energy_uncertainty"] = float(p.energy_uncertainty[0])
        atoms.arrays["lmlp_forces"] = p.forces
        atoms.arrays["lmlp_forces_uncertainty"] = p.forces_uncertainty
        columns = ""
        if labelled:
            energy, forces = reference_label(atoms, "energy"), reference_label(atoms, "forces")
            energy_column = forces_column = "-"
            if energy is not None and np.isfinite(energy):
                energy_errors.append((float(p.energy[0]) - float(energy)) / len(atoms))
                energy_column = f"{1000 * energy_errors[-1]:.2f}"
            if forces is not None and np.all(np.isfinite(forces)):
                difference = (p.forces - np.asarray(forces)).ravel()
                force_errors.append(difference)
                forces_column = f"{1000 * np.sqrt(np.mean(difference**2)):.1f}"
            columns = f" {energy_column:>18} {forces_column:>15}"
        click.echo(
            f"{index:>5} {formula:<12} {p.energy[0]:>16.4f} "
            f"{p.energy_uncertainty[0]:>10.4f} {p.forces_uncertainty.max():>14.4f}{columns}"
        )
    predicted = len(frames) - len(skipped)
    if not predicted:
        raise click.ClickException(
            f"nothing was predicted: all {len(frames)} structures were skipped (reasons above); "
            f"{out or 'no output'} not written"
        )
    if skipped:
        click.echo(f"predicted {predicted} of {len(frames)} structures; skipped {len(skipped)}: {', '.join(skipped)}")
    if energy_errors or force_errors:
        energy = (
            f"energy RMSE {1000 * np.sqrt(np.mean(np.square(energy_errors))):.2f} meV/atom" if energy_errors else ""
        )
        forces = (
            f"force RMSE {1000 * np.sqrt(np.mean(np.square(np.concatenate(force_errors)))):.1f} meV/Å"
            if force_errors
            else ""
        )
        click.echo(
            f"against the reference labels of {structures}, {max(len(energy_errors), len(force_errors))} structures: "
            + ", ".join(part for part in (energy, forces) if part)
        )
    if out:
        write(out, frames, format="extxyz")
        click.echo(f"wrote {out}")


@main.command("train")
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="extxyz file(s) or conformation archives (.npz) with energies (eV) and forces (eV/Å); repeat for several.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML configuration (see --print-config); options below override it.",
)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Model file to write.")
@click.option(
    "--continue-from",
    "parent",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Continue training this model (weights, CoRe and selection state carry over).",
)
@click.option(
    "--reference-energies",
    "references",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON {element: free-atom energy in eV} for a new model (default: least-squares fit).",
)
@click.option("--epochs", type=int, help="Epochs of this run.")
@click.option("--members", type=int, help="Ensemble members (new models only).")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train.")
@click.option(
    "--member-block",
    "member_block",
    metavar="START:STOP",
    help="With --continue-from: continue only these members (one job of an ensemble split over several).",
)
@click.option(
    "--progress-every",
    "progress_every",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Where output goes to a file (a job's log): a progress line every so many seconds. "
    "A terminal gets a progress bar.",
)
@click.option("--print-config", is_flag=True, help="Print the complete default configuration and exit.")
def train(
    data,
    config_path,
    out,
    parent,
    references,
    epochs,
    members,
    seed,
    device,
    member_block,
    progress_every,
    print_config,
):
    """Train (or continue training) an lMLP ensemble; runs without any AiiDA profile."""
    import yaml

    from aiida_lmlp.formats.training_config import DEFAULT_CONFIG_YAML, ConfigError, default_config, merge_config

    if print_config:
        click.echo(DEFAULT_CONFIG_YAML, nl=False)
        return
    if not data or out is None:
        raise click.UsageError("--data and --out are required (or --print-config)")
    overrides = {}
    if config_path:
        try:
            overrides = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as error:
            raise click.ClickException(f"cannot parse {config_path}: {error}") from None
        if not isinstance(overrides, dict):
            raise click.ClickException(f"{config_path} must hold a mapping of configuration keys")
    if references is not None:
        overrides["reference_energies"] = json.loads(references.read_text())
    for key, value in (("epochs", epochs), ("members", members), ("seed", seed), ("device", device)):
        if value is not None:
            overrides[key] = value
    try:
        config = merge_config(default_config(), overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    from aiida_lmlp.overrides.optimizer_imports import optimizers_without_dynamo
    from aiida_lmlp.potential.allocator import keep_freed_memory
    from aiida_lmlp.potential.training.run import run_training

    keep_freed_memory()
    optimizers_without_dynamo()
    block = None
    if member_block is not None:
        if parent is None:
            raise click.UsageError("--member-block needs --continue-from (a new model takes members and member_offset)")
        from aiida_lmlp.potential import Ensemble, ModelFileError
        from aiida_lmlp.potential.model.member_blocks import parse_member_block

        try:
            block = parse_member_block(member_block, Ensemble.load(parent).members)
        except (ValueError, ModelFileError) as error:
            raise click.ClickException(str(error)) from None
    try:
        metrics = run_training(
            [Path(p) for p in data], config, Path(out), parent=parent, member_block=block, progress_every=progress_every
        )
    except (ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    metrics = metrics or {}
    energy, forces = metrics.get("ensemble_test_rmse_energy_per_atom"), metrics.get("ensemble_test_rmse_forces")
    if energy is not None and math.isfinite(energy):
        click.echo(f"wrote {out}: ensemble test RMSE {1000 * energy:.2f} meV/atom, {1000 * forces:.1f} meV/Å")
    elif metrics:
        click.echo(
            f"wrote {out}: no test conformations, so no test RMSE (test_fraction {config['test_fraction']} of the "
            "data rounds to none; give more data or a larger test_fraction); the uncertainty's floor is 0"
        )
    else:
        click.echo(f"wrote {out}")


@main.command("gather")
@click.argument("blocks", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="The training data (extxyz or .npz): the ensemble's test RMSEs are re-evaluated on the members' test sets.",
)
def gather(blocks, out, data):
    """Join member blocks trained in several jobs into one ensemble, training state included."""
    from aiida_lmlp.potential import Ensemble, ModelFileError
    from aiida_lmlp.potential.model.member_blocks import ensemble_test_rmse
    from aiida_lmlp.potential.training.trainer import gather_trained

    try:
        models = [Ensemble.load(path) for path in blocks]
        gathered = gather_trained(models)
    except (ModelFileError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    structures = [atoms for path in data for atoms in _read_structures(path)]
    if structures:
        # the floor of Eq. 23 is the mean of the members' own test RMSEs, which the blocks carry;
        # the ensemble RMSE over the union of the test sets is reported, not used
        energy, forces, count = ensemble_test_rmse(gathered, structures)
        if count:
            if gathered.member_test_rmse_energy_per_atom is None:  # blocks from before that was recorded
                gathered.rmse_energy_per_atom, gathered.rmse_forces = energy, forces
            click.echo(
                f"ensemble test RMSE on {count} conformations: {1000 * energy:.2f} meV/atom, {1000 * forces:.1f} meV/Å"
            )
        energy, forces, count = ensemble_test_rmse(gathered, structures, "first_test")
        if count:
            gathered.first_test_rmse_energy_per_atom, gathered.first_test_rmse_forces = energy, forces
    sha = gathered.save(out)
    click.echo(f"wrote {out}: {gathered.members} members from {len(blocks)} blocks, content sha256 {sha}")


from aiida_lmlp.cli.explore import explore as _explore_command  # noqa: E402

main.add_command(_explore_command)

from aiida_lmlp.cli.label_pyscf import label_pyscf as _label_pyscf_command  # noqa: E402

main.add_command(_label_pyscf_command)

from aiida_lmlp.cli.label_xtb import label_xtb as _label_xtb_command  # noqa: E402

main.add_command(_label_xtb_command)


from aiida_lmlp.cli.campaign import campaign as _campaign_group  # noqa: E402
from aiida_lmlp.cli.campaign import models as _models_group  # noqa: E402
from aiida_lmlp.cli.campaign import quickstart as _quickstart_command  # noqa: E402

main.add_command(_campaign_group)
main.add_command(_models_group)
main.add_command(_quickstart_command)


from aiida_lmlp.cli.report import report as _report_command  # noqa: E402

main.add_command(_report_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
