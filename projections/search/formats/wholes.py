"""A term stored whole (``search.summary``): the summary and message maps of all its blocks in its head, so that a
query reads one value a term where a term stored in blocks is read one value a block in two spaces, and joins its
blocks in a few calls over whole arrays."""

from __future__ import annotations

import bisect
import functools
import struct
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from operator import lt
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from eventstore._errors import StoreCorrupted

from .. import formats
from .arrays import packed_u16s, u32_array
from .keys import WHOLE_MARK
from .maps import JOINED_BLOCKS, JOINED_SHIFT, MAP_SHIFT, map_of_value, map_value, mapped_size, mapped_sizes
from .summaries import LAST_TAG, SPREAD, Block, Summary, joined_sids, summary_extend

__all__ = ["Whole", "WholeEnds", "block_keys", "stored_whole", "unmapped_whole", "whole_end", "whole_ends",
           "whole_extended", "whole_of_blocks", "whole_value"]

# The head of a term stored whole:
#   head      u32 message count, u32 WHOLE_MARK (no block has that number), u32 blocks (b), u32 sessions (n),
#             u32 bytes of the keys
#   numbers   b × u16: the blocks, ascending (below ``JOINED_BLOCKS``, 8,192, as ``stored_whole`` asks)
#   counts    b × u16: the sessions in each (at most ``1 << BLOCK_BITS``, 4,096)
#   offsets   n × u16: the sessions (offsets in their block), block by block, ascending
#   best      n bytes: the best level of each session
#   tags      n bytes: the tag of each session
#   keys      a serialized bitmap of the blocks' message maps (``maps.mapped``), joined: ``block << JOINED_SHIFT | key``
# The head keeps u32 fields: the first two are read as any term's head is (``keys.whole_head``), and narrower others
# would save 4 bytes a term, little beside its blocks', but bound its sessions and its keys' bytes below 65,536.
# A block's summary is ``summary_extend``'s of its columns, and its map the keys of its range: what the term stored
# in blocks would hold, so the writer and the checks read either form alike.
_HEAD = struct.Struct("<IIIII")
_U16 = struct.Struct("<H")


def stored_whole(df: int, blocks: Sequence[int]) -> bool:
    """Whether a term of ``df`` messages in ``blocks`` (ascending) is stored whole: a term in few messages, all in
    blocks whose keys join in 32 bits. The most common terms stay in blocks, so that a batch that adds to them
    rewrites their last blocks only."""
    return 0 < df <= formats.WHOLE_UP_TO and bool(blocks) and blocks[-1] < JOINED_BLOCKS


def block_keys(number: int, block: Block, found: BitMap | None) -> BitMap:
    """The joined keys a head stored whole keeps of block ``number``, its summary and its message map (``None``: it
    has none, and the head keeps no keys of it)."""
    if (found is not None) != mapped_size(block.sessions):
        raise StoreCorrupted(f"the search index is damaged: block {number} of a term has a message map "
                             "it should not have, or lacks one")
    return BitMap() if found is None else found.shift(number << JOINED_SHIFT)


def whole_of_blocks(df: int, blocks: Sequence[tuple[int, Block, BitMap | None]]) -> bytes:
    """The head of a term stored whole (``stored_whole``): its message count and its blocks ``(number, summary,
    message map or None)``, ascending."""
    # Most terms stored whole have no map: their keys are joined only where a block has one.
    keys = [found for held in blocks if (found := block_keys(*held))]
    return whole_value(df, [number for number, _, _ in blocks], [block.sessions for _, block, _ in blocks],
                       [(block.sids_raw(), block.best_levels(), block.tags()) for _, block, _ in blocks],
                       keys[0] if len(keys) == 1 else BitMap.union(BitMap(), *keys))


def whole_value(df: int, numbers: Sequence[int], counts: Sequence[int], columns: Sequence[tuple[bytes, bytes, bytes]],
                keys: BitMap) -> bytes:
    """The head of a term stored whole from its message count, its blocks (ascending) and their sessions, the
    columns of runs of them in order ``(offsets, best levels, tags)``, and their joined keys (``block_keys``)."""
    return _whole_bytes(df, len(numbers), sum(counts), packed_u16s(numbers) + packed_u16s(counts), columns,
                        map_value(keys) if keys else _no_keys())


