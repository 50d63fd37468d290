"""A subscription across a failover that lost events it had delivered (PostgreSQL's, and the feed alone): the log it
follows is no longer the one it delivered from, and it raises ``FeedDiverged`` rather than go on from its position
as if the events that took the lost ones' positions never came (sync and async)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from eventstore import AsyncSessionStore, ChatMessage, FeedDiverged
from eventstore.services.feed import BATCH, Feed

from test_postgres_rebuild import roll_back_to
from test_postgres_store import open_host

__all__ = ["open_host"]  # the fixture, used by name

LOST = ["seen 3", "seen 4"]
REPLACING = [ChatMessage.user("new 3"), ChatMessage.user("new 4"), ChatMessage.user("new 5")]


def test_a_subscription_whose_delivered_events_a_failover_lost_raises_rather_than_skip_their_replacements(
        open_host, postgres_url):
    one, two = open_host("one"), open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))
    feed = one.subscribe(timeout=10)
    assert [next(feed).event.message.content for _ in range(5)][3:] == LOST
    roll_back_to(postgres_url, 3)  # the standby lacked 4 and 5
    two.append_many("k", REPLACING, expected_version=3)  # new 4, 5 and 6
    with pytest.raises(FeedDiverged, match="event 5"):
        next(feed)


def test_a_subscription_raises_when_a_failover_left_the_log_shorter_than_what_it_delivered(open_host, postgres_url):
    """Waiting for event 6 while the log holds 3 would wait for ever, then deliver a stranger's 6th as the next."""
    one, two = open_host("one"), open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))
    feed = one.subscribe(timeout=10)
    assert [next(feed).position for _ in range(5)] == [1, 2, 3, 4, 5]
    roll_back_to(postgres_url, 3)
    two.append("other", ChatMessage.user("the head moves, so the subscription reads again"))  # event 4
    with pytest.raises(FeedDiverged, match="event 5"):
        next(feed)


def test_an_async_subscription_whose_delivered_events_a_failover_lost_raises(open_host, postgres_url, tmp_path):
    two = open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))

    async def main() -> None:
        async with AsyncSessionStore(postgres_url, cache=tmp_path / "one") as one:
            feed = one.subscribe(timeout=10)
            assert [(await anext(feed)).position for _ in range(5)] == [1, 2, 3, 4, 5]
            await asyncio.to_thread(roll_back_to, postgres_url, 3)
            await asyncio.to_thread(two.append_many, "k", REPLACING, expected_version=3)
            with pytest.raises(FeedDiverged, match="event 5"):
                await anext(feed)

    asyncio.run(main())


def read_of(log: list[Any], reads: list[tuple[int, str | None]]) -> Callable[[int, int, str | None], list[Any] | None]:
    """A feed's read of ``log`` (its events in order from position 1), as a store's: with ``held``, ``None`` if the
    event at ``after`` is not there with that hash. Records each read's position and hash."""

    def read_batch(after: int, limit: int, held: str | None) -> list[Any] | None:
        reads.append((after, held))
        if held is not None and (after > len(log) or log[after - 1].hash != held):
            return None
        return log[after:after + limit]

    return read_batch


def test_the_feed_checks_the_event_it_delivered_last_at_each_read_after_it():
    """The feed alone: each read after a delivery hands the hash of the last event delivered, and the log that
    still holds it delivers the rest, every event once."""
    log = [SimpleNamespace(position=position, hash=f"h{position}") for position in range(1, 2 * BATCH + 3)]
    reads: list[tuple[int, str | None]] = []
    delivered = [step.position for step in Feed(read_of(log, reads), lambda: 7).steps(0, timeout=0)]
    assert delivered == list(range(1, 2 * BATCH + 3))
    assert reads == [(0, None)] + [(position, f"h{position}") for position in (BATCH, 2 * BATCH, 2 * BATCH + 2)]


@pytest.mark.parametrize("replaced", [
    [SimpleNamespace(position=2, hash="other"), SimpleNamespace(position=3, hash="h3")],
    []], ids=["another", "gone"])
def test_the_feed_raises_when_the_event_it_delivered_last_is_another_or_gone(replaced):
    """The feed alone: the event at its position has another hash (lost and replaced), or is gone (a shorter log)."""
    log: list[Any] = [SimpleNamespace(position=1, hash="h1"), SimpleNamespace(position=2, hash="h2")]
    steps = Feed(read_of(log, []), lambda: 7).steps(0, timeout=None)
    assert [next(steps).position for _ in range(2)] == [1, 2]
    log[1:] = replaced
    with pytest.raises(FeedDiverged, match="event 2"):
        next(steps)
