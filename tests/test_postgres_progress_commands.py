"""A command given from ``rebuild_progress`` while the store rebuilds its replica (and opens its components again on
that thread) raises ``StoreBusy`` and records nothing: it could not reach the server until the store is bound
again, which happens on that thread once the callback returns, and on the replica alone it would be lost."""

from __future__ import annotations

import time

import psycopg

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreBusy
from eventstore._deferred import Deferred

from test_postgres_store import lose_commits_after, open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def keys_on_server(postgres_url: str) -> list[str]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        return [row[0] for row in connection.execute("SELECT DISTINCT key FROM es_events ORDER BY key")]


class Callback:
    """A ``rebuild_progress`` that, once armed, gives a command on each call and keeps what became of it."""

    def __init__(self) -> None:
        self.host: SessionStore | None = None
        self.outcomes: list[int | EventStoreError] = []

    def __call__(self, done: int, total: int) -> None:
        if self.host is not None:
            try:
                self.outcomes.append(self.host.append("from the callback", ChatMessage.user(f"{done} of {total}")))
            except EventStoreError as error:
                self.outcomes.append(error)

    def refused_each(self) -> None:
        assert self.outcomes and all(isinstance(outcome, StoreBusy) for outcome in self.outcomes), self.outcomes
        assert "rebuild_progress" in str(self.outcomes[0])


def test_a_command_from_rebuild_progress_while_the_replica_is_rebuilt_is_refused(open_host, postgres_url):
    callback = Callback()
    host = open_host("one", rebuild_progress=callback)
    for number in range(5):
        host.append("k", ChatMessage.user(f"seen by one {number}"))
    lose_commits_after(postgres_url, 3)  # a failover lost the last two commits
    open_host("two").append("k", ChatMessage.user("after the failover"))
    callback.host = host
    deadline = time.monotonic() + 10  # until the read goes to the server: at once, or once the watcher heard of two
    while host.load("k")[-1].content != "after the failover" and time.monotonic() < deadline:
        time.sleep(0.01)
    callback.host = None
    assert host.load("k")[-1].content == "after the failover"  # a read found the replica diverged: rebuilt
    callback.refused_each()
    assert keys_on_server(postgres_url) == ["k"] and host.list_sessions() == ["k"]
    assert host.append("from the callback", ChatMessage.user("once it is bound")) == 1
    assert keys_on_server(postgres_url) == ["from the callback", "k"]
    assert host.verify().ok


def test_a_command_from_rebuild_progress_while_a_vacuum_reopens_the_store_is_refused(open_host, postgres_url,
                                                                                     monkeypatch):
    """The search index reads as built by another version of the code (as another process of the host, running
    an older version, may leave it): the store's reopening after the vacuum rebuilds it, reporting progress from
    inside a read of the replica, where a command would otherwise commit to the replica alone."""
    callback = Callback()
    host = open_host("one", rebuild_progress=callback)
    for number in range(5):
        host.append("k", ChatMessage.user(f"message {number}"))
    monkeypatch.setattr(Deferred, "built_by_other_code", lambda _: True)
    callback.host = host
    host.vacuum()
    callback.host = None
    monkeypatch.undo()
    callback.refused_each()
    assert keys_on_server(postgres_url) == ["k"] and host.list_sessions() == ["k"]
    assert host.append("from the callback", ChatMessage.user("once it is bound")) == 1
    assert keys_on_server(postgres_url) == ["from the callback", "k"]
    assert host.verify().ok
