"""``subscribe(after=position, after_hash=...)``: a consumer that resumes from a saved position and the hash its event
had gets the events after it while the log still holds that event, and ``FeedDiverged`` before any event when it
does not (another event in its place, or a log that ends before it: a store restored from an older backup); on both
backends, sync and async. PostgreSQL's failover is in ``test_postgres_subscribe_failover.py``."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from eventstore import AsyncSessionStore, ChatMessage, FeedDiverged, InvalidArgument, RecordedEvent, SessionStore

from conftest import LOG_BACKENDS, engine_of


@pytest.fixture(params=LOG_BACKENDS)
def engine(request: pytest.FixtureRequest) -> str:
    """The tests that take the ``store`` fixture run with the log in LMDB and on PostgreSQL."""
    return engine_of(request)


def hello(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def appended(store: SessionStore, count: int) -> list[RecordedEvent]:
    for index in range(count):
        store.append("a", hello(str(index)))
    return list(store.events())


def test_a_subscription_resumed_with_its_positions_hash_delivers_every_event_after_it(store: SessionStore) -> None:
    every = appended(store, 10)
    for after in (1, 5, 10):
        assert list(store.subscribe(after=after, timeout=0, after_hash=every[after - 1].hash)) == every[after:]


def test_a_subscription_resumed_at_the_head_with_its_hash_delivers_the_next_commit(store: SessionStore) -> None:
    """A subscription resumed at the head with its hash waits for the next commit and delivers it first."""
    every = appended(store, 3)
    late = threading.Timer(0.2, lambda: store.append("late", hello("at last")))
    late.start()
    # The timeout only bounds a failure; the subscription is closed as soon as its first event is taken.
    first = next(store.subscribe(after=3, timeout=60, after_hash=every[-1].hash))
    late.join()
    assert (first.session_key, first.position) == ("late", 4)


def test_a_subscription_resumed_with_another_events_hash_raises_before_delivering_anything(
        store: SessionStore) -> None:
    every = appended(store, 10)
    feed = store.subscribe(after=5, timeout=0, after_hash=every[3].hash)
    with pytest.raises(FeedDiverged, match="does not hold event 5 with the hash saved for it"):
        next(feed)


def test_a_subscription_resumed_past_the_end_of_the_log_raises_rather_than_wait_for_it(store: SessionStore) -> None:
    every = appended(store, 10)
    assert list(store.subscribe(after=12, timeout=0)) == []  # without the hash: it would wait for event 13
    with pytest.raises(FeedDiverged, match="event 12"):
        next(store.subscribe(after=12, timeout=0, after_hash=every[-1].hash))


@pytest.mark.parametrize("after_hash", ["", "ab" * 31, "AB" * 32, "g" * 64, b"\0" * 32, 7],
                         ids=["empty", "short", "upper", "not-hex", "bytes", "int"])
def test_a_hash_that_is_not_an_events_is_an_invalid_argument_at_the_call(store: SessionStore, after_hash) -> None:
    appended(store, 1)
    with pytest.raises(InvalidArgument, match="after_hash must be an event's hash"):
        store.subscribe(after=1, after_hash=after_hash)


def test_a_hash_with_no_position_is_an_invalid_argument_at_the_call(store: SessionStore) -> None:
    every = appended(store, 1)
    with pytest.raises(InvalidArgument, match="no event is at 0"):
        store.subscribe(after_hash=every[0].hash)


@pytest.mark.parametrize("written_after_the_backup", [3, 0], ids=["other-events-in-its-place", "shorter-log"])
def test_a_subscription_resumed_on_a_store_restored_from_an_older_backup_raises(
        store_path: Path, tmp_path: Path, written_after_the_backup: int) -> None:
    """A consumer handled events 1 to 5 and saved 5 and its hash; the store then came back from a backup taken at 3,
    and maybe took other commits since. Resumed on the position alone, it would skip or wait for what replaced its
    events; with the hash, it raises."""
    backup = tmp_path / "backup"
    with SessionStore(store_path) as store:
        appended(store, 3)
    shutil.copytree(store_path, backup)
    with SessionStore(store_path) as store:
        handled = appended(store, 2)[-1]
    assert handled.position == 5
    shutil.rmtree(store_path)
    shutil.copytree(backup, store_path)
    with SessionStore(store_path) as store:
        for index in range(written_after_the_backup):
            store.append("b", hello(f"new {index}"))
        unchecked = [event.position for event in store.subscribe(after=5, timeout=0)]
        assert unchecked == ([6] if written_after_the_backup else [])  # events 4 and 5 of "b" never come
        with pytest.raises(FeedDiverged, match="event 5"):
            next(store.subscribe(after=5, timeout=0, after_hash=handled.hash))


def test_an_async_subscription_resumed_with_a_hash_checks_it(store_path: Path) -> None:
    async def main() -> None:
        async with AsyncSessionStore(store_path, durable=False) as store:
            for index in range(4):
                await store.append("a", hello(str(index)))
            every = [event async for event in store.events()]
            resumed = [event async for event in store.subscribe(after=2, timeout=0, after_hash=every[1].hash)]
            assert resumed == every[2:]
            with pytest.raises(FeedDiverged, match="event 2"):
                await anext(store.subscribe(after=2, timeout=0, after_hash=every[0].hash))
            with pytest.raises(InvalidArgument, match="no event is at 0"):
                store.subscribe(after_hash=every[0].hash)

    asyncio.run(main())
