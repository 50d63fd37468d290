"""Output for every command: one ``--json`` flag, rich tables for people, JSON for scripts, progress bars.

What lives here and why: each command builds plain rows (dicts of JSON-ready
values) and hands them to one ``Output``; the output decides between a rich
table (the default) and JSON (``--json``: one document, or JSON Lines for
streams such as ``history`` and ``replay``). Times are shown in the user's
local zone. Progress bars and spinners go to stderr and only on a terminal,
so piped output stays clean.

Keys, names, roles, contents, reasons and paths come from users and from
imported files, so nothing printed for people may reach the terminal raw: a
message holding ``ESC ] 52`` would write the reader's clipboard. Every table
cell, line, title, prompt and error passes through ``terminal_safe`` (or its
rich twin ``safe_text``), which shows control and invisible characters as
escapes and interprets no rich markup. ``--json`` prints the exact strings.

Standard output that cannot be written (a full device, a closed descriptor) is
one ``Error:`` line saying so (``OutputNotWritten``), never a traceback; a
reader that goes away (``| head``) is left to the command line, which stops
quietly.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import click
import orjson
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
_TIME_COLUMNS = frozenset({"TIME", "CREATED", "LAST ACTIVITY", "TURN STARTED"})
_PIPED_WIDTH = 160
Row = dict[str, Any]
ProgressCallback = Callable[[int, int], None]


# -- terminal safety ---------------------------------------------------------------------

#: Control (C0, DEL, C1), format (bidi controls, zero-width characters, U+FEFF, tags), surrogate and
#: line/paragraph separator characters: each can move the cursor, send a terminal command, reorder or hide text.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Every character of those categories lies in planes 0, 1 and 14 (a test checks this against the whole range).
_UNSAFE_PLANES = (range(0x20000), range(0xE0000, 0xE1000))
#: Letters that draw nothing (the Hangul fillers), a known way to fake an empty or an identical-looking name.
_BLANK_LETTERS = "\u115f\u1160\u3164\uffa0"
#: What a message body may keep: its line breaks, and tabs (printed as spaces).
_BODY_WHITESPACE = "\t\n"
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
#: How an escape is drawn on a terminal, so that it stands apart from a backslash typed in the text.
ESCAPE_STYLE = "dim"


@functools.cache
def _unsafe_codes() -> tuple[str, ...]:
    found = [chr(code) for plane in _UNSAFE_PLANES for code in plane
             if unicodedata.category(chr(code)) in _UNSAFE_CATEGORIES]
    return tuple(sorted(found + list(_BLANK_LETTERS)))


@functools.cache
def _unsafe_pattern(body: bool) -> re.Pattern[str]:
    """One character class of the unsafe characters, as ranges (a class of single characters is ten times slower)."""
    ranges: list[list[int]] = []
    for char in _unsafe_codes():
        if body and char in _BODY_WHITESPACE:
            continue
        if ranges and ranges[-1][1] == ord(char) - 1:
            ranges[-1][1] = ord(char)
        else:
            ranges.append([ord(char), ord(char)])
    return re.compile("[" + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges) + "]")


def _escape(char: str) -> str:
    """A character as Python writes it in a string literal: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                                        else f"\\U{code:08x}")


def terminal_safe(text: str, *, body: bool = False) -> str:
    """``text`` made harmless to print on a terminal, every unsafe character shown as its escape.

    Escaped: C0 controls (ESC, BEL, CR, ...), DEL, C1 controls (U+0080-U+009F), bidi controls
    (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), zero-width and other format characters
    (U+200B-U+200D, U+2060, U+FEFF, tags), lone surrogates, U+2028, U+2029 and the blank Hangul fillers.
    In a message ``body`` a newline stays a newline and a tab becomes spaces; everywhere else they are
    escaped too. Backslashes are left alone: ``--json`` is the exact form.
    """
    safe = _unsafe_pattern(body).sub(lambda found: _escape(found.group()), text)
    return _expand_tabs(safe) if body else safe


def _expand_tabs(text: str) -> str:
    """Tabs as spaces to the next multiple of 8 terminal cells, as rich's ``Text.expand_tabs`` makes them in
    ``safe_text`` (``str.expandtabs`` counts characters: a wide character before a tab would take one cell more)."""
    lines = []
    for line in text.split("\n"):
        pieces = line.split("\t")
        column = 0
        for index, piece in enumerate(pieces[:-1]):
            column += cell_len(piece)
            pieces[index] = piece + " " * (_TAB_CELLS - column % _TAB_CELLS)
            column += _TAB_CELLS - column % _TAB_CELLS
        lines.append("".join(pieces))
    return "\n".join(lines)


