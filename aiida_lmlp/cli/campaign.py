"""``lmlp campaign``, ``lmlp models`` and ``lmlp quickstart``: campaigns and model versions in an AiiDA profile."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from aiida_lmlp.campaign.localhost import tune_localhost
from aiida_lmlp.cli.versions import VersionCommand

PACKAGED_SPECS = Path(__file__).resolve().parents[1] / "campaign" / "specs"
LIFELONG = "aiida.workflows:lmlp.lifelong"


def load_profile(name: str | None):
    """The AiiDA profile ``name`` (default profile if None); one already loaded is kept."""
    from aiida import get_profile
    from aiida import load_profile as aiida_load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError

    loaded = get_profile()
    if loaded is not None and (name is None or loaded.name == name):
        return loaded
    try:
        return aiida_load_profile(name, allow_switch=True)
    except (ProfileConfigurationError, ConfigurationError) as error:
        raise click.ClickException(
            f"no usable AiiDA profile ({error}); run `lmlp quickstart` or `verdi presto` to make one"
        ) from None


profile_option = click.option(
    "--profile", "profile", default=None, help="AiiDA profile (default: the default profile)."
)


# -- lmlp campaign -----------------------------------------------------------------------------------


@click.group("campaign")
def campaign():
    """Launch and follow lifelong active-learning campaigns."""


def _launch(spec_path: Path, name: str | None, run: bool):
    """Validate ``spec_path`` completely, then submit (or run) the campaign; returns the node."""
    from aiida.engine import run_get_node, submit

    from aiida_lmlp.campaign import SpecError, load_spec
    from aiida_lmlp.registry import list_campaigns
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    try:
        spec = load_spec(spec_path, check_codes=True)
        campaign_name = name or spec.name
        if campaign_name in list_campaigns():
            raise SpecError(f"campaign {campaign_name!r} already exists: choose another name with --name")
        inputs = spec.build_inputs(campaign_name)
    except SpecError as error:
        raise click.ClickException(str(error)) from None
    try:
        if run:
            _, node = run_get_node(LifelongWorkChain, **inputs)
        else:
            node = submit(LifelongWorkChain, **inputs)
    except ValueError as error:  # refused by the work chain's own input validation
        raise click.ClickException(f"{spec_path}: {error}") from None
    return node, campaign_name


@campaign.command("launch")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Campaign name (default: the spec's `campaign`).")
@click.option("--run", "run", is_flag=True, help="Run in this process instead of submitting to the daemon.")
@click.option(
    "--dry-run",
    "dry",
    is_flag=True,
    help="Validate everything and write the first job's files and job script to ./submit_test/; "
    "store and submit nothing.",
)
@profile_option
def launch(spec, name, run, dry, profile):
    """Validate SPEC (YAML) and submit the campaign it describes; nothing is submitted if SPEC is invalid."""
    load_profile(profile)
    if dry:
        _dry_run(spec, name)
        return
    node, campaign_name = _launch(spec, name, run)
    if run:
        click.echo(f"campaign {campaign_name} (LifelongWorkChain<{node.pk}>) finished: {node.process_state.value}")
        _print_versions(campaign_name)
    else:
        click.echo(f"submitted campaign {campaign_name}: LifelongWorkChain<{node.pk}>")
        click.echo(f"follow it with `lmlp campaign status` and `verdi process report {node.pk}`")


def _dry_run(spec_path: Path, name: str | None) -> None:
    from aiida_lmlp.campaign import SpecError, load_spec
    from aiida_lmlp.campaign.dry_run import dry_run

    try:
        spec = load_spec(spec_path, check_codes=True)
        result = dry_run(spec, name or spec.name)
    except SpecError as error:
        raise click.ClickException(str(error)) from None
    labels = "labelled" if result.labelled else "unlabelled: labelled first"
    click.echo(f"{spec_path}: valid; campaign {name or spec.name}")
    click.echo(f"  structures          {spec.structures} ({result.structures}, {labels})")
    if result.explore_structures is not None:
        click.echo(f"  explore_structures  {spec.explore_structures} ({result.explore_structures})")
    where = f"files and job script in {result.folder}" if result.folder else "a work chain, prepared as it runs"
    click.echo(f"  first job           {result.job} on {result.computer}: {where}")
    click.echo("nothing stored, nothing submitted")


def _campaign_rows() -> list[dict]:
    from aiida import orm

    from aiida_lmlp.registry import list_versions

    query = orm.QueryBuilder().append(orm.WorkChainNode, filters={"process_type": LIFELONG}, project="*")
    rows = []
    for node in sorted(query.all(flat=True), key=lambda n: n.pk):
        name = node.base.extras.get("lmlp_campaign", None)
        versions = list_versions(name) if name else []
        rows.append(
            {
                "pk": node.pk,
                "campaign": name or "?",
                "state": node.process_state.value if node.process_state else "created",
                "exit_status": node.exit_status,
                "versions": len(versions),
                "stop_reason": stop_reason(node),
            }
        )
    return rows


def stop_reason(node) -> str:
    """Why a campaign's work chain stopped: ``stop_reason``, with the exit message if it failed; empty while it runs.

    A campaign that excepted or was killed has no ``stop_reason`` output: then the exception's last
    line or the kill's process status.
    """
    if not node.is_terminated:
        return ""
    reason = node.outputs.stop_reason.value if "stop_reason" in node.outputs else ""
    if node.is_finished_ok:
        return reason
    if node.is_excepted:
        lines = (node.exception or "").strip().splitlines()
        return f"excepted: {lines[-1] if lines else 'no exception recorded'}"
    if node.is_killed:
        return f"killed: {node.process_status or 'no reason recorded'}"
    message = node.exit_message or f"exit status {node.exit_status}"
    return f"{reason}: {message}" if reason else f"failed: {message}"


@campaign.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@profile_option
def status(as_json, profile):
    """Every campaign of the profile: state, versions, why it stopped."""
    load_profile(profile)
    rows = _campaign_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no campaigns yet: `lmlp campaign launch SPEC.yaml` or `lmlp quickstart`")
        return
    click.echo(f"{'pk':>6}  {'campaign':<24} {'state':<10} {'exit':>4} {'versions':>8}  stop reason")
    for r in rows:
        exit_status = "" if r["exit_status"] is None else r["exit_status"]
        click.echo(
            f"{r['pk']:>6}  {r['campaign']:<24} {r['state']:<10} {exit_status!s:>4} {r['versions']:>8}  "
            f"{r['stop_reason']}"
        )


# -- lmlp models ---------------------------------------------------------------------------------------


@click.group("models")
def models():
    """Model versions of a campaign: list, show, lineage, diff, export."""


def _print_versions(name: str) -> None:
    from aiida_lmlp.registry import list_versions

    rows = list_versions(name)
    click.echo(f"campaign {name}: {len(rows)} version(s)")
    click.echo(
        f"{'version':>7} {'pk':>6} {'iteration':>9} {'data':>6} {'epochs':>6} "
        f"{'E RMSE/meV/atom':>16} {'F RMSE/meV/Å':>13} {'first-test E':>13} {'first-test F':>13}"
    )
    for r in rows:
        click.echo(
            f"{r['version']:>7} {r['pk']:>6} {r['iteration']:>9} {r['dataset_size']:>6} {r['epochs']:>6} "
            f"{1000 * r['rmse_energy_per_atom']:>16.2f} {1000 * r['rmse_forces']:>13.1f} "
            f"{_milli(r.get('first_test_rmse_energy_per_atom'), 2):>13} "
            f"{_milli(r.get('first_test_rmse_forces'), 1):>13}"
        )
    if rows:
        click.echo(_versions_table_note(name))


def _versions_table_note(name: str) -> str:
    """What the versions table measures, and how much its first-test columns scatter by chance."""
    import textwrap

    from aiida_lmlp.registry import get_version, training_state

    held_out = len(training_state(get_version(name, 0))["test"])
    conformations = f"{held_out} conformation{'s' if held_out != 1 else ''}"
    scatter = (
        f"With {held_out} an RMSE is known to about ±{100 / math.sqrt(2 * held_out):.0f} % (1/√(2n) for n "
        "samples), so changes between versions smaller than that are noise. "
        if held_out
        else ""
    )
    note = (
        "E RMSE, F RMSE: each version on its members' test conformations of its own data, which grows with "
        "what exploration found, so later versions are tested on other, harder data. first-test: the ensemble "
        f"on the {conformations} that version 0's members held out, the same set for every version "
        "(each is held out of at least one member; the others may train on it). "
        f"{scatter}For an independent measure on conformations no version trained on, see "
        "benchmarks/quickstart_learning_curve.py."
    )
    return textwrap.fill(note, width=100)


def _milli(value: float | None, digits: int) -> str:
    """``value`` × 1000 with ``digits`` decimals, or ``-`` where it is not known."""
    return "-" if value is None else f"{1000 * value:.{digits}f}"


def _version(name: str, version: int):
    from aiida_lmlp.registry import get_version

    try:
        return get_version(name, version)
    except KeyError as error:
        raise click.ClickException(str(error.args[0])) from None


@models.command("list")
@click.argument("campaign_name")
@profile_option
def models_list(campaign_name, profile):
    """The versions of CAMPAIGN_NAME with data size and test RMSEs."""
    load_profile(profile)
    from aiida_lmlp.registry import list_campaigns

    if campaign_name not in list_campaigns():
        raise click.ClickException(f"no campaign {campaign_name!r} (known: {', '.join(list_campaigns()) or 'none'})")
    _print_versions(campaign_name)


@models.command("show", cls=VersionCommand)
@click.argument("campaign_name")
@click.argument("version", type=int)
@profile_option
def models_show(campaign_name, version, profile):
    """Attributes and registry extras of one version (VERSION from 0; -1 is the latest, -2 the one before)."""
    load_profile(profile)
    node = _version(campaign_name, version)
    click.echo(
        json.dumps({"pk": node.pk, "uuid": node.uuid, **node.base.attributes.all, **node.base.extras.all}, indent=1)
    )


@models.command("lineage", cls=VersionCommand)
@click.argument("campaign_name")
@click.argument("version", type=int)
@profile_option
def models_lineage(campaign_name, version, profile):
    """The parent versions and the DFT calculations that produced a version's training data (-1: the latest)."""
    load_profile(profile)
    from aiida_lmlp.registry import lineage

    click.echo(json.dumps(lineage(_version(campaign_name, version)), indent=1))


