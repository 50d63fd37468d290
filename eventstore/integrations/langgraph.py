"""``EventStoreSaver``: a LangGraph checkpointer whose checkpoints and pending writes are events of the store.

    from eventstore import SessionStore
    from eventstore.integrations.langgraph import EventStoreSaver

    graph = builder.compile(checkpointer=EventStoreSaver(SessionStore("./store")))

Each thread (and checkpoint namespace) is one session; each ``put`` and ``put_writes`` appends one message
to it (``_langgraph_messages`` says how they are kept). So a thread's whole history stays in the log: deleting
a thread, pruning it or deleting runs record events that ``history`` shows and ``restore`` undoes, and
``verify`` checks the hash chain under all of it. Give it an ``AsyncSessionStore`` for ``ainvoke`` and the
other async methods (the sync ones then refuse); over a ``SessionStore`` both kinds work.

Every operation below is written once, as a generator that yields what it needs from the store (a
``_Request``) and is sent the answer; ``_run`` serves it from a ``SessionStore``, ``_arun`` awaits an
``AsyncSessionStore``. Operations that rewrite a session (``prune``, ``delete_for_runs``) commit with the
version they read as ``expected_version`` and start again if another writer got in between.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

import attrs
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from eventstore import (
    AsyncSessionStore,
    ChatMessage,
    EventStoreError,
    InvalidArgument,
    SessionStore,
    SessionView,
    WrongExpectedVersion,
)

from ._langgraph_fingerprint import Encoded
from ._langgraph_messages import (
    KEY_PREFIX,
    checkpoint_config,
    checkpoint_message,
    key_parts,
    list_channels,
    session_key,
    thread_prefix,
    writes_message,
)
from ._langgraph_records import Records, Unreached
from ._langgraph_templates import Templates

__all__ = ["EventStoreSaver"]

T = TypeVar("T")

#: How often a rewrite starts again after another writer changed a session it read, before it gives up.
REWRITE_ATTEMPTS = 16
#: Sessions whose records (the headers read) the saver keeps, the most recently read: the next read of one
#: reads the headers of the messages appended since only.
RECORDS_KEPT = 64
#: How many of a thread's last messages a read of its latest checkpoint starts with: a turn's few; then as many
#: as the last checkpoint's header says a read of it needs (``Header.back``), with ``LAST_MESSAGES_SLACK`` more,
#: or else twice as many, until they reach what it needs.
LAST_MESSAGES_READ = 8
#: Messages appended between a put's read of the thread and its own append (LangGraph puts writes on background
#: threads meanwhile), which ``Header.back`` cannot count.
LAST_MESSAGES_SLACK = 8
#: Checkpoints the saver remembers as put or read (so that writes at them are not early), and early writes it
#: counts for checkpoints not put yet.
FLIGHTS_KEPT = 4096


# -- what an operation asks of the store -------------------------------------------------------------------

@attrs.frozen
class _Load:
    """The session's messages (``store.load``)."""

    key: str


@attrs.frozen
class _Last:
    """The session's last ``count`` messages (``store.load_last``)."""

    key: str
    count: int


@attrs.frozen
class _Current:
    """The session's messages and version, read together (``store.session_at``)."""

    key: str


@attrs.frozen
class _Keys:
    """The keys of the live sessions that start with ``prefix``."""

    prefix: str


@attrs.frozen
class _Append:
    key: str
    message: ChatMessage


@attrs.frozen
class _Replace:
    key: str
    messages: tuple[ChatMessage, ...]
    expected_version: int


@attrs.frozen
class _Delete:
    key: str


@attrs.frozen
class _Fork:
    source: str
    target: str


@attrs.frozen
class _Commit:
    """Changes to several sessions, committed together."""

    changes: tuple[_Replace | _Delete | _Fork, ...]


@attrs.frozen
class _Pause:
    """Wait before trying again: a busy writer would otherwise win every race to the session."""

    seconds: float


@attrs.frozen
class _Await:
    """Wait until another operation's put has committed."""

    done: threading.Event


_Request = _Load | _Last | _Current | _Keys | _Append | _Commit | _Pause | _Await
Operation = Generator[_Request, Any, T]


@attrs.frozen
class _Done(Generic[T]):
    """An operation's result."""

    value: T


