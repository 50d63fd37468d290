"""A subscription on PostgreSQL across a server outage: it waits while the server cannot be reached and resumes from
its position once it is back, delivering another host's commits made before, while it waited and after, each once
and in order (sync and async); it raises only when its store is closed or a wait it was given runs out."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from eventstore import (
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    RecordedEvent,
    SessionStore,
    StoreClosed,
    StoreUnavailable,
)
from eventstore.services import feed as feed_module
from eventstore.services.feed import RETRY_SECONDS, Feed
from eventstore.services.replica import ReplicaStorage
from eventstore.sharedlog import SharedHead

from conftest import waited_for
from test_postgres_faults import _server_up
from test_postgres_store import open_host, replica_of

__all__ = ["_server_up", "open_host"]  # the fixtures, used by name

BEFORE, AFTER = 3, 5


def listening_is(replica: ReplicaStorage, expected: bool) -> None:
    """Wait until the watcher listens (reads skip the server), or found the server gone (every read asks it)."""
    waited_for(lambda: replica.listening == expected, f"the watcher's listening never became {expected}")


def failed_reads(replica: ReplicaStorage, monkeypatch: pytest.MonkeyPatch) -> list[StoreUnavailable]:
    """From now on, each read of the log that met the server unreachable."""
    failed: list[StoreUnavailable] = []
    real_read = replica._shared.read

    def read(after: int, limit: int) -> SharedHead:
        try:
            return real_read(after, limit)
        except StoreUnavailable as unavailable:
            failed.append(unavailable)
            raise

    monkeypatch.setattr(replica._shared, "read", read)
    return failed


def through_a_restart(postgres_server: Any, replica: ReplicaStorage, two: SessionStore,
                      follow: Callable[[Callable[[RecordedEvent], bool]], None],
                      monkeypatch: pytest.MonkeyPatch) -> list[RecordedEvent]:
    """What ``follow`` (a subscription from position 0 on the host of ``replica``, handing each event to its
    argument until that returns ``False``) delivers of ``two``'s commits, made before the server stops and after it
    started again; its consumer holds its batch until the watcher found the server gone, so that its next read meets
    the server down."""
    for number in range(BEFORE):
        two.append("k", ChatMessage.user(f"before {number}"))
    last = BEFORE + AFTER
    received: list[RecordedEvent] = []
    failures: list[BaseException] = []
    paused, go_on = threading.Event(), threading.Event()

    def consume(event: RecordedEvent) -> bool:
        received.append(event)
        if event.position == 2:  # the batch it holds ends at 3: its next read of the log comes after the stop
            paused.set()
            go_on.wait(60)
        return event.position < last

    def run() -> None:
        try:
            follow(consume)
        except BaseException as failure:
            failures.append(failure)

    follower = threading.Thread(target=run, name="follower")
    follower.start()
    try:
        assert paused.wait(30)
        listening_is(replica, True)
        failed = failed_reads(replica, monkeypatch)
        postgres_server.stop()
        with pytest.raises(StoreUnavailable, match="cannot be reached"):  # commands fail with a clear error
            two.append("k", ChatMessage.user("while the server is down"))
        listening_is(replica, False)
        go_on.set()
        waited_for(lambda: len(failed) >= 2, "the subscription never tried again")  # it met the server down
        assert "cannot be reached" in str(failed[0])
        assert follower.is_alive() and not failures, failures
        postgres_server.start()
        two.append("k", ChatMessage.user("after 0"))  # maybe before the subscription's next try
        waited_for(lambda: len(received) > BEFORE, "the subscription never read again once the server was back")
        for number in range(1, AFTER):
            two.append("k", ChatMessage.user(f"after {number}"))
        follower.join(30)
        assert not follower.is_alive() and not failures, failures
    finally:
        go_on.set()
        follower.join(60)
    return received


def test_a_subscription_waits_through_a_server_restart_and_delivers_every_commit_once_in_order(
        open_host, postgres_server, monkeypatch):
    one, two = open_host("one"), open_host("two")

    def follow(consume: Callable[[RecordedEvent], bool]) -> None:
        for event in one.subscribe():
            if not consume(event):
                return

    received = through_a_restart(postgres_server, replica_of(one), two, follow, monkeypatch)
    assert [event.position for event in received] == list(range(1, BEFORE + AFTER + 1))
    assert received == list(two.events())
    assert [event.event.message.content for event in received][BEFORE:] == [f"after {n}" for n in range(AFTER)]


def test_an_async_subscription_waits_through_a_server_restart_and_delivers_every_commit_once_in_order(
        postgres_url, open_host, postgres_server, tmp_path, monkeypatch):
    one = AsyncSessionStore(postgres_url, cache=tmp_path / "one")
    two = open_host("two")

    def follow(consume: Callable[[RecordedEvent], bool]) -> None:
        async def main() -> None:
            async for event in one.subscribe():
                if not await asyncio.to_thread(consume, event):
                    return

        asyncio.run(main())

    try:
        received = through_a_restart(postgres_server, replica_of(one._store), two, follow, monkeypatch)
    finally:
        asyncio.run(one.close())
    assert [event.position for event in received] == list(range(1, BEFORE + AFTER + 1))
    assert received == list(two.events())


def cut_off(open_host: Callable[[str], SessionStore], postgres_server: Any) -> SessionStore:
    """A host that read another host's first commit, then the server stopped: its listener knows."""
    one, two = open_host("one"), open_host("two")
    two.append("k", ChatMessage.user("before"))
    one.load("k")
    postgres_server.stop()
    listening_is(replica_of(one), False)
    return one


