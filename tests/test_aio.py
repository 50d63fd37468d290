"""``AsyncSessionStore``: the same API as ``SessionStore``, awaited; against the in-memory model, under
contention with failures injected, cancelled at every await point of a write, and sharing a path."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import (
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    SessionStore,
    StoreClosed,
    WrongExpectedVersion,
    _aio_generate,
    aio,
)
from eventstore.storage import WriteTransaction

from conftest import lmdb_storage
from test_model import SNAPSHOT_EVERY, StoreMachine


def hello(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (pytest passes the fixtures it names)."""
    @functools.wraps(test)
    def run(**fixtures: Any) -> None:
        asyncio.run(test(**fixtures))
    return run


# -- the same API -------------------------------------------------------------------------------------------

def test_the_generated_methods_are_up_to_date() -> None:
    assert _aio_generate.main(["--check"]) == 0


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {name: value for name, value in vars(cls).items()
            if callable(value) and (name == "__init__" or not name.startswith("_"))}


def test_every_method_of_the_sync_store_is_there_with_the_same_parameters() -> None:
    sync, asynchronous = public_methods(SessionStore), public_methods(AsyncSessionStore)
    assert set(sync) == set(asynchronous)
    for name, method in sync.items():
        assert list(inspect.signature(method).parameters.values()) == list(
            inspect.signature(asynchronous[name]).parameters.values()), name
        streams = name in aio.STREAMED or name == "subscribe"
        assert inspect.iscoroutinefunction(asynchronous[name]) == (name not in ("__init__", "transaction")
                                                                   and not streams), name


# -- the model test, through the async store ----------------------------------------------------------------

