"""Keys and small values: ``search.terms``, ``search.names``, ``search.summary`` (a term's head),
``search.sessions``, ``search.meta``, and the keys of ``search.blocks`` and ``search.docs``."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from operator import lt
from typing import Any

from eventstore._errors import StoreCorrupted, unpack_stored

from .. import formats
from .arrays import U32, packed_u32s, u32s

__all__ = [
    "META_GENERATION",
    "META_MESSAGES",
    "META_NEXT_TID",
    "block_key",
    "block_of",
    "block_of_key",
    "blocks_of_value",
    "chunk_key",
    "chunk_of_key",
    "chunks_end",
    "count_of_value",
    "count_value",
    "df_of_value",
    "head_value",
    "id_key",
    "id_of_key",
    "offset_of",
    "session_of_value",
    "session_value",
    "term_entry",
    "term_of_entry",
    "tid_of_entry",
    "unpacked",
    "WHOLE_MARK",
    "whole_head",
]

META_MESSAGES = b"messages"
META_NEXT_TID = b"next_tid"
META_GENERATION = b"generation"
_HEAD_OF_ONE = struct.Struct("<II")  # a term's message count and its one block (most terms of a small index)
_KEY = struct.Struct(">I")  # in keys: term ids, sessions
_CHUNK_KEY = struct.Struct(">II")  # session, chunk number
_SESSION = struct.Struct("<Iq")  # messages, latest activity µs
_U64 = struct.Struct("<Q")
#: What a term's head stored whole (``wholes``) holds after its message count, where another head lists its first
#: block: no block has this number.
WHOLE_MARK = 0xFFFFFFFF


def id_key(number: int) -> bytes:
    """The key of a term id (``search.summary``, ``search.names``) or a session (``search.sessions``); a chunk
    key's prefix."""
    return _KEY.pack(number)


def unpacked(layout: struct.Struct, raw: bytes, database: str, key: bytes | str | None = None) -> tuple[Any, ...]:
    """A stored key of ``database`` of ``layout``'s length, or with ``key`` the value stored at it (a text key: a
    named entry); one of another length is damage, named by its database and key."""
    if len(raw) == layout.size:  # the name is built only for damage: reads of sessions and chunks come here often
        return layout.unpack(raw)
    where = (f"key {raw.hex()}" if key is None
             else f"value at key {key.hex() if isinstance(key, bytes) else repr(key)}")
    return unpack_stored(layout, raw, f"the search index's {database} {where}")


def id_of_key(key: bytes, database: str) -> int:
    """The term id or session of a key of ``database`` (``search.names``, ``search.summary``, ``search.sessions``)."""
    return int(unpacked(_KEY, key, database)[0])


def chunk_key(sid: int, number: int) -> bytes:
    return _CHUNK_KEY.pack(sid, number)


def chunks_end(sid: int) -> bytes:
    """A key past every chunk key of session ``sid`` (no count of messages names the last chunk number): the
    floor below it is the session's last chunk."""
    return _CHUNK_KEY.pack(sid, 0xFFFFFFFF)


def chunk_of_key(key: bytes) -> tuple[int, int]:
    """``(session, chunk number)`` of a ``search.docs`` key."""
    sid, number = unpacked(_CHUNK_KEY, key, "search.docs")
    return sid, number


def term_entry(term: str, key: bytes, tid: int) -> bytes:
    """The ``search.terms`` value of ``term`` stored under ``key`` (``term_key(term)``)."""
    full = term.encode("utf-8")
    return U32.pack(tid) + (full if key != full else b"")


def term_of_entry(key: bytes, value: bytes) -> tuple[str, int]:
    """``(term, term id)`` of a ``search.terms`` pair."""
    return bytes(value[4:] or key).decode("utf-8"), tid_of_entry(key, value)


def tid_of_entry(key: bytes, value: bytes) -> int:
    """The term id of the ``search.terms`` value at ``key``: its first four bytes (the term follows where the key
    is cut short)."""
    if len(value) < U32.size:
        raise StoreCorrupted(f"the search index's search.terms value at key {key.hex()} is damaged ({len(value)} "
                             f"bytes where at least {U32.size} belong)")
    return int(U32.unpack_from(value)[0])


def block_of(sid: int) -> int:
    """The block of session ``sid`` in a term's summary."""
    return sid >> formats.BLOCK_BITS


def offset_of(sid: int) -> int:
    """Session ``sid`` as its block stores it."""
    return sid & ((1 << formats.BLOCK_BITS) - 1)


def block_key(block: int, tid: int) -> bytes:
    """The ``search.blocks`` key of a term's block: block first, so that new sessions' blocks come last."""
    return _CHUNK_KEY.pack(block, tid)


def block_of_key(key: bytes, database: str) -> tuple[int, int]:
    """``(block, term id)`` of a key of ``database`` (``search.blocks``, ``search.maps``, ``search.repeats``)."""
    block, tid = unpacked(_CHUNK_KEY, key, database)
    return block, tid


def head_value(df: int, blocks: Sequence[int]) -> bytes:
    """The ``search.summary`` value: the term's message count, then the blocks it has sessions in."""
    return _HEAD_OF_ONE.pack(df, blocks[0]) if len(blocks) == 1 else U32.pack(df) + packed_u32s(blocks)


def df_of_value(value: bytes) -> int:
    return int(U32.unpack_from(value if whole_head(value) else _head(value))[0])


def whole_head(value: bytes) -> bool:
    """Whether a ``search.summary`` value holds the term stored whole (``wholes``)."""
    return len(value) >= _HEAD_OF_ONE.size and _HEAD_OF_ONE.unpack_from(value)[1] == WHOLE_MARK


def blocks_of_value(value: bytes) -> Sequence[int]:
    blocks = u32s(_head(value)[4:])
    if len(blocks) > 1 and not all(map(lt, blocks, blocks[1:])):  # a summary's joined sessions must ascend
        raise StoreCorrupted("the search index is damaged: a term's blocks are out of order")
    return blocks


def _head(value: bytes) -> bytes:
    """A ``search.summary`` value that holds a count and one block at least, whole."""
    if len(value) < _HEAD_OF_ONE.size or len(value) % U32.size:
        raise StoreCorrupted("the search index is damaged: a term's head has the wrong size")
    return value


def session_value(messages: int, activity: int) -> bytes:
    return _SESSION.pack(messages, activity)


def session_of_value(key: bytes, value: bytes) -> tuple[int, int]:
    """``(messages, latest activity µs)`` of the ``search.sessions`` value at ``key``."""
    messages, activity = unpacked(_SESSION, value, "search.sessions", key)
    return messages, activity


def count_value(count: int) -> bytes:
    return _U64.pack(count)


def count_of_value(key: bytes, value: bytes) -> int:
    """The count of the ``search.meta`` value at ``key`` (``META_MESSAGES``, ``META_NEXT_TID``)."""
    return int(unpacked(_U64, value, "search.meta", key.decode())[0])
