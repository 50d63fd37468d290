"""The command-line reference, generated from ``--help`` so that it never drifts from the code.

Usage: ``python -m eventstore.cli._reference > docs/cli.md``. Each command gets
a heading and its help text exactly as ``eventstore COMMAND --help`` prints it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import click

from . import cli


def _commands(group: click.Group, words: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        path = (*words, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def help_text(words: tuple[str, ...]) -> str:
    """What ``eventstore WORDS... --help`` prints."""
    command: click.Command = cli
    # A fixed width: the reference must not depend on the terminal it was generated in.
    new_context = functools.partial(click.Context, terminal_width=100, max_content_width=100,
                                    help_option_names=["-h", "--help"])
    context = new_context(cli, info_name="eventstore")
    for word in words:
        assert isinstance(command, click.Group)
        command = command.commands[word]
        context = new_context(command, info_name=word, parent=context)
    return command.get_help(context)


def reference() -> str:
    """The Markdown reference of every command."""
    parts = ["# `eventstore` command reference", "",
             "Generated from `--help` by `python -m eventstore.cli._reference`; do not edit by hand.", "",
             "```", help_text(()), "```", ""]
    for words, _command in _commands(cli):
        parts += [f"## eventstore {' '.join(words)}", "", "```", help_text(words), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
