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
9. The chain hashes the canonical (uncompressed) payload and the type's name:
   how a record is stored (layout 1 or 2, compressed or not, its type named
   or coded) changes no hash.

Layout (named databases): ``log.events`` position → record; ``log.streams``
stream id + version → position, or a run of them: an append of several events
puts one entry, at its first version, holding the first position and the
count (its events have consecutive versions at consecutive positions), so a
20-message ``append_many`` takes one entry instead of 20; ``log.keys`` SHA-256 of the key → stream id;
``log.stream_keys`` stream id → key; ``log.meta`` the format marker and the
store's compression dictionary (``dictionary.id``, ``dictionary``, ``dictionary.sha256``,
``dictionary.copy``, and what it learnt from, ``dictionary.learnt`` and ``dictionary.learnt_redacted``:
``_stored_dictionary.StoredDictionary``).

Records have two layouts (docs/space.md). Layout 1 stores the payload
as it is, with its digest. Layout 2, written once the store has trained its
compression dictionary (at ``TRAINING_EVENTS`` events; ``_compression``), is
compact: 32-bit stream id and version, a one-byte schema version and type name
length, no digest (it is the SHA-256 of the payload, recomputed when read)
unless redaction or replication gave one that differs, and the payload as a
zstd frame with a checksum, so a damaged payload is caught on every read as in
layout 1. A layout 2 record of a type ``TYPE_CODES`` lists (flag 4) holds the
type's one-byte code where the name's length was, and no name: 15 bytes fewer
for a ``MessageAppended``; any other type's name is spelled out. Both layouts,
coded or not, are read. A store this version creates, or gives a dictionary,
is marked format 2, which older code refuses; one that trains a second
dictionary (its first was trained on too alike payloads) is marked format 3,
one whose stream index holds a run (``_RUN``) format 4, and one holding a coded
record format 5.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import struct
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from operator import add, attrgetter, or_
from typing import NamedTuple, cast

import attrs
import zstandard

from ._codec import EncodedEvent
from ._compression import FRAME_MAGIC, TRAINING_EVENTS, TRAINING_SAMPLE_BYTES, Dictionary, train
from ._errors import DictionaryDamaged, IncompatibleStore, StoreCorrupted, WrongExpectedVersion, unpack_stored
from ._stored_dictionary import DictionaryReplacement, StoredDictionary
from .storage import ReadTransaction, Space, SpaceRewrite, Storage, WriteTransaction

__all__ = ["EventLog", "StoredEvent", "LoggedEvent", "Original", "StreamTip", "GENESIS_HASH", "TYPE_CODES",
           "decode_record"]

#: The hash the first event links to.
GENESIS_HASH = hashlib.sha256(b"eventstore genesis").digest()

#: Version of the record layouts and database set; a newer store is refused. Format 2 (a store with a
#: compression dictionary, whose records may have layout 2) is marked when the dictionary is stored; format 3
#: (frames may name one of several dictionaries) when a second dictionary is (``Dictionary.log_format``); format 4
#: (the stream index holds runs of versions) when the first run is written; format 5 (records may name their type
#: by its code) with the first coded record.
LOG_FORMAT = 5
#: The format of a store whose stream index holds a run (an entry of several events).
_RUNS_FORMAT = 4
#: The format of a store holding a record that names its type by its code (``TYPE_CODES``).
_CODED_FORMAT = 5
#: The format a store is marked with when it is created.
_NEW_FORMAT = 2

#: The one-byte code a layout 2 record stores for its event type instead of the type's name (flag 4), part of the
#: stored format. Append-only: a code once given never changes meaning, nor is it given again. A type missing here
#: is spelled out, as every record before format 5 spelled its type. A type given a code later needs a new format
#: marker too, written with its first record, or older code would read that record's code as damage.
TYPE_CODES: Mapping[str, int] = {
    "MessageAppended": 1,
    "LastMessageRemoved": 2,
    "LastMessageReplaced": 3,
    "MessagesCleared": 4,
    "MessagesReplaced": 5,
    "SessionRenamed": 6,
    "SessionStateChanged": 7,
    "SessionDeleted": 8,
    "SessionRestored": 9,
    "SessionRedacted": 10,
    "SessionForked": 11,
}
_TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}

_U64 = struct.Struct(">Q")
_STREAM_KEY = struct.Struct(">QQ")
#: A stream index entry of several events: the position of the first, and how many there are. An entry of one
#: event holds its position alone (``_U64``), as every entry did before format 4.
_RUN = struct.Struct(">QI")
# format, flags, stream id, version, recorded µs, event id, schema version,
# payload digest, hash, type name length; then the type name, then the payload.
_RECORD = struct.Struct(">BBQQq16sH32s32sH")
# Layout 2: format, flags, stream id, version, recorded µs, event id, schema version, hash, type name length (or,
# flagged, the type's code); then the payload digest if flagged, the type name unless coded, and the payload as a
# zstd frame.
_RECORD_2 = struct.Struct(">BBIIq16sB32sB")
#: The fields of a record ``read_logged`` reads, in one unpack: flags, stream id, version, recorded µs, schema
#: version, (layout 1: payload digest,) type name length (or code); the rest skipped.
_LOGGED_1 = struct.Struct(">xBQQq16xH32s32xH")
_LOGGED_2 = struct.Struct(">xBIIq16xB32xB")
#: Builds a ``LoggedEvent`` (or an appended ``StoredEvent``) from a tuple in C, without the Python ``__new__`` a
#: named tuple's call runs.
_new_logged = tuple.__new__
#: The canonical bytes a chain link hashes, up to the type name's and key's lengths (``_link_names``): the previous
#: hash, position, version, recorded µs, event id and schema version.
_LINKED = struct.Struct(">32sQQq16sH")
_NAME_LENGTHS = struct.Struct(">HH")
_REDACTED_FLAG = 1
_DIGEST_FLAG = 2  # layout 2: the digest is stored (it is not the SHA-256 of the payload)
_CODED_FLAG = 4  # layout 2: the type name's length byte holds the type's code instead, and no name follows
_FLAGS = {1: _REDACTED_FLAG, 2: _REDACTED_FLAG | _DIGEST_FLAG | _CODED_FLAG}  # the flags each layout knows
_DIGEST_BYTES = 32
_U32_LIMIT = 1 << 32