def unmapped_whole(df: int, numbers: Sequence[int], counts: Sequence[int],
                   columns: tuple[bytes, bytes, bytes]) -> bytes:
    """``whole_value`` of a term none of whose blocks has a map, from the columns of all its sessions in one run: one
    join, no keys to serialize (a first catch-up makes one for nearly every term)."""
    offsets, levels, tags = columns
    joined = _no_keys()
    return b"".join((_HEAD.pack(df, WHOLE_MARK, len(numbers), len(levels), len(joined)), packed_u16s(numbers),
                     packed_u16s(counts), offsets, levels, tags, joined))


def whole_end(raw: bytes) -> tuple[int, int, int, int]:
    """Where sessions past the last of a head stored whole (``raw``) join it (``whole_extended``): its message count,
    its last block, the sessions there, and the last session's offset; the head checked as ``Whole`` checks it."""
    numbers, counts, at, n = _layout(raw)
    return int(_HEAD.unpack_from(raw)[0]), numbers[-1], counts[-1], int(_U16.unpack_from(raw, at + 2 * n - 2)[0])


class WholeEnds(NamedTuple):
    """``whole_end`` of many heads at once (``whole_ends``), as arrays in their order."""

    #: Whether the head is stored whole and passes ``whole_end``'s checks (the other fields are 0 where it does not).
    whole: npt.NDArray[np.bool_]
    df: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    sessions: npt.NDArray[np.int64]
    last_offset: npt.NDArray[np.int64]


def whole_ends(raws: Sequence[bytes | None]) -> WholeEnds:
    """``whole_end`` of each of ``raws`` (``None``: no head), read in a few numpy calls over all of them: a later
    batch of a catch-up extends tens of thousands of heads stored whole. A head that is not stored whole, or fails a
    check of ``whole_end``'s, is marked so (``whole``), not told: its term takes the path that reads it alone."""
    heads = [b"" if raw is None else raw for raw in raws]
    found = WholeEnds(np.zeros(len(heads), dtype=np.bool_), *(np.zeros(len(heads), dtype=np.int64) for _ in range(4)))
    sizes = np.fromiter(map(len, heads), dtype=np.int64, count=len(heads))
    starts = np.cumsum(sizes) - sizes
    # Padded, so that every head's fixed fields can be gathered (those of a head too short for them are dropped).
    joined = np.frombuffer(b"".join([*heads, bytes(_HEAD.size)]), dtype=np.uint8)
    long_enough = sizes >= _HEAD.size
    fields = joined[np.where(long_enough, starts, 0)[:, None] + np.arange(_HEAD.size)].view("<u4").astype(np.int64)
    df, mark, blocks, n, keys = fields.T
    at = starts + _HEAD.size + 4 * blocks  # where its offsets start
    sized = sizes == at - starts + 4 * n + keys
    candidates = np.flatnonzero(long_enough & (mark == WHOLE_MARK) & (blocks > 0) & sized)
    if not len(candidates):
        return found
    blocks, n, at = blocks[candidates], n[candidates], at[candidates]
    # Their block numbers and the sessions in each, head after head, checked as ``_layout`` checks them.
    firsts = np.cumsum(blocks) - blocks
    numbers_at = np.repeat(starts[candidates] + _HEAD.size - 2 * firsts, blocks) + 2 * np.arange(int(blocks.sum()))
    numbers = _u16_at(joined, numbers_at)
    counts = _u16_at(joined, numbers_at + 2 * np.repeat(blocks, blocks))
    lasts = firsts + blocks - 1
    ascending = np.ones(len(numbers), dtype=np.bool_)
    ascending[1:] = numbers[1:] > numbers[:-1]
    ascending[firsts] = True  # a head's first block follows nothing of its own
    checked = ((np.add.reduceat(counts, firsts) == n) & np.logical_and.reduceat(ascending & (counts > 0), firsts)
               & (numbers[lasts] < JOINED_BLOCKS))
    chosen = candidates[checked]
    found.whole[chosen] = True
    found.df[chosen] = df[chosen]
    found.last[chosen] = numbers[lasts[checked]]
    found.sessions[chosen] = counts[lasts[checked]]
    found.last_offset[chosen] = _u16_at(joined, (at + 2 * n - 2)[checked])
    return found


