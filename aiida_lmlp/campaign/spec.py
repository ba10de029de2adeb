"""Campaign specification files (YAML): read, validate completely, turn into ``lmlp.lifelong`` inputs.

Everything is checked before anything is stored or submitted: unknown keys (named by their
path, e.g. ``stop.dft_budgt``), negative budgets, thresholds in the wrong order, bad training,
labelling or exploration settings, PySCF basis names, missing files and codes that do not exist
in the profile. Every problem of a spec is reported at once, each with its key. See
``workflows/*.yaml`` for annotated examples. Torch-free: runs on a login node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CampaignSpec", "SpecError", "load_spec"]

SECTIONS = {
    "campaign": None,
    "description": None,
    "codes": {"lmlp", "train", "explore", "label"},
    "structures": None,
    "explore_structures": None,
    "label": {"labeller", "protocol", "parameters", "max_attempts", "options"},
    "train": {"parameters", "continue_parameters", "members_per_job", "max_restarts", "options"},
    "explore": {"protocol", "stop_at", "device", "options"},
    "selection": None,  # validated by SelectionSettings
    "stop": {"max_iterations", "dft_budget", "convergence_fraction", "convergence_patience"},
}
STOP_DEFAULTS = {"max_iterations": 5, "dft_budget": 1000, "convergence_fraction": 0.05, "convergence_patience": 2}
#: ``metadata.options`` of the ``lmlp`` calculations that the plugin sets itself (not a spec's to change)
PLUGIN_OPTIONS = {"parser_name"}


def option_keys() -> set[str]:
    """Every ``metadata.options`` key aiida-core accepts for an ``lmlp`` calculation, but the plugin's own.

    Read from the calculation's process spec, so that a key a newer aiida-core adds passes
    through a spec as well (``environment_variables``, ``prepend_text``, ``qos``, ``account``,
    ``custom_scheduler_commands``, ``stash``, ...).
    """
    from aiida_lmlp.calculations.base import LmlpCalcJob

    return set(LmlpCalcJob.spec_options) - PLUGIN_OPTIONS


def _check_options(options: dict, where: str) -> None:
    """Unknown keys and values of the wrong type, named by their key, as aiida-core's own validation finds them."""
    from aiida_lmlp.calculations.base import LmlpCalcJob

    _check_keys(options, option_keys(), where)
    port = LmlpCalcJob.spec().inputs["metadata"]["options"]
    error = port.validate({"resources": port["resources"].default, **options})
    if error is not None:
        key = (error.port or "").removeprefix("options.") or "?"
        raise SpecError(f"{where}.{key}: {error.message}")


class SpecError(ValueError):
    """A campaign specification is invalid; the message names the file and the key path of every problem."""


class _Problems:
    """The problems of one spec, collected so that one run reports them all."""

    def __init__(self, where: str):
        self.where = where
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        """Record ``message`` (without the file name in front, which the report gives once)."""
        message = message.removeprefix(f"{self.where}: ")
        if message not in self.messages:
            self.messages.append(message)

    @contextmanager
    def check(self) -> Iterator[None]:
        """Run one independent check: a :class:`SpecError` it raises is recorded and the next check runs."""
        try:
            yield
        except SpecError as error:
            for message in str(error).splitlines():
                self.add(message.strip().removeprefix("- "))

    def raise_any(self) -> None:
        """Raise one :class:`SpecError` listing every problem recorded, if any."""
        if len(self.messages) == 1:
            raise SpecError(f"{self.where}: {self.messages[0]}")
        if self.messages:
            listed = "\n".join(f"  - {message}" for message in self.messages)
            raise SpecError(f"{self.where}: {len(self.messages)} problems:\n{listed}")


