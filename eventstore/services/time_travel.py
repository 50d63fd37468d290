"""Reads of the past (history, the change feed, a session at a version or a time, replay), and restore.

These fold the log on purpose, from the nearest snapshot: the read models hold only the present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

import attrs

from projections.session import SessionSnapshot, SharedEntries, empty_head, empty_snapshot, step

from .._deferred import Read
from .._folding import LogChange, RestoredCreationTimes, fold_stream, resolve_version, to_recorded, view_of
from .._log import EventLog, StoredEvent, StreamTip
from .._snapshots import SnapshotStore
from .._values import SessionView
from ..events import RecordedEvent, SessionEvent
from ..storage import ReadTransaction, WriteTransaction
from . import commands
from .arguments import check_index
from .writer import CommandWriter, Request, Write

__all__ = ["TimeTravel", "BATCH"]

#: Events read per read transaction when streaming the log.
BATCH = 1000
T = TypeVar("T")

#: The last position the log can hold (positions are unsigned 64-bit keys).
LAST_POSITION = 2**64 - 1


class TimeTravel:
    """The sessions as they were, from the log and the snapshots."""

    def __init__(self, log: EventLog, snapshots: SnapshotStore, read: Read, write: Write,
                 writer: CommandWriter) -> None:
        self._log, self._snapshots = log, snapshots
        self._read, self._write, self._writer = read, write, writer

    def history(self, key: str) -> list[RecordedEvent]:
        """Every event of the session key, oldest first, across deletions and reuse of the key."""
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return []
            return [to_recorded(entry) for entry in self._log.read_stream(txn, stream_id)]

    def iter_history(self, key: str, from_version: int) -> Iterator[RecordedEvent]:
        """``history`` from ``from_version`` on, a page of ``BATCH`` versions per short read transaction, up to the
        version the session had when this was called."""
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            last = 0 if stream_id is None else self._log.stream_version(txn, stream_id)
        return self._pages(stream_id, max(from_version, 1) - 1, last,
                           lambda _txn, entries: [to_recorded(entry) for entry in entries])

    def events(self, after: int, limit: int | None) -> Iterator[RecordedEvent]:
        """Every event after position ``after``, in batches, each read in its own short read transaction."""
        if after >= LAST_POSITION:
            return  # no position comes after it
        remaining = limit
        while remaining is None or remaining > 0:
            batch_size = BATCH if remaining is None else min(BATCH, remaining)
            with self._read() as txn:
                batch = [to_recorded(entry) for entry in self._log.read_all(txn, after, batch_size)]
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].position
            if remaining is not None:
                remaining -= len(batch)

    def events_following(self, position: int, held: str, limit: int) -> list[RecordedEvent] | None:
        """Up to ``limit`` events after ``position``, read with the event at ``position`` found to have the hash
        ``held`` (hex): ``None`` if the log no longer holds it (a failover or a restore replaced the log)."""
        with self._read() as txn:
            if self._log.hash_at(txn, position) != bytes.fromhex(held):
                return None
            return [to_recorded(entry) for entry in self._log.read_all(txn, position, limit)]

    def session_at(self, key: str, version: int | None, as_of: datetime | None) -> SessionView:
        """The whole session after its ``version``-th event, or as of ``as_of`` (the current one by default)."""
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            target = self._resolve_version(txn, key, stream_id, version, as_of)
            if stream_id is None or target == 0:
                return attrs.evolve(view_of(empty_head(key), ()), version=target)
            state = fold_stream(txn, self._log, self._snapshots, stream_id, key, target)
            return view_of(state.head, state.messages)

    def restore(self, key: str, version: int | None, as_of: datetime | None, request: Request,
                expected_version: int | None, idempotency_key: str | None) -> int:
        """Append ``SessionRestored`` unless the session already looks as it did then; return its version."""

        def step(txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[None, list[LogChange]]:
            stream_id = tip.stream_id
            target = self._resolve_version(txn, key, stream_id, version, as_of)
            if stream_id is None:
                return None, []
            current = fold_stream(txn, self._log, self._snapshots, stream_id, key, tip.version)
            wanted = (fold_stream(txn, self._log, self._snapshots, stream_id, key, target) if target
                      else empty_snapshot(key))
            return None, self._writer.record(txn, key, commands.restore(current, wanted, target)[0], now, tip=tip)

        return self._writer.run(key, request, step, expected_version, idempotency_key)[1]

    def replay(self, key: str, from_version: int, to_version: int | None
               ) -> Iterator[tuple[RecordedEvent, SessionView]]:
        """One ``(event, session right after it)`` pair per event, streamed in batches."""
        from_version = max(from_version, 1)
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            last = 0 if stream_id is None else self._log.stream_version(txn, stream_id)
            if to_version is not None:
                last = self._resolve_version(txn, key, stream_id, to_version, None)
            start = (empty_snapshot(key) if stream_id is None or from_version == 1 else
                     fold_stream(txn, self._log, self._snapshots, stream_id, key, min(from_version - 1, last)))
        return self._replay(stream_id, start, from_version - 1, last)

    def _replay(self, stream_id: int | None, start: SessionSnapshot, after: int, last: int
                ) -> Iterator[tuple[RecordedEvent, SessionView]]:
        # Each step's view shares its messages with the step before: a step costs its event's edit, and a view the
        # caller keeps stays as it was.
        head, messages = start.head, SharedEntries(start.messages)

        def as_folded(txn: ReadTransaction, entries: list[StoredEvent]) -> list[tuple[RecordedEvent, SessionEvent]]:
            """Each event as recorded, and as the fold reads it."""
            creation_times = RestoredCreationTimes(txn, self._log, self._snapshots)
            return [(recorded, creation_times.event(entry, recorded.event))
                    for entry, recorded in zip(entries, map(to_recorded, entries))]

        for recorded, event in self._pages(stream_id, after, last, as_folded):
            as_read = recorded if event is recorded.event else attrs.evolve(recorded, event=event)
            head = step(head, messages, as_read)
            yield recorded, view_of(head, messages.view())

    def _pages(self, stream_id: int | None, after: int, last: int,
               read: Callable[[ReadTransaction, list[StoredEvent]], list[T]]) -> Iterator[T]:
        """What ``read`` makes of the stream's events after version ``after`` up to ``last``, a page of ``BATCH``
        versions at a time, each in its own short read transaction: a caller holding the iterator open never
        holds a transaction, so its own writes (and the file's growth) never wait for it."""
        while stream_id is not None and after < last:
            with self._read() as txn:
                page = read(txn, list(self._log.read_stream(txn, stream_id, after, min(after + BATCH, last))))
            yield from page
            after += BATCH

    def _resolve_version(self, txn: ReadTransaction, key: str, stream_id: int | None, version: int | None,
                         as_of: datetime | None) -> int:
        if version is not None:
            check_index(version, "version")
        return resolve_version(txn, self._log, key, stream_id, version, as_of)

