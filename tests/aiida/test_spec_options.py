"""Every ``metadata.options`` key aiida-core accepts passes from a campaign spec to the jobs; unknown keys are named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from aiida import orm
from click.testing import CliRunner

from aiida_lmlp.calculations.base import LmlpCalcJob
from aiida_lmlp.campaign import SpecError, load_spec
from aiida_lmlp.campaign.spec import option_keys
from aiida_lmlp.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "workflows" / "quickstart.yaml"

#: a value for every option a spec may set (each different, so that a mix-up shows)
OPTIONS = {
    "label": {
        "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 4},
        "max_wallclock_seconds": 3600,
        "queue_name": "cpu",
        "account": "chem-label",
        "qos": "long",
        "priority": "10",
        "custom_scheduler_commands": "#SBATCH --constraint=amd",
        "prepend_text": "echo label-before",
        "append_text": "echo label-after",
        "environment_variables": {"LABEL_VAR": "a b", "PYSCF_TMPDIR": "/scratch/pyscf"},
        "environment_variables_double_quotes": False,
        "import_sys_environment": False,
        "max_memory_kb": 8_000_000,
        "rerunnable": True,
        "mpirun_extra_params": ["--bind-to", "core"],
        "additional_retrieve_list": ["*.log"],
        "withmpi": False,
        "scheduler_stdout": "label.sched.out",
        "scheduler_stderr": "label.sched.err",
    },
    "train": {
        "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 8},
        "queue_name": "gpu",
        "account": "chem-train",
        "qos": "gpu-normal",
        "custom_scheduler_commands": "#SBATCH --gres=gpu:1",
        "environment_variables": {"CUDA_MODULE_LOADING": "LAZY"},
        "prepend_text": "module load cuda",
    },
    "explore": {
        "account": "chem-explore",
        "qos": "short",
        "environment_variables": {"EXPLORE_VAR": "1"},
        "stash": {"source_list": ["summary.json"], "target_base": "/archive/explore", "stash_mode": "copy"},
        "unstash": {"source_list": ["start.npz"], "unstash_target_mode": "OriginalPlace"},
        "submit_script_filename": "explore.sh",
        "input_filename": "unused.in",
        "output_filename": "unused.out",
    },
}


def _spec_with(tmp_path, options: dict, codes: dict | None = None) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["structures"] = str(QUICKSTART.parent / spec["structures"])
    if codes:
        spec["codes"] = codes
    for section, values in options.items():
        spec[section]["options"] = values
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def test_the_spec_accepts_every_option_aiida_core_has_but_the_parser():
    assert option_keys() == set(LmlpCalcJob.spec_options) - {"parser_name"}
    # the test above sets every one of them in some section
    assert {key for section in OPTIONS.values() for key in section} == option_keys()


def _job_options(inputs: dict) -> dict:
    """The ``metadata.options`` each step's jobs get, from ``lmlp.lifelong`` inputs."""
    (label,) = [value for value in inputs["label"].values() if isinstance(value, dict) and "code" in value]
    return {
        "label": label["metadata"]["options"],
        "train": inputs["train"]["train"]["metadata"]["options"],
        "explore": inputs["explore"]["metadata"]["options"],
    }


def test_every_option_reaches_the_inputs_of_each_step(tmp_path, lmlp_code):
    from aiida_lmlp.workflows.lifelong import LifelongWorkChain

    code = lmlp_code("lmlp.train")
    path = _spec_with(tmp_path, OPTIONS, codes={"lmlp": code.full_label})
    inputs = load_spec(path).build_inputs("options", store=False)
    assert _job_options(inputs) == OPTIONS
    port = LifelongWorkChain.spec().inputs
    assert port.validate(port.pre_process(dict(inputs))) is None


def test_the_options_are_in_the_first_jobs_script(tmp_path, monkeypatch, aiida_profile):
    """A dry run writes the first job (the labelling here) with SLURM: each option where SLURM reads it."""
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer("options-slurm")
    except NotExistent:
        computer = orm.Computer(
            label="options-slurm",
            hostname="cluster",
            transport_type="core.local",
            scheduler_type="core.slurm",
            workdir="/scratch/aiida",
        ).store()
    code = orm.InstalledCode(
        label="lmlp-options", computer=computer, filepath_executable=str(Path(sys.executable).with_name("lmlp"))
    ).store()
    path = _spec_with(tmp_path, OPTIONS, codes={"lmlp": code.full_label})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["campaign", "launch", "--dry-run", str(path)])
    assert result.exit_code == 0, result.output or repr(result.exception)
    (folder,) = (tmp_path / "submit_test").iterdir()
    lines = (folder / "_aiidasubmit.sh").read_text().splitlines()
    for line in (
        "#SBATCH --requeue",
        "#SBATCH --partition=cpu",
        "#SBATCH --account=chem-label",
        "#SBATCH --qos=long",
        "#SBATCH --nice=10",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --time=01:00:00",
        "#SBATCH --mem=7812",
        "#SBATCH --output=label.sched.out",
        "#SBATCH --error=label.sched.err",
        "#SBATCH --constraint=amd",
        "export LABEL_VAR='a b'",
        "export PYSCF_TMPDIR='/scratch/pyscf'",
        "echo label-before",
        "echo label-after",
    ):
        assert line in lines, f"{line!r} not in the job script:\n" + "\n".join(lines)
    assert "#SBATCH --get-user-env" not in lines  # import_sys_environment: false


@pytest.mark.parametrize(
    ("section", "options", "message"),
    [
        ("label", {"envirnoment_variables": {"A": "1"}}, "unknown key 'label.options.envirnoment_variables'"),
        ("train", {"queue": "gpu"}, "unknown key 'train.options.queue'"),
        ("explore", {"parser_name": "lmlp.train"}, "unknown key 'explore.options.parser_name'"),
        ("explore", {"max_wallclock_seconds": "2h"}, "explore.options.max_wallclock_seconds: .*not of the right type"),
        ("train", {"environment_variables": ["OMP_NUM_THREADS=4"]}, "train.options.environment_variables: "),
        ("label", {"stash": {"source_list": ["a"]}}, "label.options.stash: .*target_base"),
    ],
)
def test_an_unknown_or_wrong_option_is_named(tmp_path, section, options, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec_with(tmp_path, {section: options}))
