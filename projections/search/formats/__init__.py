"""The search index's stored forms: pure bytes in, bytes out.

Named key spaces ``search.*``:

* ``search.terms``: term (``tokenizer.term_key``) → term id (u32), then the
  whole term when the key is shortened. Prefix queries walk its keys in order.
  Only terms that some current message holds are kept: a term whose count
  drops to zero leaves the dictionary (and ``search.names``) in the same
  commit, so removed or redacted words do not linger as keys. Ids are never
  reused before the index is cleared (``TermIds`` relies on it).
* ``search.names``: term id → term key, the way back from an id to the term,
  so that a term whose count drops to zero can be removed.
* ``search.summary``: term id → how many messages hold the term (u32), then
  the blocks its summary is stored in (u32 each, ascending).
* ``search.blocks``: block and term id → the term's summary (``Block``) over
  the sessions of that block (``1 << BLOCK_BITS`` consecutive session ids):
  each session that holds the term with its best level and a tag, sorted by
  session for binary search; a block of more than ``GROUPED_FROM`` sessions
  also keeps them grouped by level, best first, so that a term's top sessions
  are read first. Sessions are stored as u16 offsets in the block: 4 bytes
  per (term, session), 6 in large blocks. The block
  comes first in the key: new sessions' blocks are appended at the end, and a
  batch of new sessions rewrites only the last blocks (``Summary`` joins a
  term's blocks for queries).
* ``search.maps``: block and term id (as in ``search.blocks``) → the term's message map there, for a block of
  ``MAP_FROM`` sessions or more: a roaring bitmap (``pyroaring``, serialized) of every message holding
  the term, keyed ``index << MAP_SHIFT | offset`` (``index``: the message's, ``LAST_TAG`` for that or later;
  ``offset``: the session's in the block). ANDing two terms' maps gives the sessions where one message holds
  both; a block of fewer sessions has no map, and a query reads its tags (``placed_keys``).
* ``search.repeats``: block and term id → where the block has the term's message map, the messages (keyed as in
  the map) whose level for the term differs from the message's level (the term repeats there), and those levels:
  ``repeats_value``.
* ``search.levels``: block and level → the messages of the block's sessions whose level (``chunk_levels``: that
  of the terms a message holds once, which its length gives) is ``level``, keyed as in the maps, for messages below
  index ``LAST_TAG``. With a map and the repeats, a message's weight for each term it holds is known without its
  postings.
* ``search.docs``: session and chunk number → the postings of up to
  ``CHUNK_MESSAGES`` messages: each message's term ids (2 bytes below 65,536,
  else 3, or 4 once ids need it) and levels (one a message, and those of the
  postings at another level). The forward index: removals read what to take
  out, and a session's exact multi-term score is computed from it.
* ``search.sessions``: session → message count and latest activity;
  ``search.meta``: message count, next term id, generation (changes when the
  index is cleared, so term ids cached in memory are dropped).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import compress, repeat
from operator import add, itemgetter, lt
from typing import Literal

from pyroaring import BitMap, FrozenBitMap

from eventstore._errors import StoreCorrupted

__all__ = [
    "CHUNK_MESSAGES",
    "FIND_PAYS_OFF",
    "GROUPED_FROM",
    "MAX_ID",
    "META_GENERATION",
    "META_MESSAGES",
    "META_NEXT_TID",
    "MULTI",
    "LAST_TAG",
    "BLOCK_BITS",
    "Block",
    "Summary",
    "MAP_FROM",
    "MAP_UP_TO",
    "MAP_SHIFT",
    "MULTI_KEYS",
    "LAST_KEYS",
    "JOINED_SHIFT",
    "JOINED_BLOCKS",
    "level_key",
    "level_of_key",
    "repeats_value",
    "repeats_of_value",
    "repeated_levels",
    "repeated_at",
    "chunk_levels",
    "message_level",
    "mapped",
    "placed",
    "placed_keys",
    "block_present",
    "block_spread",
    "session_map_keys",
    "map_value",
    "posted_keys",
    "map_of_value",
    "block_of",
    "offset_of",
    "block_key",
    "block_of_key",
    "u16s",
    "u32s",
    "summary_of",
    "summary_set",
    "summary_raise",
    "summary_extend",
    "packed_u64s",
    "tag",
    "entry",
    "merged",
    "ChunkMessage",
    "chunk_append",
    "chunk_message_of",
    "chunk_posted",
    "chunk_pop",
    "chunk_message",
    "chunk_size",
    "chunk_occurrences",
    "chunk_occurrences_of",
    "chunk_counts",
    "places",
    "id_key",
    "id_of_key",
    "chunk_key",
    "chunk_of_key",
    "term_entry",
    "term_of_entry",
    "head_value",
    "tid_of_entry",
    "df_of_value",
    "blocks_of_value",
    "session_value",
    "session_of_value",
    "count_value",
    "count_of_value",
]

#: Messages per forward-index chunk.
CHUNK_MESSAGES = 64
#: A term's summary is stored in blocks of ``1 << BLOCK_BITS`` consecutive session ids, so that indexing new
#: sessions rewrites the last blocks only, never a whole summary; a block stores its sessions as u16 offsets.
BLOCK_BITS = 12
#: The greatest term id, and the greatest session id, the index can hold.
MAX_ID = 0xFFFFFFFF
META_MESSAGES = b"messages"
META_NEXT_TID = b"next_tid"
META_GENERATION = b"generation"

_LITTLE = sys.byteorder == "little"
_U32 = struct.Struct("<I")  # in values
_HEAD_OF_ONE = struct.Struct("<II")  # a term's message count and its one block (most terms of a small index)
_KEY = struct.Struct(">I")  # in keys: term ids, sessions
_CHUNK_KEY = struct.Struct(">II")  # session, chunk number
_SESSION = struct.Struct("<Iq")  # messages, latest activity µs
_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")


# -- keys and small values -----------------------------------------------------------


def id_key(number: int) -> bytes:
    """The key of a term id (``search.summary``, ``search.names``) or a session (``search.sessions``); a chunk
    key's prefix."""
    return _KEY.pack(number)


def id_of_key(key: bytes) -> int:
    return int(_KEY.unpack(key)[0])


def chunk_key(sid: int, number: int) -> bytes:
    return _CHUNK_KEY.pack(sid, number)


def chunk_of_key(key: bytes) -> tuple[int, int]:
    """``(session, chunk number)``."""
    sid, number = _CHUNK_KEY.unpack(key)
    return sid, number


def term_entry(term: str, key: bytes, tid: int) -> bytes:
    """The ``search.terms`` value of ``term`` stored under ``key`` (``term_key(term)``)."""
    full = term.encode("utf-8")
    return _U32.pack(tid) + (full if key != full else b"")


