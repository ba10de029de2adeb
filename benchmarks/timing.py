"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def synchronize() -> None:
    """Wait for queued CUDA work, so that a timer measures it; nothing on the CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved_medians(variants: dict, rounds: int) -> dict:
    """Median wall time of every ``variants[name]()``, timed in alternation over ``rounds`` rounds.

    One warm-up call each first. Alternating spreads the machine's noise over all variants, so
    their ratios are comparable even where the seconds are not.
    """
    samples = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_model() -> str:
    """The CPU's model name (Linux), for the results: the figures differ between machines."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
