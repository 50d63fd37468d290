"""The two peers the core benchmark runs against: ZeroClaw's SQLite store and its JSONL layout, in Python.

Both keep the slice of the ``SessionBackend`` contract that the benchmark uses
(``append``, ``append_many``, ``load``, ``remove_last``,
``list_sessions_with_metadata``) and return our public value types, so the three
stores answer the same calls with the same objects. They follow ZeroClaw's
layouts and durability; they are deliberately plain ports, not tuned rewrites:

* ``SqliteSessions``: ZeroClaw's schema (``sessions`` rows with an index on the
  key, ``session_metadata``, an FTS5 table kept by triggers), WAL,
  ``synchronous=FULL``, one transaction per call, RFC 3339 ``+00:00`` times;
  its search, unranked as ZeroClaw's or ranked by ``bm25()``, for the scale benchmark.
* ``JsonlSessions``: ``sessions/<sanitized key>.jsonl``, one ``{"role","content"}``
  object a line, open-append-write-fsync per call; ``remove_last`` rewrites the
  file (temporary file, fsync, rename); metadata comes from file stats.

Messages are built with ``ChatMessage``'s normal (validating) constructor.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from eventstore import ChatMessage, SessionMetadata

__all__ = ["SqliteSessions", "JsonlSessions", "sanitize_key"]


def _now_rfc3339() -> str:
    # chrono's to_rfc3339() in ZeroClaw: an explicit +00:00 offset.
    return datetime.now(UTC).isoformat()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    role        TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_sessions_key ON sessions(session_key);

CREATE TABLE IF NOT EXISTS session_metadata (
    session_key     TEXT PRIMARY KEY,
    created_at      TEXT,
    last_activity   TEXT,
    message_count   INTEGER,
    name            TEXT,
    state           TEXT,
    turn_id         TEXT,
    turn_started_at TEXT
);

CREATE VIRTUAL TABLE IF NOT EXISTS sessions_fts USING fts5(
    content, content='sessions', content_rowid='id'
);

CREATE TRIGGER IF NOT EXISTS sessions_ai AFTER INSERT ON sessions BEGIN
    INSERT INTO sessions_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS sessions_ad AFTER DELETE ON sessions BEGIN
    INSERT INTO sessions_fts(sessions_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER IF NOT EXISTS sessions_au AFTER UPDATE ON sessions BEGIN
    INSERT INTO sessions_fts(sessions_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO sessions_fts(rowid, content) VALUES (new.id, new.content);
END;
"""

_INSERT = "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)"
_UPSERT = """
INSERT INTO session_metadata (session_key, created_at, last_activity, message_count)
VALUES (?, ?, ?, ?)
ON CONFLICT(session_key) DO UPDATE SET
    last_activity = excluded.last_activity,
    message_count = message_count + excluded.message_count
"""


_SYNCHRONOUS = {True: "FULL", False: "OFF", "full": "FULL", "normal": "NORMAL", "off": "OFF"}


