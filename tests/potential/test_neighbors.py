"""Neighbour pairs and angular triplets against brute force."""

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from aiida_lmlp.formats.errors import StructureError
from aiida_lmlp.potential import EeACSF
from aiida_lmlp.potential.descriptors.neighbors import build_graph, molecule_graph, pair_triplets

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


def _molecules() -> list:
    """Molecules of 1–9 atoms, some pairs farther apart than the 3 Å cutoff used with them."""
    rng = np.random.default_rng(4)
    molecules = []
    for n in (3, 1, 9, 5, 2):
        # a jittered line of 1.2 Å steps: the ends of the longer ones are beyond 3 Å apart
        positions = np.arange(n)[:, None] * [1.2, 0.0, 0.0] + rng.uniform(-0.1, 0.1, (n, 3)) + rng.random(3) * 5
        molecules.append(Atoms("".join(rng.choice(["H", "C", "O"], n)), positions=positions))
    return molecules


def _as_tensors(molecules, elements):
    positions = torch.as_tensor(np.concatenate([m.positions for m in molecules]))
    species = torch.as_tensor([elements.index(s) for m in molecules for s in m.get_chemical_symbols()])
    return positions, species, [len(m) for m in molecules]


def test_all_pairs_search_of_molecules_finds_the_cell_list_pairs():
    molecules, elements = _molecules(), ["H", "C", "O"]
    reference = build_graph(molecules, elements, 3.0).tensors()
    graph = molecule_graph(*_as_tensors(molecules, elements), 3.0, elements=elements)
    pairs = lambda g: set(zip(g["centers"].tolist(), g["neighbors"].tolist()))  # noqa: E731
    assert pairs(graph) == pairs(reference)
    assert 0 < len(pairs(graph)) < sum(len(m) * (len(m) - 1) for m in molecules)  # the cutoff removed some
    assert torch.all(torch.diff(graph["centers"]) >= 0)
    assert torch.equal(graph["structure"], reference["structure"])
    assert graph["triplets"].shape == reference["triplets"].shape
    descriptor = EeACSF.from_paper(elements, cutoff=3.0)
    np.testing.assert_allclose(
        descriptor(graph["positions"], graph["cells"], graph).numpy(),
        descriptor(reference["positions"], reference["cells"], reference).numpy(),
        rtol=1e-12,
        atol=1e-14,
    )


def test_all_pairs_search_names_the_molecule_and_atoms_too_close():
    molecules, elements = _molecules(), ["H", "C", "O"]
    molecules[2].positions[4] = molecules[2].positions[1] + [0.3, 0.0, 0.0]
    symbols = molecules[2].get_chemical_symbols()
    with pytest.raises(StructureError) as error:
        molecule_graph(*_as_tensors(molecules, elements), 3.0, elements=elements, labels=list("abcde"))
    assert error.value.label == "c"
    assert f"atoms 1 ({symbols[1]}) and 4 ({symbols[4]}) are 0.300 Å apart" in error.value.problem
