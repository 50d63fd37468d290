"""Closing a store ends its subscriptions with ``StoreClosed``, sync and async, even while another store object
of this process keeps the same path open (and so the environment the subscription polls)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from eventstore import AsyncSessionStore, ChatMessage, SessionStore, StoreClosed

#: Long enough for a subscription to reach its wait on a loaded machine; short against the bound below.
SETTLE_SECONDS = 0.2
#: A subscription must end this soon after its store is closed (it checks every 25 ms).
ENDS_WITHIN_SECONDS = 5.0


@pytest.mark.parametrize("other_open", [False, True], ids=["alone", "path-shared"])
def test_closing_the_store_ends_a_waiting_subscription(store_path: Path, other_open: bool) -> None:
    other = SessionStore(store_path) if other_open else None
    store = SessionStore(store_path)
    store.append("a", ChatMessage.user("hello"))
    outcome: list[object] = []

    def follow() -> None:
        try:
            outcome.extend(event.position for event in store.subscribe())
        except StoreClosed as closed:
            outcome.append(closed)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(SETTLE_SECONDS)
    store.close()
    follower.join(ENDS_WITHIN_SECONDS)
    try:
        assert not follower.is_alive(), "the subscription kept waiting on a closed store"
        assert outcome[:1] == [1] and isinstance(outcome[-1], StoreClosed)
    finally:
        if other is not None:
            other.close()


@pytest.mark.parametrize("other_open", [False, True], ids=["alone", "path-shared"])
def test_closing_an_async_store_ends_a_waiting_subscription(store_path: Path, other_open: bool) -> None:
    async def scenario() -> None:
        store = AsyncSessionStore(store_path)
        await store.append("a", ChatMessage.user("hello"))
        positions: list[int] = []

        async def follow() -> None:
            async for event in store.subscribe():
                positions.append(event.position)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(SETTLE_SECONDS)
        await store.close()
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(follower, ENDS_WITHIN_SECONDS)
        assert positions == [1]

    other = SessionStore(store_path) if other_open else None
    try:
        asyncio.run(scenario())
    finally:
        if other is not None:
            other.close()
