"""ZeroClaw interchange: read a ZeroClaw workspace's sessions into import batches, write ZeroClaw JSONL.

What lives here and why: ``eventstore import zeroclaw`` and ``eventstore export
--format jsonl`` move history between ZeroClaw and this store. The parsing of
ZeroClaw's two session backends and the building of events live here, free of
click, so they are tested on their own and the command line stays thin.

ZeroClaw keeps sessions in ``WORKSPACE/sessions/``:

* ``<key>.jsonl``: one ``{"role", "content"}`` object a line, no times. The
  file name is the key with every character other than a Unicode letter, digit,
  ``_`` or ``-`` replaced by ``_`` (so the original key may be lost; the file
  name is the key we import, unless the first line is a ``{"session_key": KEY}``
  record, which our export writes and ZeroClaw skips). ZeroClaw splits lines on
  ``\\n`` only and skips blank, corrupt and non-UTF-8 lines; so do we (Python's
  ``splitlines`` would also break on U+2028 inside JSON strings). Imported
  messages get the file's modification time. An empty or blank file is a
  session with no messages (ZeroClaw lists it; clearing a session empties it).
* ``sessions.db`` (SQLite): ``sessions(id, session_key, role, content,
  created_at)`` and ``session_metadata(session_key, created_at, last_activity,
  message_count, name, state, turn_id, turn_started_at, ...)``, times as
  RFC 3339 strings. Older files lack ``name`` or the state columns.

Tool calls have no field of their own: they are JSON documents packed into
``content``, which is kept exactly. Source files are only ever read: the
database is copied (with its ``-wal`` file) into a temporary directory first,
since even a read-only SQLite open may create files beside it.

A workspace is input we do not control. Only regular files are read, opened
without blocking (a FIFO is reported, never waited on); a symbolic link is
followed only to a file inside the workspace; a file over ``MAX_FILE_BYTES`` is
not read, and a line (or row) over ``MAX_LINE_BYTES`` is skipped. A time that
does not parse or that the store cannot record (before 1970, past year 9999)
counts as a bad time and the time before it is used. Each such source or line
is reported and the import goes on with the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import stat
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import orjson

from ._errors import EventStoreError, InvalidArgument, SourceChanged
from ._files import TargetExists, UnsafeTarget, atomic_write, check_target, file_kind, open_directory
from ._store import SessionStore
from ._values import ChatMessage, ImportOutcome, validate_key
from .events import MessageAppended, SessionEvent, SessionRenamed, SessionStateChanged

__all__ = [
    "MANIFEST_NAME",
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "MAX_NAME_BYTES",
    "JsonlExport",
    "NotAWorkspace",
    "RefusedSource",
    "SkippedLine",
    "SourceBatch",
    "SourceResult",
    "WorkspaceImport",
    "sessions_dir",
    "sanitize_key",
    "read_jsonl",
    "read_sqlite",
    "read_workspace",
    "import_workspace",
    "jsonl_bytes",
    "plan_file_names",
    "export_jsonl",
]

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

#: The field of the record that names a JSONL file's session when the file name is not the key.
KEY_FIELD = "session_key"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen
class SkippedLine:
    """An input line (JSONL) or row (SQLite, by ``id``) that was not imported, and why."""

    line: int
    reason: str


@attrs.frozen
class SourceBatch:
    """One source file read into events, ready for ``SessionStore.import_sessions``.

    Attributes:
        path: the source file.
        kind: ``"jsonl"`` or ``"sqlite"``.
        size, sha256: of the file's bytes (for a database, its ``-wal`` file's bytes follow).
        sessions: events by session key, each with its original time.
        skipped: lines or rows that were not imported.
        empty_sessions: keys that had nothing to import (no message, name or state).
        bad_times: timestamps that did not parse (the time before them was used).
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


@attrs.frozen
class WorkspaceImport:
    """What ``import_workspace`` did, source by source."""

    workspace: Path
    sources: tuple[SourceResult, ...]

    @property
    def sessions(self) -> int:
        return sum(r.sessions for r in self.sources)

    @property
    def messages(self) -> int:
        return sum(r.messages for r in self.sources)

    @property
    def skipped_lines(self) -> int:
        return sum(len(r.batch.skipped) for r in self.sources if r.batch is not None)


class NotAWorkspace(EventStoreError, ValueError):
    """The path holds no ZeroClaw sessions."""


class RefusedSource(EventStoreError, ValueError):
    """A source file that is not read: not a regular file, a link leaving the workspace, or too large."""


# -- reading -------------------------------------------------------------------------


