"""Settings of the ``localhost`` computer for campaigns that run on this machine (the quickstart).

Two of aiida-core's defaults cost the embedded quickstart much of its engine overhead:

* every transport command (job submission, every scheduler poll) runs in a *login* shell, which
  sources the user's shell profile first: 0.15 s on the development machine, more with conda or
  module systems, and the daemon's event loop waits for it on every poll;
* ``verdi presto`` polls the scheduler at most once a second, so a finished job waits 0.5 s on
  average before it is retrieved.

:func:`tune_localhost` turns the login shell off and polls every 0.1 s (one ``ps`` call,
about 10 ms). The job script is unaffected: the ``lmlp`` code is called by its absolute path.
"""

from __future__ import annotations

__all__ = ["LOCALHOST_POLL_INTERVAL", "tune_localhost"]

LOCALHOST_POLL_INTERVAL = 0.1
"""Seconds between scheduler polls of ``localhost`` set by :func:`tune_localhost`."""


def tune_localhost(computer, poll_interval: float = LOCALHOST_POLL_INTERVAL) -> None:
    """Configure the ``core.local`` ``computer`` for the current user: no login shell, no safe interval, fast polls."""
    from aiida import orm

    if computer.transport_type != "core.local":
        raise ValueError(f"computer {computer.label!r} uses {computer.transport_type}, not core.local")
    user = orm.User.collection.get_default()
    if computer.is_user_configured(user):
        authinfo = computer.get_authinfo(user)
        parameters = authinfo.get_auth_params()
        parameters.update(use_login_shell=False, safe_interval=0.0)
        authinfo.set_auth_params(parameters)
    else:
        computer.configure(user, use_login_shell=False, safe_interval=0.0)
    computer.set_minimum_job_poll_interval(poll_interval)
