"""An async PostgreSQL subscription waiting through a server outage: closing its store ends it with ``StoreClosed``
within a retry's wait, and cancelling its step ends it, its store still usable; its tries leave the event loop free
between them."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventstore import AsyncSessionStore, ChatMessage, StoreClosed
from eventstore.services.feed import RETRY_SECONDS

from test_postgres_faults import _server_up
from test_postgres_store import open_host, replica_of
from test_postgres_subscribe_outage import failed_reads, listening_is

__all__ = ["_server_up", "open_host"]  # the fixtures, used by name


def test_closing_an_async_store_ends_its_subscription_waiting_through_an_outage(
        postgres_url, open_host, postgres_server, tmp_path, monkeypatch):
    open_host("two").append("k", ChatMessage.user("before"))

    async def main() -> None:
        one = AsyncSessionStore(postgres_url, cache=tmp_path / "one")
        feed = one.subscribe()
        assert (await anext(feed)).position == 1
        postgres_server.stop()
        listening_is(replica_of(one._store), False)
        failed = failed_reads(replica_of(one._store), monkeypatch)
        waiting = asyncio.ensure_future(anext(feed))
        # The loop runs between the tries: this task sees the count of failed reads change three times, which a
        # subscription that held the loop while it waited to try again would keep it from, however late it runs.
        counts: list[int] = []
        deadline = time.monotonic() + 10 + 3 * RETRY_SECONDS
        while len(counts) < 3:
            assert time.monotonic() < deadline, "the loop did not run between the subscription's tries"
            await asyncio.sleep(0.01)
            if failed and counts[-1:] != [len(failed)]:
                counts.append(len(failed))
        assert not waiting.done()
        await one.close()
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(waiting, 10 * RETRY_SECONDS)

    asyncio.run(main())


def test_cancelling_an_async_subscription_waiting_through_an_outage_ends_it_and_leaves_the_store_usable(
        postgres_url, open_host, postgres_server, tmp_path, monkeypatch):
    two = open_host("two")
    two.append("k", ChatMessage.user("before"))

    async def main() -> None:
        async with AsyncSessionStore(postgres_url, cache=tmp_path / "one") as one:
            feed = one.subscribe()
            assert (await anext(feed)).position == 1
            postgres_server.stop()
            listening_is(replica_of(one._store), False)
            failed = failed_reads(replica_of(one._store), monkeypatch)
            waiting = asyncio.ensure_future(anext(feed))
            deadline = time.monotonic() + 10
            while len(failed) < 2 and time.monotonic() < deadline:  # it met the server down, and tried again
                await asyncio.sleep(0.01)
            assert len(failed) >= 2 and not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            with pytest.raises(StopAsyncIteration):  # a cancelled async generator is finished
                await anext(feed)
            postgres_server.start()
            await asyncio.to_thread(two.append, "k", ChatMessage.user("after"))
            again = one.subscribe(after=1, timeout=30)
            assert (await anext(again)).event.message.content == "after"

    asyncio.run(main())