def sessions_dir(workspace: str | os.PathLike[str]) -> Path:
    """The directory holding the workspace's sessions: ``WORKSPACE/sessions``, or WORKSPACE itself
    when it directly holds ``*.jsonl`` files or ``sessions.db``.

    Raises:
        NotAWorkspace: neither holds ZeroClaw sessions.
    """
    root = Path(workspace)
    if not root.is_dir():
        raise NotAWorkspace(f"{root} is not a directory; give the ZeroClaw workspace directory")
    for candidate in (root / "sessions", root):
        if candidate.is_dir() and ((candidate / "sessions.db").is_file() or any(candidate.glob("*.jsonl"))):
            return candidate
    raise NotAWorkspace(f"no ZeroClaw sessions in {root} (looked for sessions/*.jsonl and sessions/sessions.db)")


@contextlib.contextmanager
def _open_source(path: Path, roots: Sequence[Path] | None) -> Iterator[tuple[int, os.stat_result]]:
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


def _chunks(fd: int) -> Iterator[bytes]:
    """The bytes of an open source, a chunk at a time, stopping with ``RefusedSource`` past ``MAX_FILE_BYTES``
    (the file may have grown since it was checked)."""
    size = 0
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise RefusedSource(f"over the {MAX_FILE_BYTES >> 30} GiB limit; not read")
        yield chunk


def recordable_time(moment: datetime | None) -> datetime | None:
    """``moment`` if the store can record an event at it (not before 1970), else ``None``."""
    return moment if moment is not None and moment >= _EPOCH else None


def _file_time(info: os.stat_result) -> datetime | None:
    """A file's modification time, if the store can record it."""
    try:
        return recordable_time(datetime.fromtimestamp(info.st_mtime, UTC))
    except (OverflowError, OSError, ValueError):  # a time past year 9999, or outside the platform's range
        return None


def parse_message(raw: bytes) -> ChatMessage | str:
    """A JSONL line as a message, or the reason it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    if not text.strip():
        return BLANK
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return NOT_JSON
    if not isinstance(data, dict):
        return NOT_A_MESSAGE
    role, content = data.get("role"), data.get("content")
    if not isinstance(role, str) or not isinstance(content, str):
        return NOT_A_MESSAGE
    try:
        return ChatMessage(role, content)
    except EventStoreError:
        return NOT_A_MESSAGE


def _key_record(raw: bytes) -> str | None:
    """The key a ``{"session_key": KEY}`` line names (the first line our export writes when needed), if it is one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or list(data) != [KEY_FIELD] or not isinstance(data[KEY_FIELD], str):
        return None
    try:
        return validate_key(data[KEY_FIELD])
    except EventStoreError:
        return None


def read_jsonl(path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None) -> SourceBatch:
    """Read one ZeroClaw JSONL session file; the file name without ``.jsonl`` is the key, unless the
    first line is a ``{"session_key": KEY}`` record.

    Lines are split on ``\\n`` only; blank lines, lines that are not JSON or not a
    message, invalid UTF-8 and lines over ``MAX_LINE_BYTES`` are skipped and
    listed. Every message gets the file's modification time. A file with no
    line but blank ones is a session with no messages (recorded as a session
    without a name, as ``set_session_name(key, "")`` would create it).

    Raises:
        RefusedSource: not a regular file, over ``MAX_FILE_BYTES``, or (with ``roots``) a link leaving them.
        OSError: it cannot be read.
    """
    path = Path(path)
    with _open_source(path, roots) as (fd, info):
        data = b"".join(_chunks(fd))
    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no line
    recorded_key = _key_record(lines[0]) if lines else None
    key = recorded_key or path.name[: -len(".jsonl")]
    moment = _file_time(info)
    bad_times = int(moment is None)
    moment = moment or _EPOCH
    events: TimedEvents = []
    skipped = []
    for number, raw in enumerate(lines, 1):
        if number == 1 and recorded_key is not None:
            continue
        found = TOO_LONG if len(raw) > MAX_LINE_BYTES else parse_message(raw)
        if isinstance(found, str):
            skipped.append(SkippedLine(number, found))
        else:
            events.append((moment, MessageAppended(found)))
    try:
        validate_key(key)
    except EventStoreError:
        return SourceBatch(path, "jsonl", size, sha256, {}, (*skipped, SkippedLine(0, BAD_KEY)), (), bad_times)
    if not events and all(s.reason == BLANK for s in skipped):
        events.append((moment, SessionRenamed(None)))
    sessions = {key: events} if events else {}
    return SourceBatch(path, "jsonl", size, sha256, sessions, tuple(skipped), () if events else (key,), bad_times)


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