_TAB_CELLS = 8


def safe_text(text: str | Text, *, body: bool = False) -> Text:
    """``terminal_safe`` for rich text: keeps a ``Text``'s styles and draws each escape dimmed.

    Build rich text of user strings with this, not with ``Text(...)``: rich silently drops BEL, BS,
    VT, FF and CR from a str it is given, and this shows them. A str's markup is never read.
    """
    plain = text if isinstance(text, str) else text.plain
    unsafe = _unsafe_pattern(body)
    cuts = [offset for found in unsafe.finditer(plain) for offset in found.span()]
    result = Text() if isinstance(text, str) else Text(
        style=text.style, justify=text.justify, overflow=text.overflow, no_wrap=text.no_wrap, end=text.end)
    for start, end in itertools.pairwise([0, *cuts, len(plain)]):
        piece = Text(plain[start:end]) if isinstance(text, str) else text[start:end]
        if unsafe.fullmatch(plain[start:end]):
            escape = Text(_escape(plain[start:end]))
            for span in piece.spans:
                escape.stylize(span.style)
            escape.stylize(ESCAPE_STYLE)
            piece = escape
        result.append_text(piece)
    if body:
        result.expand_tabs()
    return result


def confirm(question: str) -> None:
    """Ask on stderr; abort unless the user agrees."""
    click.confirm(terminal_safe(question), abort=True, err=True)


# -- standard output ----------------------------------------------------------------------


class OutputNotWritten(click.ClickException):
    """Standard output could not be written: a full device, a closed descriptor, a pipe whose reader left."""


def output_not_written(exc: OSError, what: str = "", consequence: str = "") -> OutputNotWritten:
    """The error for a failed write to standard output (``what`` was being written; ``consequence`` follows the
    cause). Standard output is pointed at the null device first: what is still buffered would fail again when
    the interpreter flushes it at exit, and print a traceback of its own."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor (a test runner's stream)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return OutputNotWritten(f"cannot write {what + ' ' if what else ''}to standard output: "
                            f"{exc.strerror or exc}{consequence}")


def closed_output(why: str = "") -> OutputNotWritten:
    """The error for standard output closed before the command began (Python then has no ``sys.stdout``)."""
    return OutputNotWritten(f"standard output is closed{why}")


def _printing(write: Callable[P, R]) -> Callable[P, R]:
    """``write`` (a method printing to standard output), with a failure to write told as ``OutputNotWritten``.
    A broken pipe goes on as it is: the reader has what it wanted, and the command line stops quietly."""

    @functools.wraps(write)
    def printing(*args: P.args, **kwargs: P.kwargs) -> R:
        if sys.stdout is None:
            raise closed_output()
        try:
            return write(*args, **kwargs)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise output_not_written(exc) from None

    return printing


@_printing
def print_plain(text: str) -> None:
    """Print a line as it is (text already made terminal-safe)."""
    click.echo(text)


#: The most rows a command draws as a rich table: past it, plain columns printed as they come (a rich table of
#: 100,000 rows holds every row, and takes a minute to draw, before it prints its first line).
TABLE_ROWS = 1000
#: The widest a column of ``print_columns`` is padded to (a longer value widens its own line only).
_WIDEST = 60


def print_columns(header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Rows as plain aligned columns, each cell made terminal-safe on one line (``None`` shown as ``-``); the
    columns are as wide as the first ``TABLE_ROWS`` rows need, and each block of that many is printed as soon as
    it is formed, so that a reader (``| head``) has the first lines at once. Returns how many rows were printed."""
    widths: list[int] = []
    shown = 0
    found = iter(rows)
    while block := [[terminal_safe("-" if cell is None else str(cell)) for cell in row]
                    for row in itertools.islice(found, TABLE_ROWS)]:
        if not widths:
            widths = [min(_WIDEST, max(len(cell) for cell in column))
                      for column in zip(header, *block, strict=True)]
            print_plain(_columns(header, widths))
        print_plain("\n".join(_columns(row, widths) for row in block))
        shown += len(block)
    return shown


