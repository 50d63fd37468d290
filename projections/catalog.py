"""The session catalog read model: each live session's head, by stream id, by key, by activity and by turn.

Databases: ``catalog.activity`` last-activity time + stream id (the session's
*position*) → head row (the list order, newest last, so a listing is one cursor
walk with no lookups, and a page starts with one seek); ``catalog.sessions``
stream id → position; ``catalog.keys`` session key → position, version and
message count (what a load needs, in one read; a session's metadata in two, and
a prefix is one range of it); ``catalog.running``
turn start + stream id → nothing (running sessions only). A deleted session has
no entry. Each row is stored once: with a session per user or chat, a row is
most of what the catalog holds, and code version 4 kept it three times.

A session key is its own ``catalog.keys`` key when it is shorter than
``_LONG_KEY`` bytes; a longer one (keys run to 1 KiB, LMDB's keys to 511 bytes)
keeps its first ``_KEPT`` bytes followed by the SHA-256 of the whole key, so it
still sorts among the keys that share its start.

A head row is its fields as JSON values separated by commas, without brackets
(the listing's fields first): the rows of a listing joined by commas are one
flat JSON array, decoded in one call without a list per row, and its columns
are slices of it. Code versions 2 and 3 kept each row as a JSON array in
another order, and versions 2 to 4 a copy of it in ``catalog.sessions`` (and,
from version 3, in ``catalog.keys``); ``upgrade`` rewrites such catalogs.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from eventstore._codec import bulk_decoding
from eventstore._errors import StoreCorrupted, unpack_stored
from eventstore._time import to_micros
from eventstore._values import SessionMetadata, SessionState, trusted_metadata
from eventstore.storage import ReadTransaction, Space, WriteTransaction

from .readmodel import OpenSpace
from .session import Change, SessionHead, SessionSnapshot, empty_head, evolve_head_through

__all__ = ["Catalog", "SessionRows"]

_ID = struct.Struct(">Q")
_TIME_ID = struct.Struct(">QQ")
#: A session's version and message count, after its position in a ``catalog.keys`` value.
_COUNTS = struct.Struct(">QQ")
_CHECKSUM = struct.Struct(">I")
_KEYED_SIZE = _TIME_ID.size + _COUNTS.size + _CHECKSUM.size
#: Bytes of a long session key kept at the start of its ``catalog.keys`` key, before its digest.
_KEPT = 448
#: The size of a long key's ``catalog.keys`` key; every shorter key is stored as it is.
_LONG_KEY = _KEPT + hashlib.sha256().digest_size

#: A position in the activity order: the ``catalog.activity`` key of the session a page ended at.
Position = bytes


def _key_index(key: str) -> bytes:
    raw = key.encode()
    return raw if len(raw) < _LONG_KEY else raw[:_KEPT] + hashlib.sha256(raw).digest()


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not UTC:
        raise ValueError(f"stored time {text!r} is not in UTC")
    if moment < _EPOCH:  # no command records one, and no position (µs since the epoch, unsigned) holds it
        raise ValueError(f"stored time {text!r} is before 1970")
    return moment


#: The fields of a head row, in their stored order: the listing reads the first five.
_FIELDS = ("key", "name", "created", "last_activity", "count", "version", "state", "turn_id", "turn_started")
_WIDTH = len(_FIELDS)
_TEXT_OR_NULL = frozenset({str, type(None)})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The versions and message counts a key index entry holds (``_COUNTS``).
_UNSIGNED = range(2**64)


# Times are stored as ISO 8601 text: ``datetime.fromisoformat`` is C, faster than building a datetime from µs in
# Python, and a listing builds two per session. A row keeps them as datetimes, which orjson writes as the text
# ``isoformat`` gives (an aware UTC time, "+00:00"), in a fifth of its time.
def _head_to_row(head: SessionHead) -> list[Any]:
    state = head.state
    return [head.key, head.name, head.created_at, head.last_activity, head.message_count,
            head.version,
            None if state is None else state.state,
            None if state is None else state.turn_id,
            None if state is None else state.turn_started_at]


def _head_from_row(row: Sequence[Any]) -> SessionHead:
    key, name, created, last, count, version, state, turn_id, started = row
    # A field of another type, or a number no key index entry holds, is damage, said here rather than as a
    # traceback further on.
    if not (type(key) is type(created) is type(last) is str and type(count) is type(version) is int
            and set(map(type, (name, state, turn_id, started))) <= _TEXT_OR_NULL):
        raise StoreCorrupted("the session catalog is damaged: a row's field is not of its type")
    if count not in _UNSIGNED or version not in _UNSIGNED:
        raise StoreCorrupted(f"the session catalog is damaged: session {key!r} has version {version} and "
                             f"{count} messages")
    run_state = None if state is None else SessionState(state, turn_id, _moment(started))
    return SessionHead(key, version, True, name, run_state, _moment(created), _moment(last), count)


def _head_from_version_3_row(raw: bytes) -> SessionHead:
    """The head of a row as code version 3 stored it: a JSON array, the version second and the times last."""
    try:
        key, version, name, state, turn_id, started, created, last, count = orjson.loads(raw)
        return _head_from_row((key, name, created, last, count, version, state, turn_id, started))
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
        raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None


def _encode_head(head: SessionHead) -> bytes:
    return orjson.dumps(_head_to_row(head))[1:-1]


def _decode_head(raw: bytes) -> SessionHead:
    try:
        return _head_from_row(_decode_rows((raw,)))
    except (TypeError, ValueError, OverflowError) as exc:
        raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None


def _decode_rows(values: Iterable[bytes]) -> list[Any]:
    """The fields of head rows, one row after another in one flat list (``_WIDTH`` a row), in one C-level decode
    for them all; callers check the fields' types."""
    rows = list(values)
    if rows:  # the brackets go on the first and last rows: one copy of the rows, not three
        rows[0] = b"[" + rows[0]
        rows[-1] += b"]"
    try:
        fields: list[Any] = orjson.loads(b",".join(rows)) if rows else []
    except orjson.JSONDecodeError as exc:
        raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None
    if len(fields) != _WIDTH * len(rows):
        raise StoreCorrupted(f"the session catalog is damaged: {len(rows)} rows hold {len(fields)} fields, "
                             f"not {_WIDTH} each")
    return fields


