"""A subscription across a failover that lost events it had delivered (PostgreSQL's, and the feed alone): the log it
follows is no longer the one it delivered from, and it raises ``FeedDiverged`` rather than go on from its position
as if the events that took the lost ones' positions never came (sync and async). So does one resumed after such a
failover from a saved position and its event's hash (``after_hash``)."""

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


@pytest.mark.parametrize("restarted", [True, False], ids=["restarted", "same-store"])
@pytest.mark.parametrize("replaced", [True, False], ids=["other-events-in-its-place", "shorter-log"])
def test_a_subscription_resumed_after_a_failover_that_lost_its_position_raises_rather_than_skip(
        open_host, postgres_url, restarted, replaced):
    """A consumer handled events 1 to 5, saved 5 and its hash, and stopped; a failover lost 4 and 5 and maybe took
    other commits in their place. Resumed on the position alone it would skip them, or wait for a position the new
    history reaches with other events; with the hash it raises, whether its host's store restarted too or not."""
    one, two = open_host("one"), open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))
    handled = list(one.subscribe(timeout=0))[-1]
    assert handled.position == 5
    if restarted:
        one.close()
    roll_back_to(postgres_url, 3)
    if replaced:
        two.append_many("k", REPLACING, expected_version=3)  # new 3, 4 and 5 at positions 4, 5 and 6
    resumed = open_host("one") if restarted else one
    feed = resumed.subscribe(after=5, timeout=10, after_hash=handled.hash)
    with pytest.raises(FeedDiverged, match="does not hold event 5 with the hash saved for it"):
        next(feed)
    if replaced:  # what the position alone delivers: "new 5", as if "new 3" and "new 4" came before it
        assert [event.event.message.content for event in resumed.subscribe(after=5, timeout=0)] == ["new 5"]


def test_a_subscription_resumed_after_a_failover_that_kept_its_position_goes_on(open_host, postgres_url):
    one, two = open_host("one"), open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))
    handled = list(one.subscribe(timeout=0))[2]
    one.close()
    roll_back_to(postgres_url, 4)  # the standby lacked 5 only: event 3 is there as it was handled
    two.append("k", ChatMessage.user("new 4"), expected_version=4)
    resumed = open_host("one")
    assert [event.event.message.content for event in resumed.subscribe(after=3, timeout=0, after_hash=handled.hash)
            ] == ["seen 3", "new 4"]


def test_an_async_subscription_resumed_after_a_failover_that_lost_its_position_raises(
        open_host, postgres_url, tmp_path):
    two = open_host("two")
    for number in range(5):
        two.append("k", ChatMessage.user(f"seen {number}"))
    handled = list(two.events())[-1]
    roll_back_to(postgres_url, 3)
    two.append_many("k", REPLACING, expected_version=3)

    async def main() -> None:
        async with AsyncSessionStore(postgres_url, cache=tmp_path / "one") as one:
            feed = one.subscribe(after=5, timeout=10, after_hash=handled.hash)
            with pytest.raises(FeedDiverged, match="does not hold event 5 with the hash saved for it"):
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


def test_a_resumed_feed_checks_the_event_it_was_given_from_its_first_read():
    """The feed alone, resumed from a position and its hash: its first read hands that hash, then each read the hash
    of the last event delivered; a log without that event raises before anything is delivered."""
    log = [SimpleNamespace(position=position, hash=f"h{position}") for position in range(1, BATCH + 7)]
    reads: list[tuple[int, str | None]] = []
    delivered = [step.position for step in Feed(read_of(log, reads), lambda: 7).steps(3, 0, after_hash="h3")]
    assert delivered == list(range(4, BATCH + 7))
    assert reads == [(3, "h3"), (BATCH + 3, f"h{BATCH + 3}"), (BATCH + 6, f"h{BATCH + 6}")]
    for after, saved in ((3, "other"), (BATCH + 7, "h7")):
        steps = Feed(read_of(log, []), lambda: 7).steps(after, None, after_hash=saved)
        with pytest.raises(FeedDiverged, match=f"does not hold event {after} with the hash saved for it"):
            next(steps)


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