class Awaited:
    """The async store behind the sync API that the model test drives: each call awaited on a private loop.

    Private attributes (the model test's invariants read the read models directly) are the sync store's.
    """

    def __init__(self, store: AsyncSessionStore, loop: asyncio.AbstractEventLoop) -> None:
        self._async, self._loop = store, loop

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return getattr(self._async._store, name)
        method = getattr(self._async, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return self._loop.run_until_complete(result)
            assert isinstance(result, AsyncIterator)
            return self._loop.run_until_complete(collected(result))

        return call


async def collected(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


class AsyncStoreMachine(StoreMachine):
    """The model test's rules and invariants, every call going through ``AsyncSessionStore``."""

    def _open(self) -> Any:
        if not hasattr(self, "loop"):
            self.loop = asyncio.new_event_loop()
        return Awaited(AsyncSessionStore(self.directory, clock=self.clock, snapshot_every=SNAPSHOT_EVERY,
                                         durable=False), self.loop)

    def teardown(self) -> None:
        super().teardown()
        self.loop.close()


AsyncStoreMachine.TestCase.__doc__ = "The async store agrees with the in-memory model after every random step."
TestAsyncStoreModel = AsyncStoreMachine.TestCase


# -- errors, closing, sharing a path ------------------------------------------------------------------------

@on_a_loop
async def test_errors_are_the_sync_stores(store_path: Path) -> None:
    async with AsyncSessionStore(store_path) as store:
        await store.append("a", hello("one"))
        with pytest.raises(WrongExpectedVersion):
            await store.append("a", hello("two"), expected_version=0)
        with pytest.raises(InvalidArgument):
            await store.append_many("a", "not messages")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await store.load("")
        with pytest.raises(InvalidArgument):
            store.events(after=-1)
        with pytest.raises(InvalidArgument):
            store.subscribe(timeout=-1)
    with pytest.raises(StoreClosed):
        await store.append("a", hello("closed"))
    with pytest.raises(StoreClosed):
        await store.load("a")
    await store.close()  # closing twice is harmless


@on_a_loop
async def test_an_async_and_a_sync_store_share_a_path(store_path: Path) -> None:
    with SessionStore(store_path) as sync:
        async with AsyncSessionStore(store_path) as store:
            await store.append("a", hello("from async"))
            sync.append("a", hello("from sync"))
            assert await store.load("a") == sync.load("a") == [hello("from async"), hello("from sync")]
        assert sync.append("a", hello("still open")) == 3


@on_a_loop
async def test_streams_are_async_iterators(store_path: Path) -> None:
    async with AsyncSessionStore(store_path) as store:
        for index in range(3):
            await store.append("a", hello(str(index)))
        assert [event.position async for event in store.events(after=1)] == [2, 3]
        assert [view.messages async for _, view in store.replay("a", 2)] == [
            [hello("0"), hello("1")], [hello("0"), hello("1"), hello("2")]]


@on_a_loop
async def test_an_async_transaction_commits_at_the_end_of_the_block(store_path: Path) -> None:
    async with AsyncSessionStore(store_path) as store:
        async with store.transaction() as tx:
            first = tx.append("a", hello("one"))
            state = tx.set_session_state("user", "running")
        assert first.result == 1 and state.result is None
        with pytest.raises(WrongExpectedVersion):
            async with store.transaction() as tx:
                tx.append("b", hello("never"))
                tx.append("a", hello("late"), expected_version=0)
        assert not await store.session_exists("b")
        assert [event.position async for event in store.events()] == [1, 2]


# -- group commit under contention --------------------------------------------------------------------------

@on_a_loop
async def test_tasks_appending_with_failures_injected_commit_the_others_gap_free(store_path: Path) -> None:
    rng = random.Random(14)
    tasks, rounds = 48, 6
    async with AsyncSessionStore(store_path, durable=False) as store:
        versions = {f"task-{index}": 0 for index in range(tasks)}

        async def one(key: str, doomed: bool) -> str:
            try:
                # A doomed command claims a version the session is not at: it must fail alone.
                expected = versions[key] + 7 if doomed else versions[key]
                versions[key] = await store.append(key, hello(key), expected_version=expected)
                return "ok"
            except WrongExpectedVersion:
                assert doomed
                return "refused"

        outcomes: list[str] = []
        for _ in range(rounds):
            outcomes += await asyncio.gather(*(one(key, rng.random() < 0.25) for key in versions))
        events = [event async for event in store.events()]
        assert [event.position for event in events] == list(range(1, len(events) + 1))
        assert len(events) == outcomes.count("ok") == sum(versions.values())
        assert 0 < outcomes.count("refused") < len(outcomes)
        for key, version in versions.items():
            assert len(await store.load(key)) == version
        assert (await store.verify()).ok


# -- cancellation -------------------------------------------------------------------------------------------

@on_a_loop
async def test_a_write_cancelled_at_any_point_committed_whole_or_wrote_nothing(store_path: Path) -> None:
    async with AsyncSessionStore(store_path, durable=False) as store:
        outcomes = set()
        for steps in range(40):  # cancel after 0, 1, 2, ... turns of the loop: before, during and after the write
            key = f"cancel-{steps}"
            task = asyncio.create_task(store.append_many(key, [hello("a"), hello("b")], idempotency_key=key))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                outcomes.add("finished")
            except asyncio.CancelledError:
                outcomes.add("cancelled")
            # A retry with the same key tells: it writes only if the cancelled call wrote nothing.
            assert await store.append_many(key, [hello("a"), hello("b")], idempotency_key=key) == 2
            assert await store.load(key) == [hello("a"), hello("b")]
        events = [event async for event in store.events()]
        assert [event.position for event in events] == list(range(1, len(events) + 1))
        assert len(events) == 2 * 40
        assert "cancelled" in outcomes
        assert (await store.verify()).ok


@on_a_loop
async def test_a_cancelled_write_waiting_for_the_lock_still_commits_once(store_path: Path) -> None:
    with SessionStore(store_path, durable=False) as sync:
        async with AsyncSessionStore(store_path, durable=False) as store:
            holding, release = threading.Event(), threading.Event()

            def hold(txn: WriteTransaction) -> None:
                holding.set()
                release.wait()

            environment = lmdb_storage(sync)
            blocker = threading.Thread(target=environment.write, args=(hold,))
            blocker.start()
            holding.wait()
            task = asyncio.create_task(store.append("a", hello("queued"), idempotency_key="once"))
            while not environment._group._queued:  # the write waits for the lock in its thread
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()
            await asyncio.to_thread(blocker.join)
            assert await store.append("a", hello("queued"), idempotency_key="once") == 1
            assert await store.load("a") == [hello("queued")]


# -- subscribe ----------------------------------------------------------------------------------------------

@on_a_loop
async def test_an_async_subscription_sees_each_commit_once_in_order(store_path: Path) -> None:
    async with AsyncSessionStore(store_path, durable=False) as store:
        await store.append("before", hello("0"))
        seen: list[int] = []

        async def follow() -> None:
            # The timeout only ends a test that went wrong: a round of appends may take longer than any short one.
            async for event in store.subscribe(after=0, timeout=60):
                seen.append(event.position)
                if len(seen) == 51:
                    return

        follower = asyncio.create_task(follow())
        for round_ in range(5):
            await asyncio.gather(*(store.append(f"k{index}", hello(str(round_))) for index in range(10)))
            await asyncio.sleep(0.01)
        await follower
        assert seen == list(range(1, 52))


def test_loop_never_runs_the_write_itself(store_path: Path) -> None:
    """Writes run on the store's writer threads: the loop's thread never holds the writers' lock."""
    loop_thread: list[int] = []
    writer_threads: set[int] = set()

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        async with AsyncSessionStore(store_path, durable=False) as store:
            environment = lmdb_storage(store._store)
            original = environment.write

            def spying(body: Callable[[WriteTransaction], Any]) -> Any:
                writer_threads.add(threading.get_ident())
                return original(body)

            environment.write = spying  # type: ignore[method-assign, assignment]
            try:
                await asyncio.gather(*(store.append(f"k{index}", hello("x")) for index in range(8)))
            finally:
                del environment.write

    asyncio.run(main())
    assert writer_threads and loop_thread[0] not in writer_threads


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert not [thread for thread in set(threading.enumerate()) - before
                if thread.name.startswith("eventstore-writer")]
