"""Sessions at the facade level: folded from the nearest snapshot plus the events after it, and snapshotted.

This is where storage (log, snapshot bytes) meets the pure session fold in
``projections.session``; the facade and the auditor share it. A snapshot is a
record (the session's head and the digests of its message blobs) and the
blobs themselves, shared between snapshots: they are the message read model's
chunks, byte for byte.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import NamedTuple

import attrs
import orjson

from projections.chunk import DamagedChunk, decode_entries, layout, message_count
from projections.session import (
    EDIT_KINDS,
    Change,
    Entry,
    SessionHead,
    SessionSnapshot,
    empty_snapshot,
    fold,
    untouched_prefix,
)

from ._codec import bulk_decoding, decode_event, decode_value, encode_value
from ._errors import EventStoreError, IncompatibleStore, InvalidArgument, InvalidVersion, StoreCorrupted, shown
from ._log import EventLog, StoredEvent
from ._snapshots import SnapshotStore
from ._time import aware_micros, from_micros
from ._values import SessionView
from .events import EVENT_TYPES, RecordedEvent, SessionEvent, SessionRestored
from .storage import ReadTransaction, WriteTransaction

__all__ = ["SnapshotRecord", "LogChange", "take_snapshot", "read_snapshot", "read_snapshot_record", "read_blob",
           "to_recorded", "log_changes", "fold_stream", "view_of", "resolve_version", "derive_snapshots",
           "RestoredCreationTimes"]

#: Version of the snapshot layout; snapshots of another layout are ignored (they are derived data).
SNAPSHOT_FORMAT = 3


@attrs.frozen
class SnapshotRecord:
    """A stored snapshot: the session's head, its message blobs (digests, and how many messages each holds),
    and the hash of the event it folds up to."""

    format: int
    event_hash: str
    head: SessionHead
    chunks: list[str]
    counts: list[int]


def _untouched_blobs(record: SnapshotRecord, untouched: int) -> tuple[list[str], list[int], int]:
    """The leading blobs of ``record`` that hold only messages below ``untouched`` (no event since touched them):
    their digests, their message counts, and the index of the first message they do not hold."""
    kept: list[str] = []
    counts: list[int] = []
    start = 0
    for digest, count in zip(record.chunks, record.counts):
        if start + count > untouched:
            break
        kept.append(digest)
        counts.append(count)
        start += count
    return kept, counts, start


def take_snapshot(txn: WriteTransaction, log: EventLog, snapshots: SnapshotStore, stream_id: int, head: SessionHead,
                  chunks_from: Callable[[int], list[bytes] | None], event_hash: bytes,
                  recent: Sequence[Change] = ()) -> None:
    """Store the session as it is now as the snapshot of its version (``head.version``, whose event hash is
    ``event_hash``); ``chunks_from(index)`` gives the message read model's stored chunks from an index on
    (``None`` if no chunk begins there).

    The blobs of a snapshot are those chunks, byte for byte: taking one copies
    and hashes bytes, with no message decoded or encoded. Blobs are shared by
    digest, and the leading ones of the nearest earlier snapshot that no event
    since touched are kept without being read. The events since that snapshot
    are looked at only for their types (``recent``, this commit's own, are at
    hand). So a long session's snapshot costs its recent changes, not its length.
    """
    found = snapshots.latest(txn, stream_id, head.version)
    record = None if found is None else read_snapshot_record(stream_id, found[1])
    kept: list[str] = []
    counts: list[int] = []
    start = 0
    if found is not None and record is not None:
        recent_types = [type(change.event) for change in recent if change.version > found[0]]
        logged = log.stream_type_names(txn, stream_id, found[0], head.version - len(recent_types))
        types = [*map(_event_type, logged), *recent_types]
        kept, counts, start = _untouched_blobs(
            record, untouched_prefix(record.head.message_count, (EDIT_KINDS.get(kind) for kind in types)))
    values = chunks_from(start)
    while values is None and kept:
        # No chunk begins there: the last blob kept was then the open chunk, which appends have since grown.
        start -= counts.pop()
        kept.pop()
        values = chunks_from(start)
    try:
        complete = values is not None and start + sum(map(message_count, values)) == head.message_count
    except DamagedChunk:
        complete = False
    if not complete:
        # The read models disagree with themselves (verify reports it): take the snapshot from the log.
        state = fold_stream(txn, log, snapshots, stream_id, head.key, head.version)
        head, kept, counts, values = state.head, [], [], [value for _, value in layout(state.messages)]
    _put_snapshot(txn, snapshots, stream_id, head, kept, counts, values or (), event_hash)


def _put_snapshot(txn: WriteTransaction, snapshots: SnapshotStore, stream_id: int, head: SessionHead,
                  kept: list[str], counts: list[int], values: Iterable[bytes], event_hash: bytes) -> SnapshotRecord:
    """Store the snapshot of ``head``: the blobs ``kept`` (with their message ``counts``), then ``values`` as new
    blobs; return its record."""
    for value in values:
        kept.append(snapshots.put_blob(txn, stream_id, value).hex())
        counts.append(message_count(value))
    record = SnapshotRecord(SNAPSHOT_FORMAT, event_hash.hex(), head, kept, counts)
    snapshots.put(txn, stream_id, head.version, encode_value(record))
    return record


def derive_snapshots(txn: WriteTransaction, log: EventLog, snapshots: SnapshotStore, stream_id: int, key: str,
                     every: int) -> int:
    """Take, folded from the log, the snapshots the session lacks: one at each multiple of ``every`` up to its
    version with no snapshot of this layout in the ``every`` versions up to it (all of them, where some are of
    another layout). Returns how many it took.

    Commands take a snapshot at each multiple as they go, so gaps are what a redaction or a rebuild of the
    messages dropped, or what older code left (another layout, or dropped the same ways). Each snapshot
    keeps the blobs of the one before whose messages no event between touched, so a long session costs
    about one pass over its events and its messages.
    """
    version = log.held_stream_version(txn, stream_id)  # each multiple of ``every`` up to it is a target
    stored = snapshots.stream_versions(txn, stream_id)
    held = [held for held in stored if _usable(txn, snapshots, stream_id, held)]
    if len(held) < len(stored):
        # Some are of another layout, with blobs of its own that no snapshot of this one would name: all go.
        snapshots.delete_stream(txn, stream_id)
        held = []
    wanted = [target for target in range(every, version + 1, every)
              if bisect.bisect_right(held, target) == bisect.bisect_right(held, target - every)]
    state, previous = empty_snapshot(key), None
    for target in wanted:
        kept: list[str] = []
        counts: list[int] = []
        start = 0
        if previous is None:
            state = fold_stream(txn, log, snapshots, stream_id, key, target)
            event_hash = log.read_version(txn, stream_id, target).hash
        else:
            changes = list(log_changes(log.read_stream(txn, stream_id, previous.head.version, target),
                                       RestoredCreationTimes(txn, log, snapshots)))
            state, event_hash = fold(state, changes), changes[-1].hash
            kept, counts, start = _untouched_blobs(previous, untouched_prefix(
                previous.head.message_count, (EDIT_KINDS.get(type(change.event)) for change in changes)))
        values = [value for _, value in layout(state.messages[start:])]
        previous = _put_snapshot(txn, snapshots, stream_id, state.head, kept, counts, values, event_hash)
    return len(wanted)


def _usable(txn: ReadTransaction, snapshots: SnapshotStore, stream_id: int, version: int) -> bool:
    """Whether the stored snapshot is one a fold starts from (this layout); a damaged one counts as held, for
    ``verify`` to name."""
    try:
        return read_snapshot_record(stream_id, snapshots.get(txn, stream_id, version) or b"") is not None
    except StoreCorrupted:
        return True


def _event_type(type_name: str) -> type[SessionEvent]:
    kind = EVENT_TYPES.get(type_name)
    if kind is None:
        raise IncompatibleStore(f"unknown event type {type_name!r}")
    return kind


def read_snapshot(txn: ReadTransaction, snapshots: SnapshotStore, stream_id: int, data: bytes
                  ) -> tuple[SnapshotRecord, SessionSnapshot] | None:
    """The snapshot and the session it holds; ``None`` if it has another layout.

    Raises:
        StoreCorrupted: the snapshot or one of its blobs is damaged or missing.
    """
    record = read_snapshot_record(stream_id, data)
    if record is None:
        return None
    entries: list[Entry] = []
    # Blob by blob: a long session's decoded columns never sit in memory all at once (cache-friendly).
    with bulk_decoding():
        for digest, count in zip(record.chunks, record.counts):
            entries += read_blob(txn, snapshots, stream_id, digest, count)
    if len(entries) != record.head.message_count:
        raise StoreCorrupted(f"a snapshot of stream {stream_id} holds {len(entries)} messages, "
                             f"not the {record.head.message_count} of its head")
    return record, SessionSnapshot(record.head, tuple(entries))


def read_snapshot_record(stream_id: int, data: bytes) -> SnapshotRecord | None:
    """A snapshot's record (head, blob digests) without reading its blobs; ``None`` for another layout, or one
    older code took that no fold uses."""
    try:
        if orjson.loads(data).get("format") != SNAPSHOT_FORMAT:
            return None
    except (orjson.JSONDecodeError, AttributeError):
        raise StoreCorrupted(f"a snapshot of stream {stream_id} is damaged") from None
    record = decode_value(data, SnapshotRecord)
    if len(record.chunks) != len(record.counts):
        raise StoreCorrupted(f"a snapshot of stream {stream_id} is damaged: its blobs and counts differ in number")
    head = record.head
    if head.exists and head.last_activity is None:
        raise StoreCorrupted(f"a snapshot of stream {stream_id} is damaged: it holds a live session without the "
                             "time it was last active")
    # Taken by older code of a session restored without its creation time: not used (folds give it the time).
    if head.exists and head.created_at is None:
        return None
    # A snapshot taken next copies the counts of the blobs it keeps: checked here, a damaged one is refused before
    # it spreads (reading the blobs to check each would cost a long session's every snapshot its whole length).
    if sum(record.counts) != head.message_count:
        raise StoreCorrupted(f"a snapshot of stream {stream_id} is damaged: its blobs count {sum(record.counts)} "
                             f"messages, not the {head.message_count} of its head")
    return record


def read_blob(txn: ReadTransaction, snapshots: SnapshotStore, stream_id: int, digest: str, count: int) -> list[Entry]:
    """The ``count`` messages of one snapshot blob."""
    try:
        entries = decode_entries(snapshots.get_blob(txn, stream_id, bytes.fromhex(digest)))
    except ValueError as exc:  # a damaged blob (DamagedChunk) or digest
        raise StoreCorrupted(f"a snapshot of stream {stream_id} is damaged: {exc}") from None
    if len(entries) != count:
        raise StoreCorrupted(f"a snapshot blob of stream {stream_id} holds {len(entries)} messages, not {count}")
    return entries


def to_recorded(entry: StoredEvent, event: SessionEvent | None = None,
                recorded_at: datetime | None = None) -> RecordedEvent:
    """The public form of a stored event, decoding it unless ``event`` is given (and its time, unless given)."""
    return RecordedEvent(entry.position, entry.session_key, entry.version, recorded_at or _recorded_at(entry),
                         _decoded(entry) if event is None else event, uuid.UUID(bytes=entry.event_id),
                         entry.hash.hex(), entry.payload_digest.hex(), entry.redacted)


class LogChange(NamedTuple):
    """What the folds and read models read of a stored event (a ``projections.session.Change``):
    cheaper to build than a ``RecordedEvent``, with no id object and no hex digests."""

    session_key: str
    version: int
    recorded_at: datetime
    event: SessionEvent
    hash: bytes


def log_changes(entries: Iterable[StoredEvent], creation_times: RestoredCreationTimes | None = None
                ) -> Iterator[LogChange]:
    """The stored events decoded, as changes; with ``creation_times``, as a fold reads them (a restore recorded
    without its creation time given it)."""
    for entry in entries:
        event = _decoded(entry)
        if creation_times is not None and type(event) is SessionRestored:
            event = creation_times.event(entry, event)
        yield LogChange(entry.session_key, entry.version, _recorded_at(entry), event, entry.hash)


class RestoredCreationTimes:
    """What a fold of a store's events reads a restore to a live session recorded without the session's creation
    time as (``_codec`` reads it as recorded, ``created_at`` ``None``): the same restore with the creation time of
    the session at the version it restored, folded from the log (from the nearest snapshot). Exact, and the
    stored record is left as it is. With no ``snapshots``, folded from the session's first event: what checks
    and repairs of the snapshots use, so that a damaged one does not pass its damage on."""

    def __init__(self, txn: ReadTransaction, log: EventLog, snapshots: SnapshotStore | None) -> None:
        self._txn, self._log, self._snapshots = txn, log, snapshots

    def event(self, entry: StoredEvent, event: SessionEvent) -> SessionEvent:
        """``event`` (``entry``'s, decoded), given its creation time if it is such a restore.

        Raises:
            StoreCorrupted: the session did not exist at the version the restore names, so nothing gives the time.
        """
        if not isinstance(event, SessionRestored) or not event.exists or event.created_at is not None:
            return event
        restored = event.restored_version
        created = None
        if restored < entry.version:
            created = fold_stream(self._txn, self._log, self._snapshots, entry.stream_id, entry.session_key,
                                  restored).head.created_at
        if created is None:
            raise StoreCorrupted(f"position {entry.position}: a SessionRestored recorded without the time its session "
                                 f"was created, which the session's history does not give (it had no live session "
                                 f"at version {restored}, the one restored)")
        return attrs.evolve(event, created_at=created)


def _decoded(entry: StoredEvent) -> SessionEvent:
    try:
        return decode_event(entry.encoded)
    except EventStoreError as exc:
        raise type(exc)(f"position {entry.position}: {exc}") from None


def _recorded_at(entry: StoredEvent) -> datetime:
    try:
        return from_micros(entry.recorded_at)
    except OverflowError:
        raise StoreCorrupted(f"position {entry.position}: the recorded time is damaged") from None


def fold_stream(txn: ReadTransaction, log: EventLog, snapshots: SnapshotStore | None, stream_id: int, key: str,
                version: int) -> SessionSnapshot:
    """The session after its ``version``-th event; costs the events since the nearest snapshot (with no
    ``snapshots``, since its first event)."""
    state, start = empty_snapshot(key), 0
    if snapshots is not None and (found := snapshots.latest(txn, stream_id, version)) is not None:
        snapshot = read_snapshot(txn, snapshots, stream_id, found[1])
        if snapshot is not None:
            state, start = snapshot[1], found[0]
    changes = log_changes(log.read_stream(txn, stream_id, start, version), RestoredCreationTimes(txn, log, snapshots))
    return fold(state, changes)


def resolve_version(txn: ReadTransaction, log: EventLog, key: str, stream_id: int | None, version: int | None,
                    as_of: datetime | None) -> int:
    """The version of the session that ``version`` (checked by the caller) or ``as_of`` names (the current one for
    neither).

    Raises:
        InvalidVersion: a version past the end.
        InvalidArgument: both, a naive time, a bad type.
    """
    current = 0 if stream_id is None else log.stream_version(txn, stream_id)
    if version is not None and as_of is not None:
        raise InvalidArgument("give a version or an as_of time, not both")
    if as_of is not None:
        # Any aware time has an answer: before the first event, the empty session; after the last, the current one.
        moment = aware_micros(as_of, "as_of")
        # Recorded times never decrease, so the versions recorded by then form a prefix.
        low, high = 0, current
        while stream_id is not None and low < high:  # no stream: version 0, and nothing to search
            middle = (low + high + 1) // 2
            if _version_time(txn, log, stream_id, middle) <= moment:
                low = middle
            else:
                high = middle - 1
        return low
    if version is None:
        return current
    if version > current:
        raise InvalidVersion(f"session {key!r} has {current} versions; version {shown(version)} does not exist")
    return version


def _version_time(txn: ReadTransaction, log: EventLog, stream_id: int, version: int) -> int:
    return log.read_version(txn, stream_id, version).recorded_at


def view_of(head: SessionHead, entries: Sequence[Entry]) -> SessionView:
    """The public view of a folded session: its head and its messages (a snapshot's, or a replay's shared ones)."""
    return SessionView(head.key, head.version, head.exists, head.metadata(), head.name, head.run_state(),
                       entries=entries)
