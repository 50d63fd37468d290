"""Events from elsewhere: whole sessions imported with their times, and events replicated from another store.

Both refuse, writing nothing, what ``verify`` would later report as damage or what no command records: an
event the session cannot take next (``SessionCheck``), a redacted event no redaction names, a redaction that
leaves content. A replicated redaction rewrites the events of its session that the copy already holds, as the
source's ``redact`` did, so that the copy verifies.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from projections.session import SessionHead, empty_head, evolve_head

from .._audit import Progress
from .._bookkeeping import ImportReceipts
from .._codec import encode_event
from .._deferred import Read
from .._errors import InvalidArgument, ReplicationMismatch, SourceChanged, shown
from .._folding import LogChange, to_recorded
from .._log import EventLog, Original
from .._snapshots import SnapshotStore
from .._time import CLOCK_SKEW, from_micros, to_micros
from .._values import ImportOutcome, ImportReceipt, utc, validate_key
from ..events import (
    EVENT_CLASSES,
    LastMessageRemoved,
    LastMessageReplaced,
    MessagesCleared,
    RecordedEvent,
    SessionEvent,
    SessionForked,
    SessionRedacted,
    SessionRestored,
    redact_event,
)
from ..storage import WriteTransaction
from .arguments import recordable
from .writer import CommandWriter, Write

__all__ = ["Replication", "Importable", "importable", "sessions_digest", "SessionCheck", "refusal", "payload_digest"]

#: Events replicated per write transaction.
BATCH = 1000

#: The bytes of a payload digest (a SHA-256).
_DIGEST_SIZE = hashlib.sha256().digest_size

#: An event to import: a (time, event) pair, or a ``RecordedEvent`` of another store (which keeps its
#: redaction: flag, original payload digest and the redaction naming it).
Importable = tuple[datetime, SessionEvent] | RecordedEvent


def _timed(item: Importable) -> tuple[datetime, SessionEvent]:
    """An importable's time and event, whichever form it came in."""
    return (item.recorded_at, item.event) if isinstance(item, RecordedEvent) else item


def sessions_digest(sessions: Mapping[str, Sequence[Importable]]) -> str:
    """The SHA-256 of what ``sessions`` hold (keys, times, events, redactions), whatever the mapping's order: a
    source imported without its file's digest is told apart by this one."""
    digest = hashlib.sha256()
    for key in sorted(sessions):
        digest.update(_framed(key.encode()))
        for item in sessions[key]:
            moment, event = _timed(item)
            type_name, schema_version, payload = encode_event(event)
            redaction = f"{item.redacted:d}{item.payload_digest}" if isinstance(item, RecordedEvent) else "-"
            digest.update(b"".join(map(_framed, (str(recordable(moment)).encode(), type_name.encode(),
                                                 str(schema_version).encode(), payload, redaction.encode()))))
    return digest.hexdigest()


def _framed(part: bytes) -> bytes:
    return len(part).to_bytes(8, "big") + part


def importable(item: object) -> Importable:
    """``item`` checked as an event ``import_sessions`` takes."""
    if isinstance(item, RecordedEvent):
        moment, event = item.recorded_at, item.event
    elif isinstance(item, tuple) and len(item) == 2:
        moment, event = item
    else:
        raise InvalidArgument(f"expected (datetime, event) pairs or recorded events, not {item!r:.60}")
    recordable(moment)
    if type(event) not in EVENT_CLASSES:  # a subclass would be stored, and read back, as its base
        raise InvalidArgument(f"cannot import {type(event).__name__}: not a session event")
    return item


def payload_digest(event: SessionEvent) -> str:
    """The hex SHA-256 of the event's payload as the log stores it."""
    return hashlib.sha256(encode_event(event).payload).hexdigest()


def refusal(head: SessionHead, event: SessionEvent) -> str | None:
    """Why ``event`` cannot come next in the session at ``head`` (``None``: it can).

    These are events no command records there: the read models cannot fold them, or they state something
    false (a clear of another number of messages, a restore to a version the session never had).
    """
    match event:
        case LastMessageRemoved() | LastMessageReplaced() if not head.message_count:
            return f"{event.type_name} on a session with no message"
        case MessagesCleared() if event.count != head.message_count:
            return f"MessagesCleared({event.count}) on a session with {head.message_count} messages"
        case SessionRestored() if event.restored_version >= head.version:
            return f"SessionRestored to version {event.restored_version} of a session at version {head.version}"
        case SessionForked() if head.exists:
            return "SessionForked on a live session"
    return None


