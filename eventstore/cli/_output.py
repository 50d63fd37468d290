"""Output for every command: one ``--json`` flag, rich tables for people, JSON for scripts, progress bars.

What lives here and why: each command builds plain rows (dicts of JSON-ready
values) and hands them to one ``Output``; the output decides between a rich
table (the default) and JSON (``--json``: one document, or JSON Lines for
streams such as ``history`` and ``replay``). Times are shown in the user's
local zone. Progress bars and spinners go to stderr and only on a terminal,
so piped output stays clean.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
_TIME_COLUMNS = frozenset({"TIME", "CREATED", "LAST ACTIVITY", "TURN STARTED"})
_PIPED_WIDTH = 160
Row = dict[str, Any]
ProgressCallback = Callable[[int, int], None]


def output_options(command: F) -> F:
    """The output flags every command takes (``--json``)."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help="Print JSON for scripts instead of a table: one document, or JSON Lines (one object a line) "
             "for streams such as history and replay.",
    )(command)


def local(moment: datetime | None) -> datetime | None:
    """The time in the user's local zone."""
    return None if moment is None else moment.astimezone()


def show_time(moment: datetime | None) -> str:
    """A time for a table: local, to the second."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def json_time(moment: datetime | None) -> str | None:
    """A time for JSON: local ISO 8601 with its offset, to the microsecond."""
    return None if moment is None else moment.astimezone().isoformat(timespec="microseconds")


def preview(text: str, width: int = 60) -> str:
    """One line of at most ``width`` characters standing for ``text``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return json_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Output:
    """Where a command's results go: tables and lines for people, or JSON."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # No file given: rich then writes to whatever sys.stdout is when it prints (CliRunner swaps it).
        self.console = Console(highlight=False, soft_wrap=False)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # Piped (``| less``): fit the terminal the user still sees on stderr; redirected to a
            # file: no terminal to fit, so let tables take their natural width.
            self.console.width = _terminal_width() or _PIPED_WIDTH

    # -- JSON --------------------------------------------------------------------------

    def json(self, document: object) -> None:
        """Print one JSON document."""
        click.echo(orjson.dumps(document, default=_default, option=orjson.OPT_INDENT_2).decode())

    def json_lines(self, rows: Iterable[object]) -> None:
        """Print one compact JSON object a line, as the rows come."""
        for row in rows:
            click.echo(orjson.dumps(row, default=_default).decode())

    # -- people --------------------------------------------------------------------------

    def line(self, text: str | Text = "", style: str | None = None) -> None:
        """Print a line of plain text (no markup is interpreted in it, and it is not wrapped)."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None,
              empty: str = "Nothing to show.") -> int:
        """Print a table; print ``empty`` instead when there are no rows. Returns the row count.

        Time columns stay on one line; the others wrap when the terminal is narrow.
        """
        table = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            if name in _TIME_COLUMNS:
                table.add_column(name, no_wrap=True, min_width=19)
            else:
                table.add_column(name, overflow="fold")
        count = 0
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text("-" if cell is None else str(cell))
                            for cell in row))
            count += 1
        if count:
            self.console.print(table)
        else:
            self.line(empty)
        return count

    def fields(self, pairs: Sequence[tuple[str, object]]) -> None:
        """Print ``name: value`` lines, aligned."""
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(Text.assemble((f"{name + ':':<{width + 1}} ", "bold"), "-" if value is None else str(value)))


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """A ``progress(done, total)`` callback drawing a bar on stderr when it is a terminal, else doing nothing.

    A total of 0 draws a spinner (the amount of work is not known).
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)
            bar.refresh()  # callers report every few hundred items: draw each report, even on short runs

        yield update


@contextmanager
def spinner(description: str) -> Iterator[None]:
    """A spinner on stderr for work that reports no progress (only on a terminal)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(description):
        yield


def _terminal_width() -> int | None:
    """The width of the terminal on stderr, if stderr is one."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns if sys.stderr.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None
