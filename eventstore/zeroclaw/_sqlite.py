"""ZeroClaw's SQLite sessions database read into a batch (``read_sqlite``).

``sessions.db`` holds ``sessions(id, session_key, role, content,
created_at)`` and ``session_metadata(session_key, created_at, last_activity,
message_count, name, state, turn_id, turn_started_at, ...)``, times as
RFC 3339 strings. Older files lack ``name`` or the state columns. The database
is only ever read: it is copied (with its ``-wal`` file) into a temporary
directory first, since even a read-only SQLite open may create files beside it.
ZeroClaw may be writing meanwhile (in WAL mode, to both files), and a database
and a ``-wal`` file copied one after the other may then disagree; so the
database is read again after the copy, which is used only if it did not change
(``_consistent_copy``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from .._errors import EventStoreError, shown
from .._time import Clock, system_clock
from .._values import ChatMessage, validate_key
from ..events import MessageAppended, SessionEvent, SessionRenamed, SessionStateChanged
from ._source import (
    BAD_KEY,
    EPOCH,
    INVALID_UTF8,
    MAX_LINE_BYTES,
    NOT_A_MESSAGE,
    TOO_LONG,
    NotAWorkspace,
    SkippedLine,
    SourceBatch,
    SourceBusy,
    TimedEvents,
    chunks,
    latest_time,
    modification_time,
    open_source,
    recordable_time,
)

__all__ = ["COPY_ATTEMPTS", "parse_time", "read_sqlite"]

#: How many times ``sessions.db`` is copied before a source that changes each time is reported (``SourceBusy``).
COPY_ATTEMPTS = 5
#: The pause before the second copy, in seconds, doubled before each further one: time for a writer to finish.
_FIRST_PAUSE = 0.05


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime (a time without offset is UTC); ``None`` if it does not parse."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        return None


def _text(value: object) -> str | None:
    """A SQLite TEXT value (read as bytes) as str; ``None`` for NULL, invalid UTF-8 or another type."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


@attrs.define
class _Timeline:
    """A session's events being put in time order (private to ``read_sqlite``)."""

    events: TimedEvents = attrs.field(factory=list)

    def add(self, moment: datetime, event: SessionEvent) -> None:
        self.events.append((moment, event))

    def insert_by_time(self, moment: datetime, event: SessionEvent) -> None:
        """Insert after every event at or before ``moment`` (messages keep their order)."""
        index = len(self.events)
        while index and self.events[index - 1][0] > moment:
            index -= 1
        self.events.insert(index, (moment, event))

    def monotonic(self) -> TimedEvents:
        result: TimedEvents = []
        for moment, event in self.events:
            if result and moment < result[-1][0]:
                moment = result[-1][0]
            result.append((moment, event))
        return result