class StoredEvent(NamedTuple):
    """An event as the log stores it: envelope fields and encoded payload. A tuple: every append and read of an
    event builds one."""

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


class LoggedEvent(NamedTuple):
    """A stored event as a read model that reads few payloads sees it (``EventLog.read_logged``): the record's
    header, and its plain payload only for the types asked for. A tuple: a catch-up reads millions."""

    position: int
    stream_id: int
    version: int
    recorded_at: int  # microseconds since the epoch
    type_name: str
    schema_version: int
    payload: bytes | None  # None: a type not asked for (its payload was not read)


class StreamTip(NamedTuple):
    """Where a session's stream stands in one transaction: its id (``None`` for a key that never had an event),
    its latest version and that event's position (0 and 0 for none). A command reads it once and hands it to
    ``EventLog.append``, which then reads none of it again."""

    stream_id: int | None
    version: int
    position: int


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
    return _link(previous, position, key.encode(), version, recorded_at, event_id, encoded, payload_digest)


def _link(previous: bytes, position: int, key_bytes: bytes, version: int, recorded_at: int,
          event_id: bytes, encoded: EncodedEvent, payload_digest: bytes) -> bytes:
    """``chain_hash`` of a key given as UTF-8 (an append encodes it once for all its events)."""
    return hashlib.sha256(_LINKED.pack(previous, position, version, recorded_at, event_id, encoded.schema_version)
                          + _link_names(encoded.type_name.encode(), key_bytes) + payload_digest).digest()


def _link_names(type_bytes: bytes, key_bytes: bytes) -> bytes:
    """What the canonical bytes hold after their fixed fields, up to the payload digest: the lengths and UTF-8 of
    the type name and the session key (the same for every event of one type in an append)."""
    return _NAME_LENGTHS.pack(len(type_bytes), len(key_bytes)) + type_bytes + key_bytes


@functools.lru_cache(maxsize=64)
def _linked(names_size: int) -> struct.Struct:
    """``_LINKED`` followed by names (``_link_names``) of this size and a payload digest: a link's canonical bytes
    packed by one call, not joined by two concatenations an event."""
    return struct.Struct(f"{_LINKED.format}{names_size}s{_DIGEST_BYTES}s")


@functools.lru_cache(maxsize=1)
def _key_digest(key: str) -> bytes:
    """The key index's key for a session key: kept for the last key, which a new session's command hashes twice
    (its tip finds no stream, then its append creates one)."""
    return hashlib.sha256(key.encode()).digest()


#: The most events whose ids one kept ``struct`` splits: a larger command (an import's) slices them, so the kept
#: structs (about 35 bytes an event each) stay under a megabyte together.
_SPLIT_BY_STRUCT = 256


@functools.lru_cache(maxsize=64)
def _split_ids(count: int) -> struct.Struct:
    """Splits ``count`` event ids drawn together into each event's, in one C call."""
    return struct.Struct("16s" * count)


def _new_event_ids(count: int) -> Sequence[bytes]:
    """``count`` fresh random event ids, drawn in one system call."""
    drawn = os.urandom(16 * count)
    if count <= _SPLIT_BY_STRUCT:
        return _split_ids(count).unpack(drawn)
    return [drawn[start:start + 16] for start in range(0, len(drawn), 16)]


def _link_form(names: bytes) -> tuple[Callable[..., bytes], bytes]:
    """How an append packs the canonical bytes of its events of one type: ``_linked``'s pack, and the names."""
    return _linked(len(names)).pack, names


class _TypeForm(NamedTuple):
    """What a record stores of its event type, worked out once a type rather than once an event."""

    name: bytes  # the type's name in UTF-8, as the chain hashes it
    fits_compact: bool  # whether layout 2 can hold it (a name spelled out there has at most 255 bytes)
    coded_flag: int  # ``_CODED_FLAG`` for a type ``TYPE_CODES`` lists, else 0
    name_byte: int  # the layout 2 header's last byte: the type's code, or its name's length
    stored_name: bytes  # what a layout 2 record holds of the name after its header: nothing when coded


def _type_form(type_name: str) -> _TypeForm:
    name = type_name.encode()
    code = TYPE_CODES.get(type_name)
    if code is not None:
        return _TypeForm(name, True, _CODED_FLAG, code, b"")
    return _TypeForm(name, len(name) <= 0xFF, 0, len(name), name)


class _Envelope(NamedTuple):
    """A record's fields up to its payload, whichever its layout (a tuple: every read of an event builds one)."""

    layout: int
    flags: int
    stream_id: int
    version: int
    recorded_at: int
    event_id: bytes
    schema_version: int
    digest: bytes | None  # None in layout 2 when it is the payload's SHA-256
    hash: bytes
    type_name: str
    payload_at: int


def _envelope(raw: bytes) -> _Envelope:
    """The envelope of a stored record.

    Raises:
        struct.error, ValueError, UnicodeDecodeError: the record is damaged.
    """
    layout = raw[0] if raw else 0
    if layout == 2:
        (_, flags, stream_id, version, recorded_at, event_id, schema_version, link,
         type_length) = _RECORD_2.unpack_from(raw)
        at = _RECORD_2.size
        digest = None
        if flags & _DIGEST_FLAG:
            digest = bytes(raw[at:at + _DIGEST_BYTES])
            at += _DIGEST_BYTES
    elif layout == 1:
        (_, flags, stream_id, version, recorded_at, event_id, schema_version, digest, link,
         type_length) = _RECORD.unpack_from(raw)
        at = _RECORD.size
    else:
        raise ValueError(f"record layout {layout}")
    if flags & ~_FLAGS[layout]:
        raise ValueError(f"unknown flags {flags:#x}")
    if flags & _CODED_FLAG:
        type_name = _coded_name(type_length)
        type_length = 0
    else:
        type_name = bytes(raw[at:at + type_length]).decode()
        if len(type_name.encode()) != type_length:
            raise ValueError("the record ends inside its type name")
    return _Envelope(layout, flags, stream_id, version, recorded_at, event_id, schema_version, digest, link,
                     type_name, at + type_length)


def _coded_name(code: int) -> str:
    """The type name a coded record's ``code`` stands for.

    Raises:
        ValueError: no type has that code (the byte was changed, or a newer version wrote it).
    """
    name = _TYPE_NAMES.get(code)
    if name is None:
        raise ValueError(f"unknown event type code {code}")
    return name


