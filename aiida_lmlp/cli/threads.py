"""``lmlp --record-threads FILE ...``: the thread counts a command's libraries ran with, written when it ends."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["record_threads_option"]


def _register(ctx: click.Context, _param: click.Parameter, path: Path | None) -> None:
    if path is not None:
        from aiida_lmlp.formats.threads import thread_counts

        ctx.call_on_close(lambda: path.write_text(json.dumps(thread_counts(), sort_keys=True) + "\n"))


def record_threads_option(function):
    """The ``--record-threads FILE`` option of the ``lmlp`` group (what a job's libraries ran with)."""
    return click.option(
        "--record-threads",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_register,
        help="When the command ends, write the thread counts PyTorch and PySCF ran with (JSON) to this file.",
    )(function)