@dataclass
class CampaignSpec:
    """A validated campaign specification."""

    path: Path
    name: str
    codes: dict[str, str]
    structures: Path
    explore_structures: Path | None
    label: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    explore: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    stop: dict = field(default_factory=dict)

    # -- into AiiDA ---------------------------------------------------------------------------------

    @property
    def labeller(self) -> str:
        """The labeller of the campaign (``label.labeller``, default ``pyscf``)."""
        return self.label.get("labeller", "pyscf")

    def label_parameters(self) -> dict:
        """The labeller's settings: ``label.parameters`` as given, or resolved from ``label.protocol``."""
        if self.label.get("protocol") is None:
            return dict(self.label.get("parameters") or {})
        from aiida_lmlp.workflows.labellers import labeller_parameters

        return labeller_parameters(self.labeller, self.label["protocol"], self.label.get("parameters"))

    def load_codes(self) -> dict:
        """The AiiDA codes of the three steps (refuses a code the profile does not have)."""
        from aiida import orm
        from aiida.common.exceptions import MultipleObjectsError, NotExistent

        codes, problems = {}, _Problems(str(self.path))
        for step in ("train", "explore", "label"):
            label = self.codes.get(step) or self.codes.get("lmlp")
            try:
                codes[step] = orm.load_code(label)
            except (NotExistent, MultipleObjectsError) as error:
                problems.add(f"codes.{step}: code {label!r} cannot be loaded: {error}")
        plugin = codes["label"].default_calc_job_plugin if "label" in codes else None
        if self.labeller == "cp2k" and plugin not in (None, "cp2k"):
            problems.add(
                f"codes.label: the cp2k labeller runs the cp2k executable, but {self.codes.get('label')!r} is a "
                f"code for {plugin!r}"
            )
        problems.raise_any()
        return codes

    def build_inputs(self, campaign: str | None = None, store: bool = True) -> dict:
        """The inputs of an ``lmlp.lifelong`` run; stores the initial datasets unless ``store`` is false (a dry run)."""
        from aiida import orm

        from aiida_lmlp.data import DatasetError, LmlpDatasetData

        codes = self.load_codes()

        def dataset(path: Path) -> LmlpDatasetData:
            node = LmlpDatasetData.from_extxyz(path)
            return node.store() if store else node

        try:
            structures = dataset(self.structures)
            explore_structures = dataset(self.explore_structures) if self.explore_structures else None
        except DatasetError as error:
            raise SpecError(f"{self.path}: {error}") from None

        def options(section: dict) -> dict:
            return {"options": dict(section["options"])} if section.get("options") else {}

        inputs: dict[str, Any] = {
            "structures": structures,
            "campaign": orm.Str(campaign or self.name),
            "label": {
                self.labeller: self._labeller_inputs(codes["label"], self.label_parameters()),
                "max_attempts": orm.Int(self.label.get("max_attempts", 4)),
            },
            "train": {
                "train": {"code": codes["train"], "metadata": options(self.train)},
                "parameters": orm.Dict(self.train.get("parameters", {})),
                "max_restarts": orm.Int(self.train.get("max_restarts", 5)),
            },
            "explore": {
                "code": codes["explore"],
                "protocol": orm.Dict(self.explore.get("protocol", {})),
                "metadata": options(self.explore),
            },
            "explore_stop_at": orm.Str(self.explore.get("stop_at", "lower")),
            "selection": orm.Dict(self.selection),
            "max_iterations": orm.Int(self.stop["max_iterations"]),
            "dft_budget": orm.Int(self.stop["dft_budget"]),
            "convergence_fraction": orm.Float(self.stop["convergence_fraction"]),
            "convergence_patience": orm.Int(self.stop["convergence_patience"]),
        }
        if self.train.get("continue_parameters"):
            inputs["continue_parameters"] = orm.Dict(
                {**self.train.get("parameters", {}), **self.train["continue_parameters"]}
            )
        if self.train.get("members_per_job"):
            inputs["train"]["members_per_job"] = orm.Int(self.train["members_per_job"])
        if self.explore.get("device"):
            inputs["explore"]["device"] = orm.Str(self.explore["device"])
        if explore_structures is not None:
            inputs["explore_structures"] = explore_structures
        return inputs

    def _labeller_inputs(self, code, parameters: dict) -> dict:
        """The inputs of the labeller's namespace of ``lmlp.label``."""
        from aiida import orm

        inputs = {"code": code, "parameters": orm.Dict(parameters)}
        options = dict(self.label.get("options") or {})
        if self.labeller == "cp2k":  # a work chain of Cp2kCalculations, each with these options
            if options:
                inputs["options"] = orm.Dict(options)
        elif options:
            inputs["metadata"] = {"options": options}
        return inputs


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        path, key_path = where.rsplit(": ", 1)
        known = ", ".join(sorted(allowed))
        raise SpecError("\n".join(f"{path}: unknown key '{key_path}.{key}' (known: {known})" for key in unknown))


