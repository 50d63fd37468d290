"""The message-list read model: each live session's current messages, in chunks.

Database ``messages.chunks``: stream id + index of the chunk's first message →
message count (4 bytes) + a JSON array of rows ``[role, content, µs]``.
In Python, decoding and object construction, not LMDB, dominate reads, so:

* appending splices a row into the last chunk's bytes without decoding it;
* loading decodes each chunk with one ``orjson.loads`` straight from its value,
  with no copying into one large buffer (a fresh process pays for every new page);
* a batch of appends (``append_many``) reads and writes the last chunk once.

A chunk closes at ``CHUNK_MESSAGES`` messages or ``CHUNK_BYTES`` bytes: small
enough that a durable append rewrites few pages, large enough that a load walks
few entries. A removal or streaming update rewrites only the last chunk.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping, Sequence

import lmdb
import orjson

from eventstore._codec import bulk_decoding
from eventstore._errors import StoreCorrupted
from eventstore._time import stored_micros
from eventstore._values import ChatMessage, trusted_message
from eventstore.events import REDACTED, RecordedEvent

from .readmodel import OpenDb
from .session import (
    AppendMessage,
    ClearMessages,
    Entry,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    SessionSnapshot,
    message_edit,
)

__all__ = ["MessageLists", "CHUNK_MESSAGES", "CHUNK_BYTES"]

CHUNK_MESSAGES = 64
CHUNK_BYTES = 16 << 10

_ID = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QI")
_COUNT = struct.Struct(">I")


def _row(message: ChatMessage, micros: int) -> bytes:
    return orjson.dumps([message.role, message.content, micros])


class _Chunk:
    """A chunk being edited in memory: its first index, row count and rows (JSON, joined when written)."""

    __slots__ = ("first", "count", "rows", "size")

    def __init__(self, first: int, count: int, body: bytes) -> None:
        self.first, self.count = first, count
        self.rows = [body[1:-1]] if count else []  # the stored array's inside stands for its rows
        self.size = len(body)  # of the JSON array the rows make

    @property
    def body(self) -> bytes:
        return b"[" + b",".join(self.rows) + b"]"

    def fits(self, row: bytes) -> bool:
        return not self.count or (self.count < CHUNK_MESSAGES and self.size + len(row) < CHUNK_BYTES)

    def add(self, row: bytes) -> None:
        # Rows are joined once, when the chunk is written: a batch of appends copies the chunk once.
        self.size += len(row) + (1 if self.count else 2)
        self.rows.append(row)
        self.count += 1

    def successor(self) -> _Chunk:
        return _Chunk(self.first + self.count, 0, b"")


def _decode(value: Any, stream_id: int) -> list[list[Any]]:
    try:
        return orjson.loads(memoryview(value)[_COUNT.size:])
    except orjson.JSONDecodeError as exc:
        raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None


class MessageLists:
    """Current messages of every live session."""

    name = "messages"
    code_version = 2

    def __init__(self, open_db: OpenDb) -> None:
        self._chunks = open_db(b"messages.chunks")

    def apply(self, txn: lmdb.Transaction, stream_id: int, events: Sequence[RecordedEvent]) -> None:
        tail: _Chunk | None = None  # the last chunk while a run of appends goes on
        for recorded in events:
            edit = message_edit(recorded)
            if isinstance(edit, AppendMessage):
                row = _row(*edit.message)
                if tail is None:
                    tail = self._last_chunk(txn, stream_id) or _Chunk(0, 0, b"")
                if not tail.fits(row):
                    self._put(txn, stream_id, tail)
                    tail = tail.successor()
                tail.add(row)
                continue
            if tail is not None:
                self._put(txn, stream_id, tail)
                tail = None
            if edit is not None:
                self._edit(txn, stream_id, edit)
        if tail is not None:
            self._put(txn, stream_id, tail)

    def _edit(self, txn: lmdb.Transaction, stream_id: int, edit: Any) -> None:
        if isinstance(edit, ClearMessages):
            self._delete_all(txn, stream_id)
        elif isinstance(edit, ReplaceMessages):
            self._rewrite(txn, stream_id, [_row(*entry) for entry in edit.messages])
        elif isinstance(edit, RedactMessages):
            rows = self.rows(txn, stream_id)
            self._rewrite(txn, stream_id, [orjson.dumps([role, REDACTED, micros]) for role, _, micros in rows])
        else:
            self._edit_last(txn, stream_id, edit)

    def _put(self, txn: lmdb.Transaction, stream_id: int, chunk: _Chunk) -> None:
        txn.put(_CHUNK_KEY.pack(stream_id, chunk.first), _COUNT.pack(chunk.count) + chunk.body, db=self._chunks)

    def _rewrite(self, txn: lmdb.Transaction, stream_id: int, rows: list[bytes]) -> None:
        """Replace the whole list, laying the chunks out as appending the rows one by one would."""
        self._delete_all(txn, stream_id)
        chunk = _Chunk(0, 0, b"")
        for row in rows:
            if not chunk.fits(row):
                self._put(txn, stream_id, chunk)
                chunk = chunk.successor()
            chunk.add(row)
        if chunk.count:
            self._put(txn, stream_id, chunk)

    def _edit_last(self, txn: lmdb.Transaction, stream_id: int, edit: RemoveLastMessage | ReplaceLastMessage) -> None:
        last = self._last_chunk(txn, stream_id)
        if last is None:
            raise StoreCorrupted(f"stream {stream_id}: an event edits the last message, but there is none")
        rows = _decode(_COUNT.pack(last.count) + last.body, stream_id)
        if isinstance(edit, RemoveLastMessage):
            rows.pop()
        else:
            rows[-1] = [edit.message.role, edit.message.content, rows[-1][2]]
        if rows:
            self._put(txn, stream_id, _Chunk(last.first, len(rows), orjson.dumps(rows)))
        else:
            txn.delete(_CHUNK_KEY.pack(stream_id, last.first), db=self._chunks)

    def _last_chunk(self, txn: lmdb.Transaction, stream_id: int) -> _Chunk | None:
        cursor = txn.cursor(db=self._chunks)
        found = cursor.prev() if cursor.set_range(_ID.pack(stream_id + 1)) else cursor.last()
        if not found:
            return None
        found_stream, first = _CHUNK_KEY.unpack(cursor.key())
        if found_stream != stream_id:
            return None
        value = cursor.value()
        return _Chunk(first, _COUNT.unpack_from(value)[0], bytes(value[_COUNT.size:]))

    def _values(self, txn: lmdb.Transaction, stream_id: int, start: int = 0) -> tuple[int, list[Any]]:
        """The values of the stream's chunks from the one holding message ``start`` on, and that chunk's first index."""
        prefix = _ID.pack(stream_id)
        cursor = txn.cursor(db=self._chunks)
        if start == 0:  # from the stream's first chunk, wherever it begins (verify must see a stray one)
            found = cursor.set_range(prefix)
        else:  # the chunk holding ``start``: the stream's last one that begins at or before it
            found = cursor.prev() if cursor.set_range(_CHUNK_KEY.pack(stream_id, start + 1)) else cursor.last()
        if not found or cursor.key()[:8] != prefix:
            return start, []
        first = _CHUNK_KEY.unpack(cursor.key())[1]
        values: list[Any] = []
        for key, value in cursor:
            if key[:8] != prefix:
                break
            values.append(value)
        return first, values

    def _delete_all(self, txn: lmdb.Transaction, stream_id: int) -> None:
        prefix = _ID.pack(stream_id)
        cursor = txn.cursor(db=self._chunks)
        if not cursor.set_range(prefix):
            return
        while cursor.key()[:8] == prefix:
            if not cursor.delete():
                break

    def rows(self, txn: lmdb.Transaction, stream_id: int, start: int = 0) -> list[list[Any]]:
        """The session's messages (from index ``start`` on) as stored rows ``[role, content, µs]``."""
        first, values = self._values(txn, stream_id, start)
        rows: list[list[Any]] = []
        for value in values:
            rows += _decode(value, stream_id)
        return rows[max(start - first, 0):]  # a damaged stream may begin after 0: keep what is there

    def entries(self, txn: lmdb.Transaction, stream_id: int) -> list[Entry]:
        """The session's current messages with the µs they were appended, oldest first."""
        entries: list[Entry] = []
        try:
            # Chunk by chunk: a long session's decoded rows never sit in memory all at once (cache-friendly).
            with bulk_decoding():
                for value in self._values(txn, stream_id)[1]:
                    entries += [(trusted_message(role, content), stored_micros(micros))
                                for role, content, micros in _decode(value, stream_id)]
        except (TypeError, ValueError) as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None
        return entries

    def check(self, txn: lmdb.Transaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored lists differ from ``sessions`` freshly folded from the log."""
        problems = []
        stored_streams = {_CHUNK_KEY.unpack(key)[0] for key in txn.cursor(db=self._chunks).iternext(values=False)}
        for stream_id in sorted(stored_streams - sessions.keys()):
            problems.append(f"messages: stream {stream_id} has messages but no events")
        for stream_id, session in sessions.items():
            expected = [[message.role, message.content, micros] for message, micros in session.messages]
            try:
                values = self._values(txn, stream_id)[1]
                differs = self.rows(txn, stream_id) != expected or any(
                    _COUNT.unpack_from(value)[0] != len(_decode(value, stream_id)) for value in values)
            except StoreCorrupted as exc:
                problems.append(f"messages: {exc}")
                continue
            if differs:
                problems.append(f"messages: the list of session {session.head.key!r} differs from the log")
        return problems

    def clear(self, txn: lmdb.Transaction) -> None:
        txn.drop(self._chunks, delete=False)

    def dump(self, txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
        """Every stored entry, for comparing a rebuilt model with an incremental one."""
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._chunks)]
