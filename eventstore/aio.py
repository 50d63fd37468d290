"""``AsyncSessionStore``: the store for asyncio, every method of ``SessionStore`` as a coroutine.

The async store wraps a ``SessionStore`` and keeps no logic of its own: each method below is generated
from the sync method's signature (``python -m eventstore._aio_generate``; a test fails when they differ)
and only chooses where the call runs:

* reads of the current state (``load``, listings, metadata, ...) run on the event loop: they read LMDB's
  memory map in microseconds, and a hop to a thread would cost more than the read;
* writes, and reads whose cost grows with the history (``history``, ``verify``, ...), run on the store's
  writer threads, so a flush never blocks the loop; concurrent writes join one group commit;
* ``events``, ``replay`` and ``subscribe`` are async iterators; ``subscribe`` waits on the loop.

Cancellation: a write runs in a thread, whole. If the awaiting task is cancelled before the thread has
started the call, nothing is written; once it has started, it finishes (commits, or fails and writes
nothing) while the task sees ``CancelledError``. Either way the store stays usable, and a caller that
must know retries with the same ``idempotency_key``: a command that did commit is not written again and
returns its first result. ``task.cancel()`` takes effect when the loop next runs the task, so a thread that
starts the call in between runs it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import TypeVar

from ._audit import Progress
from ._errors import StoreBusy, StoreClosed, StoreUsedAfterFork
from ._store import SessionStore, StoreStats
from ._time import Clock
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
)
from .events import RecordedEvent
from .services.replication import Importable
from .services.transaction import Transaction
from .storage import Durability

__all__ = ["AsyncSessionStore", "WRITER_THREADS", "ON_THE_LOOP", "STREAMED", "WRITTEN_BY_HAND"]

T = TypeVar("T")

#: Threads that run an async store's writes; as many writes as this can join one group commit. More
#: threads make bigger groups but contend with the loop for the GIL (measured: 64 threads doubled the
#: loop's p99 lateness for a third more appends per second; see docs/async.md).
WRITER_THREADS = 8
#: Methods that run on the event loop: reads of the current state, each a short read transaction.
ON_THE_LOOP = frozenset({
    "load", "load_last", "load_with_timestamps", "list_sessions", "list_sessions_with_metadata", "get_session_metadata",
    "session_exists", "session_version", "get_session_name", "get_session_state", "list_running_sessions",
    "list_stuck_sessions", "session_at", "import_receipts", "stats", "list_sessions_page", "search_index_lag",
})
#: Methods that stream: async iterators over the sync iterator, a batch per read transaction.
STREAMED = frozenset({"events", "replay", "iter_history"})
#: Methods with a body of their own below (every other public method is generated).
WRITTEN_BY_HAND = frozenset({"close", "transaction", "subscribe"})


class _CallUnderWay:
    """A call of an async store running on a writer thread. What its callbacks run, and the coroutines they have the
    loop run (``asyncio.run_coroutine_threadsafe`` gives them the callback's context), runs inside it
    (``_CALLS``): the call may be waiting for them."""

    __slots__ = ("store", "thread", "under_way")

    def __init__(self, store: AsyncSessionStore) -> None:
        self.store = store
        self.thread = threading.get_ident()
        self.under_way = True


#: The calls under way that the running code is inside of, outermost first.
_CALLS: contextvars.ContextVar[tuple[_CallUnderWay, ...]] = contextvars.ContextVar("eventstore_async_calls",
                                                                                   default=())


class AsyncSessionStore:
    """A ``SessionStore`` for asyncio: the same methods, arguments, results and errors, awaited.

    ``async with AsyncSessionStore(path, **options) as store:`` takes ``SessionStore``'s options; opening
    happens in the constructor (a few milliseconds, more if a read model must be rebuilt). An async
    store and a ``SessionStore`` may share one path in one process. See the module's notes on where each
    method runs and on cancellation.
    """

    _store: SessionStore
    _writers: ThreadPoolExecutor

    def _opened(self, store: SessionStore) -> None:
        self._store = store
        self._closed = False
        self._writers = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="eventstore-writer")
        self.path = store.path
        # A forked child inherits the pool without its threads: a call given to it there would wait for ever.
        self._pid = os.getpid()

    async def _off_loop(self, call: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run ``call`` on a writer thread; a cancelled caller leaves it to finish there, or never start."""
        if self._closed:
            raise StoreClosed("the store is closed")
        if os.getpid() != self._pid:
            raise StoreUsedAfterFork("this store was opened before fork(); open a new AsyncSessionStore in the child "
                                     "process")
        # In the caller's context: a call awaited from a callback of another call knows which calls wait for it.
        context = contextvars.copy_context()
        try:
            running = self._writers.submit(context.run, self._inside, partial(call, *args, **kwargs))
        except RuntimeError:  # closed since the check, from another thread: its writers are shut down
            raise StoreClosed("the store is closed") from None
        return await asyncio.wrap_future(running)

    def _inside(self, call: Callable[[], T]) -> T:
        """``call``, on a writer thread, marked as under way for what its callbacks run (``_CALLS``). Awaited from a
        callback of this store's call on another thread, which waits for it: its writes are refused as that
        callback's would be (``StoreBusy`` while that call holds a write transaction) instead of waiting for it."""
        waiting = [outer.thread for outer in _CALLS.get() if outer.store is self and outer.under_way]
        this = _CallUnderWay(self)
        _CALLS.set((*_CALLS.get(), this))
        try:
            if not waiting:
                return call()
            with self._store._standing_in_for(waiting[-1]):
                return call()
        finally:
            this.under_way = False

    def _called_from_own_callback(self) -> bool:
        """Whether the running code is inside a call of this store still under way (a callback of it, or what one
        awaits), which a close would wait for while it waits for the close."""
        return any(call.store is self and call.under_way for call in _CALLS.get())

    @staticmethod
    async def _streamed(items: Iterator[T]) -> AsyncIterator[T]:
        for item in items:
            yield item

    # -- written by hand ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait for the writes under way, then close the store; closing twice is harmless.

        Both run on a thread: a caller cancelled meanwhile (a timeout) leaves them to finish there, so the
        store is closed all the same once its writes are done.

        Raises:
            StoreBusy: awaited from a callback of one of the store's calls under way (a ``progress`` callback, or
                an iterable its call reads, having the loop run the close), which waits for the close while the
                close waits for it: the store stays open. Close it once that call returns.
        """
        if self._called_from_own_callback():
            raise StoreBusy(f"the store at {self.path} cannot close from a callback of one of its own calls under "
                            "way (a progress callback, or an iterable the call reads), which waits for the close "
                            "while the close waits for the call: close it once that call returns")
        self._closed = True
        await asyncio.to_thread(self._shut)

    def _shut(self) -> None:
        self._writers.shutdown()
        self._store.close()

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``SessionStore.transaction`` as ``async with``: the commit runs on a writer thread.

        The commands are queued by plain (not awaited) calls: ``tx.append(...)``; their results are known
        after the block. If the task is cancelled during the commit, the transaction commits whole or
        not at all.
        """
        transaction = self._store._new_transaction()
        try:
            yield transaction
        except BaseException:
            transaction.discard()
            raise
        await self._off_loop(transaction.commit)

    def subscribe(self, after: int = 0, timeout: float | None = None, *, unavailable_timeout: float | None = None,
                  after_hash: str | None = None) -> AsyncIterator[RecordedEvent]:
        """``SessionStore.subscribe`` as an async iterator: it waits on the event loop, woken by this
        process's commits at once and checking for other processes' every 25 ms (and, on PostgreSQL, for
        the server every half second while it cannot be reached)."""
        return self._follow(self._store._feed_steps(after, timeout, unavailable_timeout, after_hash))

    async def _follow(self, steps: Iterator[RecordedEvent | float]) -> AsyncIterator[RecordedEvent]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        # One wake-up pending on the loop at a time: a loop that stops running (a subscriber that stopped
        # reading) would otherwise hold one per commit.
        pending = threading.Lock()

        def set_woken() -> None:
            pending.release()
            woken.set()

        def wake() -> None:  # in the committing thread, which must not see an error
            if pending.acquire(blocking=False):
                try:
                    loop.call_soon_threadsafe(set_woken)
                except RuntimeError:  # the loop closed meanwhile
                    pending.release()

        stop = self._store._watch_commits(wake)
        try:
            for step in steps:
                if isinstance(step, float):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), step)
                    woken.clear()
                else:
                    yield step
        finally:
            stop()

    # -- generated by `python -m eventstore._aio_generate` from SessionStore's signatures: do not edit --

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 durable: bool | Durability | str = True, snapshot_every: int = 250, max_size: int | None = None,
                 cache_sessions: int = 256, search_cache_bytes: int = 167772160, readonly: bool = False,
                 rebuild_progress: Progress | None = None, cache: str | os.PathLike[str] | None = None) -> None:
        self._opened(SessionStore(path, clock=clock, durable=durable, snapshot_every=snapshot_every, max_size=max_size,
                                  cache_sessions=cache_sessions, search_cache_bytes=search_cache_bytes,
                                  readonly=readonly, rebuild_progress=rebuild_progress, cache=cache))

    async def append(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
                     idempotency_key: str | None = None) -> int:
        """Append a message, creating the session if needed; return the session's new version.

        Runs on a writer thread; see ``SessionStore.append``."""
        return await self._off_loop(self._store.append, key, message, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def append_many(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                          idempotency_key: str | None = None) -> int:
        """Append several messages atomically (one event each, one commit); return the new version.

        Runs on a writer thread; see ``SessionStore.append_many``."""
        return await self._off_loop(self._store.append_many, key, messages, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def remove_last(self, key: str, *, expected_version: int | None = None,
                          idempotency_key: str | None = None) -> bool:
        """Remove the last message; ``False`` (and no event) when there is none.

        Runs on a writer thread; see ``SessionStore.remove_last``."""
        return await self._off_loop(self._store.remove_last, key, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def pop_last(self, key: str, *, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> ChatMessage | None:
        """Remove the last message and return it; ``None`` (and no event) when there is none.

        Runs on a writer thread; see ``SessionStore.pop_last``."""
        return await self._off_loop(self._store.pop_last, key, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def update_last(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
                          idempotency_key: str | None = None) -> bool:
        """Replace the last message (a streaming update); ``False`` when the session has none.

        Runs on a writer thread; see ``SessionStore.update_last``."""
        return await self._off_loop(self._store.update_last, key, message, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def replace_messages(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                               idempotency_key: str | None = None) -> int:
        """Make the session's messages exactly ``messages``, atomically, as one ``MessagesReplaced`` event, creating

        Runs on a writer thread; see ``SessionStore.replace_messages``."""
        return await self._off_loop(self._store.replace_messages, key, messages, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def clear_messages(self, key: str, *, expected_version: int | None = None,
                             idempotency_key: str | None = None) -> int:
        """Remove every message but keep the session, its name and state; return how many went.

        Runs on a writer thread; see ``SessionStore.clear_messages``."""
        return await self._off_loop(self._store.clear_messages, key, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def set_session_name(self, key: str, name: str, *, expected_version: int | None = None,
                               idempotency_key: str | None = None) -> None:
        """Name the session (an empty name clears it), creating the session if needed.

        Runs on a writer thread; see ``SessionStore.set_session_name``."""
        await self._off_loop(self._store.set_session_name, key, name, expected_version=expected_version,
                             idempotency_key=idempotency_key)

    async def set_session_state(self, key: str, state: str, turn_id: str | None = None, *,
                                expected_version: int | None = None, idempotency_key: str | None = None) -> None:
        """Set the run state; ``"running"`` starts the turn clock. Creates the session if needed.

        Runs on a writer thread; see ``SessionStore.set_session_state``."""
        await self._off_loop(self._store.set_session_state, key, state, turn_id, expected_version=expected_version,
                             idempotency_key=idempotency_key)

    async def delete_session(self, key: str, *, reason: str | None = None, expected_version: int | None = None,
                             idempotency_key: str | None = None) -> bool:
        """Delete the session (as an event); ``False`` when it does not exist.

        Runs on a writer thread; see ``SessionStore.delete_session``."""
        return await self._off_loop(self._store.delete_session, key, reason=reason, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def cleanup_stale(self, ttl_hours: float) -> int:
        """Delete every session idle for more than ``ttl_hours``; return how many were deleted.

        Runs on a writer thread; see ``SessionStore.cleanup_stale``."""
        return await self._off_loop(self._store.cleanup_stale, ttl_hours)

    async def load(self, key: str, version: int | None = None, as_of: datetime | None = None) -> list[ChatMessage]:
        """The session's current messages, oldest first; ``[]`` for an unknown or deleted session.

        Runs on the event loop; see ``SessionStore.load``."""
        return self._store.load(key, version, as_of)

    async def load_last(self, key: str, count: int) -> list[ChatMessage]:
        """The session's last ``count`` current messages, oldest first: all of them if it holds fewer.

        Runs on the event loop; see ``SessionStore.load_last``."""
        return self._store.load_last(key, count)

    async def load_with_timestamps(self, key: str) -> list[TimestampedMessage]:
        """The session's current messages with the times they were appended.

        Runs on the event loop; see ``SessionStore.load_with_timestamps``."""
        return self._store.load_with_timestamps(key)

    async def list_sessions(self, prefix: str | None = None) -> list[str]:
        """Keys of the live sessions, most recent activity first; with ``prefix``, those that start with it.

        Runs on the event loop; see ``SessionStore.list_sessions``."""
        return self._store.list_sessions(prefix)

    async def list_sessions_with_metadata(self, prefix: str | None = None) -> list[SessionMetadata]:
        """Metadata of the live sessions, most recent activity first; with ``prefix``, of the keys it starts.

        Runs on the event loop; see ``SessionStore.list_sessions_with_metadata``."""
        return self._store.list_sessions_with_metadata(prefix)

    async def list_sessions_page(self, limit: int = 50, cursor: str | None = None, *,
                                 prefix: str | None = None) -> SessionPage:
        """A page of at most ``limit`` sessions, most recent activity first, and the count of all of them.

        Runs on the event loop; see ``SessionStore.list_sessions_page``."""
        return self._store.list_sessions_page(limit, cursor, prefix=prefix)

    async def get_session_metadata(self, key: str) -> SessionMetadata | None:
        """The session's metadata; ``None`` for an unknown or deleted session.

        Runs on the event loop; see ``SessionStore.get_session_metadata``."""
        return self._store.get_session_metadata(key)

    async def session_exists(self, key: str) -> bool:
        """Whether the session is live (has events and is not deleted).

        Runs on the event loop; see ``SessionStore.session_exists``."""
        return self._store.session_exists(key)

    async def session_version(self, key: str) -> int:
        """The version of the session's latest event, deleted or not; 0 if the key never had an event.

        Runs on the event loop; see ``SessionStore.session_version``."""
        return self._store.session_version(key)

    async def get_session_name(self, key: str) -> str | None:
        """The session's name, if it has one.

        Runs on the event loop; see ``SessionStore.get_session_name``."""
        return self._store.get_session_name(key)

    async def get_session_state(self, key: str) -> SessionState | None:
        """The session's run state; ``"idle"`` (with no turn) if it never had one set, ``None`` if it does not

        Runs on the event loop; see ``SessionStore.get_session_state``."""
        return self._store.get_session_state(key)

    async def list_running_sessions(self) -> list[SessionMetadata]:
        """Sessions in the ``"running"`` state, latest turn first.

        Runs on the event loop; see ``SessionStore.list_running_sessions``."""
        return self._store.list_running_sessions()

    async def list_stuck_sessions(self, threshold_secs: float) -> list[SessionMetadata]:
        """Running sessions whose turn started more than ``threshold_secs`` ago, oldest first.

        Runs on the event loop; see ``SessionStore.list_stuck_sessions``."""
        return self._store.list_stuck_sessions(threshold_secs)

    async def search(self, query: SessionQuery) -> list[SessionMetadata]:
        """Sessions with a current message that matches a word of ``query.keyword``, best match first.

        Runs on a writer thread; see ``SessionStore.search``."""
        return await self._off_loop(self._store.search, query)

    async def search_messages(self, keyword: str | None, limit: int | None = 20) -> list[SearchHit]:
        """The current messages that best match ``keyword`` (words as in ``search``), best first.

        Runs on a writer thread; see ``SessionStore.search_messages``."""
        return await self._off_loop(self._store.search_messages, keyword, limit)

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Bring the deferred read models (the search index) up to the log; return how many events they applied.

        Runs on a writer thread; see ``SessionStore.catch_up``."""
        return await self._off_loop(self._store.catch_up, progress)

    async def search_index_lag(self) -> int:
        """How many of the log's events the search index has yet to fold (0: it is current).

        Runs on the event loop; see ``SessionStore.search_index_lag``."""
        return self._store.search_index_lag()

    async def history(self, key: str) -> list[RecordedEvent]:
        """Every event of the session key, oldest first, across deletions and reuse of the key.

        Runs on a writer thread; see ``SessionStore.history``."""
        return await self._off_loop(self._store.history, key)

    def iter_history(self, key: str, from_version: int = 1) -> AsyncIterator[RecordedEvent]:
        """``history(key)`` streamed: the same events, oldest first, read a page at a time.

        An async iterator: each batch is read on the event loop; see ``SessionStore.iter_history``."""
        return self._streamed(self._store.iter_history(key, from_version))

    def events(self, after: int = 0, limit: int | None = None) -> AsyncIterator[RecordedEvent]:
        """Every event of every session in global order, after position ``after`` (a change feed).

        An async iterator: each batch is read on the event loop; see ``SessionStore.events``."""
        return self._streamed(self._store.events(after, limit))

    async def session_at(self, key: str, version: int | None = None, as_of: datetime | None = None) -> SessionView:
        """The whole session as it was after its ``version``-th event, or as of the aware time ``as_of``.

        Runs on the event loop; see ``SessionStore.session_at``."""
        return self._store.session_at(key, version, as_of)

    async def restore(self, key: str, version: int | None = None, as_of: datetime | None = None, *,
                      expected_version: int | None = None, idempotency_key: str | None = None) -> int:
        """Make the session equal to its state at ``version`` or ``as_of`` by appending ``SessionRestored``.

        Runs on a writer thread; see ``SessionStore.restore``."""
        return await self._off_loop(self._store.restore, key, version, as_of, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def fork(self, source_key: str, new_key: str, version: int | None = None, as_of: datetime | None = None, *,
                   idempotency_key: str | None = None) -> int:
        """Start the session ``new_key`` as ``source_key`` was after its ``version``-th event, or as of the aware

        Runs on a writer thread; see ``SessionStore.fork``."""
        return await self._off_loop(self._store.fork, source_key, new_key, version, as_of,
                                    idempotency_key=idempotency_key)

    def replay(self, key: str, from_version: int = 1,
               to_version: int | None = None) -> AsyncIterator[tuple[RecordedEvent, SessionView]]:
        """Step through the session: one ``(event, session right after it)`` pair per event.

        An async iterator: each batch is read on the event loop; see ``SessionStore.replay``."""
        return self._streamed(self._store.replay(key, from_version, to_version))

    async def compact(self, key: str) -> bool:
        """Snapshot the session at its current version (no event is deleted).

        Runs on a writer thread; see ``SessionStore.compact``."""
        return await self._off_loop(self._store.compact, key)

    async def rebuild_projections(self, names: Iterable[str] | None = None, progress: Progress | None = None) -> None:
        """Drop read models and rebuild them from the log, in one transaction.

        Runs on a writer thread; see ``SessionStore.rebuild_projections``."""
        await self._off_loop(self._store.rebuild_projections, names, progress)

    async def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Walk the hash chain and check every snapshot and read model against a fresh fold of the log.

        Runs on a writer thread; see ``SessionStore.verify``."""
        return await self._off_loop(self._store.verify, progress)

    async def redact(self, key: str, reason: str, *, expected_version: int | None = None,
                     idempotency_key: str | None = None) -> int:
        """Make the content of every message of the session unrecoverable; return how many events changed.

        Runs on a writer thread; see ``SessionStore.redact``."""
        return await self._off_loop(self._store.redact, key, reason, expected_version=expected_version,
                                    idempotency_key=idempotency_key)

    async def vacuum(self) -> tuple[int, int]:
        """Rewrite the store's file compactly, dropping freed pages; return (bytes before, bytes after).

        Runs on a writer thread; see ``SessionStore.vacuum``."""
        return await self._off_loop(self._store.vacuum)

    async def stats(self, *, databases: bool = False) -> StoreStats:
        """Counts of what the store holds, read in one read transaction (for ``eventstore stats``).

        Runs on the event loop; see ``SessionStore.stats``."""
        return self._store.stats(databases=databases)

    async def import_sessions(self, sessions: Mapping[str, Sequence[Importable]], *, source: str | None = None,
                              size: int = 0, sha256: str = '', progress: Progress | None = None) -> ImportOutcome:
        """Import whole sessions with their original times, in one transaction.

        Runs on a writer thread; see ``SessionStore.import_sessions``."""
        return await self._off_loop(self._store.import_sessions, sessions, source=source, size=size, sha256=sha256,
                                    progress=progress)

    async def import_receipts(self) -> list[ImportReceipt]:
        """The receipt of every source imported so far.

        Runs on the event loop; see ``SessionStore.import_receipts``."""
        return self._store.import_receipts()

    async def replicate(self, events: Iterable[RecordedEvent], progress: Progress | None = None, total: int = 0) -> int:
        """Append events exported from another store, keeping positions, versions, times, ids and hashes.

        Runs on a writer thread; see ``SessionStore.replicate``."""
        return await self._off_loop(self._store.replicate, events, progress, total)

    # -- end of generated methods --
