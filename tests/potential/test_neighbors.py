"""Neighbour pairs and angular triplets against brute force."""

import itertools

import numpy as np
from ase.neighborlist import neighbor_list

from aiida_lmlp.potential.neighbors import build_graph, pair_triplets

from .helpers import random_box


def test_triplets_are_all_unordered_pairs_of_each_centre():
    rng = np.random.default_rng(0)
    centers = np.sort(rng.integers(0, 40, size=900))
    triplets = pair_triplets(centers, 40)
    expected = set()
    for c in range(40):
        members = np.nonzero(centers == c)[0]
        expected |= set(itertools.combinations(members.tolist(), 2))
    assert set(map(tuple, triplets.tolist())) == expected
    assert len(triplets) == len(expected)


def test_pairs_match_ase_in_a_triclinic_cell():
    atoms = random_box("H10C5O5", 7.0, seed=2)
    graph = build_graph([atoms], ["H", "C", "O"], 5.0)
    i, j, shift = neighbor_list("ijS", atoms, 5.0)
    ours = set(zip(graph.centers.tolist(), graph.neighbors.tolist(), map(tuple, graph.shifts.astype(int).tolist())))
    theirs = set(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist())))
    assert ours == theirs


def test_batches_offset_atom_indices():
    a, b = random_box("H4O2", 6.0, seed=1), random_box("H2C2", 6.0, seed=2)
    graph = build_graph([a, b], ["H", "C", "O"], 4.0)
    assert graph.n_atoms == 10 and graph.n_structures == 2
    assert np.all(graph.structure[graph.centers] == graph.structure[graph.neighbors])
    assert np.all(np.diff(graph.centers) >= 0)
