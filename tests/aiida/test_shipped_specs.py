"""Every shipped campaign spec launches from the repository alone: ``lmlp campaign launch --dry-run``.

The dry run reads the spec's files, loads its codes, validates the ``lmlp.lifelong`` inputs
and writes the first job's files and job script (aiida-core's ``metadata.dry_run``); nothing is
stored or submitted. The codes the specs name are made here: ``lmlp@localhost`` on a
``core.direct`` computer and ``lmlp@cluster`` on a ``core.slurm`` one (a dry run never
connects to it, so no cluster is needed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aiida import orm
from ase.io import read
from click.testing import CliRunner

from aiida_lmlp.campaign import load_spec
from aiida_lmlp.cli import main
from aiida_lmlp.formats.conformation_arrays import read_frames

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "aiida_lmlp" / "campaign" / "specs"
SHIPPED = sorted((ROOT / "workflows").glob("*.yaml")) + sorted(PACKAGED.glob("*.yaml"))


def _code(label: str) -> orm.InstalledCode:
    """``label`` (code@computer), made on a computer of that name unless the profile has it."""
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(label)
    except NotExistent:
        pass
    name, computer_label = label.split("@")
    try:
        computer = orm.load_computer(computer_label)
    except NotExistent:
        scheduler = "core.direct" if computer_label == "localhost" else "core.slurm"
        computer = orm.Computer(
            label=computer_label,
            hostname=computer_label,
            transport_type="core.local",
            scheduler_type=scheduler,
            workdir="/scratch/{username}/aiida",
        ).store()
        computer.set_default_mpiprocs_per_machine(1)
    return orm.InstalledCode(
        label=name, computer=computer, filepath_executable=str(Path(sys.executable).with_name("lmlp"))
    ).store()


def test_the_shipped_specs_are_found():
    names = {path.name for path in SHIPPED}
    assert {"quickstart.yaml", "sn2_campaign.yaml", "hpc_slurm.yaml"} <= names


def test_the_packaged_quickstart_is_the_one_in_workflows():
    """``lmlp quickstart`` runs the packaged copy (it works after a plain ``pip install``)."""
    for name in ("quickstart.yaml", "cl_ch3cl_start.extxyz"):
        assert (PACKAGED / name).read_bytes() == (ROOT / "workflows" / name).read_bytes(), name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_spec_launches_as_a_dry_run(path, aiida_profile, tmp_path, monkeypatch):
    spec = load_spec(path)
    for label in {spec.codes.get(step) or spec.codes["lmlp"] for step in ("train", "explore", "label")}:
        _code(label)
    # every file the spec names is inside the repository
    files = [spec.structures, *([spec.explore_structures] if spec.explore_structures else [])]
    for file in files:
        assert file.is_relative_to(ROOT), f"{path.name} reads {file}, outside the repository"
    monkeypatch.chdir(tmp_path)
    before = orm.QueryBuilder().append(orm.Node).count()
    result = CliRunner().invoke(main, ["campaign", "launch", "--dry-run", str(path)])
    assert result.exit_code == 0, result.output or repr(result.exception)
    assert orm.QueryBuilder().append(orm.Node).count() == before, "a dry run stored nodes"
    frames = read(spec.structures, ":")
    assert f"({len(frames)}, " in result.output
    if spec.explore_structures:
        assert f"({len(read(spec.explore_structures, ':'))})" in result.output
    # the first job's files: the structures as the job reads them, and a job script that runs lmlp
    (folder,) = (tmp_path / "submit_test").iterdir()
    script = (folder / "_aiidasubmit.sh").read_text()
    labelled = all(atoms.calc is not None and "energy" in atoms.calc.results for atoms in frames)
    if labelled:
        assert "LmlpTrainCalculation" in result.output
        assert "'train'" in script and "'--config'" in script
        sent = read_frames(folder / "data_0.npz")
    else:
        assert "Calculation" in result.output and "'train'" not in script
        (archive,) = folder.glob("structures.npz")
        sent = read_frames(archive)
    assert len(sent) == len(frames)
    assert [a.get_chemical_formula() for a in sent] == [a.get_chemical_formula() for a in frames]


def test_the_cluster_spec_options_reach_the_job_script(aiida_profile, tmp_path, monkeypatch):
    """hpc_slurm.yaml: partition, account, wall time, GPU request, module line and threads in the first job's script."""
    path = ROOT / "workflows" / "hpc_slurm.yaml"
    _code(load_spec(path).codes["train"])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["campaign", "launch", "--dry-run", str(path)])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "submit_test").iterdir()
    script = (folder / "_aiidasubmit.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=my-project",
        "#SBATCH --time=1-00:00:00",  # max_wallclock_seconds: 86400
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=8",
        "module load cuda",
        "export OMP_NUM_THREADS='8'",  # the job's threads pinned to its 8 cores
    ):
        assert line in script.splitlines(), f"{line!r} missing from\n{script}"


def test_a_dry_run_names_a_missing_file(aiida_profile, tmp_path, monkeypatch):
    text = (ROOT / "workflows" / "sn2_campaign.yaml").read_text()
    spec = tmp_path / "moved.yaml"
    spec.write_text(text)  # beside no data/ folder: the relative paths resolve to nothing
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["campaign", "launch", "--dry-run", str(spec)])
    assert result.exit_code != 0
    assert f"structures: {tmp_path / 'data' / 'sn2' / 'pool_a.extxyz'} does not exist" in result.output
