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

__all__ = ["KNOWN_FINGERPRINTS", "KNOWN_KEYS", "geometry_keys", "screen_candidates"]


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


#: Arrays of the ``known`` output of :func:`screen_candidates`.
KNOWN_KEYS = "geometry_keys"
KNOWN_FINGERPRINTS = "fingerprints"


def _known_so_far(known: orm.ArrayData | None, datasets: list[LmlpDatasetData]) -> tuple[set[str], list[np.ndarray]]:
    """Geometry keys and fingerprints of ``known`` (a previous screening's output) and of ``datasets``."""
    keys: set[str] = set()
    fingerprints: list[np.ndarray] = []
    if known is not None:
        keys.update(key.decode("ascii") for key in known.get_array(KNOWN_KEYS))
        if KNOWN_FINGERPRINTS in known.get_arraynames():
            fingerprints.append(known.get_array(KNOWN_FINGERPRINTS))
    for dataset in datasets:
        dataset_keys = geometry_keys(dataset)
        # a labelled dataset repeats the geometries (and fingerprints) of the selection it came from
        new = [i for i, key in enumerate(dataset_keys) if key not in keys]
        keys.update(dataset_keys)
        values = dataset.conformations.arrays.get("fingerprint")
        if values is not None and len(values) and new:
            fingerprints.append(np.asarray(values, dtype=np.float64)[new])
    return keys, fingerprints


def _known_output(keys: set[str], fingerprints: list[np.ndarray], width: int | None) -> orm.ArrayData:
    """What the next screening starts from: every geometry key, and the fingerprints of the current width."""
    known = orm.ArrayData()
    known.set_array(KNOWN_KEYS, np.array(sorted(keys), dtype="S64"))
    rows = [f for f in fingerprints if width is not None and f.ndim == 2 and f.shape[1] == width]
    if rows:
        known.set_array(KNOWN_FINGERPRINTS, np.concatenate(rows))
    return known


@calcfunction
def screen_candidates(
    visited: LmlpDatasetData,
    potential: orm.Data,
    settings: orm.Dict,
    budget_left: orm.Int,
    known: orm.ArrayData | None = None,
    **previous: LmlpDatasetData,
) -> dict:
    """Pick the visited conformations to label (see :func:`.candidates.select_candidates`).

    ``potential`` gives the test RMSEs the thresholds are multiples of. What the campaign already
    has: ``known``, the ``known`` output of the previous screening, and ``previous``, the datasets
    labelled (or selected) since then. A visited geometry that is already among them (an MD start
    structure, say) counts as known and is never labelled again; the fingerprints of earlier
    selections also steer farthest-point sampling away from what was picked before.

    Returns ``report`` (counts and thresholds), ``known`` (every geometry key so far, this
    screening's selection included, and the fingerprints: what the next screening starts from,
    so that it takes two inputs instead of every dataset of the campaign) and, when anything was
    chosen, ``selected`` (unlabelled conformations, predictions dropped, ready for DFT).
    """
    c = visited.conformations
    a = c.arrays
    counts = a["counts"]
    seen, already = _known_so_far(known, list(previous.values()))
    visited_keys = geometry_keys(visited)
    repeated = np.array([key in seen for key in visited_keys], dtype=bool)
    fingerprints = a.get("fingerprint")
    width = fingerprints.shape[1] if fingerprints is not None and np.ndim(fingerprints) == 2 else None
    usable = [f for f in already if width is not None and f.ndim == 2 and f.shape[1] == width]
    result = select_candidates(
        np.where(repeated, 0.0, a["energy_uncertainty"] / counts),
        np.where(repeated, 0.0, forces_uncertainty_max(a["forces_uncertainty"], counts)),
        min_interatomic_distances(a["positions"], counts, a["cells"], a["pbc"]),
        fingerprints,
        potential.base.attributes.get("rmse_energy_per_atom", 0.0),
        potential.base.attributes.get("rmse_forces", 0.0),
        SelectionSettings.from_dict(settings.get_dict()),
        budget_left.value,
        np.concatenate(usable) if usable else None,
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
        from aiida_lmlp.formats.conformation_arrays import ConformationArrays

        outputs["selected"] = LmlpDatasetData(ConformationArrays(arrays), label_method="")
        seen.update(visited_keys[i] for i in result.selected)
        if width is not None:
            already.append(np.asarray(fingerprints, dtype=np.float64)[result.selected])
    outputs["known"] = _known_output(seen, already, width)
    return outputs
