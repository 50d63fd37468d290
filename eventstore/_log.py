"""The event log: append-only, hash-chained, in LMDB. It knows no projection and no event class.

Invariants (each has a named test in ``tests/test_log.py``):

1. Positions start at 1 and grow by one per event, gap-free, in commit order.
2. A session's versions start at 1 and grow by one per event of that session,
   across deletion and reuse of its key.
3. An event, its stream entry and its chain link are written in the caller's
   transaction: together or not at all.
4. Each event's hash is SHA-256 over the previous event's hash and the event's
   canonical bytes; the first event links to ``GENESIS_HASH``.
5. Recorded times never decrease along a session's stream (imports may bring
   older times than other sessions' latest, so the global order is by position).
6. An append that expects a version other than the current one writes nothing.
7. A session key maps to one stream id forever; keys of any length up to
   1 KiB work because LMDB keys hold only fixed-size ids and digests.
8. A record never changes, except that redaction may replace its payload; it
   then keeps the digest of the original payload, so the chain still verifies.

Layout (named databases): ``log.events`` position → record; ``log.streams``
stream id + version → position; ``log.keys`` SHA-256 of the key → stream id;
``log.stream_keys`` stream id → key.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from ._codec import EncodedEvent, unpack_stored
from ._errors import IncompatibleStore, StoreCorrupted, WrongExpectedVersion
from .storage import ReadTransaction, Storage, WriteTransaction

__all__ = ["EventLog", "StoredEvent", "Original", "GENESIS_HASH", "decode_record"]

#: The hash the first event links to.
GENESIS_HASH = hashlib.sha256(b"eventstore genesis").digest()

#: Version of the record layout and database set; a newer store is refused.
LOG_FORMAT = 1

_U64 = struct.Struct(">Q")
_STREAM_KEY = struct.Struct(">QQ")
# format, flags, stream id, version, recorded µs, event id, schema version,
# payload digest, hash, type name length; then the type name, then the payload.
_RECORD = struct.Struct(">BBQQq16sH32s32sH")
_CANONICAL = struct.Struct(">QQq16sHHH")
_REDACTED_FLAG = 1


@attrs.frozen
class StoredEvent:
    """An event as the log stores it: envelope fields and encoded payload."""

    position: int
    stream_id: int
    session_key: str
    version: int
    recorded_at: int  # microseconds since the epoch
    event_id: bytes
    encoded: EncodedEvent
    payload_digest: bytes
    hash: bytes
    redacted: bool = False


@attrs.frozen
class Original:
    """What a replicated event keeps from its source store."""

    event_id: bytes
    payload_digest: bytes
    redacted: bool


def stream_runs(entries: Iterable[StoredEvent]) -> Iterator[tuple[int, Iterator[StoredEvent]]]:
    """Stored events in runs of one session's: (stream id, its events), as a read model applies them."""
    return itertools.groupby(entries, key=lambda entry: entry.stream_id)


def chain_hash(previous: bytes, position: int, key: str, version: int, recorded_at: int,
               event_id: bytes, encoded: EncodedEvent, payload_digest: bytes) -> bytes:
    """The hash linking an event to the one before it (invariant 4)."""
    type_bytes = encoded.type_name.encode()
    key_bytes = key.encode()
    canonical = _CANONICAL.pack(position, version, recorded_at, event_id, encoded.schema_version,
                                len(type_bytes), len(key_bytes))
    return hashlib.sha256(previous + canonical + type_bytes + key_bytes + payload_digest).digest()