@models.command("diff", cls=VersionCommand)
@click.argument("campaign_name")
@click.argument("old", type=int)
@click.argument("new", type=int)
@profile_option
def models_diff(campaign_name, old, new, profile):
    """Data added, data the adaptive selection excluded, and the RMSE change between two versions (-1: the latest)."""
    load_profile(profile)
    from aiida_lmlp.registry import diff_versions

    old_node, new_node = _version(campaign_name, old), _version(campaign_name, new)
    old, new = old_node.base.extras.get("lmlp_version"), new_node.base.extras.get("lmlp_version")
    difference = diff_versions(old_node, new_node)
    click.echo(
        f"v{old} -> v{new}: {difference['conformations_old']} -> {difference['conformations_new']} conformations, "
        f"{len(difference['added'])} added, {len(difference['removed'])} removed, "
        f"{len(difference['excluded_by_all_members'])} excluded by every member"
    )
    for key, unit, scale in (("rmse_energy_per_atom", "meV/atom", 1000), ("rmse_forces", "meV/Å", 1000)):
        change = difference[key]
        click.echo(f"{key}: {scale * change['old']:.2f} -> {scale * change['new']:.2f} {unit}")
    click.echo(json.dumps({k: difference[k] for k in ("added", "removed", "excluded_by_all_members")}, indent=1))


