"""The ``metadata.options`` of an ``lmlp.train`` job on a SLURM GPU node, checked in the real submit script.

A dry run: aiida-core prepares the job folder exactly as for submission (``prepare_for_submission``,
the scheduler's submit script) without connecting to the cluster, which does not exist here.
"""

from __future__ import annotations

from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node

from aiida_lmlp.calculations import LmlpTrainCalculation
from aiida_lmlp.data.dataset import ARCHIVE

# what docs/aiida.md recommends for a GPU training job on a SLURM cluster
GPU_OPTIONS = {
    "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 8},
    "max_wallclock_seconds": 24 * 3600,
    "queue_name": "gpu",
    "account": "my-project",
    "custom_scheduler_commands": "#SBATCH --gres=gpu:1",
    "prepend_text": "module load cuda",
}


def test_gpu_job_script_requests_a_gpu_and_trains_on_it(sn2_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a dry run writes its folder under ./submit_test
    cluster = orm.Computer(
        label="cluster-gpu",
        hostname="login.cluster.example",
        transport_type="core.ssh_async",
        scheduler_type="core.slurm",
        workdir="/scratch/{username}/aiida",
    ).store()
    code = orm.InstalledCode(
        label="lmlp-gpu",
        computer=cluster,
        filepath_executable="/opt/lmlp/bin/lmlp",
        default_calc_job_plugin="lmlp.train",
    ).store()
    _, node = run_get_node(
        LmlpTrainCalculation,
        code=code,
        datasets={"sn2": sn2_dataset},
        parameters=orm.Dict({"device": "cuda", "dtype": "float32", "epochs": 1000}),
        metadata={"dry_run": True, "options": GPU_OPTIONS},
    )
    folder = Path(node.dry_run_info["folder"])
    script = (folder / "_aiidasubmit.sh").read_text()
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --time=1-00:00:00" in script
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --account=my-project" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "module load cuda" in script
    # every argument quoted by aiida-core: no shell string is built from user input
    command = "'/opt/lmlp/bin/lmlp' '--record-threads' 'lmlp.threads.json' 'train' '--data' 'data_0.npz'"
    assert command + " '--config' 'config.yaml' '--out' 'model.lmlp'" in script
    assert "device: cuda" in (folder / "config.yaml").read_text()
    # the dataset's archive, copied from the repository as stored (the daemon converts nothing)
    assert (folder / "data_0.npz").read_bytes() == sn2_dataset.base.repository.get_object_content(ARCHIVE, mode="rb")
