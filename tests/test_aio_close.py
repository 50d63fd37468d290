"""``AsyncSessionStore.close`` cut short (a timeout, a cancelled task leaving ``async with``) still closes the store
once the writes under way are done: every later call raises ``StoreClosed``, and the writes were kept. A write given
on another loop while the store closes raises ``StoreClosed`` too."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from eventstore import AsyncSessionStore, ChatMessage, SessionStore, StoreClosed

#: How long a test waits for something that should happen at once.
PATIENCE_SECONDS = 10.0


def test_a_close_cut_short_still_closes_the_store_after_the_write_under_way(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writing, release = threading.Event(), threading.Event()
    append_many = SessionStore.append_many

    def held_append_many(self: SessionStore, *args: object, **kwargs: object) -> int:
        writing.set()
        release.wait(PATIENCE_SECONDS)
        return append_many(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionStore, "append_many", held_append_many)

    async def scenario() -> None:
        store = AsyncSessionStore(store_path)
        write = asyncio.create_task(store.append_many("a", [ChatMessage.user("kept")]))
        assert await asyncio.to_thread(writing.wait, PATIENCE_SECONDS)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.close(), 0.05)
        release.set()
        assert await write == 1
        for _ in range(int(PATIENCE_SECONDS / 0.01)):
            if store._store._closed:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(StoreClosed):
            await store.load("a")
        await store.close()  # and again: harmless

    asyncio.run(scenario())
    with SessionStore(store_path) as reopened:
        assert reopened.load("a") == [ChatMessage.user("kept")]


def test_a_write_given_on_another_loop_as_the_store_closes_raises_store_closed(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AsyncSessionStore(store_path)
    submitting, closed = threading.Event(), threading.Event()
    submit = ThreadPoolExecutor.submit
    outcome: list[BaseException] = []

    def submit_once_closed(self: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> Future[Any]:
        if threading.current_thread() is writer:  # past the check that the store is open: close it now
            submitting.set()
            closed.wait(PATIENCE_SECONDS)
        return submit(self, *args, **kwargs)

    async def write() -> None:
        try:
            await store.append("a", ChatMessage.user("late"))
        except BaseException as failure:  # whatever it was, for the assertion below
            outcome.append(failure)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit_once_closed)
    writer = threading.Thread(target=asyncio.run, args=(write(),), daemon=True)
    writer.start()
    assert submitting.wait(PATIENCE_SECONDS)
    asyncio.run(store.close())
    closed.set()
    writer.join(PATIENCE_SECONDS)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreClosed)
    with SessionStore(store_path) as reopened:
        assert reopened.load("a") == []
