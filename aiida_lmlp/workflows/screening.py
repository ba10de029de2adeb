"""The screening step of a campaign as a calcfunction: visited conformations in, conformations to label out.

Runs in the daemon on NumPy arrays only (:mod:`aiida_lmlp.workflows.candidates`); being a
calcfunction, the choice of every labelled structure is recorded in the provenance graph.
"""

from __future__ import annotations

import hashlib

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_lmlp.data.dataset import LmlpDatasetData

from .candidates import SelectionSettings, forces_uncertainty_max, min_interatomic_distances, select_candidates

__all__ = ["geometry_keys", "screen_candidates"]


def geometry_keys(dataset: LmlpDatasetData, decimals: int = 5) -> list[str]:
    """One key per conformation from its geometry alone (species, positions and cell to 1e-5 Å, pbc).

    Rounded, so that a geometry written to extxyz and read back keeps its key; labels ignored.
    """
    a = dataset.conformations.arrays
    offsets = np.concatenate([[0], np.cumsum(a["counts"])])
    keys = []
    for i in range(len(a["counts"])):
        digest = hashlib.sha256()
        digest.update(a["numbers"][offsets[i] : offsets[i + 1]].astype(np.int64).tobytes())
        digest.update(np.round(a["positions"][offsets[i] : offsets[i + 1]], decimals).tobytes())
        digest.update(np.round(a["cells"][i], decimals).tobytes())
        digest.update(a["pbc"][i].astype(np.bool_).tobytes())
        keys.append(digest.hexdigest())
    return keys


@calcfunction
def screen_candidates(
    visited: LmlpDatasetData,
    potential: orm.Data,
    settings: orm.Dict,
    budget_left: orm.Int,
    **previous: LmlpDatasetData,
) -> dict:
    """Pick the visited conformations to label (see :func:`.candidates.select_candidates`).

    ``potential`` gives the test RMSEs the thresholds are multiples of; ``previous``: datasets
    already labelled or selected. A visited geometry that is already among them (an MD start
    structure, say) counts as known and is never labelled again; the selected ones of earlier
    iterations also steer farthest-point sampling away from what was picked before.
    Returns ``report`` (counts and thresholds) and, when anything was chosen, ``selected``
    (unlabelled conformations, predictions dropped, ready for DFT).
    """
    c = visited.conformations
    a = c.arrays
    counts = a["counts"]
    seen = {key for p in previous.values() for key in geometry_keys(p)}
    repeated = np.array([key in seen for key in geometry_keys(visited)], dtype=bool)
    fingerprints = a.get("fingerprint")
    already = [p.conformations.arrays.get("fingerprint") for p in previous.values()]
    already = [f for f in already if f is not None and len(f)]
    result = select_candidates(
        np.where(repeated, 0.0, a["energy_uncertainty"] / counts),
        np.where(repeated, 0.0, forces_uncertainty_max(a["forces_uncertainty"], counts)),
        min_interatomic_distances(a["positions"], counts, a["cells"], a["pbc"]),
        fingerprints,
        potential.base.attributes.get("rmse_energy_per_atom", 0.0),
        potential.base.attributes.get("rmse_forces", 0.0),
        SelectionSettings.from_dict(settings.get_dict()),
        budget_left.value,
        np.concatenate(already) if already and fingerprints is not None else None,
    )
    report = result.counts()
    report["already_labelled"] = int(repeated.sum())
    report["categories"] = {name: int((result.category == name).sum()) for name in np.unique(result.category)}
    outputs = {"report": orm.Dict(report)}
    if len(result.selected):
        chosen = c.subset(result.selected)
        # the structures go to DFT: keep geometry, charge, multiplicity and the fingerprint only
        arrays = {
            key: value
            for key, value in chosen.arrays.items()
            if key not in ("predicted_energy", "predicted_forces", "energy_uncertainty", "forces_uncertainty")
        }
        from aiida_lmlp.potential.conformation_arrays import ConformationArrays

        outputs["selected"] = LmlpDatasetData(ConformationArrays(arrays), label_method="")
    return outputs
