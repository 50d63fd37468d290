"""The command pipeline: one command, one write transaction, one atomic commit.

A command's transaction checks its idempotency key (a key already recorded for
the same request answers as it did then) and its expected version, reads the
session's head from the catalog, runs the command's decider
(``services.commands``), appends the events to the log, applies every inline
read model and saves its checkpoint, and takes a snapshot when one is due. Once it has committed, the
decoded list of the session, if cached, is brought up to date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import attrs
import orjson

from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints, ReadModel
from projections.session import Entry, SessionHead, empty_head, empty_snapshot

from .._bookkeeping import IdempotencyRecord, IdempotencyRecords
from .._codec import encode_events
from .._errors import IdempotencyKeyReused, StoreCorrupted, WrongExpectedVersion
from .._folding import LogChange, RestoredCreationTimes, derive_snapshots, fold_stream, resolve_version, take_snapshot
from .._log import EventLog, Original, StreamTip
from .._snapshots import SnapshotStore
from .._time import Clock, from_micros
from .._values import ChatMessage, stored_payload_of, validate_key, validate_text
from ..events import SessionEvent, SessionRestored
from ..storage import WriteTransaction
from . import commands
from .arguments import check_index, now_micros
from .cache import DecodedSessions
from .commands import Decision

__all__ = ["Command", "CommandWriter", "KeptResult", "Request", "Step", "Write"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

#: Builds a ``LogChange`` from a tuple in C, without the Python ``__new__`` a named tuple's call runs (a commit of
#: appends makes one a message).
_new_change = tuple.__new__


class Request(NamedTuple):
    """A command as an idempotency key identifies it: its name and its arguments, as JSON values, then its
    messages (made JSON values only for a digest: a command without an idempotency key needs none). A named tuple:
    every command makes one, and a frozen attrs class's ``__init__`` sets each field by a call."""

    name: str
    arguments: tuple[object, ...] = ()
    messages: tuple[ChatMessage, ...] = ()

    def digest(self) -> str:
        arguments = self.arguments + tuple(map(message_argument, self.messages))
        return hashlib.sha256(orjson.dumps([self.name, arguments])).hexdigest()


def message_argument(message: ChatMessage) -> list[object]:
    """A message as a request's argument (its payload, if any, as its stored JSON)."""
    payload = stored_payload_of(message)
    return [message.role, message.content] + ([] if payload is None else [orjson.Fragment(bytes(payload))])


