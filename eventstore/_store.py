"""``SessionStore``: the facade, and the composition root that wires the log to the read models.

Every command validates its arguments, then runs in one LMDB write
transaction: read the session's head from the catalog, decide the events, append
them to the log, apply every read model and save their checkpoints, take a
snapshot if one is due, commit. Every query runs in one read transaction and
reads a read model, never the log (point-in-time reads fold the log on purpose).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Sequence, TypeVar, get_args

import attrs

from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints, ReadModel
from projections.search import SearchIndex, snippet
from projections.tokenizer import parse_query
from projections.session import (
    Entry,
    SessionHead,
    SessionSnapshot,
    apply_edit,
    empty_head,
    empty_snapshot,
    fold,
    message_edit,
    timestamped,
)

from ._codec import encode_event
from ._deferred import DeferredSearch, SessionTexts
from ._audit import Progress, verify
from ._bookkeeping import IdempotencyRecords, ImportReceipts
from ._folding import LogChange, fold_stream, log_changes, take_snapshot, to_recorded, view_of
from .storage import Durability, ReadTransaction, Storage, WriteTransaction
from .storage.lmdb import Environment
from ._errors import (
    EventStoreError,
    IncompatibleStore,
    StoreClosed,
    StoreNotFound,
    StoreReadOnly,
    InvalidArgument,
    InvalidVersion,
    ReplicationMismatch,
    SourceChanged,
    StoreCorrupted,
)
from ._log import EventLog, Original, stream_runs
from ._snapshots import SnapshotStore
from ._time import Clock, from_micros, system_clock, to_micros
from ._values import (
    ChatMessage,
    SessionMetadata,
    SessionQuery,
    SearchHit,
    SessionState,
    ImportOutcome,
    ImportReceipt,
    SessionView,
    TimestampedMessage,
    VerifyReport,
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
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
    redact_event,
)

__all__ = ["SessionStore", "DEFAULT_SEARCH_LIMIT"]

R = TypeVar("R")
Decision = tuple[Sequence[SessionEvent], R]

EVENT_CLASSES = get_args(SessionEvent)
_SMALLEST_STORE = 1 << 20
#: Events read per read transaction when streaming the log.
_BATCH = 1000
#: Sessions returned by ``search`` when the query sets no limit (as ZeroClaw).
DEFAULT_SEARCH_LIMIT = 50


def _recordable(moment: object) -> int:
    """A time an event may be recorded at, in µs: aware, and not before 1970 (the indexes are unsigned)."""
    micros = to_micros(utc(moment))  # type: ignore[arg-type]
    if micros < 0:
        raise InvalidArgument(f"cannot record an event at {moment}: times before 1970 are not supported")
    return micros


def _check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, not {value!r}")
    return value


def _durability(durable: object) -> Durability:
    if durable is True or durable is False:
        return Durability.FULL if durable else Durability.OFF
    try:
        return Durability(durable)
    except ValueError:
        choices = ", ".join(repr(level.value) for level in Durability)
        raise InvalidArgument(f"durable must be a bool or a Durability ({choices}), not {durable!r:.60}") from None


def _same_session(one: SessionSnapshot, other: SessionSnapshot) -> bool:
    """Whether two folded sessions look the same to a reader (versions and activity times aside)."""
    a, b = one.head, other.head
    if not a.exists and not b.exists:
        return True
    return (a.exists, a.name, a.state, a.created_at, one.messages) == (b.exists, b.name, b.state, b.created_at,
                                                                       other.messages)


def _iterable(value: object, what: str) -> Iterable[object]:
    try:
        return iter(value)  # type: ignore[call-overload,no-any-return]
    except TypeError:
        raise InvalidArgument(f"{what} must be iterable, not {type(value).__name__}") from None


def _check_options(clock: object, snapshot_every: object, cache_sessions: object, rebuild_progress: object) -> None:
    """Check the options every way of opening a store takes."""
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
        raise InvalidArgument(f"snapshot_every must be a positive int, not {snapshot_every!r}")
    _check_index(cache_sessions, "cache_sessions")
    if clock is not None and not callable(clock):
        raise InvalidArgument(f"clock must be a callable returning an aware datetime, not {clock!r:.60}")
    _check_progress(rebuild_progress)


def _check_progress(progress: object) -> Progress | None:
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"progress must be a callable or None, not {progress!r}")
    return progress  # type: ignore[return-value]


def _check_count(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"{what} must be a non-negative number, not {value!r}")
    return float(value)


class SessionStore:
    """An event-sourced, append-only store of conversation sessions in one LMDB environment.

    Args:
        path: a directory, created if missing.
        clock: returns the current aware UTC datetime; the real clock by default.
        durable: what a commit survives: ``True`` (the default) or
            ``Durability.FULL``: a call returns after its commit is on disk;
            ``Durability.NORMAL`` (or ``"normal"``): one flush per commit, and a
            power loss may roll back the latest commit; ``False`` or
            ``Durability.OFF``: no flush, a power loss may lose recent commits or
            damage the store. A crash of the process loses nothing in any mode.
        snapshot_every: take a snapshot of a session every this many of its events (at the end
            of the commit that gets there).
        max_size: a cap on the store's size in bytes; reaching it raises ``StoreFull``.
        cache_sessions: how many sessions' decoded message lists to keep in memory.
        readonly: open for reads only: writes raise ``StoreReadOnly``, and a
            missing store raises ``StoreNotFound`` instead of being created. A store
            whose directory is not writable opens read-only by itself.
        rebuild_progress: called as ``progress(events_done, events_total)`` while
            opening rebuilds a read model whose code version changed.

    The store is a context manager, may be shared by threads, and may be opened
    by several processes at once. ``SessionStore.on_storage`` opens one on another
    storage engine.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 durable: bool | Durability | str = True,
                 snapshot_every: int = 250, max_size: int | None = None, cache_sessions: int = 256,
                 readonly: bool = False, rebuild_progress: Progress | None = None) -> None:
        _check_options(clock, snapshot_every, cache_sessions, rebuild_progress)
        if not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path) or "\x00" in str(path):
            raise InvalidArgument(f"path must be a non-empty str or os.PathLike without NUL, not {path!r:.60}")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise InvalidArgument(f"path {path!r:.60} cannot be encoded for the file system") from None
        durability = _durability(durable)
        if not isinstance(readonly, bool):
            raise InvalidArgument(f"readonly must be a bool, not {readonly!r:.60}")
        if max_size is not None and (_check_index(max_size, "max_size") < _SMALLEST_STORE):
            raise InvalidArgument(f"max_size must be at least {_SMALLEST_STORE} bytes, not {max_size}")
        directory = Path(path)
        if readonly and not directory.is_dir():
            raise StoreNotFound(f"there is no store at {directory}")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventStoreError(f"cannot create the store directory {directory}: {exc}") from None
        environment = Environment.acquire(directory, durability=durability, max_size=max_size, readonly=readonly)
        self._attach(environment, directory, clock, snapshot_every, cache_sessions, rebuild_progress, readonly)

    @classmethod
    def on_storage(cls, storage: Storage, *, clock: Clock | None = None, snapshot_every: int = 250,
                   cache_sessions: int = 256, rebuild_progress: Progress | None = None) -> SessionStore:
        """A store on an open storage engine, which it owns from then on: ``close`` releases it.

        ``SessionStore(path, ...)`` is this over LMDB at ``path``. The engine's own options
        (durability, size cap, read-only) are set when the engine is opened; the other
        arguments are ``SessionStore``'s. For a store in memory (tests, scratch work)::

            SessionStore.on_storage(eventstore.storage.MemoryStorage())
        """
        try:
            _check_options(clock, snapshot_every, cache_sessions, rebuild_progress)
        except BaseException:
            storage.release()
            raise
        store = cls.__new__(cls)
        store._attach(storage, storage.path, clock, snapshot_every, cache_sessions, rebuild_progress, False)
        return store

    def _attach(self, storage: Storage, path: Path, clock: Clock | None, snapshot_every: int, cache_sessions: int,
                rebuild_progress: Progress | None, readonly: bool) -> None:
        """Open the log and the read models on ``storage``; release it if that fails."""
        self.path = path
        self._clock = clock or system_clock
        self._rebuild_progress = rebuild_progress
        self._snapshot_every = snapshot_every
        self._cache_sessions = cache_sessions
        # Decoded message lists by session key, with the session version they are valid for.
        self._loaded: OrderedDict[str, tuple[int, tuple[Entry, ...]]] = OrderedDict()
        self._listing: tuple[tuple[int, int], tuple[SessionMetadata, ...]] | None = None
        self._cache_lock = threading.Lock()
        # Bumped whenever the environment is reopened (vacuum): LMDB transaction ids start over then.
        self._generation = 0
        self._closed = False
        self._environment = storage
        self._readonly = readonly or storage.readonly
        try:
            self._open_components()
        except BaseException:
            self._environment.release()
            raise

    def _open_components(self) -> None:
        self._generation += 1  # database handles and transaction ids change (vacuum)
        self._log = EventLog(self._environment)
        self._snapshots = SnapshotStore(self._environment)
        self._catalog = Catalog(self._environment.space)
        self._messages = MessageLists(self._environment.space)
        self._read_models: tuple[ReadModel, ...] = (self._catalog, self._messages)
        self._checkpoints = Checkpoints(self._environment.space)
        # Not applied in the command's transaction: caught up before reads.
        self._search = DeferredSearch(SearchIndex(self._environment.space), self._log, self._checkpoints,
                                      self._read, self._write, self._readonly, self.path)
        self._idempotency = IdempotencyRecords(self._environment)
        self._receipts = ImportReceipts(self._environment)
        if self._environment.readonly:
            with self._read() as txn:
                if self._outdated(txn):
                    raise StoreReadOnly(f"the read models of {self.path} are out of date; open it writable once")
        else:
            self._environment.write(self._rebuild_outdated)
            if self._search.built_by_other_code():
                progress = self._rebuild_progress
                with self._read() as txn:
                    total = self._log.head(txn)[0]
                self._search.catch_up(rebuild=True, progress=None if progress is None
                                      else lambda at: progress(at, total))  # type: ignore[misc]

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

    # Every command below that changes one session takes two keyword options:
    #   expected_version: raise WrongExpectedVersion (writing nothing) unless the
    #     session is at this version (optimistic concurrency);
    #   idempotency_key: a retry with the same key writes nothing and returns the
    #     first call's result (for a caller that lost the reply).

    def append(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
               idempotency_key: str | None = None) -> int:
        """Append a message, creating the session if needed; return the session's new version."""
        return self.append_many(key, [message], expected_version=expected_version, idempotency_key=idempotency_key)

    def append_many(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> int:
        """Append several messages atomically (one event each, one commit); return the new version."""
        if isinstance(messages, (str, bytes, ChatMessage)):
            raise InvalidArgument("append_many takes an iterable of ChatMessage")
        batch = [self._check_message(message) for message in _iterable(messages, "messages")]
        return self._execute(key, lambda head: ([MessageAppended(m) for m in batch], None),
                             expected_version, idempotency_key)[1]

    def remove_last(self, key: str, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> bool:
        """Remove the last message; ``False`` (and no event) when there is none."""
        return self._execute(key, lambda head: ([LastMessageRemoved()], True) if head.message_count else ([], False),
                             expected_version, idempotency_key)[0]

    def update_last(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> bool:
        """Replace the last message (a streaming update); ``False`` when the session has none."""
        message = self._check_message(message)
        return self._execute(
            key, lambda head: ([LastMessageReplaced(message)], True) if head.message_count else ([], False),
            expected_version, idempotency_key)[0]

    def clear_messages(self, key: str, *, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> int:
        """Remove every message but keep the session, its name and state; return how many went."""
        return self._execute(
            key,
            lambda head: ([MessagesCleared(head.message_count)], head.message_count) if head.message_count
            else ([], 0),
            expected_version, idempotency_key)[0]

    def set_session_name(self, key: str, name: str, *, expected_version: int | None = None,
                         idempotency_key: str | None = None) -> None:
        """Name the session (an empty name clears it), creating the session if needed.

        Setting the name it already has records nothing.
        """
        new_name = validate_text(name, "session name") or None
        self._execute(
            key, lambda head: ([SessionRenamed(new_name)], None) if not head.exists or head.name != new_name
            else ([], None),
            expected_version, idempotency_key)

    def set_session_state(self, key: str, state: str, turn_id: str | None = None, *,
                          expected_version: int | None = None, idempotency_key: str | None = None) -> None:
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

        self._execute(key, decide, expected_version, idempotency_key)

    def delete_session(self, key: str, *, reason: str | None = None, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> bool:
        """Delete the session (as an event); ``False`` when it does not exist."""
        if reason is not None:
            validate_text(reason, "reason")
        return self._execute(key, lambda head: ([SessionDeleted(reason)], True) if head.exists else ([], False),
                             expected_version, idempotency_key)[0]

    def cleanup_stale(self, ttl_hours: float) -> int:
        """Delete every session idle for more than ``ttl_hours``; return how many were deleted."""
        now = self._now_micros()
        cutoff = now - _check_count(ttl_hours, "ttl_hours") * 3600 * 1_000_000

        def body(txn: WriteTransaction) -> int:
            stale = self._catalog.inactive_since(txn, cutoff)
            for head in stale:
                self._record(txn, head.key, [SessionDeleted("stale")], now)
            return len(stale)

        return self._write(body)

    def compact(self, key: str) -> bool:
        """Snapshot the session at its current version (no event is deleted).

        Returns ``False`` when the key has no events or that snapshot exists already.
        """
        validate_key(key)

        def body(txn: WriteTransaction) -> bool:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return False
            version = self._log.stream_version(txn, stream_id)
            if self._snapshots.has(txn, stream_id, version):
                return False
            position = self._log.stream_position(txn, stream_id, version)
            assert position is not None
            self._take_snapshot(txn, stream_id, key, version, self._log.read_position(txn, position).hash)
            return True

        return self._write(body)

    def rebuild_projections(self, names: Iterable[str] | None = None, progress: Progress | None = None) -> None:
        """Drop read models and rebuild them from the log, in one transaction.

        Rebuilding ``"messages"`` also drops every snapshot: their blobs are copies
        of that model's chunks, so a damaged one could outlive the repair. They are
        taken again as sessions grow, and ``compact(key)`` takes one at once.

        Args:
            names: which projections (``"catalog"``, ``"messages"``, ``"search"``); all by default.
            progress: called as ``progress(events_done, events_total)`` as the rebuild goes.

        Raises:
            InvalidArgument: an unknown projection name.
        """
        _check_progress(progress)
        index = self._search.index
        models = {model.name: model for model in (*self._read_models, index)}
        if names is None:
            chosen = list(models.values())
        else:
            if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
                raise InvalidArgument(f"names must be a collection of projection names, not {names!r}")
            wanted = list(names)
            unknown = [name for name in wanted if not isinstance(name, str) or name not in models]
            if unknown:
                raise InvalidArgument(f"unknown projections {unknown}; known: {sorted(models)}")
            chosen = [models[name] for name in dict.fromkeys(wanted)]
        inline = [model for model in chosen if model is not index]
        with self._read() as txn:
            events = self._log.head(txn)[0]
        # One pass over the log for the inline models together, then one for the search index.
        total = events * (bool(inline) + (index in chosen))
        if inline:
            def body(txn: WriteTransaction) -> None:
                if self._messages in inline:
                    self._snapshots.clear(txn)
                self._rebuild(txn, inline, None if progress is None else lambda done, _: progress(done, total))

            self._write(body)
        if index in chosen:
            offset = events if inline else 0
            self._search.catch_up(rebuild=True, progress=None if progress is None
                                  else lambda at: progress(offset + at, total))
        if progress is not None:
            progress(total, total)
        self._loaded.clear()
        self._listing = None

    # -- queries --------------------------------------------------------------------

    def load(self, key: str, version: int | None = None, as_of: datetime | None = None) -> list[ChatMessage]:
        """The session's current messages, oldest first; ``[]`` for an unknown or deleted session.

        With ``version`` or ``as_of``, the messages as they were then (see ``session_at``).
        """
        if version is not None or as_of is not None:
            return self.session_at(key, version=version, as_of=as_of).messages
        return [message for message, _ in self._entries(key)]

    def load_with_timestamps(self, key: str) -> list[TimestampedMessage]:
        """The session's current messages with the times they were appended."""
        return [timestamped(entry) for entry in self._entries(key)]

    def _entries(self, key: str) -> tuple[Entry, ...]:
        """The current entries of a session, from the cache when it holds the session's version."""
        validate_key(key)
        with self._read() as txn:
            found = self._live(txn, key)
            if found is None:
                return ()
            stream_id, head = found
            cached = self._loaded.get(key)
            if cached is not None and cached[0] == head.version:
                return cached[1]
            entries = tuple(self._messages.entries(txn, stream_id))
        if len(entries) != head.message_count:
            raise StoreCorrupted(f"session {key!r}: {len(entries)} messages stored, {head.message_count} counted")
        self._remember(key, head.version, entries)
        return entries

    def list_sessions(self) -> list[str]:
        """Keys of the live sessions, most recent activity first."""
        with self._read() as txn:
            return self._catalog.keys_by_activity(txn)

    def list_sessions_with_metadata(self) -> list[SessionMetadata]:
        """Metadata of the live sessions, most recent activity first."""
        with self._read() as txn:
            # LMDB gives every committed write a new transaction id, in any process:
            # an unchanged id means an unchanged catalog.
            snapshot_id = (self._generation, txn.snapshot_id())
            cached = self._listing
            if cached is not None and cached[0] == snapshot_id:
                return list(cached[1])
            listing = self._catalog.metadata_by_activity(txn)
        self._listing = (snapshot_id, tuple(listing))
        return listing

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
        with self._read() as txn:
            return [head.metadata() for head in self._catalog.running(txn)]  # type: ignore[misc]

    def list_stuck_sessions(self, threshold_secs: float) -> list[SessionMetadata]:
        """Running sessions whose turn started more than ``threshold_secs`` ago, oldest first."""
        cutoff = self._micros_ago(_check_count(threshold_secs, "threshold_secs"))
        with self._read() as txn:
            return [head.metadata() for head in self._catalog.running_since_before(txn, cutoff)]  # type: ignore[misc]

    def search(self, query: SessionQuery) -> list[SessionMetadata]:
        """Sessions with a current message that matches a word of ``query.keyword``, best match first.

        Words are OR-ed (see ``projections.tokenizer.parse_query``: a trailing
        ``*`` makes a prefix, a word of several tokens is a phrase). A session
        scores by its best message (BM25); equal scores order by most recent
        activity. At most ``query.limit`` sessions, ``DEFAULT_SEARCH_LIMIT``
        without one. A ``None`` or blank keyword returns every session's
        metadata, most recent activity first (cut at ``limit`` when given).
        Session keys are not searched, only message contents.
        """
        if not isinstance(query, SessionQuery):
            raise InvalidArgument(f"search takes a SessionQuery, not {type(query).__name__}")
        limit = query.limit
        if limit is not None:
            _check_index(limit, "limit")
        keyword = "" if query.keyword is None else validate_text(query.keyword, "keyword")
        if not keyword.strip():
            with self._read() as txn:
                return self._catalog.metadata_by_activity(txn, limit)
        words = parse_query(keyword)
        limit = DEFAULT_SEARCH_LIMIT if limit is None else limit
        if not words or not limit:
            return []

        def run(view: object, txn: ReadTransaction) -> list[SessionMetadata]:
            hits = self._search.index.search_sessions(view, words, limit,  # type: ignore[arg-type]
                                                      SessionTexts(self._messages, txn))
            return self._catalog.metadata_of(txn, [stream_id for stream_id, _ in hits])

        return self._search.query(run)

    def search_messages(self, keyword: str | None, limit: int | None = 20) -> list[SearchHit]:
        """The current messages that best match ``keyword`` (words as in ``search``), best first.

        Each hit has its session's key, its index in ``load(session_key)``, the
        message, its BM25 score and a snippet with the matched words in ``[`` ``]``.
        Equal scores order by the session's most recent activity, then the later message.
        At most ``limit`` hits (20 when ``None``).
        """
        limit = 20 if limit is None else _check_index(limit, "limit")
        words = parse_query("" if keyword is None else validate_text(keyword, "keyword"))
        if not words or not limit:
            return []

        def run(view: object, txn: ReadTransaction) -> list[SearchHit]:
            texts = SessionTexts(self._messages, txn)
            found = []
            for stream_id, index, score in self._search.index.search_messages(view, words, limit,  # type: ignore
                                                                              texts):
                head = self._catalog.head(txn, stream_id)
                entries = texts.entries(stream_id)
                if head is None or index >= len(entries):
                    raise StoreCorrupted(f"the search index names message {index} of stream {stream_id}, "
                                         "which does not exist")
                message = entries[index][0]
                found.append(SearchHit(head.key, index, message, score, snippet(message.content, words)))
            return found

        return self._search.query(run)

    def catch_up(self) -> int:
        """Bring the deferred read models (the search index) up to the log; return how many events they applied.

        Searches catch up by themselves first; call this to take the work out
        of the next search, say after a bulk import.
        """
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._search.catch_up()

    # -- audit and time travel --------------------------------------------------------

    def history(self, key: str) -> list[RecordedEvent]:
        """Every event of the session key, oldest first, across deletions and reuse of the key."""
        validate_key(key)
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return []
            return [to_recorded(entry) for entry in self._log.read_stream(txn, stream_id)]

    def events(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event of every session in global order, after position ``after`` (a change feed).

        Streams in batches, each read in its own short read transaction.
        """
        _check_index(after, "after")
        if limit is not None:
            _check_index(limit, "limit")
        return self._stream_events(after, limit)

    def _stream_events(self, after: int, limit: int | None) -> Iterator[RecordedEvent]:
        remaining = limit
        while remaining is None or remaining > 0:
            batch_size = _BATCH if remaining is None else min(_BATCH, remaining)
            with self._read() as txn:
                batch = [to_recorded(entry) for entry in self._log.read_all(txn, after, batch_size)]
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].position
            if remaining is not None:
                remaining -= len(batch)

    def session_at(self, key: str, version: int | None = None, as_of: datetime | None = None) -> SessionView:
        """The whole session as it was after its ``version``-th event, or as of the aware time ``as_of``.

        Version 0, or a time before the first event, is the empty, non-existent
        session; with neither argument, the current session. Costs the events
        since the nearest snapshot, not the whole history.

        Raises:
            InvalidVersion: a version past the end.
            InvalidArgument: both arguments, a naive datetime, a bad type.
        """
        validate_key(key)
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            target = self._resolve_version(txn, key, stream_id, version, as_of)
            if stream_id is None or target == 0:
                return self._empty_view(key, target)
            return view_of(fold_stream(txn, self._log, self._snapshots, stream_id, key, target))

    def restore(self, key: str, version: int | None = None, as_of: datetime | None = None) -> int:
        """Make the session equal to its state at ``version`` or ``as_of`` by appending ``SessionRestored``.

        Messages, name, state and existence come back; nothing is deleted.
        Restoring to the current state writes nothing. Returns the session's version afterwards.
        """
        validate_key(key)
        if version is None and as_of is None:
            raise InvalidArgument("restore needs a version or an as_of time")
        now = self._now_micros()

        def body(txn: WriteTransaction) -> int:
            stream_id = self._log.stream_id(txn, key)
            target = self._resolve_version(txn, key, stream_id, version, as_of)
            if stream_id is None:
                return 0
            current_version = self._log.stream_version(txn, stream_id)
            current = fold_stream(txn, self._log, self._snapshots, stream_id, key, current_version)
            wanted = (fold_stream(txn, self._log, self._snapshots, stream_id, key, target) if target
                      else empty_snapshot(key))
            if _same_session(current, wanted):
                return current_version
            head = wanted.head
            messages = tuple(timestamped(entry) for entry in wanted.messages)
            event = SessionRestored(target, head.exists, messages, head.name, head.state, head.created_at)
            return self._record(txn, key, [event], now)[-1].version

        return self._write(body)

    def replay(self, key: str, from_version: int = 1, to_version: int | None = None
               ) -> Iterator[tuple[RecordedEvent, SessionView]]:
        """Step through the session: one ``(event, session right after it)`` pair per event.

        Streams the log in batches; memory per step is the view itself.
        """
        validate_key(key)
        _check_index(from_version, "from_version")
        from_version = max(from_version, 1)
        with self._read() as txn:
            stream_id = self._log.stream_id(txn, key)
            last = 0 if stream_id is None else self._log.stream_version(txn, stream_id)
            if to_version is not None:
                last = self._resolve_version(txn, key, stream_id, to_version, None)
            start = (empty_snapshot(key) if stream_id is None or from_version == 1 else
                     fold_stream(txn, self._log, self._snapshots, stream_id, key, min(from_version - 1, last)))
        return self._replay(stream_id, start, from_version - 1, last)

    def _replay(self, stream_id: int | None, state: SessionSnapshot, after: int, last: int
                ) -> Iterator[tuple[RecordedEvent, SessionView]]:
        while stream_id is not None and after < last:
            with self._read() as txn:
                batch = [to_recorded(entry) for entry in
                         self._log.read_stream(txn, stream_id, after, min(after + _BATCH, last))]
            for recorded in batch:
                state = fold(state, [recorded])
                yield recorded, view_of(state)
            after += _BATCH

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Walk the hash chain and check every snapshot and read model against a fresh fold of the log.

        Args:
            progress: called as ``progress(events_done, events_total)`` as the walk goes.

        Runs in one read transaction, so the answer is about one consistent moment;
        it writes nothing (a search index behind the log is checked with the
        missing events applied in memory).
        """
        progress = _check_progress(progress)
        with self._read() as txn:
            models = [*self._read_models, self._search.checker(txn)]
            return verify(txn, self._log, self._snapshots, models, progress)  # type: ignore[arg-type]

    def redact(self, key: str, reason: str) -> int:
        """Make the content of every message of the session unrecoverable; return how many events changed.

        Each event keeps its place, type and hash (its original payload digest
        stays, so the chain verifies); the session's snapshots are dropped and a
        ``SessionRedacted`` event records the reason. Run ``vacuum`` afterwards
        to remove the old bytes from the file.
        """
        validate_key(key)
        if not validate_text(reason, "reason").strip():
            raise InvalidArgument("a redaction needs a reason")
        now = self._now_micros()

        def body(txn: WriteTransaction) -> int:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return 0
            rewritten = []
            for entry in list(self._log.read_stream(txn, stream_id)):
                event = to_recorded(entry).event
                blanked = redact_event(event)
                if blanked != event:
                    payload = encode_event(blanked).payload
                    self._log.redact(txn, entry.position, payload)
                    rewritten.append((entry.position, hashlib.sha256(payload).hexdigest()))
            self._snapshots.delete_stream(txn, stream_id)
            self._record(txn, key, [SessionRedacted(reason, tuple(rewritten))], now)
            self._search.catch_up_in(txn)  # the redacted words leave the search index in the same commit
            return len(rewritten)

        changed = self._write(body)
        self._loaded.clear()
        return changed

    def vacuum(self) -> tuple[int, int]:
        """Rewrite the store's file compactly, dropping freed pages; return (bytes before, bytes after).

        Raises:
            StoreBusy: another store object or process has the store open.
        """
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        before = self._environment.file_size()
        self._environment.vacuum(reopen=self._open_components)
        return before, self._environment.file_size()

    def _resolve_version(self, txn: ReadTransaction, key: str, stream_id: int | None, version: int | None,
                         as_of: datetime | None) -> int:
        current = 0 if stream_id is None else self._log.stream_version(txn, stream_id)
        if version is not None and as_of is not None:
            raise InvalidArgument("give a version or an as_of time, not both")
        if as_of is not None:
            if not isinstance(as_of, datetime):
                raise InvalidArgument(f"as_of must be a datetime, not {type(as_of).__name__}")
            moment = to_micros(utc(as_of))
            # Recorded times never decrease, so the versions recorded by then form a prefix.
            low, high = 0, current
            while low < high:
                middle = (low + high + 1) // 2
                if self._version_time(txn, stream_id, middle) <= moment:  # type: ignore[arg-type]
                    low = middle
                else:
                    high = middle - 1
            return low
        if version is None:
            return current
        _check_index(version, "version")
        if version > current:
            raise InvalidVersion(f"session {key!r} has {current} versions; version {version} does not exist")
        return version

    def _version_time(self, txn: ReadTransaction, stream_id: int, version: int) -> int:
        position = self._log.stream_position(txn, stream_id, version)
        if position is None:
            raise StoreCorrupted(f"stream {stream_id}: version {version} is missing from the stream index")
        return self._log.read_position(txn, position).recorded_at

    @staticmethod
    def _empty_view(key: str, version: int) -> SessionView:
        return attrs.evolve(view_of(empty_snapshot(key)), version=version)

    # -- import and replication -------------------------------------------------------

    def import_sessions(self, sessions: Mapping[str, Sequence[tuple[datetime, SessionEvent]]], *,
                        source: str | None = None, size: int = 0, sha256: str = "") -> ImportOutcome:
        """Import whole sessions with their original times, in one transaction.

        Keys that already have events in the store are skipped (never merged) and
        listed in the outcome. With ``source``, a receipt (name, size, SHA-256) is
        committed with the events: importing the same source again writes nothing,
        and a source that changed since raises ``SourceChanged``.
        """
        if not isinstance(sessions, Mapping):
            raise InvalidArgument("import_sessions takes a mapping of key to timed events, "
                                  f"not {type(sessions).__name__}")
        for key, timed in sessions.items():
            validate_key(key)
            for pair in _iterable(timed, "a session's timed events"):
                if not (isinstance(pair, tuple) and len(pair) == 2):
                    raise InvalidArgument(f"expected (datetime, event) pairs, not {pair!r:.60}")
                moment, event = pair
                _recordable(moment)
                if type(event) not in EVENT_CLASSES:  # a subclass would be stored, and read back, as its base
                    raise InvalidArgument(f"cannot import {type(event).__name__}: not a session event")
        if source is not None:
            validate_text(source, "source")
        for value, what in ((size, "size"), (sha256, "sha256")):
            if not isinstance(value, int if what == "size" else str) or isinstance(value, bool):
                raise InvalidArgument(f"{what} has the wrong type: {value!r:.60}")

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
                    self._record(txn, key, [event], _recordable(moment))
                imported += 1
                events += len(timed)
            receipt = ImportReceipt(source or "", size, sha256, imported, events)
            if source is not None and (imported or not skipped):
                # A source whose every key was refused gets no receipt: importing it
                # again reports the conflicts again instead of "already imported".
                self._receipts.put(txn, receipt)
            return ImportOutcome(receipt, tuple(skipped), False)

        return self._write(body)

    def import_receipts(self) -> list[ImportReceipt]:
        """The receipt of every source imported so far."""
        with self._read() as txn:
            return self._receipts.all(txn)

    def replicate(self, events: Iterable[RecordedEvent], progress: Progress | None = None, total: int = 0) -> int:
        """Append events exported from another store, keeping positions, versions, times, ids and hashes.

        Each event must come next (its position after this store's last, its
        version after its session's last), and its recomputed hash must equal the
        one it carries; otherwise ``ReplicationMismatch`` is raised and that batch
        is not written. Returns how many events were appended.
        """
        progress = _check_progress(progress)
        _check_index(total, "total")
        count = 0
        batch: list[RecordedEvent] = []
        for recorded in _iterable(events, "events"):
            if not isinstance(recorded, RecordedEvent):
                raise InvalidArgument(f"replicate takes RecordedEvent objects, not {type(recorded).__name__}")
            if type(recorded.event) not in EVENT_CLASSES:  # a subclass would be stored, and read back, as its base
                raise InvalidArgument(f"cannot replicate {type(recorded.event).__name__}: not a session event")
            batch.append(recorded)
            if len(batch) == _BATCH:
                count += self._write(lambda txn: self._replicate_batch(txn, batch))
                batch = []
                if progress is not None:
                    progress(count, total)
        if batch:
            count += self._write(lambda txn: self._replicate_batch(txn, batch))
        if progress is not None:
            progress(count, total)
        return count

    def _replicate_batch(self, txn: WriteTransaction, batch: Sequence[RecordedEvent]) -> int:
        for recorded in batch:
            expected = self._log.head(txn)[0] + 1
            if recorded.position != expected:
                raise ReplicationMismatch(f"event at position {recorded.position} arrived where {expected} was due")
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
            copied = self._record(txn, validate_key(recorded.session_key), [recorded.event],
                                  to_micros(utc(recorded.recorded_at)), recorded.version - 1, [original])
            if (copied[0].hash.hex(), copied[0].recorded_at) != (recorded.hash, recorded.recorded_at):
                raise ReplicationMismatch(f"position {recorded.position}: the event does not hash as it did "
                                          "in its source store")
        return len(batch)

    # -- internals ------------------------------------------------------------------

    def _micros_ago(self, seconds: float) -> float:
        """The time ``seconds`` ago in µs; a float, so that huge or infinite spans stay exact enough."""
        return self._now_micros() - seconds * 1_000_000

    def _read(self) -> ContextManager[ReadTransaction]:
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._environment.read()

    def _write(self, body: Callable[[WriteTransaction], R]) -> R:
        if self._closed:
            raise StoreClosed("the store is closed")
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        return self._environment.write(body)

    def _now(self) -> datetime:
        return utc(self._clock())

    def _now_micros(self) -> int:
        return _recordable(self._clock())

    @staticmethod
    def _check_message(message: object) -> ChatMessage:
        if not isinstance(message, ChatMessage):
            raise InvalidArgument(f"expected a ChatMessage, not {type(message).__name__}")
        return message

    def _execute(self, key: str, decide: Callable[[SessionHead], Decision[R]], expected_version: int | None = None,
                 idempotency_key: str | None = None) -> tuple[R, int]:
        """Run one command on one session; return the decision's result and the session's version."""
        validate_key(key)
        if expected_version is not None:
            _check_index(expected_version, "expected_version")
        if idempotency_key is not None:
            validate_text(idempotency_key, "idempotency_key")
        now = self._now_micros()

        recorded: list[LogChange] = []

        def body(txn: WriteTransaction) -> tuple[R, int]:
            recorded.clear()  # the body runs again if the map had to grow
            if idempotency_key is not None:
                earlier = self._idempotency.get(txn, key, idempotency_key)
                if earlier is not None:
                    return earlier[0], earlier[1]
            stream_id = self._log.stream_id(txn, key)
            head = (None if stream_id is None else self._catalog.head(txn, stream_id)) or empty_head(key)
            events, result = decide(head)
            recorded.extend(self._record(txn, key, events, now, expected_version))
            if recorded:
                version = recorded[-1].version
            else:
                version = 0 if stream_id is None else self._log.stream_version(txn, stream_id)
            if idempotency_key is not None:
                self._idempotency.put(txn, key, idempotency_key, [result, version])
            return result, version

        outcome = self._write(body)
        self._advance_cache(recorded)
        return outcome

    def _advance_cache(self, committed: Sequence[LogChange]) -> None:
        """Bring a session's cached list up to date with events this process just committed.

        An assistant appends and reloads every turn; folding the new events into the
        cached list spares that reload its decode.
        """
        if not committed:
            return
        key = committed[0].session_key
        cached = self._loaded.get(key)
        if cached is None or cached[0] != committed[0].version - 1:
            return
        entries = list(cached[1])
        for event in committed:
            apply_edit(entries, message_edit(event))
        self._remember(key, committed[-1].version, tuple(entries))

    def _record(self, txn: WriteTransaction, key: str, events: Sequence[SessionEvent], now: int,
                expected_version: int | None = None, originals: Sequence[Original] | None = None
                ) -> list[LogChange]:
        stored = self._log.append(txn, key, [encode_event(e) for e in events], now, expected_version, originals)
        if not stored:
            return []
        recorded_at = from_micros(stored[0].recorded_at)  # the log records one commit's events at one time
        recorded = [LogChange(key, entry.version, recorded_at, event, entry.hash)
                    for entry, event in zip(stored, events)]
        stream_id = stored[0].stream_id
        for model in self._read_models:
            model.apply(txn, stream_id, recorded)
            self._checkpoints.put(txn, model.name, model.code_version, stored[-1].position)
        if stored[-1].version // self._snapshot_every > (stored[0].version - 1) // self._snapshot_every:
            # This commit reached a multiple of snapshot_every: snapshot the session as the commit leaves it.
            self._take_snapshot(txn, stream_id, key, stored[-1].version, stored[-1].hash, recorded)
        return recorded

    def _take_snapshot(self, txn: WriteTransaction, stream_id: int, key: str, version: int, event_hash: bytes,
                       recent: Sequence[LogChange] = ()) -> None:
        """Snapshot the session at ``version``, its latest: the read models hold it as it is now."""
        head = self._catalog.head(txn, stream_id) or attrs.evolve(empty_head(key), version=version)
        take_snapshot(txn, self._log, self._snapshots, stream_id, head,
                      lambda start: self._messages.chunks_from(txn, stream_id, start), event_hash, recent)

    def _outdated(self, txn: ReadTransaction) -> list[ReadModel]:
        head_position = self._log.head(txn)[0]
        for model in self._read_models:
            checkpoint = self._checkpoints.get(txn, model.name)
            if checkpoint is not None and checkpoint[0] > model.code_version:
                raise IncompatibleStore(f"the {model.name} projection was built by a newer version of eventstore "
                                        f"({checkpoint[0]} > {model.code_version}); upgrade the package")
        return [model for model in self._read_models
                if self._checkpoints.get(txn, model.name) != (model.code_version, head_position)]

    def _rebuild_outdated(self, txn: WriteTransaction) -> None:
        """On open: rebuild inline models that are behind or of another code version. (A deferred model
        of another code version is rebuilt next, outside this transaction; one merely behind, or never
        built, catches up on its next read or ``catch_up``.)"""
        outdated = self._outdated(txn)
        if outdated:
            self._rebuild(txn, outdated, self._rebuild_progress)

    def _rebuild(self, txn: WriteTransaction, models: Sequence[ReadModel], progress: Progress | None = None) -> None:
        """Clear the inline ``models`` and fold the whole log into them, one pass for all.

        ``progress(done, total)`` counts events.
        """
        total = self._log.head(txn)[0]
        for model in models:
            model.clear(txn)
        last = 0
        # Runs of one session's events go to the read models as one batch.
        for stream_id, run in stream_runs(self._log.read_all(txn)):
            entries = list(run)
            changes = list(log_changes(entries))
            for model in models:
                model.apply(txn, stream_id, changes)  # type: ignore[arg-type]
            if progress is not None and entries[-1].position // _BATCH != last // _BATCH:
                progress(entries[-1].position, total)
            last = entries[-1].position
        for model in models:
            self._checkpoints.put(txn, model.name, model.code_version, last)
        if progress is not None:
            progress(total, total)

    def _live(self, txn: ReadTransaction, key: str) -> tuple[int, SessionHead] | None:
        stream_id = self._log.stream_id(txn, key)
        if stream_id is None:
            return None
        head = self._catalog.head(txn, stream_id)
        return None if head is None else (stream_id, head)

    def _head(self, key: str) -> SessionHead | None:
        validate_key(key)
        with self._read() as txn:
            found = self._live(txn, key)
        return None if found is None else found[1]

    def _remember(self, key: str, version: int, entries: tuple[Entry, ...]) -> None:
        with self._cache_lock:  # threads share the store: keep the LRU bookkeeping whole
            self._loaded[key] = (version, entries)
            self._loaded.move_to_end(key)
            while len(self._loaded) > self._cache_sessions:
                self._loaded.popitem(last=False)

    def stats(self) -> StoreStats:
        """Counts of what the store holds, read in one read transaction (for ``eventstore stats``)."""
        with self._read() as txn:
            events, _ = self._log.count(txn)
            heads = [head for _, head in self._catalog.heads(txn)]
            streams = sum(1 for _ in self._log.stream_ids(txn))
            return StoreStats(
                events=events, sessions=len(heads), deleted_sessions=streams - len(heads),
                messages=sum(head.message_count for head in heads), bytes=self._environment.file_size(),
                snapshots=self._snapshots.count(txn), last_position=self._log.head(txn)[0],
                import_receipts=len(self._receipts.all(txn)),
                checkpoints={name: ProjectionCheckpoint(*checkpoint)
                             for name, checkpoint in self._checkpoints.all(txn).items()})


@attrs.frozen
class ProjectionCheckpoint:
    """How far a read model has applied the log, and the version of its code."""

    code_version: int
    position: int


@attrs.frozen
class StoreStats:
    """What ``SessionStore.stats`` counts.

    Attributes:
        events: events in the log.
        sessions: live sessions.
        deleted_sessions: keys with events whose session is deleted.
        messages: current messages of the live sessions.
        bytes: size of the data file.
        snapshots: stored snapshots.
        last_position: global position of the latest event (0 for none).
        import_receipts: sources imported so far.
        checkpoints: per read model, its code version and last applied position.
    """

    events: int
    sessions: int
    deleted_sessions: int
    messages: int
    bytes: int
    snapshots: int
    last_position: int
    import_receipts: int
    checkpoints: dict[str, ProjectionCheckpoint]
