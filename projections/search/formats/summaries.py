"""A term's summary in a block (``search.blocks``): ``Block`` reads one in place, ``Summary`` joins a term's blocks
for queries, and ``summary_*`` write them."""

from __future__ import annotations

import bisect
import functools
import heapq
import struct
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from eventstore._errors import StoreCorrupted

from .. import formats
from .arrays import packed_u16s, u32s, unsigned

__all__ = [
    "ENTRIES_IN_ARRAYS_FROM",
    "LAST_TAG",
    "MULTI",
    "SPREAD",
    "SUMMARY_HEAD",
    "Block",
    "Summary",
    "entry",
    "merged",
    "summary_extend",
    "summary_of",
    "summary_raise",
    "summary_set",
    "tag",
]

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
SUMMARY_HEAD = struct.Struct("<IHB")
GROUPED = 1
_WIDE_COUNTS = 2
MULTI = 0x80
LAST_TAG = 0x7F
_U16 = struct.Struct("<H")


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
        if len(raw) < SUMMARY_HEAD.size:
            raise StoreCorrupted("the search index is damaged: a term summary has the wrong size")
        n, distinct, flags = SUMMARY_HEAD.unpack_from(raw)
        self.sessions, self.distinct, self.flags = n, distinct, flags
        self.levels_at = SUMMARY_HEAD.size + 2 * n
        size = self.levels_at + 2 * n
        if flags & GROUPED:
            size += distinct * (5 if flags & _WIDE_COUNTS else 3) + 2 * n
        if len(raw) != size:
            raise StoreCorrupted("the search index is damaged: a term summary has the wrong size")

    def sorted_sids(self) -> Sequence[int]:
        return unsigned(memoryview(self.raw)[SUMMARY_HEAD.size:self.levels_at], "H")

    def sids_raw(self) -> bytes:
        """The sorted sessions as little-endian u16 bytes."""
        return self.raw[SUMMARY_HEAD.size:self.levels_at]

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
            yield level, packed_u16s([sids[i] for i in order[start:end]])
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
        return dict(zip(self.sorted_sids(), unsigned(codes, "H")))


class Summary:
    """A term's summary over all its blocks (in session order): what queries read.

    The sorted sessions (when first read), levels and tags of the blocks are
    joined, so lookups bisect one run as in a single block; level groups are
    merged across blocks, best level first, lazily.
    """

    __slots__ = ("_blocks", "sessions", "_sids", "_levels", "_tags", "_spread")

    def __init__(self, blocks: Sequence[tuple[int, Block]], earlier: Summary | None = None) -> None:
        """``blocks``: ``(block number, its summary)``, ascending. ``earlier``: a summary of the same term whose
        blocks of the same number and object are these: its joined sessions there are taken rather than joined
        again (a state that changed a few of the term's blocks)."""
        self._blocks = blocks
        self._sids: bytes | None = None  # joined when first read: a one-word query reads level groups only
        if earlier is not None and earlier._sids is not None:
            self._sids = _spliced(blocks, earlier)
        if len(blocks) == 1:
            self._levels, self._tags = blocks[0][1].best_levels(), blocks[0][1].tags()
        else:
            self._levels = b"".join(block.best_levels() for _, block in blocks)
            self._tags = b"".join(block.tags() for _, block in blocks)
        self.sessions = len(self._levels)
        self._spread: int | None = None  # counted when first read: every query of several words reads it

    @property
    def blocks(self) -> Sequence[tuple[int, Block]]:
        """``(block number, its summary)``, ascending."""
        return self._blocks

    def block_numbers(self) -> Sequence[int]:
        """The blocks holding the term's sessions, ascending."""
        return [number for number, _ in self._blocks]

    def block_sizes(self) -> Sequence[tuple[int, int]]:
        """``(block number, its sessions)``, ascending."""
        return [(number, block.sessions) for number, block in self._blocks]

    def stored_bytes(self) -> int:
        """The bytes of the stored values it was read from (those of its maps aside; a term stored whole: its
        head, maps included)."""
        return sum(len(block.raw) for _, block in self._blocks)

    def sorted_sids(self) -> Sequence[int]:
        return u32s(self._joined())

    def sid_array(self) -> npt.NDArray[np.uint32]:
        """The sorted sessions as an array, read in place (read-only)."""
        return np.frombuffer(self._joined(), dtype="<u4")

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
        return self.sessions > formats.GROUPED_FROM

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

    def spread(self) -> int:
        """How many sessions hold the term in several messages, or in one past the tags' range (counted in C)."""
        if self._spread is None:
            self._spread = self._tags.translate(SPREAD).count(1)
        return self._spread

    def levels_of(self, sids: Sequence[int]) -> list[int]:
        """``level_of`` of many sessions."""
        found = self.sorted_sids()
        size, levels = self.sessions, self._levels
        positions = map(bisect.bisect_left, repeat(found), sids)
        return [levels[p] if p < size and found[p] == s else 0 for p, s in zip(positions, sids)]

    def entries_of(self, sids: Sequence[int]) -> list[int]:
        """``entry_of`` of many sessions: a few by a binary search each, more by one search over whole arrays."""
        if len(sids) < ENTRIES_IN_ARRAYS_FROM or not self.sessions:
            found = self.sorted_sids()
            size, levels, tags = self.sessions, self._levels, self._tags
            positions = map(bisect.bisect_left, repeat(found), sids)
            return [levels[p] << 8 | tags[p] if p < size and found[p] == s else 0 for p, s in zip(positions, sids)]
        joined = self.sid_array()
        wanted = np.array(sids, dtype=np.uint32)
        at = np.minimum(joined.searchsorted(wanted), self.sessions - 1)  # the method: np.searchsorted wraps it
        codes = np.frombuffer(self._levels, dtype=np.uint8)[at].astype(np.uint16) << 8 | np.frombuffer(
            self._tags, dtype=np.uint8)[at]
        entries: list[int] = np.where(joined[at] == wanted, codes, 0).tolist()
        return entries

    def as_dict(self) -> dict[int, int]:
        """Session → best level."""
        return dict(zip(self.sorted_sids(), self._levels))

    def entries(self) -> dict[int, int]:
        """Session → ``level << 8 | tag``."""
        codes = bytearray(2 * self.sessions)  # interleaved in C: tag, level as a little-endian u16
        codes[0::2], codes[1::2] = self._tags, self._levels
        return dict(zip(self.sorted_sids(), unsigned(codes, "H")))


