"""A read that nothing new can reach: it polls the listening socket once and reads the replica's head once per
committed state of the replica; a notification that libpq has already parsed, with nothing left on the socket, still
sends the next read to the server."""

from __future__ import annotations

import select
import time

import attrs

from eventstore import ChatMessage
from eventstore.services.replica import ReplicaBinding
from eventstore.storage import ReadTransaction

from test_postgres_store import listening, open_host, replica_of, server_reads

__all__ = ["open_host"]  # the fixture, used by name


def head_reads(host_replica: object) -> list[int]:
    """From now on, one entry per read of the replica's log head through the store's binding."""
    replica = host_replica
    binding = replica._binding  # type: ignore[attr-defined]
    assert isinstance(binding, ReplicaBinding)
    counted: list[int] = []

    def head(txn: ReadTransaction) -> tuple[int, bytes, int]:
        counted.append(txn.snapshot_id())
        return binding.head(txn)

    replica._binding = attrs.evolve(binding, head=head)  # type: ignore[attr-defined]
    return counted


def test_reads_of_an_unchanged_replica_read_its_head_once_and_a_commit_makes_the_next_read_look_again(
        open_host, monkeypatch):
    one = open_host("one")
    one.append("k", ChatMessage.user("first"))
    listening(one)
    asked = server_reads(one, monkeypatch)
    counted = head_reads(replica_of(one))
    for _ in range(5):
        assert [m.content for m in one.load("k")] == ["first"]
    assert len(counted) == 1 and asked == []
    one.append("k", ChatMessage.user("second"))
    reads_before = len(counted)
    assert [m.content for m in one.load("k")] == ["first", "second"]
    assert [m.content for m in one.load("k")] == ["first", "second"]
    assert len(counted) == reads_before + 1  # the new state's head, read once
    assert asked == []  # its own commit: no round trip


def test_a_notification_parsed_by_libpq_but_not_taken_still_sends_the_next_read_to_the_server(
        open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listening(one)
    assert [m.content for m in one.load("k")] == ["mine"]
    asked = server_reads(one, monkeypatch)
    listening_end = replica_of(one)._shared._listener  # type: ignore[attr-defined]
    listener = listening_end._connection
    assert listener is not None
    two.append("k", ChatMessage.assistant("theirs"))
    with listening_end._listening:  # as the watcher holds it: nobody drains meanwhile
        listening_end._settled = False  # as it does: what it reads, it takes itself
        poller = select.poll()
        poller.register(listener.pgconn.socket, select.POLLIN)
        deadline = time.monotonic() + 10
        while not poller.poll(10) and time.monotonic() < deadline:
            pass
        listener.pgconn.consume_input()  # the notification leaves the socket for libpq's queue, untaken
        listener.pgconn.is_busy()
        assert not poller.poll(0)
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    assert asked == [1]
