"""Element terms of Eq. 6 against the periodic table (and the authors' published table)."""

import numpy as np
import pytest

from aiida_lmlp.formats.elements import (
    ELEMENT_TERMS,
    element_term_table,
    is_d_block,
    is_f_block,
    validate_elements,
)


@pytest.mark.parametrize(
    "symbol, expected",
    [
        # 1, n, m, d, 6-n, 9-m, 11-d, f, 15-f
        ("H", (1, 1, 1, 0, 5, 8, 0, 0, 0)),
        ("He", (1, 1, 8, 0, 5, 1, 0, 0, 0)),  # helium: m = 8
        ("C", (1, 2, 4, 0, 4, 5, 0, 0, 0)),
        ("Cl", (1, 3, 7, 0, 3, 2, 0, 0, 0)),
        ("Ca", (1, 4, 2, 0, 2, 7, 0, 0, 0)),
        ("Sc", (1, 4, 0, 1, 2, 0, 10, 0, 0)),  # d block: m = 0 and 9 - m = 0
        ("Fe", (1, 4, 0, 6, 2, 0, 5, 0, 0)),
        ("Zn", (1, 4, 0, 10, 2, 0, 1, 0, 0)),
        ("Ga", (1, 4, 3, 0, 2, 6, 0, 0, 0)),
        ("Br", (1, 4, 7, 0, 2, 2, 0, 0, 0)),
        ("Ag", (1, 5, 0, 9, 1, 0, 2, 0, 0)),
        ("Xe", (1, 5, 8, 0, 1, 1, 0, 0, 0)),
    ],
)
def test_element_terms(symbol, expected):
    assert tuple(element_term_table([symbol])[0]) == expected


@pytest.mark.parametrize(
    "symbol, expected",
    [
        # periods up to 7 (X - 1 = 7): 1, n, m, d, 8-n, 9-m, 11-d, f, 15-f
        ("H", (1, 1, 1, 0, 7, 8, 0, 0, 0)),
        ("Xe", (1, 5, 8, 0, 3, 1, 0, 0, 0)),
        ("Cs", (1, 6, 1, 0, 2, 8, 0, 0, 0)),
        ("La", (1, 6, 0, 0, 2, 0, 0, 1, 14)),  # f block: m = d = 0, f = 1
        ("Gd", (1, 6, 0, 0, 2, 0, 0, 8, 7)),
        ("Yb", (1, 6, 0, 0, 2, 0, 0, 14, 1)),
        ("Lu", (1, 6, 0, 1, 2, 0, 10, 0, 0)),  # group 3 of the d block
        ("Pt", (1, 6, 0, 8, 2, 0, 3, 0, 0)),
        ("Hg", (1, 6, 0, 10, 2, 0, 1, 0, 0)),
        ("Pb", (1, 6, 4, 0, 2, 5, 0, 0, 0)),
        ("Rn", (1, 6, 8, 0, 2, 1, 0, 0, 0)),
        ("U", (1, 7, 0, 0, 1, 0, 0, 4, 11)),
        ("Lr", (1, 7, 0, 1, 1, 0, 10, 0, 0)),
        ("Og", (1, 7, 8, 0, 1, 1, 0, 0, 0)),
    ],
)
def test_element_terms_up_to_period_7(symbol, expected):
    assert tuple(element_term_table([symbol], max_period=7)[0]) == expected


def test_every_element_has_exactly_one_block_number_within_its_maximum():
    from ase.data import chemical_symbols

    table = element_term_table(chemical_symbols[1:119], max_period=7)
    assert table.shape == (118, len(ELEMENT_TERMS))
    assert np.all(table.max(axis=0) == [1, 7, 8, 10, 7, 8, 10, 14, 14])
    assert np.all(((table[:, 2] > 0).astype(int) + (table[:, 3] > 0) + (table[:, 7] > 0)) == 1)
    # 14 f-block elements per period 6 and 7, 10 d-block elements per period 4 to 7
    periods = table[:, 1]
    for period in (6, 7):
        assert np.sum((table[:, 7] > 0) & (periods == period)) == 14
    for period in (4, 5, 6, 7):
        assert np.sum((table[:, 3] > 0) & (periods == period)) == 10


def test_all_elements_h_to_xe_have_terms_within_their_maxima():
    from ase.data import chemical_symbols

    table = element_term_table(chemical_symbols[1:55])
    assert table.shape == (54, len(ELEMENT_TERMS))
    assert np.all(table.max(axis=0) == [1, 5, 8, 10, 5, 8, 10, 0, 0])
    # exactly one of m (main group) and d (d block) is non-zero
    assert np.all((table[:, 2] > 0) ^ (table[:, 3] > 0))


def test_d_and_f_block_detection():
    assert is_d_block("Fe") and is_d_block("Cd") and is_d_block("Y") and is_d_block("Lu") and is_d_block("Au")
    assert not is_d_block("Ca") and not is_d_block("Ga") and not is_d_block("H") and not is_d_block("La")
    assert is_f_block("La") and is_f_block("Ce") and is_f_block("Yb") and is_f_block("U") and is_f_block("No")
    assert not is_f_block("Lu") and not is_f_block("Lr") and not is_f_block("Ba") and not is_f_block("Hf")


@pytest.mark.parametrize("bad, message", [(["Qq"], "unknown"), (["H", "H"], "twice"), ([], "empty")])
def test_bad_element_lists(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_elements(bad)


def test_an_element_beyond_the_covered_periods_is_named():
    with pytest.raises(ValueError, match=r"element Cs \(Z=55, period 6\) is beyond Xe"):
        validate_elements(["H", "Cs"], max_period=5)
    assert validate_elements(["H", "Cs"]) == ("H", "Cs")
