"""Record real outputs of Debian's ``cp2k`` for the CP2K input, parser and labeller tests.

Regenerate (from the repository root, with ``cp2k`` on the PATH; about a minute on 2 cores)::

    python tests/data/cp2k_outputs/record.py

Every case writes the input that :func:`aiida_lmlp.labelling.cp2k_input.cp2k_input` builds
(rendered by aiida-cp2k's ``Cp2kInput``, as ``Cp2kCalculation`` does), runs ``cp2k -i aiida.inp``
in a scratch folder with one thread, and keeps ``aiida.inp``, ``aiida.coords.xyz`` and the output
``aiida.out`` (stdout and stderr joined, as aiida-cp2k runs it). ``cases.json`` records per case
the structure (extxyz text), the parameters and CP2K's exit status. PBE with the SZV-MOLOPT-GTH
basis and a 250 Ry cutoff, so that every run takes seconds.

=================== ============================================================================ ====
case                what happens                                                                 exit
=================== ============================================================================ ====
water_molecule      H₂O, wavelet Poisson solver in a cubic box: energy and forces                0
water_cell          H₂O in a periodic 5 × 5.5 × 6 Å cell: energy, forces, analytical stress      0
water_not_converged H₂O with diagonalization and MAX_SCF 2: CP2K 2023 only warns "SCF run NOT     0
                    converged" and goes on to print energy and forces of the unconverged SCF
radical_singlet     OH (9 electrons) as a singlet: CP2K aborts naming charge and multiplicity    1
=================== ============================================================================ ====
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ase import Atoms
from ase.build import molecule
from ase.io import write

from aiida_lmlp.labelling.cp2k_input import Cp2kParameters, cp2k_input
from aiida_lmlp.labelling.protocol import RYDBERG

HERE = Path(__file__).resolve().parent
BASE = {"basis": "SZV-MOLOPT-GTH", "cutoff": 250 * RYDBERG, "rel_cutoff": 40 * RYDBERG}


def structures() -> dict[str, tuple[Atoms, dict]]:
    """The structure and parameters of every case."""
    water = molecule("H2O")
    water.positions[1] += [0.05, 0.1, -0.05]  # forces on every atom
    cell = water.copy()
    cell.set_cell([5.0, 5.5, 6.0])
    cell.center()
    cell.pbc = True
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    radical.info["multiplicity"] = 1
    return {
        "water_molecule": (water, BASE),
        "water_cell": (cell, BASE),
        "water_not_converged": (water, {**BASE, "scf": "diagonalization", "max_scf": 2}),
        "radical_singlet": (radical, BASE),
    }


def render(atoms: Atoms, parameters: Cp2kParameters) -> tuple[str, str]:
    """``aiida.inp`` and ``aiida.coords.xyz`` as aiida-cp2k's ``Cp2kCalculation`` writes them."""
    from aiida_cp2k.calculations import _atoms_to_xyz
    from aiida_cp2k.utils import Cp2kInput

    data, structure, mesh = cp2k_input(atoms, parameters)
    assert mesh == (1, 1, 1)
    inp = Cp2kInput(data)
    inp.add_keyword("GLOBAL/PROJECT", "aiida")
    for i, letter in enumerate("ABC"):
        inp.add_keyword(f"FORCE_EVAL/SUBSYS/CELL/{letter}", "{:<15} {:<15} {:<15}".format(*structure.cell[i]))
    inp.add_keyword("FORCE_EVAL/SUBSYS/TOPOLOGY/COORD_FILE_NAME", "aiida.coords.xyz")
    inp.add_keyword("FORCE_EVAL/SUBSYS/TOPOLOGY/COORD_FILE_FORMAT", "XYZ")
    return inp.render(), _atoms_to_xyz(structure)


def main() -> None:
    """Run every case and keep its files."""
    cases = {}
    for name, (atoms, settings) in structures().items():
        text, coords = render(atoms, Cp2kParameters.from_dict(settings))
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            (folder / "aiida.inp").write_text(text)
            (folder / "aiida.coords.xyz").write_text(coords)
            with open(folder / "aiida.out", "w") as out:
                run = subprocess.run(
                    ["cp2k", "-i", "aiida.inp"],
                    cwd=folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
            target = HERE / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for file in ("aiida.inp", "aiida.coords.xyz", "aiida.out"):
                shutil.copy(folder / file, target / file)
        frame = io.StringIO()
        write(frame, atoms, format="extxyz")
        cases[name] = {"structure": frame.getvalue(), "parameters": settings, "exit": run.returncode}
        print(f"{name}: exit {run.returncode}")
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