def _u16_at(joined: npt.NDArray[np.uint8], places: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The little-endian u16 at each of ``places`` in ``joined``."""
    return joined[places].astype(np.int64) | joined[places + 1].astype(np.int64) << 8


def whole_extended(raw: bytes, df: int, numbers: Sequence[int], counts: Sequence[int],
                   columns: tuple[bytes, bytes, bytes], keys: Sequence[BitMap]) -> bytes:
    """``whole_value`` of the term stored whole in ``raw`` (checked by ``whole_end``; here only against its size)
    with sessions past its last, spliced as bytes: ``df`` messages now, the blocks ``numbers`` that gain sessions
    (ascending; the first may be its last block) with their sessions then (``counts``), the gained sessions' columns
    ``(offsets, best levels, tags)``, and the joined keys (``block_keys``) their blocks' message maps gain, OR-ed
    into its own one after the other, as the writer's general path ORs them into each block's map. Its keys are
    copied as they are when none are gained."""
    blocks, n, at = _sizes(raw)
    counts_at = _HEAD.size + 2 * blocks
    kept = blocks - (numbers[0] == _U16.unpack_from(raw, counts_at - 2)[0])  # its last block extended: counted anew
    joined = raw[at + 4 * n:]
    if keys:
        found = map_of_value(joined, joined=True)
        for gained in keys:
            found |= gained
        joined = map_value(found)
    offsets, levels, tags = columns
    # One join of the stored head's slices and the gained columns, in the layout's order (``_whole_bytes``'s).
    return b"".join((_HEAD.pack(df, WHOLE_MARK, kept + len(numbers), n + len(levels), len(joined)),
                     raw[_HEAD.size:_HEAD.size + 2 * kept], packed_u16s(numbers),
                     raw[counts_at:counts_at + 2 * kept], packed_u16s(counts),
                     raw[at:at + 2 * n], offsets, raw[at + 2 * n:at + 3 * n], levels, raw[at + 3 * n:at + 4 * n], tags,
                     joined))


def _whole_bytes(df: int, blocks: int, sessions: int, numbers: bytes, columns: Sequence[tuple[bytes, bytes, bytes]],
                 joined: bytes) -> bytes:
    """The head of a term stored whole from its parts: its ``blocks`` numbers then their sessions (``numbers``, u16
    each), its columns' runs, its joined keys serialized (``joined``)."""
    parts = [_HEAD.pack(df, WHOLE_MARK, blocks, sessions, len(joined)), numbers]
    parts += [offsets for offsets, _, _ in columns]
    parts += [levels for _, levels, _ in columns]
    parts += [tags for _, _, tags in columns]
    parts.append(joined)
    return b"".join(parts)


def _sizes(raw: bytes) -> tuple[int, int, int]:
    """The blocks and sessions of a head stored whole, and where its offsets start, checked against its size."""
    if len(raw) < _HEAD.size:
        raise StoreCorrupted("the search index is damaged: a term's head has the wrong size")
    _, mark, count, n, keys = _HEAD.unpack_from(raw)
    at = _HEAD.size + 4 * count
    if mark != WHOLE_MARK or not count or len(raw) != at + 4 * n + keys:
        raise StoreCorrupted("the search index is damaged: a term's head has the wrong size")
    return count, n, at


def _layout(raw: bytes) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
    """The blocks of a head stored whole (ascending), the sessions in each, where its offsets start and how many
    sessions it holds, checked against its size and one another."""
    count, n, at = _sizes(raw)
    numbers: tuple[int, ...] = struct.unpack_from(f"<{count}H", raw, _HEAD.size)
    counts: tuple[int, ...] = struct.unpack_from(f"<{count}H", raw, _HEAD.size + 2 * count)
    if sum(counts) != n or not all(map(lt, numbers, numbers[1:])) or 0 in counts:
        raise StoreCorrupted("the search index is damaged: a term's blocks are out of order")
    if numbers[-1] >= JOINED_BLOCKS:  # its keys would not fit 32 bits (and pyroaring crashes past them)
        raise StoreCorrupted("the search index is damaged: a term stored whole has a block past its keys'")
    return numbers, counts, at, n


@functools.cache
def _no_keys() -> bytes:
    """The joined keys of a term none of whose blocks has a map (most terms stored whole), serialized once."""
    return map_value(BitMap())


class Whole(Summary):
    """A term stored whole, read from its head: a ``Summary`` whose sessions are joined from the stored columns in
    a few numpy calls; its blocks, and their maps, are rebuilt only when asked for."""

    __slots__ = ("_raw", "_at", "_numbers", "_counts", "_keys", "_query_keys", "_unmapped_spread", "_rebuilt",
                 "_array")

    def __init__(self, raw: bytes) -> None:
        # Few objects a term: a cache of decoded terms holds many rare ones (``index._term_bytes``).
        self._numbers, self._counts, at, n = _layout(raw)
        self._raw, self._at = raw, at
        self._levels = raw[at + 2 * n:at + 3 * n]
        self._tags = raw[at + 3 * n:at + 4 * n]
        self._keys: BitMap | None = None
        self._query_keys: BitMap | None = None
        self._unmapped_spread: BitMap | None = None
        self._rebuilt: list[tuple[int, Block]] | None = None
        self._sids: bytes | None = None
        self._array: npt.NDArray[np.uint32] | None = None
        self._spread: int | None = None
        self.sessions = n

    @property
    def _offsets(self) -> bytes:
        return self._raw[self._at:self._at + 2 * self.sessions]

    @property
    def blocks(self) -> Sequence[tuple[int, Block]]:
        """The blocks' summaries, as the term stored in blocks would hold them (rebuilt when first read)."""
        if self._rebuilt is None:
            self._rebuilt = [(number, Block(summary_extend(None, *columns)))
                             for number, columns in zip(self._numbers, self._columns())]
        return self._rebuilt

    def _columns(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Each block's offsets (u16 bytes), best levels and tags."""
        start, offsets = 0, self._offsets
        for count in self._counts:
            yield (offsets[2 * start:2 * (start + count)], self._levels[start:start + count],
                   self._tags[start:start + count])
            start += count

    def block_numbers(self) -> Sequence[int]:
        return self._numbers

    def block_sizes(self) -> Sequence[tuple[int, int]]:
        return list(zip(self._numbers, self._counts))

    def place(self, number: int) -> int:
        """Where block ``number`` is among the term's blocks; -1: the term has no session there."""
        at = bisect.bisect_left(self._numbers, number)
        return at if at < len(self._numbers) and self._numbers[at] == number else -1

    def counts(self, start: int, end: int) -> Sequence[int]:
        """The sessions of the ``start``-th to the ``end``-th block (excluded)."""
        return self._counts[start:end]

    def span(self, start: int, end: int) -> tuple[bytes, bytes, bytes]:
        """The offsets (u16 bytes), best levels and tags of the ``start``-th to the ``end``-th block (excluded)."""
        first = sum(self._counts[:start])
        last = first + sum(self._counts[start:end])
        return self._raw[self._at + 2 * first:self._at + 2 * last], self._levels[first:last], self._tags[first:last]

    def runs_outside(self, numbers: Iterable[int]) -> list[tuple[int, int, int]]:
        """The runs of consecutive blocks that hold none of ``numbers`` and have none of them between theirs:
        ``(first block's number, first block's place, past the last one's)``, ascending."""
        bounds, excluded = {0, len(self._numbers)}, set()
        for number in numbers:
            at = bisect.bisect_left(self._numbers, number)
            bounds.add(at)
            if at < len(self._numbers) and self._numbers[at] == number:
                excluded.add(at)
                bounds.add(at + 1)
        return [(self._numbers[low], low, high) for low, high in pairwise(sorted(bounds))
                if high > low and low not in excluded]

    def keys_outside(self, numbers: Iterable[int]) -> BitMap:
        """The joined keys of every block but ``numbers``."""
        found = self.keys().copy()
        for number in numbers:
            found.remove_range(number << JOINED_SHIFT, (number + 1) << JOINED_SHIFT)
        return found

    def block(self, number: int) -> bytes | None:
        """The summary of block ``number`` (``None``: the term has no session there), rebuilt alone."""
        at = self.place(number)
        return None if at < 0 else summary_extend(None, *self.span(at, at + 1))

    def block_map(self, number: int) -> BitMap | None:
        """The message map of block ``number``; ``None`` where it has none."""
        at = self.place(number)
        if at < 0 or not mapped_size(self._counts[at]):
            return None
        base = number << JOINED_SHIFT
        found = self.keys() & BitMap(range(base, base + (1 << JOINED_SHIFT)))
        return found.shift(-base)

    def keys(self) -> BitMap:
        """The joined keys of its message maps (see the layout above). The caller may not change them."""
        if self._keys is None:
            self._keys = map_of_value(self._raw[self._at + 4 * self.sessions:], joined=True)
        return self._keys

    def query_keys(self) -> BitMap:
        """The joined keys a query ANDs with another term's: its message maps', and in its blocks without a map the
        key each session's tag gives where it names the one message holding the term (``maps.single_keys``), built
        over the whole term in numpy. The caller may not change them."""
        if self._query_keys is None:
            # Built aside and set once whole: queries in other threads share this term, and one finding the maps'
            # keys alone here would leave sessions out of its shared ones.
            found = self.keys()
            single = self._in_unmapped()
            if single is not None:
                tags = np.frombuffer(self._tags, dtype=np.uint8)
                single &= tags < LAST_TAG
                blocks = np.repeat(np.array(self._numbers, dtype=np.uint32), self._counts)
                placed = (blocks << np.uint32(JOINED_SHIFT) | tags.astype(np.uint32) << np.uint32(MAP_SHIFT)
                          | np.frombuffer(self._offsets, dtype="<u2"))[single]
                found = found | BitMap(u32_array(placed.astype("<u4").tobytes()), optimize=False)
            self._query_keys = found
        return self._query_keys

    def unmapped_spread(self) -> BitMap:
        """The sessions of its blocks without a map whose tag names no one message (``SPREAD``): a query opens them
        wherever another term is. Found when first asked for (every query of the term asks). The caller may not
        change them."""
        if self._unmapped_spread is None:
            mask = self._in_unmapped()
            if mask is None:
                self._unmapped_spread = BitMap()
            else:
                mask &= np.frombuffer(self._tags.translate(SPREAD), dtype=np.uint8).astype(bool)
                self._unmapped_spread = BitMap(u32_array(self.sid_array()[mask].astype("<u4").tobytes()),
                                               optimize=False)
        return self._unmapped_spread

    def _in_unmapped(self) -> npt.NDArray[np.bool_] | None:
        """Which sessions are in a block without a message map; ``None`` when none is (a term in many sessions)."""
        counts = self._counts
        if mapped_size(min(counts)) and mapped_size(max(counts)):  # a range of sizes: every block has a map
            return None
        sizes = np.array(counts)
        return np.repeat(~mapped_sizes(sizes), sizes)

    def _all_sids(self) -> npt.NDArray[np.uint32]:
        return joined_sids(self._numbers, self._counts, self._offsets)

    def sid_array(self) -> npt.NDArray[np.uint32]:
        """The sorted sessions as an array (read-only), joined when first read: the bytes are made from it only when
        asked for (``sorted_sids``), not on the way."""
        if self._array is None:
            found = self._all_sids()
            found.flags.writeable = False
            self._array = found
        return self._array

    def _joined(self) -> bytes:
        if self._sids is None:
            self._sids = self.sid_array().astype("<u4", copy=False).tobytes()
        return self._sids

    def groups(self) -> Iterator[tuple[int, bytes]]:
        """``(level, sessions as little-endian u32 bytes)``, best level first, ascending within a level: one stable
        sort by level over the whole term."""
        levels = np.frombuffer(self._levels, dtype=np.uint8)
        order = np.argsort(255 - levels, kind="stable")
        sids = np.frombuffer(self._joined(), dtype="<u4")[order]
        ordered = levels[order]
        edges = [0, *(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist(), len(ordered)]
        for start, end in pairwise(edges):
            yield int(ordered[start]), sids[start:end].tobytes()

    def stored_bytes(self) -> int:
        return len(self._raw)