def _checked_envelope(raw: bytes, what: str) -> _Envelope:
    """``_envelope``, a damaged record raising ``StoreCorrupted`` that begins with ``what``."""
    try:
        return _envelope(raw)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupted(f"{what} is damaged ({exc})") from None


def record_hash(raw: bytes) -> bytes:
    """The chain hash a stored record carries, whichever its layout.

    Raises:
        StoreCorrupted: the record is damaged.
    """
    return _checked_envelope(raw, "an event record").hash


def record_payload(raw: bytes, dictionary_of: Callable[[], Dictionary]) -> bytes:
    """The plain payload of a stored record (``dictionary_of``: the store's dictionary, for a compressed one).

    Raises:
        StoreCorrupted: the record is damaged.
    """
    envelope = _checked_envelope(raw, "an event record")
    stored = bytes(raw[envelope.payload_at:])
    return stored if envelope.layout == 1 else dictionary_of().expand(stored, "the payload")


def _digest_to_store(digest: bytes, payload: bytes) -> bytes | None:
    """What a layout 2 record stores of the payload digest ``digest``: nothing (``None``) when it is the SHA-256
    of ``payload``, the digest otherwise (a redacted or replicated payload)."""
    return None if digest == hashlib.sha256(payload).digest() else digest


def _plain_record(flags: int, stream_id: int, version: int, recorded_at: int, event_id: bytes,
                  encoded: EncodedEvent, digest: bytes, link: bytes) -> bytes:
    """A record in layout 1."""
    type_bytes = encoded.type_name.encode()
    return _RECORD.pack(1, flags, stream_id, version, recorded_at, event_id, encoded.schema_version, digest,
                        link, len(type_bytes)) + type_bytes + encoded.payload


def _recompressed(position: int, raw: bytes, replacement: DictionaryReplacement) -> bytes:
    """The record stored at ``position`` with its payload compressed by ``replacement``'s new dictionary, or in
    layout 1 without one; the envelope, digest and hash stay (they are over the plain payload).

    Raises:
        StoreCorrupted: the record is damaged.
    """
    envelope = _checked_envelope(raw, f"position {position}: the event record")
    if envelope.layout == 1:
        return raw
    payload = replacement.old.expand(bytes(raw[envelope.payload_at:]), f"the payload at position {position}")
    if replacement.new is not None:
        return bytes(raw[:envelope.payload_at]) + replacement.new.compress(payload)
    digest = hashlib.sha256(payload).digest() if envelope.digest is None else envelope.digest
    return _plain_record(envelope.flags & _REDACTED_FLAG, envelope.stream_id, envelope.version, envelope.recorded_at,
                         envelope.event_id, EncodedEvent(envelope.type_name, envelope.schema_version, payload),
                         digest, envelope.hash)


def _compact_record(flags: int, stream_id: int, version: int, recorded_at: int, event_id: bytes,
                    encoded: EncodedEvent, stored_digest: bytes | None, link: bytes, dictionary: Dictionary
                    ) -> bytes | None:
    """A record in layout 2 (``stored_digest`` from ``_digest_to_store``), its type coded when ``TYPE_CODES`` has
    it (the caller marks the store ``_CODED_FORMAT``: ``_is_coded``), or ``None`` when its fields do not fit that
    layout (layout 1 takes any). ``EventLog.append`` builds the same bytes with what a run shares worked out once."""
    form = _type_form(encoded.type_name)
    if not (form.fits_compact and _fits_compact(stream_id, version, encoded.schema_version)):
        return None
    if stored_digest is None:
        stored_digest = b""
    else:
        flags |= _DIGEST_FLAG
    return _RECORD_2.pack(2, flags | form.coded_flag, stream_id, version, recorded_at, event_id,
                          encoded.schema_version, link, form.name_byte) + stored_digest + form.stored_name + \
        dictionary.compress(encoded.payload)


def _fits_compact(stream_id: int, version: int, schema_version: int) -> bool:
    """Whether layout 2's narrower fields hold these."""
    return stream_id < _U32_LIMIT and version < _U32_LIMIT and schema_version <= 0xFF


def _record(flags: int, stream_id: int, version: int, recorded_at: int, event_id: bytes, encoded: EncodedEvent,
            digest: bytes, stored_digest: bytes | None, link: bytes, dictionary: Dictionary | None) -> bytes:
    """A record in layout 2 where its fields fit and the store has its dictionary, else in layout 1 (``digest``: the
    payload digest, ``stored_digest``: what layout 2 stores of it)."""
    record = None if dictionary is None else _compact_record(flags, stream_id, version, recorded_at, event_id,
                                                             encoded, stored_digest, link, dictionary)
    return _plain_record(flags, stream_id, version, recorded_at, event_id, encoded, digest, link) if record is None \
        else record


def _is_coded(record: bytes) -> bool:
    """Whether a record just built names its type by its code (its store must be marked ``_CODED_FORMAT``)."""
    return record[0] == 2 and bool(record[1] & _CODED_FLAG)


#: A well-formed format marker (compiled once: an append of coded records reads the marker).
_FORMAT_MARKER = re.compile(rb"[1-9][0-9]{0,40}")


def _stored_format(txn: ReadTransaction, meta: Space) -> int | None:
    """The store's format marker, or ``None`` for a store made before markers.

    Raises:
        StoreCorrupted: the marker is not a number.
    """
    stored = txn.get(meta, b"format")
    if stored is None:
        return None
    if not _FORMAT_MARKER.fullmatch(bytes(stored)):
        raise StoreCorrupted(f"the store's format marker is damaged ({bytes(stored)[:20]!r})")
    return int(stored)


def _raise_format(txn: WriteTransaction, meta: Space, log_format: int) -> None:
    """Mark the store with ``log_format`` unless it already has a later one (formats only grow)."""
    if (_stored_format(txn, meta) or 0) < log_format:
        txn.put(meta, b"format", str(log_format).encode())


def _check_led(stream_id: int, version: int, position: int, found_stream: int, found_version: int) -> None:
    """Raise ``StoreCorrupted`` unless the record the stream index leads ``stream_id``'s ``version`` to, at
    ``position``, is that event: a damaged entry (a run's count, a position) must not hand a session another's
    events, nor have a command append after them or redact them."""
    if (found_stream, found_version) != (stream_id, version):
        raise StoreCorrupted(f"the stream index is damaged: it leads stream {stream_id} version {version} to "
                             f"position {position}, which holds stream {found_stream} version {found_version}")


