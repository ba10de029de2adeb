"""Version arguments of ``lmlp models``: ``-1`` is the latest version, not an option."""

from __future__ import annotations

import re

import click

_NEGATIVE_INTEGER = re.compile(r"-\d+")


class VersionCommand(click.Command):
    """A command whose arguments may be negative integers (``lmlp models show quickstart -1``).

    click reads every word that starts with ``-`` as an option. Here a word like ``-1`` is an
    argument; any other unknown option is still refused, as click would refuse it.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", {})["ignore_unknown_options"] = True
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse unknown options (except negative integers), then parse as click does."""
        takes_value, known = set(), set(ctx.help_option_names)
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                names = [*param.opts, *param.secondary_opts]
                known.update(names)
                if not param.is_flag and not param.count:
                    takes_value.update(param.opts)
        skip_next = False
        for word in args:
            if skip_next:
                skip_next = False
                continue
            if word == "--":
                break
            if not word.startswith("-") or word == "-" or _NEGATIVE_INTEGER.fullmatch(word):
                continue
            name = word.split("=", 1)[0]
            if name not in known:
                raise click.NoSuchOption(name, ctx=ctx)
            skip_next = name in takes_value and "=" not in word
        return super().parse_args(ctx, args)


VERSION_HELP = "VERSION counts from 0; a negative VERSION counts back from the latest (-1: the latest)."
