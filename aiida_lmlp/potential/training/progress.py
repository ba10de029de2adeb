"""How a training shows its progress: a progress bar on a terminal, plain periodic lines in a file.

A cluster job's output goes to a file: there a line every ``every`` seconds (and for the first and
the last epoch) gives the epoch and the total, the latest test RMSEs, the time elapsed and the
estimated time left. On a terminal a tqdm bar shows the same, redrawn in place.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["TrainingProgress"]


def _clock_text(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def rmse_text(metrics: dict | None) -> str:
    """The ensemble test RMSEs of ``metrics`` in meV, or why there are none."""
    if not metrics:
        return ""
    energy = metrics.get("ensemble_test_rmse_energy_per_atom", math.nan)
    forces = metrics.get("ensemble_test_rmse_forces", math.nan)
    if not (math.isfinite(energy) and math.isfinite(forces)):
        return "no test conformations"
    return f"test RMSE {1000 * energy:.2f} meV/atom, {1000 * forces:.1f} meV/Å"


class TrainingProgress:
    """Progress of a run of ``epochs`` epochs; :meth:`update` after every epoch, :meth:`close` at the end.

    ``bar``: a tqdm progress bar (default: when ``stream`` is a terminal); otherwise lines, the
    first and last epoch's and one every ``every`` seconds in between. ``start_epoch``: the
    model's epoch count before this run (a continued training), shown next to the run's count.
    """

    def __init__(
        self,
        epochs: int,
        *,
        start_epoch: int = 0,
        stream: TextIO | None = None,
        bar: bool | None = None,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.epochs, self.start_epoch, self.every, self.clock = epochs, start_epoch, every, clock
        self.stream = stream if stream is not None else sys.stderr
        self.started = clock()
        self.last_line: float | None = None
        self.metrics: dict | None = None
        use_bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        if use_bar and epochs > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="training", unit="epoch", file=self.stream, dynamic_ncols=True)

    def update(self, epoch: int, metrics: dict | None = None) -> None:
        """Epoch ``epoch`` (the model's count) is done; ``metrics`` when it was evaluated."""
        if metrics:
            self.metrics = metrics
        done = epoch - self.start_epoch
        if self.bar is not None:
            if metrics:
                self.bar.set_postfix_str(rmse_text(metrics), refresh=False)
            self.bar.update(done - self.bar.n)
            return
        now = self.clock()
        due = self.last_line is None or now - self.last_line >= self.every or done >= self.epochs
        if due:
            self.last_line = now
            print(self.line(done, now), file=self.stream, flush=True)

    def line(self, done: int, now: float) -> str:
        """``epoch 2/4 (50 %): test RMSE …; elapsed 0:00:20, ETA 0:00:20`` for ``done`` epochs at ``now``."""
        elapsed = now - self.started
        left = elapsed / done * (self.epochs - done) if done else math.nan
        model = f" (model epoch {self.start_epoch + done})" if self.start_epoch else ""
        rmse = rmse_text(self.metrics)
        eta = _clock_text(left) if math.isfinite(left) else "?"
        return (
            f"epoch {done}/{self.epochs} ({100 * done / self.epochs:.0f} %){model}: "
            + (f"{rmse}; " if rmse else "")
            + f"elapsed {_clock_text(elapsed)}, ETA {eta}"
        )

    def close(self) -> None:
        """End the bar (a final newline on the terminal)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
