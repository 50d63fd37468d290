"""Snapshots taken again from the log of a session with a restore recorded without its creation time (older
imports let one in): each one past such a restore holds the creation time a fold gives it, so point-in-time reads
start from it, not from the session's first event."""

from __future__ import annotations

from pathlib import Path

import attrs

from eventstore import ChatMessage, SessionStore
from eventstore._folding import read_snapshot_record
from eventstore.events import MessageAppended, SessionEvent, SessionRestored

from test_import_integrity import sealed

EVERY = 2


def _without_creation_time(restored_version: int) -> SessionRestored:
    with attrs.validators.disabled():
        return SessionRestored(restored_version, True, (), "restored", None, None)


def _timeline() -> list[tuple[str, SessionEvent]]:
    """``k``: three appends, a restore to version 1 without its creation time (version 4), two appends more."""
    appends = [("k", MessageAppended(ChatMessage.user(f"m{i}"))) for i in range(5)]
    return [*appends[:3], ("k", _without_creation_time(1)), *appends[3:]]


def test_snapshots_past_such_a_restore_are_taken_with_its_creation_time(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with attrs.validators.disabled(), SessionStore(path, snapshot_every=EVERY) as store:
        store.replicate(sealed(_timeline()))
        # Older code's redaction or rebuild dropped them, and left no record that they are complete.
        def as_older_code_left_it(txn):
            stream_id = store._log.stream_id(txn, "k")
            assert stream_id is not None
            store._snapshots.delete_stream(txn, stream_id)
            txn.delete(store._checkpoints._db, b"snapshots")

        store._write(as_older_code_left_it)
    with SessionStore(path, snapshot_every=EVERY) as store:
        created = store.session_at("k", version=1).metadata.created_at
        with store._read() as txn:
            stream_id = store._log.stream_id(txn, "k")
            assert stream_id is not None
            assert [2, 4, 6] == store._snapshots.stream_versions(txn, stream_id)
            for version in (4, 6):
                record = read_snapshot_record(stream_id, store._snapshots.get(txn, stream_id, version) or b"")
                assert record is not None and created == record.head.created_at, version
        for version in range(1, 7):
            assert created == store.session_at("k", version=version).metadata.created_at
