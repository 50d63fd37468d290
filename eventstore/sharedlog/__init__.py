"""The shared log: the one place several hosts append to, each keeping its reads in a local replica.

A store on a shared log decides every command against its local replica (an LMDB store fed from the shared
log), then hands the shared log what the command recorded: per session, the version it decided against and
its events, payloads rewritten by a redaction, and the bookkeeping records (idempotency results, import
receipts) that must be unique across hosts. The shared log checks each session's version, assigns the
positions and the chain links, and commits it all or nothing. ``postgres`` is the implementation.

This module holds only the protocol and its values; no database driver is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from .._errors import EventStoreError

__all__ = ["NewEvent", "SessionAppend", "Rewrite", "SharedRecord", "Commit", "Committed", "SharedEvent",
           "SharedHead", "RecordTaken", "HeadMoved", "SharedLog"]


@attrs.frozen
class NewEvent:
    """An event to append: what the chain link covers besides its place (position, version, time)."""

    event_id: bytes
    type_name: str
    schema_version: int
    payload: bytes
    payload_digest: bytes
    redacted: bool = False


@attrs.frozen
class SessionAppend:
    """Events of one session, decided against its ``expected_version``, recorded at ``recorded_at`` (µs; the
    shared log raises it to the session's latest time if a clock went back)."""

    key: str
    expected_version: int
    recorded_at: int
    events: tuple[NewEvent, ...]


@attrs.frozen
class Rewrite:
    """A redaction: the payload at ``position`` replaced, its digest and link kept."""

    position: int
    payload: bytes


@attrs.frozen
class SharedRecord:
    """A bookkeeping record (``space`` names its kind) that the first command to write it owns."""

    space: str
    key: bytes
    value: bytes


@attrs.frozen
class Commit:
    """Everything one write of a store records, committed whole or not at all."""

    appends: tuple[SessionAppend, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    records: tuple[SharedRecord, ...] = ()
    #: The position the first event must get, or ``None`` for wherever the head is. A write whose payloads
    #: name positions of its own events (an imported redaction) is pinned to the positions it decided with.
    first_position: int | None = None


@attrs.frozen
class Committed:
    """Where a commit's events went: the position of its first event and the log's head (position, hash)
    right after it."""

    first_position: int
    head_position: int
    head_hash: bytes


@attrs.frozen
class SharedEvent:
    """An event as the shared log holds it."""

    position: int
    session_key: str
    version: int
    recorded_at: int
    event_id: bytes
    type_name: str
    schema_version: int
    payload: bytes
    payload_digest: bytes
    hash: bytes
    redacted: bool


@attrs.frozen
class SharedHead:
    """The log's head (last position and its hash) and up to a batch of the events after a position."""

    position: int
    hash: bytes
    events: tuple[SharedEvent, ...]


class RecordTaken(EventStoreError):
    """A record the commit would write is already there (another host's retry got there first); nothing was
    written. ``value`` is the record as it is."""

    def __init__(self, record: SharedRecord, value: bytes) -> None:
        super().__init__(f"the {record.space} record is already taken")
        self.record = record
        self.value = value


class HeadMoved(EventStoreError):
    """A pinned commit (``Commit.first_position``) found the head elsewhere; nothing was written."""


class SharedLog(Protocol):
    """The log several hosts share. Every method is one round trip, safe to call from several threads.

    Errors: ``WrongExpectedVersion`` (a session moved on; nothing written), ``RecordTaken``, ``HeadMoved``,
    ``StoreUnavailable`` (the server cannot be reached; a commit's outcome may be unknown).
    """

    url: str

    def commit(self, commit: Commit) -> Committed:
        """Append and record ``commit``, all or nothing, checking each session's expected version."""

    def commit_many(self, commits: Sequence[Commit]) -> list[Committed | EventStoreError]:
        """Several commits in one round trip and one transaction, each checked and accepted or refused alone, in
        order: where each went, or its refusal (``WrongExpectedVersion``, ``RecordTaken``, ``HeadMoved``,
        ``StoreCorrupted``). A commit after a refused one that shares a session with it is refused too (it was
        decided against the refused one's events). ``StoreUnavailable`` is raised for them all."""

    def unflushed(self) -> AbstractContextManager[Callable[[], None]]:
        """While it lasts, this thread's ``commit_many`` may return once its commits are visible, before they are
        durable (its flush still under way): the store commits its replica meanwhile, then calls the context's
        value, which returns once every commit made within it is durable, or raises ``StoreUnavailable`` (their
        outcome unknown). Call it before acknowledging any of them, even after an error."""

    def turn(self, keys: Sequence[str]) -> AbstractContextManager[None]:
        """While it lasts, other writers' commits to these sessions wait, and this thread's commits go ahead:
        for a writer that keeps losing the race to a busy session (optimistic retries alone may starve it).

        Raises:
            StoreBusy: another writer held one of these turns longer than a writer waits for it.
        """

    def records(self, wanted: Sequence[tuple[str, bytes]]) -> list[SharedRecord]:
        """The bookkeeping records the log holds of those ``wanted`` (space, key): written by any host."""

    def read(self, after: int, limit: int) -> SharedHead:
        """The head and up to ``limit`` events after position ``after``, oldest first."""

    def wait(self, seen: int, timeout: float, listening: Callable[[], None]) -> int:
        """The head position, once it differs from ``seen`` or ``timeout`` seconds have passed. ``listening`` is
        called once the head was found at ``seen`` by a connection that listens: from then until this returns,
        any commit wakes it."""

    def heard(self, seen: int) -> int | None:
        """Without waiting for a commit, the head as the commits heard of since the last ``wait`` or ``heard`` tell
        it: ``seen`` when none came past it, or while a ``wait`` listens for the next commit with nothing come since;
        while another caller has taken a notification and not yet heard of its head, what that caller hears (waiting
        for it a moment at most); ``None`` when nothing listens (ask the server), as when this finds that the server
        closed the listening connection (a restart): the next ``wait`` listens again. A reader that calls it needs no
        thread woken at every commit."""

    def close(self) -> None:
        """Release the connections; further calls raise ``StoreClosed``."""
