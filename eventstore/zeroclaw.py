"""ZeroClaw interchange: read a ZeroClaw workspace's sessions into import batches, write ZeroClaw JSONL.

What lives here and why: ``eventstore import zeroclaw`` and ``eventstore export
--format jsonl`` move history between ZeroClaw and this store. The parsing of
ZeroClaw's two session backends and the building of events live here, free of
click, so they are tested on their own and the command line stays thin.

ZeroClaw keeps sessions in ``WORKSPACE/sessions/``:

* ``<key>.jsonl``: one ``{"role", "content"}`` object a line, no times. The
  file name is the key with every character other than a Unicode letter, digit,
  ``_`` or ``-`` replaced by ``_`` (so the original key may be lost; the file
  name is the key we import). ZeroClaw splits lines on ``\\n`` only and skips
  blank, corrupt and non-UTF-8 lines; so do we (Python's ``splitlines`` would
  also break on U+2028 inside JSON strings). Imported messages get the file's
  modification time.
* ``sessions.db`` (SQLite): ``sessions(id, session_key, role, content,
  created_at)`` and ``session_metadata(session_key, created_at, last_activity,
  message_count, name, state, turn_id, turn_started_at, ...)``, times as
  RFC 3339 strings. Older files lack ``name`` or the state columns.

Tool calls have no field of their own: they are JSON documents packed into
``content``, which is kept exactly. Source files are only ever read: the
database is copied (with its ``-wal`` file) into a temporary directory first,
since even a read-only SQLite open may create files beside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import attrs
import orjson

from ._errors import EventStoreError, SourceChanged
from ._store import SessionStore
from ._values import ChatMessage, ImportOutcome, validate_key
from .events import MessageAppended, SessionEvent, SessionRenamed, SessionStateChanged

__all__ = [
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
    "write_jsonl",
    "export_jsonl",
]

Progress = Callable[[int, int], None]
TimedEvents = list[tuple[datetime, SessionEvent]]

#: Why an input line or row was skipped.
BLANK, NOT_JSON, NOT_A_MESSAGE, INVALID_UTF8, BAD_KEY = (
    "blank", "not JSON", "not a message", "invalid UTF-8", "invalid session key")


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
            valid message, nothing imported); ``"unreadable"`` (not a ZeroClaw file).
        sessions, messages, events: what was written.
        existing_keys: keys already in the store, reported and not merged.
        detail: a sentence for ``"unreadable"`` and ``"changed"``.
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


def _digest(paths: Iterable[Path]) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    for path in paths:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                sha.update(chunk)
                size += len(chunk)
    return size, sha.hexdigest()


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


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


def read_jsonl(path: str | os.PathLike[str]) -> SourceBatch:
    """Read one ZeroClaw JSONL session file; the file name without ``.jsonl`` is the key.

    Lines are split on ``\\n`` only; blank lines, lines that are not JSON or not a
    message, and invalid UTF-8 are skipped and listed. Every message gets the
    file's modification time.
    """
    path = Path(path)
    data = path.read_bytes()
    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    key = path.name[: -len(".jsonl")]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no line
    moment = _mtime(path)
    events: TimedEvents = []
    skipped = []
    for number, raw in enumerate(lines, 1):
        found = parse_message(raw)
        if isinstance(found, str):
            skipped.append(SkippedLine(number, found))
        else:
            events.append((moment, MessageAppended(found)))
    try:
        validate_key(key)
    except EventStoreError:
        return SourceBatch(path, "jsonl", size, sha256, {}, tuple(skipped) + (SkippedLine(0, BAD_KEY),))
    sessions = {key: events} if events else {}
    return SourceBatch(path, "jsonl", size, sha256, sessions, tuple(skipped), () if events else (key,))


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
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


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


def read_sqlite(path: str | os.PathLike[str]) -> SourceBatch:
    """Read ZeroClaw's ``sessions.db``: every session's messages with their times, its name and its state.

    The file (and its ``-wal`` file, if any) is copied to a temporary directory
    and read there, so the source is never touched. Rows whose role or content
    is not valid text are skipped and listed by ``id``. Missing ``name`` or
    state columns (older files) are tolerated.

    Raises:
        NotAWorkspace: the file is not a ZeroClaw sessions database.
    """
    path = Path(path)
    wal = path.with_name(path.name + "-wal")
    sources = [path] + ([wal] if wal.is_file() else [])
    size, sha256 = _digest(sources)
    fallback = _mtime(path)
    with tempfile.TemporaryDirectory(prefix="eventstore-zeroclaw-") as scratch:
        copy = Path(scratch) / "sessions.db"
        shutil.copyfile(path, copy)
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name("sessions.db-wal"))
        try:
            connection = sqlite3.connect(copy)
        except sqlite3.Error as exc:
            raise NotAWorkspace(f"{path}: cannot open the database: {exc}") from None
        try:
            connection.text_factory = bytes
            rows, metadata = _query(connection, path)
        finally:
            connection.close()
    return _build_sessions(path, size, sha256, fallback, rows, metadata)


def _query(connection: sqlite3.Connection, path: Path) -> tuple[list[tuple], dict[str, dict[str, object]]]:
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


def _build_sessions(path: Path, size: int, sha256: str, fallback: datetime, rows: list[tuple],
                    metadata: dict[str, dict[str, object]]) -> SourceBatch:
    skipped: list[SkippedLine] = []
    bad_times = 0
    messages: dict[str, list[tuple[datetime | None, ChatMessage]]] = {}
    for row_id, raw_key, raw_role, raw_content, raw_time, all_text in rows:
        if not all_text:
            skipped.append(SkippedLine(row_id, NOT_A_MESSAGE))
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
        moment = parse_time(raw_time)
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
        created = parse_time(meta.get("created_at"))
        last_activity = parse_time(meta.get("last_activity"))
        bad_times += sum(meta.get(c) is not None and parse_time(meta.get(c)) is None
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
            started = parse_time(meta.get("turn_started_at"))
            when = started if state == "running" and started is not None else (last_activity or previous)
            timeline.insert_by_time(max(when, start), SessionStateChanged(state, _text(meta.get("turn_id"))))
        if timeline.events:
            sessions[key] = timeline.monotonic()
        else:
            empty.append(key)
    return SourceBatch(path, "sqlite", size, sha256, sessions, tuple(skipped), tuple(empty), bad_times)


def read_workspace(workspace: str | os.PathLike[str]) -> list[SourceBatch | SourceResult]:
    """Read every source of a workspace: ``sessions.db`` first (it has names, states and times), then
    each ``*.jsonl`` file by name. A source that cannot be read comes back as an ``"unreadable"`` result."""
    directory = sessions_dir(workspace)
    found: list[SourceBatch | SourceResult] = []
    database = directory / "sessions.db"
    if database.is_file():
        try:
            found.append(read_sqlite(database))
        except (NotAWorkspace, OSError) as exc:
            found.append(SourceResult(None, database, "sqlite", "unreadable", detail=str(exc)))
    for path in sorted(directory.glob("*.jsonl")):
        try:
            found.append(read_jsonl(path))
        except OSError as exc:
            found.append(SourceResult(None, path, "jsonl", "unreadable", detail=str(exc)))
    return found


def _import_batch(store: SessionStore, batch: SourceBatch) -> SourceResult:
    if not batch.sessions:
        return SourceResult(batch, batch.path, batch.kind, "empty")
    try:
        outcome: ImportOutcome = store.import_sessions(batch.sessions, source=str(batch.path.resolve()),
                                                       size=batch.size, sha256=batch.sha256)
    except SourceChanged:
        return SourceResult(batch, batch.path, batch.kind, "changed",
                            detail="changed since it was imported; not merged")
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
    events in the store is reported in ``existing_keys``, not merged.

    Raises:
        NotAWorkspace: the path holds no ZeroClaw sessions.
    """
    sources = read_workspace(workspace)
    results = []
    for done, source in enumerate(sources, 1):
        results.append(source if isinstance(source, SourceResult) else _import_batch(store, source))
        if progress is not None:
            progress(done, len(sources))
    return WorkspaceImport(Path(workspace), tuple(results))


