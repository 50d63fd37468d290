"""Closing a store ends its subscriptions with ``StoreClosed``, sync and async, even while another store object
of this process keeps the same path open (and so the environment the subscription polls)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sized
from pathlib import Path

import pytest

from eventstore import AsyncSessionStore, ChatMessage, SessionStore, StoreClosed

from conftest import at_a_subscriptions_look

#: A subscription must end this soon after its store is closed (it checks every 25 ms); also how long a test waits
#: for a subscription to reach its wait, which takes milliseconds.
ENDS_WITHIN_SECONDS = 5.0


def waiting_once_delivered(store: SessionStore, delivered: Sized) -> threading.Event:
    """Set once a subscription of ``store`` has delivered an event into ``delivered`` and then waited for a commit
    (closed before its first event, the store would end it without the event)."""
    waited = threading.Event()
    at_a_subscriptions_look(store, 3, waited.set, lambda: bool(delivered))
    return waited


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

    waited = waiting_once_delivered(store, outcome)
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert waited.wait(ENDS_WITHIN_SECONDS), "the subscription never waited"
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

        waited = waiting_once_delivered(store._store, positions)
        follower = asyncio.create_task(follow())
        assert await asyncio.to_thread(waited.wait, ENDS_WITHIN_SECONDS), "the subscription never waited"
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
