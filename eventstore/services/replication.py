"""Events from elsewhere: whole sessions imported with their times, and events replicated from another store."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from .._audit import Progress
from .._bookkeeping import ImportReceipts
from .._codec import encode_event
from .._deferred import Read
from .._errors import InvalidArgument, ReplicationMismatch, SourceChanged, shown
from .._log import EventLog, Original
from .._time import to_micros
from .._values import ImportOutcome, ImportReceipt, utc, validate_key
from ..events import EVENT_CLASSES, RecordedEvent, SessionEvent, redact_event
from ..storage import WriteTransaction
from .arguments import recordable
from .writer import CommandWriter, Write

__all__ = ["Replication"]

#: Events replicated per write transaction.
BATCH = 1000


class Replication:
    """Imports and replication: events recorded with the times (and, replicated, the hashes) they came with."""

    def __init__(self, log: EventLog, receipts: ImportReceipts, read: Read, write: Write,
                 writer: CommandWriter) -> None:
        self._log, self._receipts = log, receipts
        self._read, self._write, self._writer = read, write, writer

    def import_sessions(self, sessions: Mapping[str, Sequence[tuple[datetime, SessionEvent]]], source: str | None,
                        size: int, sha256: str) -> ImportOutcome:
        """Import the sessions whose keys have no events yet, in one transaction, with a receipt for ``source``."""
        def body(txn: WriteTransaction) -> ImportOutcome:
            if source is not None:
                earlier = self._receipts.get(txn, source)
                if earlier is not None:
                    if (earlier.size, earlier.sha256) != (size, sha256):
                        raise SourceChanged(f"{source} changed since it was imported; it was not merged")
                    return ImportOutcome(earlier, (), True)
            skipped, imported, events = [], 0, 0
            for key, timed in sessions.items():
                if self._log.stream_id(txn, key) is not None:
                    skipped.append(key)
                    continue
                for moment, event in timed:
                    self._writer.record(txn, key, [event], recordable(moment))
                imported += 1
                events += len(timed)
            receipt = ImportReceipt(source or "", size, sha256, imported, events)
            if source is not None and (imported or not skipped):
                # A source whose every key was refused gets no receipt: importing it
                # again reports the conflicts again instead of "already imported".
                self._receipts.put(txn, receipt)
            return ImportOutcome(receipt, tuple(skipped), False)

        return self._write(body)

    def receipts(self) -> list[ImportReceipt]:
        with self._read() as txn:
            return self._receipts.all(txn)

    def replicate(self, events: Iterable[object], progress: Progress | None, total: int) -> int:
        """Append events exported from another store, checked as they come, ``BATCH`` per transaction.

        Returns how many were appended.
        """
        count = 0
        batch: list[RecordedEvent] = []
        for recorded in events:
            if not isinstance(recorded, RecordedEvent):
                raise InvalidArgument(f"replicate takes RecordedEvent objects, not {type(recorded).__name__}")
            if type(recorded.event) not in EVENT_CLASSES:  # a subclass would be stored, and read back, as its base
                raise InvalidArgument(f"cannot replicate {type(recorded.event).__name__}: not a session event")
            batch.append(recorded)
            if len(batch) == BATCH:
                count += self._replicate(batch)
                batch = []
                if progress is not None:
                    progress(count, total)
        if batch:
            count += self._replicate(batch)
        if progress is not None:
            progress(count, total)
        return count

    def _replicate(self, batch: Sequence[RecordedEvent]) -> int:
        return self._write(lambda txn: self._replicate_batch(txn, batch))

    def _replicate_batch(self, txn: WriteTransaction, batch: Sequence[RecordedEvent]) -> int:
        for recorded in batch:
            expected = self._log.head(txn)[0] + 1
            if recorded.position != expected:
                raise ReplicationMismatch(
                    f"event at position {shown(recorded.position)} arrived where {expected} was due")
            try:
                original = Original(recorded.event_id.bytes, bytes.fromhex(recorded.payload_digest), recorded.redacted)
            except (ValueError, AttributeError, TypeError):
                raise ReplicationMismatch(f"position {recorded.position}: bad event id or payload digest") from None
            # The chain covers the payload's digest, not the payload: check the event against it.
            if recorded.redacted:
                if redact_event(recorded.event) != recorded.event:
                    raise ReplicationMismatch(f"position {recorded.position}: a redacted event holds content")
            elif hashlib.sha256(encode_event(recorded.event).payload).hexdigest() != recorded.payload_digest:
                raise ReplicationMismatch(f"position {recorded.position}: the event does not match its digest")
            copied = self._writer.record(txn, validate_key(recorded.session_key), [recorded.event],
                                         to_micros(utc(recorded.recorded_at)), recorded.version - 1, [original])
            if (copied[0].hash.hex(), copied[0].recorded_at) != (recorded.hash, recorded.recorded_at):
                raise ReplicationMismatch(f"position {recorded.position}: the event does not hash as it did "
                                          "in its source store")
        return len(batch)
