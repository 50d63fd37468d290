"""An ``AsyncSessionStore`` used in a ``fork()``ed child raises ``StoreUsedAfterFork``, as a ``SessionStore`` does,
and its close there returns. The child inherits the store's pool of writer threads without the threads: a call given
to a pool whose threads had gone idle in the parent would wait in its queue for ever."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from eventstore import AsyncSessionStore, ChatMessage, StoreUsedAfterFork

from conftest import LOG_BACKENDS, engine_of

#: How long the child may take before its alarm kills it (a call that hangs).
CHILD_SECONDS = 20
#: How long the parent waits for something that should happen at once.
PATIENCE_SECONDS = 10.0


@pytest.fixture(params=LOG_BACKENDS)
def engine(request: pytest.FixtureRequest) -> str:
    return engine_of(request)


def open_async(engine: str, tmp_path: Path) -> AsyncSessionStore:
    if engine == "postgres":
        from conftest import _postgres_url

        return AsyncSessionStore(_postgres_url[0], cache=tmp_path / "replica")
    return AsyncSessionStore(tmp_path / "store")


def writers_idle(store: AsyncSessionStore) -> None:
    """Wait until a writer thread of ``store`` has finished its call and waits for the next: the pool then starts
    no thread for a call, and gives it to that one (which a forked child lacks)."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while store._writers._idle_semaphore._value == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert store._writers._idle_semaphore._value > 0


def refusals_in_child(calls: list[Callable[[], Coroutine[Any, Any, object]]],
                      close: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run each call, then ``close``, on an event loop of a forked child; its exit code: 0 when every call raised
    ``StoreUsedAfterFork`` and the close returned, ``-SIGALRM`` when something hung."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(CHILD_SECONDS)
        code = 99
        try:
            async def in_child() -> int:
                refused = 0
                for call in calls:
                    try:
                        await call()
                    except StoreUsedAfterFork:
                        refused += 1
                await close()
                return 0 if refused == len(calls) else 10 + refused

            code = asyncio.run(in_child())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_child_s_calls_on_the_parent_s_async_store_raise_and_its_close_returns(engine: str, tmp_path: Path) -> None:
    store = open_async(engine, tmp_path)

    async def parent_writes(text: str) -> int:
        return await store.append("k", ChatMessage.user(text))

    try:
        assert asyncio.run(parent_writes("parent")) == 1
        writers_idle(store)

        async def in_a_transaction() -> None:
            async with store.transaction() as tx:
                tx.append("k", ChatMessage.user("child's transaction"))

        async def subscribed() -> object:
            async for event in store.subscribe(timeout=1):
                return event
            return None

        calls: list[Callable[[], Coroutine[Any, Any, object]]] = [
            lambda: store.append("k", ChatMessage.user("child")),
            lambda: store.fork("k", "child's fork"),
            in_a_transaction,
            lambda: store.load("k"),
            subscribed,
        ]
        assert refusals_in_child(calls, store.close) == 0
        assert asyncio.run(parent_writes("parent again")) == 2
        assert [m.content for m in asyncio.run(store.load("k"))] == ["parent", "parent again"]
    finally:
        asyncio.run(store.close())
