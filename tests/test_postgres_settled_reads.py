"""Reads that trust the replica after one poll of the listening socket, without its lock: once a reader took every
notification, what comes next shows on the socket. What docs/postgres.md promises still holds: another process's
commit is seen by a read after its notification came and a round trip, a lost notification is found by the watcher's
look, and a listening connection that is gone sends the reads to the server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import psycopg
import pytest

from eventstore import ChatMessage, SessionQuery
from eventstore.services import replica as replica_module
from eventstore.sharedlog.postgres import PostgresLog
from eventstore.sharedlog.postgres_listener import Listener, _channel

from test_postgres_store import listening, open_host, replica_of, server_reads

__all__ = ["open_host"]  # the fixture, used by name

#: Another host's process: it opens its store, says so, and appends once told to.
APPEND = textwrap.dedent("""
    import sys
    from eventstore import ChatMessage, SessionStore
    with SessionStore(sys.argv[1], cache=sys.argv[2]) as store:
        store.session_exists("k")
        print("ready", flush=True)
        sys.stdin.readline()
        store.append("k", ChatMessage.assistant(sys.argv[3]))
        print("appended", flush=True)
""")


class CountingPoll:
    """A poll object that counts its calls (the system calls a read makes on the listening socket)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        self.calls += 1
        result: list[tuple[int, int]] = self.real.poll(timeout)
        return result


class CountingLock:
    """The listener's lock, counting the times this thread took it (the watcher's looks are its own)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.mine = 0
        self.thread = threading.get_ident()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.mine += threading.get_ident() == self.thread
        taken: bool = self.real.acquire(blocking, timeout)
        return taken

    def release(self) -> None:
        self.real.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def log_of(host: Any) -> PostgresLog:
    shared = replica_of(host)._shared
    assert isinstance(shared, PostgresLog)
    return shared


def listener_of(host: Any) -> Listener:
    return log_of(host)._listener


def settled(host: Any) -> Listener:
    """The host's listener once a read took every notification (reads then poll the socket and nothing else)."""
    listener = listener_of(host)
    listening(host)
    deadline = time.monotonic() + 10
    while not listener._settled and time.monotonic() < deadline:
        host.session_exists("k")
        time.sleep(0.01)
    assert listener._settled, "no read took the notifications"
    return listener


