"""A PostgreSQL host's store while it reopens (a vacuum, a rebuild) and another of its threads catches up, reads or
decides: nobody waits forever, and nobody reads or decides against a replica emptied to be rebuilt."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.sharedlog.postgres import PostgresLog

from test_postgres_rebuild import SEEN, rewrite_as_many, roll_back_to
from test_postgres_store import listening, open_host, replica_of  # noqa: F401 - the fixture, by name
from test_postgres_unbound import Background, held_reopening, noticing_waits

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

LOCK_SECONDS = 10  # how long a thread waits for a lock that its holder gives up in milliseconds


class BoundedLock:
    """A reentrant lock whose acquisition gives up (an ``AssertionError``) rather than wait forever: a deadlock
    fails the test instead of hanging it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> BoundedLock:
        assert self._lock.acquire(timeout=LOCK_SECONDS), "waited for the catch-up lock: a deadlock"
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._lock.release()


def diverge_after_j(host: SessionStore, postgres_url: str, tmp_path: Path) -> None:
    """Session j's one message, then k's: a failover loses k's last two events, which another host writes anew. The
    host's replica diverged (its next catch-up rebuilds it); j is as it was."""
    host.append("j", ChatMessage.user("j's"))  # position 1
    for text in SEEN:
        host.append("k", ChatMessage.user(text))  # positions 2 to 6
    with psycopg.connect(postgres_url, autocommit=True) as connection, connection.transaction():
        connection.execute("DELETE FROM es_events WHERE position > 4")
        connection.execute("UPDATE es_head SET position = 4, hash = (SELECT hash FROM es_events WHERE position = 4)")
        connection.execute("UPDATE es_sessions SET version = 3 WHERE key = 'k'")
    rewrite_as_many(postgres_url, tmp_path)


def pop_j(host: SessionStore, commander: threading.local, then: threading.Event) -> ChatMessage | None:
    """``pop_last("j")`` on ``host``, marking this thread as the command's (``commander.commanding``), and
    setting ``then`` once it returned or failed."""
    commander.commanding = True
    try:
        popped: ChatMessage | None = host.pop_last("j")
        return popped
    finally:
        then.set()


def test_a_vacuum_while_another_thread_catches_up_ends_and_so_does_the_catch_up(open_host, monkeypatch):
    """The catch-up began after the vacuum's own and before the vacuum took the replica's write lock: it holds the
    catch-up lock that the vacuum's reopening takes, and then waits for the write lock."""
    host = open_host("host")
    host.append("k", ChatMessage.user("one"))
    other_host = open_host("other")
    replica = replica_of(host)
    monkeypatch.setattr(replica, "_catching_up", BoundedLock())
    vacuum_caught_up, catching_up, reopening = threading.Event(), threading.Event(), threading.Event()
    catcher = threading.local()  # .catching: the other thread
    real_catch_up, real_read, real_open = replica.catch_up, replica._shared.read, host._open_components

    def catch_up() -> int:
        applied = real_catch_up()
        if not vacuum_caught_up.is_set():  # the vacuum's catch-up, before it unbinds the store
            other_host.append("o", ChatMessage.user("another host's"))  # the host's replica lacks it
            vacuum_caught_up.set()
            catching_up.wait(1)  # the other thread's catch-up reads the server (with the fix, it cannot start)
        return applied

    def read(after: int, limit: int):
        if getattr(catcher, "catching", False):
            catching_up.set()
            assert reopening.wait(LOCK_SECONDS)  # the vacuum holds the write lock, reopening the store
        return real_read(after, limit)

    def open_components() -> None:
        reopening.set()
        real_open()

    monkeypatch.setattr(replica, "catch_up", catch_up)
    monkeypatch.setattr(replica._shared, "read", read)
    monkeypatch.setattr(host, "_open_components", open_components)
    vacuum = Background(host.vacuum)
    assert vacuum_caught_up.wait(LOCK_SECONDS)

    def other_catch_up() -> int:
        catcher.catching = True
        return real_catch_up()

    other = Background(other_catch_up)
    vacuum_outcome, other_outcome = vacuum.result(), other.result()
    assert isinstance(vacuum_outcome, tuple), vacuum_outcome
    assert isinstance(other_outcome, int), other_outcome
    assert [m.content for m in host.load("o")] == ["another host's"]
    assert host.append("k", ChatMessage.user("two")) == 2


def test_a_read_that_finds_its_store_unbound_only_when_it_catches_up_waits_for_the_refill(
        open_host, postgres_url, tmp_path, monkeypatch):
    """The read found the store bound, and the watcher had seen the server's head go back (a failover): it catches
    up, and by then another thread has emptied the replica and unbound the store to reopen it."""
    host = open_host("host")
    for text in SEEN:
        host.append("k", ChatMessage.user(text))
    roll_back_to(postgres_url, 3)
    expected = rewrite_as_many(postgres_url, tmp_path)  # the host's replica diverged: its next catch-up rebuilds
    replica = replica_of(host)
    checked, reopening, go = threading.Event(), threading.Event(), threading.Event()
    reader = threading.local()  # .reading: the reading thread
    real_watch = replica._watch

    def watch() -> None:  # the read is past its store's binding, about to catch up
        if getattr(reader, "reading", False):
            checked.set()
            assert reopening.wait(LOCK_SECONDS)
        real_watch()

    monkeypatch.setattr(replica, "_went_back", True)
    monkeypatch.setattr(replica, "_watch", watch)
    held_reopening(host, monkeypatch, reopening, go)
    noticing_waits(replica, monkeypatch, go)

    def read_then_go() -> list[str]:
        reader.reading = True
        try:
            return [message.content for message in host.load("k")]
        finally:
            go.set()  # it read (the emptied replica), or waited for the binding, which set go

    read = Background(read_then_go)
    assert checked.wait(LOCK_SECONDS)
    rebuilding = Background(replica.catch_up)  # empties the replica, then reopens the store, unbound until ``go``
    assert read.result() == expected
    assert isinstance(rebuilding.result(), int)


