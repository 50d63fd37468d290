"""``SessionStore``: the facade, and the composition root that wires the log to the read models.

Every command validates its arguments, then runs in one LMDB write
transaction: read the session's head from the catalog, decide the events, append
them to the log, apply every read model and save their checkpoints, take a
snapshot if one is due, commit. Every query runs in one read transaction and
reads a read model, never the log (point-in-time reads fold the log on purpose).
"""

from __future__ import annotations

import os
import re
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import attrs

from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints, ReadModel
from projections.session import SessionHead, SessionSnapshot, empty_head, empty_snapshot, fold

from ._codec import decode_event, decode_value, encode_event, encode_value
from ._environment import Environment, Transaction
from ._errors import EventStoreError, InvalidArgument, StoreCorrupted
from ._log import EventLog, StoredEvent
from ._snapshots import SnapshotStore
from ._time import Clock, from_micros, system_clock, to_micros
from ._values import (
    ChatMessage,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
    utc,
    validate_key,
    validate_text,
)
from .events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    RecordedEvent,
    SessionDeleted,
    SessionEvent,
    SessionRenamed,
    SessionStateChanged,
)

__all__ = ["SessionStore", "DEFAULT_SEARCH_LIMIT"]

R = TypeVar("R")
Decision = tuple[Sequence[SessionEvent], R]

#: Sessions returned by ``search`` when the query sets no limit (as ZeroClaw).
DEFAULT_SEARCH_LIMIT = 50
#: Version of the snapshot layout; snapshots of another layout are ignored (they are derived data).
SNAPSHOT_FORMAT = 1


@attrs.frozen
class _SnapshotRecord:
    format: int
    event_hash: str
    state: SessionSnapshot


def _check_count(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"{what} must be a non-negative number, not {value!r}")
    return float(value)