# -- writing -------------------------------------------------------------------------


def sanitize_key(key: str) -> str:
    """The file name stem ZeroClaw uses for ``key``: every character other than a Unicode letter,
    digit, ``_`` or ``-`` becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in key)


def write_jsonl(path: str | os.PathLike[str], messages: Sequence[ChatMessage]) -> None:
    """Write messages as a ZeroClaw JSONL session file (one compact ``{"role","content"}`` object a line)."""
    Path(path).write_bytes(b"".join(orjson.dumps({"role": m.role, "content": m.content}) + b"\n"
                                    for m in messages))


@attrs.frozen
class JsonlExport:
    """What ``export_jsonl`` wrote: file per key, and keys not written (with why)."""

    written: dict[str, Path]
    not_written: dict[str, str]


def export_jsonl(store: SessionStore, keys: Sequence[str], directory: str | os.PathLike[str], *,
                 overwrite: bool = False, progress: Progress | None = None) -> JsonlExport:
    """Write each live session's current messages to ``DIRECTORY/<sanitized key>.jsonl``.

    A key whose file exists (unless ``overwrite``), whose sanitized name another
    key of the export already took, or that is not a live session is reported in
    ``not_written``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    not_written: dict[str, str] = {}
    taken: dict[str, str] = {}
    for done, key in enumerate(keys, 1):
        stem = sanitize_key(key)
        target = directory / f"{stem}.jsonl"
        if not store.session_exists(key):
            not_written[key] = "no such session"
        elif stem in taken:
            not_written[key] = f"its file name {target.name} is taken by {taken[stem]!r}"
        elif target.exists() and not overwrite:
            not_written[key] = f"{target} exists"
        else:
            write_jsonl(target, store.load(key))
            written[key] = target
            taken[stem] = key
        if progress is not None:
            progress(done, len(keys))
    return JsonlExport(written, not_written)
