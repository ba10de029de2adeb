"""eeACSF and ACSF: counts, hand-worked values, element information, cutoff smoothness."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms

from aiida_lmlp.potential import ACSF, EeACSF
from aiida_lmlp.potential.descriptors.eta_grid import inflection_point
from aiida_lmlp.potential.descriptors.symmetry_functions import bump_cutoff

MAIN_GROUP_10 = ["H", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br"]


@pytest.mark.parametrize("elements", [["C"], ["H", "C", "N", "O"], MAIN_GROUP_10])
def test_table_1_gives_153_functions_for_any_number_of_main_group_elements(elements):
    desc = EeACSF.from_paper(elements)
    assert len(desc) == 153
    assert sum(name.startswith("radial") for name in desc.feature_names) == 45
    assert sum(name.startswith("angular") for name in desc.feature_names) == 108
    assert len(set(desc.feature_names)) == 153


@pytest.mark.parametrize("elements", [["Fe"], ["H", "C", "O", "Cu"], MAIN_GROUP_10[:-1] + ["Zn"]])
def test_d_block_elements_add_d_terms(elements):
    desc = EeACSF.from_paper(elements)
    # 7 radial element terms x 9 eta + 11 angular element terms x 2 eta x 2 lambda x 3 zeta
    assert len(desc) == 7 * 9 + 11 * 12 == 195


@pytest.mark.parametrize(
    "elements, count, max_period",
    [
        (["Cs", "I"], 153, 7),  # beyond xenon: periods up to 7, no new terms
        (["H", "C", "Pt"], 195, 7),  # d block of period 6
        (["H", "O", "La"], 7 * 9 + 11 * 12, 7),  # f and f̄ join like d and d̄
        (["H", "O", "Fe", "U"], 9 * 9 + 13 * 12, 7),  # both
    ],
)
def test_periods_6_and_7_follow_the_papers_recipe(elements, count, max_period):
    desc = EeACSF.from_paper(elements)
    assert len(desc) == count and desc.max_period == max_period
    again = EeACSF(**{k: v for k, v in desc.to_config().items() if k != "kind"})
    assert again.feature_names == desc.feature_names


def test_n_bar_and_the_normalisation_follow_the_largest_period():
    atoms = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]])
    fc = math.exp(1.0 - 1.0 / (1.0 - 1.1**2 / 144.0))
    paper = EeACSF.from_paper(["H", "C"])
    heavy = EeACSF(**{**{k: v for k, v in paper.to_config().items() if k != "kind"}, "max_period": 7})
    name = "radial H=n_bar eta=0"
    # H has n = 1: n̄ = 6 − 1 = 5 of H_max 5 (paper), 8 − 1 = 7 of H_max 7 (periods up to 7)
    assert _value(paper, atoms, name) == pytest.approx(math.sqrt(5 / 5 * fc), rel=1e-12)
    assert _value(heavy, atoms, name) == pytest.approx(math.sqrt(7 / 7 * fc), rel=1e-12)
    assert _value(heavy, atoms, "radial H=n eta=0") == pytest.approx(math.sqrt(1 / 7 * fc), rel=1e-12)


def test_a_model_file_written_before_periods_6_and_7_reads_as_periods_up_to_5():
    from aiida_lmlp.potential.descriptors import descriptor_from_config

    config = EeACSF.from_paper(["H", "C", "Cl"]).to_config()
    config.pop("max_period")
    assert descriptor_from_config(config).max_period == 5
    with pytest.raises(ValueError, match="beyond Xe"):
        EeACSF.from_paper(["H", "C"]).with_elements(["H", "C", "Pt"])


@pytest.mark.parametrize("n_elements", [1, 2, 4, 10])
def test_acsf_count_follows_the_combinatorial_formula(n_elements):
    desc = ACSF.like(EeACSF.from_paper(MAIN_GROUP_10[:n_elements]))
    assert len(desc) == 9 * n_elements + 12 * n_elements * (n_elements + 1) // 2
    assert len(desc) == ACSF.count(n_elements, 9, 12)


def test_paper_break_even_counts():
    # at Table 1 resolution: 153 eeACSFs vs 156 ACSFs at four elements, vs 750 at ten
    assert ACSF.count(4, 9, 12) == 156
    assert ACSF.count(10, 9, 12) == 750


def _c_h_cl():
    # C at the origin, H on x at 1.1 Å, Cl on y at 1.8 Å: angle H-C-Cl is 90°
    return Atoms("CHCl", positions=[[0, 0, 0], [1.1, 0, 0], [0, 1.8, 0]])


def _value(desc, atoms, name, atom=0):
    return desc.compute(atoms)[atom, desc.feature_names.index(name)]


def test_radial_eeacsf_by_hand():
    desc = EeACSF.from_paper(["H", "C", "Cl"])
    fc = lambda r: math.exp(1.0 - 1.0 / (1.0 - r**2 / 144.0))
    eta = 0.044203
    g = lambda r: math.exp(-eta * r * r) * fc(r)
    # H = n: period of H is 1, of Cl is 3; H_max = 5
    expected = math.sqrt((1 * g(1.1) + 3 * g(1.8)) / 5.0)
    assert _value(desc, _c_h_cl(), "radial H=n eta=0.044203") == pytest.approx(expected, rel=1e-12)
    # H = m_bar: 9 - 1 = 8 for H, 9 - 7 = 2 for Cl; H_max = 8
    expected = math.sqrt((8 * g(1.1) + 2 * g(1.8)) / 8.0)
    assert _value(desc, _c_h_cl(), "radial H=m_bar eta=0.044203") == pytest.approx(expected, rel=1e-12)


def test_angular_eeacsf_by_hand():
    desc = EeACSF.from_paper(["H", "C", "Cl"])
    fc = lambda r: math.exp(1.0 - 1.0 / (1.0 - r**2 / 144.0))
    eta, zeta = 0.011238, 2.409421
    radial = math.exp(-eta * (1.1**2 + 1.8**2)) * fc(1.1) * fc(1.8)
    cos = 0.0
    # H = m, gamma = -1: |m_H - m_Cl| + C = |1 - 7| + 1 = 7, H_ang_max = H_max = 8
    expected = math.sqrt(2**-zeta / 8.0 * 7 * (1 + cos) ** zeta * radial)
    name = f"angular H=m gamma=-1 eta={eta:g} lambda=+1 zeta={zeta:g}"
    assert _value(desc, _c_h_cl(), name) == pytest.approx(expected, rel=1e-12)
    # H = m, gamma = +1: m_H + m_Cl = 8, H_ang_max = 2 H_max = 16
    expected = math.sqrt(2**-zeta / 16.0 * 8 * (1 + cos) ** zeta * radial)
    name = f"angular H=m gamma=+1 eta={eta:g} lambda=+1 zeta={zeta:g}"
    assert _value(desc, _c_h_cl(), name) == pytest.approx(expected, rel=1e-12)
    # lambda = -1 at 120°: (1 - cos)^zeta with cos = -1/2
    atoms = Atoms("CHCl", positions=[[0, 0, 0], [1.1, 0, 0], [-0.9, 1.8 * math.sin(math.radians(120)), 0]])
    r_cl = math.hypot(-0.9, 1.8 * math.sin(math.radians(120)))
    cos = -0.9 / r_cl
    radial = math.exp(-eta * (1.1**2 + r_cl**2)) * fc(1.1) * fc(r_cl)
    expected = math.sqrt(2**-zeta / 1.0 * 1.0 * (1 - cos) ** zeta * radial)  # H = 1: (1 + 1)/2
    name = f"angular H=1 gamma=+1 eta={eta:g} lambda=-1 zeta={zeta:g}"
    assert _value(desc, atoms, name) == pytest.approx(expected, rel=1e-12)


def test_gamma_minus_one_functions_carry_element_information():
    """Literal Eq. 7 (no absolute value, ordered pairs) would make γ = −1 element-blind."""
    desc = EeACSF.from_paper(["H", "C", "F", "Cl"])
    chcl = _c_h_cl()
    chf = chcl.copy()
    chf.symbols[2] = "F"
    g_cl, g_f = desc.compute(chcl)[0], desc.compute(chf)[0]
    names = desc.feature_names
    blind = [i for i, n in enumerate(names) if n.startswith("angular H=1 ")]
    # F and Cl share the group (m, m_bar) but not the period (n, n_bar)
    minus = [i for i, n in enumerate(names) if "gamma=-1" in n and ("H=n " in n or "H=n_bar " in n)]
    np.testing.assert_allclose(g_cl[blind], g_f[blind], rtol=1e-12)  # same geometry, element-blind
    assert np.all(np.abs(g_cl[minus] - g_f[minus]) > 1e-3 * np.abs(g_cl[minus]))
    # and a γ = −1 function is not a fixed multiple of the element-blind one
    i_blind = names.index("angular H=1 gamma=+1 eta=0.011238 lambda=+1 zeta=1")
    i_n = names.index("angular H=n gamma=-1 eta=0.011238 lambda=+1 zeta=1")
    # n: H=1, Cl=3 -> (|1-3|+1)/5 = 3/5;  F=2 -> (|1-2|+1)/5 = 2/5 ; blind term (1+1)/2 = 1
    assert (g_cl[i_n] / g_cl[i_blind]) ** 2 == pytest.approx(3 / 5, rel=1e-12)
    assert (g_f[i_n] / g_f[i_blind]) ** 2 == pytest.approx(2 / 5, rel=1e-12)


def test_each_neighbour_pair_counted_once():
    # one pair {j, k}: with H = 1, gamma = +1 the element term is (1 + 1)/(2*1) = 1
    desc = EeACSF.from_paper(["H", "O"])
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    r1, r2 = 0.96, math.hypot(0.24, 0.93)
    cos = -0.24 * 0.96 / (r1 * r2)
    fc = lambda r: math.exp(1.0 - 1.0 / (1.0 - r**2 / 144.0))
    eta, zeta = 0.090144, 9.996864
    expected = math.sqrt(2**-zeta * (1 + cos) ** zeta * math.exp(-eta * (r1**2 + r2**2)) * fc(r1) * fc(r2))
    assert _value(desc, water, f"angular H=1 gamma=+1 eta={eta:g} lambda=+1 zeta={zeta:g}") == pytest.approx(
        expected, rel=1e-12
    )


def test_bump_cutoff_and_its_derivatives_vanish_at_the_cutoff():
    rc = 6.0
    r = torch.tensor([rc * (1 - 1e-3), rc, rc + 1.0], dtype=torch.float64, requires_grad=True)
    value = bump_cutoff(r, rc)
    (d1,) = torch.autograd.grad(value.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert value[0] < 1e-70 and value[1] == 0 and value[2] == 0
    assert abs(d1[0]) < 1e-60 and abs(d2[0]) < 1e-50
    assert torch.isfinite(d1).all() and torch.isfinite(d2).all()
    assert bump_cutoff(torch.tensor([0.0], dtype=torch.float64), rc).item() == pytest.approx(1.0)


def test_descriptor_is_continuous_across_the_cutoff():
    desc = EeACSF.from_paper(["H"], cutoff=4.0)
    inside = desc.compute(Atoms("H2", positions=[[0, 0, 0], [4.0 - 1e-6, 0, 0]]))
    outside = desc.compute(Atoms("H2", positions=[[0, 0, 0], [4.0 + 1e-6, 0, 0]]))
    assert np.abs(inside - outside).max() < 1e-30**0.5
    assert np.all(outside == 0)


def test_eta_grid_for_another_cutoff_follows_the_tutorial_recipe():
    desc = EeACSF.from_paper(["H", "O"], cutoff=6.0)
    assert len(desc) == 153 and desc.cutoff == 6.0
    assert desc.radial_eta[0] == 0.0
    points = [inflection_point(eta, 6.0) for eta in desc.radial_eta]
    assert points[-1] == pytest.approx(inflection_point(1.115414, 12.0), abs=1e-6)  # innermost kept at R_min
    steps = np.diff(points)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)  # equidistant inflection points
    assert all(0 < p < 6.0 for p in points)
    # at 12 Å the paper's Table 1 is returned unchanged
    assert EeACSF.from_paper(["H"]).radial_eta[1] == 0.010702
    assert inflection_point(EeACSF.from_paper(["H"]).angular_eta[0], 12.0) == pytest.approx(6.0, abs=1e-3)


def test_acsf_angular_by_hand():
    desc = ACSF(["H", "C", "Cl"], 6.0, [0.5], [0.1], [1.0], [2.0])
    atoms = _c_h_cl()
    fc = lambda r: 0.5 * (math.cos(math.pi * r / 6.0) + 1)
    r_jk = math.hypot(1.1, 1.8)
    expected = (
        2 * 2 ** (1 - 2) * (1 + 0) ** 2 * math.exp(-0.1 * (1.1**2 + 1.8**2 + r_jk**2)) * fc(1.1) * fc(1.8) * fc(r_jk)
    )
    assert _value(desc, atoms, "angular H-Cl eta=0.1 lambda=+1 zeta=2") == pytest.approx(expected, rel=1e-12)
    assert _value(desc, atoms, "angular H-H eta=0.1 lambda=+1 zeta=2") == 0.0
    assert _value(desc, atoms, "radial Cl eta=0.5") == pytest.approx(math.exp(-0.5 * 1.8**2) * fc(1.8), rel=1e-12)
