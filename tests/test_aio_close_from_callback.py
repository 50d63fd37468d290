"""A callback of an ``AsyncSessionStore`` call (a ``progress`` callback, an iterable the call reads) runs on a writer
thread that the call waits for. Awaiting the store's ``close()`` from it (the loop running the close) would wait for
that call, which waits for the close: it raises ``StoreBusy`` at once and leaves the store open and usable. So does
a write awaited from a callback of a call holding a write transaction, as the sync store's would; reads go ahead."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eventstore import AsyncSessionStore, ChatMessage, StoreBusy, StoreClosed

T = TypeVar("T")

#: How long a test waits for something that should happen at once.
PATIENCE_SECONDS = 10.0


def run_bounded(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` on a loop in a thread of its own: a scenario that hangs fails the test instead of holding it."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as failure:  # raised below, in the test's thread
            failures.append(failure)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(3 * PATIENCE_SECONDS)
    assert not thread.is_alive(), "the scenario hung"
    if failures:
        raise failures[0]


def awaited_from_callback(loop: asyncio.AbstractEventLoop, awaitable: Callable[[], Awaitable[T]]) -> T:
    """What a callback on a writer thread gets by having the loop await ``awaitable()``, within the test's patience."""

    async def awaiting() -> T:
        return await awaitable()

    return asyncio.run_coroutine_threadsafe(awaiting(), loop).result(PATIENCE_SECONDS)


Call = Callable[[AsyncSessionStore, Callable[[], None]], Coroutine[Any, Any, object]]

#: Calls of the store that run a callback on a writer thread: ``callback()`` is run at their first step.
CALLS: dict[str, Call] = {
    "a verify's progress": lambda store, callback: store.verify(progress=lambda done, total: callback()),
    "a rebuild's progress (its write transaction open)": lambda store, callback: store.rebuild_projections(
        progress=lambda done, total: callback()),
    "an iterable an append reads": lambda store, callback: store.append_many("read", _after(callback)),
}


def _after(callback: Callable[[], None]) -> Iterator[ChatMessage]:
    callback()
    yield ChatMessage.user("appended from an iterable")


async def opened_with_a_message(path: Path) -> AsyncSessionStore:
    """An async store at ``path`` whose session ``a`` holds one message, ``first``."""
    store = AsyncSessionStore(path)
    await store.append("a", ChatMessage.user("first"))
    return store


@pytest.mark.parametrize("way", CALLS)
def test_a_close_awaited_from_a_callback_of_its_own_call_raises_store_busy_and_leaves_it_open(
        store_path: Path, way: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        store = await opened_with_a_message(store_path)
        refused: list[BaseException] = []

        def close_once() -> None:
            if not refused:
                with pytest.raises(StoreBusy, match="close it once that call returns") as caught:
                    awaited_from_callback(loop, store.close)
                refused.append(caught.value)

        await CALLS[way](store, close_once)
        assert refused
        assert await store.append("a", ChatMessage.user("after the refusal")) == 2
        assert await store.load("a") == [ChatMessage.user("first"), ChatMessage.user("after the refusal")]
        await store.close()
        with pytest.raises(StoreClosed):
            await store.load("a")

    run_bounded(scenario)


def test_a_write_awaited_from_a_callback_of_a_write_transaction_raises_store_busy_and_reads_go_ahead(
        store_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        store = await opened_with_a_message(store_path)
        seen: list[object] = []

        def write_and_read_once() -> None:
            if seen:
                return
            with pytest.raises(StoreBusy, match="cannot run before that transaction ends"):
                awaited_from_callback(loop, lambda: store.append("a", ChatMessage.user("refused")))
            seen.append(awaited_from_callback(loop, lambda: store.load("a")))
            seen.append(len(awaited_from_callback(loop, lambda: store.history("a"))))  # on a writer thread

        await CALLS["a rebuild's progress (its write transaction open)"](store, write_and_read_once)
        assert seen == [[ChatMessage.user("first")], 1]
        assert await store.append("a", ChatMessage.user("once it returned")) == 2  # nothing recorded before
        await store.close()

    run_bounded(scenario)


def test_a_write_awaited_from_a_callback_of_a_read_goes_ahead(store_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        store = await opened_with_a_message(store_path)
        versions: list[int] = []

        def append_once() -> None:
            if not versions:
                versions.append(awaited_from_callback(loop, lambda: store.append("b", ChatMessage.user("mid-verify"))))

        await CALLS["a verify's progress"](store, append_once)
        assert versions == [1]
        await store.close()

    run_bounded(scenario)


def test_a_close_from_another_task_while_a_callback_runs_waits_for_the_call_and_closes(store_path: Path) -> None:
    async def scenario() -> None:
        store = await opened_with_a_message(store_path)
        in_callback, release = threading.Event(), threading.Event()

        def held() -> None:
            if not in_callback.is_set():
                in_callback.set()
                release.wait(PATIENCE_SECONDS)

        verifying = asyncio.create_task(CALLS["a verify's progress"](store, held))
        assert await asyncio.to_thread(in_callback.wait, PATIENCE_SECONDS)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0)  # the close begins while the call's callback runs: it waits, it is not refused
        assert not closing.done()
        release.set()
        await verifying
        await asyncio.wait_for(closing, PATIENCE_SECONDS)
        with pytest.raises(StoreClosed):
            await store.load("a")

    run_bounded(scenario)
