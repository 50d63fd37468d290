"""The capture of what a command wrote to the shared spaces, as the shared log's commit.

A host's replica (``replica.ReplicaStorage``) runs a command's body in a local write transaction wrapped in a
``CapturingTransaction``: the body writes the replica as on LMDB, and the wrapper notes what it wrote to the spaces
the hosts share (the log's events and redactions, the idempotency and import records) and which of those records it
looked for and did not find. ``Capture.commit`` turns that into the one ``Commit`` the shared log records, with the
versions the body decided against; the replica decides what to do with the shared log's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from .._errors import EventStoreError
from .._folding import to_recorded
from .._log import StoredEvent, record_payload
from .._stored_dictionary import StoredDictionary
from ..events import SessionForked, SessionRedacted
from ..sharedlog import Commit, NewEvent, Rewrite, SessionAppend, SharedRecord
from ..storage import ReadTransaction, Space, WriteTransaction

__all__ = ["COPIES_SESSIONS", "Capture", "CapturingTransaction", "appended"]

#: The spaces a write shares: the log, and the bookkeeping that the first writer owns across hosts.
_LOG_EVENTS = "log.events"
_SHARED_RECORDS = frozenset({"facade.idempotency", "facade.imports"})
#: Types whose payload names positions: such a write must get exactly the positions it decided with.
_NAMES_POSITIONS = frozenset({"SessionRedacted"})
#: Types whose payload copies another session's content (a fork): such a write also checks that session's version.
COPIES_SESSIONS = frozenset({"SessionForked"})


class Capture:
    """The writes of one body to the shared spaces, in order, taken from its local transaction."""

    def __init__(self, txn: WriteTransaction, dictionary: StoredDictionary,
                 version: Callable[[ReadTransaction, str], int]) -> None:
        self.txn = txn
        self._dictionary = dictionary
        self._version = version
        self.positions: list[int] = []  # the positions the body appended to the log, in order
        self.events: list[StoredEvent] = []  # those events, as the log encoded them (``CapturingTransaction.appended``)
        self.rewrites: list[Rewrite] = []
        self.records: list[SharedRecord] = []
        self.missed: list[tuple[str, bytes]] = []  # reads of shared records the replica lacks (space, key)
        self.names_own_positions = False  # a payload of the commit names a position of the commit's own events

    def plain_payload(self, record: bytes) -> bytes:
        """A local record's payload as the shared log stores it: decompressed."""
        return record_payload(record, lambda: self._dictionary.require(self.txn))

    def commit(self) -> Commit | None:
        """The shared log's commit of what was captured (``None``: the body shared nothing)."""
        if not (self.positions or self.rewrites or self.records):
            return None
        stored = self.events
        # The commit is built from what the log's append encoded rather than from decoding the records again; the
        # positions tie the two, so that a record appended some other way is refused rather than left unshared.
        if [entry.position for entry in stored] != self.positions:
            raise EventStoreError("an event record was appended without the log: it cannot reach the shared log")
        appends: list[SessionAppend] = []
        for entry in stored:
            event = NewEvent(entry.event_id, entry.encoded.type_name, entry.encoded.schema_version,
                             entry.encoded.payload, entry.payload_digest, entry.redacted)
            last = appends[-1] if appends else None
            if (last is not None and last.key == entry.session_key and last.recorded_at == entry.recorded_at
                    and last.expected_version + len(last.events) + 1 == entry.version):
                appends[-1] = attrs.evolve(last, events=(*last.events, event))
            else:
                appends.append(SessionAppend(entry.session_key, entry.version - 1, entry.recorded_at, (event,)))
        pinned = any(entry.encoded.type_name in _NAMES_POSITIONS for entry in stored)
        self.names_own_positions = pinned and any(
            position >= stored[0].position for entry in stored if entry.encoded.type_name in _NAMES_POSITIONS
            for position in _named_positions(to_recorded(entry).event))
        return Commit((*appends, *self._sources_checked(stored)), tuple(self.rewrites), tuple(self.records),
                      stored[0].position if pinned else None)

    def _sources_checked(self, stored: Sequence[StoredEvent]) -> list[SessionAppend]:
        """The sessions the commit's forks copied, each with no event and the version the body read: the shared log
        refuses the commit if another host moved one on since (a redaction whose notification had not come), so that
        the fork is decided again rather than keeping content the redaction removed. Last, after the commit's own
        events of those sessions."""
        sources = {event.source_key for event in (to_recorded(entry).event for entry in stored
                                                  if entry.encoded.type_name in COPIES_SESSIONS)
                   if isinstance(event, SessionForked)}
        versions = {key: self._version(self.txn, key) for key in sorted(sources)}
        return [SessionAppend(key, version, 0, ()) for key, version in versions.items() if version]


