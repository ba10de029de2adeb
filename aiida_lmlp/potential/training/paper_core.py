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

from ...formats.core_hyperparameters import CORE_DEFAULTS, validate_core_hyperparameters

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
        """One optimisation step for every parameter that has a gradient.

        Written for few passes over the weights (about 25 instead of 45: for the paper's ten
        members of 102-61-44 networks, 2 M weights, the step took a third of a CPU training
        epoch): the moments by ``lerp``, the update and the weights in place, and a member that
        takes no step masked by a factor 0 or 1 per member instead of ``where`` over the weights.
        Such a member keeps ``g``, ``h``, ``s``, ``S`` and its weights bit for bit.
        """
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
                act = active.to(param.dtype).view(view)  # per member: 1 takes the step, 0 keeps everything
                g_prev = state["g"]
                beta_1 = beta_1b + (beta_1a - beta_1b) * torch.exp(-(((tau - 1.0) / beta_1c) ** 2))
                g = torch.lerp(g_prev, grad, (1.0 - beta_1) * act)  # Eq. 13 (weight 0: g_prev exactly)
                h = state["h"].lerp_(grad * grad, (1.0 - beta_2) * act)  # Eq. 14
                denominator = h.mul(1.0 / (1.0 - beta_2**tau)).sqrt_().add_(group["eps"])
                update = g.mul(1.0 / (1.0 - beta_1**tau)).div_(denominator)  # Eq. 16
                plasticity = self._plasticity(state["S"], state["step"], group)  # Eq. 17 (None: all 1)
                sign = (g_prev * g).mul_(act)
                if plasticity is not None:
                    sign.mul_(plasticity)
                one = sign.new_ones(())  # a tensor, so that where() keeps the weights' dtype
                factor = torch.where(sign > 0, one * eta_plus, one)
                factor = torch.where(sign < 0, one * eta_minus, factor)
                state["s"].mul_(factor).clamp_(s_min, s_max)  # Eq. 18
                step = update.mul_(state["s"]).mul_(act)  # u P s, 0 for a member without a step
                if plasticity is not None:
                    step.mul_(plasticity)
                if group["weight_decay"]:
                    param.addcmul_(param, step.abs(), value=-group["weight_decay"])  # Eq. 19: (1 − d|uPs|) w
                param.sub_(step)  # Eq. 19: − uPs
                if t_hist > 0:  # Eq. 20: decay once past t_hist, then add g uPs / t_hist
                    decay = torch.where((tau > t_hist) & (act > 0), one * (1.0 - 1.0 / t_hist), one)
                    state["S"].mul_(decay).addcmul_(g, step, value=1.0 / t_hist)
                state["g"] = g
        return loss

    @staticmethod
    def _plasticity(score: torch.Tensor, steps: torch.Tensor, group: dict) -> torch.Tensor | None:
        """Eq. 17 per member (row): 0 for the ``n_frozen`` highest scores once ``τ > t_hist``; None: all 1."""
        t_hist = group["score_history"]
        if t_hist <= 0 or group["frozen"] <= 0 or not bool((steps > t_hist).any()):
            return None
        rows = score.reshape(score.shape[0], -1) if group["member_axis"] == 0 else score.reshape(1, -1)
        n_frozen = int(group["frozen"] * rows.shape[1])
        if n_frozen == 0:
            return None
        top = torch.topk(rows, n_frozen, dim=1).indices
        mask = torch.ones_like(rows).scatter_(1, top, 0.0)
        mask[steps <= t_hist] = 1.0  # members still building their score history
        return mask.reshape(score.shape)


def core_parameter_groups(networks, frozen: float = 0.01, **hyperparameters) -> list[dict]:
    """The paper's parameter groups for stacked atomic networks (one tensor = one group per member).

    Weight decay 0.01 for the standardisation weights α, β (their trainable coordinates
    ``scale``, ``shift``, see :mod:`aiida_lmlp.potential.model.networks`); 0 for the output
    layer; 0.1 otherwise. The plasticity factor freezes ``frozen`` (1 %) of the weights and biases of the
    hidden layers, never those of the output neuron nor α, β.
    """
    groups = []
    for net in networks.networks.values():
        groups.append(
            {"params": [net.scale, net.shift], "weight_decay": 0.01, "frozen": 0.0, "member_axis": 0, **hyperparameters}
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
