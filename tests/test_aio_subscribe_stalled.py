"""An async subscription whose event loop stops running (its owner stepped it by hand and stopped reading) costs
one pending wake-up on that loop, not one per commit of the other writers; read again, it sees every event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextvars import Context
from pathlib import Path
from typing import TypeVarTuple, Unpack, cast

from eventstore import AsyncSessionStore, ChatMessage, RecordedEvent, SessionStore

COMMITS_WHILE_STALLED = 500
Arguments = TypeVarTuple("Arguments")


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts the callbacks other threads hand it."""

    handed: int = 0

    def call_soon_threadsafe(self, callback: Callable[[Unpack[Arguments]], object], *args: *Arguments,
                             context: Context | None = None) -> asyncio.Handle:
        self.handed += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_a_stalled_subscriber_loop_holds_one_wake_up_and_then_reads_on(store_path: Path) -> None:
    loop = CountingLoop()
    try:
        store = AsyncSessionStore(store_path, durable=False)
        subscription = cast(AsyncGenerator[RecordedEvent, None], store.subscribe())  # so that it may be closed

        async def next_event() -> RecordedEvent:
            return await anext(subscription)

        with SessionStore(store_path, durable=False) as writer:
            writer.append("a", ChatMessage.user("0"))
            assert loop.run_until_complete(next_event()).position == 1
            waiting = loop.create_task(next_event())
            loop.run_until_complete(asyncio.sleep(0.1))  # the subscription waits for a commit now
            handed_before = loop.handed
            for index in range(COMMITS_WHILE_STALLED):  # the loop does not run meanwhile
                writer.append("a", ChatMessage.user(str(index + 1)))
            assert loop.handed - handed_before <= 2
            seen = [loop.run_until_complete(waiting).position]
            while len(seen) < COMMITS_WHILE_STALLED:
                seen.append(loop.run_until_complete(next_event()).position)
        assert seen == list(range(2, COMMITS_WHILE_STALLED + 2))
        loop.run_until_complete(subscription.aclose())
        loop.run_until_complete(store.close())
    finally:
        loop.close()
