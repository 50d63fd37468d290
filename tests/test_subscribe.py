"""``store.subscribe``: every event after a position, each exactly once and in order, then each new one as it
commits: from threads, from another process killed and restarted, across a vacuum; in bounded batches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eventstore import ChatMessage, RecordedEvent, SessionStore
from eventstore.services.feed import BATCH, Feed

from conftest import LOG_BACKENDS, at_a_subscriptions_look, engine_of


@pytest.fixture(params=LOG_BACKENDS)
def engine(request: pytest.FixtureRequest) -> str:
    """The tests that take the ``store`` fixture run with the log in LMDB and on PostgreSQL."""
    return engine_of(request)


def hello(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def test_a_subscription_sees_every_commit_of_other_threads_once_in_order(store: SessionStore) -> None:
    store.append("early", hello("0"))
    writers, calls = 4, 30
    seen: list[RecordedEvent] = []

    def write(index: int) -> None:
        for call in range(calls):
            store.append(f"writer-{index}", hello(str(call)))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    # The timeout only ends a test that went wrong: a loaded machine may pause the writers for longer than a second.
    for event in store.subscribe(after=0, timeout=60):
        seen.append(event)
        if len(seen) == 1 + writers * calls:
            break
    for thread in threads:
        thread.join()
    assert [event.position for event in seen] == list(range(1, 2 + writers * calls))
    assert seen == list(store.events())


def test_a_subscription_resumes_from_any_position(store: SessionStore) -> None:
    for index in range(10):
        store.append("a", hello(str(index)))
    every = list(store.events())
    for after in (0, 1, 5, 9, 10, 12):
        assert list(store.subscribe(after=after, timeout=0)) == every[after:]


def test_a_subscription_waits_for_the_next_commit_and_ends_after_its_timeout(store: SessionStore) -> None:
    appended = threading.Thread(target=lambda: store.append("late", hello("at last")))

    def commit_while_it_waits() -> None:  # from another thread, and done before the timeout can end the wait
        appended.start()
        appended.join(60)

    at_a_subscriptions_look(store, 3, commit_while_it_waits)
    started = time.monotonic()
    seen = list(store.subscribe(after=0, timeout=1.0))
    assert [(event.session_key, event.position) for event in seen] == [("late", 1)]
    assert time.monotonic() - started >= 1.0  # it waited for more, then gave up


WRITER = textwrap.dedent("""
    import sys
    from eventstore import ChatMessage, SessionStore
    store = SessionStore(sys.argv[1], durable=False)
    index = 0
    while True:
        index += 1
        store.append_many("process-" + sys.argv[2], [ChatMessage("user", str(index))] * (1 + index % 3))
        print(index, flush=True)
""")


def test_a_subscription_sees_a_writer_process_killed_and_restarted_each_event_once(store_path: Path) -> None:
    SessionStore(store_path).close()
    seen: list[RecordedEvent] = []
    stop = threading.Event()

    def follow() -> None:
        with SessionStore(store_path) as reader:
            # A new writer process takes a while to start: the timeout only ends a test that went wrong.
            for event in reader.subscribe(after=0, timeout=10):
                seen.append(event)
                if stop.is_set() and event.position == final:
                    return

    final = -1
    follower = threading.Thread(target=follow)
    follower.start()
    for generation in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store_path), str(generation)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        while int(writer.stdout.readline() or 0) < 20 + 15 * generation:  # a few acknowledged calls
            pass
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    with SessionStore(store_path) as check:
        every = list(check.events())
    final = every[-1].position
    stop.set()
    follower.join(timeout=30)
    assert not follower.is_alive()
    assert [event.position for event in seen] == list(range(1, final + 1))
    assert seen == every
    assert {event.session_key for event in seen} == {"process-0", "process-1", "process-2"}


def test_a_subscription_from_before_a_vacuum_goes_on_after_it(store: SessionStore) -> None:
    for index in range(20):
        store.append("a" if index % 2 else "b", hello(str(index)))
    store.delete_session("b")
    feed = store.subscribe(after=3, timeout=0.2)
    first = [next(feed) for _ in range(5)]
    store.vacuum()
    store.append("after", hello("vacuum"))
    rest = list(feed)
    assert [event.position for event in first + rest] == list(range(4, 23))
    assert first + rest == list(store.events(after=3))


def test_a_feed_reads_in_batches_and_holds_at_most_one() -> None:
    """A slow consumer costs one batch: the feed asks for BATCH events at a time, and only once the
    consumer has taken every event of the batch before."""
    total = 3 * BATCH + 10
    requests: list[tuple[int, int]] = []
    handed = 0

    def read_batch(after: int, limit: int, held: str | None) -> list[Any]:
        requests.append((after, limit))
        assert handed == after  # the consumer has taken everything read before
        return [SimpleNamespace(position=position, hash=f"h{position}")
                for position in range(after + 1, min(after + limit, total) + 1)]

    steps = Feed(read_batch, lambda: 7).steps(0, timeout=0)
    for step in steps:
        assert not isinstance(step, float)  # with timeout 0 it never waits
        handed += 1
    assert handed == total
    assert all(limit == BATCH for _, limit in requests)
    assert [after for after, _ in requests] == [0, BATCH, 2 * BATCH, 3 * BATCH, total]


def test_a_caught_up_feed_asks_to_wait_until_something_commits() -> None:
    """Caught up, the feed yields waits (never reading the log again) until the last commit changes."""
    commits = iter([1, 1, 1, 1, 2, 2, 2])
    reads: list[int] = []

    def read_batch(after: int, limit: int, held: str | None) -> list[RecordedEvent]:
        reads.append(after)
        return []

    steps = Feed(read_batch, lambda: next(commits)).steps(0, timeout=None)
    waits = [next(steps) for _ in range(3)]
    assert all(isinstance(wait, float) and 0 < wait <= 0.1 for wait in waits)
    assert reads == [0]  # no read while nothing commits
    next(steps)  # the commit changed: the feed reads again, then waits
    assert reads == [0, 0]
