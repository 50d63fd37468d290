"""A PostgreSQL store used in a ``fork()``ed child: the child's calls raise ``StoreUsedAfterFork`` and leave the
parent's connections alone. The child shares the listening connection's socket and the pool's with its parent: a
read there that took the parent's notifications from the socket, or a close that ended its connections, would leave
the parent's reads trusting a replica behind another host's acknowledged commit, or failing."""

from __future__ import annotations

import os
import signal
import time

import psycopg

from eventstore import ChatMessage

from test_postgres_fork_mid_catch_up import child_status
from test_postgres_settled_reads import arrived, listener_of, settled, unhurried_looks
from test_postgres_store import listening, open_host, server_reads

__all__ = ["open_host"]  # the fixture, used by name


def test_a_child_s_read_takes_none_of_the_parent_s_notifications(open_host, postgres_url, monkeypatch):
    unhurried_looks(monkeypatch)
    one, two = open_host("one"), open_host("two")
    listening(one)
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    two.append("k", ChatMessage.assistant("theirs"))  # acknowledged
    arrived(listener)  # its notification waits on the socket the child shares
    assert child_status(lambda: one.load("k")) == 0
    with psycopg.connect(postgres_url, autocommit=True) as connection:  # the round trip
        connection.execute("SELECT 1")
    asked = server_reads(one, monkeypatch)
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    assert asked != []  # the parent heard of it itself


def test_a_child_s_close_leaves_the_parent_s_connections_open(open_host, postgres_url, monkeypatch):
    unhurried_looks(monkeypatch)
    one, two = open_host("one"), open_host("two")
    listening(one)
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    assert child_status(one.close) in (0, 1)
    two.append("k", ChatMessage.assistant("theirs"))
    arrived(listener)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT 1")
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    assert one.append("k", ChatMessage.user("again")) == 3


def test_a_child_s_close_while_the_parent_s_watcher_waits_neither_hangs_nor_cuts_the_parent_s_listener(
        open_host, postgres_url):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    feed = one.subscribe(timeout=10)  # the watcher then waits on the listener, holding its lock
    assert next(feed).position == 1
    waiting = listener_of(one)._listening
    deadline = time.monotonic() + 10
    while not waiting.locked() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert waiting.locked()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(20)  # a child that hangs in its close dies instead
        try:
            one.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # not killed by its alarm
    two.append("k", ChatMessage.assistant("theirs"))
    assert next(feed).position == 2  # the parent's listener still hears
