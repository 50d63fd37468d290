"""The message maps of a term's blocks (``search.maps``), its repeated messages there (``search.repeats``), the
blocks' messages by level (``search.levels``), and the map keys a block's summary gives."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap, FrozenBitMap

from eventstore._errors import StoreCorrupted

from .. import formats
from .arrays import FIND_PAYS_OFF, U32, packed_u64s, places, u32_array, u32s
from .keys import unpacked
from .summaries import LAST_TAG, MULTI, SPREAD, SUMMARY_HEAD, Block

__all__ = [
    "JOINED_BLOCKS",
    "JOINED_SHIFT",
    "LAST_KEYS",
    "MAP_SHIFT",
    "MERGED_IN_ARRAYS_FROM",
    "MULTI_KEYS",
    "ChangedRepeats",
    "block_present",
    "block_spread",
    "keyed_levels",
    "level_key",
    "level_of_key",
    "map_of_value",
    "map_value",
    "mapped",
    "mapped_size",
    "mapped_sizes",
    "placed",
    "placed_keys",
    "posted_keys",
    "posted_levels",
    "repeated_at",
    "repeated_levels",
    "repeats_of_value",
    "repeats_value",
    "session_map_keys",
    "single_keys",
]

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
    """``(block, level)`` of a ``search.levels`` key."""
    block, level = unpacked(_LEVEL_KEY, key, "search.levels")
    return block, level


def keyed_levels(messages: Iterable[tuple[int, BitMap]]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """A block's messages by level (``(level, keys)`` pairs, as ``search.levels`` holds them) as two arrays: their
    message keys (level by level, each level's ascending) and each key's level."""
    pairs = [(level, np.frombuffer(keys.to_array(), dtype=np.uint32)) for level, keys in messages if keys]
    if not pairs:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.uint8)
    return (np.concatenate([keys for _, keys in pairs]),
            np.repeat(np.array([level for level, _ in pairs], dtype=np.uint8), [len(keys) for _, keys in pairs]))


def repeats_value(keys: BitMap, levels: bytes) -> bytes:
    """The ``search.repeats`` value of ``keys`` (message keys) and ``levels`` (the term's level in each, in the keys'
    order): the keys as a serialized bitmap (its size first, u32), then the levels."""
    serialized = map_value(keys)
    return U32.pack(len(serialized)) + serialized + levels


#: ``ChangedRepeats`` merges a block's changes into this many stored repeats or more in place and in numpy, whose
#: calls cost more than a dict of fewer (most blocks hold a few; the most common words' hold tens of thousands).
MERGED_IN_ARRAYS_FROM = 384


class ChangedRepeats:
    """A block's repeated messages (``search.repeats``: message key → the term's level there) as a batch changes
    them: the stored keys and levels kept as they are, the batch's changes held apart and merged when read (a large
    block's keys changed in place, its levels in numpy), so that a few changes to a block of tens of thousands of
    repeats cost what they change.

    The merged keys serialize as a bitmap built afresh from the sorted keys, as the writer always stored them
    (``_rebuilt``)."""

    __slots__ = ("_keys", "_levels", "_levels_of", "_dropped", "changed")

    def __init__(self, stored: tuple[BitMap, bytes] | None = None) -> None:
        self._keys, self._levels = stored if stored is not None else (BitMap(), b"")
        self._levels_of: dict[int, int] = {}  # keys set by the batch → their level, over the stored ones
        self._dropped = BitMap()  # stored keys the batch took out (unless set again)
        #: Whether anything was set or dropped: one never changed holds its stored value.
        self.changed = False

    def __bool__(self) -> bool:
        return bool(self._levels_of) or len(self._keys) > len(self._dropped)

    def set(self, key: int, level: int) -> None:
        self._levels_of[key] = level
        self.changed = True

    def update(self, levels: Iterable[tuple[int, int]]) -> None:
        """Set each ``(key, level)`` in order (a later one of a key wins)."""
        self._levels_of.update(levels)
        self.changed = True

    def drop_session(self, offset: int) -> None:
        """Take out every message of the block's session at ``offset``."""
        keys = session_map_keys(offset)
        for key in keys:
            self._levels_of.pop(key, None)
        self._dropped |= self._keys & keys
        self.changed = True

    def merged(self) -> tuple[BitMap, bytes]:
        """The keys and levels as the batch changed them (``repeats_of_value``'s form). The caller may not change
        them."""
        if self._levels_of or self._dropped:
            merge = self._merged_in_a_dict if len(self._keys) < MERGED_IN_ARRAYS_FROM else self._merged_in_arrays
            self._keys, self._levels = merge()
            self._levels_of, self._dropped = {}, BitMap()
        return self._keys, self._levels

    def _merged_in_a_dict(self) -> tuple[BitMap, bytes]:
        levels_of = dict(zip(self._keys, self._levels))
        for key in self._dropped:  # before the keys set: one set after its session was dropped is set again
            del levels_of[key]
        levels_of.update(self._levels_of)
        ordered = sorted(levels_of)
        return BitMap(ordered), bytes(map(levels_of.__getitem__, ordered))

    def _merged_in_arrays(self) -> tuple[BitMap, bytes]:
        set_again = BitMap(self._levels_of)
        gone = self._dropped | (self._keys & set_again)  # dropped, or set to a level again
        levels = np.frombuffer(self._levels, np.uint8)
        # Where keys go and come, found by one search of the sorted keys for all of them (a bitmap's rank of one key
        # counts the bits before it: a bitset container's words, for each key).
        if gone:
            levels = np.delete(levels, np.searchsorted(_sorted_keys(self._keys), _sorted_keys(gone)))
        kept = self._keys - gone
        added = sorted(self._levels_of)
        levels = np.insert(levels, np.searchsorted(_sorted_keys(kept), np.array(added, dtype=np.uint32)),
                           list(map(self._levels_of.__getitem__, added)))
        return _rebuilt(kept | set_again, gone | set_again), levels.tobytes()