def test_a_command_deciding_while_its_store_empties_the_replica_to_rebuild_it_decides_against_the_refill(
        open_host, postgres_url, tmp_path, monkeypatch):
    """The command checked the replica's head before the rebuild emptied it, and decides after: a command that
    writes nothing there (``pop_last`` of a session that looks empty) would be answered from the emptied replica."""
    host = open_host("host")
    diverge_after_j(host, postgres_url, tmp_path)
    replica = replica_of(host)
    checked, unbinding, decided = threading.Event(), threading.Event(), threading.Event()
    commander = threading.local()  # .commanding: the command's thread
    real_durably, real_unbound = replica._durably, replica._unbound

    def durably(*arguments):  # the command checked the store's binding, and is about to decide
        if getattr(commander, "commanding", False):
            checked.set()
            assert unbinding.wait(LOCK_SECONDS)
        return real_durably(*arguments)

    @contextlib.contextmanager
    def unbound() -> Iterator[None]:
        if not unbinding.is_set():  # the rebuild's, as it unbinds the store: the command decides now
            unbinding.set()
            decided.wait(2)  # it cannot end before the store binds again, unless it decided against the emptied one
        with real_unbound():
            yield

    monkeypatch.setattr(replica, "_durably", durably)
    monkeypatch.setattr(replica, "_unbound", unbound)

    popped = Background(lambda: pop_j(host, commander, decided))
    assert checked.wait(LOCK_SECONDS)
    rebuilding = Background(replica.catch_up)
    assert popped.result() == ChatMessage.user("j's")
    assert isinstance(rebuilding.result(), int)
    assert host.load("j") == []
    assert open_host("fresh").load("j") == []


def test_a_command_deciding_while_another_process_empties_the_replica_to_rebuild_it_decides_against_the_refill(
        open_host, postgres_url, tmp_path, monkeypatch):
    """The command's process checked the replica's head before the other process emptied the shared directory, and
    decides before that process refilled it."""
    writer = open_host("host")
    host = open_host("host")  # another store object on the directory: another process of the host, as it acts
    diverge_after_j(writer, postgres_url, tmp_path)
    replica = replica_of(host)
    checked, reopening, go = threading.Event(), threading.Event(), threading.Event()
    commander = threading.local()  # .commanding: the command's thread
    real_durably = replica._durably

    def durably(*arguments):  # the command checked the store's binding, and is about to decide
        if getattr(commander, "commanding", False):
            checked.set()
            assert reopening.wait(LOCK_SECONDS)
        return real_durably(*arguments)

    monkeypatch.setattr(replica, "_durably", durably)
    held_reopening(writer, monkeypatch, reopening, go)  # the other process emptied the directory, not refilled yet

    popped = Background(lambda: pop_j(host, commander, go))
    assert checked.wait(LOCK_SECONDS)
    rebuilding = Background(replica_of(writer).catch_up)
    assert popped.result() == ChatMessage.user("j's")
    assert isinstance(rebuilding.result(), int)
    assert host.load("j") == []
    assert open_host("fresh").load("j") == []


def test_a_log_whose_head_row_is_gone_is_reported_damaged(open_host, postgres_url, tmp_path):
    """Its every reader and its watcher ask ``es_head`` for the head: a missing row is damage, not an IndexError."""
    open_host("host").append("k", ChatMessage.user("one"))
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DELETE FROM es_head")
    with pytest.raises(StoreCorrupted, match="es_head"):
        SessionStore(postgres_url, cache=tmp_path / "another")
    log = PostgresLog(postgres_url)
    try:
        with pytest.raises(StoreCorrupted, match="es_head"):
            log.wait(0, 0.01, lambda: None)
    finally:
        log.close()


def test_a_watcher_stopped_by_an_unforeseen_error_leaves_reads_asking_the_server(open_host, monkeypatch):
    """Reads skip the server only while the watcher listens: a watcher thread that ends on an error nobody foresaw
    (here a listener's) must say it no longer listens, or every later read would serve the replica as it stood."""
    host = open_host()
    host.append("w", ChatMessage.user("first"))
    replica = replica_of(host)
    host.load("w")  # the store's first read starts its watcher
    listening(host)

    def failing() -> None:
        raise RuntimeError("an unforeseen error in the watcher thread")

    replica._listeners.append(failing)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the thread's end is expected here
    other = open_host("other")
    other.append("w", ChatMessage.user("from another host"))  # the watcher hears it and calls the listener
    watcher = replica._watcher
    assert watcher is not None
    watcher.join(10)
    assert not watcher.is_alive()
    assert not replica.listening
    assert host.load("w") == [ChatMessage.user("first"), ChatMessage.user("from another host")]
