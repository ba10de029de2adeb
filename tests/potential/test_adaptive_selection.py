"""Algorithms 1 and 2 (lifelong adaptive data selection) driven branch by branch by hand."""

import math

import numpy as np
import pytest

from aiida_lmlp.potential.training.adaptive_selection import AdaptiveSelection, SelectionSettings

SETTINGS = SelectionSettings()
T1, T2, T3, TX = SETTINGS.thresholds
F_MM, F_M, F_P, F_PP = SETTINGS.factors


def _selection(n=4):
    return AdaptiveSelection([f"c{k}" for k in range(n)])


def test_defaults_follow_the_paper():
    assert (T1, T2, T3, TX) == pytest.approx((0.81, 1.44, 4.0, 56.25))
    assert F_MM == pytest.approx(0.1 ** (1 / 30)) and F_M == pytest.approx(0.1 ** (1 / 100))
    assert F_P == pytest.approx(100 ** (1 / 500)) and F_PP == pytest.approx(100 ** (1 / 150))
    assert SETTINGS.p_step == pytest.approx((2 / 3) / 20)
    with pytest.raises(ValueError, match="sqrt_t1"):
        SelectionSettings(sqrt_t1=1.5)


def test_first_epoch_is_uniform():
    sel = _selection(10)
    np.testing.assert_allclose(sel.bad_probabilities(), 0.1)
    np.testing.assert_allclose(sel.good_probabilities(np.zeros(10, dtype=bool)), 0.1)
    assert sel.p_good == 0.0 and sel.l_old_total == math.inf
    chosen = sel.choose(4, np.random.default_rng(0))
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4


def test_probabilities_by_hand():
    sel = _selection(4)
    sel.l_old = np.array([1.0, 2.0, 4.0, np.nan])
    sel.s_hist = np.array([1.0, 0.5, 2.0, 1.0])
    # P_bad = S L / L_max, NaN -> max(S) = 2
    np.testing.assert_allclose(sel.bad_probabilities(), np.array([0.25, 0.25, 2.0, 2.0]) / 4.5)
    # P_good = S (1 - L/L_max) = 0.75, 0.25; L = L_max and NaN -> P_min = min(0.25, 1) * eps'
    p_min = 0.25 * 1e-6
    expected = np.array([0.75, 0.25, p_min, p_min])
    np.testing.assert_allclose(sel.good_probabilities(np.zeros(4, dtype=bool)), expected / expected.sum())
    fitted = np.array([True, False, False, False])
    expected = np.array([0.0, 0.25, 0.25e-6, 0.25e-6])
    np.testing.assert_allclose(sel.good_probabilities(fitted), expected / expected.sum())


def test_split_into_good_and_bad_and_excluded_never_chosen():
    sel = _selection(6)
    sel.s_hist[5] = 0.0
    sel.l_old = np.array([1.0, 1.0, 1.0, 5.0, 5.0, 5.0])
    sel.p_good = 0.5
    rng = np.random.default_rng(1)
    for _ in range(50):
        chosen = sel.choose(8, rng)  # capped at the 5 active conformations
        assert len(chosen) == 5 and 5 not in chosen.tolist() and len(set(chosen.tolist())) == 5
    # fractions: n_fit 10 of 20 (as a fraction of the stream) -> 5 good, 5 bad
    sel = _selection(20)
    sel.p_good = 0.5
    assert len(sel.choose(0.5, rng)) == 10


def test_bad_data_are_chosen_in_proportion_to_their_loss():
    sel = _selection(3)
    sel.l_old = np.array([1.0, 3.0, 6.0])
    rng = np.random.default_rng(2)
    counts = np.bincount(np.concatenate([sel.choose(1, rng) for _ in range(6000)]), minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.3, 0.6], atol=0.02)


def _update(s, l_old, l_new, rel, strikes=0):
    sel = _selection(1)
    sel.s_hist[:] = s
    sel.l_old[:] = l_old
    sel.strikes[:] = strikes
    sel.update(np.array([0]), np.array([l_new]), l_new / rel)
    return sel