def test_a_subscription_raises_once_the_server_stays_unreachable_longer_than_its_unavailable_timeout(
        open_host, postgres_server):
    one = cut_off(open_host, postgres_server)
    feed = one.subscribe(after=1, unavailable_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        next(feed)
    assert time.monotonic() - started >= 0.5


def test_a_subscription_s_timeout_during_an_outage_raises_rather_than_ending_as_if_nothing_came(
        open_host, postgres_server):
    """Ending quietly would tell the caller that nothing was committed, which it cannot know."""
    one = cut_off(open_host, postgres_server)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        next(one.subscribe(after=1, timeout=0.5))


def test_closing_the_store_ends_a_subscription_waiting_through_an_outage(open_host, postgres_server, monkeypatch):
    one = open_host("one")
    one.append("k", ChatMessage.user("before"))
    postgres_server.stop()
    listening_is(replica_of(one), False)
    failed = failed_reads(replica_of(one), monkeypatch)
    failures: list[BaseException] = []

    def follow() -> None:
        try:
            for _ in one.subscribe(after=1):
                pass
        except BaseException as failure:
            failures.append(failure)

    follower = threading.Thread(target=follow)
    follower.start()
    waited_for(lambda: len(failed) >= 2, "the subscription never tried again")
    assert follower.is_alive() and not failures  # waiting for the server, not failed
    one.close()
    follower.join(10)
    assert not follower.is_alive() and len(failures) == 1 and isinstance(failures[0], StoreClosed)


def test_an_idle_subscription_delivers_the_commits_made_after_a_server_restart(open_host, postgres_server):
    """Caught up when the server stops, it reads nothing meanwhile: its watcher, listening again once the server is
    back, wakes it for another host's next commits."""
    one, two = open_host("one"), open_host("two")
    two.append("k", ChatMessage.user("before"))
    feed = one.subscribe(timeout=30)
    assert next(feed).position == 1
    listening_is(replica_of(one), True)
    postgres_server.stop()
    listening_is(replica_of(one), False)
    postgres_server.start()
    two.append("k", ChatMessage.user("after 0"))
    two.append("k", ChatMessage.user("after 1"))
    assert [next(feed).event.message.content for _ in range(2)] == ["after 0", "after 1"]



@pytest.mark.parametrize("wait", [-1, True, "5"])
def test_an_unavailable_timeout_that_is_no_span_is_an_invalid_argument(postgres_url, open_host, tmp_path, wait):
    with pytest.raises(InvalidArgument, match="unavailable_timeout"):
        open_host("one").subscribe(unavailable_timeout=wait)
    two = AsyncSessionStore(postgres_url, cache=tmp_path / "two")
    try:
        with pytest.raises(InvalidArgument, match="unavailable_timeout"):
            two.subscribe(unavailable_timeout=wait)
    finally:
        asyncio.run(two.close())


def test_the_feed_s_steps_through_failed_reads_wait_and_read_again_from_the_same_position():
    """The feed alone, its reads failing as a server's do while it cannot be reached: no event twice, none missed."""
    log = list(range(1, 8))
    failing = iter([False, True, True, False, True, False, False])  # whether each read fails

    def read_batch(after: int, limit: int, held: str | None) -> list[Any]:
        if next(failing, False):
            raise StoreUnavailable("PostgreSQL cannot be reached while reading the log")
        return [SimpleNamespace(position=position, hash=f"h{position}") for position in log[after:after + 3]]

    steps = Feed(read_batch, lambda: 7).steps(0, timeout=None)
    taken = [next(steps) for _ in range(10)]
    assert [getattr(step, "position", step) for step in taken] == [1, 2, 3, RETRY_SECONDS, RETRY_SECONDS, 4, 5, 6,
                                                                    RETRY_SECONDS, 7]


def test_each_outage_has_the_whole_unavailable_timeout_from_its_first_failed_read(monkeypatch):
    """The feed alone, on a clock the test moves by each wait it asks for: the retries of one outage stop at the
    first past ``unavailable_timeout`` from its first failed read, not before and not later; a later outage, after
    reads that succeeded, counts from its own first failed read."""
    now = [0.0]
    monkeypatch.setattr(feed_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    log = [SimpleNamespace(position=position, hash=f"h{position}") for position in (1, 2, 3)]
    calls = itertools.count()

    def read_batch(after: int, limit: int, held: str | None) -> list[Any]:
        call = next(calls)
        if call == 3:
            now[0] += 10.0  # a quiet while, caught up, before the second outage
        if call in (0, 1) or call >= 3:  # the second outage lasts: the feed must give up
            raise StoreUnavailable("PostgreSQL cannot be reached while reading the log")
        return log[after:after + limit]

    # A last commit that moves at every look: the feed reads again at once when caught up, with no poll between.
    steps = Feed(read_batch, itertools.count().__next__).steps(0, timeout=None, unavailable_timeout=1.0)
    taken: list[object] = []
    with pytest.raises(StoreUnavailable):
        for step in steps:
            taken.append(getattr(step, "position", step))
            if isinstance(step, float):
                now[0] += step
    assert taken == [RETRY_SECONDS, RETRY_SECONDS, 1, 2, 3, RETRY_SECONDS, RETRY_SECONDS]
    second_outage = 2 * RETRY_SECONDS + 10.0  # its first failed read: after the first outage's and the quiet while
    assert now[0] == second_outage + 1.0  # raised at the read one unavailable_timeout after it
