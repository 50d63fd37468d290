"""The message-list read model: each live session's current messages, in chunks.

Database ``messages.chunks``: stream id + index of the chunk's first message →
message count + the chunk's rows, each a JSON array ``[role, content, µs]``
joined by commas. Appending concatenates bytes without decoding anything, and
loading a session joins its chunks and decodes them in one C-level call: in
Python, per-message decode and object construction, not LMDB, dominate reads.
A chunk closes at ``CHUNK_MESSAGES`` messages or ``CHUNK_BYTES`` bytes, so a
streaming update rewrites at most one small chunk.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

import lmdb
import orjson

from eventstore._errors import StoreCorrupted
from eventstore._time import from_micros, to_micros
from eventstore._values import ChatMessage, TimestampedMessage, trusted_message
from eventstore.events import REDACTED, RecordedEvent

from .readmodel import OpenDb
from .session import (
    AppendMessage,
    ClearMessages,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    SessionSnapshot,
    message_edit,
)

__all__ = ["MessageLists", "CHUNK_MESSAGES", "CHUNK_BYTES"]

CHUNK_MESSAGES = 64
CHUNK_BYTES = 64 << 10

_ID = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QI")
_COUNT = struct.Struct(">I")


def _row(message: ChatMessage, micros: int) -> bytes:
    return orjson.dumps([message.role, message.content, micros])


def _fits(count: int, size: int, row_size: int) -> bool:
    """Whether a row still fits in a chunk of ``count`` rows and ``size`` bytes."""
    return count < CHUNK_MESSAGES and size + row_size < CHUNK_BYTES


def _decode_rows(bodies: list[Any], stream_id: int) -> list[list[Any]]:
    try:
        return orjson.loads(b"[" + b",".join(bodies) + b"]")
    except orjson.JSONDecodeError as exc:
        raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None


class MessageLists:
    """Current messages of every live session."""

    name = "messages"
    code_version = 1

    def __init__(self, open_db: OpenDb) -> None:
        self._chunks = open_db(b"messages.chunks")

    def apply(self, txn: lmdb.Transaction, stream_id: int, recorded: RecordedEvent) -> None:
        edit = message_edit(recorded)
        if edit is None:
            return
        if isinstance(edit, ClearMessages):
            self._delete_all(txn, stream_id)
        elif isinstance(edit, ReplaceMessages):
            self._rewrite(txn, stream_id, [_row(m.message, m.micros) for m in edit.messages])
        elif isinstance(edit, RedactMessages):
            rows = self.rows(txn, stream_id)
            self._rewrite(txn, stream_id, [orjson.dumps([role, REDACTED, micros]) for role, _, micros in rows])
        elif isinstance(edit, AppendMessage):
            self._append(txn, stream_id, _row(edit.message.message, edit.message.micros))
        else:
            self._edit_last(txn, stream_id, edit)

    def _append(self, txn: lmdb.Transaction, stream_id: int, row: bytes) -> None:
        last = self._last_chunk(txn, stream_id)
        if last is not None and _fits(last[1], len(last[2]), len(row)):
            first, count, body = last
            txn.put(_CHUNK_KEY.pack(stream_id, first), _COUNT.pack(count + 1) + body + b"," + row, db=self._chunks)
        else:
            first = 0 if last is None else last[0] + last[1]
            txn.put(_CHUNK_KEY.pack(stream_id, first), _COUNT.pack(1) + row, db=self._chunks)

    def _rewrite(self, txn: lmdb.Transaction, stream_id: int, rows: list[bytes]) -> None:
        """Replace the whole list, laying the chunks out as appending the rows one by one would."""
        self._delete_all(txn, stream_id)
        first, chunk = 0, []
        size = 0
        for index, row in enumerate(rows):
            if chunk and not _fits(len(chunk), size, len(row)):
                txn.put(_CHUNK_KEY.pack(stream_id, first), _COUNT.pack(len(chunk)) + b",".join(chunk), db=self._chunks)
                first, chunk, size = index, [], 0
            size += len(row) + (1 if chunk else 0)
            chunk.append(row)
        if chunk:
            txn.put(_CHUNK_KEY.pack(stream_id, first), _COUNT.pack(len(chunk)) + b",".join(chunk), db=self._chunks)

    def _edit_last(self, txn: lmdb.Transaction, stream_id: int, edit: RemoveLastMessage | ReplaceLastMessage) -> None:
        last = self._last_chunk(txn, stream_id)
        if last is None:
            raise StoreCorrupted(f"stream {stream_id}: an event edits the last message, but there is none")
        first, _count, body = last
        rows = _decode_rows([body], stream_id)
        if isinstance(edit, RemoveLastMessage):
            rows.pop()
        else:
            rows[-1] = [edit.message.role, edit.message.content, rows[-1][2]]
        key = _CHUNK_KEY.pack(stream_id, first)
        if rows:
            txn.put(key, _COUNT.pack(len(rows)) + b",".join(orjson.dumps(r) for r in rows), db=self._chunks)
        else:
            txn.delete(key, db=self._chunks)

    def _last_chunk(self, txn: lmdb.Transaction, stream_id: int) -> tuple[int, int, bytes] | None:
        cursor = txn.cursor(db=self._chunks)
        if cursor.set_range(_ID.pack(stream_id + 1)):
            found = cursor.prev()
        else:
            found = cursor.last()
        if not found:
            return None
        found_stream, first = _CHUNK_KEY.unpack(cursor.key())
        if found_stream != stream_id:
            return None
        value = cursor.value()
        return first, _COUNT.unpack_from(value)[0], value[_COUNT.size:]

    def _bodies(self, txn: lmdb.Transaction, stream_id: int) -> list[Any]:
        prefix = _ID.pack(stream_id)
        cursor = txn.cursor(db=self._chunks)
        bodies: list[Any] = []
        if not cursor.set_range(prefix):
            return bodies
        for key, value in cursor:
            if key[:8] != prefix:
                break
            bodies.append(memoryview(value)[_COUNT.size:])
        return bodies

    def _delete_all(self, txn: lmdb.Transaction, stream_id: int) -> None:
        prefix = _ID.pack(stream_id)
        cursor = txn.cursor(db=self._chunks)
        if not cursor.set_range(prefix):
            return
        while cursor.key()[:8] == prefix:
            if not cursor.delete():
                break

    def rows(self, txn: lmdb.Transaction, stream_id: int) -> list[list[Any]]:
        """The session's messages as stored rows ``[role, content, µs]``."""
        bodies = self._bodies(txn, stream_id)
        return _decode_rows(bodies, stream_id) if bodies else []

    def load(self, txn: lmdb.Transaction, stream_id: int) -> list[ChatMessage]:
        """The session's current messages, oldest first."""
        try:
            return [trusted_message(role, content) for role, content, _ in self.rows(txn, stream_id)]
        except (TypeError, ValueError) as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None

    def load_timestamped(self, txn: lmdb.Transaction, stream_id: int) -> list[TimestampedMessage]:
        """The session's current messages with the times they were appended."""
        try:
            return [TimestampedMessage(trusted_message(role, content), from_micros(micros))
                    for role, content, micros in self.rows(txn, stream_id)]
        except (TypeError, ValueError, OverflowError) as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None

    def check(self, txn: lmdb.Transaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored lists differ from ``sessions`` freshly folded from the log."""
        problems = []
        stored_streams = {_CHUNK_KEY.unpack(key)[0] for key in txn.cursor(db=self._chunks).iternext(values=False)}
        for stream_id in sorted(stored_streams - sessions.keys()):
            problems.append(f"messages: stream {stream_id} has messages but no events")
        for stream_id, session in sessions.items():
            expected = [[m.message.role, m.message.content, m.micros] for m in session.messages]
            try:
                differs = self.rows(txn, stream_id) != expected
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
