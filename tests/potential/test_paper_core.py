"""CoRe (Eqs. 13–20): the paper's equations by hand, the core-optimizer package, our member-aware form."""

import math

import core_optimizer
import pytest
import torch

from aiida_lmlp.potential import Ensemble
from aiida_lmlp.potential.training.paper_core import PaperCoRe, core_parameter_groups

HYPER = {
    "lr": 0.01,
    "step_sizes": (1e-6, 1.0),
    "etas": (0.5, 1.2),
    "betas": (0.45, 0.725, 3.0, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.1,
    "score_history": 2,
    "frozen": 0.5,
}
# four weights, five steps of prescribed gradients (sign changes included)
W0 = [0.3, -0.2, 0.05, 0.8]
GRADS = [
    [0.5, -1.0, 0.2, 0.1],
    [0.4, 0.5, 0.3, -0.2],
    [-0.1, 0.6, 0.25, -0.3],
    [0.2, 0.7, -0.4, 0.05],
    [0.3, -0.2, 0.1, 0.6],
]


def _by_hand():
    """Eqs. 13–20 written out scalar by scalar."""
    s0 = HYPER["lr"]
    s_min, s_max = HYPER["step_sizes"]
    eta_m, eta_p = HYPER["etas"]
    b1a, b1b, b1c, b2 = HYPER["betas"]
    d, t_hist, eps = HYPER["weight_decay"], HYPER["score_history"], HYPER["eps"]
    n_frozen = int(HYPER["frozen"] * len(W0))
    w = list(W0)
    g, h, s, score = [0.0] * 4, [0.0] * 4, [s0] * 4, [0.0] * 4
    for tau, grads in enumerate(GRADS, start=1):
        beta1 = b1b + (b1a - b1b) * math.exp(-(((tau - 1) / b1c) ** 2))  # Eq. 15
        ranked = sorted(range(4), key=lambda i: -score[i])[:n_frozen]
        for i in range(4):
            g_prev = g[i]
            g[i] = beta1 * g[i] + (1 - beta1) * grads[i]  # Eq. 13
            h[i] = b2 * h[i] + (1 - b2) * grads[i] ** 2  # Eq. 14
            u = (g[i] / (1 - beta1**tau)) / (math.sqrt(h[i] / (1 - b2**tau)) + eps)  # Eq. 16
            p = 0.0 if (tau > t_hist and i in ranked) else 1.0  # Eq. 17
            product = g_prev * g[i] * p
            if product > 0:  # Eq. 18
                s[i] = min(eta_p * s[i], s_max)
            elif product < 0:
                s[i] = max(eta_m * s[i], s_min)
            w[i] = (1 - d * abs(u) * p * s[i]) * w[i] - u * p * s[i]  # Eq. 19
            if tau <= t_hist:  # Eq. 20
                score[i] = score[i] + g[i] * u * p * s[i] / t_hist
            else:
                score[i] = (1 - 1 / t_hist) * score[i] + g[i] * u * p * s[i] / t_hist
    return w


def _run(optimizer_factory, shape=(4,)):
    weight = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64).reshape(shape))
    optimizer = optimizer_factory([weight])
    for grads in GRADS:
        weight.grad = torch.tensor(grads, dtype=torch.float64).reshape(shape)
        optimizer.step()
    return weight.detach().reshape(-1).tolist()


def test_paper_form_equals_equations_13_to_20_by_hand():
    expected = _by_hand()
    ours = _run(lambda p: PaperCoRe(p, **HYPER))
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # the plasticity factor did freeze weights: without it the result differs
    unfrozen = _run(lambda p: PaperCoRe(p, **{**HYPER, "frozen": 0.0}))
    assert max(abs(a - b) for a, b in zip(unfrozen, expected)) > 1e-4


def test_core_optimizer_package_follows_the_equations():
    hyper = {k: v for k, v in HYPER.items()}
    package = _run(lambda p: core_optimizer.CoRe(p, foreach=False, **hyper))
    assert package == pytest.approx(_by_hand(), rel=1e-12, abs=1e-15)


