"""Element terms of Eq. 6 against the periodic table (and the authors' published table)."""

import numpy as np
import pytest

from aiida_lmlp.potential.elements import ELEMENT_TERMS, element_term_table, is_d_block, validate_elements


@pytest.mark.parametrize(
    "symbol, expected",
    [
        # 1, n, m, d, 6-n, 9-m, 11-d
        ("H", (1, 1, 1, 0, 5, 8, 0)),
        ("He", (1, 1, 8, 0, 5, 1, 0)),  # helium: m = 8
        ("C", (1, 2, 4, 0, 4, 5, 0)),
        ("Cl", (1, 3, 7, 0, 3, 2, 0)),
        ("Ca", (1, 4, 2, 0, 2, 7, 0)),
        ("Sc", (1, 4, 0, 1, 2, 0, 10)),  # d block: m = 0 and 9 - m = 0
        ("Fe", (1, 4, 0, 6, 2, 0, 5)),
        ("Zn", (1, 4, 0, 10, 2, 0, 1)),
        ("Ga", (1, 4, 3, 0, 2, 6, 0)),
        ("Br", (1, 4, 7, 0, 2, 2, 0)),
        ("Ag", (1, 5, 0, 9, 1, 0, 2)),
        ("Xe", (1, 5, 8, 0, 1, 1, 0)),
    ],
)
def test_element_terms(symbol, expected):
    assert tuple(element_term_table([symbol])[0]) == expected


def test_all_elements_h_to_xe_have_terms_within_their_maxima():
    from ase.data import chemical_symbols

    table = element_term_table(chemical_symbols[1:55])
    assert table.shape == (54, len(ELEMENT_TERMS))
    assert np.all(table.max(axis=0) == [1, 5, 8, 10, 5, 8, 10])
    # exactly one of m (main group) and d (d block) is non-zero
    assert np.all((table[:, 2] > 0) ^ (table[:, 3] > 0))


def test_d_block_detection():
    assert is_d_block("Fe") and is_d_block("Cd") and is_d_block("Y")
    assert not is_d_block("Ca") and not is_d_block("Ga") and not is_d_block("H")


@pytest.mark.parametrize(
    "bad, message", [(["Cs"], "beyond xenon"), (["Qq"], "unknown"), (["H", "H"], "twice"), ([], "empty")]
)
def test_bad_element_lists(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_elements(bad)
