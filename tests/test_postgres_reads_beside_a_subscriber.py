"""Reads of a host that has a subscriber, after another host's acknowledged commit whose notification reached it:
whichever thread of the host stalls with that notification (a loaded host deschedules it: an injected wait), at
whatever step of handling it (the watcher woken and not yet reading it, holding it, having heard of its head and not
yet raised the host's, having raised it and not yet woken the subscribers; the subscriber woken and not yet reading,
or catching up), a read after it and a round trip sees the commit, and the subscription delivers it once, in order.

The other host is a process of its own, with its own replica directory, on the same server."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from eventstore import ChatMessage, RecordedEvent
from eventstore.services import replica as replica_module
from eventstore.services.replica import ReplicaStorage
from eventstore.sharedlog import postgres, postgres_connection
from eventstore.sharedlog.postgres_listener import Listener

from test_postgres_store import listening, open_host, replica_of

__all__ = ["open_host"]  # the fixture, used by name

#: Another host: it opens its store, says so, then appends each line it reads and says when that is acknowledged.
HOST = textwrap.dedent("""
    import sys
    from eventstore import ChatMessage, SessionStore
    with SessionStore(sys.argv[1], cache=sys.argv[2]) as store:
        store.session_exists("k")
        print("ready", flush=True)
        for line in sys.stdin:
            store.append("k", ChatMessage.assistant(line.strip()))
            print("appended", flush=True)
""")

WATCHER, FOLLOWER = "eventstore-shared-log", "follower"


class Stall:
    """Once armed, the first thread of the given name to reach the injected point waits there until the stall is
    released (or 30 seconds). Each arming has events of its own, taken under a lock: a thread that reached the point
    in one round waits for that round's release, never for the next round's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: tuple[threading.Event, threading.Event] | None = None  # reached, go on

    def arm(self) -> threading.Event:
        """Arm it; the event set once a thread reached the point."""
        with self._lock:
            self._armed = (threading.Event(), threading.Event())
            return self._armed[0]

    def release(self) -> None:
        """Let the stalled thread go on, and stall no other."""
        with self._lock:
            armed, self._armed = self._armed, None
        if armed is not None:
            armed[1].set()

    def __call__(self, thread: str) -> None:
        if threading.current_thread().name != thread:
            return
        with self._lock:
            armed = self._armed
            if armed is None or armed[0].is_set():
                return
            armed[0].set()
        armed[1].wait(30)


