"""Folding a session from the log at the facade level: nearest snapshot plus the events after it.

This is where storage (log, snapshot bytes) meets the pure session fold in
``projections.session``; the facade and the auditor share it.
"""

from __future__ import annotations

import uuid

import attrs

from projections.session import SessionSnapshot, empty_snapshot, fold

from ._codec import decode_event, decode_value, encode_value
from ._environment import Transaction
from ._errors import EventStoreError
from ._log import EventLog, StoredEvent
from ._snapshots import SnapshotStore
from ._time import from_micros
from ._values import SessionView
from .events import RecordedEvent, SessionEvent

__all__ = ["SnapshotRecord", "encode_snapshot", "decode_snapshot", "to_recorded", "fold_stream", "view_of"]

#: Version of the snapshot layout; snapshots of another layout are ignored (they are derived data).
SNAPSHOT_FORMAT = 1


@attrs.frozen
class SnapshotRecord:
    """A stored snapshot: the folded session and the hash of the event it folds up to."""

    format: int
    event_hash: str
    state: SessionSnapshot


def encode_snapshot(state: SessionSnapshot, event_hash: bytes) -> bytes:
    return encode_value(SnapshotRecord(SNAPSHOT_FORMAT, event_hash.hex(), state))


def decode_snapshot(data: bytes) -> SnapshotRecord | None:
    """The snapshot, or ``None`` if it has another layout. Raises ``StoreCorrupted`` if damaged."""
    record = decode_value(data, SnapshotRecord)
    return record if record.format == SNAPSHOT_FORMAT else None


def to_recorded(entry: StoredEvent, event: SessionEvent | None = None) -> RecordedEvent:
    """The public form of a stored event, decoding it unless ``event`` is given."""
    if event is None:
        try:
            event = decode_event(entry.encoded)
        except EventStoreError as exc:
            raise type(exc)(f"position {entry.position}: {exc}") from None
    return RecordedEvent(entry.position, entry.session_key, entry.version, from_micros(entry.recorded_at),
                         event, uuid.UUID(bytes=entry.event_id), entry.hash.hex(), entry.payload_digest.hex(),
                         entry.redacted)


def fold_stream(txn: Transaction, log: EventLog, snapshots: SnapshotStore, stream_id: int, key: str,
                version: int) -> SessionSnapshot:
    """The session after its ``version``-th event; costs the events since the nearest snapshot."""
    state, start = empty_snapshot(key), 0
    found = snapshots.latest(txn, stream_id, version)
    if found is not None:
        record = decode_snapshot(found[1])
        if record is not None:
            state, start = record.state, found[0]
    return fold(state, (to_recorded(entry) for entry in log.read_stream(txn, stream_id, start, version)))


def view_of(state: SessionSnapshot) -> SessionView:
    """The public view of a folded session."""
    head = state.head
    return SessionView(head.key, head.version, head.exists, state.messages, head.metadata(), head.name, head.state)
