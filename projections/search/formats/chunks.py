"""The chunks of postings (``search.docs``): the forward index, a session's messages' term ids and levels."""

from __future__ import annotations

import bisect
import struct
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, compress, repeat
from operator import add, itemgetter, rshift

from eventstore._errors import StoreCorrupted

from .arrays import LITTLE, packed_u16s, packed_u32s, u32s, unsigned

__all__ = [
    "CHUNK_MESSAGES",
    "ChunkMessage",
    "chunk_append",
    "chunk_counts",
    "chunk_levels",
    "chunk_message",
    "chunk_message_of",
    "chunk_occurrences",
    "chunk_occurrences_of",
    "chunk_pop",
    "chunk_posted",
    "chunk_size",
    "message_level",
]

#: Messages per forward-index chunk.
CHUNK_MESSAGES = 64

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
        return unsigned(memoryview(self.raw)[start:start + self.count_width * count],
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
        return unsigned(memoryview(self.raw)[self.low_at:self.high_at], "H")

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
    packed = packed_u32s(tids)
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
    high: tuple[int, ...] = ()
    if tids and tids[-1] < _LOW and LITTLE:  # most messages: their own bytes, packed in C
        low = array("H", tids).tobytes()
        if not others:
            return low, high, common, (), b""
    else:
        split = bisect.bisect_left(tids, _LOW)
        low, high = packed_u16s(tids[:split] if split < len(tids) else tids), tuple(tids[split:])
    places = tuple(map(bisect.bisect_left, repeat(tids), map(itemgetter(0), others))) if others else ()
    return low, high, common, places, bytes(map(itemgetter(1), others))


def chunk_append(raw: bytes | None, messages: Sequence[ChunkMessage]) -> bytes:
    """``raw`` (``None``: an empty chunk) with more messages: the chunk is decoded and encoded once however many
    messages it gains, and their low ids are joined as they were packed. The messages' parts are taken in C passes
    over all of them (a catch-up appends every message it indexes here); only those with postings at another level
    take a step each."""
    if raw is None:
        levels, low_ends, high_ends, stored_low, stored_high, id_width = bytearray(), [], [], b"", b"", 3
        at: list[int] = []
        own = bytearray()
    else:
        chunk = _Chunk(raw)
        levels, low_ends, high_ends = bytearray(chunk.levels()), list(chunk.low_ends()), list(chunk.high_ends())
        stored_low, stored_high = raw[chunk.low_at:chunk.high_at], raw[chunk.high_at:chunk.high_end]
        id_width, at, own = chunk.id_width, list(chunk.at()), bytearray(chunk.own())
    high = array("I")
    if messages:
        lows, highs, commons, places, own_levels = zip(*messages)
        # The chunk's postings so far, in its low run and its high one, before each message and after the last.
        low_totals = list(accumulate(map(rshift, map(len, lows), repeat(1)), initial=low_ends[-1] if low_ends else 0))
        high_total = high_ends[-1] if high_ends else 0
        if any(highs):
            high.extend(chain.from_iterable(highs))
            high_totals = list(accumulate(map(len, highs), initial=high_total))
        else:
            high_totals = [high_total] * len(low_totals)
        if any(places):  # a message's postings are numbered after the earlier messages' ones, in term id order
            for before, placed, levelled in compress(zip(map(add, low_totals, high_totals), places, own_levels),
                                                     places):
                at += map(add, repeat(before), placed)
                own += levelled
        levels += bytes(commons)
        low_ends += low_totals[1:]
        high_ends += high_totals[1:]
        stored_low = b"".join((stored_low, *lows))
    if high and id_width == 3 and max(high) >= _WIDE:  # widen the chunk's high ids
        stored_high, id_width = packed_u32s(_unids(stored_high, 3)), 4
    return _chunk_of(bytes(levels), low_ends, high_ends, stored_low, stored_high + _ids(high, id_width),
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