class SessionCheck:
    """One session's events to import, checked in order as ``verify`` would check them once recorded.

    A ``RecordedEvent`` must also come at the version it had (1, 2, 3, ...), after the position of the one
    before it, with a payload that matches its digest; a redacted one must hold no content and be named, with
    the digest of its redacted payload, by a later ``SessionRedacted`` of its session, which must leave no
    content before it.
    """

    def __init__(self, key: str) -> None:
        self.head = empty_head(key)
        self._position = 0
        self._unnamed: dict[int, str] = {}  # position → digest of the redacted payload, awaiting its redaction
        self._content = False  # an event holding content since the last redaction
        self._created: list[datetime | None] = [None]  # the session's creation time at each version from 0

    def check(self, item: Importable) -> str | None:
        """Why ``item`` cannot come next (``None``: it can, and the session moves past it)."""
        recorded = item if isinstance(item, RecordedEvent) else None
        moment, event = _timed(item)
        problem = refusal(self.head, event) or (None if recorded is None else self._recorded_problem(recorded))
        if problem is None and isinstance(event, SessionRedacted):
            problem = self._redaction_problem(event)
        as_folded = event
        if problem is None and isinstance(event, SessionRestored) and event.exists and event.created_at is None:
            # Recorded without its creation time (``events.without_creation_time``): the store's folds give it
            # the session's at the version restored, which must have one.
            created = self._created[event.restored_version]
            if created is None:
                problem = (f"a SessionRestored recorded without the time its session was created, which the "
                           f"session's history does not give (it had no live session at version "
                           f"{event.restored_version}, the one restored)")
            else:
                as_folded = attrs.evolve(event, created_at=created)
        if problem is not None:
            return problem
        self._content = self._content or redact_event(event) != event
        self.head = evolve_head(self.head, LogChange(self.head.key, self.head.version + 1, utc(moment), as_folded,
                                                     b""))
        self._created.append(self.head.created_at)
        return None

    def _recorded_problem(self, recorded: RecordedEvent) -> str | None:
        if recorded.version != self.head.version + 1:
            return f"version {recorded.version} where version {self.head.version + 1} was due"
        if recorded.position <= self._position:
            return f"position {recorded.position} does not come after the session's previous {self._position}"
        self._position = recorded.position
        digest = payload_digest(recorded.event)
        if recorded.redacted:
            if redact_event(recorded.event) != recorded.event:
                return "an event marked redacted holds message content"
            if not re.fullmatch("[0-9a-f]{64}", recorded.payload_digest):
                return f"payload_digest {recorded.payload_digest!r:.80} is not a hex SHA-256 digest"
            self._unnamed[recorded.position] = digest
        elif digest != recorded.payload_digest:
            return "the payload does not match its payload_digest (the event was changed)"
        return None

    def _redaction_problem(self, event: SessionRedacted) -> str | None:
        if self._content:
            return "a SessionRedacted that leaves message content before it"
        if event.rewritten != tuple(sorted(self._unnamed.items())):
            return (f"a SessionRedacted naming {[p for p, _ in event.rewritten]} where the redacted events "
                    f"before it are {sorted(self._unnamed)} (positions, with the digests of their payloads)")
        self._unnamed.clear()
        return None

    def finish(self) -> str | None:
        """What is wrong with the session once all its events are in (``None``: nothing)."""
        if self._unnamed:
            return f"events at positions {sorted(self._unnamed)} are marked redacted, but no SessionRedacted names them"
        return None


def _future(item: Importable, latest: int) -> str | None:
    """Why ``item`` is too late to import (``None``: it is not): a time in the future would stamp every later
    command on its session and hide the session from reads as of now and from ``cleanup_stale``."""
    moment = _timed(item)[0]
    if recordable(moment) <= latest:
        return None
    return (f"recorded at {utc(moment).isoformat()}, later than this store's clock allows "
            f"({from_micros(latest).isoformat()}: its time plus {CLOCK_SKEW} for clock skew)")