#: ``Summary.entries_of`` looks this many sessions or more up over whole arrays (numpy): a few calls whose fixed cost
#: a binary search a session in Python exceeds from about this many.
ENTRIES_IN_ARRAYS_FROM = 16

#: A ``bytes.translate`` table: 1 for a tag that does not name the one message holding the term (``MULTI`` set, or
#: ``LAST_TAG``), else 0.
SPREAD = bytes(value >= LAST_TAG for value in range(256))


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
    base = number << formats.BLOCK_BITS
    count = len(offsets) // 2
    wide = bytearray(4 * count)
    wide[0::4] = offsets[0::2].translate(_or_table(base & 0xFF))
    wide[1::4] = offsets[1::2].translate(_or_table(base >> 8 & 0xFF))
    wide[2::4] = bytes((base >> 16 & 0xFF,)) * count
    wide[3::4] = bytes((base >> 24 & 0xFF,)) * count
    return bytes(wide)


def joined_sids(numbers: Sequence[int], counts: Sequence[int], offsets: bytes) -> npt.NDArray[np.uint32]:
    """The sessions of blocks ``numbers`` (ascending), ``counts`` of them a block, from their offsets (u16 each,
    block after block), over whole arrays (numpy): each block's first id repeated for its sessions, with the
    offsets OR-ed in (a step for each block costs more than the whole OR)."""
    firsts = np.array(numbers, dtype=np.uint32) << np.uint32(formats.BLOCK_BITS)
    joined: npt.NDArray[np.uint32] = firsts.repeat(counts) | np.frombuffer(offsets, dtype="<u2")  # np.repeat wraps it
    return joined


def _absolute_all(blocks: Sequence[tuple[int, Block]]) -> bytes:
    """The sorted sessions of ``blocks`` (``(number, block)``, ascending) as little-endian u32."""
    joined = joined_sids([number for number, _ in blocks], [block.sessions for _, block in blocks],
                         b"".join(block.sids_raw() for _, block in blocks))
    return joined.astype("<u4", copy=False).tobytes()  # little-endian whatever the host


def _spliced(blocks: Sequence[tuple[int, Block]], earlier: Summary) -> bytes:
    """The sorted sessions of ``blocks`` as little-endian u32: those of ``earlier``'s blocks that are among them
    (the same number and object) copied from its joined ones, the others made from their offsets."""
    assert earlier._sids is not None
    kept: dict[int, tuple[Block, int]] = {}
    at = 0
    for number, block in earlier.blocks:
        kept[number] = block, at
        at += 4 * block.sessions
    parts = []
    for number, block in blocks:
        found = kept.get(number)
        if found is not None and found[0] is block:
            parts.append(earlier._sids[found[1]:found[1] + 4 * block.sessions])
        else:
            parts.append(_absolute(block.sids_raw(), number))
    return b"".join(parts)


def summary_of(entries: Mapping[int, int]) -> bytes | None:
    """The stored summary of ``entries`` (session → ``level << 8 | tag``); ``None`` when empty."""
    return _joined(None, entries) if entries else None


_INVERT = bytes(range(255, -1, -1))


def _inverted(levels: bytes) -> bytes:
    """``levels`` with each level ``l`` as ``255 - l``: sorting by it puts the best level first."""
    return levels.translate(_INVERT)


#: ``_level_groups`` of this many sessions or more sorts them in numpy, whose few calls cost more than one sort in
#: Python of fewer (its key is called a session at a time).
LEVEL_GROUPS_NUMPY_FROM = 32