def read_sqlite(path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None,
                clock: Clock = system_clock) -> SourceBatch:
    """Read ZeroClaw's ``sessions.db``: every session's messages with their times, its name and its state.

    The file (and its ``-wal`` file, if any) is copied to a temporary directory
    and read there, so the source is never touched; the copy is taken again
    (``COPY_ATTEMPTS`` times in all) while a checkpoint changes the database
    during it. ``size``
    and ``sha256`` are those of the bytes copied. Rows whose role or content
    is not valid text, or longer than ``MAX_LINE_BYTES``, are skipped and listed
    by ``id``. Missing ``name`` or state columns (older files) are tolerated. A time past ``clock`` (the
    importing store's) plus ``CLOCK_SKEW`` is a bad time (``latest_time``).

    Raises:
        NotAWorkspace: the file is not a ZeroClaw sessions database.
        SourceBusy: it changed while it was copied, each time.
        RefusedSource: it or its ``-wal`` file is not a regular file, is over ``MAX_FILE_BYTES``, or (with
            ``roots``) is a link leaving them.
        OSError: it cannot be read.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="eventstore-zeroclaw-") as scratch:
        copy = Path(scratch) / "sessions.db"
        size, sha256, info = _consistent_copy(path, copy, roots)
        try:
            connection = sqlite3.connect(copy)
        except sqlite3.Error as exc:
            raise NotAWorkspace(f"{path}: cannot open the database: {exc}") from None
        try:
            connection.text_factory = bytes
            rows, metadata = _query(connection, path)
        finally:
            connection.close()
    latest = latest_time(clock)
    return _build_sessions(path, size, sha256, modification_time(info, latest), rows, metadata, latest)


def _consistent_copy(path: Path, copy: Path, roots: Sequence[Path] | None) -> tuple[int, str, os.stat_result]:
    """Copy the database, then its ``-wal`` file, to ``copy`` and beside it, as they were at one moment; their
    size and SHA-256, and the database's status.

    In WAL mode a writer appends its commits to the ``-wal`` file, each frame checksummed, and SQLite recovers a
    ``-wal`` file up to its last whole commit: a copy of it taken while commits are appended is a state the
    database was in, provided the database file itself did not change meanwhile. That changes only when a
    checkpoint moves the ``-wal`` file's pages into it; so the database is read again after the copy, and the
    copy is taken again if it differs.

    Raises:
        SourceBusy: the database changed during each of ``COPY_ATTEMPTS`` copies.
    """
    wal = path.with_name(path.name + "-wal")
    wal_copy = copy.with_name(wal.name)
    for attempt in range(COPY_ATTEMPTS):
        if attempt:
            time.sleep(_FIRST_PAUSE * 2 ** (attempt - 1))
        wal_copy.unlink(missing_ok=True)  # an earlier attempt's, from a -wal file that may be gone now
        sha = hashlib.sha256()
        size, info = _copy_source(path, copy, roots, sha)
        if os.path.lexists(wal):
            size += _copy_source(wal, wal_copy, roots, sha)[0]
        if _holds(path, copy, roots):
            return size, sha.hexdigest(), info
    raise SourceBusy(f"{path} changed while it was read, {COPY_ATTEMPTS} times (ZeroClaw writing to it); "
                     "import again when ZeroClaw is idle")


def _copy_source(source: Path, target: Path, roots: Sequence[Path] | None, sha: hashlib._Hash
                 ) -> tuple[int, os.stat_result]:
    """Copy a source file to ``target``, adding its bytes to ``sha``; its size and status."""
    size = 0
    with open_source(source, roots) as (fd, info), open(target, "wb") as out:
        for chunk in chunks(fd):
            sha.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, info


def _holds(source: Path, copy: Path, roots: Sequence[Path] | None) -> bool:
    """Whether ``source`` still holds the bytes of ``copy``."""
    with open_source(source, roots) as (fd, _info), open(copy, "rb") as copied:
        for chunk in chunks(fd):
            if copied.read(len(chunk)) != chunk:
                return False
        return not copied.read(1)


def _refuse_computed_tables(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse a ``sessions`` or ``session_metadata`` that is not a plain table: ZeroClaw writes none, and a
    view (a recursive one never ends), a virtual table or a generated column runs the file's own SQL on every
    read, which could make endless or gigabyte-long rows from a few bytes."""
    for table in ("sessions", "session_metadata"):
        found = connection.execute("SELECT type, sql FROM sqlite_master WHERE name = ? COLLATE NOCASE",
                                   (table,)).fetchone()
        if found is None:
            continue
        kind, sql = _text(found[0]), _text(found[1]) or ""
        computed = kind == "table" and any(column[6] in (2, 3) for column in  # 2, 3: generated columns
                                           connection.execute(f"PRAGMA table_xinfo({table})"))
        if kind != "table" or sql.lstrip().upper().startswith("CREATE VIRTUAL") or computed:
            what = "has generated columns" if computed else f"is a {kind if kind != 'table' else 'virtual table'}"
            raise NotAWorkspace(f"{path} is not a ZeroClaw sessions database: its {table} {what}, which ZeroClaw "
                                "never writes; not read")