class SqliteSessions:
    """ZeroClaw's SQLite session store: ``<path>/sessions/sessions.db``."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool | str = True) -> None:
        """``durable``: ``True``/``"full"``, ``"normal"`` or ``False``/``"off"``, as ``SessionStore`` takes it."""
        self.path = Path(path)
        (self.path / "sessions").mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / "sessions" / "sessions.db"
        # Autocommit mode; every call opens its own explicit transaction.
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durable]}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteSessions:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def append(self, key: str, message: ChatMessage) -> None:
        now = _now_rfc3339()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_INSERT, (key, message.role, message.content, now))
            db.execute(_UPSERT, (key, now, now, 1))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def append_many(self, key: str, messages: Iterable[ChatMessage]) -> None:
        now = _now_rfc3339()
        rows = [(key, m.role, m.content, now) for m in messages]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_INSERT, rows)
            db.execute(_UPSERT, (key, now, now, len(rows)))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load(self, key: str) -> list[ChatMessage]:
        rows = self._db.execute(
            "SELECT role, content FROM sessions WHERE session_key = ? ORDER BY id", (key,)
        ).fetchall()
        return [ChatMessage(role, content) for role, content in rows]

    def remove_last(self, key: str) -> bool:
        now = _now_rfc3339()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed = db.execute(
                "DELETE FROM sessions WHERE id = "
                "(SELECT id FROM sessions WHERE session_key = ? ORDER BY id DESC LIMIT 1)", (key,)
            ).rowcount
            if removed:
                db.execute(
                    "UPDATE session_metadata SET message_count = MAX(message_count - 1, 0), last_activity = ? "
                    "WHERE session_key = ?", (now, key)
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return bool(removed)

    def list_sessions_with_metadata(self) -> list[SessionMetadata]:
        rows = self._db.execute(
            "SELECT session_key, name, created_at, last_activity, message_count "
            "FROM session_metadata ORDER BY last_activity DESC"
        ).fetchall()
        parse = datetime.fromisoformat
        return [SessionMetadata(key, name, parse(created), parse(last), count)
                for key, name, created, last, count in rows]

    def get_session_metadata(self, key: str) -> SessionMetadata | None:
        row = self._db.execute(
            "SELECT name, created_at, last_activity, message_count FROM session_metadata WHERE session_key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        name, created, last, count = row
        return SessionMetadata(key, name, datetime.fromisoformat(created), datetime.fromisoformat(last), count)

    def session_exists(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM session_metadata WHERE session_key = ?", (key,)).fetchone() is not None

    def search(self, keyword: str, limit: int = 50) -> list[SessionMetadata]:
        """ZeroClaw's search: each word quoted, OR-ed, ``DISTINCT`` session keys up to ``limit``, unranked.

        Upstream's FTS5 table also holds ``session_key``; this schema's holds the
        content only, so the key comes from ``sessions`` by rowid, which is what
        an external-content FTS5 table reads a column from anyway.
        """
        rows = self._db.execute(
            "SELECT DISTINCT s.session_key FROM sessions_fts f JOIN sessions s ON s.id = f.rowid "
            "WHERE sessions_fts MATCH ? LIMIT ?", (_fts_any(keyword), limit)
        ).fetchall()
        return self._metadata_of(key for (key,) in rows)

    def search_ranked(self, keyword: str, limit: int = 50) -> list[SessionMetadata]:
        """The same words ranked by ``bm25()``: sessions by their best message, best first (as ours ranks)."""
        rows = self._db.execute(
            # MATERIALIZED: a flattened subquery would call bm25() outside the full-text query, which FTS5 refuses.
            "WITH hit AS MATERIALIZED (SELECT rowid, bm25(sessions_fts) AS score FROM sessions_fts "
            "WHERE sessions_fts MATCH ?) SELECT s.session_key, MIN(hit.score) AS best FROM hit "
            "JOIN sessions s ON s.id = hit.rowid GROUP BY s.session_key ORDER BY best LIMIT ?",
            (_fts_any(keyword), limit)
        ).fetchall()
        return self._metadata_of(key for key, _ in rows)

    def _metadata_of(self, keys: Iterable[str]) -> list[SessionMetadata]:
        found = (self.get_session_metadata(key) for key in keys)
        return [metadata for metadata in found if metadata is not None]


def _fts_any(keyword: str) -> str:
    """ZeroClaw's FTS5 query for a keyword: every word as a quoted string, OR-ed."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in keyword.split())


_UNSAFE = re.compile(r"[^\w-]")


def sanitize_key(key: str) -> str:
    """ZeroClaw's file name for a key: every character but a letter, digit, ``_`` or ``-`` becomes ``_``."""
    return _UNSAFE.sub("_", key)


def _fsync_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlSessions:
    """ZeroClaw's JSONL layout: ``<path>/sessions/<sanitized key>.jsonl``."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.dir = self.path / "sessions"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durable = durable

    def close(self) -> None:
        pass

    def __enter__(self) -> JsonlSessions:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _file(self, key: str) -> Path:
        return self.dir / f"{sanitize_key(key)}.jsonl"

    def _append_bytes(self, key: str, data: bytes) -> None:
        fd = os.open(self._file(key), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, key: str, message: ChatMessage) -> None:
        self._append_bytes(key, orjson.dumps({"role": message.role, "content": message.content}) + b"\n")

    def append_many(self, key: str, messages: Iterable[ChatMessage]) -> None:
        lines = [orjson.dumps({"role": m.role, "content": m.content}) for m in messages]
        if lines:
            self._append_bytes(key, b"\n".join(lines) + b"\n")

    def load(self, key: str) -> list[ChatMessage]:
        try:
            data = self._file(key).read_bytes()
        except FileNotFoundError:
            return []
        messages = []
        # Split on \n only: splitlines() would also break on U+2028 inside JSON strings.
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                messages.append(ChatMessage(entry["role"], entry["content"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # ZeroClaw skips corrupt lines
        return messages

    def remove_last(self, key: str) -> bool:
        path = self._file(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        body = data.rstrip(b"\n")
        if not body.strip():
            return False
        cut = body.rfind(b"\n")
        kept = b"" if cut < 0 else body[:cut + 1]
        temporary = path.with_name(path.name + ".tmp")
        if self.durable:
            _fsync_write(temporary, kept)
        else:
            temporary.write_bytes(kept)
        os.replace(temporary, path)
        return True

    def list_sessions_with_metadata(self) -> list[SessionMetadata]:
        found = []
        with os.scandir(self.dir) as entries:
            for entry in entries:
                if not entry.name.endswith(".jsonl"):
                    continue
                stat = entry.stat()
                with open(entry.path, "rb") as handle:
                    count = handle.read().count(b"\n")
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(SessionMetadata(entry.name[:-6], None, modified, modified, count))
        found.sort(key=lambda m: m.last_activity, reverse=True)
        return found
