"""A host's vacuum of its replica and the commands around it: every acknowledged command reaches the server."""

from __future__ import annotations

import threading

import psycopg
import pytest

from eventstore import ChatMessage, EventStoreError, StoreBusy

from conftest import waited_for
from test_postgres_store import open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


class WatchedCondition(threading.Condition):
    """A condition that records the threads that wait on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: set[int | None] = set()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiters.add(threading.get_ident())  # under the condition's lock, which the wait then releases
        return super().wait(timeout)


def on_server(postgres_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        rows = connection.execute("SELECT key, version FROM es_events ORDER BY position").fetchall()
    return [(key, version) for key, version in rows]


def test_a_refused_vacuum_leaves_commands_going_to_the_server(open_host, postgres_url):
    host = open_host()
    sharing = open_host()  # another store object on the same replica directory: vacuum needs it to itself
    host.append("k", ChatMessage.user("before"))
    with pytest.raises(StoreBusy):
        host.vacuum()
    assert host.append("k", ChatMessage.user("after")) == 2
    assert on_server(postgres_url) == [("k", 1), ("k", 2)]
    assert [m.content for m in open_host("other").load("k")] == ["before", "after"]
    assert [m.content for m in sharing.load("k")] == ["before", "after"]


def test_a_command_given_while_another_thread_vacuums_is_never_acknowledged_without_the_server(
        open_host, postgres_url, monkeypatch):
    """The command given while the vacuum copies waits for it, then commits through the server (never from the
    replica alone)."""
    host = open_host()
    host.append("k", ChatMessage.user("before"))
    replica = replica_of(host)
    entered = threading.Event()
    write = replica.write

    def entering(body):
        entered.set()
        return write(body)

    monkeypatch.setattr(replica, "write", entering)
    outcome: list[int | EventStoreError] = []

    def command() -> None:
        try:
            outcome.append(host.append("k", ChatMessage.user("during")))
        except EventStoreError as error:
            outcome.append(error)

    copying = host._maintenance._replace_dictionaries
    bound = WatchedCondition()
    monkeypatch.setattr(replica, "_bound", bound)
    thread = threading.Thread(target=command)

    def copying_while_a_command_comes(txn):  # the vacuum holds the replica's write lock while it copies
        thread.start()
        assert entered.wait(10)
        # The command waits for the store's binding, which the vacuum took.
        waited_for(lambda: thread.ident in bound.waiters, "the command never waited for the store's binding")
        return copying(txn)

    monkeypatch.setattr(host._maintenance, "_replace_dictionaries", copying_while_a_command_comes)
    host.vacuum()
    thread.join(30)
    assert [2] == outcome
    assert on_server(postgres_url) == [("k", 1), ("k", 2)]
    assert host.append("k", ChatMessage.user("after")) == 3
    assert [m.content for m in open_host("other").load("k")] == ["before", "during", "after"]
