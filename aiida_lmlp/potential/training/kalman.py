"""The extended Kalman filter (EKF) for stacked ensemble members (Tokita & Behler, Box 5, Eqs. 14–18).

Every ensemble member is its own filter: its own covariance blocks ``P``, its own forgetting
factor ``λ`` and its own update counter; the members are only stacked along a leading axis
``M`` so that one batched matrix product serves all of them. With observation vector ``ŷ(w)``
(``k`` entries), reference ``y``, error ``ξ = y − ŷ`` and Jacobian ``J = ∂ŷ/∂w`` (``n × k``),
one update of a member is::

    A_k = [λ_{k−1} I + J_kᵀ P_{k−1} J_k]⁻¹                      (the bracket of Eq. 15)
    K_k = P_{k−1} J_k A_k                                         (Eq. 15)
    w_k = w_{k−1} + K_k ξ_k                                       (Eq. 16)
    λ_k = λ_{k−1} λ0 + 1 − λ0                                     (Eq. 18)
    P_k = λ_k⁻¹ [I − K_k J_kᵀ] P_{k−1}  (+ q I, Shao et al.'s process noise Q, 0 by default)   (Eq. 17)

so ``λ_k = 1 − (1 − λ(0)) λ0^k`` (:func:`forgetting_factor`). Eq. 17 is used as printed, with
the new ``λ_k`` (RLS texts and n2p2 divide by ``λ_{k−1}``; the two agree when ``λ ≡ 1``).

**Decoupling.** ``P`` is block diagonal: the weights of different blocks are taken as
uncorrelated. The gain uses the full scaling matrix ``A = [λ I + Σ_b J_bᵀ P_b J_b]⁻¹`` and
every block is updated with its own ``K_b = P_b J_b A`` and ``P_b ← λ⁻¹ (P_b − K_b J_bᵀ P_b)``,
i.e. Eqs. 15–17 for the whole weight vector with the off-diagonal blocks of ``P`` dropped
(the decoupled EKF of Puskorius & Feldkamp). Blocks (:func:`kalman_parameter_blocks`):
``element`` (one per element network: α, β, all weights and biases), ``layer`` (α and β, then
each layer's weights and bias) or ``global`` (one block for all networks of a member).

A block whose Jacobian is exactly zero for a member (its element does not occur in the
observed conformation) is left as it is for that member: no gain, no forgetting. Otherwise
the forgetting factor would inflate the covariance of an element absent for ``n`` updates by
``Π λ⁻¹``, up to ``exp((1 − λ(0)) / (1 − λ0))`` ≈ 5·10⁶ with the defaults (covariance wind-up).
Directions inside an observed block that the data never excite are inflated in the same way,
as in any forgetting-factor filter; with few updates per epoch (small data) a faster schedule
(smaller ``λ0``) or ``λ(0) = 1`` keeps ``P`` bounded.

Memory: ``n_b²`` numbers per block and member (:func:`covariance_bytes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ...formats.training_config import DECOUPLINGS  # the decoupling choices, torch-free for the config checks

__all__ = [
    "DECOUPLINGS",
    "EKF_DEFAULTS",
    "ExtendedKalmanFilter",
    "covariance_bytes",
    "forgetting_factor",
    "kalman_parameter_blocks",
    "validate_ekf_settings",
]

#: Filter settings: P(0) = p0·I, λ(0), λ0 of Eq. 18 and the process noise q (RuNNer's defaults).
EKF_DEFAULTS = {"p0": 1.0, "lambda_start": 0.98, "lambda_0": 0.9987, "process_noise": 0.0}


def forgetting_factor(lambda_start: float, lambda_0: float, updates: int) -> float:
    """``λ`` after ``updates`` updates of Eq. 18 from ``λ(0) = lambda_start``: ``1 − (1 − λ(0)) λ0^k``."""
    return 1.0 - (1.0 - lambda_start) * lambda_0**updates


def kalman_parameter_blocks(networks: torch.nn.Module, decoupling: str = "element") -> dict[str, list[torch.Tensor]]:
    """The covariance blocks of stacked atomic networks, ``name -> parameters`` (each ``(M, ...)``).

    ``element``: one block per element network (α, β, weights and biases of every layer);
    ``layer``: ``"<element>.std"`` (α, β) and ``"<element>.<k>"`` (weights and bias of layer k);
    ``global``: one block ``"all"`` with every parameter.
    """
    if decoupling not in DECOUPLINGS:
        raise ValueError(f"decoupling must be one of {', '.join(DECOUPLINGS)}, got {decoupling!r}")
    blocks: dict[str, list[torch.Tensor]] = {}
    for element, net in networks.networks.items():
        layers = [[w, b] for w, b in zip(net.weights, net.biases)]
        if decoupling == "layer":
            blocks[f"{element}.std"] = [net.scale, net.shift]
            for k, layer in enumerate(layers):
                blocks[f"{element}.{k}"] = layer
        else:
            params = [net.scale, net.shift] + [p for layer in layers for p in layer]
            if decoupling == "element":
                blocks[element] = params
            else:
                blocks.setdefault("all", []).extend(params)
    return blocks


def covariance_bytes(blocks: Mapping[str, Sequence[torch.Tensor]], members: int | None = None) -> int:
    """Bytes of all covariance blocks: ``Σ_b n_b² · members · itemsize``."""
    total = 0
    for params in blocks.values():
        n = sum(p[0].numel() for p in params)
        m = params[0].shape[0] if members is None else members
        total += n * n * m * params[0].element_size()
    return total


class ExtendedKalmanFilter:
    """Eqs. 15–18 for ``M`` stacked, independent members with block-diagonal covariance.

    ``blocks`` maps a block name to its parameters; every parameter stacks the members along
    axis 0. The parameters are updated in place by :meth:`observe` / :meth:`update`.
    """

    def __init__(
        self,
        blocks: Mapping[str, Sequence[torch.Tensor]],
        *,
        p0: float = EKF_DEFAULTS["p0"],
        lambda_start: float = EKF_DEFAULTS["lambda_start"],
        lambda_0: float = EKF_DEFAULTS["lambda_0"],
        process_noise: float = EKF_DEFAULTS["process_noise"],
    ):
        validate_ekf_settings(
            {"p0": p0, "lambda_start": lambda_start, "lambda_0": lambda_0, "process_noise": process_noise}
        )
        if not blocks:
            raise ValueError("the Kalman filter needs at least one parameter block")
        self.blocks = {name: list(params) for name, params in blocks.items()}
        first = next(iter(self.blocks.values()))[0]
        self.members = int(first.shape[0])
        for name, params in self.blocks.items():
            if any(p.shape[0] != self.members for p in params):
                raise ValueError(f"block {name!r}: every parameter must stack {self.members} members along axis 0")
        self.p0 = float(p0)
        self.lambda_start = float(lambda_start)
        self.lambda_0 = float(lambda_0)
        self.process_noise = float(process_noise)
        self.dtype, self.device = first.dtype, first.device
        self.sizes = {name: sum(p[0].numel() for p in params) for name, params in self.blocks.items()}
        self.covariance = {name: self._fresh(n) for name, n in self.sizes.items()}
        self.forgetting = torch.full((self.members,), self.lambda_start, dtype=self.dtype, device=self.device)
        self.steps = torch.zeros(self.members, dtype=torch.int64, device=self.device)

    def _fresh(self, n: int) -> torch.Tensor:
        eye = torch.eye(n, dtype=self.dtype, device=self.device)
        return (self.p0 * eye).expand(self.members, n, n).clone()

    @property
    def parameters(self) -> list[torch.Tensor]:
        """All parameters, block by block."""
        return [p for params in self.blocks.values() for p in params]

    # -- one update ---------------------------------------------------------------------------

    def jacobians(self, predictions: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``J_b = ∂ŷ/∂w_b`` per block, ``(M, n_b, k)``, of predictions ``(M, k)`` (differentiable in the weights).

        Members never mix: member m's prediction depends on its own weight slices only, so the
        gradient of the sum over members gives every member its own Jacobian. Masked entries
        get a zero column.
        """
        params = self.parameters
        k = predictions.shape[1]
        weight = None if mask is None else mask.to(predictions.dtype)
        columns: list[list[torch.Tensor]] = []
        for i in range(k):
            column = predictions[:, i] if weight is None else predictions[:, i] * weight[:, i]
            grads = torch.autograd.grad(column.sum(), params, retain_graph=i < k - 1, allow_unused=True)
            columns.append(
                [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]  # unused: zero
            )
        result, start = {}, 0
        for name, block in self.blocks.items():
            parts = []
            for i in range(k):
                flat = [g.reshape(self.members, -1) for g in columns[i][start : start + len(block)]]
                parts.append(torch.cat(flat, dim=1))
            result[name] = torch.stack(parts, dim=2).detach()
            start += len(block)
        return result

    def observe(
        self, predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One update from predictions ``(M, k)`` (differentiable in the weights) and references ``(M, k)``.

        ``mask`` ``(M, k)`` marks the observed entries (a member with none takes no update).
        Returns the errors ``ξ = y − ŷ`` before the update (zero where masked).
        """
        if mask is None:
            mask = torch.ones_like(predictions, dtype=torch.bool)
        mask = mask.to(torch.bool)
        jacobians = self.jacobians(predictions, mask)
        errors = torch.where(mask, targets.detach() - predictions.detach(), torch.zeros_like(targets))
        self.update(errors, jacobians, mask.any(1))
        return errors

    @torch.no_grad()
    def update(
        self, errors: torch.Tensor, jacobians: Mapping[str, torch.Tensor], active: torch.Tensor | None = None
    ) -> None:
        """Eqs. 15–18 for every ``active`` member: errors ``ξ`` ``(M, k)``, Jacobians ``(M, n_b, k)`` per block.

        With the Cholesky factor ``C Cᵀ = λ I + Jᵀ P J`` (the bracket of Eq. 15) and
        ``Y = P J C⁻ᵀ``: ``K ξ = Y C⁻¹ ξ`` and ``K Jᵀ P = Y Yᵀ``. ``P`` is updated in place by
        ``k`` symmetric rank-one subtractions ``P −= y_l y_lᵀ`` and one division by ``λ_k``, so it
        stays symmetric without symmetrisation (each product ``y_i y_j`` is computed alike for
        both triangles).
        """
        members, k = errors.shape
        if active is None:
            active = torch.ones(members, dtype=torch.bool, device=errors.device)
        errors = torch.where(active[:, None], errors, torch.zeros_like(errors))
        lam = self.forgetting
        projected = {}
        innovation = lam[:, None, None] * torch.eye(k, dtype=self.dtype, device=self.device)  # λ_{k−1} I
        for name, jac in jacobians.items():
            observed = active & jac.flatten(1).ne(0).any(1)
            if not bool(observed.any()):
                continue  # the block sees nothing in this update: no gain, no forgetting
            jac = torch.where(observed[:, None, None], jac, torch.zeros_like(jac))
            x = torch.bmm(self.covariance[name], jac)  # P J, (M, n_b, k); zero for unobserved members
            projected[name] = (observed, x)
            innovation = innovation + torch.bmm(jac.transpose(1, 2), x)  # + Jᵀ P J
        factor, info = torch.linalg.cholesky_ex(innovation)  # C
        if bool((info != 0).any()):
            bad = torch.nonzero(info).flatten().tolist()
            raise FloatingPointError(
                f"Kalman filter: λ I + Jᵀ P J is not positive definite for member(s) {bad} "
                "(covariance lost positive definiteness, or non-finite predictions)"
            )
        scaled_errors = torch.linalg.solve_triangular(factor, errors[:, :, None], upper=False)  # C⁻¹ ξ
        # Eq. 18, λ λ0 + 1 − λ0 written as 1 − (1 − λ) λ0: exactly 1 stays 1 (no rounding drift)
        new_lam = torch.where(active, 1.0 - (1.0 - lam) * self.lambda_0, lam)
        for name, (observed, x) in projected.items():
            y_t = torch.linalg.solve_triangular(factor, x.transpose(1, 2), upper=False)  # Yᵀ = C⁻¹ (P J)ᵀ
            y = y_t.transpose(1, 2)
            self._apply(name, torch.bmm(y, scaled_errors).squeeze(2))  # w += K ξ, Eq. 16 (0 if unobserved)
            covariance = self.covariance[name]
            for column in range(k):  # P − K Jᵀ P = P − Y Yᵀ (Y = 0 for unobserved members)
                covariance.baddbmm_(y[:, :, column : column + 1], y_t[:, column : column + 1, :], alpha=-1.0)
            divisor = torch.where(observed, new_lam, torch.ones_like(new_lam))
            covariance.div_(divisor[:, None, None])  # Eq. 17
            if self.process_noise:
                covariance.diagonal(dim1=1, dim2=2).add_(self.process_noise * observed.to(self.dtype)[:, None])
        self.forgetting = new_lam
        self.steps = self.steps + active.to(self.steps.dtype)

    def _apply(self, name: str, step: torch.Tensor) -> None:
        start = 0
        for param in self.blocks[name]:
            n = param[0].numel()
            param.add_(step[:, start : start + n].reshape(param.shape).to(param.dtype))
            start += n

    # -- state --------------------------------------------------------------------------------

    def state_dict(self, prefix: str = "ekf.") -> dict[str, torch.Tensor]:
        """``P`` per block (``<prefix>P.<block>``), ``λ`` and the update counter per member.

        The covariance tensors are returned without copying (they can be large) and change with
        the next update.
        """
        state = {f"{prefix}P.{name}": p for name, p in self.covariance.items()}
        state[f"{prefix}lambda"] = self.forgetting
        state[f"{prefix}steps"] = self.steps
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor], prefix: str = "ekf.") -> list[str]:
        """Restore what :meth:`state_dict` wrote; returns the blocks that start afresh (absent or resized)."""
        fresh = []
        for name, n in self.sizes.items():
            saved = state.get(f"{prefix}P.{name}")
            if saved is None or tuple(saved.shape) != (self.members, n, n):
                fresh.append(name)
                continue
            self.covariance[name] = saved.to(device=self.device, dtype=self.dtype).clone()
        if f"{prefix}lambda" in state:
            self.forgetting = state[f"{prefix}lambda"].to(device=self.device, dtype=self.dtype).clone()
            self.steps = state[f"{prefix}steps"].to(device=self.device, dtype=torch.int64).clone()
        return fresh

    def covariance_bytes(self) -> int:
        """Bytes held by the covariance blocks of all members."""
        return sum(p.numel() * p.element_size() for p in self.covariance.values())


def validate_ekf_settings(settings: Mapping) -> None:
    """Range checks of the filter settings; raises ``ValueError`` naming the bad ones."""
    checks = {
        "p0": lambda v: v > 0,
        "lambda_start": lambda v: 0 < v <= 1,
        "lambda_0": lambda v: 0 < v <= 1,
        "process_noise": lambda v: v >= 0,
    }
    bad = []
    for key, ok in checks.items():
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            bad.append(f"{key}={value!r}")
    if bad:
        raise ValueError(f"invalid Kalman filter setting(s): {', '.join(bad)}")