def read_sqlite(path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None) -> SourceBatch:
    """Read ZeroClaw's ``sessions.db``: every session's messages with their times, its name and its state.

    The file (and its ``-wal`` file, if any) is copied to a temporary directory
    and read there, so the source is never touched. Rows whose role or content
    is not valid text, or longer than ``MAX_LINE_BYTES``, are skipped and listed
    by ``id``. Missing ``name`` or state columns (older files) are tolerated.

    Raises:
        NotAWorkspace: the file is not a ZeroClaw sessions database.
        RefusedSource: it or its ``-wal`` file is not a regular file, is over ``MAX_FILE_BYTES``, or (with
            ``roots``) is a link leaving them.
        OSError: it cannot be read.
    """
    path = Path(path)
    wal = path.with_name(path.name + "-wal")
    sha = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="eventstore-zeroclaw-") as scratch:
        copy = Path(scratch) / "sessions.db"
        size, info = _copy_source(path, copy, roots, sha)
        if os.path.lexists(wal):
            size += _copy_source(wal, copy.with_name(wal.name), roots, sha)[0]
        try:
            connection = sqlite3.connect(copy)
        except sqlite3.Error as exc:
            raise NotAWorkspace(f"{path}: cannot open the database: {exc}") from None
        try:
            connection.text_factory = bytes
            rows, metadata = _query(connection, path)
        finally:
            connection.close()
    return _build_sessions(path, size, sha.hexdigest(), _file_time(info), rows, metadata)


def _copy_source(source: Path, target: Path, roots: Sequence[Path] | None, sha: hashlib._Hash
                 ) -> tuple[int, os.stat_result]:
    """Copy a source file to ``target``, adding its bytes to ``sha``; its size and status."""
    size = 0
    with _open_source(source, roots) as (fd, info), open(target, "xb") as out:
        for chunk in _chunks(fd):
            sha.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, info


def _query(connection: sqlite3.Connection, path: Path) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, object]]]:
    try:
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


def _usable_time(value: object) -> datetime | None:
    """A stored RFC 3339 time, if it parses and the store can record it."""
    return recordable_time(parse_time(value))


def _build_sessions(path: Path, size: int, sha256: str, file_time: datetime | None,
                    rows: list[tuple[Any, ...]], metadata: dict[str, dict[str, object]]) -> SourceBatch:
    skipped: list[SkippedLine] = []
    bad_times = int(file_time is None)
    fallback = file_time or _EPOCH
    messages: dict[str, list[tuple[datetime | None, ChatMessage]]] = {}
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

    sessions: dict[str, TimedEvents] = {}
    empty: list[str] = []
    keys = list(messages) + [k for k in metadata if k not in messages]
    for key in keys:
        try:
            validate_key(key)
        except EventStoreError:
            skipped.append(SkippedLine(0, BAD_KEY))
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
        if timeline.events:
            sessions[key] = timeline.monotonic()
        else:
            empty.append(key)
    return SourceBatch(path, "sqlite", size, sha256, sessions, tuple(skipped), tuple(empty), bad_times)


def _sources(directory: Path) -> list[tuple[Path, str]]:
    """The workspace's sources in import order: ``sessions.db`` first (it has names, states and times), then
    each ``*.jsonl`` entry by name (whatever it is: what is not a regular file is reported when read)."""
    database = directory / "sessions.db"
    found = [(database, "sqlite")] if os.path.lexists(database) else []
    return found + [(path, "jsonl") for path in sorted(directory.glob("*.jsonl"))]


def _read_source(path: Path, kind: str, roots: Sequence[Path]) -> SourceBatch | SourceResult:
    """One source read into a batch, or the result saying why it was not read."""
    try:
        return read_sqlite(path, roots=roots) if kind == "sqlite" else read_jsonl(path, roots=roots)
    except RefusedSource as exc:
        return SourceResult(None, path, kind, "refused", detail=str(exc))
    except NotAWorkspace as exc:
        return SourceResult(None, path, kind, "unreadable", detail=str(exc))
    except OSError as exc:
        return SourceResult(None, path, kind, "unreadable", detail=f"cannot read it: {exc.strerror or exc}")


def _workspace_sources(workspace: str | os.PathLike[str]) -> tuple[list[tuple[Path, str]], tuple[Path, ...]]:
    """The sources to read, and the directories a symbolic link among them may point into."""
    directory = sessions_dir(workspace)
    roots = tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in (workspace, directory)))
    return _sources(directory), roots