def _run(raw: bytes, stream_id: int, first: int) -> tuple[int, int]:
    """The position of the first event of a stream index entry, and how many consecutive events it holds."""
    where = f"the stream index entry of stream {stream_id} version {first}"
    if len(raw) == _U64.size:
        return _U64.unpack(raw)[0], 1
    position, count = unpack_stored(_RUN, raw, where)
    if count < 2:
        raise StoreCorrupted(f"{where} is damaged (a run of {count} events)")
    return position, count


def _stored_key(raw: bytes, stream_id: int) -> str:
    """The session key stored for a stream; one that is not text, or empty (no command stores such a key, and the
    read models cannot keep it), is damage."""
    try:
        key = bytes(raw).decode()
    except UnicodeDecodeError:
        key = ""
    if not key:
        raise StoreCorrupted(f"the session key of stream {stream_id} is damaged")
    return key


def _head_of(position: int, last: _Envelope | None) -> tuple[int, bytes, int]:
    """``EventLog.head`` of the last record's position and envelope."""
    return (0, GENESIS_HASH, 0) if last is None else (position, last.hash, last.recorded_at)


class EventLog:
    """Append and read events inside transactions the caller owns.

    Args:
        storage: the engine whose spaces hold the log.
        appended: called after each append with its transaction and the events as the log encoded them (a host's
            replica hands them to the shared log rather than decoding its records again).
    """

    def __init__(self, storage: Storage,
                 appended: Callable[[WriteTransaction, Sequence[StoredEvent]], None] | None = None) -> None:
        self._appended = appended
        # The head ``head_before_append`` read and the transaction it read it in: the append that follows there
        # takes it rather than reading it again (a replica reads it before its command decides). Taken once, by the
        # next append whichever transaction it is in, so it is never older than the transaction's own appends; a
        # redaction in between keeps every field of the envelope the append uses (invariant 8).
        self._read_head: tuple[WriteTransaction, int, _Envelope | None] | None = None
        self._events = storage.space("log.events")
        self._streams = storage.space("log.streams")
        self._keys = storage.space("log.keys")
        self._stream_keys = storage.space("log.stream_keys")
        self._meta = storage.space("log.meta")
        self.dictionary = StoredDictionary(self._meta)
        if storage.readonly:
            with storage.read() as txn:
                self._check_format(txn)
        else:
            storage.write(self._mark_format)

    def _mark_format(self, txn: WriteTransaction) -> None:
        if txn.get(self._meta, b"format") is None:
            txn.put(self._meta, b"format", str(_NEW_FORMAT).encode())
        else:
            self._check_format(txn)
            self.dictionary.secure(txn)

    def _check_format(self, txn: ReadTransaction) -> None:
        stored = _stored_format(txn, self._meta)
        if stored is not None and stored > LOG_FORMAT:
            raise IncompatibleStore(
                f"the store has log format {stored}, newer than this code's {LOG_FORMAT}; "
                "upgrade the eventstore package"
            )

    # -- streams ------------------------------------------------------------------

    def stream_id(self, txn: ReadTransaction, key: str) -> int | None:
        """The stream id of ``key``, or ``None`` if the key never had an event.

        Raises:
            StoreCorrupted: the key index leads to another session's stream.
        """
        found = txn.get(self._keys, _key_digest(key))
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
        return _stored_key(raw, stream_id)

    def tip(self, txn: ReadTransaction, key: str) -> StreamTip:
        """Where the stream of ``key`` stands: its id, latest version and that event's position (one read of the
        stream index after the key's).

        Raises:
            StoreCorrupted: the key index leads to another session's stream.
        """
        stream_id = self.stream_id(txn, key)
        found = None if stream_id is None else self._entry_before(txn, stream_id, None)
        if found is None:
            return StreamTip(stream_id, 0, 0)
        first, position, count = found
        return StreamTip(stream_id, first + count - 1, position + count - 1)

    def stream_version(self, txn: ReadTransaction, stream_id: int) -> int:
        """The version of the stream's latest event (0 for none)."""
        found = self._entry_before(txn, stream_id, None)
        return 0 if found is None else found[0] + found[2] - 1

    def held_stream_version(self, txn: ReadTransaction, stream_id: int) -> int:
        """``stream_version``, checked against the log, for work done a version at a time: the stream index's last
        entry names no version and no position past the log's last event.

        Raises:
            StoreCorrupted: the entry names more events than the log holds (a damaged count of billions would
                otherwise be walked, or given a snapshot each, a version at a time).
        """
        found = self._entry_before(txn, stream_id, None)
        if found is None:
            return 0
        first, position, count = found
        held = txn.last(self._events)  # its key alone: the record's envelope says nothing more here
        last = 0 if held is None else unpack_stored(_U64, held[0], "the last position of the event table")[0]
        if first + count - 1 > last or position + count - 1 > last:
            raise StoreCorrupted(f"the stream index is damaged: stream {stream_id}'s entry at version {first} names "
                                 f"{count} events from position {position}, past the log's last ({last})")
        return first + count - 1

    def _entry_before(self, txn: ReadTransaction, stream_id: int, version: int | None
                      ) -> tuple[int, int, int] | None:
        """The stream's last index entry that starts below ``version`` (``None``: its last entry): its first
        version, the position of that version and how many events it holds; ``None`` if it has none."""
        found = txn.before(self._streams, _STREAM_KEY.pack(stream_id + 1, 0) if version is None
                           else _STREAM_KEY.pack(stream_id, version))
        if found is None:
            return None
        found_stream, first = unpack_stored(_STREAM_KEY, found[0], "a key of the stream index")
        return (first, *_run(found[1], stream_id, first)) if found_stream == stream_id else None

    def _create_stream(self, txn: WriteTransaction, key: str) -> int:
        last = txn.last(self._stream_keys)
        stream_id = unpack_stored(_U64, last[0], "the last stream id")[0] + 1 if last else 1
        txn.put(self._keys, _key_digest(key), _U64.pack(stream_id))
        txn.put(self._stream_keys, _U64.pack(stream_id), key.encode())
        return stream_id

    # -- appending ------------------------------------------------------------------

    def head(self, txn: ReadTransaction) -> tuple[int, bytes, int]:
        """(position, hash, recorded time) of the latest event; (0, genesis, 0) for an empty log."""
        return _head_of(*self._last_record(txn))

    def head_before_append(self, txn: WriteTransaction) -> tuple[int, bytes, int]:
        """``head``, read by a command about to append in ``txn``: the append takes this read rather than reading the
        log's last record again."""
        position, last = self._last_record(txn)
        self._read_head = (txn, position, last)
        return _head_of(position, last)

    def _last_record(self, txn: ReadTransaction) -> tuple[int, _Envelope | None]:
        """The latest event's position and envelope; (0, ``None``) for an empty log."""
        last = txn.last(self._events)
        if last is None:
            return 0, None
        position = unpack_stored(_U64, last[0], "the last position of the event table")[0]
        # Only the envelope: appending must not depend on decoding (or re-hashing) the last payload.
        return position, _checked_envelope(last[1], f"position {position}: the last event record")

    def append(self, txn: WriteTransaction, key: str, events: Sequence[EncodedEvent], recorded_at: int,
               expected_version: int | None = None, originals: Sequence[Original] | None = None,
               tip: StreamTip | None = None, times: Sequence[int] | None = None) -> list[StoredEvent]:
        """Append ``events`` to the stream of ``key``; return them as stored.

        ``recorded_at`` (µs) is raised to the stream's latest recorded time if the
        clock went back. ``times``: each event's own time (an import's), raised as ``recorded_at`` is and to the one
        before it.
        Each event gets a new random id, unless ``originals``
        (replication from another store) gives its id, payload digest and redaction flag. ``tip``: the stream's
        ``tip`` as read in this transaction (read here when not given).

        Raises:
            WrongExpectedVersion: ``expected_version`` is given and is not the stream's version.
        """
        stream_id, version, latest = self.tip(txn, key) if tip is None else tip
        if expected_version is not None and expected_version != version:
            raise WrongExpectedVersion(key, expected_version, version)
        if not events:
            return []
        if stream_id is None:
            stream_id = self._create_stream(txn, key)
        read, self._read_head = self._read_head, None
        position, last = (read[1], read[2]) if read is not None and read[0] is txn else self._last_record(txn)
        previous_hash = GENESIS_HASH if last is None else last.hash
        if version:
            # The stream's latest record, unless it is the log's last, whose envelope is read already.
            found = last if latest == position and last is not None else self._envelope_at(txn, latest)
            _check_led(stream_id, version, latest, found.stream_id, found.version)
            recorded_at = max(recorded_at, found.recorded_at)
        dictionary = self.dictionary.get(txn)
        if dictionary is None and (position + len(events)) // TRAINING_EVENTS > position // TRAINING_EVENTS:
            dictionary = self._train(txn, position)
        elif dictionary is not None and dictionary.retrain_due(position, position + len(events), TRAINING_EVENTS):
            dictionary = self._train(txn, position, dictionary) or dictionary
        count = len(events)
        # The events' columns, in one C pass.
        type_names, schema_versions, payloads = cast(
            "tuple[tuple[str, ...], tuple[int, ...], tuple[bytes, ...]]", tuple(zip(*events)))
        # Each event's id, digest and flags: what a command's events take fresh, or a replicated event keeps.
        if originals is None:
            event_ids: Iterable[bytes] = _new_event_ids(count)
            digests = [hashlib.sha256(payload).digest() for payload in payloads]  # their own: not stored
            redacted: Iterable[bool] = itertools.repeat(False, count)
            kept: Iterable[bytes | None] = itertools.repeat(None, count)
        else:
            event_ids = [original.event_id for original in originals]
            digests = [original.payload_digest for original in originals]
            redacted = [original.redacted for original in originals]
            kept = [_digest_to_store(digest, payload) for digest, payload in zip(digests, payloads)]
        stamps = [recorded_at] * count if times is None else \
            list(itertools.islice(itertools.accumulate(times, max, initial=recorded_at), 1, None))
        positions = range(position + 1, position + count + 1)
        versions = range(version + 1, version + count + 1)
        # What an event type adds to a record and to its link, once a type (an append's events share one or two).
        forms = {name: _type_form(name) for name in set(type_names)}
        key_bytes = key.encode()
        link_forms = {name: _link_form(_link_names(form.name, key_bytes)) for name, form in forms.items()}
        # The chain, the one step taken an event at a time (each link hashes the one before).
        links = []
        link = previous_hash
        for position, version, stamp, event_id, schema_version, (pack, names), digest in zip(
                positions, versions, stamps, event_ids, schema_versions, map(link_forms.__getitem__, type_names),
                digests):
            link = hashlib.sha256(pack(link, position, version, stamp, event_id, schema_version, names, digest)
                                  ).digest()
            links.append(link)
        redaction_flags = [_REDACTED_FLAG if gone else 0 for gone in redacted] if originals is not None else \
            itertools.repeat(0, count)
        if dictionary is not None and stream_id < _U32_LIMIT and versions[-1] < _U32_LIMIT and \
                max(schema_versions) <= 0xFF and all(form.fits_compact for form in forms.values()):
            # Every record in layout 2, as ``_compact_record`` builds each, in C passes: the headers, then each
            # joined to its stored digest (if any), spelled-out name (if any) and payload's frame.
            # Each record's type fields: a run of one type (a command's appends) repeats its form's, with no look-up
            # an event.
            if len(forms) == 1:
                (form,) = forms.values()
                flags: Iterable[int] = itertools.repeat(form.coded_flag, count)
                name_bytes: Iterable[int] = itertools.repeat(form.name_byte, count)
                stored_names: Iterable[bytes] = itertools.repeat(form.stored_name, count)
            else:
                event_forms = list(map(forms.__getitem__, type_names))
                flags = map(attrgetter("coded_flag"), event_forms)
                name_bytes = map(attrgetter("name_byte"), event_forms)
                stored_names = map(attrgetter("stored_name"), event_forms)
            stored_digests: Iterable[bytes] = itertools.repeat(b"", count)
            if originals is not None:
                flags = map(or_, map(or_, redaction_flags, flags), [0 if digest is None else _DIGEST_FLAG
                                                                    for digest in kept])
                stored_digests = [b"" if digest is None else digest for digest in kept]
            headers = map(_RECORD_2.pack, itertools.repeat(2), flags, itertools.repeat(stream_id), versions, stamps,
                          event_ids, schema_versions, links, name_bytes)
            frames = dictionary.frames(payloads)
            if originals is None and not any(form.stored_name for form in forms.values()):
                records = list(map(add, headers, frames))  # nothing between them: no stored digest, no name
            else:
                records = list(map(b"".join, zip(headers, stored_digests, stored_names, frames)))
            coded = any(form.coded_flag for form in forms.values())  # its types', not a call a record
        else:
            records = list(map(_record, redaction_flags, itertools.repeat(stream_id), versions, stamps, event_ids,
                               events, digests, kept, links, itertools.repeat(dictionary)))
            coded = any(map(_is_coded, records))
        stored_events = list(map(_new_logged, itertools.repeat(StoredEvent), zip(
            positions, itertools.repeat(stream_id), itertools.repeat(key), versions, stamps, event_ids, events,
            digests, links, redacted)))
        first_position = positions[0]
        try:
            txn.append_many(self._events, zip(map(_U64.pack, positions), records))
        except ValueError:
            raise StoreCorrupted(f"position {first_position} is already taken") from None
        if coded:
            _raise_format(txn, self._meta, _CODED_FORMAT)
        elif count > 1:
            _raise_format(txn, self._meta, _RUNS_FORMAT)
        first = stored_events[0]
        if count == 1:
            txn.put(self._streams, _STREAM_KEY.pack(stream_id, first.version), _U64.pack(first.position))
        else:
            txn.put(self._streams, _STREAM_KEY.pack(stream_id, first.version), _RUN.pack(first.position, count))
        if self._appended is not None:
            self._appended(txn, stored_events)
        return stored_events

    def _train(self, txn: WriteTransaction, head_position: int, poor: Dictionary | None = None) -> Dictionary | None:
        """Train and store the store's dictionary from the payloads of the latest events (the start of each), or
        one more after the ``poor`` one; ``None`` when they do not train one (too few bytes, say: the next
        multiple of ``TRAINING_EVENTS`` tries again)."""
        span, samples = self._training_sample(txn, head_position)
        data = train(samples, None if poor is None else poor.next_id)
        if data is None:
            return None
        if poor is None:
            dictionary = self.dictionary.put(txn, data, [span])
        else:
            learnt = self.dictionary.learnt(txn)
            dictionary = self.dictionary.put(txn, poor.with_another(data), None if learnt is None else [*learnt, span])
        _raise_format(txn, self._meta, dictionary.log_format)
        return dictionary

    def _training_sample(self, txn: ReadTransaction, head_position: int) -> tuple[tuple[int, int], list[bytes]]:
        """The positions a dictionary trained now learns from (after, up to), and what it reads of their payloads."""
        first = max(0, head_position - TRAINING_EVENTS)
        return (first, head_position), [entry.encoded.payload[:TRAINING_SAMPLE_BYTES]
                                        for entry in self.read_all(txn, first)]

    # -- replacing the dictionary (vacuum) ----------------------------------------------------

    def dictionary_replacement(self, txn: ReadTransaction) -> DictionaryReplacement | None:
        """A dictionary trained on the current payloads, to replace the store's, which learnt from payloads that
        were redacted since; ``None`` when none did (or there is no dictionary): nothing to replace.

        Raises:
            DictionaryDamaged: neither stored form of the dictionary is intact.
        """
        # The dictionary itself is read only when it is to be replaced: a damaged one is no reason to refuse a
        # vacuum that copies its frames as they are.
        if txn.get(self._meta, b"dictionary.id") is None or not self._dictionary_learnt_redacted(txn):
            return None
        old = self.dictionary.require(txn)
        span, samples = self._training_sample(txn, self.head(txn)[0])
        data = train(samples)
        return DictionaryReplacement(old, None if data is None else Dictionary(data), data, span)

    def _dictionary_learnt_redacted(self, txn: ReadTransaction) -> bool:
        if self.dictionary.learnt(txn) is not None:
            return self.dictionary.learnt_redacted(txn)
        # Trained by an older version, which kept no record of what it learnt from, or a damaged record: any
        # redacted record counts.
        return any(len(raw) > 1 and raw[1] & _REDACTED_FLAG for raw in txn.scan_values(self._events))

    def vacuum_rewrites(self, replacement: DictionaryReplacement) -> Mapping[str, SpaceRewrite]:
        """How ``vacuum`` rewrites the log's spaces for ``replacement``: every compressed record with the new
        dictionary (or plain), and ``log.meta`` with the new dictionary alone."""

        def records(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
            for key, raw in pairs:
                yield key, _recompressed(unpack_stored(_U64, key, "a position in the event table")[0], raw,
                                         replacement)

        return {self._events.name: records, self._meta.name: replacement.meta}

    # -- reading --------------------------------------------------------------------

    def read_stream(self, txn: ReadTransaction, stream_id: int, after_version: int = 0,
                    up_to_version: int | None = None) -> Iterator[StoredEvent]:
        """The stream's events with ``after_version < version <= up_to_version``, oldest first."""
        keys: dict[int, str] = {}
        for version, position in self._stream_positions(txn, stream_id, after_version, up_to_version):
            entry = self._read(txn, position, keys)
            _check_led(stream_id, version, position, entry.stream_id, entry.version)
            yield entry

    def read_version(self, txn: ReadTransaction, stream_id: int, version: int) -> StoredEvent:
        """The stream's ``version``-th event.

        Raises:
            StoreCorrupted: the stream index lacks it or leads elsewhere, or the record is damaged.
        """
        position = self.stream_position(txn, stream_id, version)
        if position is None:
            raise StoreCorrupted(f"stream {stream_id}: version {version} is missing from the stream index")
        entry = self.read_position(txn, position)
        _check_led(stream_id, version, position, entry.stream_id, entry.version)
        return entry

    def stream_type_names(self, txn: ReadTransaction, stream_id: int, after_version: int, up_to_version: int
                          ) -> Iterator[str]:
        """The type names of the stream's events with ``after_version < version <= up_to_version``.

        Reads only the records' envelopes: no payload is copied, checked or decoded.
        """
        for version, position in self._stream_positions(txn, stream_id, after_version, up_to_version):
            envelope = self._envelope_at(txn, position)
            _check_led(stream_id, version, position, envelope.stream_id, envelope.version)
            yield envelope.type_name

    def _stream_positions(self, txn: ReadTransaction, stream_id: int, after_version: int,
                          up_to_version: int | None) -> Iterator[tuple[int, int]]:
        """(version, position) of the stream's events with ``after_version < version <= up_to_version``, as the
        stream index gives them."""
        wanted = after_version + 1
        holding = self._entry_before(txn, stream_id, wanted + 1)  # the entry that may hold the first version wanted
        following = wanted if holding is None else holding[0]  # the version the next entry must begin at
        for raw_key, raw in txn.scan(self._streams, _STREAM_KEY.pack(stream_id, following)):
            found_stream, first = unpack_stored(_STREAM_KEY, raw_key, "a key of the stream index")
            if found_stream != stream_id:
                return
            if first != following:
                # A run's count changed on disk: versions between the entries are missing, or held twice.
                raise StoreCorrupted(f"the stream index is damaged: stream {stream_id} has an entry at version "
                                     f"{first} where version {following} was due")
            position, count = _run(raw, stream_id, first)
            following = first + count
            for version in range(max(first, wanted), first + count):
                if up_to_version is not None and version > up_to_version:
                    return
                yield version, position + version - first

    def read_position(self, txn: ReadTransaction, position: int) -> StoredEvent:
        """The event at ``position``."""
        return self._read(txn, position, {})

    def _read(self, txn: ReadTransaction, position: int, keys: dict[int, str]) -> StoredEvent:
        raw = txn.get(self._events, _U64.pack(position))
        if raw is None:
            raise StoreCorrupted(f"position {position}: the event is missing")
        return self._decode(txn, position, raw, keys)

    def hash_at(self, txn: ReadTransaction, position: int) -> bytes | None:
        """The chain hash of the event at ``position`` (its record's header alone); ``None`` if there is none.

        Raises:
            StoreCorrupted: the record's header is damaged.
        """
        raw = txn.get(self._events, _U64.pack(position))
        return None if raw is None else _checked_envelope(raw, f"position {position}: the event record").hash

    def read_all(self, txn: ReadTransaction, after_position: int = 0, limit: int | None = None
                 ) -> Iterator[StoredEvent]:
        """Events of every stream in global order, after ``after_position``."""
        keys: dict[int, str] = {}
        for count, (raw_key, raw) in enumerate(txn.scan(self._events, _U64.pack(after_position + 1))):
            if limit is not None and count >= limit:
                return
            yield self._decode(txn, unpack_stored(_U64, raw_key, "a position in the event table")[0], raw, keys)

    def read_logged(self, txn: ReadTransaction, after_position: int, payload_types: Container[str]
                    ) -> Iterator[LoggedEvent]:
        """Events of every stream in global order, after ``after_position``, as a read model that reads few
        payloads wants them: each record's header, and the payloads of the ``payload_types`` alone, checked as
        ``read_all`` checks them. Other payloads are not decompressed, no payload is hashed for a digest that is
        not read, and no session key is read.

        Raises:
            StoreCorrupted: a record is damaged (a payload read: as ``read_all`` finds it).
        """
        dictionary: list[Dictionary] = []  # looked up at the first compressed payload, then kept

        def dictionary_of() -> Dictionary:
            if not dictionary:
                dictionary.append(self.dictionary.require(txn))
            return dictionary[0]

        # The dictionary's ``expander``, once a frame without a digest came: this thread's, as a read stays in the
        # thread of its transaction.
        expand: Callable[[bytes], bytes] | None = None
        # Read once, not an event at a time: a struct's size is a descriptor that Python 3.11 looks up each time.
        key_size, header_2 = _U64.size, _LOGGED_2.size

        # A type name's UTF-8 → the name, and whether its payload is read: a lookup where decoding and a set's
        # test would cost two calls an event; ``coded`` the same by a coded record's type code.
        names: dict[bytes, tuple[str, bool]] = {}
        coded = {code: (name, name in payload_types) for code, name in _TYPE_NAMES.items()}
        for raw_key, raw in txn.scan(self._events, _U64.pack(after_position + 1)):
            position = int.from_bytes(raw_key, "big") if len(raw_key) == key_size else \
                unpack_stored(_U64, raw_key, "a position in the event table")[0]
            # The common records are read with one unpack and a lookup; anything else (another layout, unknown
            # flags or type code, a record too short, a type name not met yet) by the general parse, which names
            # its damage.
            layout = raw[0] if raw else 0
            try:
                if layout == 2:
                    flags, stream_id, version, recorded_at, schema_version, length = _LOGGED_2.unpack_from(raw)
                    at = header_2 + (_DIGEST_BYTES if flags & _DIGEST_FLAG else 0)
                    digest = bytes(raw[header_2:at]) if flags & _DIGEST_FLAG else None
                else:
                    flags, stream_id, version, recorded_at, schema_version, digest, length = \
                        _LOGGED_1.unpack_from(raw)
                    at = _LOGGED_1.size
                if layout == 2 and flags & _CODED_FLAG:
                    type_name, wanted = coded[length]
                    length = 0
                else:
                    type_name, wanted = names[raw[at:at + length]]
                if flags & ~_FLAGS[layout] or at + length > len(raw):
                    raise ValueError
            except (struct.error, ValueError, KeyError):
                envelope = _checked_envelope(raw, f"position {position}: the event record")
                layout, flags, stream_id, version, recorded_at, schema_version, digest, type_name = (
                    envelope.layout, envelope.flags, envelope.stream_id, envelope.version, envelope.recorded_at,
                    envelope.schema_version, envelope.digest, envelope.type_name)
                wanted = type_name in payload_types
                names.setdefault(type_name.encode(), (type_name, wanted))
                at, length = envelope.payload_at, 0
            payload = None
            if wanted:
                stored = raw[at + length:]
                # The common payload, a frame that its checksum checks (no digest stored), is expanded by zstd's
                # call alone (a store of one dictionary); anything else, or a frame that fails, by the general read,
                # which names its damage.
                if layout == 2 and digest is None:
                    try:
                        if expand is None:
                            expand = dictionary_of().expander()
                        payload = expand(FRAME_MAGIC + stored)
                    except (zstandard.ZstdError, MemoryError, StoreCorrupted):
                        pass
                if payload is None:
                    payload = _checked_payload(position, stored, layout, flags, digest, dictionary_of)
            yield _new_logged(LoggedEvent, (position, stream_id, version, recorded_at, type_name, schema_version,
                                            payload))

    def positions_of(self, txn: ReadTransaction, type_name: str) -> Iterator[int]:
        """The positions of every event of this type, read from the records' headers: no payload is decompressed,
        decoded or checked (``read_position`` does that for the few wanted).

        Raises:
            StoreCorrupted: a record's header is damaged.
        """
        for raw_key, raw in txn.scan(self._events):
            position = unpack_stored(_U64, raw_key, "a position in the event table")[0]
            if _checked_envelope(raw, f"position {position}: the event record").type_name == type_name:
                yield position

    def _envelope_at(self, txn: ReadTransaction, position: int) -> _Envelope:
        raw = txn.get(self._events, _U64.pack(position)) or b""  # a missing record fails to unpack, as damage
        try:
            return _envelope(raw)
        except (struct.error, ValueError, UnicodeDecodeError):
            raise StoreCorrupted(f"position {position}: the event record is missing or damaged") from None

    def redact(self, txn: WriteTransaction, position: int, payload: bytes) -> None:
        """Replace the payload at ``position``, keeping its digest, hash and everything else (invariant 8)."""
        raw = txn.get(self._events, _U64.pack(position))
        if raw is None:
            raise StoreCorrupted(f"position {position}: the event is missing")
        self.dictionary.note_redaction(txn, position)
        envelope = _envelope(raw)
        if envelope.layout == 1:
            flagged = raw[:1] + bytes([raw[1] | _REDACTED_FLAG]) + raw[2:envelope.payload_at]
            txn.put(self._events, _U64.pack(position), flagged + payload)
            return
        # The digest of the original payload, which the redacted record must keep (stored, or recomputed).
        original = self._decode(txn, position, raw, {})
        encoded = EncodedEvent(envelope.type_name, envelope.schema_version, payload)
        record = _compact_record(_REDACTED_FLAG, envelope.stream_id, envelope.version,
                                 envelope.recorded_at, envelope.event_id, encoded,
                                 _digest_to_store(original.payload_digest, payload), envelope.hash,
                                 self.dictionary.require(txn))
        assert record is not None  # the same fields fitted layout 2 before
        if _is_coded(record):  # a record an older version wrote gets its type's code too
            _raise_format(txn, self._meta, _CODED_FORMAT)
        txn.put(self._events, _U64.pack(position), record)

    def stream_position(self, txn: ReadTransaction, stream_id: int, version: int) -> int | None:
        """The global position of a stream's ``version``-th event, if the stream index has it."""
        found = self._entry_before(txn, stream_id, version + 1)
        if found is None or not found[0] <= version < found[0] + found[2]:
            return None
        return found[1] + version - found[0]

    def stream_ids(self, txn: ReadTransaction, start: int = 0) -> Iterator[tuple[int, str]]:
        """Every stream id from ``start`` on with its session key, in id order."""
        for raw_id, raw_key in txn.scan(self._stream_keys, _U64.pack(start) if start else None):
            stream_id = unpack_stored(_U64, raw_id, "a stream id of the stream keys")[0]
            yield stream_id, _stored_key(raw_key, stream_id)

    def count(self, txn: ReadTransaction) -> int:
        """Entries in the event table."""
        return txn.count(self._events)

    def indexed_events(self, txn: ReadTransaction) -> int:
        """How many events the stream index holds, its runs' counts added up (for ``verify``: a scan of it)."""
        return sum(_run(raw, *unpack_stored(_STREAM_KEY, key, "a key of the stream index"))[1]
                   for key, raw in txn.scan(self._streams))

    def records(self, txn: ReadTransaction) -> Iterator[tuple[int, StoredEvent | StoreCorrupted]]:
        """Every record by its stored position, damaged ones as the error they raise (for ``verify``)."""
        keys: dict[int, str] = {}
        for raw_key, raw in txn.scan(self._events):
            if len(raw_key) != _U64.size:
                yield -1, StoreCorrupted(f"a key of the event table is damaged ({len(raw_key)} bytes where "
                                         f"{_U64.size} belong)")
                continue
            position = _U64.unpack(raw_key)[0]
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

        return decode_record(position, raw, key_of, lambda: self.dictionary.require(txn))


def _checked_payload(position: int, stored: bytes, layout: int, flags: int, digest: bytes | None,
                     dictionary_of: Callable[[], Dictionary]) -> bytes:
    """The plain payload of a record from its ``stored`` form, checked: a compressed frame (``layout`` 2) by its
    checksum, a ``digest`` (of a payload not redacted, by ``flags``) against the payload's SHA-256.

    Raises:
        StoreCorrupted: the payload does not decompress or does not match its digest.
    """
    try:
        payload = stored if layout == 1 else dictionary_of().expand(stored, "the payload")
    except DictionaryDamaged as exc:  # the record may be intact: what it needs is not
        raise DictionaryDamaged(f"position {position}: {exc}") from None
    except StoreCorrupted as exc:
        raise StoreCorrupted(f"position {position}: {exc} (it was changed)") from None
    if digest is not None and not flags & _REDACTED_FLAG and hashlib.sha256(payload).digest() != digest:
        raise StoreCorrupted(f"position {position}: the payload does not match its digest (it was changed)")
    return payload


def decode_record(position: int, raw: bytes, key_of: Callable[[int], str],
                  dictionary_of: Callable[[], Dictionary]) -> StoredEvent:
    """Decode the record stored at ``position``; ``key_of`` gives a stream id's session key, ``dictionary_of``
    the store's compression dictionary (asked for only by a compressed record).

    Raises:
        StoreCorrupted: the record is damaged, its payload does not match its digest (or its frame's
            checksum), or ``key_of`` or ``dictionary_of`` raised it.
    """
    envelope = _checked_envelope(raw, f"position {position}: the event record")
    payload = _checked_payload(position, bytes(raw[envelope.payload_at:]), envelope.layout, envelope.flags,
                               envelope.digest, dictionary_of)
    encoded = EncodedEvent(envelope.type_name, envelope.schema_version, payload)
    redacted = bool(envelope.flags & _REDACTED_FLAG)
    digest = envelope.digest
    if digest is None:
        digest = hashlib.sha256(payload).digest()
    try:
        key = key_of(envelope.stream_id)
    except StoreCorrupted as exc:
        raise StoreCorrupted(f"position {position}: {exc}") from None
    return StoredEvent(position, envelope.stream_id, key, envelope.version, envelope.recorded_at, envelope.event_id,
                       encoded, digest, envelope.hash, redacted)

