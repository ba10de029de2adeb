"""Training progress: a bar on a terminal, plain periodic lines (epoch/total, RMSEs, elapsed, ETA) in a file."""

from __future__ import annotations

import io
import re

from ase.io import read, write
from click.testing import CliRunner

from aiida_lmlp.cli import main
from aiida_lmlp.potential.training.progress import TrainingProgress

from ..conftest import SN2


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _metrics(energy: float, forces: float) -> dict:
    return {"ensemble_test_rmse_energy_per_atom": energy, "ensemble_test_rmse_forces": forces}


def test_lines_in_a_file_give_epoch_total_rmses_elapsed_and_eta():
    stream, clock = io.StringIO(), Clock()
    progress = TrainingProgress(4, stream=stream, every=0.0, clock=clock)
    for epoch, seconds in zip(range(1, 5), (10.0, 20.0, 30.0, 40.0)):
        clock.now = seconds
        progress.update(epoch, _metrics(0.002 * epoch, 0.1) if epoch % 2 == 0 else None)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    # after 2 of 4 epochs in 20 s: 20 s more to go; the RMSEs of the last evaluation (meV)
    assert lines[1] == "epoch 2/4 (50 %): test RMSE 4.00 meV/atom, 100.0 meV/Å; elapsed 0:00:20, ETA 0:00:20"
    assert lines[2] == "epoch 3/4 (75 %): test RMSE 4.00 meV/atom, 100.0 meV/Å; elapsed 0:00:30, ETA 0:00:10"
    assert lines[0] == "epoch 1/4 (25 %): elapsed 0:00:10, ETA 0:00:30"
    assert lines[3].startswith("epoch 4/4 (100 %): test RMSE 8.00 meV/atom")


def test_lines_come_every_so_many_seconds_and_at_the_end():
    stream, clock = io.StringIO(), Clock()
    progress = TrainingProgress(100, stream=stream, every=60.0, clock=clock, start_epoch=200)
    for epoch in range(201, 301):
        clock.now += 7.0  # 7 s per epoch
        progress.update(epoch, None)
    progress.close()
    counted = [int(m.group(1)) for m in re.finditer(r"^epoch (\d+)/100", stream.getvalue(), re.M)]
    assert counted[0] == 1 and counted[-1] == 100  # the first and the last epoch
    assert all(b - a == 9 for a, b in zip(counted[1:-2], counted[2:-1]))  # then every 60 s (9 epochs of 7 s)
    assert "(model epoch 300)" in stream.getvalue().splitlines()[-1]


def test_a_model_without_test_conformations_says_so():
    stream = io.StringIO()
    progress = TrainingProgress(1, stream=stream, every=0.0)
    progress.update(1, _metrics(float("nan"), float("nan")))
    assert "no test conformations" in stream.getvalue() and "nan" not in stream.getvalue()


def test_a_terminal_gets_a_progress_bar():
    stream, clock = Terminal(), Clock()
    progress = TrainingProgress(4, stream=stream, clock=clock)
    for epoch in range(1, 5):
        clock.now = 10.0 * epoch
        progress.update(epoch, _metrics(0.003, 0.2))
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "4/4" in text and "3.00 meV/atom" in text  # redrawn in place (tqdm)
    assert "ETA" not in text  # no plain lines


def test_lmlp_train_in_a_job_writes_progress_lines(tmp_path):
    data = tmp_path / "few.extxyz"
    write(data, read(SN2 / "pool_a.extxyz", ":20"))
    arguments = ["train", "--data", str(data), "--out", str(tmp_path / "m.lmlp"), "--epochs", "3", "--members", "2"]
    arguments += ["--reference-energies", str(SN2 / "free_atoms.json"), "--progress-every", "0"]
    result = CliRunner().invoke(main, arguments)  # output to a pipe, as in a job: no terminal
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("elapsed" in line and "ETA" in line and "meV/Å" in line for line in lines)
