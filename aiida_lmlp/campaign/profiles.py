"""Scratch AiiDA profiles for tests and benchmarks: the embedded default and the production set-up.

``embedded``: ``verdi presto --use-zeromq`` (SQLite storage, aiida-core's built-in ZeroMQ broker).
``production``: ``verdi profile setup core.psql_dos`` with RabbitMQ, on a database made here
(``verdi presto --use-postgres`` asks for the en_US.UTF-8 locale, which a minimal PostgreSQL
server may lack). Both get the ``localhost`` computer (``core.local`` + ``core.direct``) and the
``lmlp`` executable of this environment as ``lmlp@localhost``. Call with ``AIIDA_PATH`` set to
a scratch folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["create_profile", "delete_profile", "postgres", "verdi"]

BIN = Path(sys.executable).parent


def verdi(*arguments: str, profile: str | None = None, timeout: float = 600) -> str:
    """Run ``verdi``; raises with its output when it fails."""
    command = [str(BIN / "verdi")] + (["-p", profile] if profile else []) + [str(a) for a in arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def postgres(statement: str) -> None:
    """Run one statement as the ``postgres`` superuser on 127.0.0.1:5432 (trust authentication)."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as connection:
        connection.execute(statement)


def create_profile(kind: str, name: str, workdir: Path) -> None:
    """Make profile ``name`` of ``kind`` (``embedded`` or ``production``) with ``lmlp@localhost``."""
    if kind == "embedded":
        verdi("presto", "--profile-name", name, "--use-zeromq")
    elif kind == "production":
        postgres(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
        verdi(
            "profile", "setup", "core.psql_dos", "--non-interactive", "--profile-name", name,
            "--email", "lmlp@localhost", "--first-name", "lmlp", "--last-name", "tests", "--institution", "aiida-lmlp",
            "--broker", "core.rabbitmq", "--database-hostname", "127.0.0.1", "--database-port", "5432",
            "--database-username", "postgres", "--database-password", "", "--database-name", name,
            "--repository-uri", f"file://{workdir / f'repository-{name}'}",
        )  # fmt: skip
        verdi(
            "computer", "setup", "--non-interactive", "--label", "localhost", "--hostname", "localhost",
            "--transport", "core.local", "--scheduler", "core.direct", "--work-dir", workdir / "work",
            profile=name,
        )  # fmt: skip
        verdi("config", "set", "runner.poll.interval", "1", profile=name)
    else:
        raise ValueError(f"profile kind must be 'embedded' or 'production', got {kind!r}")
    # as `lmlp quickstart` sets it (aiida_lmlp.campaign.localhost): no login shell per transport command
    verdi(
        "computer", "configure", "core.local", "localhost", "--non-interactive", "--safe-interval", "0",
        "--no-use-login-shell", profile=name,
    )  # fmt: skip
    verdi(
        "code", "create", "core.code.installed", "--non-interactive", "--label", "lmlp", "--computer", "localhost",
        "--filepath-executable", BIN / "lmlp", profile=name,
    )  # fmt: skip
    verdi("config", "set", "caching.enabled_for", "aiida.calculations:lmlp.pyscf", profile=name)


def delete_profile(kind: str, name: str) -> None:
    """Delete the profile and its data (for ``production``, its database too)."""
    if kind == "embedded":
        verdi("profile", "delete", "--force", "--delete-data", name)
        return
    # verdi's own drop fails while a daemon worker's connection is still closing
    verdi("profile", "delete", "--force", "--keep-data", name)
    postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