def unhurried_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's looks for a lost notification a minute apart: a loop of reads on a loaded host may take longer
    than the second between looks, each look unsettles the listener once, and a look between another host's commit
    and the test's look at the socket takes the notification the test waits for. Called once the host opened, from the
    end of the look under way on; called before, from its first wait on, which only a commit it hears of ends sooner
    (the test makes its first commit once the host listens)."""
    monkeypatch.setattr(replica_module, "QUIET_SECONDS", 60.0)


def arrived(listener: Listener) -> None:
    """Wait until something came on the listening socket (a notification no longer in flight), without taking it."""
    deadline = time.monotonic() + 10
    while not listener._socket.poll(10) and time.monotonic() < deadline:
        pass
    assert listener._socket.poll(0), "nothing came on the listening socket"


def test_a_read_with_nothing_new_polls_the_listening_socket_once_and_takes_no_lock(open_host, monkeypatch):
    one = open_host("one")
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    unhurried_looks(monkeypatch)
    counting = CountingPoll(listener._settled_socket)
    lock = CountingLock(listener._listening)
    monkeypatch.setattr(listener, "_settled_socket", counting)
    monkeypatch.setattr(listener, "_listening", lock)
    asked = server_reads(one, monkeypatch)
    for _ in range(100):
        assert [m.content for m in one.load("k")] == ["mine"]
    # The watcher's look under way unsettles it once at most: the next read takes the lock, and settles it again.
    assert 99 <= counting.calls <= 100 and lock.mine <= 1 and asked == []


def test_another_process_s_commit_is_read_after_its_notification_came_and_a_round_trip(
        open_host, postgres_url, tmp_path, monkeypatch):
    unhurried_looks(monkeypatch)  # from the first wait on: the other process's exit may take seconds
    one = open_host("one")
    listening(one)
    one.append("k", ChatMessage.user("mine"))
    other = subprocess.Popen([sys.executable, "-c", APPEND, postgres_url, str(tmp_path / "other"), "theirs"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdin is not None and other.stdout is not None
    assert other.stdout.readline() == "ready\n"
    listener = settled(one)
    asked = server_reads(one, monkeypatch)
    other.stdin.write("go\n")
    other.stdin.flush()
    assert other.stdout.readline() == "appended\n"  # its commit acknowledged
    other.stdin.close()
    assert other.wait(60) == 0
    arrived(listener)
    with psycopg.connect(postgres_url, autocommit=True) as connection:  # the round trip
        connection.execute("SELECT 1")
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    assert asked == [1]  # the notification was on the socket: the read asked the server
    assert [m.content for m in one.load("k")] == ["mine", "theirs"] and asked == [1]


def test_a_lost_notification_is_found_by_the_watcher_s_look(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listener = settled(one)
    connection = listener._connection
    assert connection is not None
    channel = _channel(connection)
    with listener._listening:  # as the watcher holds it: nobody else uses the listener meanwhile
        connection.execute(f'UNLISTEN "{channel}"')
        two.append("k", ChatMessage.assistant("unheard"))  # its notification reaches nobody here
        connection.execute(f'LISTEN "{channel}"')
    looks: list[float] = []
    log = log_of(one)
    real_wait = log.wait

    def wait(seen: int, timeout: float, listening: Any) -> int:
        looks.append(timeout)
        return real_wait(seen, timeout, listening)

    monkeypatch.setattr(log, "wait", wait)
    deadline = time.monotonic() + 10
    while len(one.load("k")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [m.content for m in one.load("k")] == ["mine", "unheard"]
    assert looks  # the watcher's look at the head found it, not a notification


def test_a_listening_connection_that_is_gone_sends_the_reads_to_the_server(open_host, postgres_url, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listening_connection = settled(one)._connection
    assert listening_connection is not None
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s, 10000)", (listening_connection.info.backend_pid,))
    two.append("k", ChatMessage.assistant("after"))
    asked = server_reads(one, monkeypatch)
    assert [m.content for m in one.load("k")] == ["mine", "after"]
    assert asked  # the replica was not trusted: the read asked the server
    settled(one)  # the watcher listens on a new connection, and reads trust the replica again
    assert [m.content for m in one.load("k")] == ["mine", "after"]


def test_threads_reading_a_settled_listener_at_once_all_read(open_host):
    """Python refuses a second thread's poll of one poll object while the first polls it: the reads of a settled
    listener, which poll without the listener's lock, then take the lock as a read of an unsettled one does."""
    one = open_host("one")
    one.append("k", ChatMessage.user("mine"))
    settled(one)
    failures: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(3000):
                assert one.session_exists("k")
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    assert failures == []


def test_a_search_of_a_settled_listener_reads_the_replica_once_and_polls_once(open_host, monkeypatch):
    one = open_host("one")
    one.append("k", ChatMessage.user("a trip to lisbon"))
    assert [m.key for m in one.search(SessionQuery(keyword="lisbon"))] == ["k"]  # the index caught up
    listener = settled(one)
    unhurried_looks(monkeypatch)
    replica = replica_of(one)
    counting = CountingPoll(listener._settled_socket)
    lock = CountingLock(listener._listening)
    monkeypatch.setattr(listener, "_settled_socket", counting)
    monkeypatch.setattr(listener, "_listening", lock)
    real_read = replica._inner.read
    transactions: list[None] = []

    def read() -> Any:
        transactions.append(None)
        return real_read()

    monkeypatch.setattr(replica._inner, "read", read)
    asked = server_reads(one, monkeypatch)
    for _ in range(50):
        assert [m.key for m in one.search(SessionQuery(keyword="lisbon", limit=10))] == ["k"]
    # As on LMDB, one read transaction a search; the replica adds one poll and nothing else (the watcher's look under
    # way unsettles the listener once at most).
    assert len(transactions) == 50 and 49 <= counting.calls <= 50 and lock.mine <= 1 and asked == []
