"""The screening step of a campaign as a calcfunction: visited conformations in, conformations to label out.

Runs in the daemon on NumPy arrays only (:mod:`aiida_lmlp.workflows.candidates`); being a
calcfunction, the choice of every labelled structure is recorded in the provenance graph.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_lmlp.data.dataset import LmlpDatasetData

from .candidates import SelectionSettings, forces_uncertainty_max, min_interatomic_distances, select_candidates

__all__ = ["screen_candidates"]


@calcfunction
def screen_candidates(
    visited: LmlpDatasetData,
    potential: orm.Data,
    settings: orm.Dict,
    budget_left: orm.Int,
    **previous: LmlpDatasetData,
) -> dict:
    """Pick the visited conformations to label (see :func:`.candidates.select_candidates`).

    ``potential`` gives the test RMSEs the thresholds are multiples of; ``previous``: the
    conformations selected in earlier iterations, which farthest-point sampling keeps away from.
    Returns ``report`` (counts and thresholds) and, when anything was chosen, ``selected``
    (unlabelled conformations, predictions dropped, ready for DFT).
    """
    c = visited.conformations
    a = c.arrays
    counts = a["counts"]
    fingerprints = a.get("fingerprint")
    already = [p.conformations.arrays.get("fingerprint") for p in previous.values()]
    already = [f for f in already if f is not None and len(f)]
    result = select_candidates(
        a["energy_uncertainty"] / counts,
        forces_uncertainty_max(a["forces_uncertainty"], counts),
        min_interatomic_distances(a["positions"], counts, a["cells"], a["pbc"]),
        fingerprints,
        potential.base.attributes.get("rmse_energy_per_atom", 0.0),
        potential.base.attributes.get("rmse_forces", 0.0),
        SelectionSettings.from_dict(settings.get_dict()),
        budget_left.value,
        np.concatenate(already) if already and fingerprints is not None else None,
    )
    report = result.counts()
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
        from aiida_lmlp.data.conformation_arrays import ConformationArrays

        outputs["selected"] = LmlpDatasetData(ConformationArrays(arrays), label_method="")
    return outputs
