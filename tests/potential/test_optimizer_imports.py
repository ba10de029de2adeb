"""``lmlp train`` builds and checkpoints its optimiser without importing torch._dynamo (2 s a job)."""

import subprocess
import sys

import torch

from aiida_lmlp.overrides.optimizer_imports import optimizers_without_dynamo

TRAIN = """
import sys
from click.testing import CliRunner
from aiida_lmlp.cli.main import main
result = CliRunner().invoke(main, ["train", "--data", sys.argv[1], "--epochs", "3", "--members", "2",
                                   "--config", sys.argv[2], "--out", sys.argv[3]])
assert result.exit_code == 0, result.output
print(sorted(m for m in ("torch._dynamo", "scipy.optimize") if m in sys.modules))
"""


def test_lmlp_train_imports_neither_torch_dynamo_nor_scipy_optimize(tmp_path, sn2_frames):
    """As in a campaign's training job: the data as a conformation archive (ASE's extxyz reader imports SciPy)."""
    from aiida_lmlp.formats.conformation_arrays import write_frames

    config = tmp_path / "config.yaml"
    config.write_text("hidden: [6]\ncheckpoint_every: 1\nfit_per_epoch: 1.0\n")  # a checkpoint: state_dict
    out = tmp_path / "model.lmlp"
    data = str(tmp_path / "data.npz")
    write_frames(data, sn2_frames[:20])
    done = subprocess.run([sys.executable, "-c", TRAIN, data, str(config), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert out.exists()


def test_seeded_optimizers_keep_their_behaviour():
    assert optimizers_without_dynamo() == ["add_param_group", "state_dict", "load_state_dict", "zero_grad"]
    assert optimizers_without_dynamo() == ["add_param_group", "state_dict", "load_state_dict", "zero_grad"]  # again
    weights = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = torch.optim.Adam([weights], lr=0.1)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.5})
    (weights**2).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    copy = torch.optim.Adam([{"params": [weights], "lr": 0.1}, {"params": [torch.nn.Parameter(torch.zeros(2))]}])
    copy.load_state_dict(state)
    assert copy.param_groups[1]["lr"] == 0.5
    torch.testing.assert_close(copy.state[weights]["exp_avg"], optimizer.state[weights]["exp_avg"])
    optimizer.zero_grad()
    assert weights.grad is None
