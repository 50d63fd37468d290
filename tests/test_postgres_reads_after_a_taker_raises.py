"""Reads after another thread took a notification from the listening connection and then raised before it heard of
the head it names (an interrupt, an error of its own): the notification is gone from the socket, so a read after
another host's acknowledged commit and a round trip must not trust the replica as the last head heard of tells it."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from eventstore import ChatMessage

from test_postgres_reads_while_a_notification_is_taken import round_trip
from test_postgres_settled_reads import arrived, settled, unhurried_looks
from test_postgres_store import listening, open_host

__all__ = ["open_host"]  # the fixture, used by name


class Interrupted(Exception):
    """What the thread that took the notification raised."""


def test_a_read_after_another_read_took_a_notification_and_raised_sees_the_commit(
        open_host, postgres_url, monkeypatch):
    unhurried_looks(monkeypatch)  # the watcher's look, which would find the commit late
    one, two = open_host("one"), open_host("two")
    # The watcher's first wait is a minute long too, and only a commit it hears of ends it sooner (so that reads, and
    # not it, take the notifications): the first commit comes once it listens, however late its thread started.
    listening(one)
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    real_drained = listener._drained
    failed: list[Interrupted] = []

    def read_that_fails() -> None:
        try:
            one.load("k")
        except Interrupted as interrupted:
            failed.append(interrupted)

    first = threading.Thread(target=read_that_fails, name="first reader")

    def drained(connection: psycopg.Connection[Any]) -> list[str]:
        payloads: list[str] = real_drained(connection)
        if payloads and threading.current_thread() is first:
            raise Interrupted("after it took the notifications")
        return payloads

    monkeypatch.setattr(listener, "_drained", drained)
    two.append("k", ChatMessage.assistant("theirs"))  # acknowledged
    arrived(listener)
    first.start()  # finds the socket ready, takes the lock and the notification, and raises
    first.join(30)
    assert len(failed) == 1
    round_trip(postgres_url)
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
