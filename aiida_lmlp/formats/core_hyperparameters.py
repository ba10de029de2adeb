"""CoRe's hyperparameters (Eckhoff & Reiher 2023, section 3) and their checks, without torch.

Kept apart from the optimiser (``paper_core``) so that the daemon can check a training job's
parameters without importing torch.
"""

from __future__ import annotations

__all__ = ["CORE_DEFAULTS", "validate_core_hyperparameters"]

#: Hyperparameters of section 3 of the paper (β1b = 0.725 of the two values used there).
CORE_DEFAULTS = {
    "lr": 1e-3,  # s0
    "step_sizes": (1e-6, 1.0),  # s_min, s_max
    "etas": (0.5, 1.2),  # η−, η+
    "betas": (0.45, 0.725, 500.0, 0.999),  # β1a, β1b, β1c, β2
    "eps": 1e-8,
    "weight_decay": 0.1,
    "score_history": 500,  # t_hist
    "frozen": 0.01,  # fraction of each group (per member) frozen by the plasticity factor
    "member_axis": None,  # 0 when the tensor stacks ensemble members along its first axis
}


def validate_core_hyperparameters(group: dict) -> None:
    """Raise ``ValueError`` naming every CoRe hyperparameter of ``group`` outside its allowed range."""
    s_min, s_max = group["step_sizes"]
    eta_minus, eta_plus = group["etas"]
    beta_1a, beta_1b, beta_1c, beta_2 = group["betas"]
    checks = {
        "lr": group["lr"] > 0,
        "step_sizes": 0 < s_min <= s_max,
        "etas": 0 < eta_minus <= 1 <= eta_plus,
        "betas": 0 <= beta_1a < 1 and 0 <= beta_1b < 1 and beta_1c > 0 and 0 <= beta_2 < 1,
        "eps": group["eps"] >= 0,
        "weight_decay": 0 <= group["weight_decay"] < 1 / s_max if s_max > 0 else False,
        "score_history": group["score_history"] >= 0,
        "frozen": 0 <= group["frozen"] <= 1,
        "member_axis": group["member_axis"] in (None, 0),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid CoRe hyperparameter(s): {', '.join(f'{k}={group[k]!r}' for k in bad)}")
