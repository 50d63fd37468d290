"""One source file of a ZeroClaw workspace: how it is opened, and what reading it gives.

A workspace is input we do not control. Only regular files are read, opened
without blocking (a FIFO is reported, never waited on); a symbolic link is
followed only to a file inside the workspace; a file over ``MAX_FILE_BYTES`` is
not read, and a line (or row) over ``MAX_LINE_BYTES`` is skipped. A time that
does not parse, that the store cannot record (before 1970, past year 9999) or
that is in the future by the importing store's clock (``latest_time``) counts as a bad time and the time
before it is used. Each such source or line
is reported and the import goes on with the next one.

Reading a source gives a ``SourceBatch`` of events (``_jsonl``, ``_sqlite``), or a ``SourceResult`` saying why
it was not read; importing a batch gives a ``SourceResult`` too (``_importing``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import attrs

from .._errors import EventStoreError
from .._files import file_kind
from .._time import CLOCK_SKEW, Clock
from ..events import MessageAppended, SessionEvent

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_BYTES", "EPOCH", "BLANK", "NOT_JSON", "NOT_A_MESSAGE", "INVALID_UTF8",
           "BAD_KEY", "TOO_LONG", "Progress", "TimedEvents", "NotAWorkspace", "RefusedSource", "SourceBusy",
           "SkippedLine", "SourceBatch", "SourceResult", "open_source", "chunks", "recordable_time", "latest_time",
           "modification_time"]

Progress = Callable[[int, int], None]
TimedEvents = list[tuple[datetime, SessionEvent]]

#: The largest source file read, in bytes: a larger one is reported and not read.
MAX_FILE_BYTES = 1 << 30
#: The longest JSONL line (or SQLite message, role and content) imported, in bytes: a longer one is skipped.
MAX_LINE_BYTES = 16 << 20

#: Why an input line or row was skipped.
BLANK, NOT_JSON, NOT_A_MESSAGE, INVALID_UTF8, BAD_KEY, TOO_LONG = (
    "blank", "not JSON", "not a message", "invalid UTF-8", "invalid session key",
    f"longer than {MAX_LINE_BYTES >> 20} MiB")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen
class SkippedLine:
    """An input line (JSONL) or row (SQLite, by ``id``) that was not imported, and why: ``reason`` is one of
    the constants above, ``detail`` what it concerns (for ``BAD_KEY``, the key, escaped, and what is wrong with
    it). Line 0 is no line: a key taken from the file's name, or a ``session_metadata`` row."""

    line: int
    reason: str
    detail: str = ""


@attrs.frozen
class SourceBatch:
    """One source file read into events, ready for ``SessionStore.import_sessions``.

    Attributes:
        path: the source file.
        kind: ``"jsonl"`` or ``"sqlite"``.
        size, sha256: of the file's bytes (for a database, its ``-wal`` file's bytes follow).
        sessions: events by session key, each with its original time.
        skipped: lines or rows that were not imported.
        empty_sessions: keys that had nothing to import (a JSONL file whose every line was skipped).
        bad_times: timestamps that did not parse, were before 1970 or in the future (the time before them was
            used).
    """

    path: Path
    kind: str
    size: int
    sha256: str
    sessions: dict[str, TimedEvents]
    skipped: tuple[SkippedLine, ...] = ()
    empty_sessions: tuple[str, ...] = ()
    bad_times: int = 0

    @property
    def messages(self) -> int:
        return sum(isinstance(e, MessageAppended) for timed in self.sessions.values() for _, e in timed)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))


@attrs.frozen
class SourceResult:
    """What importing one source did.

    Attributes:
        status: ``"imported"``; ``"unchanged"`` (imported before, nothing added);
            ``"changed"`` (changed since its import, not merged); ``"empty"`` (no
            valid message, nothing imported); ``"unreadable"`` (not a ZeroClaw file,
            or an I/O error); ``"refused"`` (not read: not a regular file, a link
            leaving the workspace, or too large); ``"failed"`` (the store refused it).
        sessions, messages, events: what was written.
        existing_keys: keys already in the store, reported and not merged.
        detail: a sentence for ``"unreadable"``, ``"refused"``, ``"failed"`` and ``"changed"``.
    """

    batch: SourceBatch | None
    path: Path
    kind: str
    status: str
    sessions: int = 0
    messages: int = 0
    events: int = 0
    existing_keys: tuple[str, ...] = ()
    detail: str = ""


class NotAWorkspace(EventStoreError, ValueError):
    """The path holds no ZeroClaw sessions."""


class SourceBusy(EventStoreError):
    """A source that changed each time it was read (ZeroClaw writing it): no consistent copy of it was had."""


class RefusedSource(EventStoreError, ValueError):
    """A source file that is not read: not a regular file, a link leaving the workspace, or too large."""


@contextlib.contextmanager
def open_source(path: Path, roots: Sequence[Path] | None) -> Iterator[tuple[int, os.stat_result]]:
    """The source opened for reading with its status, if it is a regular file (inside ``roots``, if given).

    The path is resolved first and the resolved path opened with ``O_NOFOLLOW``
    and ``O_NONBLOCK``; what was opened is checked with ``fstat``, so a FIFO or
    device is never read, and a file swapped in meanwhile is seen as it is.

    Raises:
        RefusedSource: a link leaving ``roots``, not a regular file, or over ``MAX_FILE_BYTES``.
        OSError: it cannot be opened.
    """
    real = Path(os.path.realpath(path))
    if roots is not None and not any(real.is_relative_to(root) for root in roots):
        raise RefusedSource(f"a symbolic link to {real}, outside the workspace; not read")
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedSource(f"{file_kind(info.st_mode)}, not a regular file; not read")
        if info.st_size > MAX_FILE_BYTES:
            raise RefusedSource(f"{info.st_size} bytes, over the {MAX_FILE_BYTES >> 30} GiB limit; not read")
        yield fd, info
    finally:
        os.close(fd)


def chunks(fd: int) -> Iterator[bytes]:
    """The bytes of an open source, a chunk at a time, stopping with ``RefusedSource`` past ``MAX_FILE_BYTES``
    (the file may have grown since it was checked)."""
    size = 0
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise RefusedSource(f"over the {MAX_FILE_BYTES >> 30} GiB limit; not read")
        yield chunk


def recordable_time(moment: datetime | None, latest: datetime) -> datetime | None:
    """``moment`` if the store can record an event at it (not before 1970) and it is not later than ``latest``
    (``latest_time``), else ``None``."""
    return moment if moment is not None and EPOCH <= moment <= latest else None


def latest_time(clock: Clock) -> datetime:
    """The latest time an imported event may have: ``clock`` (the importing store's) plus ``CLOCK_SKEW``. An
    audit store takes no event from the future (``SessionStore.import_sessions`` refuses one, by its clock)."""
    return clock() + CLOCK_SKEW


def modification_time(info: os.stat_result, latest: datetime) -> datetime | None:
    """A file's modification time, if the store can record it and it is not later than ``latest``."""
    try:
        return recordable_time(datetime.fromtimestamp(info.st_mtime, UTC), latest)
    except (OverflowError, OSError, ValueError):  # a time past year 9999, or outside the platform's range
        return None