class EventLog:
    """Append and read events inside transactions the caller owns."""

    def __init__(self, storage: Storage) -> None:
        self._events = storage.space("log.events")
        self._streams = storage.space("log.streams")
        self._keys = storage.space("log.keys")
        self._stream_keys = storage.space("log.stream_keys")
        self._meta = storage.space("log.meta")
        if storage.readonly:
            with storage.read() as txn:
                self._check_format(txn)
        else:
            storage.write(self._mark_format)

    def _mark_format(self, txn: WriteTransaction) -> None:
        if txn.get(self._meta, b"format") is None:
            txn.put(self._meta, b"format", str(LOG_FORMAT).encode())
        else:
            self._check_format(txn)

    def _check_format(self, txn: ReadTransaction) -> None:
        stored = txn.get(self._meta, b"format")
        if stored is None:
            return
        if not re.fullmatch(rb"[1-9][0-9]{0,40}", bytes(stored)):
            raise StoreCorrupted(f"the store's format marker is damaged ({bytes(stored)[:20]!r})")
        if int(stored) > LOG_FORMAT:
            raise IncompatibleStore(
                f"the store has log format {int(stored)}, newer than this code's {LOG_FORMAT}; "
                "upgrade the eventstore package"
            )

    # -- streams ------------------------------------------------------------------

    def stream_id(self, txn: ReadTransaction, key: str) -> int | None:
        """The stream id of ``key``, or ``None`` if the key never had an event.

        Raises:
            StoreCorrupted: the key index leads to another session's stream.
        """
        found = txn.get(self._keys, hashlib.sha256(key.encode()).digest())
        if found is None:
            return None
        if len(found) != _U64.size:
            raise StoreCorrupted(f"the key index entry of {key!r} is damaged")
        stream_id: int = _U64.unpack(found)[0]
        if self.stream_key(txn, stream_id) != key:  # one more read: a damaged index must not mix sessions up
            raise StoreCorrupted(f"the key index leads {key!r} to another session's stream")
        return stream_id

    def key_index_problems(self, txn: ReadTransaction) -> list[str]:
        """Where the key index and the stream keys disagree (for ``verify``)."""
        problems = []
        for stream_id, key in self.stream_ids(txn):
            try:
                found = self.stream_id(txn, key)
            except StoreCorrupted as exc:
                problems.append(str(exc))
                continue
            if found != stream_id:
                problems.append(f"the key index does not lead {key!r} to its stream {stream_id}")
        keys, streams = txn.count(self._keys), txn.count(self._stream_keys)
        if keys != streams:
            problems.append(f"the key index has {keys} entries for {streams} session keys")
        return problems

    def stream_key(self, txn: ReadTransaction, stream_id: int) -> str:
        """The session key of a stream id."""
        # No cache: a write transaction that later aborts could fill it with a key that never existed.
        raw = txn.get(self._stream_keys, _U64.pack(stream_id))
        if raw is None:
            raise StoreCorrupted(f"stream {stream_id} has no session key")
        try:
            return bytes(raw).decode()
        except UnicodeDecodeError:
            raise StoreCorrupted(f"the session key of stream {stream_id} is damaged") from None

    def stream_version(self, txn: ReadTransaction, stream_id: int) -> int:
        """The version of the stream's latest event (0 for none)."""
        found = txn.before(self._streams, _STREAM_KEY.pack(stream_id + 1, 0))
        if found is None:
            return 0
        found_stream, version = unpack_stored(_STREAM_KEY, found[0], "a key of the stream index")
        return version if found_stream == stream_id else 0

    def _create_stream(self, txn: WriteTransaction, key: str) -> int:
        last = txn.last(self._stream_keys)
        stream_id = unpack_stored(_U64, last[0], "the last stream id")[0] + 1 if last else 1
        txn.put(self._keys, hashlib.sha256(key.encode()).digest(), _U64.pack(stream_id))
        txn.put(self._stream_keys, _U64.pack(stream_id), key.encode())
        return stream_id

    # -- appending ------------------------------------------------------------------

    def head(self, txn: ReadTransaction) -> tuple[int, bytes, int]:
        """(position, hash, recorded time) of the latest event; (0, genesis, 0) for an empty log."""
        last = txn.last(self._events)
        if last is None:
            return 0, GENESIS_HASH, 0
        # Only the envelope: appending must not depend on decoding (or re-hashing) the last payload.
        try:
            fields = _RECORD.unpack_from(last[1])
            return _U64.unpack(last[0])[0], fields[8], fields[4]
        except struct.error:
            raise StoreCorrupted("the last event record is damaged") from None

    def append(self, txn: WriteTransaction, key: str, events: Sequence[EncodedEvent], recorded_at: int,
               expected_version: int | None = None, originals: Sequence[Original] | None = None
               ) -> list[StoredEvent]:
        """Append ``events`` to the stream of ``key``; return them as stored.

        ``recorded_at`` (µs) is raised to the stream's latest recorded time if the
        clock went back. Each event gets a new random id, unless ``originals``
        (replication from another store) gives its id, payload digest and redaction flag.

        Raises:
            WrongExpectedVersion: ``expected_version`` is given and is not the stream's version.
        """
        stream_id = self.stream_id(txn, key)
        version = 0 if stream_id is None else self.stream_version(txn, stream_id)
        if expected_version is not None and expected_version != version:
            raise WrongExpectedVersion(key, expected_version, version)
        if not events:
            return []
        if stream_id is None:
            stream_id = self._create_stream(txn, key)
        if version:
            latest = self.stream_position(txn, stream_id, version)
            if latest is None:
                raise StoreCorrupted(f"stream {stream_id}: version {version} is missing from the stream index")
            recorded_at = max(recorded_at, self._recorded_at(txn, latest))
        position, previous_hash, _ = self.head(txn)
        stored_events = []
        for index, encoded in enumerate(events):
            position += 1
            version += 1
            if originals is None:
                event_id, digest, flags = os.urandom(16), hashlib.sha256(encoded.payload).digest(), 0
            else:
                original = originals[index]
                event_id, digest = original.event_id, original.payload_digest
                flags = _REDACTED_FLAG if original.redacted else 0
            link = chain_hash(previous_hash, position, key, version, recorded_at, event_id, encoded, digest)
            type_bytes = encoded.type_name.encode()
            record = _RECORD.pack(LOG_FORMAT, flags, stream_id, version, recorded_at, event_id,
                                  encoded.schema_version, digest, link, len(type_bytes))
            if not txn.append(self._events, _U64.pack(position), record + type_bytes + encoded.payload):
                raise StoreCorrupted(f"position {position} is already taken")
            txn.put(self._streams, _STREAM_KEY.pack(stream_id, version), _U64.pack(position))
            stored_events.append(StoredEvent(position, stream_id, key, version, recorded_at, event_id,
                                             encoded, digest, link, bool(flags)))
            previous_hash = link
        return stored_events

    # -- reading --------------------------------------------------------------------

    def read_stream(self, txn: ReadTransaction, stream_id: int, after_version: int = 0,
                    up_to_version: int | None = None) -> Iterator[StoredEvent]:
        """The stream's events with ``after_version < version <= up_to_version``, oldest first."""
        keys: dict[int, str] = {}
        for position in self._stream_positions(txn, stream_id, after_version, up_to_version):
            yield self._read(txn, position, keys)

    def stream_type_names(self, txn: ReadTransaction, stream_id: int, after_version: int, up_to_version: int
                          ) -> Iterator[str]:
        """The type names of the stream's events with ``after_version < version <= up_to_version``.

        Reads only the records' envelopes: no payload is copied, checked or decoded.
        """
        for position in self._stream_positions(txn, stream_id, after_version, up_to_version):
            raw = txn.get(self._events, _U64.pack(position)) or b""  # a missing record fails to unpack, as damage
            try:
                fields = _RECORD.unpack_from(raw)
                if fields[0] != LOG_FORMAT:
                    raise ValueError(f"record layout {fields[0]}")
                yield bytes(raw[_RECORD.size:_RECORD.size + fields[-1]]).decode()
            except (struct.error, ValueError, UnicodeDecodeError):
                raise StoreCorrupted(f"position {position}: the event record is missing or damaged") from None

    def _stream_positions(self, txn: ReadTransaction, stream_id: int, after_version: int,
                          up_to_version: int | None) -> Iterator[int]:
        for raw_key, raw_position in txn.scan(self._streams, _STREAM_KEY.pack(stream_id, after_version + 1)):
            found_stream, version = unpack_stored(_STREAM_KEY, raw_key, "a key of the stream index")
            if found_stream != stream_id or (up_to_version is not None and version > up_to_version):
                return
            yield unpack_stored(_U64, raw_position, f"the stream index entry of stream {stream_id} "
                                                    f"version {version}")[0]

    def read_position(self, txn: ReadTransaction, position: int) -> StoredEvent:
        """The event at ``position``."""
        return self._read(txn, position, {})

    def _read(self, txn: ReadTransaction, position: int, keys: dict[int, str]) -> StoredEvent:
        raw = txn.get(self._events, _U64.pack(position))
        if raw is None:
            raise StoreCorrupted(f"position {position}: the event is missing")
        return self._decode(txn, position, raw, keys)

    def read_all(self, txn: ReadTransaction, after_position: int = 0, limit: int | None = None
                 ) -> Iterator[StoredEvent]:
        """Events of every stream in global order, after ``after_position``."""
        keys: dict[int, str] = {}
        for count, (raw_key, raw) in enumerate(txn.scan(self._events, _U64.pack(after_position + 1))):
            if limit is not None and count >= limit:
                return
            yield self._decode(txn, unpack_stored(_U64, raw_key, "a position in the event table")[0], raw, keys)

    def _recorded_at(self, txn: ReadTransaction, position: int) -> int:
        raw = txn.get(self._events, _U64.pack(position)) or b""  # a missing record fails to unpack, as damage
        try:
            recorded: int = _RECORD.unpack_from(raw)[4]
            return recorded
        except struct.error:
            raise StoreCorrupted(f"position {position}: the event record is missing or damaged") from None

    def redact(self, txn: WriteTransaction, position: int, payload: bytes) -> None:
        """Replace the payload at ``position``, keeping its digest, hash and everything else (invariant 8)."""
        raw = txn.get(self._events, _U64.pack(position))
        if raw is None:
            raise StoreCorrupted(f"position {position}: the event is missing")
        type_end = _RECORD.size + _RECORD.unpack_from(raw)[-1]
        flagged = raw[:1] + bytes([raw[1] | _REDACTED_FLAG]) + raw[2:type_end]
        txn.put(self._events, _U64.pack(position), flagged + payload)

    def stream_position(self, txn: ReadTransaction, stream_id: int, version: int) -> int | None:
        """The global position of a stream's ``version``-th event, if the stream index has it."""
        raw = txn.get(self._streams, _STREAM_KEY.pack(stream_id, version))
        return None if raw is None else unpack_stored(_U64, raw, f"the stream index entry of stream {stream_id} "
                                                                 f"version {version}")[0]

    def stream_ids(self, txn: ReadTransaction) -> Iterator[tuple[int, str]]:
        """Every stream id with its session key, in id order."""
        for raw_id, raw_key in txn.scan(self._stream_keys):
            try:
                yield _U64.unpack(raw_id)[0], bytes(raw_key).decode()
            except (struct.error, UnicodeDecodeError):
                raise StoreCorrupted("the stream keys are damaged") from None

    def count(self, txn: ReadTransaction) -> tuple[int, int]:
        """(entries in the event table, entries in the stream index)."""
        return txn.count(self._events), txn.count(self._streams)

    def records(self, txn: ReadTransaction) -> Iterator[tuple[int, StoredEvent | StoreCorrupted]]:
        """Every record by its stored position, damaged ones as the error they raise (for ``verify``)."""
        keys: dict[int, str] = {}
        for raw_key, raw in txn.scan(self._events):
            position = _U64.unpack(raw_key)[0] if len(raw_key) == _U64.size else -1
            try:
                yield position, self._decode(txn, position, raw, keys)
            except StoreCorrupted as exc:
                yield position, exc

    def _decode(self, txn: ReadTransaction, position: int, raw: bytes, keys: dict[int, str]) -> StoredEvent:
        """Decode a record; ``keys`` remembers session keys for the caller's one transaction."""

        def key_of(stream_id: int) -> str:
            key = keys.get(stream_id)
            if key is None:
                key = keys[stream_id] = self.stream_key(txn, stream_id)
            return key

        return decode_record(position, raw, key_of)


