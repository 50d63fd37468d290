"""The exceptions of the package: one base class, and a specific class per failure.

Errors that describe a bad argument also inherit ``ValueError`` so that callers
who only know the builtin still catch them.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = [
    "EventStoreError",
    "InvalidArgument",
    "InvalidSessionKey",
    "InvalidMessage",
    "StoreCorrupted",
    "DictionaryDamaged",
    "IncompatibleStore",
    "StoreClosed",
    "StoreUsedAfterFork",
    "WrongExpectedVersion",
    "IdempotencyKeyReused",
    "StoreFull",
    "InvalidVersion",
    "StoreBusy",
    "StoreGrowthBlocked",
    "SourceChanged",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreInaccessible",
    "ReplicationMismatch",
    "shown",
    "HELD_OPEN_BY",
    "TransactionError",
    "StoreUnavailable",
    "unpack_stored",
]

#: What may hold a transaction open in the thread that calls, as the errors refusing that thread's calls name it.
HELD_OPEN_BY = "(a progress callback of a call under way, or a loop over a read)"

# Python refuses to print an int of more than 4,300 digits; a message names one by its size instead.
_LONGEST_INT_SHOWN_BITS = 256


def shown(value: object, width: int = 60) -> str:
    """``repr(value)`` for an error message, cut to ``width`` characters; a huge int is named by its size."""
    if isinstance(value, int) and value.bit_length() > _LONGEST_INT_SHOWN_BITS:
        return f"a{' negative' if value < 0 else 'n'} int of {value.bit_length()} bits"
    return f"{value!r:.{width}}"


class EventStoreError(Exception):
    """Base class of every error this package raises."""


class InvalidArgument(EventStoreError, ValueError):
    """An argument was rejected; nothing was written."""


class InvalidSessionKey(InvalidArgument):
    """A session key is empty, too long, contains NUL or is not valid Unicode."""


class InvalidMessage(InvalidArgument):
    """A message has a bad role or content."""


class StoreCorrupted(EventStoreError):
    """Stored bytes do not decode: the store was damaged outside this library."""


class DictionaryDamaged(StoreCorrupted):
    """The store's compression dictionary, which every compressed record and message chunk needs, cannot be read:
    both of its stored copies are damaged (or, in a store older than the copy, the one)."""


class IncompatibleStore(EventStoreError):
    """The store (or an event in it) was written by a newer, unknown schema version."""


class StoreClosed(EventStoreError):
    """The store was used after ``close()``, or while another thread closed it: a write of a thread that holds one of
    its transactions open is refused then, having written nothing (the close waits for that transaction to end)."""


class StoreUsedAfterFork(EventStoreError):
    """A store opened in a parent process was used in a forked child.

    LMDB environments must not cross ``fork()``; open a new ``SessionStore`` in the child.
    """


class WrongExpectedVersion(EventStoreError):
    """A command expected a session version that is no longer current."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(
            f"session {key!r} is at version {actual}, but version {shown(expected)} was expected"
        )
        self.key = key
        self.expected = expected
        self.actual = actual


class IdempotencyKeyReused(InvalidArgument):
    """An idempotency key already answered another command, or the same command with other arguments.

    A key names one request: only a retry of that exact call may reuse it. Nothing was written.
    """

    def __init__(self, key: str, idempotency_key: str, first_command: str, command: str) -> None:
        first = f"{first_command} with other arguments" if first_command == command else first_command
        super().__init__(f"idempotency key {idempotency_key!r:.80} of session {key!r:.80} was first used for "
                         f"{first}, so it cannot answer this {command}; reuse a key only to retry the same call")
        self.key = key
        self.idempotency_key = idempotency_key
        self.first_command = first_command
        self.command = command


class StoreFull(EventStoreError):
    """The store reached its configured size cap, or its file system has no room left; the command wrote nothing."""


class InvalidVersion(InvalidArgument):
    """A point-in-time argument names no state of the session (a version past its end, say)."""


class SessionNotFound(InvalidVersion):
    """A command reads a session that does not exist at the point it names (``fork``'s source, say)."""


class SessionExists(EventStoreError):
    """A command that starts a session found it live already (``fork`` onto a key in use); nothing was written."""


class StoreBusy(EventStoreError):
    """The operation needs the store to itself, and another store object or process has it open; or, on a shared
    log, another writer held a session's turn longer than a command waits for it; or a command was given from a
    callback (``progress``) of a write still in progress. The command recorded nothing. Or the store was closed from a
    thread that holds one of its transactions open (a ``progress`` callback): it stays open."""

    @classmethod
    def write_in_progress(cls, path: object) -> StoreBusy:
        """A write given on a thread whose write on the same store is still open (from its ``progress`` callback,
        through another store object or handle on that store)."""
        return cls(f"a write on the store at {path} was given from inside another write of this thread on it (a "
                   "progress callback), which cannot end before it; nothing was recorded: give it once the call "
                   "that reports progress returns")


class StoreGrowthBlocked(StoreBusy):
    """The store's map must grow (LMDB maps its file, and remaps it larger when it fills), which waits for every
    transaction of the process to end, while the thread that asked holds one open: a read it is still iterating, or
    the read or write of a call whose callback (``progress``) it is in. Waiting would never end, so the call
    raises this instead, having written nothing: give it once the open transaction's call returns. A read from
    such a thread raises it too when another process grew the map: taking that size waits in the same way."""

    @classmethod
    def holding(cls, path: object) -> StoreGrowthBlocked:
        return cls(f"the store at {path} must grow its map, which waits for every transaction of this process to "
                   f"end, and this thread holds one open {HELD_OPEN_BY}; nothing was written: give the write once "
                   "that call returns")

    @classmethod
    def reading(cls, path: object) -> StoreGrowthBlocked:
        return cls(f"another process grew the map of the store at {path}, which this process takes once every "
                   f"transaction of it has ended, and this thread holds one open {HELD_OPEN_BY}: give the read once "
                   "that call returns")


class SourceChanged(EventStoreError):
    """An import source changed since it was imported; it was not merged."""


class ReplicationMismatch(InvalidArgument):
    """A replicated event does not fit this store (position, version or hash)."""


class StoreNotFound(EventStoreError):
    """There is no store at the path, and the store was opened in a way that must not create one."""


class StoreReadOnly(EventStoreError):
    """A write was attempted on a store opened read-only (explicitly, or because its files are)."""


class StoreInaccessible(EventStoreError):
    """This process cannot open or read a file of the store (its permissions forbid it, or the file system
    fails with an I/O error); nothing was changed."""


class TransactionError(EventStoreError):
    """A transaction used out of turn: a command added after it ended, a result read before it committed."""


class StoreUnavailable(EventStoreError):
    """The shared log's server cannot be reached (the store reconnects on the next call). A command that
    failed this way may or may not have been recorded: retry it with the same ``idempotency_key``."""


class FeedDiverged(EventStoreError):
    """The log a subscription follows no longer holds the last event it delivered, or the event it was resumed
    after with the hash given for it (a failover to a standby that lacked it, an older backup restored): what the log
    holds now is not a continuation of what was delivered."""


def unpack_stored(layout: struct.Struct, raw: bytes, what: str) -> tuple[Any, ...]:
    """Unpack a stored key or value of a fixed layout; one of the wrong length is damage.

    Raises:
        StoreCorrupted: ``raw`` does not have the layout's length, naming ``what`` it is.
    """
    if len(raw) != layout.size:
        raise StoreCorrupted(f"{what} is damaged ({len(raw)} bytes where {layout.size} belong)")
    return layout.unpack(raw)
