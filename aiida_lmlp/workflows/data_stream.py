"""The training data stream of a campaign as a few merged segments instead of one dataset per iteration.

Every iteration adds one labelled dataset to the stream that the next training continues on.
Given as they are, the training's inputs grow by one per iteration, and aiida-core checks every
input link of a new process with its own queries (about 11 ms each: ``benchmarks/input_link_cost.py``),
twice per iteration (the ``lmlp.train_ensemble`` work chain and its ``lmlp.train`` job). So the
stream is kept as segments with a tier: a new dataset is a tier-0 segment, and as soon as the
last ``width`` segments share a tier they are merged (``merge_datasets``, a calcfunction, so every
conformation stays traceable to its DFT calculation) into one segment of the next tier. A
stream of N datasets is then at most ``(width - 1)`` segments per tier, about
``(width - 1) · log_width(N)`` inputs, and each conformation is copied once per tier it climbs:
storage grows as N log N, not N² as merging everything every iteration would. Order is kept,
so the trainer sees the conformations in the same order either way.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["segments_to_merge"]


def segments_to_merge(tiers: Sequence[int], width: int) -> int:
    """How many trailing segments to merge now: ``width`` when the last ``width`` share a tier, else 0.

    ``tiers``: the tier of every segment, oldest first (non-increasing, as merging keeps them).
    """
    if width < 2:
        raise ValueError(f"the merge width must be at least 2, got {width}")
    if len(tiers) < width:
        return 0
    last = tiers[-1]
    return width if all(tier == last for tier in tiers[-width:]) else 0
