"""``AsyncSessionStore.close`` cut short (a timeout, a cancelled task leaving ``async with``) still closes the store
once the writes under way are done: every later call raises ``StoreClosed``, and the writes were kept."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

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