def _advance(operation: Operation[T], answer: Any, failure: EventStoreError | None) -> _Request | _Done[T]:
    """Send the operation the answer to its last request (or throw it the failure); its next request, or its end."""
    try:
        return operation.send(answer) if failure is None else operation.throw(failure)
    except StopIteration as stop:
        return _Done(stop.value)


@contextmanager
def _closing(operation: Operation[Any]) -> Iterator[None]:
    """Close the operation if its run ends early (a cancellation, a failure that is not the store's), so that its
    ``finally`` clauses run at once, not when it is collected."""
    try:
        yield
    finally:
        operation.close()


class _Transaction(Protocol):
    """The calls of a store's transaction that rewrites use (a store's and an async store's take the same)."""

    def replace_messages(self, key: str, messages: Sequence[ChatMessage], *, expected_version: int) -> object: ...

    def delete_session(self, key: str) -> object: ...

    def fork(self, source_key: str, new_key: str) -> object: ...


def _queue(tx: _Transaction, changes: Sequence[_Replace | _Delete | _Fork]) -> None:
    for change in changes:
        if isinstance(change, _Replace):
            tx.replace_messages(change.key, change.messages, expected_version=change.expected_version)
        elif isinstance(change, _Delete):
            tx.delete_session(change.key)
        else:
            tx.fork(change.source, change.target)


class _Flights:
    """Which checkpoints' puts this saver has under way or done, and the writes begun before their checkpoint's put.

    LangGraph does not wait for a checkpoint's put before putting writes at it (its puts and writes run on
    background threads), so writes may commit before their checkpoint's message, or before its parent's. A read from
    a thread's end must still find every write at the latest checkpoint: writes at a checkpoint whose put is under
    way wait for it (they then land after it), and writes at one not put yet (nor read) carry a new token; its put
    names their tokens, and a read goes back until it has found them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._putting: dict[tuple[str, str], threading.Event] = {}
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._early: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()

    def start_put(self, key: str, checkpoint_id: str) -> tuple[threading.Event, tuple[str, ...]]:
        """The put's completion event, and the tokens of the early writes at the checkpoint its message names."""
        done = threading.Event()
        with self._lock:
            self._putting[(key, checkpoint_id)] = done
            return done, self._early.pop((key, checkpoint_id), ())

    def end_put(self, key: str, checkpoint_id: str, done: threading.Event) -> None:
        with self._lock:
            if self._putting.get((key, checkpoint_id)) is done:
                del self._putting[(key, checkpoint_id)]
            _keep(self._known, (key, checkpoint_id), None)
        done.set()

    def read(self, key: str, checkpoint_id: str) -> None:
        """The checkpoint was read from the store: writes at it come after it."""
        with self._lock:
            _keep(self._known, (key, checkpoint_id), None)

    def start_writes(self, key: str, checkpoint_id: str) -> threading.Event | str | None:
        """The checkpoint's put under way, for the writes to wait for; else the token of early writes, or ``None``
        when the checkpoint is in the store already."""
        with self._lock:
            done = self._putting.get((key, checkpoint_id))
            if done is not None:
                return done
            if (key, checkpoint_id) in self._known:
                return None
            token = secrets.token_hex(6)
            _keep(self._early, (key, checkpoint_id), (*self._early.get((key, checkpoint_id), ()), token))
            return token


def _keep(kept: OrderedDict[tuple[str, str], T], key: tuple[str, str], value: T) -> None:
    """Keep ``value`` as the most recent of at most ``FLIGHTS_KEPT``."""
    kept[key] = value
    kept.move_to_end(key)
    if len(kept) > FLIGHTS_KEPT:
        kept.popitem(last=False)


def _thread_id(config: RunnableConfig) -> str:
    configurable = config.get("configurable") or {}
    if "thread_id" not in configurable:
        raise InvalidArgument("a LangGraph checkpointer needs config['configurable']['thread_id']")
    return str(configurable["thread_id"])


def _namespace(config: RunnableConfig) -> str:
    return str(config["configurable"].get("checkpoint_ns", ""))


# -- the saver ---------------------------------------------------------------------------------------------

class EventStoreSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer on a ``SessionStore`` or an ``AsyncSessionStore``.

    Args:
        store: the store; the caller opens and closes it.
        serde: how checkpoints, channel values and writes become bytes; LangGraph's ``JsonPlusSerializer``
            by default.
    """

    def __init__(self, store: SessionStore | AsyncSessionStore, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        if not isinstance(store, (SessionStore, AsyncSessionStore)):
            raise InvalidArgument(f"EventStoreSaver takes a SessionStore or an AsyncSessionStore, "
                                  f"not {type(store).__name__}")
        self.store = store
        self._records: OrderedDict[str, Records] = OrderedDict()
        self._lists: OrderedDict[str, dict[str, Encoded]] = OrderedDict()
        self._flights = _Flights()
        self._templates = Templates()

    def _records_of(self, key: str, messages: Sequence[ChatMessage]) -> Records:
        records = Records.of(messages, self._records.pop(key, None))
        self._records[key] = records
        if len(self._records) > RECORDS_KEPT:
            self._records.popitem(last=False)
        return records

    def _keep_lists(self, key: str, lists: dict[str, Encoded]) -> None:
        """Keep the list values of a checkpoint just read or put, the latest of each channel, for a put whose base
        has their bytes (``Base.encoded``): the objects LangGraph extends are those it was given or put."""
        if lists:
            self._lists[key] = {**self._lists.pop(key, {}), **lists}
            if len(self._lists) > RECORDS_KEPT:
                self._lists.popitem(last=False)

    def _read(self, records: Records, key: str, checkpoint_id: str, thread_id: str, namespace: str
              ) -> CheckpointTuple:
        found, lists = records.read(self.serde, checkpoint_id, thread_id, namespace, templates=self._templates)
        self._keep_lists(key, lists)
        self._flights.read(key, checkpoint_id)
        return found

    # -- the operations, each once --------------------------------------------------------------------------

    def _get_tuple(self, config: RunnableConfig) -> Operation[CheckpointTuple | None]:
        thread_id, namespace = _thread_id(config), _namespace(config)
        key = session_key(thread_id, namespace)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None and key not in self._records:
            return (yield from self._latest_from_the_end(key, thread_id, namespace))
        records = self._records_of(key, (yield _Load(key)))
        checkpoint_id = checkpoint_id or records.latest()
        if checkpoint_id is None or checkpoint_id not in records.positions:
            return None
        return self._read(records, key, checkpoint_id, thread_id, namespace)

    def _latest_from_the_end(self, key: str, thread_id: str, namespace: str) -> Operation[CheckpointTuple | None]:
        """The latest checkpoint of a thread this saver has not read yet, from the session's last messages: as
        many as it needs (twice as many each time they fall short), rather than the whole thread."""
        count = LAST_MESSAGES_READ
        while True:
            messages = yield _Last(key, count)
            records = Records.of(messages) if len(messages) < count else Records.last(messages)
            try:
                checkpoint_id = records.latest()
                if checkpoint_id is None:
                    return None
                return self._read(records, key, checkpoint_id, thread_id, namespace)
            except Unreached:  # as many as the last checkpoint's header says it needs, else twice as many
                wanted = records.wanted()
                count = wanted + LAST_MESSAGES_SLACK if wanted is not None and wanted > count else count * 2

    def _list(self, config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None,
              limit: int | None) -> Operation[list[CheckpointTuple]]:
        before_id = get_checkpoint_id(before) if before else None
        if not config:  # as InMemorySaver: an empty config is no config
            keys = yield _Keys(KEY_PREFIX)
        elif (config.get("configurable") or {}).get("checkpoint_ns") is not None:
            keys = [session_key(_thread_id(config), _namespace(config))]
        else:
            keys = yield _Keys(thread_prefix(_thread_id(config)))
        wanted_id = get_checkpoint_id(config) if config else None
        found: list[tuple[str, Records, str]] = []
        for key in keys:
            records = self._records_of(key, (yield _Load(key)))
            found.extend((checkpoint_id, records, key) for checkpoint_id in records.positions
                         if (wanted_id is None or checkpoint_id == wanted_id)
                         and (before_id is None or checkpoint_id < before_id))
        found.sort(key=lambda item: item[0], reverse=True)
        listed: list[CheckpointTuple] = []
        for checkpoint_id, records, key in found:
            if limit is not None and len(listed) >= limit:
                break
            if filter:
                metadata = records.metadata(checkpoint_id)
                if any(metadata.get(name) != value for name, value in filter.items()):
                    continue
            listed.append(records.checkpoint_tuple(self.serde, checkpoint_id, *key_parts(key), self._templates))
        return listed

    def _put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
             new_versions: ChannelVersions) -> Operation[RunnableConfig]:
        thread_id, namespace = _thread_id(config), _namespace(config)
        key, parent_id = session_key(thread_id, namespace), get_checkpoint_id(config)
        lists = list_channels(checkpoint, new_versions)
        records = self._records_of(key, (yield _Load(key)))
        # A list that extends the parent's value is stored as its tail.
        bases = records.bases(self.serde, parent_id, lists, self._lists.get(key)) \
            if parent_id is not None and lists else {}
        done, early = self._flights.start_put(key, checkpoint["id"])
        try:
            kept = {channel: version for channel, version in checkpoint["channel_versions"].items()
                    if channel not in new_versions}
            message, encoded = checkpoint_message(self.serde, checkpoint, get_checkpoint_metadata(config, metadata),
                                                  parent_id, new_versions, bases,
                                                  records.known(parent_id, kept, bases, early), early)
            yield _Append(key, message)
        finally:
            self._flights.end_put(key, checkpoint["id"], done)
        self._keep_lists(key, encoded)
        return checkpoint_config(thread_id, namespace, checkpoint["id"])

    def _put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                    task_path: str) -> Operation[None]:
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None:
            raise InvalidArgument("put_writes needs the checkpoint_id of the checkpoint the writes belong to")
        if writes:
            key = session_key(_thread_id(config), _namespace(config))
            early = self._flights.start_writes(key, checkpoint_id)
            if isinstance(early, threading.Event):
                yield _Await(early)
                early = None
            message = writes_message(self.serde, checkpoint_id, writes, task_id, task_path, early)
            yield _Append(key, message)

    def _delete_thread(self, thread_id: str) -> Operation[None]:
        keys = yield _Keys(thread_prefix(str(thread_id)))
        if keys:
            yield _Commit(tuple(_Delete(key) for key in keys))

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> Operation[None]:
        keys = yield _Keys(thread_prefix(str(source_thread_id)))
        if keys:
            yield _Commit(tuple(_Fork(key, session_key(str(target_thread_id), key_parts(key)[1])) for key in keys))

    def _delete_for_runs(self, run_ids: Sequence[str]) -> Operation[None]:
        runs = set(run_ids)
        if runs:
            yield from self._rewrite(KEY_PREFIX, lambda records: {
                checkpoint_id for checkpoint_id in records.positions if records.run_id(checkpoint_id) in runs})

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Operation[None]:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidArgument(f"prune's strategy is 'keep_latest' or 'delete', not {strategy!r:.60}")
        for thread_id in thread_ids:
            if strategy == "delete":
                yield from self._delete_thread(thread_id)
            else:
                yield from self._rewrite(thread_prefix(str(thread_id)),
                                         lambda records: set(records.positions) - {records.latest()})

    def _rewrite(self, prefix: str, dropped_of: Callable[[Records], set[str]]) -> Operation[None]:
        """Drop the checkpoints ``dropped_of`` names (and their writes) from every session under ``prefix``, in one
        commit; start again, up to ``REWRITE_ATTEMPTS`` times, when another writer changed one in between."""
        for attempt in range(REWRITE_ATTEMPTS):
            changes: list[_Replace] = []
            for key in (yield _Keys(prefix)):
                if not dropped_of(Records.of((yield _Load(key)))):
                    continue  # the cheap read says nothing goes: no need for the versioned one
                view: SessionView = yield _Current(key)
                records = Records.of(view.messages)
                dropped = dropped_of(records)
                if dropped:
                    changes.append(_Replace(key, tuple(records.without(self.serde, dropped)), view.version))
            if not changes:
                return
            try:
                yield _Commit(tuple(changes))
                return
            except WrongExpectedVersion:
                if attempt == REWRITE_ATTEMPTS - 1:
                    raise
                # Growing, jittered waits: another process putting checkpoints in a loop can keep winning a
                # fixed number of immediate retries; a pause lets this commit land in one of its gaps.
                yield _Pause(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))

    # -- serving an operation -----------------------------------------------------------------------------------

    def _run(self, operation: Operation[T]) -> T:
        """Run the operation on a ``SessionStore``."""
        store = self.store
        if not isinstance(store, SessionStore):
            raise InvalidArgument("this EventStoreSaver is on an AsyncSessionStore: use the async methods "
                                  "(ainvoke, astream, aget_state, ...), or give the saver a SessionStore")
        with _closing(operation):
            step = _advance(operation, None, None)
            while not isinstance(step, _Done):
                try:
                    answer = self._serve(store, step)
                except EventStoreError as exc:
                    step = _advance(operation, None, exc)
                else:
                    step = _advance(operation, answer, None)
            return step.value

    def _serve(self, store: SessionStore, request: _Request) -> Any:
        if isinstance(request, _Load):
            return store.load(request.key)
        if isinstance(request, _Last):
            return store.load_last(request.key, request.count)
        if isinstance(request, _Current):
            return store.session_at(request.key)
        if isinstance(request, _Keys):
            return store.list_sessions(prefix=request.prefix)
        if isinstance(request, _Append):
            return store.append(request.key, request.message)
        if isinstance(request, _Pause):
            time.sleep(request.seconds)
            return None
        if isinstance(request, _Await):
            request.done.wait()
            return None
        with store.transaction() as tx:
            _queue(tx, request.changes)
        return None

    async def _arun(self, operation: Operation[T]) -> T:
        """Run the operation on an ``AsyncSessionStore``, or on a ``SessionStore`` in a thread."""
        store = self.store
        if isinstance(store, SessionStore):
            return await asyncio.to_thread(self._run, operation)
        with _closing(operation):
            step = _advance(operation, None, None)
            while not isinstance(step, _Done):
                try:
                    answer = await self._aserve(store, step)
                except EventStoreError as exc:
                    step = _advance(operation, None, exc)
                else:
                    step = _advance(operation, answer, None)
            return step.value

    async def _aserve(self, store: AsyncSessionStore, request: _Request) -> Any:
        if isinstance(request, _Load):
            return await store.load(request.key)
        if isinstance(request, _Last):
            return await store.load_last(request.key, request.count)
        if isinstance(request, _Current):
            return await store.session_at(request.key)
        if isinstance(request, _Keys):
            return await store.list_sessions(prefix=request.prefix)
        if isinstance(request, _Append):
            return await store.append(request.key, request.message)
        if isinstance(request, _Pause):
            await asyncio.sleep(request.seconds)
            return None
        if isinstance(request, _Await):
            await asyncio.to_thread(request.done.wait)
            return None
        async with store.transaction() as tx:
            _queue(tx, request.changes)
        return None

    # -- BaseCheckpointSaver --------------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names by ``checkpoint_id``, else the thread's latest; ``None`` if none."""
        return self._run(self._get_tuple(config))

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first: of ``config``'s thread (and namespace, if it names one), or of every
        thread; those whose metadata has every ``filter`` item, older than ``before``, at most ``limit``."""
        return iter(self._run(self._list(config, filter, before, limit)))

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        """Record the checkpoint (one event); ``config``'s ``checkpoint_id`` is its parent."""
        return self._run(self._put(config, checkpoint, metadata, new_versions))

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        """Record a task's writes at the checkpoint ``config`` names (one event)."""
        self._run(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every namespace of the thread, in one commit (events: ``restore`` brings them back)."""
        self._run(self._delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Drop the checkpoints these runs made, and their writes, from every thread (one event per session)."""
        self._run(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork every namespace of the source thread into the target thread, in one commit.

        Raises:
            SessionExists: the target thread has checkpoints already.
        """
        self._run(self._copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's latest checkpoint (and its writes) only; ``"delete"``: delete
        the threads. One event per session; the pruned checkpoints stay in the history."""
        self._run(self._prune(thread_ids, strategy))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``get_tuple``, awaited."""
        return await self._arun(self._get_tuple(config))

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None
                    ) -> AsyncIterator[CheckpointTuple]:
        """``list``, as an async iterator."""
        for item in await self._arun(self._list(config, filter, before, limit)):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        """``put``, awaited."""
        return await self._arun(self._put(config, checkpoint, metadata, new_versions))

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        """``put_writes``, awaited."""
        await self._arun(self._put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """``delete_thread``, awaited."""
        await self._arun(self._delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """``delete_for_runs``, awaited."""
        await self._arun(self._delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """``copy_thread``, awaited."""
        await self._arun(self._copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``prune``, awaited."""
        await self._arun(self._prune(thread_ids, strategy))