def _column(fields: list[Any], name: str) -> list[Any]:
    return fields[_FIELDS.index(name)::_WIDTH]


def _metadata(values: Iterable[bytes]) -> list[SessionMetadata]:
    """Metadata from catalog rows, a column at a time in C-level calls, the metadata made before the rows are
    decoded (``trusted_metadata``); the decode is inside the collector pause too."""
    rows = list(values)

    def columns() -> tuple[list[str], list[str | None], Iterator[datetime], Iterator[datetime], list[int]]:
        fields = _decode_rows(rows)
        keys, counts = _column(fields, "key"), _column(fields, "count")
        if not _all_of_type(keys, str) or not _all_of_type(counts, int):
            raise StoreCorrupted("the session catalog is damaged: a session key is not text or a count not a number")
        parse = datetime.fromisoformat  # the times were written in UTC by _encode_head; verify checks them
        return (keys, _column(fields, "name"), map(parse, _column(fields, "created")),
                map(parse, _column(fields, "last_activity")), counts)

    with bulk_decoding():
        try:
            return trusted_metadata(len(rows), columns)
        except (TypeError, ValueError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None


def _all_of_type(values: list[Any], kind: type) -> bool:
    """Whether every one of ``values`` is exactly a ``kind`` (no subclass: a JSON decode makes none)."""
    return set(map(type, values)) <= {kind}


def _keys_entry(head: SessionHead, position: Position) -> tuple[bytes, bytes]:
    """The ``catalog.keys`` entry of a live session at ``position``: its key, and its position, version and message
    count with a checksum of them and the key (a load follows the entry to a stream's messages without reading the
    row, whose key would say that the entry is this session's)."""
    index_key = _key_index(head.key)
    entry = position + _COUNTS.pack(head.version, head.message_count)
    return index_key, entry + _CHECKSUM.pack(zlib.crc32(entry, zlib.crc32(index_key)))


def _keyed(index_key: bytes, raw: bytes) -> tuple[Position, int, int]:
    """A ``catalog.keys`` value read at ``index_key``: the session's position, version and message count, checked."""
    if len(raw) != _KEYED_SIZE or zlib.crc32(raw[:-_CHECKSUM.size], zlib.crc32(index_key)) != _CHECKSUM.unpack_from(
            raw, _KEYED_SIZE - _CHECKSUM.size)[0]:
        raise StoreCorrupted(f"the session catalog is damaged: the key index entry of {index_key[:64]!r} is another "
                             "session's or damaged (its checksum does not match)")
    version, count = _COUNTS.unpack_from(raw, _TIME_ID.size)
    return raw[:_TIME_ID.size], version, count


_POSITION = operator.itemgetter(slice(_TIME_ID.size))
_VALUE = operator.itemgetter(1)
_CHECKED = operator.itemgetter(slice(_KEYED_SIZE - _CHECKSUM.size))
_CHECKSUMS = operator.itemgetter(slice(_KEYED_SIZE - _CHECKSUM.size, None))


def _positions_of_keys(index_keys: Sequence[bytes], values: Sequence[bytes]) -> list[Position]:
    """The positions of ``catalog.keys`` entries (``index_keys`` and their ``values``), each checked as ``_keyed``
    checks one: all at once in C, one entry at a time only to say which is damaged."""
    if set(map(len, values)) <= {_KEYED_SIZE}:
        stored = struct.unpack(f">{len(values)}I", b"".join(map(_CHECKSUMS, values)))
        if tuple(map(zlib.crc32, map(_CHECKED, values), map(zlib.crc32, index_keys))) == stored:
            return list(map(_POSITION, values))
    return [_keyed(*entry)[0] for entry in zip(index_keys, values)]


def _position_of_stream(raw: bytes, stream_key: bytes) -> Position:
    """A ``catalog.sessions`` value read at ``stream_key``, checked to be that stream's position."""
    if len(raw) != _TIME_ID.size:
        raise StoreCorrupted(f"the session catalog is damaged: an entry of its stream id index has {len(raw)} bytes, "
                             "not a position")
    if raw[_ID.size:] != stream_key:
        raise StoreCorrupted(f"the session catalog is damaged: the entry of stream {_ID.unpack(stream_key)[0]} "
                             "names another stream's position")
    return raw


def _row_at(txn: ReadTransaction, activity: Space, position: Position) -> bytes:
    """The head row at ``position``, which an index entry named: it is there unless the catalog is damaged."""
    row = txn.get(activity, position)
    if row is None:
        raise _no_row(position)
    return row


def _rows_at(txn: ReadTransaction, activity: Space, positions: Sequence[Position]) -> list[bytes]:
    """The head rows at ``positions``, in their order, which index entries named, in one call: each is there unless
    the catalog is damaged."""
    rows = txn.get_each(activity, positions)
    if None in rows:
        raise _no_row(positions[rows.index(None)])
    return cast("list[bytes]", rows)


def _no_row(position: Position) -> StoreCorrupted:
    return StoreCorrupted(f"the session catalog is damaged: stream {_TIME_ID.unpack(position)[1]}'s index entry "
                          "names a position with no row")


def _row_key(row: bytes) -> tuple[str, list[Any]]:
    """The session key of a head row, and the row's fields."""
    decoded = _decode_rows((row,))
    if not isinstance(decoded[0], str):
        raise StoreCorrupted("the session catalog is damaged: a row has no session key")
    return decoded[0], decoded


def _the_session(key: str, row: bytes) -> list[Any]:
    """The head row of ``key`` read from the key index, checked to be that session's."""
    found, decoded = _row_key(row)
    if found != key:
        raise StoreCorrupted(f"the session key index leads {key!r} to another session's entry")
    return decoded


class SessionRows:
    """Positions of sessions by stream id, each read at most once in one read transaction, and their head rows.

    A search orders the sessions that tie on score by their last activity, which their positions hold, then
    returns its results' metadata: mostly the same sessions (most of a mid-frequency query's candidates tie), whose
    positions are read once. The positions read together are checked together, in a few C calls rather than a step
    of Python a session.
    """

    __slots__ = ("_txn", "_sessions", "_activity", "_positions")

    def __init__(self, txn: ReadTransaction, sessions: Space, activity: Space) -> None:
        self._txn, self._sessions, self._activity = txn, sessions, activity
        #: By stream id: its position, ``None`` for a stream that is no live session.
        self._positions: dict[int, Position | None] = {}

    def _live(self, stream_ids: Iterable[int]) -> list[Position]:
        """The positions of the live sessions among ``stream_ids``, in that order, read where not read before."""
        ids, known = list(stream_ids), self._positions
        if missing := list(itertools.filterfalse(known.__contains__, ids)):
            keys = list(map(_ID.pack, missing))
            values = self._txn.get_each(self._sessions, keys)
            found = _positions_of_streams(keys, values)
            known.update(zip(missing, values))
            if len(missing) == len(ids):  # none was read before: those found are the positions, in order
                return found
        return list(filter(None, map(known.__getitem__, ids)))

    def activities(self, stream_ids: Iterable[int]) -> dict[int, int]:
        """The last activity, in µs since the epoch, of those of ``stream_ids`` that are live sessions."""
        positions = self._live(stream_ids)
        # A position is the activity then the stream id: unpacked all at once, the ids every other number.
        numbers = _unpacked(positions)
        return dict(zip(numbers[1::2], numbers[0::2]))

    def metadata(self, stream_ids: Sequence[int]) -> list[SessionMetadata]:
        """Metadata of the live sessions among ``stream_ids``, in that order."""
        return _metadata(_rows_at(self._txn, self._activity, self._live(stream_ids)))


def _unpacked(positions: Sequence[Position]) -> tuple[int, ...]:
    """The numbers of ``positions`` (each ``_TIME_ID``: an activity, then a stream id), one after another."""
    return struct.unpack(f">{2 * len(positions)}Q", b"".join(positions))


def _positions_of_streams(keys: Sequence[bytes], values: Sequence[bytes | None]) -> list[Position]:
    """The positions among the ``catalog.sessions`` ``values`` (stream id → position) read at ``keys`` (``None``:
    no entry), in their order, each checked to name its own stream's position (as ``_position_of_stream`` checks
    one); all at once in C, one entry at a time only to say which is damaged."""
    found: list[Position] = list(filter(None, values))  # an emptied entry too is left out, so looked for
    # Each entry's length, not only their sum: a short entry and a long one after it would add up, and the ids
    # would then be read across their bounds. The ids (every other 8 bytes) are compared as bytes: no number made.
    if (b"" in values or not set(map(len, found)) <= {_TIME_ID.size}
            or memoryview(b"".join(found)).cast("Q")[1::2].tobytes() != b"".join(itertools.compress(keys, values))):
        for stream_key, raw in zip(keys, values):
            if raw is not None:
                _position_of_stream(raw, stream_key)
    return found


class Catalog:
    """Session heads, by stream id, by key, by last activity and by running turn."""

    name = "catalog"
    code_version = 5

    def __init__(self, open_space: OpenSpace) -> None:
        self._sessions = open_space("catalog.sessions")
        self._activity = open_space("catalog.activity")
        self._keys = open_space("catalog.keys")
        self._running = open_space("catalog.running")
        #: The row last decoded or written, and its head: a command reads its session's head to decide and again
        #: to apply its events, and the next command on that session reads the row this one wrote.
        #: ``None`` at first, so that no stored row (an emptied one too) is taken for a head never read.
        self._known: tuple[bytes, SessionHead] | None = None

    def head(self, txn: ReadTransaction, stream_id: int) -> SessionHead | None:
        """The head of a live session, or ``None``."""
        stream_key = _ID.pack(stream_id)
        position = txn.get(self._sessions, stream_key)
        if position is None:
            return None
        raw = _row_at(txn, self._activity, _position_of_stream(position, stream_key))
        if self._known is not None and raw == self._known[0]:
            return self._known[1]
        head = _decode_head(raw)
        self._known = (raw, head)
        return head

    def apply(self, txn: WriteTransaction, stream_id: int, events: Sequence[Change]) -> None:
        # A stream's first event has no head before it to read.
        before = None if events[0].version == 1 else self.head(txn, stream_id)
        after = evolve_head_through(before or empty_head(events[0].session_key), events)
        if not after.exists:
            if before is not None:
                self._unindex(txn, stream_id, before)
            return
        row = _encode_head(after)
        activity_key, running_key = self._activity_key(stream_id, after), self._running_key(stream_id, after)
        # A put replaces the entry under its key: only an index key that moved has its old entry deleted.
        old_running, moved = None, True
        if before is not None:
            old_activity, old_running = self._activity_key(stream_id, before), self._running_key(stream_id, before)
            moved = old_activity != activity_key
            if moved:
                txn.delete(self._activity, old_activity)
            if old_running is not None and old_running != running_key:
                txn.delete(self._running, old_running)
        txn.put(self._activity, activity_key, row)
        txn.put(self._keys, *_keys_entry(after, activity_key))
        if moved:  # the stream id's entry holds its position alone
            txn.put(self._sessions, _ID.pack(stream_id), activity_key)
        if running_key is not None and running_key != old_running:
            txn.put(self._running, running_key, b"")
        self._known = (row, after)

    def _unindex(self, txn: WriteTransaction, stream_id: int, head: SessionHead) -> None:
        txn.delete(self._sessions, _ID.pack(stream_id))
        txn.delete(self._activity, self._activity_key(stream_id, head))
        txn.delete(self._keys, _key_index(head.key))
        if (running_key := self._running_key(stream_id, head)) is not None:
            txn.delete(self._running, running_key)

    @staticmethod
    def _activity_key(stream_id: int, head: SessionHead) -> bytes:
        assert head.last_activity is not None
        return _TIME_ID.pack(to_micros(head.last_activity), stream_id)

    @staticmethod
    def _running_key(stream_id: int, head: SessionHead) -> bytes | None:
        """The session's ``catalog.running`` key while a turn runs, else ``None``."""
        if head.state is None or head.state.turn_started_at is None:
            return None
        return _TIME_ID.pack(to_micros(head.state.turn_started_at), stream_id)

    def upgrade(self, txn: WriteTransaction, from_version: int) -> bool:
        """Versions 2 to 4 kept each row in ``catalog.sessions`` and ``catalog.keys`` too (2 and 3 as a JSON array,
        and 2 had no ``catalog.keys``): write each session's row, read from ``catalog.sessions``, in
        ``catalog.activity``, its position in the two indexes, and its turn in ``catalog.running`` again."""
        if from_version not in (2, 3, 4):
            return False
        old_head = _decode_head if from_version == 4 else _head_from_version_3_row
        entries: dict[str, list[tuple[bytes, bytes]]] = {"sessions": [], "activity": [], "keys": [], "running": []}
        for raw_id, old_row in txn.scan(self._sessions):
            stream_id = unpack_stored(_ID, raw_id, "a key of the session catalog")[0]
            head = old_head(old_row)
            activity_key, running_key = self._activity_key(stream_id, head), self._running_key(stream_id, head)
            entries["sessions"].append((raw_id, activity_key))
            entries["activity"].append((activity_key, _encode_head(head)))
            entries["keys"].append(_keys_entry(head, activity_key))
            if running_key is not None:
                entries["running"].append((running_key, b""))
        written = {name: sorted(pairs) for name, pairs in entries.items()}
        # Only damage makes two rows name one key; checked before anything is cleared, so the rebuild starts clean.
        keys = written["keys"]
        if any(one[0] == other[0] for one, other in itertools.pairwise(keys)):
            raise StoreCorrupted("the session catalog is damaged: two sessions' rows name one session key")
        # Written again from the rows, not over them: a row whose last activity or turn start was changed has its
        # earlier form under another key, which the listings and stuck-turn checks would go on reading. Appended in
        # key order, each space's pages end full (rows shrunk in place would leave ``catalog.sessions``' pages a
        # fifth full).
        for name, space in (("sessions", self._sessions), ("activity", self._activity), ("keys", self._keys),
                            ("running", self._running)):
            txn.clear(space)
            txn.append_many(space, written[name])
        return True

    def clear(self, txn: WriteTransaction) -> None:
        for space in (self._sessions, self._activity, self._keys, self._running):
            txn.clear(space)

    # -- queries ----------------------------------------------------------------------

    def metadata_by_activity(self, txn: ReadTransaction, limit: int | None = None) -> list[SessionMetadata]:
        """Live sessions' metadata, most recent activity first."""
        values = txn.scan_values(self._activity, reverse=True)
        return _metadata(values if limit is None else itertools.islice(values, min(limit, sys.maxsize)))

    def rows(self, txn: ReadTransaction) -> SessionRows:
        """The rows of sessions by stream id, each read once through ``txn`` (what a search reads)."""
        return SessionRows(txn, self._sessions, self._activity)

    def keys_by_activity(self, txn: ReadTransaction, prefix: str = "") -> list[str]:
        """Live session keys (those starting with ``prefix``), most recent activity first."""
        if prefix:
            positions, index_keys = self._prefixed(txn, prefix)
            try:
                if _LONG_KEY not in set(map(len, index_keys)):
                    return list(map(bytes.decode, index_keys))
                # A short key is its own index key; only a long one reads its row.
                return [index_key.decode() if len(index_key) < _LONG_KEY else self._full_key(txn, position, index_key)
                        for position, index_key in zip(positions, index_keys)]
            except UnicodeDecodeError as exc:
                raise StoreCorrupted(f"the session catalog is damaged: a key index entry is not text: {exc}") from None
        keys = _column(_decode_rows(txn.scan_values(self._activity, reverse=True)), "key")
        if not _all_of_type(keys, str):
            raise StoreCorrupted("the session catalog is damaged: a session key is not text")
        return keys

    def metadata_with_prefix(self, txn: ReadTransaction, prefix: str) -> list[SessionMetadata]:
        """Metadata of the live sessions whose key starts with ``prefix``, most recent activity first."""
        positions = self._prefixed(txn, prefix)[0]
        return _metadata(_rows_at(txn, self._activity, positions))

    def page(self, txn: ReadTransaction, limit: int, before: Position | None, prefix: str = ""
             ) -> tuple[list[SessionMetadata], Position | None, int]:
        """At most ``limit`` live sessions (those starting with ``prefix``) whose activity position is below
        ``before``, most recent first; the position to continue below (``None`` at the end); and how many
        sessions there are in all (with that prefix).

        Without a prefix it reads the page alone, whatever the number of sessions; with one, every session
        of the prefix (one range of the key index), and the rows of the page alone.
        """
        if prefix:
            matching = self._prefixed(txn, prefix)[0]
            # Most recent first: one past the page says whether more follow.
            positions = (matching if before is None else list(filter(before.__gt__, matching)))[:limit + 1]
            more = len(positions) > limit
            del positions[limit:]
            return _metadata(_rows_at(txn, self._activity, positions)), positions[-1] if more else None, len(matching)
        total = txn.count(self._activity)
        limit = min(limit, total)
        entries = list(itertools.islice(txn.scan(self._activity, before, reverse=True), limit + 1))
        more = len(entries) > limit
        del entries[limit:]
        return _metadata(row for _, row in entries), entries[-1][0] if more else None, total

    def _prefixed(self, txn: ReadTransaction, prefix: str) -> tuple[list[Position], list[bytes]]:
        """The positions and ``catalog.keys`` keys of the live sessions whose key starts with ``prefix``, most recent
        activity first, their entries checked: one range of the key index, no row read but long keys' under a long
        prefix."""
        wanted = prefix.encode()
        start = wanted[:_KEPT]
        # The range ends at the first key past every key that starts with ``start``: its last byte one higher
        # (UTF-8 has no 0xff byte, so there is one). A pair compared with a 1-tuple stops at its key (an equal key
        # ends the range too): the walk's test is C, not a step of Python an entry.
        end = (start[:-1] + bytes((start[-1] + 1,)),)
        entries = list(itertools.takewhile(end.__gt__, txn.scan(self._keys, start)))
        if not entries:
            return [], []
        # An entry's value starts with its session's position, which no other session has.
        entries.sort(key=_VALUE, reverse=True)
        index_keys, values = zip(*entries)
        positions = _positions_of_keys(index_keys, values)
        if len(wanted) <= _KEPT:
            return positions, list(index_keys)
        # A short key is its own index key; a long key's ends with a digest after its first ``_KEPT`` bytes, so
        # under a longer prefix only its row's key says whether it matches.
        kept = [(position, index_key) for position, index_key in zip(positions, index_keys)
                if (index_key.startswith(wanted) if len(index_key) < _LONG_KEY
                    else self._full_key(txn, position, index_key).startswith(prefix))]
        return [position for position, _ in kept], [index_key for _, index_key in kept]

    def _full_key(self, txn: ReadTransaction, position: Position, index_key: bytes) -> str:
        """The session key whose ``catalog.keys`` key is the long ``index_key``, from its row at ``position``."""
        key = _row_key(_row_at(txn, self._activity, position))[0]
        if _key_index(key) != index_key:
            raise StoreCorrupted(f"the session key index leads {index_key[:64]!r} to another session's row")
        return key

    def _keyed_of(self, txn: ReadTransaction, key: str) -> tuple[Position, int, int] | None:
        """The position, version and message count of the live session ``key``, or ``None``: one read."""
        index_key = _key_index(key)
        raw = txn.get(self._keys, index_key)
        return None if raw is None else _keyed(index_key, raw)

    def _row_of_key(self, txn: ReadTransaction, key: str) -> bytes | None:
        """The head row of the live session ``key`` (not yet checked to be that session's), or ``None``: two
        reads."""
        keyed = self._keyed_of(txn, key)
        return None if keyed is None else _row_at(txn, self._activity, keyed[0])

    def metadata_of_key(self, txn: ReadTransaction, key: str) -> SessionMetadata | None:
        """The metadata of the live session ``key``, or ``None``: decoded inline (a lookup per call is a hot path:
        no list of rows, no collector pause)."""
        raw = self._row_of_key(txn, key)
        if raw is None:
            return None
        try:
            found, name, created, last, count, *_ = orjson.loads(b"[" + raw + b"]")
            metadata = SessionMetadata(found, name, datetime.fromisoformat(created), datetime.fromisoformat(last),
                                       count)
        except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None
        if found != key:
            raise StoreCorrupted(f"the session key index leads {key!r} to another session's entry")
        return metadata

    def stream_of_key(self, txn: ReadTransaction, key: str) -> tuple[int, int, int] | None:
        """The stream id, version and message count of the live session ``key``, or ``None``: one read (what a
        load needs before it reads the messages)."""
        keyed = self._keyed_of(txn, key)
        if keyed is None:
            return None
        position, version, count = keyed
        return _TIME_ID.unpack(position)[1], version, count

    def head_of_key(self, txn: ReadTransaction, key: str) -> SessionHead | None:
        """The head of the live session ``key``, or ``None``."""
        raw = self._row_of_key(txn, key)
        if raw is None:
            return None
        try:
            return _head_from_row(_the_session(key, raw))
        except (TypeError, ValueError, OverflowError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None

    def has_key(self, txn: ReadTransaction, key: str) -> bool:
        """Whether the session ``key`` is live."""
        return txn.get(self._keys, _key_index(key)) is not None

    def heads(self, txn: ReadTransaction) -> Iterator[tuple[int, SessionHead]]:
        """Every live session's stream id and head, by stream id."""
        for raw_id, position in txn.scan(self._sessions):
            stream_id = unpack_stored(_ID, raw_id, "a key of the session catalog")[0]
            yield stream_id, _decode_head(_row_at(txn, self._activity, _position_of_stream(position, raw_id)))

    def running(self, txn: ReadTransaction) -> list[SessionHead]:
        """Running sessions, latest turn first."""
        entries = txn.scan_keys(self._running, reverse=True)
        return [self._running_head(txn, raw) for raw in entries]

    def running_since_before(self, txn: ReadTransaction, cutoff: float) -> list[SessionHead]:
        """Running sessions whose turn started before ``cutoff`` µs, oldest turn first."""
        heads = []
        for raw in txn.scan_keys(self._running):
            if unpack_stored(_TIME_ID, raw, "a key of the running index")[0] >= cutoff:
                break
            heads.append(self._running_head(txn, raw))
        return heads

    def _running_head(self, txn: ReadTransaction, raw: bytes) -> SessionHead:
        stream_id = unpack_stored(_TIME_ID, raw, "a key of the running index")[1]
        head = self.head(txn, stream_id)
        if head is None:
            raise StoreCorrupted(f"the running index names stream {stream_id}, which has no session")
        return head

    def inactive_since(self, txn: ReadTransaction, cutoff: float) -> list[SessionHead]:
        """Live sessions whose last activity is before ``cutoff`` µs, oldest first."""
        heads = []
        for raw_key, raw in txn.scan(self._activity):
            if unpack_stored(_TIME_ID, raw_key, "a key of the activity index")[0] >= cutoff:
                break
            heads.append(_decode_head(raw))
        return heads

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored catalog differs from ``sessions`` freshly folded from the log."""
        expected: dict[bytes, dict[bytes, bytes]] = {b"sessions": {}, b"activity": {}, b"keys": {}, b"running": {}}
        for stream_id, session in sessions.items():
            head = session.head
            if not head.exists:
                continue
            row = _encode_head(head)
            activity_key = self._activity_key(stream_id, head)
            expected[b"sessions"][_ID.pack(stream_id)] = activity_key
            expected[b"activity"][activity_key] = row
            index_key, keyed = _keys_entry(head, activity_key)
            expected[b"keys"][index_key] = keyed
            if (running_key := self._running_key(stream_id, head)) is not None:
                expected[b"running"][running_key] = b""
        problems = []
        for name, entries in self.dump(txn).items():
            stored = dict(entries)
            for key in sorted(stored.keys() ^ expected[name].keys() | {
                    k for k in stored.keys() & expected[name].keys() if stored[k] != expected[name][k]}):
                # A key index entry names its stream in its value (its position), the others in their key.
                where = (expected[name].get(key) or stored[key])[:_TIME_ID.size] if name == b"keys" else key
                if len(where) < _ID.size:
                    problems.append(f"catalog.{name.decode()}: the entry at {key.hex()} is damaged")
                    continue
                stream_id = _ID.unpack(where[-8:])[0]
                problems.append(f"catalog.{name.decode()}: the entry of stream {stream_id} "
                                f"({sessions[stream_id].head.key if stream_id in sessions else 'unknown'!r}) "
                                "differs from the log")
        return problems

    def dump(self, txn: ReadTransaction) -> dict[bytes, list[tuple[bytes, bytes]]]:
        """Every stored entry, for comparing a rebuilt catalog with an incremental one."""
        return {name: [(bytes(k), bytes(v)) for k, v in txn.scan(space)]
                for name, space in ((b"sessions", self._sessions), (b"activity", self._activity),
                                    (b"keys", self._keys), (b"running", self._running))}

