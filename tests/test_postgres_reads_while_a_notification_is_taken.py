"""Reads while another thread has taken a notification from the listening connection and not yet raised the head it
names (the watcher waking for a subscriber, or a read that found the socket ready): a read after another host's
acknowledged commit and a round trip must not trust the replica then, whether the listener was settled or not. The
thread that took it stalls where a loaded host may deschedule it (an injected wait), which makes the race certain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from eventstore import ChatMessage

from test_postgres_settled_reads import arrived, listener_of, settled, unhurried_looks
from test_postgres_store import listening, open_host

__all__ = ["open_host"]  # the fixture, used by name


def stalled_after_taking(listener: Any, monkeypatch: Any, taker: Callable[[], bool]) -> tuple[threading.Event,
                                                                                           threading.Event]:
    """Once a thread for which ``taker()`` holds took notifications from the listener, it waits until told to go
    on: (taken, go)."""
    taken, go = threading.Event(), threading.Event()
    real_drained = listener._drained

    def drained(connection: psycopg.Connection[Any]) -> list[str]:
        payloads: list[str] = real_drained(connection)
        if payloads and taker() and not taken.is_set():
            taken.set()
            go.wait(30)
        return payloads

    monkeypatch.setattr(listener, "_drained", drained)
    return taken, go


def round_trip(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT 1")


def test_a_read_while_the_subscribed_watcher_takes_a_commit_s_notification_sees_the_commit(
        open_host, postgres_url, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    feed = one.subscribe(timeout=10)  # the watcher waits on the listener for each commit
    assert next(feed).position == 1
    listening(one)
    taken, go = stalled_after_taking(listener_of(one), monkeypatch,
                                     lambda: threading.current_thread().name == "eventstore-shared-log")
    try:
        two.append("k", ChatMessage.assistant("theirs"))  # acknowledged
        assert taken.wait(10)  # its notification came, and the watcher took it
        round_trip(postgres_url)
        assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    finally:
        go.set()
    assert next(feed).position == 2


def test_a_read_of_a_settled_listener_while_another_read_takes_a_notification_sees_the_commit(
        open_host, postgres_url, monkeypatch):
    unhurried_looks(monkeypatch)
    one, two = open_host("one"), open_host("two")
    listening(one)
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    first = threading.Thread(target=lambda: one.load("k"), name="first reader")
    taken, go = stalled_after_taking(listener, monkeypatch, lambda: threading.current_thread() is first)
    try:
        two.append("k", ChatMessage.assistant("theirs"))  # acknowledged
        arrived(listener)
        first.start()  # finds the socket ready, takes the lock and the notification, and stalls
        assert taken.wait(10)
        round_trip(postgres_url)
        assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    finally:
        go.set()
        first.join(30)
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
