"""``verify``: walk the hash chain, fold every session afresh, and compare with what is stored.

One read transaction gives a consistent snapshot of log, snapshots and read
models; the walk streams the log through a cursor, holding only each
session's current state in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs

from projections.session import Entry, SessionSnapshot, empty_head, step

from ._errors import DictionaryDamaged, EventStoreError
from ._folding import RestoredCreationTimes, SnapshotRecord, read_blob, read_snapshot_record, to_recorded
from ._log import GENESIS_HASH, EventLog, chain_hash
from ._snapshots import SnapshotStore
from ._values import VerifyReport
from .events import SessionRedacted, redact_event
from .storage import ReadTransaction

__all__ = ["verify", "Progress", "CheckedModel"]

#: Called as ``progress(events_done, events_total)`` while a long operation runs.
Progress = Callable[[int, int], None]

_PROGRESS_EVERY = 1000


class CheckedModel(Protocol):
    """What ``verify`` asks of a read model, inline or deferred."""

    @property
    def name(self) -> str:
        """The read model's name (what ``rebuild_projections`` takes)."""

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Where the stored state differs from ``sessions`` (stream id → session folded from the log)."""


class _Session:
    """A session being folded during the walk (mutable, private to it)."""

    def __init__(self, key: str) -> None:
        self.head = empty_head(key)
        self.messages: list[Entry] = []
        self.redacted: dict[int, str] = {}  # position → payload digest, awaiting their redaction event
        self.content_positions: list[int] = []  # holding content, which a later redaction would cover
        self.latest_time = 0
        # Snapshot blob index → (digest, entries) it was found to hold (see ``_blobs_match``).
        self.matched_blobs: dict[int, tuple[str, list[Entry]]] = {}

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(self.head, tuple(self.messages))


def verify(txn: ReadTransaction, log: EventLog, snapshots: SnapshotStore, read_models: Sequence[CheckedModel],
           progress: Progress | None = None) -> VerifyReport:
    """Check the chain, the stream index, the snapshots and every read model against the log."""
    problems: list[str] = []  # the log's
    snapshot_problems: list[str] = []
    damaged: set[str] = set()
    dictionary_problem = log.dictionary.problem(txn)
    without_dictionary: list[int] = []  # positions of records that need the unreadable dictionary
    total = log.head(txn)[0]
    sessions: dict[int, _Session] = {}
    pending_snapshots = snapshots.versions(txn)
    previous_hash, expected_position, checked = GENESIS_HASH, 1, 0
    creation_times = RestoredCreationTimes(txn, log, None)  # from the log alone: the snapshots are checked here
    for position, entry in log.records(txn):
        checked += 1
        if position != expected_position:
            problems.append(f"position {expected_position}: expected here, found position {position} "
                            "(an event was removed or moved)")
        expected_position = position + 1
        if isinstance(entry, DictionaryDamaged):
            without_dictionary.append(position)
            continue
        if isinstance(entry, EventStoreError):
            problems.append(str(entry))
            continue
        link = chain_hash(previous_hash, position, entry.session_key, entry.version, entry.recorded_at,
                          entry.event_id, entry.encoded, entry.payload_digest)
        if link != entry.hash:
            problems.append(f"position {position}: the hash chain is broken (this event or the one before it changed)")
        previous_hash = entry.hash
        session = sessions.setdefault(entry.stream_id, _Session(entry.session_key))
        if entry.recorded_at < session.latest_time:
            problems.append(f"position {position}: recorded before the previous event of its session")
        session.latest_time = max(session.latest_time, entry.recorded_at)
        if entry.version != session.head.version + 1:
            problems.append(f"position {position}: session {entry.session_key!r} jumps from version "
                            f"{session.head.version} to {entry.version}")
        if log.stream_position(txn, entry.stream_id, entry.version) != position:
            problems.append(f"position {position}: the stream index does not point at this event")
        try:
            event = to_recorded(entry)
            as_folded = creation_times.event(entry, event.event)
            as_read = event if as_folded is event.event else attrs.evolve(event, event=as_folded)
        except EventStoreError as exc:
            problems.append(str(exc))
            continue
        holds_content = redact_event(event.event) != event.event
        if entry.redacted:
            session.redacted[position] = hashlib.sha256(entry.encoded.payload).hexdigest()
            if holds_content:
                problems.append(f"position {position}: a redacted event still holds message content")
        elif holds_content:
            session.content_positions.append(position)
        if isinstance(event.event, SessionRedacted):
            # A redaction covers every earlier event of its session.
            problems.extend(f"position {p}: holds message content although a later redaction covers it"
                            for p in session.content_positions)
            # The redaction event, itself in the chain, names the digest of every payload it rewrote.
            for rewritten, digest in event.event.rewritten:
                if session.redacted.pop(rewritten, None) != digest:
                    problems.append(f"position {rewritten}: its redacted payload is not the one the redaction wrote")
            problems.extend(f"position {p}: marked redacted, but no redaction rewrote it" for p in session.redacted)
            session.redacted.clear()
            session.content_positions.clear()
        session.head = step(session.head, session.messages, as_read)
        if (entry.stream_id, entry.version) in pending_snapshots:
            pending_snapshots.discard((entry.stream_id, entry.version))
            snapshot_problems.extend(_check_snapshot(txn, snapshots, entry.stream_id, entry.version, entry.hash,
                                                     session))
        if progress is not None and checked % _PROGRESS_EVERY == 0:
            progress(checked, total)
    for session in sessions.values():
        if session.redacted:
            problems.append(f"positions {sorted(session.redacted)}: redacted with no later redaction event "
                            f"in session {session.head.key!r}")
    for stream_id, version in sorted(pending_snapshots):
        snapshot_problems.append(f"snapshot of stream {stream_id} at version {version} has no event")
    try:
        problems.extend(log.key_index_problems(txn))
    except EventStoreError as exc:
        problems.append(str(exc))
    events, indexed = log.count(txn), log.indexed_events(txn)
    if indexed != events:
        problems.append(f"the stream index holds {indexed} events for {events} in the log")
    damaged.update(["log"] if problems else [])
    if dictionary_problem is not None:
        what, readable = dictionary_problem
        problems.insert(0, what)
        damaged.add("dictionary" if readable else "log")
    problems.extend(snapshot_problems)
    damaged.update(["messages"] if snapshot_problems else [])  # rebuilding the messages takes every snapshot again
    if without_dictionary:
        # One line for what one damaged value did, not one per record; a fold without those records says
        # nothing about the read models.
        problems.append(f"{len(without_dictionary)} compressed records (positions {without_dictionary[0]} to "
                        f"{without_dictionary[-1]}) cannot be read without the compression dictionary; the read "
                        "models were not checked")
        damaged.add("log")
    else:
        folded = {stream_id: session.snapshot() for stream_id, session in sessions.items()}
        for model in read_models:
            found = model.check(txn, folded)
            problems.extend(found)
            damaged.update([model.name] if found else [])
    if progress is not None:
        progress(checked, total)
    return VerifyReport(not problems, checked, problems, frozenset(damaged))


def _check_snapshot(txn: ReadTransaction, snapshots: SnapshotStore, stream_id: int, version: int, event_hash: bytes,
                    session: _Session) -> list[str]:
    where = f"snapshot of {session.head.key!r} at version {version}"
    problems = []
    try:
        record = read_snapshot_record(stream_id, snapshots.get(txn, stream_id, version) or b"")
        if record is None:
            return []
        if record.event_hash != event_hash.hex():
            problems.append(f"{where}: records the hash of another event")
        if record.head != session.head or not _blobs_match(txn, snapshots, stream_id, record, session):
            problems.append(f"{where}: differs from a fresh fold of the log")
    except EventStoreError as exc:
        return [f"{where}: {exc}"]
    return problems


def _blobs_match(txn: ReadTransaction, snapshots: SnapshotStore, stream_id: int, record: SnapshotRecord,
                 session: _Session) -> bool:
    """Whether the snapshot's blobs hold the session's messages.

    Consecutive snapshots of a long session share most blobs; a blob that already
    matched at the same place against the same entries is not decoded again, so
    checking every snapshot of a session costs about one pass over its messages
    each, not one decode of all of them.
    """
    messages, start = session.messages, 0
    for index, (digest, count) in enumerate(zip(record.chunks, record.counts)):
        rows = messages[start:start + count]
        start += count
        if session.matched_blobs.get(index) != (digest, rows):  # fast: the fold keeps unchanged entries as they were
            if read_blob(txn, snapshots, stream_id, digest, count) != rows:
                return False
            session.matched_blobs[index] = (digest, rows)
    return start == len(messages)
