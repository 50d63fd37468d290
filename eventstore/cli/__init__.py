"""The ``eventstore`` command line: inspect, replay, recover, import and export a session store.

What lives here and why: the click group, the ``--store`` option and the one
place where library errors become one-line, terminal-safe ``Error: ...`` messages. Each
command group lives in its own module (``_inspect``, ``_recover``,
``_interchange``, ``_demo``); all of them call the ``SessionStore`` facade and
the click-free ``eventstore.zeroclaw`` and ``eventstore.interchange`` modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import EventStoreError, pause_gc_while_decoding
from ._context import CACHE_ENV, STORE_ENV, Env, user_error
from ._output import terminal_safe

__all__ = ["cli", "main", "INTERRUPTED"]


@contextmanager
def _terminal_safe_errors() -> Iterator[None]:
    """Make an error's message terminal-safe: it may quote a key, a path or an argument."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # the help, shown as it is (a group run with no command): our own text, not an argument
    except click.ClickException as exc:
        message = exc.format_message()
        safe = terminal_safe(message)
        if safe == message:
            raise
        if isinstance(exc, click.UsageError):
            raise click.UsageError(safe, exc.ctx) from None
        raise click.ClickException(safe) from None


#: The exit status of a command stopped by Ctrl-C (SIGINT), as shells report it: 128 + 2.
INTERRUPTED = 130


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C ends the command with one line and exit status 130 (click's own says "Aborted!", status 1)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"Interrupted{': ' + str(exc) if str(exc) else '.'}", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None


class _Group(click.Group):
    """A group that shows every library error as one line (``Error: ...``, exit status 1), never a traceback,
    and Ctrl-C as one line too (exit status 130)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _interruptible(), _terminal_safe_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _interruptible(), _terminal_safe_errors():
            try:
                return super().invoke(ctx)
            except BrokenPipeError:
                # The reader went away (``eventstore history KEY | head``): stop quietly.
                raise click.exceptions.Exit(1) from None
            except (EventStoreError, OSError) as exc:
                env = ctx.find_object(Env)
                raise user_error(exc, env) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", "store_path", type=click.Path(path_type=str), envvar=STORE_ENV, show_envvar=True,
              metavar="PATH",
              help="The store directory, or a postgresql:// URL (the log on PostgreSQL, read through a replica "
                   "in --cache). Default: $XDG_DATA_HOME/eventstore (~/.local/share/eventstore; "
                   "~/Library/Application Support/eventstore on macOS).")
@click.option("--cache", "cache", type=click.Path(path_type=Path), envvar=CACHE_ENV, show_envvar=True,
              metavar="DIR", help="With a postgresql:// store: this host's replica directory. Default: one per URL "
                                  "beside the default store.")
@click.version_option(package_name="eventstore", prog_name="eventstore", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, store_path: str | None, cache: Path | None) -> None:
    """Inspect, replay, recover, import and export an event-sourced session store.

    Every change to a session is an event; these commands show sessions as they
    are and as they were, step through their history, bring back earlier
    states, move ZeroClaw history in and out, and check the store.

    \b
    Example:
        eventstore demo                # a sample store, and a guided tour
        eventstore sessions            # the sessions, most recent first
        eventstore show KEY --as-of 2026-03-01T14:05
    """
    typed = click.core.ParameterSource.COMMANDLINE
    # An empty or unused value typed on the command line is a mistake; from the environment (set for every
    # command a shell runs), an empty store path means the default, and a cache serves only a shared log.
    if store_path == "" and ctx.get_parameter_source("store_path") is typed:
        raise click.UsageError("--store is empty: give a store directory or a postgresql:// URL")
    env = Env.chosen_by(store_path, cache)
    if cache is not None and env.url is None and ctx.get_parameter_source("cache") is typed:
        raise click.UsageError("--cache is the replica directory of a postgresql:// store; this store is a "
                               "directory, which needs none")
    ctx.obj = env


def _register() -> None:
    from . import _demo, _inspect, _interchange, _recover, _salvage

    for module in (_demo, _inspect, _recover, _interchange, _salvage):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Run the command line (``eventstore.__main__.main``, the console script's entry point, loads it)."""
    # The command line owns its process, so it takes the host's call the library leaves open: the cyclic
    # collector pauses while sessions decode and while the search index catches up or rebuilds (imports).
    pause_gc_while_decoding(True)
    cli(prog_name="eventstore")
