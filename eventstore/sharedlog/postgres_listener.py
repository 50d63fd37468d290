"""The PostgreSQL log's listening connection: how a store hears of the log's commits without asking the server.

A ``Listener`` keeps one connection that ``LISTEN``s on the channel the schema's commits notify, and answers the two
calls of the shared log's protocol that use it (``SharedLog.wait``, ``SharedLog.heard``): the watcher's wait for the
next commit, and a read's look at what came since, which must cost one poll of the socket while nothing came
(docs/postgres.md, reads). What a reader may trust without the lock rests on two marks: *settled* (a reader took
every notification; what comes next shows on the socket) and *parked* (the watcher waits on the socket with every
notification taken and heard of). Whatever takes notifications clears the mark first, and sets it again only once
the head they name is heard of.

The log (``postgres.PostgresLog``) owns the listener: it gives it a way to connect and its check against use after
``fork()``, asks it to ``stop`` at the start of its close, has it ``wake`` the waiter through one of its pooled
connections, and ``close``s it last.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql

from .._errors import StoreClosed, StoreCorrupted
from . import postgres_connection

__all__ = ["Listener", "LISTENER_RELEASE", "NO_HEAD", "SHARED_CHANNEL"]

#: The channel every log notified before format 6, which gives each schema its own (``postgres_schema``): a read-only
#: store of an older format listens there.
SHARED_CHANNEL = "eventstore_log"
#: Seconds ``close`` waits for the watcher to let the listening connection go before it ends that connection's
#: socket under it: a watcher waiting on a connection whose server is gone, its end not arrived (a network that lost
#: it), would wait until the kernel gave up on it, and the close with it.
LISTENER_RELEASE = 2.0
#: How often, in seconds, a read waiting for the listener another thread holds looks whether it is the watcher
#: parked with nothing come (``Listener._heard_while_held``).
_HELD_LOOK = 0.001
#: ``es_head`` holds one row from the schema's creation on; every read and the watcher ask it for the head.
NO_HEAD = "the PostgreSQL log's head row (es_head) is missing"


def _channel(connection: psycopg.Connection[Any]) -> str:
    """The channel the schema's commits notify: its own since format 6, the shared one before (a read-only store
    reads an older format as it is)."""
    if connection.execute("SELECT to_regproc('es_channel')").fetchone() == (None,):
        return SHARED_CHANNEL
    row = connection.execute("SELECT es_channel()").fetchone()
    if row is None or not isinstance(row[0], str):
        raise StoreCorrupted("the log's es_channel() names no channel")
    return row[0]


class Listener:
    """The log's listening connection, connected by its first ``wait``.

    Args:
        connect: a new connection to the log's server.
        refuse_if_forked: raises ``StoreUsedAfterFork`` in a forked child, which shares the parent's sockets: it
            must neither read from them (it would take the parent's notifications) nor send on them, nor wait for a
            lock a parent's thread held at the fork.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], refuse_if_forked: Callable[[], None]) -> None:
        self._connect = connect
        self._refuse_if_forked = refuse_if_forked
        self._closed = False
        self._connection: psycopg.Connection[Any] | None = None
        self._heard: int | None = None  # the head the listener last heard of (a query, a notification)
        self._kept: list[str] = []  # payloads of notifications psycopg received during a query on the listener
        self._socket = select.poll()  # the listener's socket, registered as it connects (``_quiet``)
        self._listening = threading.Lock()
        # Set by a reader that took every notification (``_listening`` held), nothing kept, parsed or said goodbye
        # since, and cleared by whatever may leave one behind (a query on the listener, the waiter, a new listener):
        # while set, what comes shows on the socket, and ``heard`` polls it without the lock or further checks.
        self._settled = False
        # The settled listener's socket, polled by the reads without the lock: a poll object of its own, since one
        # thread's poll of an object while another polls it raises (they then take the lock, as ``_quiet`` polls).
        self._settled_socket = select.poll()
        # Set while the watcher waits on the listener's socket with every notification taken and heard of (only
        # then may a read that finds it holding the lock, and nothing on the socket, trust the head heard of).
        self._parked = False
        self._waking = f"eventstore_wake_{uuid.uuid4().hex}"  # the listener's own channel: ``wake`` notifies it

    def wait(self, seen: int, timeout: float, listening: Callable[[], None]) -> int:
        """``SharedLog.wait``: the head once it differs from ``seen``, or after ``timeout`` seconds; ``listening``
        is called once the connection listens with the head found at ``seen``."""
        self._refuse_if_forked()
        with self._listening:  # one listening connection; the waiters take turns
            self._settled = False  # what it reads from the socket, it takes itself: readers wait for it (``heard``)
            if self._closed:
                raise StoreClosed("the store is closed")
            try:
                if self._connection is not None and not self._connection.closed:
                    try:  # before a query on it: its server may have said goodbye
                        postgres_connection.read_waiting(self._connection)
                    except psycopg.OperationalError:
                        self._connection.close()  # listen on a new one
                if self._connection is None or self._connection.closed:
                    self._connection = self._connect()
                    kept = self._kept
                    kept.clear()
                    self._connection.add_notify_handler(lambda notification: kept.append(notification.payload))
                    self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_channel(self._connection))))
                    self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._waking)))
                    self._socket, self._settled_socket = select.poll(), select.poll()
                    self._socket.register(self._connection.pgconn.socket, select.POLLIN)
                    self._settled_socket.register(self._connection.pgconn.socket, select.POLLIN)
                    self._heard = None
                # The head the listener last heard of is the head while no notification waits for it (they wait on
                # its socket, or in ``_kept``): no query when nothing moved.
                position = seen if self._heard == seen else self._head(self._connection)
                if position == seen and not self._closed:
                    listening()
                    position = self._next_head(self._connection, seen, timeout)
                self._heard = position
            except psycopg.Error as exc:
                if self._connection is not None:
                    self._connection.close()
                if self._closed:
                    raise StoreClosed("the store is closed") from None
                raise postgres_connection.unavailable(exc, "waiting for commits") from None
            if self._closed:
                raise StoreClosed("the store is closed")
            return position

    def heard(self, seen: int) -> int | None:
        """``SharedLog.heard``: the head the notifications that came tell, without waiting for a commit; ``None``:
        ask the server."""
        if self._settled:
            # Nothing came since every notification was taken (the poll checks it once more).
            quiet = self._quiet_head(seen, parked=False)
            if quiet is not None:
                return quiet
        self._refuse_if_forked()  # past the settled reads' poll, which reads nothing: their cost stays one poll
        if self._listening.acquire(blocking=False):
            return self._heard_holding(seen)
        return self._heard_while_held(seen)

    def _quiet_head(self, seen: int, parked: bool) -> int | None:
        """The head heard of when nothing is on the listening socket and the mark (the watcher parked, or the
        listener settled) is still set once it was polled; ``None`` when either fails. The mark is read after the
        poll: whatever takes notifications clears it first, and sets it again only once the head they name is heard
        of."""
        try:
            if not self._settled_socket.poll(0) and (self._parked if parked else self._settled):
                heard = self._heard
                return heard if heard is not None and heard > seen else seen
        except RuntimeError:  # another reader polls it this moment
            pass
        return None

    def _heard_holding(self, seen: int) -> int | None:
        """``heard`` by the thread that took the listener's lock, which it releases."""
        try:
            connection = self._connection
            if self._closed or connection is None or connection.closed or self._heard is None:
                return None
            try:
                quiet = self._quiet(connection)
                if not quiet:
                    self._settled = False  # before it takes them: the settled reads wait for the head they name
                payloads = [] if quiet else self._drained(connection)
                position = max(seen, self._heard)
                if payloads and all(payload.isdigit() for payload in payloads):
                    position = max(position, *(int(payload) for payload in payloads))
                elif payloads:  # a group's commit names no head
                    position = self._head(connection)
            except BaseException as failure:
                # It may have taken notifications whose head nobody heard of: until the watcher asks the server for
                # the head, the reads do.
                self._settled = False
                self._heard = None
                if not isinstance(failure, psycopg.Error):
                    raise
                connection.close()  # the watcher's next wait connects again
                return None
            self._heard = position
            self._settled = not self._kept  # a query for the head may have received notifications: kept for the next
            return position
        finally:
            self._listening.release()

    def _heard_while_held(self, seen: int) -> int | None:
        """``heard`` while another thread holds the listener, which may have taken a notification whose head it has
        not heard of yet (a subscribed watcher waking, a read draining the socket; a loaded host may not run it for a
        while): the head heard of once that thread is the watcher waiting for the next commit with nothing come
        since (the parked mark read after the poll, as the settled mark is), or what this thread hears once it holds
        the listener itself; ``None`` (ask the server) if neither comes within ``LISTENER_RELEASE`` seconds."""
        deadline = time.monotonic() + LISTENER_RELEASE
        while True:
            quiet = self._quiet_head(seen, parked=True)
            if quiet is not None:
                return quiet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._listening.acquire(timeout=min(remaining, _HELD_LOOK)):
                return self._heard_holding(seen)

    def _quiet(self, connection: psycopg.Connection[Any]) -> bool:
        """Whether nothing came on the listener since it was last drained, told without reading it: no payload kept,
        no goodbye noted, nothing on its socket (one poll, through a poll object kept for it, as every read asks),
        no notification parsed and waiting in libpq (one that is, is kept for the drain)."""
        if self._kept or postgres_connection.said_goodbye(connection) or self._socket.poll(0):
            return False
        parsed = connection.pgconn.notifies()
        if parsed is None:
            return True
        self._kept.append(parsed.extra.decode())
        return False

    def _next_head(self, connection: psycopg.Connection[Any], seen: int, timeout: float) -> int:
        """The head after the next commit past ``seen`` (or after ``timeout`` seconds, or a wake-up): named by the
        notifications of commands alone (``es_append_alone``), else asked for. Each wait takes every notification
        that has come (those of one packet arrive together: one left behind would be a commit unheard of)."""
        deadline = time.monotonic() + timeout
        while True:
            payloads = self._drained(connection)
            if payloads and all(payload.isdigit() for payload in payloads):
                named = max(int(payload) for payload in payloads)
                if named > seen:
                    return named
            elif payloads:
                return self._head(connection)  # a wake-up, or a commit that names no head (a batch's)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._head(connection)
            self._parked = True
            try:
                postgres_connection.ready(connection.pgconn.socket, select.POLLIN, remaining)  # the GIL released
            finally:
                self._parked = False

    def _drained(self, connection: psycopg.Connection[Any]) -> list[str]:
        """The payloads of the notifications that came on the listener since it was last drained: those psycopg
        received during a query on it (``_kept``), then those waiting on its socket (read by libpq, without
        psycopg's generator: under half the CPU time, and the drain runs before every command)."""
        pgconn = connection.pgconn
        postgres_connection.read_waiting(connection)
        payloads = self._kept[:]
        self._kept.clear()
        while (notification := pgconn.notifies()) is not None:
            payloads.append(notification.extra.decode())
        return payloads

    @staticmethod
    def _head(connection: psycopg.Connection[Any]) -> int:
        row = connection.execute("SELECT position FROM es_head").fetchone()
        if row is None:
            raise StoreCorrupted(NO_HEAD)
        position: int = row[0]
        return position

    def stop(self) -> None:
        """Refuse further waits (``StoreClosed``): the first step of the log's close, in a forked child too."""
        self._settled = False
        self._closed = True

    def wake(self, connection: psycopg.Connection[Any]) -> None:
        """Wake the waiter now rather than at its timeout, by a notification sent on ``connection`` (another of the
        log's, which is closed next) and not waited for: a server lost without the connection's end arriving would
        never answer, and the server runs it before the close that follows."""
        if self._connection is not None:
            with suppress(psycopg.Error):
                connection.pgconn.send_query_params(b"SELECT pg_notify($1, '')", [self._waking.encode()])

    def close(self) -> None:
        """Close the listening connection once its waiter let it go, after ``stop``: within ``LISTENER_RELEASE``
        seconds, else its socket is ended under the waiter."""
        if not self._listening.acquire(timeout=LISTENER_RELEASE):
            self._end_listening_socket()  # its waiter then fails at once, sees the store closed, and lets go
            self._listening.acquire()
        try:
            if self._connection is not None:
                self._connection.close()
        finally:
            self._listening.release()

    def _end_listening_socket(self) -> None:
        """Shut the listening connection's socket down under the thread waiting on it (through a duplicate of its
        descriptor: libpq keeps its own, and closes it as it always does)."""
        connection = self._connection
        with suppress(OSError, psycopg.Error):
            if connection is not None:
                with socket.socket(fileno=os.dup(connection.pgconn.socket)) as duplicate:
                    duplicate.shutdown(socket.SHUT_RDWR)
