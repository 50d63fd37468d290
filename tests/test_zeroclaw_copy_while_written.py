"""Importing ``sessions.db`` while ZeroClaw writes it (WAL mode): the copy read is the source at one moment.

The database and its ``-wal`` file are copied one after the other; a writer that commits and checkpoints between
the two leaves a pair that disagrees. Each test plays that writer at a chosen point of the copy, deterministically:
it runs when the reader has read the database's bytes, before it reads the ``-wal`` file's or the database again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import SessionStore
from eventstore.events import MessageAppended
from eventstore.zeroclaw import SourceBusy, _source, _sqlite, import_workspace, read_sqlite

from test_zeroclaw_import import wal_writer


def add(db: sqlite3.Connection, content: str) -> None:
    db.execute("INSERT INTO sessions (session_key, role, content, created_at) VALUES "
               "('k', 'user', ?, '2026-01-01T00:00:00Z')", (content,))
    db.commit()


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """ZeroClaw's connection, kept open (so its ``-wal`` file stays): ``old`` checkpointed into the database,
    ``wal`` only in the ``-wal`` file."""
    db = wal_writer(tmp_path / "ws" / "sessions" / "sessions.db")
    add(db, "old")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    add(db, "wal")
    yield db
    db.close()


def checkpointed_commits(writer: sqlite3.Connection) -> Callable[[], None]:
    """Each call commits a message ("new 1", "new 2", ...) and checkpoints it into the database file, emptying
    the -wal file: what changes the database file itself."""
    count = iter(range(1, 100))

    def commit_and_checkpoint() -> None:
        add(writer, f"new {next(count)}")
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    return commit_and_checkpoint


def write_during_copies(monkeypatch: pytest.MonkeyPatch, copies: int, write: Callable[[], None]) -> list[str]:
    """Run ``write`` once the database's bytes are read, in each of the first ``copies`` reads of it; the
    digest of what each read of the database file gave is listed."""
    reads: list[str] = []
    real = _source.chunks

    def chunks(fd: int) -> Iterator[bytes]:
        data = b"".join(real(fd))
        if data.startswith(b"SQLite format 3\x00"):  # the database, not its -wal file
            reads.append(hashlib.sha256(data).hexdigest())
            if len(reads) <= copies:
                write()  # once its bytes are read
        yield data

    monkeypatch.setattr(_sqlite, "chunks", chunks)
    return reads


def test_a_commit_and_checkpoint_between_the_two_files_is_not_imported_torn(
        writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_during_copies(monkeypatch, 1, checkpointed_commits(writer))
    batch = read_sqlite(tmp_path / "ws" / "sessions" / "sessions.db")
    # A state the source was in: every commit, none lost to a database copied before the checkpoint.
    messages = [e.message.content for _, e in batch.sessions["k"] if isinstance(e, MessageAppended)]
    assert messages == ["old", "wal", "new 1"]
    source = tmp_path / "ws" / "sessions"
    held = (source / "sessions.db").read_bytes() + (source / "sessions.db-wal").read_bytes()
    assert (batch.size, batch.sha256) == (len(held), hashlib.sha256(held).hexdigest())  # what was imported


def test_commits_appended_to_the_wal_during_the_copy_need_no_second_copy(
        writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A commit lands in the -wal file only: the database file is unchanged, and the -wal file copied after
    it holds a state the database was in (SQLite recovers it up to its last whole commit)."""
    reads = write_during_copies(monkeypatch, 1, lambda: add(writer, "appended"))
    batch = read_sqlite(tmp_path / "ws" / "sessions" / "sessions.db")
    assert [e.message.content for _, e in batch.sessions["k"] if isinstance(e, MessageAppended)] == [
        "old", "wal", "appended"]
    assert len(reads) == 2  # the copy and the check that the database did not change


def test_a_source_changing_at_every_copy_is_reported_as_busy_not_as_no_database(
        writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_sqlite, "_FIRST_PAUSE", 0)
    reads = write_during_copies(monkeypatch, 100, checkpointed_commits(writer))
    with pytest.raises(SourceBusy, match=r"changed while it was read.*import again when ZeroClaw is idle"):
        read_sqlite(tmp_path / "ws" / "sessions" / "sessions.db")
    assert len(reads) == 2 * _sqlite.COPY_ATTEMPTS
    with SessionStore(tmp_path / "store") as store:
        result = import_workspace(store, tmp_path / "ws")
    assert [(s.status, "changed while it was read" in s.detail) for s in result.sources] == [("unreadable", True)]
