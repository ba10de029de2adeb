"""The CoRe optimiser in the paper's form (Eckhoff & Reiher 2023, Eqs. 13–20), member-aware.

The authors' `core-optimizer` package (PyPI) implements the same update. We keep this form
next to it for three reasons, each checked in ``tests/potential/test_paper_core.py``:

* **Plasticity ranking per ensemble member.** The package ranks the scores of a whole tensor.
  Our networks stack the weights of all members in one tensor ``(M, ...)``; with
  ``member_axis=0`` the top-``n_frozen`` weights are chosen per member, exactly as if every
  member had its own tensor (the paper's groups: element network, layer, weight type).
* **Exact top-n.** The package freezes every weight with ``S ≥ 0.999999 · S_(n)`` (the n-th
  largest score), which freezes more than n weights on near-ties and fewer than n when the
  n-th score is negative. Eq. 17 freezes exactly the n highest scores.
* **Score decay for every group.** The package applies the factor ``1 − 1/t_hist`` of Eq. 20
  only in groups that freeze weights; the paper applies it to all. (Scores of groups without
  freezing are never used, so this changes no weight.)

With no freezing (``frozen=0``) both give the same weights to rounding.

Per weight ξ and its own step counter τ (Eqs. 13–20)::

    g = β1(τ) g + (1 − β1(τ)) G,      β1(τ) = β1b + (β1a − β1b) exp(−((τ − 1)/β1c)²)
    h = β2 h + (1 − β2) G²
    u = [g / (1 − β1(τ)^τ)] / ([h / (1 − β2^τ)]^½ + ε)
    P = 0 if τ > t_hist and S among the n_frozen highest scores of its group, else 1
    s = clamp(η± s, s_min, s_max) by the sign of g_prev · g · P (unchanged if 0)
    w = (1 − d |u| P s) w − u P s
    S = S + g u P s / t_hist  (τ ≤ t_hist),  (1 − 1/t_hist) S + g u P s / t_hist  (τ > t_hist)
"""

from __future__ import annotations

import torch

from .core_hyperparameters import CORE_DEFAULTS, validate_core_hyperparameters

__all__ = ["CORE_DEFAULTS", "PaperCoRe", "core_parameter_groups"]


class PaperCoRe(torch.optim.Optimizer):
    """CoRe exactly as in Eqs. 13–20, with plasticity ranking per group and member.

    Every parameter tensor is one group of Eq. 17 (or ``M`` groups, one per member, when its
    ``member_axis`` is 0). ``frozen`` is the fraction of the group's weights frozen,
    ``n_frozen = int(frozen · group size)``.
    """

    def __init__(self, params, **defaults):
        unknown = set(defaults) - set(CORE_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown CoRe hyperparameter(s): {', '.join(sorted(unknown))}")
        merged = {**CORE_DEFAULTS, **defaults}
        validate_core_hyperparameters(merged)
        super().__init__(params, merged)
        for group in self.param_groups:
            validate_core_hyperparameters(group)

    @torch.no_grad()
    def step(self, closure=None):
        """One optimisation step for every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            s_min, s_max = group["step_sizes"]
            eta_minus, eta_plus = group["etas"]
            beta_1a, beta_1b, beta_1c, beta_2 = group["betas"]
            t_hist = group["score_history"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                stacked = group["member_axis"] == 0
                members = param.shape[0] if stacked else 1
                view = (members,) + (1,) * (param.dim() - 1) if stacked else (1,) * param.dim()
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros(members, dtype=torch.float64, device=param.device)
                    state["g"] = torch.zeros_like(param)
                    state["h"] = torch.zeros_like(param)
                    state["s"] = torch.full_like(param, group["lr"])
                    state["S"] = torch.zeros_like(param)
                grad = param.grad
                # a member whose subsample did not involve this network has an exactly zero gradient
                # slice: like a member trained alone (gradient None) it takes no step at all
                active = grad.reshape(members, -1).ne(0).any(1) if stacked else grad.new_ones(1, dtype=torch.bool)
                state["step"] = state["step"] + active
                tau = state["step"].clamp_min(1.0).to(param.dtype).view(view)
                act = active.view(view)
                g_prev = state["g"]
                beta_1 = beta_1b + (beta_1a - beta_1b) * torch.exp(-(((tau - 1.0) / beta_1c) ** 2))
                g = torch.where(act, beta_1 * g_prev + (1.0 - beta_1) * grad, g_prev)  # Eq. 13
                h = torch.where(act, beta_2 * state["h"] + (1.0 - beta_2) * grad * grad, state["h"])  # Eq. 14
                update = (g / (1.0 - beta_1**tau)) / ((h / (1.0 - beta_2**tau)).sqrt() + group["eps"])  # Eq. 16
                plasticity = self._plasticity(state["S"], state["step"], group)  # Eq. 17
                sign = g_prev * g * plasticity * act
                factor = torch.ones_like(sign)
                factor[sign > 0] = eta_plus
                factor[sign < 0] = eta_minus
                state["s"].mul_(factor).clamp_(s_min, s_max)  # Eq. 18
                step = torch.where(act, update * plasticity * state["s"], torch.zeros_like(update))
                param.mul_(1.0 - group["weight_decay"] * step.abs()).sub_(step)  # Eq. 19
                if t_hist > 0:  # Eq. 20
                    decayed = torch.where(tau > t_hist, (1.0 - 1.0 / t_hist) * state["S"], state["S"])
                    state["S"] = torch.where(act, decayed + g * step / t_hist, state["S"])
                state["g"], state["h"] = g, h
        return loss

    @staticmethod
    def _plasticity(score: torch.Tensor, steps: torch.Tensor, group: dict) -> torch.Tensor:
        """Eq. 17 per member (row): 0 for the ``n_frozen`` highest scores once ``τ > t_hist``."""
        ones = torch.ones_like(score)
        t_hist = group["score_history"]
        if t_hist <= 0 or group["frozen"] <= 0 or not bool((steps > t_hist).any()):
            return ones
        rows = score.reshape(score.shape[0], -1) if group["member_axis"] == 0 else score.reshape(1, -1)
        n_frozen = int(group["frozen"] * rows.shape[1])
        if n_frozen == 0:
            return ones
        top = torch.topk(rows, n_frozen, dim=1).indices
        mask = torch.ones_like(rows).scatter_(1, top, 0.0)
        mask[steps <= t_hist] = 1.0  # members still building their score history
        return mask.reshape(score.shape)


def core_parameter_groups(networks, frozen: float = 0.01, **hyperparameters) -> list[dict]:
    """The paper's parameter groups for stacked atomic networks (one tensor = one group per member).

    Weight decay 0.01 for the standardisation weights α, β; 0 for the output layer; 0.1
    otherwise. The plasticity factor freezes ``frozen`` (1 %) of the weights and biases of the
    hidden layers, never those of the output neuron nor α, β.
    """
    groups = []
    for net in networks.networks.values():
        groups.append(
            {"params": [net.alpha, net.beta], "weight_decay": 0.01, "frozen": 0.0, "member_axis": 0, **hyperparameters}
        )
        last = len(net.weights) - 1
        for k, (w, b) in enumerate(zip(net.weights, net.biases)):
            output = k == last
            groups.append(
                {
                    "params": [w, b],
                    "weight_decay": 0.0 if output else 0.1,
                    "frozen": 0.0 if output else frozen,
                    "member_axis": 0,
                    **hyperparameters,
                }
            )
    return groups