def _columns(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


# -- options and values --------------------------------------------------------------------


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
    """A time for a table: local, to the second; with its UTC offset in the hour the clocks go back, whose local
    times each come twice (``--as-of`` reads the offset, so a time copied from a table names its moment)."""
    if moment is None:
        return "-"
    local = moment.astimezone()
    return local.isoformat(sep=" ", timespec="seconds") if _shown_twice(local) else local.strftime("%Y-%m-%d %H:%M:%S")


def _shown_twice(local: datetime) -> bool:
    """Whether the clocks show ``local``'s wall time twice (they were put back around it)."""
    stamp = local.timestamp()
    # Most times are a day or more from any change of the clocks: the same offset a day before and after says so
    # at a fraction of the cost of the two readings below (a listing prints two times a session).
    before, after = time.localtime(stamp - _DAY).tm_gmtoff, time.localtime(stamp + _DAY).tm_gmtoff
    if before == after and local.utcoffset() == timedelta(seconds=before):
        return False
    wall = local.replace(tzinfo=None)
    return wall.replace(fold=0).astimezone() != wall.replace(fold=1).astimezone()


_DAY = 86_400


def json_time(moment: datetime | None) -> str | None:
    """A time for JSON: local ISO 8601 with its offset, to the microsecond."""
    return None if moment is None else moment.astimezone().isoformat(timespec="microseconds")


def preview(text: str, width: int = 60) -> str:
    """One line of at most ``width`` characters standing for ``text``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless it is one ("1 event", "2 events")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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


def _dumps(document: object, *, indent: bool) -> str:
    try:
        return orjson.dumps(document, default=_default, option=orjson.OPT_INDENT_2 if indent else None).decode()
    except orjson.JSONEncodeError:
        # orjson refuses lone surrogates (a path given as a non-UTF-8 argument holds them); JSON can write them
        # as \udcXX escapes, from which json.loads and os.fsencode give back the path's bytes.
        return json.dumps(document, default=_default, indent=2 if indent else None,
                          separators=(",", ": ") if indent else (",", ":"))


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

    @_printing
    def json(self, document: object) -> None:
        """Print one JSON document."""
        click.echo(_dumps(document, indent=True))

    @_printing
    def json_lines(self, rows: Iterable[object]) -> None:
        """Print one compact JSON object a line, as the rows come."""
        for row in rows:
            click.echo(_dumps(row, indent=False))

    # -- people --------------------------------------------------------------------------

    @_printing
    def line(self, text: str | Text = "", style: str | None = None) -> None:
        """Print a line, made terminal-safe (no markup is interpreted in it, and it is not wrapped)."""
        self.console.print(safe_text(text), style=style, highlight=False, soft_wrap=True)

    @_printing
    def table(self, columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None,
              empty: str = "Nothing to show.", bodies: Collection[str] = ()) -> int:
        """Print a table; print ``empty`` instead when there are no rows. Returns the row count.

        Every cell and the title are made terminal-safe; cells of the ``bodies`` columns (message
        contents) keep their line breaks. Time columns stay on one line; the others wrap when the
        terminal is narrow.
        """
        table = Table(title=None if title is None else safe_text(title), title_justify="left", header_style="bold")
        for name in columns:
            if name in _TIME_COLUMNS:
                table.add_column(name, no_wrap=True, min_width=19)
            else:
                table.add_column(name, overflow="fold")
        count = 0
        for row in rows:
            table.add_row(*(safe_text(cell if isinstance(cell, Text) else "-" if cell is None else str(cell),
                                      body=name in bodies) for name, cell in zip(columns, row, strict=True)))
            count += 1
        if count:
            self.console.print(table)
        else:
            self.line(empty)
        return count

    def table_or_columns(self, columns: Sequence[str], rows: Iterable[Sequence[object]], count: int, *,
                         title: str | None = None, empty: str = "Nothing to show.", bodies: Collection[str] = ()
                         ) -> int:
        """``table`` of the ``count`` rows when they are at most ``TABLE_ROWS``, else ``print_columns`` of them
        (without the title: the columns start with their header). Returns the row count."""
        if count <= TABLE_ROWS:
            return self.table(columns, rows, title=title, empty=empty, bodies=bodies)
        return print_columns(columns, rows)

    @_printing
    def fields(self, pairs: Sequence[tuple[str, object]]) -> None:
        """Print ``name: value`` lines, aligned."""
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(Text.assemble((f"{name + ':':<{width + 1}} ", "bold"),
                                    safe_text("-" if value is None else str(value))))


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """A ``progress(done, total)`` callback drawing a bar on stderr when it is a terminal, else doing nothing.

    A total of 0 draws a spinner (the amount of work is not known).
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(terminal_safe(description), total=None)

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
    with console.status(safe_text(description)):
        yield


def _terminal_width() -> int | None:
    """The width of the terminal on stderr, if stderr is one."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns if sys.stderr.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None