def _level_groups(offsets: bytes, levels: bytes) -> Iterator[tuple[int, bytes]]:
    """``(level, offsets as little-endian u16 bytes)`` of sessions given as ``offsets`` (ascending) and their
    ``levels``, best level first, ascending within a level: one stable sort by level, in C."""
    if len(levels) >= LEVEL_GROUPS_NUMPY_FROM:
        yield from _level_groups_in_arrays(offsets, levels)
        return
    order = sorted(range(len(levels)), key=_inverted(levels).__getitem__)
    grouped = packed_u16s(list(map(unsigned(offsets, "H").__getitem__, order)))
    start = 0
    for level in sorted(set(levels), reverse=True):
        end = start + 2 * levels.count(level)
        yield level, grouped[start:end]
        start = end


def _level_groups_in_arrays(offsets: bytes, levels: bytes) -> Iterator[tuple[int, bytes]]:
    """``_level_groups`` over whole arrays (numpy): a stable sort by the inverted level, and each level's sessions
    counted."""
    found = np.frombuffer(levels, dtype=np.uint8)
    grouped = np.frombuffer(offsets, dtype="<u2")[np.argsort(~found, kind="stable")].tobytes()
    counts = np.bincount(found, minlength=256)
    present = np.flatnonzero(counts)[::-1]
    start = 0
    for level, count in zip(present.tolist(), counts[present].tolist()):
        yield level, grouped[start:start + 2 * count]
        start += 2 * count


def _joined(block: Block | None, entries: Mapping[int, int]) -> bytes:
    """The summary of ``block`` (``None``: empty) with ``entries`` of sessions all greater than its own."""
    sids = sorted(entries)
    codes = packed_u16s(list(map(entries.__getitem__, sids)))  # tag, level: the low byte first
    return summary_extend(None if block is None else block.raw, packed_u16s(sids), codes[1::2], codes[0::2])


def summary_extend(raw: bytes | None, offsets: bytes, levels: bytes, tags: bytes) -> bytes:
    """``raw`` (``None``: an empty summary) with sessions all greater than its own: their ``offsets`` in the
    block (little-endian u16, ascending), best ``levels`` and ``tags``. The block's parts are extended, not
    decoded."""
    block = None if raw is None else Block(raw)
    total = len(levels) + (0 if block is None else block.sessions)
    if block is not None and total > formats.GROUPED_FROM and not block.grouped:  # a small block becomes grouped
        return summary_extend(None, block.sids_raw() + offsets, block.best_levels() + levels, block.tags() + tags)
    kept = (b"", b"", b"") if block is None else (block.sids_raw(), block.best_levels(), block.tags())
    parts = [b"", kept[0], offsets, kept[1], levels, kept[2], tags]
    flags = distinct = 0
    if total > formats.GROUPED_FROM:
        members = {} if block is None else {level: [group] for level, group in block.groups()}
        for level, added in _level_groups(offsets, levels):
            members.setdefault(level, []).append(added)
        order = sorted(members, reverse=True)
        joined = [b"".join(members[level]) for level in order]
        counts = [len(group) // 2 for group in joined]
        distinct = len(order)
        flags = GROUPED | (_WIDE_COUNTS if max(counts) > 0xFFFF else 0)
        parts += [bytes(order), struct.pack(f"<{distinct}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts), *joined]
    parts[0] = SUMMARY_HEAD.pack(total, distinct, flags)
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
    if grouped != (grown > formats.GROUPED_FROM):
        entries = summary.entries()
        if code:
            entries[sid] = code
        else:
            del entries[sid]
        return summary_of(entries)
    member = _U16.pack(sid)
    levels_at = summary.levels_at
    head, tags_at, end = SUMMARY_HEAD.size, levels_at + n, levels_at + 2 * n
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
        return SUMMARY_HEAD.pack(grown, 0, 0) + b"".join(parts)
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
            if new_level in levels:  # in its place among the level's sessions: a group is kept ascending
                group = levels.index(new_level)
                first = 2 * sum(counts[:group])
                at = first + 2 * bisect.bisect_left(unsigned(members[first:first + 2 * counts[group]], "H"), sid)
                counts[group] += 1
            else:
                group = sum(1 for existing in levels if existing > new_level)
                levels.insert(group, new_level)
                counts.insert(group, 1)
                at = 2 * sum(counts[:group])
            members = members[:at] + member + members[at:]
    flags = GROUPED | (_WIDE_COUNTS if counts and max(counts) > 0xFFFF else 0)
    parts += [bytes(levels), struct.pack(f"<{len(counts)}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts), members]
    return SUMMARY_HEAD.pack(grown, len(levels), flags) + b"".join(parts)


def _find_aligned(data: bytes, pattern: bytes, start: int, end: int) -> int:
    """The offset of the first ``pattern`` in ``data[start:end]`` at a multiple of its length from ``start`` (a
    value of a run of fixed-width values), or -1."""
    width = len(pattern)
    position = data.find(pattern, start, end)
    while position >= 0 and (position - start) % width:
        position = data.find(pattern, position + 1, end)
    return position


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
    changes = dict(zip(unsigned(offsets, "H"), unsigned(codes, "H")))
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