@models.command("export", cls=VersionCommand)
@click.argument("campaign_name")
@click.argument("version", type=int)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@profile_option
def models_export(campaign_name, version, folder, profile):
    """Write a version's model file and its training data (extxyz) into FOLDER (VERSION -1: the latest)."""
    load_profile(profile)
    from aiida_lmlp.registry import export_version

    model, data = export_version(_version(campaign_name, version), folder)
    click.echo(f"wrote {model} and {data}")


# -- lmlp quickstart -----------------------------------------------------------------------------------


def _verdi(*arguments: str) -> None:
    verdi = shutil.which("verdi") or str(Path(sys.executable).with_name("verdi"))
    result = subprocess.run([verdi, *arguments], capture_output=True, text=True)
    if result.returncode:
        raise click.ClickException(f"verdi {' '.join(arguments)} failed:\n{result.stdout}{result.stderr}")


BROKERS = ("zeromq", "rabbitmq")


def ensure_profile(profile_name: str | None, broker: str = "zeromq"):
    """The default (or named) profile and whether it was made now (a new embedded one, ``verdi presto``).

    A new profile gets aiida-core's built-in ZeroMQ broker, or with ``broker="rabbitmq"`` the
    RabbitMQ server on localhost (refused, with no profile made, when none answers).
    """
    from aiida.manage.configuration import get_config

    if broker not in BROKERS:
        raise click.ClickException(f"broker {broker!r}: choose one of {', '.join(BROKERS)}")
    config = get_config(create=True)
    names = config.profile_names
    if profile_name in names or (profile_name is None and config.default_profile_name):
        return load_profile(profile_name), False
    if broker == "rabbitmq":
        from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

        try:
            detect_rabbitmq_config()
        except ConnectionError as error:
            raise click.ClickException(
                f"--broker rabbitmq: no RabbitMQ server answers ({error}); start one, or leave out --broker "
                "to use aiida-core's built-in ZeroMQ broker"
            ) from None
    click.echo(f"no AiiDA profile: making the embedded default with `verdi presto` ({broker} broker)")
    arguments = ["presto"] + (["--profile-name", profile_name] if profile_name else [])
    # presto takes a RabbitMQ it finds on localhost unless told otherwise; the default here is ZeroMQ
    _verdi(*arguments, *(["--use-zeromq"] if broker == "zeromq" else []))
    from aiida.manage.configuration import reset_config

    reset_config()
    return load_profile(profile_name), True


