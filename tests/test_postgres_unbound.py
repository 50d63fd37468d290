"""A PostgreSQL host's store while one of its threads opens the store's components again on a rebuilt replica
(another process rebuilt it, or this one did): the commands and reads of its other threads wait for the store to
bind again, then reach the server and read the refilled replica; a reopening that fails leaves the store bound."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore
from eventstore.services.replica import ReplicaStorage

from test_postgres_rebuild import SEEN, rewrite_as_many, roll_back_to
from test_postgres_store import open_host, replica_of  # noqa: F401 - the fixture, by name
from test_postgres_vacuum import on_server

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

GATE_SECONDS = 30  # how long a thread waits for another that normally takes milliseconds


def user(text: str) -> ChatMessage:
    return ChatMessage.user(text)


def texts(store: SessionStore, key: str) -> list[str]:
    return [message.content for message in store.load(key)]


class Background:
    """A call on a thread of its own: what it returned, or the error it raised (an ``AssertionError`` too)."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.outcome: object = None
        self.done = threading.Event()
        self._call = call
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self._call()
        except (EventStoreError, AssertionError) as error:
            self.outcome = error
        finally:
            self.done.set()

    def result(self) -> object:
        self.thread.join(GATE_SECONDS)
        assert self.done.is_set(), "the call never returned"
        return self.outcome


def noticing_waits(replica: ReplicaStorage, monkeypatch: pytest.MonkeyPatch, noticed: threading.Event) -> None:
    """Set ``noticed`` when a thread starts waiting for the store to bind again."""

    class Noticing(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            noticed.set()
            return super().wait(timeout)

    monkeypatch.setattr(replica, "_bound", Noticing())


def held_reopening(store: SessionStore, monkeypatch: pytest.MonkeyPatch, reopening: threading.Event,
                   go: threading.Event) -> None:
    """The store's next reopening (after a rebuild) sets ``reopening``, then waits for ``go`` before it opens the
    components, unbound all the while."""
    real = store._open_components

    def open_components() -> None:
        reopening.set()
        assert go.wait(GATE_SECONDS)
        real()

    monkeypatch.setattr(store, "_open_components", open_components)


@pytest.mark.parametrize("catching_up", [True, False], ids=["caught-up", "deciding-at-once"])
def test_a_command_under_way_when_its_process_finds_another_rebuilt_the_replica_reaches_the_server(
        open_host, postgres_url, tmp_path, monkeypatch, catching_up):
    """Whether a catch-up to the head its watcher heard of comes before it decides, or it decides at once."""
    writer = open_host("host")
    for text in SEEN:
        writer.append("k", user(text))
    host = open_host("host")  # another store object on the directory: another process of the host, as it acts
    replica = replica_of(host)
    deciding, reopening, go = threading.Event(), threading.Event(), threading.Event()
    real_durably = replica._durably

    def durably(*arguments):  # the command is past its store's binding, about to decide
        deciding.set()
        assert reopening.wait(GATE_SECONDS)
        if catching_up:
            replica.catch_up(replica._heard_by_commands())
        return real_durably(*arguments)

    monkeypatch.setattr(replica, "_durably", durably)
    held_reopening(host, monkeypatch, reopening, go)
    noticing_waits(replica, monkeypatch, go)

    def command_then_go() -> object:
        try:
            return host.append("new", user("during the reopening"))
        finally:
            go.set()  # it failed, or it got past the reopening (the fix: it waited for the binding, which set go)

    command = Background(command_then_go)
    assert deciding.wait(GATE_SECONDS)
    roll_back_to(postgres_url, 3)
    expected = rewrite_as_many(postgres_url, tmp_path)
    replica_of(writer).catch_up()  # the other process rebuilds the directory
    read = Background(lambda: texts(host, "k"))  # finds the rebuild: reopens, unbound until ``go``
    assert command.result() == 1
    assert read.result() == expected
    assert ("new", 1) in on_server(postgres_url)
    assert texts(open_host("fresh"), "new") == ["during the reopening"]


def test_a_read_while_its_store_reopens_on_a_replica_it_emptied_to_rebuild_waits_for_the_refill(
        open_host, postgres_url, tmp_path, monkeypatch):
    host = open_host("host")
    for text in SEEN:
        host.append("k", user(text))
    roll_back_to(postgres_url, 3)
    expected = rewrite_as_many(postgres_url, tmp_path)  # the host's replica diverged: its next catch-up rebuilds
    replica = replica_of(host)
    reopening, go = threading.Event(), threading.Event()
    held_reopening(host, monkeypatch, reopening, go)
    noticing_waits(replica, monkeypatch, go)
    rebuilding = Background(replica.catch_up)  # empties the replica, then reopens the store, unbound until ``go``
    assert reopening.wait(GATE_SECONDS)

    def read_then_go() -> list[str]:
        try:
            return texts(host, "k")
        finally:
            go.set()  # it read (the emptied replica), or waited for the binding, which set go

    read = Background(read_then_go)
    assert read.result() == expected
    assert isinstance(rebuilding.result(), int)
    assert texts(host, "k") == expected


def test_a_reopening_that_fails_leaves_the_store_bound_its_commands_reaching_the_server(
        open_host, postgres_url, tmp_path, monkeypatch):
    writer = open_host("host")
    for text in SEEN:
        writer.append("k", user(text))
    host = open_host("host")
    roll_back_to(postgres_url, 3)
    expected = rewrite_as_many(postgres_url, tmp_path)
    replica_of(writer).catch_up()  # another process rebuilds the directory: the host's next read reopens its store
    real = host._open_components

    def failing_once() -> None:
        monkeypatch.setattr(host, "_open_components", real)
        raise EventStoreError("the read models could not open")

    monkeypatch.setattr(host, "_open_components", failing_once)
    with pytest.raises(EventStoreError, match="could not open"):
        host.load("k")
    assert host.append("k", user("after the failure")) == 6
    assert on_server(postgres_url)[-1] == ("k", 6)
    assert texts(host, "k") == [*expected, "after the failure"]
    assert texts(open_host("fresh"), "k") == [*expected, "after the failure"]