def watcher_woken(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's wait on the listening socket returned, still marked parked, the notification unread."""
    real_ready = postgres_connection.ready
    listener = listener_of_replica(replica)

    def ready(socket: int, events: int, timeout: float | None) -> bool:
        woken = real_ready(socket, events, timeout)
        connection = listener._connection
        if woken and events == select.POLLIN and connection is not None and socket == connection.pgconn.socket:
            stall(WATCHER)
        return woken

    monkeypatch.setattr(postgres_connection, "ready", ready)


def watcher_holding(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher took the notification from the socket and has not heard of its head."""
    listener = listener_of_replica(replica)
    real_drained = listener._drained

    def drained(connection: psycopg.Connection[Any]) -> list[str]:
        payloads: list[str] = real_drained(connection)
        if payloads:
            stall(WATCHER)
        return payloads

    monkeypatch.setattr(listener, "_drained", drained)


def watcher_heard(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher heard of the head and let the listener go, and has not raised the host's head."""
    real_raise = replica._raise_head

    def raise_head(position: int) -> None:
        stall(WATCHER)
        real_raise(position)

    monkeypatch.setattr(replica, "_raise_head", raise_head)


def watcher_raised(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher raised the host's head and has not woken the subscribers."""
    real_raise = replica._raise_head

    def raise_head(position: int) -> None:
        real_raise(position)
        stall(WATCHER)

    monkeypatch.setattr(replica, "_raise_head", raise_head)


def subscriber_woken(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriber was woken and has not begun its read of the log."""
    real_read = replica.read

    def read() -> Any:
        stall(FOLLOWER)
        return real_read()

    monkeypatch.setattr(replica, "read", read)


def subscriber_catching_up(replica: ReplicaStorage, stall: Stall, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriber's read catches the replica up (the catch-up's lock and the directory's turn held) and has not
    asked the server yet."""
    real_fill = replica._fill

    def fill(binding: Any) -> int:
        stall(FOLLOWER)
        return real_fill(binding)

    monkeypatch.setattr(replica, "_fill", fill)


def listener_of_replica(replica: ReplicaStorage) -> Listener:
    shared = replica._shared
    assert isinstance(shared, postgres.PostgresLog)
    return shared._listener


class Follower:
    """What the subscription delivered, and how many events it had delivered when its latest read of the log ended.
    Once those are equal it read after its last delivery and found nothing: it waits, and its next read comes after
    the host heard of a commit. (A read under way when a round arms its stall, from the previous round's delivery on
    a loaded host, would reach a subscriber's step with nothing heard of yet, or take the next commit itself.)"""

    def __init__(self, replica: ReplicaStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.received: list[RecordedEvent] = []
        self.read_after = -1
        real_read = replica.read

        @contextlib.contextmanager
        def noted(reading: AbstractContextManager[Any]) -> Iterator[Any]:
            with reading as txn:
                yield txn
            self.read_after = len(self.received)

        def read() -> AbstractContextManager[Any]:
            reading = real_read()
            return noted(reading) if threading.current_thread().name == FOLLOWER else reading

        monkeypatch.setattr(replica, "read", read)

    def waiting(self, delivered: int) -> None:
        """Wait until it delivered ``delivered`` events and read the log after the last one."""
        deadline = time.monotonic() + 10
        while not self.read_after == len(self.received) == delivered and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.read_after == len(self.received) == delivered, "the subscription never caught up"


class Parks:
    """The watcher's waits on the listening socket for the next notification, counted from before the store opens
    (``begun``), and the notifications any thread took from the listener (``taken``, once ``listen`` was called),
    with how many waits had begun when the last was taken."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.begun = self.taken = self.begun_at_take = 0
        real_ready = postgres_connection.ready

        def ready(socket: int, events: int, timeout: float | None) -> bool:
            self.begun += threading.current_thread().name == WATCHER and events == select.POLLIN and bool(timeout)
            return real_ready(socket, events, timeout)

        monkeypatch.setattr(postgres_connection, "ready", ready)

    def listen(self, replica: ReplicaStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        listener = listener_of_replica(replica)
        real_drained = listener._drained

        def drained(connection: psycopg.Connection[Any]) -> list[str]:
            payloads: list[str] = real_drained(connection)
            if payloads:
                self.taken, self.begun_at_take = self.taken + 1, self.begun
            return payloads

        monkeypatch.setattr(listener, "_drained", drained)

    def wait_after(self, replica: ReplicaStorage, taken: int) -> None:
        """Wait until a notification was taken since ``taken`` were counted, and the watcher waits on the listening
        socket again in a wait begun since, holding the listener: the next notification is then its own to take,
        through the steps the test stalls (injected before that wait began). Between its waits the listener is free,
        and a subscriber's poll (every ``POLL_SECONDS``) or a read that came then would take the notification itself,
        the watcher never reaching the step stalled (on a loaded host, which runs the watcher late)."""
        listener = listener_of_replica(replica)

        def parked() -> bool:
            return self.taken > taken and self.begun > self.begun_at_take and listener._parked

        deadline = time.monotonic() + 10
        while not parked() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert parked(), "the watcher never waited for the next notification"


@pytest.mark.parametrize("stalled", [watcher_woken, watcher_holding, watcher_heard, watcher_raised,
                                     subscriber_woken, subscriber_catching_up])
def test_a_read_beside_a_subscriber_stalled_with_another_host_s_commit_sees_it(
        stalled, open_host, postgres_url, tmp_path: Path, monkeypatch):
    # The watcher's look for a lost notification, once a second, would let the listener go for a moment between
    # the test's check that it waits and the notification's arrival: it waits for notifications alone.
    monkeypatch.setattr(replica_module, "QUIET_SECONDS", 60.0)
    parks = Parks(monkeypatch)
    one = open_host("one")
    one.append("k", ChatMessage.user("mine"))
    other = subprocess.Popen([sys.executable, "-c", HOST, postgres_url, str(tmp_path / "other")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdin is not None and other.stdout is not None
    subscription = Follower(replica_of(one), monkeypatch)

    def follow() -> None:
        for event in one.subscribe(timeout=30):
            subscription.received.append(event)
            if event.position == 4:
                return

    follower = threading.Thread(target=follow, name=FOLLOWER)
    stall = Stall()
    try:
        assert other.stdout.readline() == "ready\n"
        follower.start()
        listening(one)
        parks.listen(replica_of(one), monkeypatch)
        stalled(replica_of(one), stall, monkeypatch)
        # The watcher may wait already, in a call begun before the steps were injected: woken on its own channel, it
        # waits again through them.
        taken = parks.taken
        waking = listener_of_replica(replica_of(one))._waking
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(waking)))
        for round_number in range(3):
            subscription.waiting(round_number + 1)
            parks.wait_after(replica_of(one), taken)
            taken = parks.taken
            reached = stall.arm()
            other.stdin.write(f"theirs {round_number}\n")
            other.stdin.flush()
            assert other.stdout.readline() == "appended\n"  # acknowledged
            assert reached.wait(10), "the notification never reached the stalled step"
            with psycopg.connect(postgres_url, autocommit=True) as connection:  # the round trip
                connection.execute("SELECT 1")
            read: list[list[str]] = []
            reader = threading.Thread(target=lambda into: into.append([m.content for m in one.load("k")]), args=(read,))
            reader.start()
            reader.join(3)  # past LISTENER_RELEASE: a read that waits for a stalled watcher asks the server
            stall.release()
            reader.join(30)
            assert read == [["mine", *(f"theirs {n}" for n in range(round_number + 1))]]
    finally:
        stall.release()
        other.stdin.close()
        other.wait(60)
        follower.join(30)
    assert other.returncode == 0
    assert [event.position for event in subscription.received] == [1, 2, 3, 4]
    assert subscription.received == list(one.events())
