"""Configuration of an lMLP training: every key documented, defaults from the paper.

``lmlp train --print-config`` prints :data:`DEFAULT_CONFIG_YAML`; a YAML file passed with
``--config`` overrides it key by key, and command-line options override both. Unknown keys and
out-of-range values are refused with an error that names the key.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import yaml

#: Ways of cutting a member's weights into EKF covariance blocks (see ``kalman``). Kept here, not
#: in the torch module, so that the daemon validates training parameters without importing torch.
DECOUPLINGS = ("element", "layer", "global")

__all__ = ["DEFAULT_CONFIG_YAML", "ConfigError", "default_config", "merge_config"]

DEFAULT_CONFIG_YAML = """\
# lmlp train configuration. Units: eV, Å. Defaults follow Eckhoff & Reiher (2023), section 3.
epochs: 100              # training epochs of this run (continuing runs add to the epoch counter)
members: 10              # ensemble members, trained together with stacked weights
seed: 0                  # seeds initial weights, train/test splits and subsamples of every member
member_offset: 0         # index of this job's first member when one ensemble is trained in several jobs
device: auto             # auto | cpu | cuda
dtype: float64           # float64 | float32
hidden: [102, 61, 44]    # hidden layers of every atomic network
cutoff: 12.0             # eeACSF cutoff radius (Å); the η grid is re-derived away from 12 Å
reference_energies: null # free-atom energies {element: eV} (new models, and elements a continued model gains);
                         # null: least-squares fit on the data. `lmlp info` says which a model has
output_offset: true      # start every atomic network's output bias at a per-element least-squares fit of
                         # what the reference energies leave (new models and new elements); false: at 0
standardization: relative # how the trainable standardisation alpha (G - beta) is parametrised (new models):
                         # relative (steps in units of the initial spread) | paper (alpha, beta directly)
q: 10.9                  # energy/force balance of the loss, Eq. 10
test_fraction: 0.1       # fraction of the data held out per member (its own random split)
fit_per_epoch: 0.1       # fitted per epoch: a count (integer >= 1) or a fraction (0 < x <= 1.0; 1.0 = all)
selection: adaptive      # adaptive (Algorithms 1 and 2) | random (plain random subsampling)
force_cap: 15.0          # conformations with a force component above this (eV/Å) are skipped
metrics_every: 1         # evaluate RMSEs every this many epochs (and at the last epoch)
checkpoint_every: 10     # write the model with its full training state every this many epochs
optimizer: core          # core (CoRe, Eqs. 13-20) | adam | rprop | sgd (torch.optim; elementwise, members independent)
                         # | ekf (extended Kalman filter, Tokita & Behler Eqs. 14-18; small networks only, see ekf)
baseline_lr:             # learning rates of the torch baselines (the paper's section 3)
  adam: 0.001
  rprop: 0.001
  sgd: 0.00075
core:                    # CoRe optimiser, Eqs. 13-20
  lr: 0.001              # s0, initial step size
  step_sizes: [1.0e-6, 1.0]            # s_min, s_max
  etas: [0.5, 1.2]                     # eta-, eta+
  betas: [0.45, 0.725, 500.0, 0.999]   # beta1a, beta1b, beta1c, beta2
  eps: 1.0e-8
  score_history: 500     # t_hist
  frozen: 0.01           # fraction of each hidden-layer group frozen by the plasticity factor
ekf:                     # extended Kalman filter (optimizer: ekf), Tokita & Behler Box 5, Eqs. 14-18
  decoupling: element    # element (one P per element network) | layer (one per layer of it) | global (one per member)
  p0: 1.0                # P(0) = p0 I (the papers: unity matrix)
  lambda_start: 0.98     # forgetting factor at the first update, lambda(0), in (0, 1]
  lambda_0: 0.9987       # Eq. 18: lambda(k) = lambda(k-1) lambda_0 + 1 - lambda_0, in (0, 1]
  process_noise: 0.0     # q: P <- P + q I after every update (Shao et al.'s Q; 0 in both papers)
  forces_used: 0.1       # force components per conformation: a count (>= 1), a fraction (< 1) of its 3N, or 0
  forces_per_update: 1   # force components per update (1: the paper's point-by-point updates)
  energy_unit: 27.211386 # eV; the filter observes energy per atom (Eq. 14) in this unit (Hartree, as RuNNer)
  length_unit: 0.529177  # Å; force components are observed in energy_unit/length_unit (Hartree/Bohr)
  max_memory_gib: 8.0    # refuse to start when all covariance blocks (n_b^2 numbers per member) need more
  energy_threshold: 0.0  # adaptive update (Tokita & Behler, Box 5): skip an energy update whose error per atom is
                         # at most this times the member's energy RMSE of the last epoch; 0: every update
  force_threshold: 0.0   # the same for force components, in multiples of the member's force RMSE
adaptive:                # lifelong adaptive data selection, Algorithms 1 and 2
  s_min: 0.1
  s_max: 100.0
  sqrt_t1: 0.9
  sqrt_t2: 1.2
  sqrt_t3: 2.0
  n_f_minus_minus: 30
  n_f_minus: 100
  n_f_plus: 500
  n_f_plus_plus: 150
  sqrt_tx: 7.5
  n_x: 5
  p_good_max: 0.6666666666666666
  n_p: 20
  epsilon_prime: 1.0e-6