def test_package_ranks_across_stacked_members_and_the_paper_form_per_member():
    # two members stacked in one (2, 2) tensor; each member must freeze its own top weight
    def alone(row):
        weight = torch.nn.Parameter(torch.tensor([W0[2 * row], W0[2 * row + 1]], dtype=torch.float64))
        optimizer = PaperCoRe([weight], **HYPER)
        for grads in GRADS:
            weight.grad = torch.tensor([grads[2 * row], grads[2 * row + 1]], dtype=torch.float64)
            optimizer.step()
        return weight.detach().tolist()

    separate = alone(0) + alone(1)
    stacked = _run(lambda p: PaperCoRe(p, **HYPER, member_axis=0), shape=(2, 2))
    assert stacked == pytest.approx(separate, rel=1e-12)
    package = _run(lambda p: core_optimizer.CoRe(p, foreach=False, **HYPER), shape=(2, 2))
    assert max(abs(a - b) for a, b in zip(package, separate)) > 1e-6  # one ranking for both members


def _package_groups(groups):
    """The package has no member_axis and wants per-group values as lists."""
    return [
        {
            **{k: v for k, v in g.items() if k != "member_axis"},
            "weight_decay": [g["weight_decay"]],
            "frozen": [g["frozen"]],
        }
        for g in groups
    ]


def test_package_and_paper_form_agree_without_freezing_on_a_network():
    results = []
    for factory in (
        lambda groups: PaperCoRe(groups, lr=1e-3, score_history=0),
        lambda groups: core_optimizer.CoRe(
            _package_groups(groups),
            lr=1e-3,
            step_sizes=(1e-6, 1.0),
            etas=(0.5, 1.2),
            betas=(0.45, 0.725, 500.0, 0.999),
            foreach=False,
        ),
    ):
        model = Ensemble.new(["H", "O"], members=2, hidden=(6,), seed=1)
        optimizer = factory(core_parameter_groups(model.networks, frozen=0.0))
        generator = torch.Generator().manual_seed(3)
        x = torch.randn(5, len(model.descriptor), dtype=torch.float64, generator=generator)
        species = torch.tensor([0, 1, 0, 0, 1])
        for _ in range(20):
            optimizer.zero_grad()
            (model.networks(x, species) ** 2).sum().backward()
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in model.networks.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_parameter_groups_follow_the_paper():
    model = Ensemble.new(["H", "O"], members=3, hidden=(8, 4), seed=0)
    groups = core_parameter_groups(model.networks)
    by_tensor = {id(p): g for g in groups for p in g["params"]}
    net = model.networks.networks["H"]
    assert by_tensor[id(net.scale)]["weight_decay"] == 0.01 and by_tensor[id(net.scale)]["frozen"] == 0.0
    assert by_tensor[id(net.weights[0])]["weight_decay"] == 0.1 and by_tensor[id(net.weights[0])]["frozen"] == 0.01
    assert by_tensor[id(net.weights[-1])]["weight_decay"] == 0.0 and by_tensor[id(net.weights[-1])]["frozen"] == 0.0
    assert all(g["member_axis"] == 0 for g in groups)
    assert len(by_tensor) == len(list(model.networks.parameters()))
    PaperCoRe(groups)  # accepted as they are


def test_bad_hyperparameters_are_named():
    weight = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="etas"):
        PaperCoRe([weight], etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="unknown CoRe hyperparameter"):
        PaperCoRe([weight], learning_rate=1.0)


def test_a_member_without_a_gradient_keeps_its_weights_and_state_bit_for_bit():
    """A stacked member whose gradient slice is exactly zero takes no step; the other one steps as if alone."""
    start = torch.tensor([[0.3, -0.2, 0.05], [0.8, -0.4, 0.1]], dtype=torch.float64)
    weight = torch.nn.Parameter(start.clone())
    optimizer = PaperCoRe([weight], **HYPER, member_axis=0)
    alone = torch.nn.Parameter(start[:1].clone())
    reference = PaperCoRe([alone], **HYPER, member_axis=0)
    frozen_state = None
    for k, grads in enumerate(GRADS):
        grad = torch.tensor([grads[:3], grads[1:]], dtype=torch.float64)
        if k >= 2:  # from the third step on, member 1 is not involved
            grad[1] = 0.0
            frozen_state = frozen_state or {
                key: value[1].clone() for key, value in optimizer.state[weight].items() if key != "step"
            } | {"weight": weight.detach()[1].clone()}
        weight.grad = grad
        optimizer.step()
        alone.grad = grad[:1].clone()
        reference.step()
    state = optimizer.state[weight]
    assert state["step"].tolist() == [5.0, 2.0]
    for key in ("g", "h", "s", "S"):
        assert torch.equal(state[key][1], frozen_state[key]), key
    assert torch.equal(weight.detach()[1], frozen_state["weight"])
    torch.testing.assert_close(weight.detach()[:1], alone.detach(), rtol=0, atol=0)