def term_of_entry(key: bytes, value: bytes) -> tuple[str, int]:
    """``(term, term id)`` of a ``search.terms`` pair."""
    return bytes(value[4:] or key).decode("utf-8"), int(_U32.unpack_from(value)[0])


def tid_of_entry(value: bytes) -> int:
    """The term id of a ``search.terms`` value."""
    return int(_U32.unpack_from(value)[0])


def block_of(sid: int) -> int:
    """The block of session ``sid`` in a term's summary."""
    return sid >> BLOCK_BITS


def offset_of(sid: int) -> int:
    """Session ``sid`` as its block stores it."""
    return sid & ((1 << BLOCK_BITS) - 1)


def block_key(block: int, tid: int) -> bytes:
    """The ``search.blocks`` key of a term's block: block first, so that new sessions' blocks come last."""
    return _CHUNK_KEY.pack(block, tid)


def block_of_key(key: bytes) -> tuple[int, int]:
    """``(block, term id)``."""
    block, tid = _CHUNK_KEY.unpack(key)
    return block, tid


def head_value(df: int, blocks: Sequence[int]) -> bytes:
    """The ``search.summary`` value: the term's message count, then the blocks it has sessions in."""
    return _HEAD_OF_ONE.pack(df, blocks[0]) if len(blocks) == 1 else _U32.pack(df) + _pack_u32s(blocks)


def df_of_value(value: bytes) -> int:
    return int(_U32.unpack_from(_head(value))[0])


def blocks_of_value(value: bytes) -> Sequence[int]:
    blocks = u32s(_head(value)[4:])
    if len(blocks) > 1 and not all(map(lt, blocks, blocks[1:])):  # a summary's joined sessions must ascend
        raise StoreCorrupted("the search index is damaged: a term's blocks are out of order")
    return blocks


def _head(value: bytes) -> bytes:
    """A ``search.summary`` value that holds a count and one block at least, whole."""
    if len(value) < _HEAD_OF_ONE.size or len(value) % _U32.size:
        raise StoreCorrupted("the search index is damaged: a term's head has the wrong size")
    return value


def session_value(messages: int, activity: int) -> bytes:
    return _SESSION.pack(messages, activity)


def session_of_value(value: bytes) -> tuple[int, int]:
    """``(messages, latest activity µs)``."""
    messages, activity = _SESSION.unpack(value)
    return messages, activity


def count_value(count: int) -> bytes:
    return _U64.pack(count)


def count_of_value(value: bytes) -> int:
    return int(_U64.unpack(value)[0])


# -- stored forms ------------------------------------------------------------------
#
# Values are little-endian, so that on the usual little-endian hosts a run of u32
# in a value is read, and binary-searched, in place (``memoryview.cast``); keys
# are big-endian, so that they sort by number.


def _unsigned(data: bytes | bytearray | memoryview, typecode: Literal["Q", "I", "H"]) -> Sequence[int]:
    """The little-endian unsigned values (``array`` ``typecode``) in ``data``, without copying where it can."""
    if _LITTLE:
        return memoryview(data).cast(typecode)
    values = array(typecode)
    values.frombytes(data)
    values.byteswap()
    return values


def u16s(data: bytes | bytearray | memoryview) -> Sequence[int]:
    """The little-endian u16 values in ``data``."""
    return _unsigned(data, "H")


def u32s(data: bytes | bytearray | memoryview) -> Sequence[int]:
    """The little-endian u32 values in ``data``."""
    return _unsigned(data, "I")