def read_workspace(workspace: str | os.PathLike[str]) -> list[SourceBatch | SourceResult]:
    """Read every source of a workspace (see ``_sources`` for the order). A source that is not read comes
    back as a result: ``"refused"`` (not a regular file inside the workspace, or too large) or
    ``"unreadable"``.

    Raises:
        NotAWorkspace: the path holds no ZeroClaw sessions.
    """
    sources, roots = _workspace_sources(workspace)
    return [_read_source(path, kind, roots) for path, kind in sources]


def _import_batch(store: SessionStore, batch: SourceBatch) -> SourceResult:
    if not batch.sessions:
        return SourceResult(batch, batch.path, batch.kind, "empty")
    try:
        outcome: ImportOutcome = store.import_sessions(batch.sessions, source=str(batch.path.resolve()),
                                                       size=batch.size, sha256=batch.sha256)
    except SourceChanged:
        return SourceResult(batch, batch.path, batch.kind, "changed",
                            detail="changed since it was imported; not merged")
    except InvalidArgument as exc:  # data the store cannot hold; the next source may be fine
        return SourceResult(batch, batch.path, batch.kind, "failed", detail=f"not imported: {exc}")
    if outcome.already_imported:
        return SourceResult(batch, batch.path, batch.kind, "unchanged")
    imported = {k: v for k, v in batch.sessions.items() if k not in outcome.skipped}
    return SourceResult(batch, batch.path, batch.kind, "imported", outcome.receipt.sessions,
                        sum(isinstance(e, MessageAppended) for timed in imported.values() for _, e in timed),
                        outcome.receipt.events, outcome.skipped)


def import_workspace(store: SessionStore, workspace: str | os.PathLike[str],
                     progress: Progress | None = None) -> WorkspaceImport:
    """Import every session of a ZeroClaw workspace into ``store``, one transaction per source file.

    Idempotent: each source's receipt (name, size, SHA-256) is committed with
    its events, so a second import adds nothing; a source changed since its
    import is reported (``"changed"``), not merged; a key that already has
    events in the store is reported in ``existing_keys``, not merged. A source
    that is not read or that the store refuses is reported, and the import goes
    on with the next. Sources are read one at a time, each just before its import.

    Raises:
        NotAWorkspace: the path holds no ZeroClaw sessions.
    """
    sources, roots = _workspace_sources(workspace)
    results = []
    for done, (path, kind) in enumerate(sources, 1):
        source = _read_source(path, kind, roots)
        results.append(source if isinstance(source, SourceResult) else _import_batch(store, source))
        if progress is not None:
            progress(done, len(sources))
    return WorkspaceImport(Path(workspace), tuple(results))


# -- writing -------------------------------------------------------------------------


def sanitize_key(key: str) -> str:
    """The file name stem ZeroClaw uses for ``key``: every character other than a Unicode letter,
    digit, ``_`` or ``-`` becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in key)


#: The file an export writes last into its directory: which file holds which session.
MANIFEST_NAME = "eventstore-manifest.json"
#: The ``format`` field of the manifest.
MANIFEST_FORMAT = "eventstore.jsonl-export"
#: The longest file name an export writes, in bytes (most file systems' limit); a longer ZeroClaw name is hashed.
MAX_NAME_BYTES = 255
#: How much of the sanitized key a hashed name keeps in front, in bytes, so that it stays readable.
_HASHED_PREFIX_BYTES = 100


def _caseless(name: str) -> str:
    """The form under which two names are the same file on a case-insensitive or normalizing file system."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _encodable(name: str) -> bool:
    try:
        return len(os.fsencode(name)) <= MAX_NAME_BYTES
    except UnicodeError:
        return False