class SessionStore:
    """An event-sourced, append-only store of conversation sessions in one LMDB environment.

    Args:
        path: a directory, created if missing.
        clock: returns the current aware UTC datetime; the real clock by default.
        durable: when true (the default), a call returns after its commit is on
            disk. When false, commits skip fsync: a crash of the process loses
            nothing, a crash of the machine may lose the latest commits.
        snapshot_every: take a snapshot of a session every this many of its events.
        max_size: a cap on the store's size in bytes; reaching it raises ``StoreFull``.
        cache_sessions: how many sessions' decoded message lists to keep in memory.

    The store is a context manager, may be shared by threads, and may be opened
    by several processes at once.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None, durable: bool = True,
                 snapshot_every: int = 1000, max_size: int | None = None, cache_sessions: int = 256) -> None:
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise InvalidArgument(f"snapshot_every must be a positive int, not {snapshot_every!r}")
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventStoreError(f"cannot create the store directory {self.path}: {exc}") from None
        self._clock = clock or system_clock
        self._snapshot_every = snapshot_every
        self._cache_sessions = cache_sessions
        self._loaded: OrderedDict[int, tuple[int, tuple[ChatMessage, ...]]] = OrderedDict()
        self._environment = Environment.acquire(self.path, durable=durable, max_size=max_size)
        try:
            self._log = EventLog(self._environment)
            self._snapshots = SnapshotStore(self._environment)
            self._catalog = Catalog(self._environment.open_db)
            self._messages = MessageLists(self._environment.open_db)
            self._read_models: tuple[ReadModel, ...] = (self._catalog, self._messages)
            self._checkpoints = Checkpoints(self._environment.open_db)
            self._environment.write(self._rebuild_outdated)
        except BaseException:
            self._environment.release()
            raise
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Close the store; further calls raise ``StoreClosed``. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._environment.release()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------

    def append(self, key: str, message: ChatMessage, *, expected_version: int | None = None) -> int:
        """Append a message, creating the session if needed; return the session's new version."""
        return self.append_many(key, [message], expected_version=expected_version)

    def append_many(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None) -> int:
        """Append several messages atomically (one event each, one commit); return the new version."""
        batch = [self._check_message(message) for message in messages]
        return self._execute(key, lambda head: ([MessageAppended(m) for m in batch], None),
                             expected_version=expected_version)[1]

    def remove_last(self, key: str) -> bool:
        """Remove the last message; ``False`` (and no event) when there is none."""
        return self._execute(key, lambda head: ([LastMessageRemoved()], True) if head.message_count else ([], False))[0]

    def update_last(self, key: str, message: ChatMessage) -> bool:
        """Replace the last message (a streaming update); ``False`` when the session has none."""
        message = self._check_message(message)
        return self._execute(
            key, lambda head: ([LastMessageReplaced(message)], True) if head.message_count else ([], False)
        )[0]

    def clear_messages(self, key: str) -> int:
        """Remove every message but keep the session, its name and state; return how many went."""
        return self._execute(
            key,
            lambda head: ([MessagesCleared(head.message_count)], head.message_count) if head.message_count
            else ([], 0),
        )[0]

    def set_session_name(self, key: str, name: str) -> None:
        """Name the session (an empty name clears it), creating the session if needed."""
        new_name = validate_text(name, "session name") or None
        self._execute(
            key, lambda head: ([SessionRenamed(new_name)], None) if not head.exists or head.name != new_name
            else ([], None),
        )

    def set_session_state(self, key: str, state: str, turn_id: str | None = None) -> None:
        """Set the run state; ``"running"`` starts the turn clock. Creates the session if needed.

        Setting the state and turn id it already has records nothing.
        """
        validate_text(state, "session state")
        if not state:
            raise InvalidArgument("session state must not be empty")
        if turn_id is not None:
            validate_text(turn_id, "turn id")

        def decide(head: SessionHead) -> Decision[None]:
            current = head.state
            unchanged = head.exists and current is not None and (current.state, current.turn_id) == (state, turn_id)
            return ([], None) if unchanged else ([SessionStateChanged(state, turn_id)], None)

        self._execute(key, decide)

    def delete_session(self, key: str, *, reason: str | None = None) -> bool:
        """Delete the session (as an event); ``False`` when it does not exist."""
        if reason is not None:
            validate_text(reason, "reason")
        return self._execute(key, lambda head: ([SessionDeleted(reason)], True) if head.exists else ([], False))[0]

    def cleanup_stale(self, ttl_hours: float) -> int:
        """Delete every session idle for more than ``ttl_hours``; return how many were deleted."""
        cutoff = to_micros(self._now() - timedelta(hours=_check_count(ttl_hours, "ttl_hours")))

        def body(txn: Transaction) -> int:
            stale = self._catalog.inactive_since(txn, cutoff)
            for head in stale:
                self._record(txn, head.key, [SessionDeleted("stale")], to_micros(self._now()))
            return len(stale)

        return self._environment.write(body)

    def compact(self, key: str) -> bool:
        """Snapshot the session at its current version (no event is deleted).

        Returns ``False`` when the key has no events or that snapshot exists already.
        """
        validate_key(key)

        def body(txn: Transaction) -> bool:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return False
            version = self._log.stream_version(txn, stream_id)
            if self._snapshots.has(txn, stream_id, version):
                return False
            self._take_snapshot(txn, stream_id, key, version)
            return True

        return self._environment.write(body)

    def rebuild_projections(self) -> None:
        """Drop every read model and rebuild it from the log, in one transaction."""
        self._environment.write(lambda txn: self._rebuild(txn, self._read_models))
        self._loaded.clear()

    # -- queries --------------------------------------------------------------------

    def load(self, key: str) -> list[ChatMessage]:
        """The session's current messages, oldest first; ``[]`` for an unknown or deleted session."""
        validate_key(key)
        with self._environment.read() as txn:
            found = self._live(txn, key)
            if found is None:
                return []
            stream_id, head = found
            cached = self._loaded.get(stream_id)
            if cached is not None and cached[0] == head.version:
                return list(cached[1])
            messages = self._messages.load(txn, stream_id)
        if len(messages) != head.message_count:
            raise StoreCorrupted(f"session {key!r}: {len(messages)} messages stored, {head.message_count} counted")
        self._remember(stream_id, head.version, messages)
        return messages

    def load_with_timestamps(self, key: str) -> list[TimestampedMessage]:
        """The session's current messages with the times they were appended."""
        validate_key(key)
        with self._environment.read() as txn:
            found = self._live(txn, key)
            return [] if found is None else self._messages.load_timestamped(txn, found[0])

    def list_sessions(self) -> list[str]:
        """Keys of the live sessions, most recent activity first."""
        with self._environment.read() as txn:
            return self._catalog.keys_by_activity(txn)

    def list_sessions_with_metadata(self) -> list[SessionMetadata]:
        """Metadata of the live sessions, most recent activity first."""
        with self._environment.read() as txn:
            return self._catalog.metadata_by_activity(txn)

    def get_session_metadata(self, key: str) -> SessionMetadata | None:
        """The session's metadata; ``None`` for an unknown or deleted session."""
        head = self._head(key)
        return None if head is None else head.metadata()

    def session_exists(self, key: str) -> bool:
        """Whether the session is live (has events and is not deleted)."""
        return self._head(key) is not None

    def get_session_name(self, key: str) -> str | None:
        """The session's name, if it has one."""
        head = self._head(key)
        return None if head is None else head.name

    def get_session_state(self, key: str) -> SessionState | None:
        """The session's run state; ``None`` if it never had one or does not exist."""
        head = self._head(key)
        return None if head is None else head.state

    def list_running_sessions(self) -> list[SessionMetadata]:
        """Sessions in the ``"running"`` state, latest turn first."""
        with self._environment.read() as txn:
            return [head.metadata() for head in self._catalog.running(txn)]  # type: ignore[misc]

    def list_stuck_sessions(self, threshold_secs: float) -> list[SessionMetadata]:
        """Running sessions whose turn started more than ``threshold_secs`` ago, oldest first."""
        cutoff = to_micros(self._now() - timedelta(seconds=_check_count(threshold_secs, "threshold_secs")))
        with self._environment.read() as txn:
            return [head.metadata() for head in self._catalog.running_since_before(txn, cutoff)]  # type: ignore[misc]

    def search(self, query: SessionQuery) -> list[SessionMetadata]:
        """Sessions with a current message containing any word of ``query.keyword``.

        A ``None`` or blank keyword returns every session. At most ``query.limit``
        sessions (``DEFAULT_SEARCH_LIMIT`` for a keyword search without one),
        most recent activity first.
        """
        if not isinstance(query, SessionQuery):
            raise InvalidArgument(f"search takes a SessionQuery, not {type(query).__name__}")
        limit = query.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative int, not {limit!r}")
        keyword = "" if query.keyword is None else validate_text(query.keyword, "keyword")
        words = set(_words(keyword))
        with self._environment.read() as txn:
            sessions = self._catalog.metadata_by_activity(txn, None if words else limit)
            if not words:
                return sessions
            limit = DEFAULT_SEARCH_LIMIT if limit is None else limit
            found = []
            for metadata in sessions:
                if len(found) >= limit:
                    break
                stream_id = self._log.stream_id(txn, metadata.key)
                assert stream_id is not None
                if any(words.intersection(_words(row[1])) for row in self._messages.rows(txn, stream_id)):
                    found.append(metadata)
            return found

    # -- internals ------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc(self._clock())

    @staticmethod
    def _check_message(message: object) -> ChatMessage:
        if not isinstance(message, ChatMessage):
            raise InvalidArgument(f"expected a ChatMessage, not {type(message).__name__}")
        return message

    def _execute(self, key: str, decide: Callable[[SessionHead], Decision[R]], *,
                 expected_version: int | None = None) -> tuple[R, int]:
        """Run one command on one session; return the decision's result and the session's version."""
        validate_key(key)
        if expected_version is not None and (
                isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0):
            raise InvalidArgument(f"expected_version must be a non-negative int, not {expected_version!r}")
        now = to_micros(self._now())

        def body(txn: Transaction) -> tuple[R, int]:
            stream_id = self._log.stream_id(txn, key)
            head = (None if stream_id is None else self._catalog.head(txn, stream_id)) or empty_head(key)
            events, result = decide(head)
            stored = self._record(txn, key, events, now, expected_version)
            if stored:
                return result, stored[-1].version
            return result, 0 if stream_id is None else self._log.stream_version(txn, stream_id)

        return self._environment.write(body)

    def _record(self, txn: Transaction, key: str, events: Sequence[SessionEvent], now: int,
                expected_version: int | None = None) -> list[StoredEvent]:
        stored = self._log.append(txn, key, [encode_event(e) for e in events], now, expected_version)
        for entry, event in zip(stored, events):
            recorded = self._recorded(entry, event)
            for model in self._read_models:
                model.apply(txn, entry.stream_id, recorded)
            if entry.version % self._snapshot_every == 0:
                self._take_snapshot(txn, entry.stream_id, key, entry.version)
        if stored:
            for model in self._read_models:
                self._checkpoints.put(txn, model.name, model.code_version, stored[-1].position)
        return stored

    @staticmethod
    def _recorded(entry: StoredEvent, event: SessionEvent | None = None) -> RecordedEvent:
        if event is None:
            try:
                event = decode_event(entry.encoded)
            except EventStoreError as exc:
                raise type(exc)(f"position {entry.position}: {exc}") from None
        return RecordedEvent(entry.position, entry.session_key, entry.version, from_micros(entry.recorded_at),
                             event, uuid.UUID(bytes=entry.event_id), entry.hash.hex())

    def _fold(self, txn: Transaction, stream_id: int, key: str, version: int) -> SessionSnapshot:
        """The session after its ``version``-th event: the nearest snapshot plus the events after it."""
        state, start = empty_snapshot(key), 0
        found = self._snapshots.latest(txn, stream_id, version)
        if found is not None:
            record = decode_value(found[1], _SnapshotRecord)
            if record.format == SNAPSHOT_FORMAT:
                state, start = record.state, found[0]
        events = (self._recorded(entry) for entry in self._log.read_stream(txn, stream_id, start, version))
        return fold(state, events)

    def _take_snapshot(self, txn: Transaction, stream_id: int, key: str, version: int) -> None:
        state = self._fold(txn, stream_id, key, version)
        event_hash = next(self._log.read_stream(txn, stream_id, version - 1, version)).hash.hex()
        self._snapshots.put(txn, stream_id, version, encode_value(_SnapshotRecord(SNAPSHOT_FORMAT, event_hash, state)))

    def _rebuild_outdated(self, txn: Transaction) -> None:
        head_position = self._log.head(txn)[0]
        outdated = [model for model in self._read_models
                    if self._checkpoints.get(txn, model.name) != (model.code_version, head_position)]
        if outdated:
            self._rebuild(txn, outdated)

    def _rebuild(self, txn: Transaction, models: Sequence[ReadModel]) -> None:
        for model in models:
            model.clear(txn)
        last = 0
        for entry in self._log.read_all(txn):
            recorded = self._recorded(entry)
            for model in models:
                model.apply(txn, entry.stream_id, recorded)
            last = entry.position
        for model in models:
            self._checkpoints.put(txn, model.name, model.code_version, last)

    def _live(self, txn: Transaction, key: str) -> tuple[int, SessionHead] | None:
        stream_id = self._log.stream_id(txn, key)
        if stream_id is None:
            return None
        head = self._catalog.head(txn, stream_id)
        return None if head is None else (stream_id, head)

    def _head(self, key: str) -> SessionHead | None:
        validate_key(key)
        with self._environment.read() as txn:
            found = self._live(txn, key)
        return None if found is None else found[1]

    def _remember(self, stream_id: int, version: int, messages: list[ChatMessage]) -> None:
        self._loaded[stream_id] = (version, tuple(messages))
        self._loaded.move_to_end(stream_id)
        while len(self._loaded) > self._cache_sessions:
            self._loaded.popitem(last=False)


_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())