def _sorted_keys(keys: BitMap) -> npt.NDArray[np.uint32]:
    """A bitmap's keys, ascending, in a numpy array."""
    return np.frombuffer(keys.to_array(), dtype=np.uint32)


#: A roaring bitmap's container (65,536 keys) holds at most this many keys as an array; more as a bitset or as
#: runs, whichever serializes smaller, and the two never tie in size (8,192 bytes against 2 + 4 a run).
_ARRAY_KEYS_UP_TO = 4096


def _rebuilt(changed_in_place: BitMap, changed: BitMap) -> BitMap:
    """``changed_in_place`` (a stored bitmap changed in place in the ``changed`` keys alone) as a bitmap built afresh
    from its sorted keys serializes: its containers of few keys that hold a changed key are built afresh, since there
    a run container changed in place can stay one where a container built afresh is an array of the same size. Its
    other containers serialize as built afresh: those of more keys never tie, and those the change did not touch
    were built afresh when they last changed."""
    cut = BitMap()
    for high in {key >> 16 for key in changed}:
        if changed_in_place.range_cardinality(high << 16, high + 1 << 16) <= _ARRAY_KEYS_UP_TO:
            cut.add_range(high << 16, high + 1 << 16)
    if not cut:
        return changed_in_place
    return (changed_in_place - cut) | BitMap((changed_in_place & cut).to_array())


def repeats_of_value(raw: bytes) -> tuple[BitMap, bytes]:
    """The keys (a bitmap) and levels (in the keys' order) of a ``search.repeats`` value."""
    size = U32.unpack_from(raw)[0] if len(raw) >= U32.size else -1
    keys = map_of_value(raw[U32.size:U32.size + size]) if 0 <= size <= len(raw) - U32.size else None
    if keys is None or len(keys) != len(raw) - U32.size - size or (keys and keys.max() >= LAST_KEYS):
        raise StoreCorrupted("the search index is damaged: a term's repeated messages cannot be read")
    return keys, raw[U32.size + size:]


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
    return raw is not None and mapped_size(SUMMARY_HEAD.unpack_from(raw)[0])