def _hashed_name(key: str) -> str:
    """``<start of the sanitized key>.<128 bits of the key's SHA-256>.jsonl``: never too long, never equal to
    another key's name, never equal to a ZeroClaw name (which has no ``.`` before ``.jsonl``)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    prefix = sanitize_key(key).encode()[:_HASHED_PREFIX_BYTES].decode("utf-8", "ignore")
    return f"{prefix}.{digest}.jsonl" if _encodable(prefix) else f"{digest}.jsonl"


def plan_file_names(keys: Sequence[str]) -> dict[str, str]:
    """The file name of each key's export, all decided before any is written.

    A key keeps ZeroClaw's name (``<sanitized key>.jsonl``) when it fits in
    ``MAX_NAME_BYTES``, the file system can encode it, and no other key of the
    export has the same name up to case and Unicode normalization; otherwise it
    gets a hashed name (``_hashed_name``). The real key is in the file's first
    line and in the manifest whenever the name does not say it.
    """
    plain = {key: f"{sanitize_key(key)}.jsonl" for key in keys}
    uses = Counter(_caseless(name) for name in plain.values())
    return {key: name if _encodable(name) and uses[_caseless(name)] == 1 else _hashed_name(key)
            for key, name in plain.items()}


def jsonl_bytes(messages: Sequence[ChatMessage], key: str | None = None) -> bytes:
    """Messages as a ZeroClaw JSONL session file (one compact ``{"role","content"}`` object a line), after a
    ``{"session_key": key}`` line if ``key`` is given (ZeroClaw skips it; ``read_jsonl`` takes the key from it)."""
    lines = [orjson.dumps({KEY_FIELD: key})] if key is not None else []
    lines += [orjson.dumps({"role": m.role, "content": m.content}) for m in messages]
    return b"".join(line + b"\n" for line in lines)


@attrs.frozen
class JsonlExport:
    """What ``export_jsonl`` wrote: file per key, keys not written (with why), and the manifest (if written)."""

    written: dict[str, Path]
    not_written: dict[str, str]
    manifest: Path | None = None


def _read_manifest(directory_fd: int, shown: Path, overwrite: bool) -> dict[str, str]:
    """The sessions an earlier export's manifest lists; ``{}`` if there is none.

    Raises:
        UnsafeTarget: the manifest's name is a symbolic link or not a regular file.
        TargetExists: a file of that name that is no manifest, unless ``overwrite``.
    """
    check_target(directory_fd, MANIFEST_NAME, shown, replace=True)
    try:
        fd = os.open(MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
    except FileNotFoundError:
        return {}
    try:
        data = orjson.loads(b"".join(_chunks(fd)))
    except (orjson.JSONDecodeError, RefusedSource):
        data = None
    finally:
        os.close(fd)
    sessions = data.get("sessions") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
    if isinstance(sessions, dict) and all(isinstance(v, str) for v in sessions.values()):
        return sessions
    if overwrite:
        return {}
    raise TargetExists(f"{shown} exists and is not an export manifest; pass --force to replace it")


def export_jsonl(store: SessionStore, keys: Sequence[str], directory: str | os.PathLike[str], *,
                 overwrite: bool = False, progress: Progress | None = None) -> JsonlExport:
    """Write each live session's current messages into ``directory`` as ZeroClaw JSONL files, then the manifest.

    File names come from ``plan_file_names``. Every file is written whole or
    not at all, never through a symbolic link (see ``eventstore._files``). A
    key that is not a live session, or whose file is a symbolic link, not a
    regular file, or exists (unless ``overwrite``) is reported in
    ``not_written``. The manifest (``MANIFEST_NAME``: ``{"format", "version",
    "sessions": {key: file name}}``) is written last, keeping an earlier
    export's entries for other keys and other file names.

    Raises:
        UnsafeTarget: ``directory`` is not a directory, or the manifest's name is a link or not a regular file.
        TargetExists: a file named like the manifest that is not one (unless ``overwrite``).
        WriteFailed: a write failed (a full disk, say); the files written before it stay, complete, and no
            partial or temporary file is left.
    """
    keys = list(dict.fromkeys(keys))
    names = plan_file_names(keys)
    directory = Path(directory)
    written: dict[str, Path] = {}
    not_written: dict[str, str] = {}
    with open_directory(directory, create=True) as directory_fd:
        manifest = directory / MANIFEST_NAME
        earlier = _read_manifest(directory_fd, manifest, overwrite)
        for done, key in enumerate(keys, 1):
            name = names[key]
            if not store.session_exists(key):
                not_written[key] = "no such session"
            else:
                try:
                    with atomic_write(directory_fd, name, directory / name, replace=overwrite) as stream:
                        stream.write(jsonl_bytes(store.load(key), None if name == f"{key}.jsonl" else key))
                    written[key] = directory / name
                except (UnsafeTarget, TargetExists) as exc:
                    not_written[key] = str(exc)
            if progress is not None:
                progress(done, len(keys))
        if not written:
            return JsonlExport(written, not_written)
        taken = {_caseless(path.name) for path in written.values()}
        entries = {k: v for k, v in earlier.items() if k not in written and _caseless(v) not in taken}
        entries.update((key, path.name) for key, path in written.items())
        with atomic_write(directory_fd, MANIFEST_NAME, manifest, replace=True) as stream:
            stream.write(orjson.dumps({"format": MANIFEST_FORMAT, "version": 1, "sessions": entries},
                                      option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return JsonlExport(written, not_written, manifest)
