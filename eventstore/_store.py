"""``SessionStore``: the public facade, and the composition root that wires the log to the read models.

The facade checks a call's arguments, owns the store's lifecycle (open, close,
context manager) and hands the work to the services of ``eventstore.services``:
commands go through ``writer`` (one write transaction each, deciding with
``commands``), current-state reads to ``queries``, reads of the past and restore
to ``time_travel``, upkeep and stats to ``maintenance``, imports and replication
to ``replication``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints, ReadModel
from projections.search.index import SEARCH_CACHE_BYTES, SearchIndex
from projections.session import timestamped

from ._audit import Progress
from ._bookkeeping import IdempotencyRecords, ImportReceipts
from ._deferred import Deferred, DeferredReadModels
from ._errors import (
    HELD_OPEN_BY,
    EventStoreError,
    InvalidArgument,
    StoreBusy,
    StoreClosed,
    StoreNotFound,
    StoreReadOnly,
    shown,
)
from ._log import EventLog
from ._shared import SHARED_LOG_SCHEMES, open_shared
from ._snapshots import SnapshotStore
from ._time import Clock, system_clock
from ._values import (
    ChatMessage,
    ImportOutcome,
    ImportReceipt,
    SearchHit,
    SessionMetadata,
    SessionPage,
    SessionQuery,
    SessionState,
    SessionView,
    TimestampedMessage,
    VerifyReport,
    validate_key,
    validate_text,
)
from .events import RecordedEvent
from .services import transaction as checked
from .services.arguments import check_count, check_event_hash, check_index, check_progress, iterable
from .services.cache import DecodedSessions
from .services.feed import Feed
from .services.maintenance import Maintenance, ProjectionCheckpoint, StoreStats
from .services.queries import Queries
from .services.replica import ReplicaBinding, ReplicaStorage
from .services.replication import Importable, Replication, importable
from .services.time_travel import TimeTravel
from .services.transaction import Transaction
from .services.write_capture import appended
from .services.writer import CommandWriter, Request
from .storage import Durability, ReadTransaction, Storage, WriteTransaction
from .storage.lmdb import Environment

__all__ = ["SessionStore", "StoreStats", "ProjectionCheckpoint", "DEFAULT_SEARCH_LIMIT"]

R = TypeVar("R")

_SMALLEST_STORE = 1 << 20
#: Seconds between the looks of a close waiting for another thread's close of the same store object at whether that
#: close now waits for this thread (``close``).
_CLOSE_LOOKS_AGAIN_AFTER = 0.05
#: Who holds a write transaction whose giver ``_write`` was not told (no such write calls back into the caller's code).
_UNNAMED_HOLDER = "the call under way"
#: Sessions returned by ``search`` when the query sets no limit (as ZeroClaw).
DEFAULT_SEARCH_LIMIT = 50


@contextmanager
def _committed_at_exit(transaction: Transaction) -> Iterator[Transaction]:
    try:
        yield transaction
    except BaseException:
        transaction.discard()
        raise
    transaction.commit()


def _durability(durable: object) -> Durability:
    if durable is True or durable is False:
        return Durability.FULL if durable else Durability.OFF
    try:
        return Durability(durable)
    except ValueError:
        choices = ", ".join(repr(level.value) for level in Durability)
        raise InvalidArgument(f"durable must be a bool or a Durability ({choices}), not {durable!r:.60}") from None


def _prefix(prefix: object) -> str:
    """A key prefix argument as text; ``None`` is the empty prefix, which every key has."""
    return "" if prefix is None else validate_text(prefix, "prefix")


def _check_options(clock: object, snapshot_every: object, cache_sessions: object, search_cache_bytes: object,
                   rebuild_progress: object) -> None:
    """Check the options every way of opening a store takes."""
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
        raise InvalidArgument(f"snapshot_every must be a positive int, not {shown(snapshot_every)}")
    check_index(cache_sessions, "cache_sessions")
    check_index(search_cache_bytes, "search_cache_bytes")
    if clock is not None and not callable(clock):
        raise InvalidArgument(f"clock must be a callable returning an aware datetime, not {clock!r:.60}")
    check_progress(rebuild_progress)


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
        search_cache_bytes: about how many bytes of the search index's decoded terms to keep in memory for the
            searches after the one that decoded them (160 MiB by default; four fifths for the common words'
            terms, stored in blocks and costly to decode again); 0 keeps none, and each search decodes its terms
            anew.
        readonly: open for reads only: writes raise ``StoreReadOnly``, and a
            missing store raises ``StoreNotFound`` instead of being created. A store
            whose directory is not writable opens read-only by itself.
        rebuild_progress: called as ``progress(events_done, events_total)`` while
            opening rebuilds a read model whose code version changed, or takes the snapshots
            a store an older version wrote lacks (once).
        cache: with a ``postgresql://`` URL as ``path``: the directory of this host's replica, which
            reads come from (docs/postgres.md); the log itself lives in PostgreSQL.

    Attributes:
        path: the store's directory (a ``postgresql://`` store's: its replica).
        clock: the clock the store stamps events with (``clock``, or the real clock); an import judges a time
            in the future by it.

    The store is a context manager, may be shared by threads, and may be opened
    by several processes at once. ``SessionStore.on_storage`` opens one on another
    storage engine.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 durable: bool | Durability | str = True,
                 snapshot_every: int = 250, max_size: int | None = None, cache_sessions: int = 256,
                 search_cache_bytes: int = SEARCH_CACHE_BYTES, readonly: bool = False,
                 rebuild_progress: Progress | None = None, cache: str | os.PathLike[str] | None = None) -> None:
        _check_options(clock, snapshot_every, cache_sessions, search_cache_bytes, rebuild_progress)
        if isinstance(path, str) and path.startswith(SHARED_LOG_SCHEMES):
            storage = open_shared(path, cache, max_size, readonly, rebuild_progress)
            self._attach(storage, storage.path, clock, snapshot_every, cache_sessions, search_cache_bytes,
                         storage.reporting(rebuild_progress), readonly)
            return
        if cache is not None:
            raise InvalidArgument("cache= is the replica directory of a postgresql:// store; a path needs none")
        if not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path) or "\x00" in str(path):
            raise InvalidArgument(f"path must be a non-empty str or os.PathLike without NUL, not {path!r:.60}")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise InvalidArgument(f"path {path!r:.60} cannot be encoded for the file system") from None
        durability = _durability(durable)
        if not isinstance(readonly, bool):
            raise InvalidArgument(f"readonly must be a bool, not {readonly!r:.60}")
        if max_size is not None and (check_index(max_size, "max_size") < _SMALLEST_STORE):
            raise InvalidArgument(f"max_size must be at least {_SMALLEST_STORE} bytes, not {max_size}")
        directory = Path(path)
        if readonly and not directory.is_dir():
            raise StoreNotFound(f"there is no store at {directory}")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventStoreError(f"cannot create the store directory {directory}: {exc}") from None
        environment = Environment.acquire(directory, durability=durability, max_size=max_size, readonly=readonly)
        self._attach(environment, directory, clock, snapshot_every, cache_sessions, search_cache_bytes,
                     rebuild_progress, readonly)

    @classmethod
    def on_storage(cls, storage: Storage, *, clock: Clock | None = None, snapshot_every: int = 250,
                   cache_sessions: int = 256, search_cache_bytes: int = SEARCH_CACHE_BYTES,
                   rebuild_progress: Progress | None = None) -> SessionStore:
        """A store on an open storage engine, which it owns from then on: ``close`` releases it.

        ``SessionStore(path, ...)`` is this over LMDB at ``path``. The engine's own options
        (durability, size cap, read-only) are set when the engine is opened; the other
        arguments are ``SessionStore``'s. For a store in memory (tests, scratch work)::

            SessionStore.on_storage(eventstore.storage.MemoryStorage())
        """
        try:
            _check_options(clock, snapshot_every, cache_sessions, search_cache_bytes, rebuild_progress)
        except BaseException:
            storage.release()
            raise
        store = cls.__new__(cls)
        store._attach(storage, storage.path, clock, snapshot_every, cache_sessions, search_cache_bytes,
                      rebuild_progress, False)
        return store

    def _attach(self, storage: Storage, path: Path, clock: Clock | None, snapshot_every: int, cache_sessions: int,
                search_cache_bytes: int, rebuild_progress: Progress | None, readonly: bool) -> None:
        """Open the log and the read models on ``storage``; release it if that fails."""
        self.path = path
        self.clock: Clock = clock or system_clock
        self._rebuild_progress = rebuild_progress
        self._snapshot_every = snapshot_every
        self._decoded = DecodedSessions(cache_sessions)
        self._search_cache_bytes = search_cache_bytes
        self._closed = False
        #: Guards ``_closer``, the process and thread whose close is under way (``close``); notified when that close
        #: ends.
        self._close_changed = threading.Condition()
        self._closer: tuple[int, int] | None = None
        # The threads running a write's body (which may call progress), or a call such a callback awaits (an async
        # store's, ``_standing_in_for``), each with the call that gave the write (``_write``'s ``holder``): their
        # writes are refused, as they would wait for that body's transaction.
        self._writing: dict[int, str] = {}
        self._environment = storage
        self._readonly = readonly or storage.readonly
        try:
            self._open_components()
        except BaseException:
            self._environment.release()
            raise

    def _open_components(self) -> None:
        """Open the log, the snapshots and the read models, and wire the services to them (again after vacuum)."""
        self._log = EventLog(self._environment, appended if isinstance(self._environment, ReplicaStorage) else None)
        self._snapshots = SnapshotStore(self._environment)
        self._catalog = Catalog(self._environment.space)
        self._messages = MessageLists(self._environment.space, self._log.dictionary)
        self._checkpoints = Checkpoints(self._environment.space)
        # Not applied in the command's transaction: caught up before reads.
        self._search_index = SearchIndex(self._environment.space, self._search_cache_bytes)
        self._search = Deferred(self._search_index, self._log, self._checkpoints, self._read, self._write,
                                self._make_room, self._release_freed_pages, self._readonly, self.path)
        self._deferred = DeferredReadModels([self._search])
        self._idempotency = IdempotencyRecords(self._environment)
        self._receipts = ImportReceipts(self._environment)
        self._writer = CommandWriter(self._log, self._snapshots, self._catalog, self._messages, self._checkpoints,
                                     self._idempotency, self._write, self.clock, self._snapshot_every,
                                     self._decoded)
        self._read_models: tuple[ReadModel, ...] = self._writer.read_models
        self._queries = Queries(self._log, self._catalog, self._messages, self._search, self._search_index,
                                self._read, self.clock, self._decoded)
        self._time_travel = TimeTravel(self._log, self._snapshots, self._read, self._write, self._writer)
        self._maintenance = Maintenance(self._environment, self._log, self._snapshots, self._catalog, self._messages,
                                        self._checkpoints, self._deferred, self._receipts, self._read, self._write,
                                        self._writer, self._decoded, self._release_freed_pages)
        self._replication = Replication(self._log, self._snapshots, self._receipts, self._read, self._write,
                                        self._writer)
        self._maintenance.open_read_models(self._rebuild_progress)
        if isinstance(self._environment, ReplicaStorage):
            self._environment.bind(ReplicaBinding(self._log.head, self._log.head_before_append,
                                                  self._replication.replicate_batch,
                                                  self._reopen_emptied, self._session_version))

    def _session_version(self, txn: ReadTransaction, key: str) -> int:
        """The version of ``key`` in the log (0: it never had an event)."""
        return self._log.tip(txn, key).version

    def _reopen_emptied(self) -> None:
        """Open the components again on a replica emptied to be rebuilt, forgetting what was decoded from it.

        The new components get a cache of their own: a read under way when the replica was emptied keeps what it
        decoded in its components' cache, which is emptied for the read that found the rebuild and then dropped.
        """
        self._decoded.clear()
        self._decoded = DecodedSessions(self._decoded.capacity)
        self._open_components()

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Close the store; further calls raise ``StoreClosed``. Closing twice is harmless.

        A close given while another thread's is under way waits for that one, and closes the store itself if that
        one was refused.

        Raises:
            StoreBusy: given from a thread that holds a transaction of the store open (a ``progress`` callback of a
                call under way, or a loop over a read), which the close would wait for: the store stays open. Or given
                from such a thread while another thread's close is under way, which may wait for that transaction.
        """
        with self._close_changed:
            # A forked child lacks the parent's closing thread: that close never ends there, and marked this object
            # closed.
            while self._closer is not None and self._closer[0] == os.getpid():
                if self._environment.release_waits_for_this_thread():
                    raise StoreBusy(f"another thread is closing the store at {self.path}, which waits for every "
                                    "transaction of this process to end, and this thread holds one open "
                                    f"{HELD_OPEN_BY}: close it once that call returns")
                # That close's release may become the last one (another store object on the path closed meanwhile),
                # which waits for this thread's transaction and notifies nothing here: look again now and then.
                self._close_changed.wait(_CLOSE_LOOKS_AGAIN_AFTER)
            if self._closed:
                return
            self._closed = True
            self._closer = os.getpid(), threading.get_ident()
        try:
            self._environment.release()
        except StoreBusy:
            with self._close_changed:
                self._closed = False  # nothing was released
            raise
        finally:
            with self._close_changed:
                self._closer = None
                self._close_changed.notify_all()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read(self) -> AbstractContextManager[ReadTransaction]:
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._environment.read()

    def _write(self, body: Callable[[WriteTransaction], R], *, holder: str = _UNNAMED_HOLDER) -> R:
        """``body`` in one write transaction; ``holder`` names the call that gave it, for the refusal of a command
        that a callback of that call gives while ``body`` runs."""
        self._refuse_writes()
        return self._environment.write(functools.partial(self._marked, body, holder))

    def _make_room(self, size: int) -> None:
        """Room in the storage for a write of about ``size`` bytes, made before it (``Storage.make_room``)."""
        self._refuse_writes()
        self._environment.make_room(size)

    def _release_freed_pages(self) -> None:
        """``Storage.release_freed_pages``, refused as a write of this store object is (``_refuse_writes``)."""
        self._refuse_writes()
        self._environment.release_freed_pages()

    def _refuse_writes(self) -> None:
        """Raise what a write of this store object cannot be given now: closed, read-only, or from a progress
        callback of its own write (whose transaction this thread holds)."""
        if self._closed:
            raise StoreClosed("the store is closed")
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        # A write's callback: its transaction holds the write lock.
        holder = self._writing.get(threading.get_ident()) if self._writing else None
        if holder is not None:
            raise StoreBusy(f"a command given from a progress callback while {holder} holds the store's write "
                            "transaction cannot run before that transaction ends; nothing was recorded: give it "
                            f"once {holder} returns")

    def _marked(self, body: Callable[[WriteTransaction], R], holder: str, txn: WriteTransaction) -> R:
        """``body``, run with this thread marked as in a write transaction given by ``holder`` (a group's leader runs
        its members'). Only the body: a replica's catch-up before it may report progress, and a command given then
        goes ahead."""
        thread = threading.get_ident()
        self._writing[thread] = holder
        try:
            return body(txn)
        finally:
            self._writing.pop(thread, None)

    @contextmanager
    def _standing_in_for(self, thread: int) -> Iterator[None]:
        """Run a call that ``thread`` waits for (an async store's, awaited from a callback of its call on ``thread``)
        as ``thread`` would run it: while ``thread`` runs a write's body, this thread's writes are refused
        (``StoreBusy``) rather than waiting for that body's transaction, which waits for them."""
        holder = self._writing.get(thread)
        if holder is None:
            yield
            return
        here = threading.get_ident()
        self._writing[here] = holder
        try:
            yield
        finally:
            self._writing.pop(here, None)

    # -- commands (services.commands decides, services.writer records) ----------------

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
        return self._writer.run_command(checked.append_many(key, messages, expected_version, idempotency_key))[1]

    def remove_last(self, key: str, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> bool:
        """Remove the last message; ``False`` (and no event) when there is none."""
        return self._writer.run_command(checked.remove_last(key, expected_version, idempotency_key))[0]

    def pop_last(self, key: str, *, expected_version: int | None = None,
                 idempotency_key: str | None = None) -> ChatMessage | None:
        """Remove the last message and return it; ``None`` (and no event) when there is none.

        One ``LastMessageRemoved`` event: the message stays in ``history`` and comes back with ``restore``.
        """
        return checked.popped(self._writer.run_command(checked.pop_last(key, expected_version, idempotency_key)))

    def update_last(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> bool:
        """Replace the last message (a streaming update); ``False`` when the session has none.

        Replacing it by an equal message records nothing (and answers ``True``).
        """
        return self._writer.run_command(checked.update_last(key, message, expected_version, idempotency_key))[0]

    def replace_messages(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                         idempotency_key: str | None = None) -> int:
        """Make the session's messages exactly ``messages``, atomically, as one ``MessagesReplaced`` event, creating
        the session if needed; return the session's version.

        For a framework that prunes or summarises a session: what it drops stays in ``history`` (and
        ``restore`` brings it back). Messages kept from the list before, in order, keep the time they were
        appended; the others read as appended now. A live session that holds exactly these records nothing.
        """
        return self._writer.run_command(checked.replace_messages(key, messages, expected_version,
                                                                 idempotency_key))[1]

    def clear_messages(self, key: str, *, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> int:
        """Remove every message but keep the session, its name and state; return how many went."""
        return self._writer.run_command(checked.clear_messages(key, expected_version, idempotency_key))[0]

    def set_session_name(self, key: str, name: str, *, expected_version: int | None = None,
                         idempotency_key: str | None = None) -> None:
        """Name the session (an empty name clears it), creating the session if needed.

        Setting the name it already has records nothing.
        """
        self._writer.run_command(checked.set_session_name(key, name, expected_version, idempotency_key))

    def set_session_state(self, key: str, state: str, turn_id: str | None = None, *,
                          expected_version: int | None = None, idempotency_key: str | None = None) -> None:
        """Set the run state; ``"running"`` starts the turn clock. Creates the session if needed.

        Setting the state and turn id it already has records nothing.
        """
        self._writer.run_command(checked.set_session_state(key, state, turn_id, expected_version, idempotency_key))

    def delete_session(self, key: str, *, reason: str | None = None, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> bool:
        """Delete the session (as an event); ``False`` when it does not exist."""
        return self._writer.run_command(checked.delete_session(key, reason, expected_version, idempotency_key))[0]

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Commands on several sessions committed together: all of them, or none.

        ``with store.transaction() as tx:`` then ``tx.append(...)``, ``tx.set_session_state(...)``, ...
        (the store's commands, each with its ``expected_version`` and ``idempotency_key``) queue commands;
        the end of the block commits them in one write transaction, after which each call's
        ``Pending.result`` holds what the store's method would have returned. A command that fails
        (``WrongExpectedVersion``, say) fails the block, and nothing is written; so does an exception
        raised inside the block.
        """
        return _committed_at_exit(self._new_transaction())

    def _new_transaction(self) -> Transaction:
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        if self._closed:
            raise StoreClosed("the store is closed")
        return Transaction(lambda: self._writer, lambda: self._maintenance)

    def cleanup_stale(self, ttl_hours: float) -> int:
        """Delete every session idle for more than ``ttl_hours``; return how many were deleted."""
        return self._writer.delete_stale(check_count(ttl_hours, "ttl_hours"))

    # -- queries (services.queries) -----------------------------------------------------

    def load(self, key: str, version: int | None = None, as_of: datetime | None = None) -> list[ChatMessage]:
        """The session's current messages, oldest first; ``[]`` for an unknown or deleted session.

        With ``version`` or ``as_of``, the messages as they were then (see ``session_at``).
        """
        if version is not None or as_of is not None:
            return self.session_at(key, version=version, as_of=as_of).messages
        return self._queries.messages(key)

    def load_last(self, key: str, count: int) -> list[ChatMessage]:
        """The session's last ``count`` current messages, oldest first: all of them if it holds fewer.

        ``[]`` for an unknown or deleted session, or a ``count`` of 0. Equal to ``load(key)[-count:]``, but it
        reads only the chunks of the message read model that hold them (up to 64 messages each), from the end:
        a long session's recent turns cost what they hold.

        Raises:
            InvalidArgument: ``count`` is not an int of 0 or more.
        """
        return self._queries.last_messages(key, check_index(count, "count"))

    def load_with_timestamps(self, key: str) -> list[TimestampedMessage]:
        """The session's current messages with the times they were appended."""
        return [timestamped(entry) for entry in self._queries.entries(key)]

    def list_sessions(self, prefix: str | None = None) -> list[str]:
        """Keys of the live sessions, most recent activity first; with ``prefix``, those that start with it.

        A prefix reads one range of the key index: the cost follows the matches, not the store."""
        return self._queries.keys(_prefix(prefix))

    def list_sessions_with_metadata(self, prefix: str | None = None) -> list[SessionMetadata]:
        """Metadata of the live sessions, most recent activity first; with ``prefix``, of the keys it starts."""
        return self._queries.listing(_prefix(prefix))

    def list_sessions_page(self, limit: int = 50, cursor: str | None = None, *,
                           prefix: str | None = None) -> SessionPage:
        """A page of at most ``limit`` sessions, most recent activity first, and the count of all of them.

        Pass the page's ``next_cursor`` as ``cursor`` for the next page (``None``: the first page). A page
        without ``prefix`` costs its own sessions, whatever the store holds; with one, the sessions
        under the prefix. A walk through the pages lists every session exactly once that stays as
        it is meanwhile; a session that changes meanwhile moves to the front, where a walk that has
        passed it does not see it again (never twice; maybe not at all). See docs/listing.md.

        Raises:
            InvalidArgument: ``limit`` under 1, or a string that is not a cursor.
        """
        if check_index(limit, "limit") < 1:
            raise InvalidArgument(f"limit must be at least 1, not {limit}")
        if cursor is not None:
            validate_text(cursor, "cursor")
        return self._queries.page(limit, cursor, _prefix(prefix))

    def get_session_metadata(self, key: str) -> SessionMetadata | None:
        """The session's metadata; ``None`` for an unknown or deleted session."""
        return self._queries.metadata_of(key)

    def session_exists(self, key: str) -> bool:
        """Whether the session is live (has events and is not deleted)."""
        return self._queries.exists(key)

    def session_version(self, key: str) -> int:
        """The version of the session's latest event, deleted or not; 0 if the key never had an event.

        It is ``history(key)[-1].version`` read from the log's index alone, so its cost does not grow with the
        session's history (``history`` reads all of it).
        """
        validate_key(key)
        with self._read() as txn:
            return self._session_version(txn, key)

    def get_session_name(self, key: str) -> str | None:
        """The session's name, if it has one."""
        head = self._queries.head(key)
        return None if head is None else head.name

    def get_session_state(self, key: str) -> SessionState | None:
        """The session's run state; ``"idle"`` (with no turn) if it never had one set, ``None`` if it does not
        exist (as ZeroClaw's SQLite backend)."""
        head = self._queries.head(key)
        return None if head is None else head.run_state()

    def list_running_sessions(self) -> list[SessionMetadata]:
        """Sessions in the ``"running"`` state, latest turn first."""
        return self._queries.running()

    def list_stuck_sessions(self, threshold_secs: float) -> list[SessionMetadata]:
        """Running sessions whose turn started more than ``threshold_secs`` ago, oldest first."""
        return self._queries.stuck(check_count(threshold_secs, "threshold_secs"))

    def search(self, query: SessionQuery) -> list[SessionMetadata]:
        """Sessions with a current message that matches a word of ``query.keyword``, best match first.

        Words are OR-ed (see ``projections.search.tokenizer.parse_query``: a trailing
        ``*`` makes a prefix, a word of several tokens is a phrase). A session
        scores by its best message (BM25); equal scores order by most recent
        activity. At most ``query.limit`` sessions, ``DEFAULT_SEARCH_LIMIT``
        without one. A ``None`` or blank keyword returns every session's
        metadata, most recent activity first (cut at ``limit`` when given).
        Session keys are not searched, only message contents. Queries are bounded
        (``SessionQuery``): at most 64 terms count, a prefix stands for its most frequent terms.
        """
        if not isinstance(query, SessionQuery):
            raise InvalidArgument(f"search takes a SessionQuery, not {type(query).__name__}")
        limit = query.limit
        if limit is not None:
            check_index(limit, "limit")
        keyword = "" if query.keyword is None else validate_text(query.keyword, "keyword")
        if not keyword.strip():
            return self._queries.metadata(limit)
        return self._queries.search(keyword, DEFAULT_SEARCH_LIMIT if limit is None else limit)

    def search_messages(self, keyword: str | None, limit: int | None = 20) -> list[SearchHit]:
        """The current messages that best match ``keyword`` (words as in ``search``), best first.

        Each hit has its session's key, its index in ``load(session_key)``, the
        message, its BM25 score and a snippet with the matched words in ``[`` ``]``.
        Equal scores order by the session's most recent activity, then the later message.
        At most ``limit`` hits (20 when ``None``). Bounded as ``search`` is: words count while they
        match at most 64 terms, later ones are ignored (see ``SessionQuery`` and docs/search.md).
        """
        limit = 20 if limit is None else check_index(limit, "limit")
        return self._queries.search_messages("" if keyword is None else validate_text(keyword, "keyword"), limit)

    def catch_up(self, progress: Progress | None = None) -> int:
        """Bring the deferred read models (the search index) up to the log; return how many events they applied.

        Searches catch up by themselves first; call this to take the work out
        of the next search, say after a bulk import.

        Args:
            progress: called as ``progress(events_done, events_total)`` as the catch-up goes.
        """
        progress = check_progress(progress)
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._deferred.catch_up(progress)

    def search_index_lag(self) -> int:
        """How many of the log's events the search index has yet to fold (0: it is current).

        A search folds them first: in memory when they are few, or always on a read-only store, else by catching
        up. After a bulk import, ``catch_up`` (with ``progress``) does that work once, ahead of the searches.
        """
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._deferred.lag()

    # -- time travel (services.time_travel) ---------------------------------------------

    def history(self, key: str) -> list[RecordedEvent]:
        """Every event of the session key, oldest first, across deletions and reuse of the key."""
        return self._time_travel.history(validate_key(key))

    def iter_history(self, key: str, from_version: int = 1) -> Iterator[RecordedEvent]:
        """``history(key)`` streamed: the same events, oldest first, read a page at a time.

        Its events are those of ``history(key)`` called at the same moment: later events (appended while the
        caller iterates) are not included. Each page is read in its own short read transaction, so memory stays
        that of a page however long the session, and holding the iterator open while writing (to this session
        too) neither blocks a write nor keeps the store from growing its file. A redaction of the session
        committed meanwhile shows in the pages read after it (``redacted`` set), as in ``events()``; an event
        already yielded keeps what it held. With ``from_version``, the events from that version on, found
        through the log's index: those before it are not read (a session's last events cost what they hold).
        """
        validate_key(key)
        check_index(from_version, "from_version")
        return self._time_travel.iter_history(key, from_version)

    def events(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event of every session in global order, after position ``after`` (a change feed).

        Streams in batches, each read in its own short read transaction. A ``SessionRedacted``
        means that the earlier events of its session are now redacted: a follower must drop or
        blank what it kept of them (``replicate`` does; see docs/reliability.md#redaction).
        """
        check_index(after, "after")
        if limit is not None:
            check_index(limit, "limit")
        return self._time_travel.events(after, limit)

    def subscribe(self, after: int = 0, timeout: float | None = None, *, unavailable_timeout: float | None = None,
                  after_hash: str | None = None) -> Iterator[RecordedEvent]:
        """Every event committed after position ``after``, in global order, then each new one as it commits.

        A live change feed: each event exactly once, in order, and the iterator keeps waiting for new
        ones, by this process (woken at once) or by others (seen within about 25 ms). Resume after a
        restart by passing the last position handled, and that event's ``hash`` as ``after_hash`` to have
        the log checked first. It holds at most one batch of events, so a slow consumer never holds writers
        up. With ``timeout``, it ends once that many seconds pass without a new event. Closing the store ends
        it with ``StoreClosed``.

        On PostgreSQL, while the server cannot be reached (a restart) it waits and tries again every half
        second, then goes on from where it was; it raises ``StoreUnavailable`` once that lasted
        ``unavailable_timeout`` seconds (``None``: it waits as long as it takes), or ``timeout`` ran out. It
        raises ``FeedDiverged`` if the log no longer holds the last event it delivered (a failover, a restore),
        or, with ``after_hash``, the event at ``after`` with that hash (it ends before it, or another event
        took its position), before delivering anything. ``after_hash`` with ``after=0`` is an
        ``InvalidArgument``: no event is at position 0.
        """
        return self._follow(self._feed_steps(after, timeout, unavailable_timeout, after_hash))

    def _feed_steps(self, after: int, timeout: float | None, unavailable_timeout: float | None,
                    after_hash: str | None) -> Iterator[RecordedEvent | float]:
        """The steps of a subscription (see ``services.feed``), its arguments checked; shared with ``aio``."""
        check_index(after, "after")
        if timeout is not None:
            timeout = check_count(timeout, "timeout")
        if unavailable_timeout is not None:
            unavailable_timeout = check_count(unavailable_timeout, "unavailable_timeout")
        if after_hash is not None:
            check_event_hash(after_hash, "after_hash")
            if after == 0:
                raise InvalidArgument("after_hash names the event at position after, and no event is at 0: pass "
                                      "it with the position of the last event handled, or subscribe from 0 without")
        feed = Feed(self._feed_batch, self._last_commit)
        return feed.steps(after, timeout, unavailable_timeout, after_hash)

    def _feed_batch(self, after: int, limit: int, held: str | None) -> list[RecordedEvent] | None:
        """A subscription's read (see ``Feed``)."""
        if held is None:
            return list(self._time_travel.events(after, limit))
        return self._time_travel.events_following(after, held, limit)

    def _last_commit(self) -> int:
        """The storage's latest commit, for a waiting subscription; checks that this store is open, as the
        storage, still open while another store object of this process shares it, does not."""
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._environment.last_commit()

    def _follow(self, steps: Iterator[RecordedEvent | float]) -> Iterator[RecordedEvent]:
        woken = threading.Event()
        stop = self._watch_commits(woken.set)
        try:
            for step in steps:
                if isinstance(step, float):
                    woken.wait(step)  # returns at once when this process commits
                    woken.clear()
                else:
                    yield step
        finally:
            stop()

    def _watch_commits(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every commit of this process (in the committing thread); returns the stop."""
        return self._environment.watch_commits(listener)

    def session_at(self, key: str, version: int | None = None, as_of: datetime | None = None) -> SessionView:
        """The whole session as it was after its ``version``-th event, or as of the aware time ``as_of``.

        Version 0, or a time before the first event, is the empty, non-existent
        session; with neither argument, the current session, read from the read
        models as a ``load`` is (its messages and version together). A past one
        costs the events since the nearest snapshot, not the whole history.

        Raises:
            InvalidVersion: a version past the end.
            InvalidArgument: both arguments, a naive datetime, a bad type.
        """
        if version is None and as_of is None:
            current = self._queries.view(key)
            if current is not None:  # a session that is not live has no read model: its view is folded
                return current
        return self._time_travel.session_at(validate_key(key), version, as_of)

    def restore(self, key: str, version: int | None = None, as_of: datetime | None = None, *,
                expected_version: int | None = None, idempotency_key: str | None = None) -> int:
        """Make the session equal to its state at ``version`` or ``as_of`` by appending ``SessionRestored``.

        Messages, name, state and existence come back; nothing is deleted.
        Restoring to the current state writes nothing. Returns the session's version afterwards.
        Takes ``expected_version`` and ``idempotency_key`` like every command that changes one session.
        """
        validate_key(key)
        if version is None and as_of is None:
            raise InvalidArgument("restore needs a version or an as_of time")
        if version is not None:
            check_index(version, "version")
        if as_of is not None and not isinstance(as_of, datetime):
            raise InvalidArgument(f"as_of must be a datetime, not {type(as_of).__name__}")
        request = Request("restore", (version, None if as_of is None else as_of.isoformat()))
        return self._time_travel.restore(key, version, as_of, request, expected_version, idempotency_key)

    def fork(self, source_key: str, new_key: str, version: int | None = None, as_of: datetime | None = None, *,
             idempotency_key: str | None = None) -> int:
        """Start the session ``new_key`` as ``source_key`` was after its ``version``-th event, or as of the aware
        time ``as_of`` (now for neither); return the fork's version.

        One ``SessionForked`` event in the new session names the source, its version and that event's hash, and
        carries the messages (with the times they were appended there) and the name; the source's history is not
        copied, and later changes to the source change nothing in the fork. ``history(new_key)`` begins there.
        A deleted ``new_key`` starts afresh (its versions go on). Redacting the source redacts its forks too.

        Raises:
            SessionExists: ``new_key`` is a live session.
            SessionNotFound: the source did not exist at that point.
            InvalidVersion: a version past the source's end.
        """
        return self._writer.run_command(checked.fork(source_key, new_key, version, as_of, idempotency_key))[1]

    def replay(self, key: str, from_version: int = 1, to_version: int | None = None
               ) -> Iterator[tuple[RecordedEvent, SessionView]]:
        """Step through the session: one ``(event, session right after it)`` pair per event.

        Streams the log in batches; memory per step is the view itself.
        """
        validate_key(key)
        check_index(from_version, "from_version")
        return self._time_travel.replay(key, from_version, to_version)

    # -- maintenance (services.maintenance) -----------------------------------------------

    def compact(self, key: str) -> bool:
        """Snapshot the session at its current version (no event is deleted).

        Returns ``False`` when the key has no events or that snapshot exists already.
        """
        return self._maintenance.compact(validate_key(key))

    def rebuild_projections(self, names: Iterable[str] | None = None, progress: Progress | None = None) -> None:
        """Drop read models and rebuild them from the log, in one transaction.

        Rebuilding ``"messages"`` also drops every snapshot, since their blobs are copies
        of that model's chunks and a damaged one could outlive the repair, and takes
        them again from the log, one every ``snapshot_every`` events of each session.

        Each rewrite follows a commit that changes nothing, so that it reuses the pages the
        write before it freed (LMDB reuses them only once a later commit exists).

        Args:
            names: which projections (``"catalog"``, ``"messages"``, ``"search"``); all by default.
            progress: called as ``progress(events_done, events_total)`` as the rebuild goes; a command it gives
                while the catalog and message lists are rebuilt raises ``StoreBusy`` (their transaction is open).

        Raises:
            InvalidArgument: an unknown projection name.
        """
        self._maintenance.rebuild_projections(names, check_progress(progress))

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Walk the hash chain and check every snapshot and read model against a fresh fold of the log.

        Args:
            progress: called as ``progress(events_done, events_total)`` as the walk goes.

        Runs in one read transaction, so the answer is about one consistent moment;
        it writes nothing (a search index behind the log is checked with the
        missing events applied in memory).
        """
        return self._maintenance.verify(check_progress(progress))

    def redact(self, key: str, reason: str, *, expected_version: int | None = None,
               idempotency_key: str | None = None) -> int:
        """Make the content of every message of the session unrecoverable; return how many events changed.

        Each event keeps its place, type and hash (its original payload digest
        stays, so the chain verifies); the session's snapshots are taken again
        from the redacted log and a ``SessionRedacted`` event records the
        reason. Run ``vacuum`` afterwards
        to remove the old bytes from the file. Takes ``expected_version`` and
        ``idempotency_key`` like every command that changes one session.
        """
        validate_key(key)
        if not validate_text(reason, "reason").strip():
            raise InvalidArgument("a redaction needs a reason")
        return self._maintenance.redact(key, reason, Request("redact", (reason,)), expected_version,
                                        idempotency_key)

    def vacuum(self) -> tuple[int, int]:
        """Rewrite the store's file compactly, dropping freed pages; return (bytes before, bytes after).

        Raises:
            StoreBusy: another store object or process has the store open.
        """
        if self._readonly:
            raise StoreReadOnly(f"the store at {self.path} was opened read-only")
        return self._maintenance.vacuum(reopen=self._open_components)

    def stats(self, *, databases: bool = False) -> StoreStats:
        """Counts of what the store holds, read in one read transaction (for ``eventstore stats``).

        With ``databases``, ``usage`` says where the bytes go: entries, key and value bytes and pages per named
        database, and the file's free pages. That visits every key and value, so it takes a while on a large store.
        """
        if not isinstance(databases, bool):
            raise InvalidArgument(f"databases must be a bool, not {databases!r:.60}")
        return self._maintenance.stats(databases)

    # -- import and replication (services.replication) ------------------------------------

    def import_sessions(self, sessions: Mapping[str, Sequence[Importable]], *, source: str | None = None,
                        size: int = 0, sha256: str = "", progress: Progress | None = None) -> ImportOutcome:
        """Import whole sessions with their original times, in one transaction.

        Each session's events are (time, event) pairs, or another store's ``RecordedEvent``s
        (``history(key)``), which keep their redaction. Keys that already have events in the store are
        skipped (never merged) and listed in the outcome. With ``source``, a receipt (name, size, SHA-256)
        is committed with the events: importing the same source again writes nothing, and a source that
        changed since raises ``SourceChanged``. Without ``sha256``, the SHA-256 of the sessions given (keys,
        times, events) stands for the source's, so other sessions under the same name are a changed source.
        An event that no command records there (a removal from an empty session, say), or one later than the
        store's clock plus ``CLOCK_SKEW`` (five minutes: an audit store records no future, and a session's last
        time would stamp every later command on it), raises ``InvalidArgument`` naming the session and event,
        and nothing is written.
        ``progress(sessions done, sessions)`` is called as the sessions are recorded (every thousand events
        or so, and at the end), inside the transaction: an exception it raises writes nothing, and a command it
        gives on this store raises ``StoreBusy`` (naming ``import_sessions``), recording nothing.
        """
        progress = check_progress(progress)
        if not isinstance(sessions, Mapping):
            raise InvalidArgument("import_sessions takes a mapping of key to timed events, "
                                  f"not {type(sessions).__name__}")
        checked = {validate_key(key): [importable(item) for item in iterable(timed, "a session's timed events")]
                   for key, timed in sessions.items()}
        if source is not None:
            validate_text(source, "source")
        for value, what in ((size, "size"), (sha256, "sha256")):
            if not isinstance(value, int if what == "size" else str) or isinstance(value, bool):
                raise InvalidArgument(f"{what} has the wrong type: {value!r:.60}")
        return self._replication.import_sessions(checked, source, size, sha256, progress)

    def import_receipts(self) -> list[ImportReceipt]:
        """The receipt of every source imported so far."""
        return self._replication.receipts()

    def replicate(self, events: Iterable[RecordedEvent], progress: Progress | None = None, total: int = 0) -> int:
        """Append events exported from another store, keeping positions, versions, times, ids and hashes.

        Each event must come next (its position after this store's last, its
        version after its session's last), and its recomputed hash must equal the
        one it carries; otherwise ``ReplicationMismatch`` is raised and that batch
        is not written. Returns how many events were appended. Times are taken as they are, even ones later
        than this store's clock: they are part of the hashes, and a copy must hold what its source recorded
        (a whole-log export, a replica of the PostgreSQL log).
        """
        progress = check_progress(progress)
        check_index(total, "total")
        return self._replication.replicate(iterable(events, "events"), progress, total)