def mapped_size(sessions: int) -> bool:
    """Whether a term's block of ``sessions`` sessions has a message map."""
    return formats.MAP_FROM <= sessions <= formats.MAP_UP_TO


def mapped_sizes(sessions: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """``mapped_size`` of each of ``sessions``."""
    return (sessions >= formats.MAP_FROM) & (sessions <= formats.MAP_UP_TO)


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
    return BitMap(u32_array(wide), optimize=False)


def single_keys(block: Block) -> BitMap:
    """``placed_keys`` of the sessions whose tag names the one message holding the term (below ``LAST_KEYS``): a
    query keys the others apart (``block_spread``), so the keys of a term's blocks join in ``JOINED_SHIFT`` bits."""
    found = placed_keys(block)
    found.remove_range(LAST_KEYS, (0xFF + 1) << MAP_SHIFT)
    return found


def block_present(block: Block) -> BitMap:
    """The block's sessions as offsets, in a compressed bitmap built in C."""
    offsets = block.sids_raw()
    wide = bytearray(2 * len(offsets))
    wide[0::4], wide[1::4] = offsets[0::2], offsets[1::2]
    return BitMap(u32_array(wide), optimize=False)


def block_spread(block: Block) -> BitMap:
    """The block's sessions (offsets) whose tag does not name the one message holding the term (found in C)."""
    mask = block.tags().translate(SPREAD)
    return BitMap(compress(block.sorted_sids(), mask)) if mask.count(1) else BitMap()


@functools.lru_cache(maxsize=1 << MAP_SHIFT)
def session_map_keys(offset: int) -> FrozenBitMap:
    """Every key a message map can hold for the session at ``offset`` of its block."""
    return FrozenBitMap(range(offset, (LAST_TAG + 1) << MAP_SHIFT, 1 << MAP_SHIFT))


def posted_keys(values: Sequence[int]) -> BitMap:
    """The message-map keys in the low 32 bits of ``values`` (what a value holds above them, such as the writer's
    block and level of a posted message, is dropped), as a bitmap built in C."""
    return BitMap(u32_array(_low_halves(packed_u64s(values))), optimize=False)


def posted_levels(values: Sequence[int]) -> Iterator[tuple[int, int]]:
    """``(key, level)`` of each of ``values`` that hold a message-map key in their low 32 bits and a level in the
    byte above (the writer's notes of messages where a term has a level of its own), in order, cut in C."""
    raw = packed_u64s(values)
    return zip(u32s(_low_halves(raw)), raw[4::8])


def _low_halves(raw: bytes) -> bytearray:
    """The low 32 bits of each little-endian u64 of ``raw``, as little-endian u32 bytes."""
    low = bytearray(len(raw) // 2)
    for column in range(4):
        low[column::4] = raw[column::8]
    return low


def map_value(keys: BitMap) -> bytes:
    keys.run_optimize()
    return bytes(keys.serialize())


def map_of_value(raw: bytes, joined: bool = False) -> BitMap:
    """The message map in ``raw``; ``joined``: the maps of a term's blocks joined (``wholes``)."""
    try:
        keys = BitMap.deserialize(raw)
    except (ValueError, IndexError):
        raise StoreCorrupted("the search index is damaged: a message map cannot be read") from None
    if keys and not joined and keys.max() >= MULTI_KEYS:
        raise StoreCorrupted("the search index is damaged: a message map holds a key past every message's")
    return keys


#: ``bytes.translate`` tables: a tag's low four bits moved to a byte's high four, and its high four bits moved low.
_TAG_LOW = bytes((value & 0x0F) << 4 for value in range(256))
_TAG_HIGH = bytes(value >> 4 for value in range(256))