"""


class ConfigError(ValueError):
    """A configuration key is unknown or its value is out of range."""


@functools.cache
def _parsed_defaults() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_YAML)


def default_config() -> dict:
    """The default configuration as a dictionary (a fresh copy: callers may change it)."""
    # parsed once: the daemon asks for it several times per training job, and YAML is slow
    return copy.deepcopy(_parsed_defaults())


def merge_config(base: dict, override: dict | None, where: str = "") -> dict:
    """``base`` updated by ``override``; refuses unknown keys, naming them."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = f"{where}{key}"
        if key not in base:
            raise ConfigError(f"unknown configuration key {path!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"configuration key {path!r} must be a mapping")
            merged[key] = merge_config(base[key], value, f"{path}.")
        else:
            merged[key] = value
    if not where:
        validate_config(merged)
    return merged


def _check(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ConfigError(f"configuration key {key!r} = {value!r}: {requirement}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_ekf(e: dict) -> None:
    _check(e["decoupling"] in DECOUPLINGS, "ekf.decoupling", e["decoupling"], "must be element, layer or global")
    _check(_number(e["p0"]) and e["p0"] > 0, "ekf.p0", e["p0"], "must be positive")
    for key in ("lambda_start", "lambda_0"):
        _check(_number(e[key]) and 0 < e[key] <= 1, f"ekf.{key}", e[key], "must lie in (0, 1]")
    _check(
        _number(e["process_noise"]) and e["process_noise"] >= 0,
        "ekf.process_noise",
        e["process_noise"],
        "must be >= 0",
    )
    used = e["forces_used"]
    _check(
        _number(used) and (used == 0 or 0 < used < 1 or (used >= 1 and float(used).is_integer())),
        "ekf.forces_used",
        used,
        "must be 0, a fraction in (0, 1) or a whole count >= 1",
    )
    _check(
        isinstance(e["forces_per_update"], int)
        and not isinstance(e["forces_per_update"], bool)
        and e["forces_per_update"] >= 1,
        "ekf.forces_per_update",
        e["forces_per_update"],
        "must be an integer >= 1",
    )
    for key in ("energy_unit", "length_unit"):
        _check(_number(e[key]) and e[key] > 0, f"ekf.{key}", e[key], "must be positive")
    for key in ("energy_threshold", "force_threshold"):
        _check(_number(e[key]) and 0 <= e[key] < math.inf, f"ekf.{key}", e[key], "must be a finite number >= 0")
    _check(
        _number(e["max_memory_gib"]) and e["max_memory_gib"] > 0,
        "ekf.max_memory_gib",
        e["max_memory_gib"],
        "must be positive",
    )


def validate_config(config: dict) -> None:
    """Range checks of every top-level key and the ekf block (the CoRe and selection blocks check themselves)."""
    c = config
    _check(isinstance(c["epochs"], int) and c["epochs"] >= 0, "epochs", c["epochs"], "must be an integer >= 0")
    _check(isinstance(c["members"], int) and c["members"] >= 1, "members", c["members"], "must be an integer >= 1")
    _check(isinstance(c["seed"], int), "seed", c["seed"], "must be an integer")
    _check(
        isinstance(c["member_offset"], int) and c["member_offset"] >= 0,
        "member_offset",
        c["member_offset"],
        "must be an integer >= 0",
    )
    _check(c["device"] in ("auto", "cpu", "cuda"), "device", c["device"], "must be auto, cpu or cuda")
    _check(c["dtype"] in ("float64", "float32"), "dtype", c["dtype"], "must be float64 or float32")
    _check(
        isinstance(c["hidden"], list) and all(isinstance(h, int) and h > 0 for h in c["hidden"]),
        "hidden",
        c["hidden"],
        "must be a list of positive integers",
    )
    _check(c["cutoff"] > 0, "cutoff", c["cutoff"], "must be positive")
    _check(
        c["reference_energies"] is None
        or (
            isinstance(c["reference_energies"], dict)
            and all(isinstance(v, (int, float)) for v in c["reference_energies"].values())
        ),
        "reference_energies",
        c["reference_energies"],
        "must be null or a mapping element -> energy in eV",
    )
    _check(isinstance(c["output_offset"], bool), "output_offset", c["output_offset"], "must be true or false")
    _check(
        c["standardization"] in ("relative", "paper"),
        "standardization",
        c["standardization"],
        "must be relative or paper",
    )
    _check(c["q"] > 0, "q", c["q"], "must be positive")
    _check(0 <= c["test_fraction"] < 1, "test_fraction", c["test_fraction"], "must lie in [0, 1)")
    fit = c["fit_per_epoch"]
    _check(
        _number(fit) and (0 < fit <= 1 if isinstance(fit, float) else fit >= 1),
        "fit_per_epoch",
        fit,
        "must be a count (an integer >= 1) or a fraction (a number in (0, 1], 1.0 = all)",
    )
    _check(c["selection"] in ("adaptive", "random"), "selection", c["selection"], "must be adaptive or random")
    _check(
        c["optimizer"] in ("core", "adam", "rprop", "sgd", "ekf"),
        "optimizer",
        c["optimizer"],
        "must be core, adam, rprop, sgd or ekf",
    )
    _validate_ekf(c["ekf"])
    for name, value in c["baseline_lr"].items():
        _check(value > 0, f"baseline_lr.{name}", value, "must be positive")
    _check(c["force_cap"] > 0, "force_cap", c["force_cap"], "must be positive")
    for key in ("metrics_every", "checkpoint_every"):
        _check(isinstance(c[key], int) and c[key] >= 1, key, c[key], "must be an integer >= 1")
    from aiida_lmlp.formats.core_hyperparameters import CORE_DEFAULTS, validate_core_hyperparameters
    from aiida_lmlp.potential.training.adaptive_selection import SelectionSettings

    try:
        SelectionSettings(**c["adaptive"])
    except ValueError as error:
        raise ConfigError(f"configuration block 'adaptive': {error}") from None
    try:
        core = {**CORE_DEFAULTS, **{k: tuple(v) if isinstance(v, list) else v for k, v in c["core"].items()}}
        validate_core_hyperparameters(core)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"configuration block 'core': {error}") from None