def decode_record(position: int, raw: bytes, key_of: Callable[[int], str]) -> StoredEvent:
    """Decode the record stored at ``position``; ``key_of`` gives a stream id's session key.

    Raises:
        StoreCorrupted: the record is damaged, its payload does not match its digest, or ``key_of`` raised it.
    """
    try:
        (layout, flags, stream_id, version, recorded_at, event_id, schema_version,
         digest, link, type_length) = _RECORD.unpack_from(raw)
        if layout != LOG_FORMAT:
            raise ValueError(f"record layout {layout}")
        if flags & ~_REDACTED_FLAG:
            raise ValueError(f"unknown flags {flags:#x}")
        start = _RECORD.size + type_length
        type_name = bytes(raw[_RECORD.size:start]).decode()
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupted(f"position {position}: the event record is damaged ({exc})") from None
    encoded = EncodedEvent(type_name, schema_version, bytes(raw[start:]))
    if not flags & _REDACTED_FLAG and hashlib.sha256(encoded.payload).digest() != digest:
        raise StoreCorrupted(f"position {position}: the payload does not match its digest (it was changed)")
    try:
        key = key_of(stream_id)
    except StoreCorrupted as exc:
        raise StoreCorrupted(f"position {position}: {exc}") from None
    return StoredEvent(position, stream_id, key, version, recorded_at, event_id, encoded, digest, link,
                       bool(flags & _REDACTED_FLAG))