class Replication:
    """Imports and replication: events recorded with the times (and, replicated, the hashes) they came with."""

    def __init__(self, log: EventLog, snapshots: SnapshotStore, receipts: ImportReceipts, read: Read, write: Write,
                 writer: CommandWriter) -> None:
        self._log, self._snapshots, self._receipts = log, snapshots, receipts
        self._read, self._write, self._writer = read, write, writer

    def import_sessions(self, sessions: Mapping[str, Sequence[Importable]], source: str | None,
                        size: int, sha256: str, progress: Progress | None = None) -> ImportOutcome:
        """Import the sessions whose keys have no events yet, in one transaction, with a receipt for ``source``.

        ``progress(sessions done, sessions)`` is called every ``BATCH`` events or so, and at the end.

        Raises:
            InvalidArgument: an event ``SessionCheck`` refuses, or one later than the store's clock plus
                ``CLOCK_SKEW`` (nothing is written).
        """
        latest = self._writer.now_micros() + CLOCK_SKEW // timedelta(microseconds=1)
        for key, timed in sessions.items():
            check = SessionCheck(key)
            for number, item in enumerate(timed, 1):
                problem = _future(item, latest) or check.check(item)
                if problem is not None:
                    raise InvalidArgument(f"session {key!r}, event {number}: {problem}; nothing was imported")
            problem = check.finish()
            if problem is not None:
                raise InvalidArgument(f"session {key!r}: {problem}; nothing was imported")

        if source is not None and not sha256:
            sha256 = sessions_digest(sessions)

        def body(txn: WriteTransaction) -> ImportOutcome:
            if source is not None:
                earlier = self._receipts.get(txn, source)
                # A receipt without a digest (written before imports derived one) tells no source apart: the
                # import goes on, and the keys it already holds are skipped as always.
                if earlier is not None and earlier.sha256:
                    if (earlier.size, earlier.sha256) != (size, sha256):
                        raise SourceChanged(f"{source} changed since it was imported; it was not merged")
                    return ImportOutcome(earlier, (), True)
            skipped, imported, events, unreported = [], 0, 0, 0
            for done, (key, timed) in enumerate(sessions.items(), 1):
                if self._log.stream_id(txn, key) is not None:
                    skipped.append(key)
                else:
                    self._import_session(txn, key, timed)
                    imported += 1
                    events += len(timed)
                    unreported += len(timed)
                if progress is not None and (unreported >= BATCH or done == len(sessions)):
                    progress(done, len(sessions))
                    unreported = 0
            receipt = ImportReceipt(source or "", size, sha256, imported, events)
            if source is not None and (imported or not skipped):
                # A source whose every key was refused gets no receipt: importing it
                # again reports the conflicts again instead of "already imported".
                self._receipts.put(txn, receipt)
            return ImportOutcome(receipt, tuple(skipped), False)

        return self._write(body, holder="import_sessions")

    def _import_session(self, txn: WriteTransaction, key: str, timed: Sequence[Importable]) -> None:
        """Record one checked session's events as new events; redacted ones stay redacted.

        Events are recorded a run at a time, each with its own time (as ``append_many`` records a command's); a
        redacted event, and a redaction, which names the positions its redacted events took here, alone.
        """
        positions: dict[int, int] = {}  # a redacted event's position in its source → its position here
        run: list[SessionEvent] = []
        times: list[int] = []
        version = 0  # the session's, before the run
        for item in timed:
            if not isinstance(item, RecordedEvent) or not (item.redacted or isinstance(item.event, SessionRedacted)):
                moment, event = _timed(item)
                run.append(event)
                times.append(recordable(moment))
                continue
            if run:
                self._writer.record_run(txn, key, run, times, version)
                version += len(run)
                run, times = [], []
            version += 1
            event, originals = item.event, None
            if item.redacted:
                # It keeps the digest of its original payload, which its hash here covers.
                originals = [Original(uuid.uuid4().bytes, bytes.fromhex(item.payload_digest), True)]
            elif isinstance(event, SessionRedacted):
                event = SessionRedacted(event.reason, tuple((positions[p], d) for p, d in event.rewritten))
            self._writer.record(txn, key, [event], recordable(item.recorded_at), originals=originals)
            if item.redacted:
                positions[item.position] = self._log.head(txn)[0]
        if run:
            self._writer.record_run(txn, key, run, times, version)

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
        return self._write(lambda txn: self.replicate_batch(txn, batch))

    def replicate_batch(self, txn: WriteTransaction, batch: Sequence[RecordedEvent]) -> int:
        """Append ``batch``, checked as ``replicate`` checks it, in the caller's transaction; how many.

        A session's consecutive events are appended in one run (as ``append_many`` appends a command's), each at
        its own time; a redaction alone, once what the copy holds of its session is redacted.
        """
        expected = self._log.head(txn)[0] + 1
        run: list[tuple[RecordedEvent, Original]] = []
        for recorded in batch:
            if recorded.position != expected:
                raise ReplicationMismatch(
                    f"event at position {shown(recorded.position)} arrived where {expected} was due")
            expected += 1
            try:
                original = Original(recorded.event_id.bytes, bytes.fromhex(recorded.payload_digest), recorded.redacted)
            except (ValueError, AttributeError, TypeError):
                original = None
            # A redacted event's digest is taken as given, and the chain packs one of a fixed length: a digest of
            # another length would be cut or padded to it and could hash as its source's did.
            if original is None or len(original.payload_digest) != _DIGEST_SIZE:
                raise ReplicationMismatch(f"position {recorded.position}: bad event id or payload digest")
            # The chain covers the payload's digest, not the payload: check the event against it.
            if recorded.redacted:
                if redact_event(recorded.event) != recorded.event:
                    raise ReplicationMismatch(f"position {recorded.position}: a redacted event holds content")
            elif payload_digest(recorded.event) != recorded.payload_digest:
                raise ReplicationMismatch(f"position {recorded.position}: the event does not match its digest")
            key = validate_key(recorded.session_key)
            if run and (isinstance(recorded.event, SessionRedacted) or key != run[-1][0].session_key
                        or recorded.version != run[-1][0].version + 1):
                self._copy_run(txn, run)
                run = []
            if isinstance(recorded.event, SessionRedacted):
                self._redact_held(txn, key, recorded)
                self._copy_run(txn, [(recorded, original)])
            else:
                run.append((recorded, original))
        if run:
            self._copy_run(txn, run)
        return len(batch)

    def _copy_run(self, txn: WriteTransaction, run: Sequence[tuple[RecordedEvent, Original]]) -> None:
        """Append one session's consecutive events from another store; each must hash as it did there."""
        first = run[0][0]
        copied = self._writer.record_run(txn, first.session_key, [recorded.event for recorded, _ in run],
                                         [to_micros(utc(recorded.recorded_at)) for recorded, _ in run],
                                         first.version - 1, [original for _, original in run])
        for (recorded, _), change in zip(run, copied, strict=True):
            if (change.hash.hex(), change.recorded_at) != (recorded.hash, recorded.recorded_at):
                raise ReplicationMismatch(f"position {recorded.position}: the event does not hash as it did "
                                          "in its source store")

    def _redact_held(self, txn: WriteTransaction, key: str, redaction: RecordedEvent) -> None:
        """Before a replicated ``SessionRedacted``: redact what the copy holds of the session, as the source did.

        Every event of the session that holds content is rewritten (the copy received it before the source
        redacted it); with the redacted events no earlier redaction names, they must be exactly the events the
        redaction names, with the digests of their redacted payloads.
        """
        assert isinstance(redaction.event, SessionRedacted)
        stream_id = self._log.stream_id(txn, key)
        unnamed: dict[int, str] = {}
        rewrote = False
        for entry in [] if stream_id is None else list(self._log.read_stream(txn, stream_id)):
            event = to_recorded(entry).event
            if isinstance(event, SessionRedacted):
                for position, _ in event.rewritten:
                    unnamed.pop(position, None)
            elif redact_event(event) != event:
                payload = encode_event(redact_event(event)).payload
                self._log.redact(txn, entry.position, payload)
                unnamed[entry.position] = hashlib.sha256(payload).hexdigest()
                rewrote = True
            elif entry.redacted:
                unnamed[entry.position] = hashlib.sha256(entry.encoded.payload).hexdigest()
        if tuple(sorted(unnamed.items())) != redaction.event.rewritten:
            raise ReplicationMismatch(f"position {redaction.position}: the redaction names other events than this "
                                      "store holds redacted or with content in its session")
        if rewrote:
            assert stream_id is not None
            self._snapshots.delete_stream(txn, stream_id)
            self._writer.derive_snapshots(txn, stream_id, key)
