"""The session catalog read model: each live session's head, ordered by activity and by turn.

Databases: ``catalog.sessions`` stream id → head row; ``catalog.activity``
last-activity time + stream id → head row (the list order, newest last, so a
listing is one cursor walk with no lookups); ``catalog.running`` turn start +
stream id → nothing (running sessions only). A deleted session has no entry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from eventstore._codec import bulk_decoding, unpack_stored
from eventstore._errors import StoreCorrupted
from eventstore._time import to_micros
from eventstore._values import SessionMetadata, SessionState
from eventstore.storage import ReadTransaction, WriteTransaction

from .readmodel import OpenSpace
from .session import Change, SessionHead, SessionSnapshot, empty_head, evolve_head

__all__ = ["Catalog"]

_ID = struct.Struct(">Q")
_TIME_ID = struct.Struct(">QQ")


# Times are stored as ISO 8601 text: ``datetime.fromisoformat`` is C, faster
# than building a datetime from µs in Python, and a listing builds two per session.
def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not UTC:
        raise ValueError(f"stored time {text!r} is not in UTC")
    return moment


def _head_to_row(head: SessionHead) -> list[Any]:
    state = head.state
    return [head.key, head.version, head.name,
            None if state is None else state.state,
            None if state is None else state.turn_id,
            None if state is None else _text(state.turn_started_at),
            _text(head.created_at), _text(head.last_activity), head.message_count]


def _head_from_row(row: list[Any]) -> SessionHead:
    key, version, name, state, turn_id, started, created, last, count = row
    run_state = None if state is None else SessionState(state, turn_id, _moment(started))
    return SessionHead(key, version, True, name, run_state, _moment(created), _moment(last), count)


def _encode_head(head: SessionHead) -> bytes:
    return orjson.dumps(_head_to_row(head))


def _decode_head(raw: bytes) -> SessionHead:
    try:
        return _head_from_row(orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
        raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None


class Catalog:
    """Session heads, by stream id, by last activity and by running turn."""

    name = "catalog"
    code_version = 2

    def __init__(self, open_space: OpenSpace) -> None:
        self._sessions = open_space("catalog.sessions")
        self._activity = open_space("catalog.activity")
        self._running = open_space("catalog.running")

    def head(self, txn: ReadTransaction, stream_id: int) -> SessionHead | None:
        """The head of a live session, or ``None``."""
        raw = txn.get(self._sessions, _ID.pack(stream_id))
        return None if raw is None else _decode_head(raw)

    def apply(self, txn: WriteTransaction, stream_id: int, events: Sequence[Change]) -> None:
        before = self.head(txn, stream_id)
        after = before or empty_head(events[0].session_key)
        for recorded in events:
            after = evolve_head(after, recorded)
        if before is not None:
            self._unindex(txn, stream_id, before)
        if after.exists:
            row = _encode_head(after)
            txn.put(self._sessions, _ID.pack(stream_id), row)
            txn.put(self._activity, self._activity_key(stream_id, after), row)
            if after.state is not None and after.state.turn_started_at is not None:
                txn.put(self._running, _TIME_ID.pack(to_micros(after.state.turn_started_at), stream_id), b"")

    def _unindex(self, txn: WriteTransaction, stream_id: int, head: SessionHead) -> None:
        txn.delete(self._sessions, _ID.pack(stream_id))
        txn.delete(self._activity, self._activity_key(stream_id, head))
        if head.state is not None and head.state.turn_started_at is not None:
            txn.delete(self._running, _TIME_ID.pack(to_micros(head.state.turn_started_at), stream_id))

    @staticmethod
    def _activity_key(stream_id: int, head: SessionHead) -> bytes:
        assert head.last_activity is not None
        return _TIME_ID.pack(to_micros(head.last_activity), stream_id)

    def clear(self, txn: WriteTransaction) -> None:
        for space in (self._sessions, self._activity, self._running):
            txn.clear(space)

    # -- queries ----------------------------------------------------------------------

    def metadata_by_activity(self, txn: ReadTransaction, limit: int | None = None) -> list[SessionMetadata]:
        """Live sessions' metadata, most recent activity first."""
        rows = self._rows(txn, limit)
        parse = datetime.fromisoformat  # the times were written in UTC by _text; verify checks them
        try:
            with bulk_decoding():
                return [SessionMetadata(key, name, parse(created), parse(last), count)
                        for key, _version, name, _state, _turn, _started, created, last, count in rows]
        except (TypeError, ValueError, OverflowError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None

    def metadata_of(self, txn: ReadTransaction, stream_ids: Sequence[int]) -> list[SessionMetadata]:
        """Metadata of the live sessions among ``stream_ids``, in that order (for search results)."""
        found = txn.get_many(self._sessions, [_ID.pack(stream_id) for stream_id in stream_ids])
        values = [found[key] for key in map(_ID.pack, stream_ids) if key in found]
        parse = datetime.fromisoformat
        try:
            rows = orjson.loads(b"[" + b",".join(values) + b"]")
            return [SessionMetadata(key, name, parse(created), parse(last), count)
                    for key, _version, name, _state, _turn, _started, created, last, count in rows]
        except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None

    def keys_by_activity(self, txn: ReadTransaction) -> list[str]:
        """Live session keys, most recent activity first."""
        try:
            keys = [row[0] for row in self._rows(txn, None)]
        except (TypeError, KeyError, IndexError) as exc:
            raise StoreCorrupted(f"the session catalog is damaged: a row is not a list ({exc!r})") from None
        if not all(isinstance(key, str) for key in keys):
            raise StoreCorrupted("the session catalog is damaged: a session key is not text")
        return keys

    def _rows(self, txn: ReadTransaction, limit: int | None) -> list[list[Any]]:
        values: list[bytes] = []
        for value in txn.scan_values(self._activity, reverse=True):
            if limit is not None and len(values) >= limit:
                break
            values.append(value)
        try:
            # One C-level decode for the whole listing instead of one call per row; callers check the fields.
            rows: list[list[Any]] = orjson.loads(b"[" + b",".join(values) + b"]")
            return rows
        except orjson.JSONDecodeError as exc:
            raise StoreCorrupted(f"the session catalog is damaged: {exc}") from None

    def heads(self, txn: ReadTransaction) -> Iterator[tuple[int, SessionHead]]:
        """Every live session's stream id and head, by stream id."""
        for raw_id, raw in txn.scan(self._sessions):
            yield unpack_stored(_ID, raw_id, "a key of the session catalog")[0], _decode_head(raw)

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
        expected: dict[bytes, dict[bytes, bytes]] = {b"sessions": {}, b"activity": {}, b"running": {}}
        for stream_id, session in sessions.items():
            head = session.head
            if not head.exists:
                continue
            row = _encode_head(head)
            expected[b"sessions"][_ID.pack(stream_id)] = row
            expected[b"activity"][self._activity_key(stream_id, head)] = row
            if head.state is not None and head.state.turn_started_at is not None:
                expected[b"running"][_TIME_ID.pack(to_micros(head.state.turn_started_at), stream_id)] = b""
        problems = []
        for name, entries in self.dump(txn).items():
            stored = dict(entries)
            for key in sorted(stored.keys() ^ expected[name].keys() | {
                    k for k in stored.keys() & expected[name].keys() if stored[k] != expected[name][k]}):
                if len(key) < _ID.size:
                    problems.append(f"catalog.{name.decode()}: the key {key.hex()} is damaged")
                    continue
                stream_id = _ID.unpack(key[-8:])[0]
                problems.append(f"catalog.{name.decode()}: the entry of stream {stream_id} "
                                f"({sessions[stream_id].head.key if stream_id in sessions else 'unknown'!r}) "
                                "differs from the log")
        return problems

    def dump(self, txn: ReadTransaction) -> dict[bytes, list[tuple[bytes, bytes]]]:
        """Every stored entry, for comparing a rebuilt catalog with an incremental one."""
        return {name: [(bytes(k), bytes(v)) for k, v in txn.scan(space)]
                for name, space in ((b"sessions", self._sessions), (b"activity", self._activity),
                                    (b"running", self._running))}

