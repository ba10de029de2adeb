"""Small structure builders for the engine tests."""

import numpy as np
from ase import Atoms


def random_box(symbols: str, width: float, seed: int = 0, min_distance: float = 1.0, tilt: bool = True) -> Atoms:
    """A periodic (triclinic when ``tilt``) box with atoms at least ``min_distance`` Å apart."""
    rng = np.random.default_rng(seed)
    cell = np.diag([width, width * 1.05, width * 0.95])
    if tilt:
        cell[1, 0] = 0.3 * width
        cell[2, 0], cell[2, 1] = -0.2 * width, 0.15 * width
    atoms = Atoms(symbols, cell=cell, pbc=True)
    positions = []
    for _ in range(len(atoms)):
        while True:
            p = rng.random(3) @ cell
            trial = Atoms("X" * (len(positions) + 1), positions=positions + [p], cell=cell, pbc=True)
            if (
                len(positions) == 0
                or trial.get_distances(len(positions), range(len(positions)), mic=True).min() > min_distance
            ):
                positions.append(p)
                break
    atoms.set_positions(positions)
    return atoms