def _file(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} must be the path of an extxyz file")
    path = (base / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise SpecError(f"{where}: {path} does not exist")
    return path


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where} must be an integer ≥ {minimum}, got {value!r}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = f"at line {key_node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | os.PathLike, *, check_codes: bool = False) -> CampaignSpec:
    """Read and validate a campaign specification; raises :class:`SpecError` naming every problem.

    ``check_codes``: also load the codes from the loaded AiiDA profile (what a launch needs).
    """
    path = Path(path).resolve()
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise SpecError(f"{path} does not exist") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    spec = _mapping(raw, str(path))
    where = str(path)
    problems = _Problems(where)
    for key in sorted(set(spec) - set(SECTIONS)):
        problems.add(f"unknown key {key!r} (known: {', '.join(SECTIONS)})")
    name = spec.get("campaign")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        problems.add(f"campaign must be a name without '/', got {name!r}")
    sections = {}
    for key, allowed in SECTIONS.items():
        if allowed:
            sections[key] = {}
            with problems.check():
                sections[key] = _mapping(spec.get(key), f"{where}: {key}")
                _check_keys(sections[key], allowed, f"{where}: {key}")
    codes = sections["codes"]
    if not codes:
        problems.add("codes: give the AiiDA code of the lmlp executable (codes.lmlp: lmlp@localhost)")
    else:
        for step in ("train", "explore", "label"):
            if not (codes.get(step) or codes.get("lmlp")):
                problems.add(f"codes.{step}: no code (set codes.{step} or codes.lmlp)")
    base = path.parent
    structures = explore_structures = None
    with problems.check():
        structures = _file(base, spec.get("structures"), f"{where}: structures")
    if spec.get("explore_structures"):
        with problems.check():
            explore_structures = _file(base, spec["explore_structures"], f"{where}: explore_structures")
    # each section by the validator of the layer that will use it
    from aiida_lmlp.formats.exploration import ExplorationProtocol, ProtocolError
    from aiida_lmlp.formats.training_config import ConfigError, default_config, merge_config
    from aiida_lmlp.workflows.candidates import TRAJECTORY_STOPS, SelectionSettings, SelectionSettingsError

    label, train, explore = sections["label"], sections["train"], sections["explore"]
    with problems.check():
        _check_labeller(label, where, structures, explore_structures, codes, problems)
    for key in ("parameters", "continue_parameters"):
        with problems.check():
            try:
                merge_config(default_config(), _mapping(train.get(key), f"{where}: train.{key}"))
            except ConfigError as error:
                raise SpecError(f"{where}: train.{key}: {error}") from None
    with problems.check():
        try:
            ExplorationProtocol.from_dict(_mapping(explore.get("protocol"), f"{where}: explore.protocol"))
        except ProtocolError as error:
            raise SpecError(f"{where}: explore.protocol: {error}") from None
    selection: dict = {}
    with problems.check():
        selection = _mapping(spec.get("selection"), f"{where}: selection")
        try:
            SelectionSettings.from_dict(selection)
        except SelectionSettingsError as error:
            raise SpecError(f"{where}: selection: {error}") from None
    if explore.get("stop_at", "lower") not in TRAJECTORY_STOPS:
        problems.add(f"explore.stop_at must be one of {', '.join(TRAJECTORY_STOPS)}, got {explore['stop_at']!r}")
    from aiida_lmlp.calculations.explore import DEVICES

    if explore.get("device", "auto") not in DEVICES:
        problems.add(f"explore.device must be one of {', '.join(DEVICES)}, got {explore['device']!r}")
    for section in ("label", "train", "explore"):
        with problems.check():
            options = _mapping(sections[section].get("options"), f"{where}: {section}.options")
            _check_options(options, f"{where}: {section}.options")
    if "max_attempts" in label:
        with problems.check():
            _integer(label["max_attempts"], f"{where}: label.max_attempts", 1)
    if train.get("members_per_job") is not None:
        with problems.check():
            _integer(train["members_per_job"], f"{where}: train.members_per_job", 1)
    if "max_restarts" in train:
        with problems.check():
            _integer(train["max_restarts"], f"{where}: train.max_restarts", 0)
    stop = {**STOP_DEFAULTS, **sections["stop"]}
    for key in ("max_iterations", "dft_budget", "convergence_patience"):
        with problems.check():
            _integer(stop[key], f"{where}: stop.{key}", 1)
    fraction = stop["convergence_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        problems.add(f"stop.convergence_fraction must be a number between 0 and 1, got {fraction!r}")
    result = CampaignSpec(
        path=path,
        name=name.strip() if isinstance(name, str) else "",
        codes={k: str(v) for k, v in codes.items() if v},
        structures=structures,
        explore_structures=explore_structures,
        label=label,
        train=train,
        explore=explore,
        selection=selection,
        stop=stop,
    )
    if check_codes and codes:
        with problems.check():
            result.load_codes()
    problems.raise_any()
    return result


def _check_labeller(
    label: dict, where: str, structures: Path | None, explore_structures: Path | None, codes: dict, problems: _Problems
) -> None:
    """``label.labeller``, ``label.protocol`` and ``label.parameters``; the extra the labeller needs, named."""
    from aiida_lmlp.workflows.labellers import LABELLERS, labeller_parameters

    labeller = label.get("labeller", "pyscf")
    if labeller not in LABELLERS:
        raise SpecError(f"{where}: label.labeller must be one of {', '.join(LABELLERS)}, got {labeller!r}")
    missing = LABELLERS[labeller].missing()
    if missing is not None:
        raise SpecError(f"{where}: label.labeller: {missing}")
    if not LABELLERS[labeller].runs_lmlp and not codes.get("label"):
        problems.add(f"codes.label: the {labeller} labeller needs the AiiDA code of the {labeller} executable")
    protocol = label.get("protocol")
    if protocol is not None:
        _mapping(protocol, f"{where}: label.protocol")
    parameters = _mapping(label.get("parameters"), f"{where}: label.parameters")
    try:
        resolved = labeller_parameters(labeller, protocol, parameters)
    except ValueError as error:
        key = "label.protocol" if protocol is not None and "protocol" in str(error) else "label.parameters"
        raise SpecError(f"{where}: {key}: {error}") from None
    if labeller == "pyscf":
        for problem in _basis_problems(resolved, [structures, explore_structures]):
            problems.add(f"label.parameters: {problem}")


def _basis_problems(parameters: dict, files: list[Path | None]) -> list[str]:
    """The PySCF basis problems for the elements of the structure ``files`` (none when PySCF is absent)."""
    try:
        from aiida_lmlp.labelling.pyscf_names import basis_problems
    except ImportError:  # pragma: no cover - PySCF is a dependency; a login node without it checks at run time
        return []
    from aiida_lmlp.formats.conformation_arrays import DatasetError, read_frames

    elements: set[str] = set()
    for path in files:
        if path is None:
            continue
        try:
            elements.update(s for atoms in read_frames(path) for s in atoms.get_chemical_symbols())
        except DatasetError:
            continue  # the file's own problem is reported when it is read for the campaign
    try:
        return basis_problems(parameters, elements)
    except ImportError:  # pragma: no cover - see above
        return []