class CapturingTransaction:
    """A write transaction that records what its body writes to the shared spaces, then writes it locally."""

    def __init__(self, txn: WriteTransaction, capture: Capture) -> None:
        self._txn = txn
        self._capture = capture

    def get(self, space: Space, key: bytes) -> bytes | None:
        found = self._txn.get(space, key)
        if found is None and space.name in _SHARED_RECORDS:
            self._capture.missed.append((space.name, bytes(key)))
        return found

    def get_many(self, space: Space, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        return self._txn.get_many(space, keys)

    def get_each(self, space: Space, keys: Iterable[bytes]) -> list[bytes | None]:
        return self._txn.get_each(space, keys)

    def scan(self, space: Space, start: bytes | None = None, *, reverse: bool = False
             ) -> Iterator[tuple[bytes, bytes]]:
        return self._txn.scan(space, start, reverse=reverse)

    def scan_keys(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        return self._txn.scan_keys(space, start, reverse=reverse)

    def scan_values(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        return self._txn.scan_values(space, start, reverse=reverse)

    def before(self, space: Space, key: bytes) -> tuple[bytes, bytes] | None:
        return self._txn.before(space, key)

    def last(self, space: Space) -> tuple[bytes, bytes] | None:
        return self._txn.last(space)

    def count(self, space: Space) -> int:
        return self._txn.count(space)

    def snapshot_id(self) -> int:
        return self._txn.snapshot_id()

    def _shared(self, space: Space) -> bool:
        return space.name == _LOG_EVENTS or space.name in _SHARED_RECORDS

    def put(self, space: Space, key: bytes, value: bytes) -> None:
        if space.name == _LOG_EVENTS:  # the log puts only to rewrite a payload (redaction)
            self._capture.rewrites.append(Rewrite(int.from_bytes(key, "big"), self._capture.plain_payload(value)))
        elif space.name in _SHARED_RECORDS:
            self._capture.records.append(SharedRecord(space.name, bytes(key), bytes(value)))
        self._txn.put(space, key, value)

    def append(self, space: Space, key: bytes, value: bytes) -> bool:
        appended = self._txn.append(space, key, value)
        if appended and space.name == _LOG_EVENTS:
            self._capture.positions.append(int.from_bytes(key, "big"))
        return appended

    def appended(self, events: Sequence[StoredEvent]) -> None:
        """The events the log appended in this transaction, as it encoded them (``EventLog``'s ``appended``)."""
        self._capture.events.extend(events)

    def insert(self, space: Space, key: bytes, value: bytes) -> bool:
        self._refuse(space, "insert")
        return self._txn.insert(space, key, value)

    def append_many(self, space: Space, items: Iterable[tuple[bytes, bytes]]) -> None:
        if space.name != _LOG_EVENTS:
            self._refuse(space, "append_many")
            self._txn.append_many(space, items)
            return
        pairs = list(items)
        self._txn.append_many(space, pairs)  # all of them, or (raising) none
        self._capture.positions.extend(int.from_bytes(key, "big") for key, _ in pairs)

    def delete(self, space: Space, key: bytes) -> bool:
        self._refuse(space, "delete")
        return self._txn.delete(space, key)

    def delete_range(self, space: Space, start: bytes, stop: bytes) -> int:
        self._refuse(space, "delete_range")
        return self._txn.delete_range(space, start, stop)

    def clear(self, space: Space) -> None:
        self._refuse(space, "clear")
        self._txn.clear(space)

    def _refuse(self, space: Space, what: str) -> None:
        if self._shared(space):
            raise EventStoreError(f"{space.name} lives in the shared log: {what} there is not supported")


def _named_positions(event: object) -> list[int]:
    """The positions a ``SessionRedacted`` names."""
    return [position for position, _ in event.rewritten] if isinstance(event, SessionRedacted) else []


def appended(txn: WriteTransaction, events: Sequence[StoredEvent]) -> None:
    """The log's ``appended`` on a replica: a command's capturing transaction takes what the log encoded; other
    writes (a catch-up replicating the shared log's events) are not captured."""
    if isinstance(txn, CapturingTransaction):
        txn.appended(events)
