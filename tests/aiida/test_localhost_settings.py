"""``tune_localhost``: the quickstart's localhost: no login shell per transport command, polls every 0.1 s."""

import pytest
from aiida import orm

from aiida_lmlp.campaign.localhost import LOCALHOST_POLL_INTERVAL, tune_localhost


def _shell_kind(computer) -> str:
    with computer.get_transport() as transport:
        code, out, _ = transport.exec_command_wait("shopt -q login_shell && echo login || echo plain")
    assert code == 0
    return out.strip()


def test_tuned_localhost_runs_commands_outside_a_login_shell(aiida_profile, tmp_path):
    computer = orm.Computer(
        label="tune-test",
        hostname="localhost",
        transport_type="core.local",
        scheduler_type="core.direct",
        workdir=str(tmp_path),
    ).store()
    computer.configure(safe_interval=5.0)  # aiida-core's default: a login shell
    computer.set_minimum_job_poll_interval(1.0)
    assert _shell_kind(computer) == "login"

    tune_localhost(computer)
    parameters = computer.get_authinfo(orm.User.collection.get_default()).get_auth_params()
    assert parameters["use_login_shell"] is False and parameters["safe_interval"] == 0.0
    assert computer.get_minimum_job_poll_interval() == LOCALHOST_POLL_INTERVAL
    assert _shell_kind(computer) == "plain"


def test_an_unconfigured_localhost_is_configured_and_a_remote_computer_refused(aiida_profile, tmp_path):
    computer = orm.Computer(
        label="tune-new", hostname="localhost", transport_type="core.local", scheduler_type="core.direct",
        workdir=str(tmp_path),
    ).store()  # fmt: skip
    tune_localhost(computer, poll_interval=0.5)
    assert computer.is_user_configured(orm.User.collection.get_default())
    assert computer.get_minimum_job_poll_interval() == 0.5 and _shell_kind(computer) == "plain"
    remote = orm.Computer(
        label="tune-ssh", hostname="cluster.example", transport_type="core.ssh", scheduler_type="core.slurm",
        workdir="/scratch",
    ).store()  # fmt: skip
    with pytest.raises(ValueError, match="tune-ssh.*core.ssh"):
        tune_localhost(remote)