@pytest.mark.parametrize(
    "s, l_old, l_new, rel, expected",
    [
        (0.5, 1.0, 2.0, 1.0, 1.0),  # T1 <= rel <= T2: reset to 1
        (3.0, 1.0, 2.0, 1.2, 1.0),  # rel <= T2 and S > 1: back to 1
        (0.5, 2.0, 1.0, 0.5, 0.5 * F_MM),  # well represented, loss not increased: F--
        (0.5, 1.0, 2.0, 0.5, 0.5 * F_M),  # well represented, loss increased: F-
        (0.5, np.nan, 2.0, 0.5, 0.5),  # first evaluation: no history, no factor
        (1.0, 1.0, 2.0, 2.0, F_P),  # T2 < rel <= T3, loss increased: F+
        (0.5, 1.0, 2.0, 3.0, F_P),  # ... after S was raised to 1 (rel >= T1)
        (2.0, 1.0, 2.0, 5.0, 2.0 * F_PP),  # rel > T3, loss increased: F++
        (2.0, 3.0, 2.0, 5.0, 2.0),  # rel > T3 but loss decreased: unchanged
        (0.105, 2.0, 1.0, 0.5, 0.0),  # falls below S_min: excluded as redundant
        (99.0, 1.0, 2.0, 5.0, 0.0),  # rises above S_max: excluded as inconsistent
    ],
)
def test_algorithm_2_branches(s, l_old, l_new, rel, expected):
    assert _update(s, l_old, l_new, rel).s_hist[0] == pytest.approx(expected, rel=1e-12)


def test_outliers_are_excluded_after_n_x_consecutive_strikes():
    sel = _update(1.0, 1.0, 1.0, 60.0, strikes=3)
    assert sel.strikes[0] == 4 and sel.s_hist[0] > 0
    sel = _update(1.0, 1.0, 1.0, 60.0, strikes=4)
    assert sel.strikes[0] == 5 and sel.s_hist[0] == 0.0
    assert _update(1.0, 1.0, 1.0, 10.0, strikes=4).strikes[0] == 0  # not an outlier: counter reset


def test_p_good_follows_the_total_loss_and_is_clipped():
    sel = _selection(2)
    fitted = np.array([0, 1])
    sel.update(fitted, np.array([1.0, 1.0]), 1.0)  # L_old_total = inf: loss decreased -> p_good - p±, clipped at 0
    assert sel.p_good == 0.0 and sel.l_old_total == 1.0
    sel.update(fitted, np.array([1.0, 1.0]), 2.0)  # loss rose: more good data
    assert sel.p_good == pytest.approx(SETTINGS.p_step)
    for _ in range(40):
        sel.update(fitted, np.array([1.0, 1.0]), sel.l_old_total + 1.0)
    assert sel.p_good == pytest.approx(SETTINGS.p_good_max)
    sel.update(fitted, np.array([1.0, 1.0]), sel.l_old_total - 1.0)
    assert sel.p_good == pytest.approx(SETTINGS.p_good_max - SETTINGS.p_step)
    np.testing.assert_array_equal(sel.l_old, [1.0, 1.0])


def test_state_follows_ids_through_additions_removals_and_checkpoints():
    sel = _selection(3)
    sel.update(np.array([1]), np.array([0.5]), 1.0)
    sel.s_hist[1] = 0.7
    sel.add(["c1", "new"])  # c1 is known: keeps its state
    assert sel.ids == ["c0", "c1", "c2", "new"]
    assert sel.s_hist[sel.index(["c1"])[0]] == 0.7 and np.isnan(sel.l_old[3])
    sel.remove(["c0"])
    assert sel.ids == ["c1", "c2", "new"] and sel.l_old[0] == 0.5
    again = AdaptiveSelection.from_state(sel.state())
    for key, value in sel.state().items():
        np.testing.assert_array_equal(np.asarray(again.state()[key]), np.asarray(value))


def test_fit_per_epoch_is_a_count_when_integer_and_a_fraction_when_float():
    from aiida_lmlp.potential.training.adaptive_selection import fit_count

    assert fit_count(1, 40) == 1 and fit_count(25, 40) == 25 and fit_count(60, 40) == 40
    assert fit_count(1.0, 40) == 40  # 1.0 means all of them, not one
    assert fit_count(0.1, 40) == 4 and fit_count(0.01, 40) == 1 and fit_count(np.float32(0.5), 40) == 20
    for bad in (0, 1.5, 0.0, True):
        with pytest.raises((ValueError, TypeError)):
            fit_count(bad, 40)