class Step(Protocol[R_co]):
    """The work of one command inside its write transaction: given where the session's stream stands (its id
    ``None`` for a key without events) and the command's time in µs, record its events; return its result and the
    recorded events."""

    def __call__(self, txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[R_co, list[LogChange]]: ...


@attrs.frozen
class KeptResult(Generic[R]):
    """How an idempotency record keeps a result that holds message text: a redaction rewrites the log, not the
    records, so the record keeps ``keep(result)`` and a retry answers ``recall(writer, txn, key, kept, version)``,
    read again from the log (``version``: the session's after the command)."""

    keep: Callable[[R], Any]
    recall: Callable[[CommandWriter, WriteTransaction, str, Any, int], R]


class Command(NamedTuple, Generic[R]):
    """One command on one session, its arguments checked: what identifies it (``request``), how the writer records
    it, and its options. One that decides from the session's head alone gives ``decide``, which the writer runs on
    the head it reads (a command's commonest kind, with no step of its own to make); any other gives ``plan``, the
    writer's step that records it (``plan(writer)``). A named tuple, as ``Request`` is."""

    key: str
    request: Request
    decide: Callable[[SessionHead], Decision[R]] | None
    plan: Callable[[CommandWriter], Step[R]] | None = None
    expected_version: int | None = None
    idempotency_key: str | None = None
    kept: KeptResult[R] | None = None

    @classmethod
    def checked(cls, key: str, request: Request, plan: Callable[[CommandWriter], Step[R]],
                expected_version: int | None = None, idempotency_key: str | None = None,
                kept: KeptResult[R] | None = None) -> Command[R]:
        _check_options(key, expected_version, idempotency_key)
        return cls(key, request, None, plan, expected_version, idempotency_key, kept)

    @classmethod
    def deciding(cls, key: str, request: Request, decide: Callable[[SessionHead], Decision[R]],
                 expected_version: int | None = None, idempotency_key: str | None = None) -> Command[R]:
        """A command that decides from the session's head alone."""
        _check_options(key, expected_version, idempotency_key)
        return cls(key, request, decide, None, expected_version, idempotency_key)


def _check_options(key: str, expected_version: int | None, idempotency_key: str | None) -> None:
    validate_key(key)
    if expected_version is not None:
        check_index(expected_version, "expected_version")
    if idempotency_key is not None:
        validate_text(idempotency_key, "idempotency_key")


class Write(Protocol):
    """The store's write: runs ``body`` in one write transaction and commits (refusing a closed or read-only
    store). ``holder`` names the public call that gives a write whose body calls back into its caller's code (a
    ``progress``), so that a command given from that callback, which is refused, says what it waits for."""

    def __call__(self, body: Callable[[WriteTransaction], R], *, holder: str = ...) -> R: ...


class CommandWriter:
    """Runs commands and records events: the only way events reach the log."""

    def __init__(self, log: EventLog, snapshots: SnapshotStore, catalog: Catalog, messages: MessageLists,
                 checkpoints: Checkpoints, idempotency: IdempotencyRecords, write: Write, clock: Clock,
                 snapshot_every: int, decoded: DecodedSessions) -> None:
        self._log, self._snapshots = log, snapshots
        self._catalog, self._messages, self._checkpoints = catalog, messages, checkpoints
        self.read_models: tuple[ReadModel, ...] = (catalog, messages)
        self._idempotency = idempotency
        self._write, self._clock = write, clock
        self._snapshot_every = snapshot_every
        self._decoded = decoded

    def now_micros(self) -> int:
        return now_micros(self._clock)

    def _head(self, txn: WriteTransaction, key: str, tip: StreamTip) -> SessionHead:
        return (None if tip.stream_id is None else self._catalog.head(txn, tip.stream_id)) or empty_head(key)

    def deciding_with_last(self, key: str, decide: Callable[[SessionHead, ChatMessage | None], Decision[R]]
                           ) -> Step[R]:
        """The step of a command that decides from the session's head and its last message (``None`` for none)."""

        def step(txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[R, list[LogChange]]:
            head = self._head(txn, key, tip)
            last = self._messages.last(txn, tip.stream_id) if tip.stream_id is not None and head.message_count \
                else None
            events, result = decide(head, last)
            return result, self.record(txn, key, events, now, tip=tip)

        return step

    def last_message_at(self, txn: WriteTransaction, key: str, version: int) -> ChatMessage:
        """The last message of the session ``key`` after its ``version``-th event.

        Raises:
            StoreCorrupted: the session had no message then.
        """
        stream_id = self._log.stream_id(txn, key)
        messages = () if stream_id is None else fold_stream(txn, self._log, self._snapshots, stream_id, key,
                                                            version).messages
        if not messages:
            raise StoreCorrupted(f"session {key!r} had no message at version {version}, which a command removed")
        return messages[-1][0]

    def deciding_with_messages(self, key: str, decide: Callable[[SessionHead, list[Entry]], Decision[R]]
                               ) -> Step[R]:
        """The step of a command that decides from the session's head and its whole current message list."""

        def step(txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[R, list[LogChange]]:
            head = self._head(txn, key, tip)
            current = self._messages.entries(txn, tip.stream_id) if tip.stream_id is not None and head.exists \
                else []
            events, result = decide(head, current)
            return result, self.record(txn, key, events, now, tip=tip)

        return step

    def forking(self, key: str, source_key: str, version: int | None, as_of: datetime | None) -> Step[None]:
        """The step that starts ``key`` as a fork of ``source_key`` at ``version`` or ``as_of`` (now for neither)."""

        def step(txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[None, list[LogChange]]:
            head = self._head(txn, key, tip)
            source_stream = self._log.stream_id(txn, source_key)
            target = resolve_version(txn, self._log, source_key, source_stream, version, as_of)
            source, source_hash = empty_snapshot(source_key), ""
            if source_stream is not None and target:
                source = fold_stream(txn, self._log, self._snapshots, source_stream, source_key, target)
                source_hash = self._log.read_version(txn, source_stream, target).hash.hex()
            events, result = commands.fork(head, source, source_key, source_hash)
            # Reading the source wrote nothing: the tip still holds.
            return result, self.record(txn, key, events, now, tip=tip)

        return step

    def run(self, key: str, request: Request, step: Step[R], expected_version: int | None = None,
            idempotency_key: str | None = None) -> tuple[R, int]:
        """Run ``step`` (which records the command's events) in one write transaction; return its result and the
        session's version.

        ``expected_version``: raise ``WrongExpectedVersion`` (writing nothing) unless the
        session is at this version. ``idempotency_key``: a retry of ``request`` with the same
        key writes nothing and returns the first call's result; another request with that key
        raises ``IdempotencyKeyReused``.
        """
        return self.run_command(Command.checked(key, request, lambda _: step, expected_version, idempotency_key))

    def run_command(self, command: Command[R]) -> tuple[R, int]:
        """Run one command in its own write transaction; its result and the session's version."""
        return self.run_together([command])[0]

    def run_together(self, batch: Sequence[Command[Any]]) -> list[tuple[Any, int]]:
        """Run commands (on one session or several) in one write transaction: all of them commit, or none.

        Each runs on its session as the commands before it left it; returns each one's result and version.
        """
        now = self.now_micros()
        recorded: list[list[LogChange]] = []

        def body(txn: WriteTransaction) -> list[tuple[Any, int]]:
            recorded.clear()  # the body runs again if the map had to grow
            return [self._apply(txn, command, now, recorded) for command in batch]

        outcomes = self._write(body)
        for changes in recorded:
            self._decoded.advance(changes)
        return outcomes

    def _apply(self, txn: WriteTransaction, command: Command[R], now: int, recorded: list[list[LogChange]]
               ) -> tuple[R, int]:
        key, idempotency_key, expected_version = command.key, command.idempotency_key, command.expected_version
        digest = None if idempotency_key is None else command.request.digest()
        if idempotency_key is not None:
            earlier = self._idempotency.get(txn, key, idempotency_key)
            if earlier is not None:
                if earlier.digest is not None and earlier.digest != digest:
                    raise IdempotencyKeyReused(key, idempotency_key, earlier.command or "?", command.request.name)
                if command.kept is not None:
                    return command.kept.recall(self, txn, key, earlier.result, earlier.version), earlier.version
                return earlier.result, earlier.version
        tip = self._log.tip(txn, key)
        version = tip.version
        if expected_version is not None and expected_version != version:
            raise WrongExpectedVersion(key, expected_version, version)
        if command.plan is None:
            assert command.decide is not None  # a command gives one or the other
            events, result = command.decide(self._head(txn, key, tip))
            changes = self.record(txn, key, events, now, tip=tip)
        else:
            result, changes = command.plan(self)(txn, tip, now)
        recorded.append(changes)
        if changes:
            version = changes[-1].version
        if idempotency_key is not None:
            kept = result if command.kept is None else command.kept.keep(result)
            self._idempotency.put(txn, key, idempotency_key,
                                  IdempotencyRecord(kept, version, command.request.name, digest))
        return result, version

    def delete_stale(self, ttl_hours: float) -> int:
        """Delete every session idle for more than ``ttl_hours``, in one transaction; return how many."""
        now = self.now_micros()
        cutoff = now - ttl_hours * 3600 * 1_000_000

        def body(txn: WriteTransaction) -> int:
            stale = self._catalog.inactive_since(txn, cutoff)
            for head in stale:
                self.record(txn, head.key, commands.delete(head, "stale")[0], now)
            return len(stale)

        return self._write(body)

    def record(self, txn: WriteTransaction, key: str, events: Sequence[SessionEvent], now: int,
               expected_version: int | None = None, originals: Sequence[Original] | None = None,
               tip: StreamTip | None = None, times: Sequence[int] | None = None) -> list[LogChange]:
        """Append one session's events in ``txn``, apply the inline read models, snapshot when due (``tip``: the
        stream's, read in ``txn`` since its last record, if the caller has it; ``times``: each event's own time,
        an import's, raised to ``now`` and to the one before it)."""
        stored = self._log.append(txn, key, encode_events(events), now, expected_version, originals,
                                  tip, times)
        if not stored:
            return []
        # A command's events share one time (one datetime, which the read models then convert once); an import's
        # each have their own.
        moments = (repeat(from_micros(stored[0].recorded_at)) if times is None
                   else [from_micros(entry.recorded_at) for entry in stored])
        recorded = list(map(_new_change, repeat(LogChange), zip(
            repeat(key), map(attrgetter("version"), stored), moments, events, map(attrgetter("hash"), stored))))
        if SessionRestored in map(type, events):  # an import's, recorded without its creation time, folds with it
            creation_times = RestoredCreationTimes(txn, self._log, self._snapshots)
            recorded = [change._replace(event=creation_times.event(entry, change.event))
                        for entry, change in zip(stored, recorded)]
        stream_id = stored[0].stream_id
        for model in self.read_models:
            model.apply(txn, stream_id, recorded)
            self._checkpoints.put(txn, model.name, model.code_version, stored[-1].position)
        if stored[-1].version // self._snapshot_every > (stored[0].version - 1) // self._snapshot_every:
            # This commit reached a multiple of snapshot_every: snapshot the session as the commit leaves it.
            self.take_snapshot(txn, stream_id, key, stored[-1].version, stored[-1].hash, recorded)
        return recorded

    def record_run(self, txn: WriteTransaction, key: str, events: Sequence[SessionEvent], times: Sequence[int],
                   version: int, originals: Sequence[Original] | None = None) -> list[LogChange]:
        """Record events a session had elsewhere (an import's, a replica's), each at its own time, after its
        ``version``: in runs cut where a snapshot is due, so that each is taken at its version, as recording them
        one by one would."""
        every = self._snapshot_every
        changes: list[LogChange] = []
        start = 0
        while start < len(events):
            end = min(len(events), start + every - (version + start) % every)
            changes += self.record(txn, key, events[start:end], times[start], version + start,
                                   None if originals is None else originals[start:end], times=times[start:end])
            start = end
        return changes

    def take_snapshot(self, txn: WriteTransaction, stream_id: int, key: str, version: int, event_hash: bytes,
                      recent: Sequence[LogChange] = ()) -> None:
        """Snapshot the session at ``version``, its latest: the read models hold it as it is now."""
        head = self._catalog.head(txn, stream_id) or attrs.evolve(empty_head(key), version=version)
        take_snapshot(txn, self._log, self._snapshots, stream_id, head,
                      lambda start: self._messages.chunks_from(txn, stream_id, start), event_hash, recent)

    def derive_snapshots(self, txn: WriteTransaction, stream_id: int, key: str) -> int:
        """Take, from the log, the snapshots the session lacks at this store's ``snapshot_every``
        (``_folding.derive_snapshots``); how many."""
        return derive_snapshots(txn, self._log, self._snapshots, stream_id, key, self._snapshot_every)