def _query(connection: sqlite3.Connection, path: Path) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, object]]]:
    try:
        _refuse_computed_tables(connection, path)
        # typeof(): ZeroClaw reads these columns as text, so a BLOB or number in them is no message.
        rows = connection.execute(
            "SELECT id, session_key, role, content, created_at, "
            "typeof(session_key) = 'text' AND typeof(role) = 'text' AND typeof(content) = 'text' "
            "FROM sessions ORDER BY id").fetchall()
        columns = {_text(row[1]) for row in connection.execute("PRAGMA table_info(session_metadata)")}
        metadata: dict[str, dict[str, object]] = {}
        if "session_key" in columns:
            wanted = [c for c in ("session_key", "created_at", "last_activity", "name", "state", "turn_id",
                                  "turn_started_at") if c in columns]
            for row in connection.execute(f"SELECT {', '.join(wanted)} FROM session_metadata"):
                record = dict(zip(wanted, row, strict=True))
                key = _text(record["session_key"])
                if key is not None:
                    metadata[key] = record
    except sqlite3.DatabaseError as exc:
        raise NotAWorkspace(f"{path} is not a ZeroClaw sessions database: {exc}") from None
    return rows, metadata


def _build_sessions(path: Path, size: int, sha256: str, file_time: datetime | None,
                    rows: list[tuple[Any, ...]], metadata: dict[str, dict[str, object]], latest: datetime
                    ) -> SourceBatch:
    def _usable_time(value: object) -> datetime | None:
        """A stored RFC 3339 time, if it parses, the store can record it and it is not in the future."""
        return recordable_time(parse_time(value), latest)

    skipped: list[SkippedLine] = []
    bad_times = int(file_time is None)
    fallback = file_time or EPOCH
    messages: dict[str, list[tuple[datetime | None, ChatMessage]]] = {}
    first_rows: dict[str, int] = {}  # the first message row of each key, to name a bad key by
    for row_id, raw_key, raw_role, raw_content, raw_time, all_text in rows:
        if not all_text:
            skipped.append(SkippedLine(row_id, NOT_A_MESSAGE))
            continue
        if len(raw_role) + len(raw_content) > MAX_LINE_BYTES:  # text columns, read as bytes
            skipped.append(SkippedLine(row_id, TOO_LONG))
            continue
        key, role, content = _text(raw_key), _text(raw_role), _text(raw_content)
        if key is None or role is None or content is None:
            undecodable = any(isinstance(v, bytes) and _text(v) is None for v in (raw_key, raw_role, raw_content))
            skipped.append(SkippedLine(row_id, INVALID_UTF8 if undecodable else NOT_A_MESSAGE))
            continue
        try:
            message = ChatMessage(role, content)
        except EventStoreError:
            skipped.append(SkippedLine(row_id, NOT_A_MESSAGE))
            continue
        moment = _usable_time(raw_time)
        if moment is None:
            bad_times += 1
        messages.setdefault(key, []).append((moment, message))
        first_rows.setdefault(key, row_id)

    sessions: dict[str, TimedEvents] = {}
    keys = list(messages) + [k for k in metadata if k not in messages]
    for key in keys:
        try:
            validate_key(key)
        except EventStoreError as exc:
            where = "" if key in first_rows else ", in session_metadata"
            skipped.append(SkippedLine(first_rows.get(key, 0), BAD_KEY, f"{shown(key, 80)}{where}: {exc}"))
            continue
        meta = metadata.get(key, {})
        created = _usable_time(meta.get("created_at"))
        last_activity = _usable_time(meta.get("last_activity"))
        bad_times += sum(meta.get(c) is not None and _usable_time(meta.get(c)) is None
                         for c in ("created_at", "last_activity", "turn_started_at"))
        timeline = _Timeline()
        known = [m for m, _ in messages.get(key, []) if m is not None]
        start = min([t for t in (created, *known[:1]) if t is not None], default=last_activity or fallback)
        name = _text(meta.get("name"))
        if name:
            timeline.add(start, SessionRenamed(name))
        previous = start
        for moment, message in messages.get(key, []):
            previous = moment or previous
            timeline.add(previous, MessageAppended(message))
        state = _text(meta.get("state"))
        if state:
            started = _usable_time(meta.get("turn_started_at"))
            when = started if state == "running" and started is not None else (last_activity or previous)
            timeline.insert_by_time(max(when, start), SessionStateChanged(state, _text(meta.get("turn_id"))))
        if not timeline.events:
            # A metadata row alone is a session with no messages, as an empty JSONL file is: ZeroClaw lists
            # both. It is created without a name, as ``set_session_name(key, "")`` creates one.
            timeline.add(start, SessionRenamed(None))
        sessions[key] = timeline.monotonic()
    return SourceBatch(path, "sqlite", size, sha256, sessions, tuple(skipped), (), bad_times)