def _packed(values: Sequence[int], typecode: Literal["Q", "I", "H"]) -> bytes:
    """``values`` as little-endian unsigned integers (``array`` ``typecode``)."""
    packed = array(typecode, values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def _pack_u32s(values: Sequence[int]) -> bytes:
    return _packed(values, "I")


def packed_u64s(values: Sequence[int]) -> bytes:
    """``values`` as little-endian u64."""
    return _packed(values, "Q")


def _pack_u16s(values: Sequence[int]) -> bytes:
    return _packed(values, "H")


def _find_aligned(data: bytes, pattern: bytes, start: int, end: int) -> int:
    """The offset of the first ``pattern`` in ``data[start:end]`` at a multiple of its length from ``start`` (a
    value of a run of fixed-width values), or -1."""
    width = len(pattern)
    position = data.find(pattern, start, end)
    while position >= 0 and (position - start) % width:
        position = data.find(pattern, position + 1, end)
    return position


# A term's summary in a block: every session of the block that contains the term, with its best level for it
# and a tag that says where that level is: bit 7 set when several of the session's messages
# contain the term, bits 0-6 the index of the first message with the best level (127: 127 or
# later). Two query terms whose tags are single and different are then known to sit in
# different messages, and equal ones (below 127) in the same message, without reading postings.
#
#   head      u32 sessions (n), u16 distinct levels (d), u8 flags
#   sorted    n × u16: the sessions (offsets in the block), ascending
#   best      n bytes: the best level of each sorted session
#   tags      n bytes: the tag of each sorted session
# and, for a block of more than GROUPED_FROM sessions (flag 1), the sessions in level order:
#   levels    d bytes, descending
#   counts    d × u16 (or u32 with flag 2): sessions at each level
#   grouped   n × u16: the sessions, grouped by level in the order above, ascending within a level
# A smaller block is put in level order when it is read; this keeps the many rare terms small.
#
# In memory an entry is one int, ``level << 8 | tag``.
_SUMMARY_HEAD = struct.Struct("<IHB")
GROUPED = 1
_WIDE_COUNTS = 2
MULTI = 0x80
LAST_TAG = 0x7F
#: Terms in more sessions than this store their sessions in level order too.
GROUPED_FROM = 256


def tag(index: int, multi: bool) -> int:
    return (MULTI if multi else 0) | min(index, LAST_TAG)


class Block:
    """One block's stored summary, read in place. Its sessions are offsets in the block (``sid & BLOCK_MASK``)."""

    __slots__ = ("raw", "sessions", "distinct", "flags", "levels_at")
    raw: bytes
    sessions: int
    distinct: int
    flags: int
    #: Where the best levels start (after the head and the sorted sessions).
    levels_at: int

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        if len(raw) < _SUMMARY_HEAD.size:
            raise StoreCorrupted("the search index is damaged: a term summary has the wrong size")
        n, distinct, flags = _SUMMARY_HEAD.unpack_from(raw)
        self.sessions, self.distinct, self.flags = n, distinct, flags
        self.levels_at = _SUMMARY_HEAD.size + 2 * n
        size = self.levels_at + 2 * n
        if flags & GROUPED:
            size += distinct * (5 if flags & _WIDE_COUNTS else 3) + 2 * n
        if len(raw) != size:
            raise StoreCorrupted("the search index is damaged: a term summary has the wrong size")

    def sorted_sids(self) -> Sequence[int]:
        return _unsigned(memoryview(self.raw)[_SUMMARY_HEAD.size:self.levels_at], "H")

    def sids_raw(self) -> bytes:
        """The sorted sessions as little-endian u16 bytes."""
        return self.raw[_SUMMARY_HEAD.size:self.levels_at]

    def last_sid(self) -> int:
        """The greatest session of the block (every block holds one at least)."""
        return int(_U16.unpack_from(self.raw, self.levels_at - 2)[0])

    def best_levels(self) -> bytes:
        return self.raw[self.levels_at:self.levels_at + self.sessions]

    def tags(self) -> bytes:
        return self.raw[self.levels_at + self.sessions:self.levels_at + 2 * self.sessions]

    def groups(self) -> Iterator[tuple[int, bytes]]:
        """``(level, sessions as little-endian u16 bytes)``, best level first, ascending within a level."""
        raw, n = self.raw, self.sessions
        if self.flags & GROUPED:
            at = self.levels_at + 2 * n
            distinct = self.distinct
            levels = raw[at:at + distinct]
            wide = self.flags & _WIDE_COUNTS
            counts = struct.unpack_from(f"<{distinct}{'I' if wide else 'H'}", raw, at + distinct)
            offset = at + distinct * (5 if wide else 3)
            for level, count in zip(levels, counts):
                yield level, raw[offset:offset + 2 * count]
                offset += 2 * count
            return
        best = self.best_levels()
        sids = self.sorted_sids()
        order = sorted(range(n), key=best.__getitem__, reverse=True)  # stable: ascending sessions
        start = 0
        while start < n:
            level = best[order[start]]
            end = start + best.count(level)  # a level's sessions are contiguous in ``order``
            yield level, _pack_u16s([sids[i] for i in order[start:end]])
            start = end

    @property
    def grouped(self) -> bool:
        """Whether the sessions are also stored in level order (a term in more than ``GROUPED_FROM``)."""
        return bool(self.flags & GROUPED)

    def entry_of(self, sid: int) -> int:
        """``level << 8 | tag`` of session ``sid``; 0 when it does not contain the term."""
        sids = self.sorted_sids()
        index = bisect.bisect_left(sids, sid)
        if index < self.sessions and sids[index] == sid:
            at = self.levels_at + index
            return self.raw[at] << 8 | self.raw[at + self.sessions]
        return 0

    def entries(self) -> dict[int, int]:
        """Session → ``level << 8 | tag``."""
        codes = bytearray(2 * self.sessions)  # interleaved in C: tag, level as a little-endian u16
        codes[0::2], codes[1::2] = self.tags(), self.best_levels()
        return dict(zip(self.sorted_sids(), _unsigned(codes, "H")))


class Summary:
    """A term's summary over all its blocks (in session order): what queries read.

    The sorted sessions (when first read), levels and tags of the blocks are
    joined, so lookups bisect one run as in a single block; level groups are
    merged across blocks, best level first, lazily.
    """

    __slots__ = ("blocks", "sessions", "_sids", "_levels", "_tags")

    def __init__(self, blocks: Sequence[tuple[int, Block]]) -> None:
        """``blocks``: ``(block number, its summary)``, ascending."""
        self.blocks = blocks
        self._sids: bytes | None = None  # joined when first read: a one-word query reads level groups only
        if len(blocks) == 1:
            self._levels, self._tags = blocks[0][1].best_levels(), blocks[0][1].tags()
        else:
            self._levels = b"".join(block.best_levels() for _, block in blocks)
            self._tags = b"".join(block.tags() for _, block in blocks)
        self.sessions = len(self._levels)

    def sorted_sids(self) -> Sequence[int]:
        return u32s(self._joined())

    def _joined(self) -> bytes:
        """The sorted sessions of all blocks as little-endian u32."""
        if self._sids is None:
            self._sids = _absolute_all(self.blocks)
        return self._sids

    def best_levels(self) -> bytes:
        return self._levels

    def tags(self) -> bytes:
        return self._tags

    @property
    def grouped(self) -> bool:
        """Whether the sessions are read in level order from stored groups (a term in more than ``GROUPED_FROM``)."""
        return self.sessions > GROUPED_FROM

    def groups(self) -> Iterator[tuple[int, bytes]]:
        """``(level, sessions as little-endian u32 bytes)``, best level first, ascending within a level."""
        # heapq.merge keeps the blocks' order among equal levels: sessions stay ascending.
        level, parts = -1, list[bytes]()
        for found, members in heapq.merge(*(_absolute_groups(block, number) for number, block in self.blocks),
                                          key=_minus_level):
            if found != level and parts:
                yield level, b"".join(parts)
                parts = []
            level = found
            parts.append(members)
        if parts:
            yield level, b"".join(parts)

    def level_of(self, sid: int) -> int:
        """The best level of session ``sid``; 0 when it does not contain the term."""
        return self.entry_of(sid) >> 8

    def entry_of(self, sid: int) -> int:
        """``level << 8 | tag`` of session ``sid``; 0 when it does not contain the term."""
        sids = self.sorted_sids()
        index = bisect.bisect_left(sids, sid)
        if index < self.sessions and sids[index] == sid:
            return self._levels[index] << 8 | self._tags[index]
        return 0

    def last_sid(self) -> int:
        """The greatest session holding the term."""
        number, block = self.blocks[-1]
        return number << BLOCK_BITS | block.last_sid()

    def spread(self) -> int:
        """How many sessions hold the term in several messages, or in one past the tags' range (counted in C)."""
        return self._tags.translate(_SPREAD).count(1)

    def levels_of(self, sids: Sequence[int]) -> list[int]:
        """``level_of`` of many sessions."""
        found = self.sorted_sids()
        size, levels = self.sessions, self._levels
        positions = map(bisect.bisect_left, repeat(found), sids)
        return [levels[p] if p < size and found[p] == s else 0 for p, s in zip(positions, sids)]

    def entries_of(self, sids: Sequence[int]) -> list[int]:
        """``entry_of`` of many sessions."""
        found = self.sorted_sids()
        size, levels, tags = self.sessions, self._levels, self._tags
        positions = map(bisect.bisect_left, repeat(found), sids)
        return [levels[p] << 8 | tags[p] if p < size and found[p] == s else 0 for p, s in zip(positions, sids)]

    def as_dict(self) -> dict[int, int]:
        """Session → best level."""
        return dict(zip(self.sorted_sids(), self._levels))

    def entries(self) -> dict[int, int]:
        """Session → ``level << 8 | tag``."""
        codes = bytearray(2 * self.sessions)  # interleaved in C: tag, level as a little-endian u16
        codes[0::2], codes[1::2] = self._tags, self._levels
        return dict(zip(self.sorted_sids(), _unsigned(codes, "H")))


#: A ``bytes.translate`` table: 1 for a tag that does not name the one message holding the term (``MULTI`` set, or
#: ``LAST_TAG``), else 0.
_SPREAD = bytes(value >= LAST_TAG for value in range(256))
#: How many times more sessions than chosen ones make finding the chosen ones (``places``) cheaper than a pass over
#: all (``compress``).
FIND_PAYS_OFF = 8


#: A term's message map is stored for a block of this many sessions or more (fewer: its tags are read)...
MAP_FROM = 32
#: ... up to this many: no block holds more sessions, so every block of ``MAP_FROM`` has one (tests lower it, so that
#: blocks cross it as sessions come and go). The most common words' maps, with ``search.levels`` and
#: ``search.repeats``, answer their queries message by message (``queries._by_messages``).
MAP_UP_TO = MAX_ID
#: A message map's key is ``index << MAP_SHIFT | offset``: the message index (at most ``LAST_TAG``) in the high
#: bits, so that the key a session's tag gives is built from the stored columns by byte slices in C.
MAP_SHIFT = 12
#: The first key of ``placed_keys`` whose tag has ``MULTI``: it names no message.
MULTI_KEYS = MULTI << MAP_SHIFT
#: The first key of a message map that stands for several messages (``LAST_TAG`` and later): ``search.levels`` and
#: ``search.repeats`` keep none of them, and a query reads such a session's postings.
LAST_KEYS = LAST_TAG << MAP_SHIFT
_LEVEL_KEY = struct.Struct(">IB")
#: A query joins the blocks' maps, repeats and messages by level into one key space, a block's keys shifted past the
#: earlier blocks': ``block << JOINED_SHIFT | key``. Blocks below ``JOINED_BLOCKS`` fit 32 bits.
JOINED_SHIFT = 19
JOINED_BLOCKS = 1 << (32 - JOINED_SHIFT)


def level_key(block: int, level: int) -> bytes:
    """The ``search.levels`` key of a block's messages at ``level``: by block, then level."""
    return _LEVEL_KEY.pack(block, level)


def level_of_key(key: bytes) -> tuple[int, int]:
    """``(block, level)``."""
    block, level = _LEVEL_KEY.unpack(key)
    return block, level


def repeats_value(levels: Mapping[int, int]) -> bytes:
    """The ``search.repeats`` value of ``levels`` (message key → the term's level there): the keys as a serialized
    bitmap (its size first, u32), then the levels in the keys' order."""
    keys = sorted(levels)
    serialized = map_value(BitMap(keys))
    return _U32.pack(len(serialized)) + serialized + bytes(map(levels.__getitem__, keys))


def repeats_of_value(raw: bytes) -> tuple[BitMap, bytes]:
    """The keys (a bitmap) and levels (in the keys' order) of a ``search.repeats`` value."""
    size = _U32.unpack_from(raw)[0] if len(raw) >= _U32.size else -1
    keys = map_of_value(raw[_U32.size:_U32.size + size]) if 0 <= size <= len(raw) - _U32.size else None
    if keys is None or len(keys) != len(raw) - _U32.size - size or (keys and keys.max() >= LAST_KEYS):
        raise StoreCorrupted("the search index is damaged: a term's repeated messages cannot be read")
    return keys, raw[_U32.size + size:]


def repeated_levels(levels: bytes) -> bytes:
    """The distinct levels of a term's repeated messages (``repeats_of_value``'s levels), ascending: found in C, by
    deleting from every byte value those that are absent."""
    return _EVERY_BYTE.translate(None, _EVERY_BYTE.translate(None, levels))


def repeated_at(keys: BitMap, levels: bytes, level: int, count: int) -> BitMap:
    """The keys of a term's repeated messages (``repeats_of_value``) where its level is ``level`` (``count`` of them:
    ``levels.count(level)``): a few found by ``bytes.find`` and read alone, many by one pass in C."""
    if not count:
        return BitMap()
    if count * FIND_PAYS_OFF < len(levels):
        return BitMap([keys[place] for place in places(levels, level)])
    return BitMap(compress(keys, levels.translate(_equal_to(level))))


@functools.lru_cache(maxsize=256)
def _equal_to(level: int) -> bytes:
    """A ``bytes.translate`` table: 1 for ``level``, else 0."""
    return bytes(value == level for value in range(256))


#: Every byte value, ascending.
_EVERY_BYTE = bytes(range(256))


def mapped(raw: bytes | None) -> bool:
    """Whether a term's block (its stored summary ``raw``; ``None``: no sessions) has a message map."""
    return raw is not None and MAP_FROM <= _SUMMARY_HEAD.unpack_from(raw)[0] <= MAP_UP_TO


def placed_keys(block: Block) -> BitMap:
    """Each session of the block with its tag, as ``tag << MAP_SHIFT | offset`` (``placed``): where the tag names
    the one message holding the term, the key is that message's key in a message map; a session whose tag has
    ``MULTI`` gets a key past every message's."""
    return placed(block.sids_raw(), block.tags())


def placed(offsets: bytes, tags: bytes) -> BitMap:
    """``tag << MAP_SHIFT | offset`` of each offset in a block (little-endian u16 bytes) and its tag, built in C."""
    size = len(tags)
    wide = bytearray(4 * size)
    wide[0::4] = offsets[0::2]
    wide[1::4] = (int.from_bytes(offsets[1::2], "little") | int.from_bytes(tags.translate(_TAG_LOW), "little")
                  ).to_bytes(size, "little")  # an offset's high byte is below 16 (BLOCK_BITS <= 12)
    wide[2::4] = tags.translate(_TAG_HIGH)
    return BitMap(_u32_array(wide), optimize=False)


def block_present(block: Block) -> BitMap:
    """The block's sessions as offsets, in a compressed bitmap built in C."""
    offsets = block.sids_raw()
    wide = bytearray(2 * len(offsets))
    wide[0::4], wide[1::4] = offsets[0::2], offsets[1::2]
    return BitMap(_u32_array(wide), optimize=False)


def block_spread(block: Block) -> BitMap:
    """The block's sessions (offsets) whose tag does not name the one message holding the term (found in C)."""
    mask = block.tags().translate(_SPREAD)
    return BitMap(compress(block.sorted_sids(), mask)) if mask.count(1) else BitMap()


@functools.lru_cache(maxsize=1 << MAP_SHIFT)
def session_map_keys(offset: int) -> FrozenBitMap:
    """Every key a message map can hold for the session at ``offset`` of its block."""
    return FrozenBitMap(range(offset, (LAST_TAG + 1) << MAP_SHIFT, 1 << MAP_SHIFT))


def posted_keys(values: Sequence[int]) -> BitMap:
    """The message-map keys in the low 32 bits of ``values`` (``block << 32 | key``), as a bitmap built in C."""
    raw = packed_u64s(values)
    low = bytearray(len(raw) // 2)
    for column in range(4):
        low[column::4] = raw[column::8]
    return BitMap(_u32_array(low), optimize=False)


def map_value(keys: BitMap) -> bytes:
    keys.run_optimize()
    return bytes(keys.serialize())


def map_of_value(raw: bytes) -> BitMap:
    try:
        keys = BitMap.deserialize(raw)
    except (ValueError, IndexError):
        raise StoreCorrupted("the search index is damaged: a message map cannot be read") from None
    if keys and keys.max() >= MULTI_KEYS:
        raise StoreCorrupted("the search index is damaged: a message map holds a key past every message's")
    return keys


#: ``bytes.translate`` tables: a tag's low four bits moved to a byte's high four, and its high four bits moved low.
_TAG_LOW = bytes((value & 0x0F) << 4 for value in range(256))
_TAG_HIGH = bytes(value >> 4 for value in range(256))


def _u32_array(data: bytes | bytearray) -> array[int]:
    """The little-endian u32 values in ``data`` as an ``array`` (what ``BitMap`` reads in C)."""
    values = array("I")
    values.frombytes(data)
    if not _LITTLE:
        values.byteswap()
    return values


def _minus_level(group: tuple[int, bytes]) -> int:
    return -group[0]


def _absolute_groups(block: Block, number: int) -> Iterator[tuple[int, bytes]]:
    for level, members in block.groups():
        yield level, _absolute(members, number)


@functools.lru_cache(maxsize=512)
def _or_table(bits: int) -> bytes:
    """A ``bytes.translate`` table that sets ``bits`` in every byte."""
    return bytes(value | bits for value in range(256))


def _absolute(offsets: bytes, number: int) -> bytes:
    """Offsets in block ``number`` (little-endian u16) as session ids (little-endian u32), in C: an id is the
    block's first id with the offset's bits set (they are clear in it)."""
    base = number << BLOCK_BITS
    count = len(offsets) // 2
    wide = bytearray(4 * count)
    wide[0::4] = offsets[0::2].translate(_or_table(base & 0xFF))
    wide[1::4] = offsets[1::2].translate(_or_table(base >> 8 & 0xFF))
    wide[2::4] = bytes((base >> 16 & 0xFF,)) * count
    wide[3::4] = bytes((base >> 24 & 0xFF,)) * count
    return bytes(wide)


def _absolute_all(blocks: Sequence[tuple[int, Block]]) -> bytes:
    """The sorted sessions of ``blocks`` (``(number, block)``, ascending) as little-endian u32, in C: each block's
    first id repeated for its sessions, with the offsets' two bytes OR-ed in, a column of bytes at a time as big
    integers (a step for each block costs more than the whole OR)."""
    offsets = b"".join(block.sids_raw() for _, block in blocks)
    count = len(offsets) // 2
    wide = bytearray(b"".join(_U32.pack(number << BLOCK_BITS) * block.sessions for number, block in blocks))
    for column in (0, 1):
        if column < BLOCK_BITS // 8:  # the blocks' first ids have no bit in this byte: the offsets' byte is it
            wide[column::4] = offsets[column::2]
            continue
        merged = int.from_bytes(wide[column::4], "little") | int.from_bytes(offsets[column::2], "little")
        wide[column::4] = merged.to_bytes(count, "little")
    return bytes(wide)


def summary_of(entries: Mapping[int, int]) -> bytes | None:
    """The stored summary of ``entries`` (session → ``level << 8 | tag``); ``None`` when empty."""
    return _joined(None, entries) if entries else None


_INVERT = bytes(range(255, -1, -1))


def _inverted(levels: bytes) -> bytes:
    """``levels`` with each level ``l`` as ``255 - l``: sorting by it puts the best level first."""
    return levels.translate(_INVERT)


def _level_groups(offsets: bytes, levels: bytes) -> Iterator[tuple[int, bytes]]:
    """``(level, offsets as little-endian u16 bytes)`` of sessions given as ``offsets`` (ascending) and their
    ``levels``, best level first, ascending within a level: one stable sort by level, in C."""
    order = sorted(range(len(levels)), key=_inverted(levels).__getitem__)
    grouped = _pack_u16s(list(map(_unsigned(offsets, "H").__getitem__, order)))
    start = 0
    for level in sorted(set(levels), reverse=True):
        end = start + 2 * levels.count(level)
        yield level, grouped[start:end]
        start = end


def _joined(block: Block | None, entries: Mapping[int, int]) -> bytes:
    """The summary of ``block`` (``None``: empty) with ``entries`` of sessions all greater than its own."""
    sids = sorted(entries)
    codes = _pack_u16s(list(map(entries.__getitem__, sids)))  # tag, level: the low byte first
    return summary_extend(None if block is None else block.raw, _pack_u16s(sids), codes[1::2], codes[0::2])


def summary_extend(raw: bytes | None, offsets: bytes, levels: bytes, tags: bytes) -> bytes:
    """``raw`` (``None``: an empty summary) with sessions all greater than its own: their ``offsets`` in the
    block (little-endian u16, ascending), best ``levels`` and ``tags``. The block's parts are extended, not
    decoded."""
    block = None if raw is None else Block(raw)
    total = len(levels) + (0 if block is None else block.sessions)
    if block is not None and total > GROUPED_FROM and not block.grouped:  # a small block becomes grouped
        return summary_extend(None, block.sids_raw() + offsets, block.best_levels() + levels, block.tags() + tags)
    kept = (b"", b"", b"") if block is None else (block.sids_raw(), block.best_levels(), block.tags())
    parts = [b"", kept[0], offsets, kept[1], levels, kept[2], tags]
    flags = distinct = 0
    if total > GROUPED_FROM:
        members = {} if block is None else {level: [group] for level, group in block.groups()}
        for level, added in _level_groups(offsets, levels):
            members.setdefault(level, []).append(added)
        order = sorted(members, reverse=True)
        joined = [b"".join(members[level]) for level in order]
        counts = [len(group) // 2 for group in joined]
        distinct = len(order)
        flags = GROUPED | (_WIDE_COUNTS if max(counts) > 0xFFFF else 0)
        parts += [bytes(order), struct.pack(f"<{distinct}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts), *joined]
    parts[0] = _SUMMARY_HEAD.pack(total, distinct, flags)
    return b"".join(parts)


def summary_set(raw: bytes | None, sid: int, code: int) -> bytes | None:
    """``raw`` with session ``sid`` at entry ``code`` (0: without it), edited as bytes."""
    if raw is None:
        return summary_of({sid: code}) if code else None
    summary = Block(raw)
    n = summary.sessions
    sids = summary.sorted_sids()
    index = bisect.bisect_left(sids, sid)
    present = index < n and sids[index] == sid
    old = summary.entry_of(sid)
    if old == code:
        return raw
    grown = n + (not present) - (not code)
    grouped = bool(summary.flags & GROUPED)
    if not grown:
        return None
    if grouped != (grown > GROUPED_FROM):
        entries = summary.entries()
        if code:
            entries[sid] = code
        else:
            del entries[sid]
        return summary_of(entries)
    member = _U16.pack(sid)
    levels_at = summary.levels_at
    head, tags_at, end = _SUMMARY_HEAD.size, levels_at + n, levels_at + 2 * n
    start = head + 2 * index
    level, tag_byte = bytes((code >> 8,)), bytes((code & 0xFF,))
    if not present:
        parts = [raw[head:start], member, raw[start:levels_at + index], level, raw[levels_at + index:tags_at + index],
                 tag_byte, raw[tags_at + index:end]]
    elif not code:
        parts = [raw[head:start], raw[start + 2:levels_at + index], raw[levels_at + index + 1:tags_at + index],
                 raw[tags_at + index + 1:end]]
    else:
        parts = [raw[head:levels_at + index], level, raw[levels_at + index + 1:tags_at + index], tag_byte,
                 raw[tags_at + index + 1:end]]
    if not grouped:
        return _SUMMARY_HEAD.pack(grown, 0, 0) + b"".join(parts)
    old_level, new_level = old >> 8, code >> 8
    distinct, wide = summary.distinct, summary.flags & _WIDE_COUNTS
    levels = bytearray(raw[end:end + distinct])
    counts = list(struct.unpack_from(f"<{distinct}{'I' if wide else 'H'}", raw, end + distinct))
    members = raw[end + distinct * (5 if wide else 3):]
    if old_level != new_level:
        if old_level:
            group = levels.index(old_level)
            first = 2 * sum(counts[:group])
            at = _find_aligned(members, member, first, first + 2 * counts[group])
            if at < 0:
                raise StoreCorrupted("the search index is damaged: a term summary contradicts itself")
            members = members[:at] + members[at + 2:]
            counts[group] -= 1
            if not counts[group]:
                del levels[group], counts[group]
        if new_level:
            if new_level in levels:
                group = levels.index(new_level)
                counts[group] += 1
                at = 2 * sum(counts[:group + 1]) - 2
            else:
                group = sum(1 for existing in levels if existing > new_level)
                levels.insert(group, new_level)
                counts.insert(group, 1)
                at = 2 * sum(counts[:group])
            members = members[:at] + member + members[at:]
    flags = GROUPED | (_WIDE_COUNTS if counts and max(counts) > 0xFFFF else 0)
    parts += [bytes(levels), struct.pack(f"<{len(counts)}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts), members]
    return _SUMMARY_HEAD.pack(grown, len(levels), flags) + b"".join(parts)


# Appends not yet folded into a summary are kept per (term, session) as an entry: that of the first
# message with the term, then ``merged`` with each later one.


def entry(level: int, index: int) -> int:
    """The entry of a session whose message ``index`` alone holds a term, at ``level``."""
    return level << 8 | (index if index < LAST_TAG else LAST_TAG)


def merged(earlier: int, later: int) -> int:
    """The entry of a session for a term from that of its earlier messages (0: none) and of later ones: the best
    level, the first message with it, and several messages."""
    if not earlier:
        return later
    return (later if later >> 8 > earlier >> 8 else earlier) | MULTI


def summary_raise(raw: bytes | None, offsets: bytes, levels: bytes, tags: bytes) -> bytes | None:
    """``raw`` updated with appended messages, given as ``summary_extend`` takes them: each session's entry of its
    appended messages alone."""
    if raw is None or _U16.unpack_from(offsets)[0] > Block(raw).last_sid():  # sessions new to the block
        return summary_extend(raw, offsets, levels, tags)
    codes = bytearray(2 * len(levels))  # interleaved in C: tag, level as a little-endian u16
    codes[0::2], codes[1::2] = tags, levels
    changes = dict(zip(_unsigned(offsets, "H"), _unsigned(codes, "H")))
    block = Block(raw)
    if len(changes) * 16 < block.sessions:
        for sid, later in changes.items():
            raw = summary_set(raw, sid, merged(block.entry_of(sid), later))
            assert raw is not None  # a raised entry is never 0, so the summary keeps it
            block = Block(raw)
        return raw
    entries = block.entries()
    get = entries.get
    for sid, later in changes.items():
        entries[sid] = merged(get(sid, 0), later)
    return summary_of(entries)


# A chunk: the postings of up to CHUNK_MESSAGES consecutive messages of a session, each message's term ids
# ascending. Ids below 65,536 (the terms met first, the common words among them) take two bytes, in one run for
# the whole chunk; greater ids take three (four once ids need it) in another. Both runs are searched in place.
# Most terms of a message occur once in it and so share one level (it follows from the message's length): a
# message stores its most common level once, and only the postings at another level store theirs.
#
#   head      u8 flags, u8 messages (m), then counts of c bytes (2, or 4 with flag _WIDE_COUNTS):
#             low postings (L), high postings (H), postings with a level of their own (X)
#   low ends  m × c: the low postings of the messages up to each one's end
#   high ends m × c: the same for high postings
#   levels    m bytes: each message's most common level
#   low       L × u16: term ids below 65,536
#   high      H × w: the others (w = 3, or 4 with flag _WIDE_IDS)
#   at        X × c: the numbers of the postings with a level of their own, ascending (a message's postings are
#             numbered after the earlier messages' ones, its low postings first)
#   own       X bytes: their levels
_CHUNK_COUNTS_16 = struct.Struct("<BBHHH")
_CHUNK_COUNTS_32 = struct.Struct("<BBIII")
_CHUNK_WIDE_COUNTS = 1
_CHUNK_WIDE_IDS = 2
_LOW = 1 << 16  # the first term id stored in the high run
_WIDE = 1 << 24  # the first term id that needs 4 bytes


class _Chunk:
    """A stored chunk's layout; its parts are read in place when asked for (a query that finds no term in the
    chunk reads none of them)."""

    __slots__ = ("raw", "messages", "id_width", "count_width", "low_at", "high_at", "high_end", "own_at")

    def __init__(self, raw: bytes) -> None:
        flags = raw[0] if raw else -1
        counts = _CHUNK_COUNTS_32 if flags & _CHUNK_WIDE_COUNTS else _CHUNK_COUNTS_16
        if flags & ~(_CHUNK_WIDE_COUNTS | _CHUNK_WIDE_IDS) or len(raw) < counts.size:
            raise StoreCorrupted("the search index is damaged: a chunk of postings has an unknown form")
        _, messages, low, high, exceptions = counts.unpack_from(raw)
        self.raw, self.messages = raw, messages
        self.count_width = count_width = 4 if flags & _CHUNK_WIDE_COUNTS else 2
        self.id_width = 4 if flags & _CHUNK_WIDE_IDS else 3
        self.low_at = counts.size + (2 * count_width + 1) * messages
        self.high_at = self.low_at + 2 * low
        self.high_end = self.high_at + self.id_width * high
        self.own_at = self.high_end + count_width * exceptions
        if len(raw) != self.own_at + exceptions:
            raise StoreCorrupted("the search index is damaged: a chunk of postings has the wrong size")

    def _counts(self, start: int, count: int) -> Sequence[int]:
        return _unsigned(memoryview(self.raw)[start:start + self.count_width * count],
                         "I" if self.count_width == 4 else "H")

    def low_ends(self) -> Sequence[int]:
        """The low postings of the messages up to each one's end."""
        return self._counts(self.low_at - (2 * self.count_width + 1) * self.messages, self.messages)

    def high_ends(self) -> Sequence[int]:
        return self._counts(self.low_at - (self.count_width + 1) * self.messages, self.messages)

    def levels(self) -> bytes:
        """Each message's most common level."""
        return self.raw[self.low_at - self.messages:self.low_at]

    def at(self) -> Sequence[int]:
        """The numbers of the postings with a level of their own, ascending."""
        return self._counts(self.high_end, (self.own_at - self.high_end) // self.count_width)

    def own(self) -> bytes:
        return self.raw[self.own_at:]

    def low_ids(self) -> Sequence[int]:
        return _unsigned(memoryview(self.raw)[self.low_at:self.high_at], "H")

    def high_ids(self) -> Sequence[int]:
        return _unids(self.raw[self.high_at:self.high_end], self.id_width)

    def bounds(self, index: int) -> tuple[int, int, int, int]:
        """Where message ``index``'s low and high postings start and end in their runs."""
        if not 0 <= index < self.messages:  # a summary's tag names a message this chunk lacks
            raise StoreCorrupted(f"the search index is damaged: a chunk of postings lacks message {index}")
        low_ends, high_ends = self.low_ends(), self.high_ends()
        low_start, high_start = (low_ends[index - 1], high_ends[index - 1]) if index else (0, 0)
        return low_start, low_ends[index], high_start, high_ends[index]

    def message(self, index: int) -> tuple[Sequence[int], bytes]:
        """Message ``index``'s term ids (ascending) and their levels."""
        low_start, low_end, high_start, high_end = self.bounds(index)
        tids = self.low_ids()[low_start:low_end]
        if high_end > high_start:
            tids = [*tids, *self.high_ids()[high_start:high_end]]
        first, size = low_start + high_start, len(tids)
        at = self.at()
        exceptions = range(bisect.bisect_left(at, first), bisect.bisect_left(at, first + size))
        level = self.raw[self.low_at - self.messages + index]
        if not exceptions:
            return tids, bytes((level,)) * size
        levels, own = bytearray((level,)) * size, self.own()
        for place in exceptions:
            offset = at[place] - first
            if not 0 <= offset < size:
                # ``at`` is stored ascending; out of order, bisect finds places that are not this message's.
                raise StoreCorrupted("the search index is damaged: a chunk of postings places a level outside its "
                                     "message")
            levels[offset] = own[place]
        return tids, bytes(levels)


def _chunk_of(levels: bytes, low_ends: Sequence[int], high_ends: Sequence[int], low: bytes, high: bytes,
              id_width: int, at: Sequence[int], own: bytes) -> bytes:
    """A chunk's stored form from its parts (``low`` and ``high`` packed)."""
    postings = len(low) // 2 + len(high) // id_width
    wide = postings > 0xFFFF
    flags = (_CHUNK_WIDE_COUNTS if wide else 0) | (_CHUNK_WIDE_IDS if id_width == 4 else 0)
    counts = _CHUNK_COUNTS_32 if wide else _CHUNK_COUNTS_16
    typecode = "I" if wide else "H"
    return b"".join((counts.pack(flags, len(levels), len(low) // 2, len(high) // id_width, len(at)),
                     struct.pack(f"<{len(low_ends)}{typecode}", *low_ends),
                     struct.pack(f"<{len(high_ends)}{typecode}", *high_ends),
                     levels, low, high, struct.pack(f"<{len(at)}{typecode}", *at), own))


def _ids(tids: Sequence[int], width: int) -> bytes:
    """Term ids as little-endian ``width``-byte integers."""
    packed = _pack_u32s(tids)
    if width == 4:
        return packed
    narrow = bytearray(3 * len(tids))  # drop every fourth (high) byte, in C
    narrow[0::3], narrow[1::3], narrow[2::3] = packed[0::4], packed[1::4], packed[2::4]
    return bytes(narrow)


def _unids(data: bytes, width: int) -> Sequence[int]:
    """The term ids in ``data`` (``width`` bytes each)."""
    if width == 4:
        return u32s(data)
    wide = bytearray(len(data) // 3 * 4)
    wide[0::4], wide[1::4], wide[2::4] = data[0::3], data[1::3], data[2::3]
    return u32s(wide)


def places(data: bytes, value: int) -> Iterator[int]:
    """Where byte ``value`` occurs in ``data``."""
    place = data.find(value)
    while place >= 0:
        yield place
        place = data.find(value, place + 1)


#: A message as ``chunk_append`` takes it, packed when it is indexed (a batch keeps many, and bytes and tuples of
#: numbers are objects the collector stops tracking): its term ids below 65,536, ascending, as little-endian u16;
#: the others, ascending; its most common level; and the postings at another level, as their places among the
#: message's term ids (ascending) and their levels.
ChunkMessage = tuple[bytes, tuple[int, ...], int, tuple[int, ...], bytes]


def message_level(levels: bytes) -> int:
    """The level a chunk stores for a message whose postings have ``levels``: the most common (of equal counts,
    the greatest, so that it follows from the levels alone, not from their terms' ids); 0 for none."""
    return max(set(levels), key=lambda level: (levels.count(level), level)) if levels else 0


def chunk_message_of(tids: Sequence[int], levels: bytes) -> ChunkMessage:
    """A message given as its term ids (ascending) and their levels, as ``chunk_append`` takes it."""
    common = message_level(levels)
    return chunk_posted(tids, common, [(tid, level) for tid, level in zip(tids, levels) if level != common])


def chunk_posted(tids: Sequence[int], common: int, others: Sequence[tuple[int, int]]) -> ChunkMessage:
    """A message given as its term ids (ascending), its most common level and the ``(term id, level)`` of the
    postings at another level (in term id order), as ``chunk_append`` takes it."""
    if not others and tids and tids[-1] < _LOW and _LITTLE:  # most messages: their own bytes, packed in C
        return array("H", tids).tobytes(), (), common, (), b""
    split = bisect.bisect_left(tids, _LOW)
    places = tuple(map(bisect.bisect_left, repeat(tids), map(itemgetter(0), others))) if others else ()
    return (_pack_u16s(tids[:split] if split < len(tids) else tids), tuple(tids[split:]), common, places,
            bytes(map(itemgetter(1), others)))


def chunk_append(raw: bytes | None, messages: Iterable[ChunkMessage]) -> bytes:
    """``raw`` (``None``: an empty chunk) with more messages: the chunk is decoded and encoded once however many
    messages it gains, and their low ids are joined as they were packed."""
    if raw is None:
        levels, low_ends, high_ends, stored_low, stored_high, id_width = bytearray(), [], [], b"", b"", 3
        at: list[int] = []
        own = bytearray()
    else:
        chunk = _Chunk(raw)
        levels, low_ends, high_ends = bytearray(chunk.levels()), list(chunk.low_ends()), list(chunk.high_ends())
        stored_low, stored_high = raw[chunk.low_at:chunk.high_at], raw[chunk.high_at:chunk.high_end]
        id_width, at, own = chunk.id_width, list(chunk.at()), bytearray(chunk.own())
    lows = 0 if raw is None else low_ends[-1]  # the chunk's postings so far, in its low run and its high one
    highs = 0 if raw is None else high_ends[-1]
    low_parts, high = [stored_low], array("I")
    for low, high_ids, common, places, own_levels in messages:
        if places:  # a message's postings are numbered after the earlier messages' ones, in term id order
            at += map(add, repeat(lows + highs), places)
            own += own_levels
        low_parts.append(low)
        lows += len(low) // 2
        if high_ids:
            high.extend(high_ids)
            highs += len(high_ids)
        levels.append(common)
        low_ends.append(lows)
        high_ends.append(highs)
    if high and id_width == 3 and max(high) >= _WIDE:  # widen the chunk's high ids
        stored_high, id_width = _pack_u32s(_unids(stored_high, 3)), 4
    return _chunk_of(bytes(levels), low_ends, high_ends, b"".join(low_parts), stored_high + _ids(high, id_width),
                     id_width, at, bytes(own))


def chunk_pop(raw: bytes) -> tuple[bytes | None, Sequence[int], bytes]:
    """The chunk without its last message, and that message's term ids and levels."""
    chunk = _Chunk(raw)
    last = chunk.messages - 1
    tids, levels = chunk.message(last)
    if not last:
        return None, tids, levels
    low_start, _, high_start, _ = chunk.bounds(last)
    at = chunk.at()
    kept = bisect.bisect_left(at, low_start + high_start)
    return _chunk_of(chunk.levels()[:last], chunk.low_ends()[:last], chunk.high_ends()[:last],
                     raw[chunk.low_at:chunk.low_at + 2 * low_start],
                     raw[chunk.high_at:chunk.high_at + chunk.id_width * high_start], chunk.id_width,
                     at[:kept], chunk.own()[:kept]), tids, levels


def chunk_levels(raw: bytes) -> bytes:
    """Each message's level: that of most of its postings (of the terms it holds once, unless most repeat)."""
    return _Chunk(raw).levels()


def chunk_size(raw: bytes) -> int:
    """How many messages the chunk holds."""
    return int(_Chunk(raw).messages)


def chunk_message(raw: bytes, index: int) -> tuple[Sequence[int], bytes]:
    """Message ``index``'s term ids (ascending) and their levels."""
    return _Chunk(raw).message(index)


def chunk_occurrences(raw: bytes, tid: int) -> list[tuple[int, int]]:
    """``(message index in the chunk, level)`` of each message containing term ``tid``."""
    return _occurrences(_Chunk(raw), tid)


def chunk_occurrences_of(raw: bytes, tids: Iterable[int]) -> list[list[tuple[int, int]]]:
    """``chunk_occurrences`` of each of ``tids``, the chunk read once."""
    chunk = _Chunk(raw)
    return [_occurrences(chunk, tid) for tid in tids]


def _occurrences(chunk: _Chunk, tid: int) -> list[tuple[int, int]]:
    raw = chunk.raw
    low = tid < _LOW
    if low:
        start, end, width = chunk.low_at, chunk.high_at, 2
    elif tid < 1 << 8 * chunk.id_width:
        start, end, width = chunk.high_at, chunk.high_end, chunk.id_width
    else:
        return []
    # A message's low postings are numbered after the postings of the messages before it; its high ones, after
    # its low ones.
    found: list[tuple[int, int]] = []
    pattern = tid.to_bytes(width, "little")
    position = raw.find(pattern, start, end)
    if position < 0:
        return found
    ends, others = (chunk.low_ends(), chunk.high_ends()) if low else (chunk.high_ends(), chunk.low_ends())
    at, own, levels = chunk.at(), chunk.own(), chunk.levels()
    while position >= 0:  # this loop runs for every message that holds a query's term: kept inline
        offset = position - start
        if offset % width:
            position = raw.find(pattern, position + 1, end)
            continue
        place = offset // width
        index = bisect.bisect_right(ends, place)
        if index == len(levels):  # the messages' stored ends stop short of this posting
            raise StoreCorrupted("the search index is damaged: a chunk of postings holds one past its messages")
        level = levels[index]
        if at:
            number = place + (others[index - 1] if index else 0) if low else place + others[index]
            exception = bisect.bisect_left(at, number)
            if exception < len(at) and at[exception] == number:
                level = own[exception]
        found.append((index, level))
        position = raw.find(pattern, position + width, end)
    return found


def chunk_counts(raw: bytes) -> Counter[int]:
    """How many of the chunk's messages contain each term."""
    chunk = _Chunk(raw)
    counts = Counter(chunk.low_ids())
    counts.update(chunk.high_ids())
    return counts
