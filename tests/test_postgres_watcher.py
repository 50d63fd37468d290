"""What a host's processes spend on other writers' commits: the watcher without a subscriber, and the catch-ups of
stores sharing a replica directory."""

from __future__ import annotations

import os
import resource
import threading
import time

from eventstore import ChatMessage
from eventstore.sharedlog import SharedHead
from eventstore.sharedlog.postgres import PostgresLog

from test_postgres_store import heard, listening, open_host, replica_of

__all__ = ["open_host"]  # the fixture, used by name


def test_without_a_subscriber_the_watcher_sleeps_through_commits_and_reads_still_see_them(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listening(one)
    shared = replica_of(one)._shared
    waits: list[float] = []
    asked: list[int] = []
    real_wait, real_read = shared.wait, shared.read

    def wait(seen: int, timeout: float, listening: object) -> int:
        waits.append(timeout)
        return real_wait(seen, timeout, listening)  # type: ignore[arg-type]

    def read(after: int, limit: int) -> SharedHead:
        asked.append(after)
        return real_read(after, limit)

    monkeypatch.setattr(shared, "wait", wait)
    monkeypatch.setattr(shared, "read", read)
    commits = 40
    for number in range(commits):
        two.append("k", ChatMessage.assistant(f"theirs {number}"))
    heard(one, two)  # the notifications drained by asking for the head, as a read does
    assert len(waits) < commits // 4  # the watcher looked once a second, not at each commit
    assert [m.content for m in one.load("k")] == ["mine", *(f"theirs {n}" for n in range(commits))]
    assert asked == [1]  # one round trip brought them all
    assert len(one.load("k")) == commits + 1 and asked == [1]  # nothing new: no round trip


def test_a_subscriber_wakes_the_watcher_at_each_commit_again(open_host):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("before"))
    listening(two)
    time.sleep(0.05)  # the watcher sleeps, with no subscriber
    feed = two.subscribe(timeout=10)
    assert next(feed).position == 1
    for number in range(3):
        one.append("k", ChatMessage.user(f"after {number}"))
        started = time.monotonic()
        assert next(feed).position == number + 2
        assert time.monotonic() - started < 5


def test_a_catch_up_that_finds_the_replica_filled_by_another_store_sharing_it_asks_the_server_nothing(
        open_host, monkeypatch):
    first, second, other = open_host("host"), open_host("host"), open_host("other")
    first.append("k", ChatMessage.user("mine"))
    listening(first)
    listening(second)
    other.append("k", ChatMessage.assistant("theirs"))
    heard(first, second, other)
    reading, go_on = threading.Event(), threading.Event()
    first_shared, second_shared = replica_of(first)._shared, replica_of(second)._shared
    real_first_read, real_second_read = first_shared.read, second_shared.read
    second_asked: list[int] = []

    def first_read(after: int, limit: int) -> SharedHead:
        reading.set()
        go_on.wait(10)
        return real_first_read(after, limit)

    def second_read(after: int, limit: int) -> SharedHead:
        second_asked.append(after)
        return real_second_read(after, limit)

    monkeypatch.setattr(first_shared, "read", first_read)
    monkeypatch.setattr(second_shared, "read", second_read)
    loaded: dict[str, list[str]] = {}
    readers = [threading.Thread(target=lambda name=name, store=store: loaded.__setitem__(
        name, [m.content for m in store.load("k")])) for name, store in (("first", first), ("second", second))]
    readers[0].start()
    assert reading.wait(10)  # the first store catches up, holding the replica directory's turn
    readers[1].start()
    time.sleep(0.2)
    assert second_asked == []  # the second waits for that turn
    go_on.set()
    for reader in readers:
        reader.join(10)
    assert loaded == {"first": ["mine", "theirs"], "second": ["mine", "theirs"]}
    assert second_asked == []  # it found the replica where it had heard the log was


def test_connections_on_descriptors_past_1024_serve_reads_commands_and_the_feed(open_host):
    # A gateway with many sockets open: select() refuses such descriptors, and every read and command waits on one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        one, two = open_host("one"), open_host("two")
        one.append("k", ChatMessage.user("first"))
        feed = two.subscribe(timeout=10)
        assert next(feed).position == 1
        two.append("k", ChatMessage.assistant("second"))
        heard(one, two)
        assert [m.content for m in one.load("k")] == ["first", "second"]
        assert next(feed).position == 2
        shared = replica_of(one)._shared
        assert isinstance(shared, PostgresLog)
        sockets = [connection.pgconn.socket for connection in [*shared._idle, shared._listener._connection]
                   if connection]
        assert sockets and min(sockets) >= 1024  # the test reached what it means to
    finally:
        for descriptor in padding:
            os.close(descriptor)
