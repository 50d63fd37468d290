"""A connection to the PostgreSQL log's server, as the log's pool and its listener both use one: opening it, reading
what waits on it while it is idle (notifications, the server's goodbye), waiting for its socket, and the store's
error a failed call on it becomes."""

from __future__ import annotations

import math
import select
import weakref
from collections.abc import Callable
from typing import Any

import psycopg

from .._errors import EventStoreError, InvalidArgument, StoreUnavailable

__all__ = ["connect", "read_waiting", "said_goodbye", "ready", "reason", "unavailable"]

#: At most how many reads ``read_waiting`` makes: the server's goodbye and the end of the socket take two; more is a
#: stream of notifications still coming, from a server that is there.
_READS_WHILE_IDLE = 4
#: The connections whose server said goodbye (``_farewell_noted``): closed, though libpq may not know it yet.
_SAID_GOODBYE: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def reason(exc: psycopg.Error) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def unavailable(exc: psycopg.Error, doing: str) -> EventStoreError:
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"PostgreSQL cannot be reached while {doing}: {reason(exc)}")
    return EventStoreError(f"PostgreSQL failed while {doing}: {reason(exc)}")


def connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    """A connection to ``url``; a URL libpq cannot parse is the caller's mistake, told without its password
    (libpq quotes the URL, or the token it could not decode)."""
    try:
        connection = psycopg.connect(url, autocommit=True, **options)
        connection.add_notice_handler(_farewell_noted(weakref.ref(connection)))
        return connection
    except psycopg.ProgrammingError as exc:
        told = reason(exc)
        password = url.partition("://")[2].partition("/")[0].rpartition("@")[0].partition(":")[2]
        raise InvalidArgument("not a valid PostgreSQL URL: "
                              + (told.replace(password, "***") if password else told)) from None


def read_waiting(connection: psycopg.Connection[Any]) -> None:
    """Read what waits on an idle connection's socket (notifications, the server's goodbye), without waiting.

    Raises:
        psycopg.OperationalError: the server closed the connection. libpq reads a closed socket as open until a
            read meets its end, which may be a read after the one that takes the server's last message: each read
            runs while the socket has something to read (it has nothing on a live idle connection, most of the time).
            Where the end has not arrived yet (a network that delivers it late), the goodbye read tells it: libpq
            keeps such a connection's status as it was and passes the goodbye to the notice handler (``connect``'s).
    """
    pgconn = connection.pgconn
    read = False
    for _ in range(_READS_WHILE_IDLE):
        if not ready(pgconn.socket, select.POLLIN, 0):
            break
        pgconn.consume_input()
        read = True
    if read:
        pgconn.is_busy()  # parses what the reads brought: a goodbye reaches the notice handler now
    if said_goodbye(connection):
        raise psycopg.OperationalError("the server closed the connection (its goodbye came before its end)")


def said_goodbye(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server's goodbye came on ``connection``: closed, though libpq may not know it yet."""
    return connection in _SAID_GOODBYE


def _farewell_noted(connection: weakref.ref[psycopg.Connection[Any]]) -> Callable[[psycopg.errors.Diagnostic], None]:
    """A notice handler that marks ``connection`` as closed by the server when its goodbye (a fatal error, sent on
    an idle connection as the server closes it: a restart, a terminated backend) arrives. A weak reference: the
    connection holds its handler."""

    def noted(diagnostic: psycopg.errors.Diagnostic) -> None:
        closed = connection()
        if closed is not None and diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            _SAID_GOODBYE.add(closed)

    return noted


def ready(socket: int, events: int, timeout: float | None) -> bool:
    """Wait (the GIL released) at most ``timeout`` seconds (``None``: as long as it takes) until ``socket`` is ready
    for ``events``; whether it is. ``poll`` rather than ``select``, which refuses descriptors of 1024 and above (a
    process with many open files, a gateway's sockets, has them)."""
    poller = select.poll()
    poller.register(socket, events)
    return bool(poller.poll(None if timeout is None else math.ceil(timeout * 1000)))