def _default_user():
    from aiida import orm

    return orm.User.collection.get_default()


def ensure_localhost_code(label: str = "lmlp"):
    """The ``lmlp`` executable of this environment as ``lmlp@localhost`` (localhost made if missing)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer("localhost")
    except NotExistent:
        import tempfile

        computer = orm.Computer(
            label="localhost",
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(Path(tempfile.gettempdir()) / "aiida-lmlp-work"),
        ).store()
        computer.set_default_mpiprocs_per_machine(1)
        tune_localhost(computer)
    if not computer.is_configured:
        tune_localhost(computer)
    try:
        return orm.load_code(f"{label}@localhost")
    except NotExistent:
        executable = Path(sys.executable).with_name("lmlp")
        if not executable.is_file():
            executable = Path(shutil.which("lmlp") or executable)
        return orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=str(executable),
            description="aiida-lmlp executables: lmlp train | explore | label-pyscf | gather",
        ).store()


def enable_dft_caching(profile) -> None:
    """Cache ``lmlp.pyscf`` so that the same batch of structures is never labelled twice."""
    from aiida.manage.configuration import get_config

    config = get_config()
    current = list(config.get_option("caching.enabled_for", scope=profile.name) or [])
    entry = "aiida.calculations:lmlp.pyscf"
    if entry not in current:
        config.set_option("caching.enabled_for", [*current, entry], scope=profile.name)
        config.store()


def ensure_daemon(workers: int = 1) -> None:
    """Start the profile's daemon unless it runs."""
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client()
    if not client.is_daemon_running:
        click.echo(f"starting the daemon ({workers} worker{'s' if workers > 1 else ''})")
        client.start_daemon(number_workers=workers)


def _unique_name(base: str) -> str:
    from aiida_lmlp.registry import list_campaigns

    existing, name, n = set(list_campaigns()), base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


@click.command("quickstart")
@click.option("--profile", "profile_name", default=None, help="Profile to use or create (default: the default one).")
@click.option(
    "--broker",
    type=click.Choice(BROKERS),
    default=None,
    help="Broker of a new profile: aiida-core's built-in ZeroMQ broker (default; started with the daemon) "
    "or a RabbitMQ server on localhost.",
)
@click.option("--use-zeromq", is_flag=True, help="Same as --broker zeromq.")
@click.option("--timeout", default=3600, show_default=True, help="Seconds to wait for the campaign.")
def quickstart(profile_name, broker, use_zeromq, timeout):
    """Set up the embedded profile if needed, run the quickstart campaign in the daemon, print its versions."""
    if use_zeromq and broker not in (None, "zeromq"):
        raise click.UsageError(f"--use-zeromq and --broker {broker} contradict each other")
    profile, made = ensure_profile(profile_name, broker or "zeromq")
    click.echo(f"profile {profile.name}: storage {profile.storage_backend}, broker {profile.process_control_backend}")
    code = ensure_localhost_code()
    if made:  # presto's localhost: a login shell per transport command, polls once a second
        tune_localhost(code.computer)
    elif code.computer.get_authinfo(_default_user()).get_auth_params().get("use_login_shell", True):
        click.echo(
            "tip: localhost runs every scheduler command in a login shell; "
            "`verdi computer configure core.local localhost --no-use-login-shell` makes campaigns here faster"
        )
    enable_dft_caching(profile)
    ensure_daemon()
    name = _unique_name("quickstart")
    node, name = _launch(PACKAGED_SPECS / "quickstart.yaml", name, run=False)
    click.echo(f"submitted campaign {name}: LifelongWorkChain<{node.pk}> (Cl- + CH3Cl, HF/STO-3G, 4 members)")
    start, seen = time.monotonic(), 0
    while not node.is_terminated and time.monotonic() - start < timeout:
        time.sleep(2)
        from aiida_lmlp.registry import list_versions

        rows = list_versions(name)
        for row in rows[seen:]:
            click.echo(
                f"  [{time.monotonic() - start:6.0f} s] version {row['version']}: {row['dataset_size']} conformations, "
                f"test RMSE {1000 * row['rmse_energy_per_atom']:.2f} meV/atom, {1000 * row['rmse_forces']:.0f} meV/Å; "
                f"on the first test set {_milli(row.get('first_test_rmse_energy_per_atom'), 2)} meV/atom"
            )
        seen = len(rows)
    if not node.is_terminated:
        click.echo(f"still running after {timeout} s; follow it with `lmlp campaign status`")
        return
    stop = stop_reason(node)
    click.echo(f"campaign {name} finished in {time.monotonic() - start:.0f} s (exit status {node.exit_status}): {stop}")
    _print_versions(name)
    if not node.is_finished_ok:
        raise click.ClickException(f"the campaign failed: {node.exit_message}; see `verdi process report {node.pk}`")
