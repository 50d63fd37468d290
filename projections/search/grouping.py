"""A batch's postings grouped by term and session, in C calls over whole arrays (numpy): the entries the index's
writer settles, derived for every term at once rather than noted a term at a time; and before that, the postings of
runs of appended messages (``indexed``), each message's terms counted and packed over whole arrays too.

The writer keeps a batch's appended messages as flat typed arrays (``Postings``): each message's term ids, and one
code a message. ``group`` sorts the postings by term and session once and derives, for each (term, session), its
entry (the best level, the first message at it) and how many messages hold the term, and for each term its
entries, its message count and the messages to note for its message maps: a few dozen numpy calls a batch
whatever its size, where noting each entry from Python cost a lookup and an append a term. A few postings (a
removal groups those appended since the batch last grouped) are grouped in plain Python, below numpy's fixed cost.
"""

from __future__ import annotations

import collections
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import groupby, islice, repeat
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .formats.arrays import distinct, packed_u64s
from .formats.chunks import ChunkMessage, chunk_message_of, chunk_posted, message_level
from .formats.maps import MAP_SHIFT
from .formats.summaries import LAST_TAG, MULTI
from .scoring import impact

__all__ = ["BETWEEN", "Columns", "Indexed", "Postings", "columns_of", "group", "indexed"]

U64 = npt.NDArray[np.uint64]

#: A noted entry is ``session << SID_SHIFT | messages << COUNT_SHIFT | entry``: its bytes are, from the lowest, the
#: tag, the level, the number of the batch's messages of the session that hold the term (two bytes, at most
#: ``MOST_COUNTED``: the entry needs only whether it is several), then the session.
COUNT_SHIFT = 16
SID_SHIFT = 32
MOST_COUNTED = (1 << 16) - 1
#: A posted message (``group``'s) has its block from this bit on.
POSTED_BLOCK = 40


class Postings:
    """A batch's appended messages as flat arrays: each message's distinct term ids (``tids``), its code
    ``session << 32 | level << 8 | index ^ LAST_TAG`` (``codes``: the level of the terms it holds once, its key as
    a run's entries order them) and how many term ids it has (``sizes``); and the postings whose term has a level
    of its own in its message (it repeats there): their term ids and codes (``own_tids``, ``own_codes``), which
    raise the term's entry but count no message."""

    __slots__ = ("tids", "codes", "sizes", "own_tids", "own_codes")

    def __init__(self) -> None:
        self.tids = array("I")
        self.codes = array("Q")
        self.sizes = array("I")
        self.own_tids = array("I")
        self.own_codes = array("Q")

    def __len__(self) -> int:
        return len(self.tids)


#: A term's entries as ``summary_extend`` takes them (``columns_of``): the sessions' offsets in their blocks (u16
#: bytes), best levels and tags.
Columns = tuple[bytes, bytes, bytes]
#: A term's id, its entries (``array("Q")``) and their columns, its message count, its posted messages.
Term = tuple[int, "array[int]", Columns, int, "array[int]"]
#: The bits of the one integer a posting is sorted as: its term id, then its session's rank among the batch's
#: sessions, its code's key (16 bits) and whether it counts a message (1 bit). Terms whose ids do not fit beside the
#: sessions' ranks are grouped a range of ids at a time (tests lower it to make that happen).
SORTED_BITS = 64
KEY_BITS = 17


#: Postings from which ``group`` sorts in numpy: below, a few plain Python steps a posting cost less than numpy's
#: calls, whose fixed cost a removal that groups the postings appended since the last grouping would pay.
NUMPY_FROM = 64


def group(postings: Postings, block_bits: int, posted_from: int) -> Iterator[Term]:
    """``(term id, its entries, their columns, its message count, its posted messages)`` for each term of
    ``postings``, ascending: a session's entry for a term is its greatest code's (the best level, the first message
    at it), noted as ``session << SID_SHIFT | messages << COUNT_SHIFT | entry`` in session order; the messages of a
    session holding the term in ``posted_from`` messages or more are posted for its message maps, as ``block <<
    POSTED_BLOCK | map key`` in session order. Each posting is one integer, and one sort (in C) groups them all;
    a few postings are grouped in plain Python."""
    if len(postings.tids) + len(postings.own_tids) < NUMPY_FROM:
        return _few(postings, block_bits, posted_from)
    return _many(postings, block_bits, posted_from)


def _few(postings: Postings, block_bits: int, posted_from: int) -> Iterator[Term]:
    """``group`` of a few postings: each a tuple ``(term, session, key, counts a message)``, one sort of them."""
    rows: list[tuple[int, int, int, int]] = []
    tids = iter(postings.tids)
    for code, size in zip(postings.codes, postings.sizes):
        rows += [(tid, code >> 32, code & 0xFFFF, 1) for tid in islice(tids, size)]
    rows += [(tid, code >> 32, code & 0xFFFF, 0) for tid, code in zip(postings.own_tids, postings.own_codes)]
    rows.sort()
    block_mask = (1 << block_bits) - 1
    for tid, of_term in groupby(rows, itemgetter(0)):
        notes, posted, added = array("Q"), array("Q"), 0
        for sid, of_session in groupby(of_term, itemgetter(1)):
            held = list(of_session)
            messages = sum(map(itemgetter(3), held))
            notes.append(sid << SID_SHIFT | min(messages, MOST_COUNTED) << COUNT_SHIFT | held[-1][2] ^ LAST_TAG)
            added += messages
            if messages >= posted_from:
                posted.extend(sid >> block_bits << POSTED_BLOCK | (key & LAST_TAG ^ LAST_TAG) << MAP_SHIFT
                              | sid & block_mask for _, _, key, counts in held if counts)
        yield tid, notes, columns_of(packed_u64s(notes), block_bits), added, posted


def _many(postings: Postings, block_bits: int, posted_from: int) -> Iterator[Term]:
    """``group`` in numpy: each posting is one integer, one sort of them."""
    codes = np.frombuffer(postings.codes, dtype=np.uint64)
    own_codes = np.frombuffer(postings.own_codes, dtype=np.uint64)
    sessions = distinct(codes >> np.uint64(32))
    counted, size = len(postings.tids), len(postings.tids) + len(postings.own_tids)
    # Filled in place: a batch's postings are millions, and each array of them takes 8 bytes a posting.
    rows = np.empty(size, dtype=np.uint64)
    rows[:counted] = np.repeat(_low_bits(codes, sessions, 1), np.frombuffer(postings.sizes, dtype=np.uint32))
    rows[counted:] = _low_bits(own_codes, sessions, 0)
    tids = np.empty(size, dtype=np.uint64)
    tids[:counted] = np.frombuffer(postings.tids, dtype=np.uint32)
    tids[counted:] = np.frombuffer(postings.own_tids, dtype=np.uint32)
    shift = KEY_BITS + len(sessions).bit_length()
    page_bits = SORTED_BITS - shift
    pages = tids >> np.uint64(page_bits)
    if not pages.any():  # every term id fits (all but stores of many millions of terms)
        del pages
        tids <<= np.uint64(shift)
        rows |= tids
        del tids
        rows.sort()
        derived = _derived(rows, shift, sessions, block_bits, posted_from)
        del rows
        yield from _terms(*derived, 0, block_bits)
        return
    mask = np.uint64((1 << page_bits) - 1)
    for page in distinct(pages).tolist():
        chosen = pages == np.uint64(page)
        packed = (tids[chosen] & mask) << np.uint64(shift) | rows[chosen]
        packed.sort()
        yield from _terms(*_derived(packed, shift, sessions, block_bits, posted_from), page << page_bits,
                          block_bits)


def _low_bits(codes: U64, sessions: U64, counted: int) -> U64:
    """The low bits of the integers ``group`` sorts for postings of ``codes``: the session's rank among
    ``sessions``, the code's key, and whether it counts a message."""
    ranks = np.searchsorted(sessions, codes >> np.uint64(32)).astype(np.uint64)
    return ranks << np.uint64(KEY_BITS) | (codes & np.uint64(0xFFFF)) << np.uint64(1) | np.uint64(counted)


def _terms(term_ids: list[int], starts: list[int], added: list[int], notes: U64, posted_starts: list[int],
           posted: U64, first_tid: int, block_bits: int) -> Iterator[Term]:
    """``group``'s terms from what ``_derived`` found, of terms from ``first_tid`` on."""
    # Sliced a term at a time as arrays and bytes (cheaper than numpy's slices of a few items); the columns made for
    # every term at once (``columns_of`` cut a term's at a time, some ten C calls each).
    offsets = (notes >> np.uint64(SID_SHIFT) & np.uint64((1 << block_bits) - 1)).astype("<u2").tobytes()
    levels = (notes >> np.uint64(8)).astype(np.uint8).tobytes()  # the low byte: astype keeps it
    tags = notes.astype(np.uint8)
    tags[notes >> np.uint64(COUNT_SHIFT) & np.uint64(MOST_COUNTED) > 1] |= MULTI
    tags_all, notes_all, posted_all = tags.tobytes(), _u64_array(notes), _u64_array(posted)
    del notes, posted, tags
    for tid, start, end, posted_start, posted_end, added_here in zip(term_ids, starts, starts[1:],
                                                                    posted_starts, posted_starts[1:], added):
        yield (first_tid + tid, notes_all[start:end], (offsets[2 * start:2 * end], levels[start:end],
                                                       tags_all[start:end]),
               added_here, posted_all[posted_start:posted_end])


def columns_of(raw: bytes, block_bits: int) -> Columns:
    """The columns of a term's noted entries (``raw``: the notes' bytes; distinct sessions, ascending) as
    ``summary_extend`` takes them, over all its blocks at once: the sessions' offsets in their blocks (u16 bytes),
    levels and tags, cut from the notes' bytes in C (a tag gains ``MULTI`` where its note counts several
    messages)."""
    offsets = bytearray(len(raw) // 4)
    offsets[0::2] = raw[4::8].translate(_and_table((1 << block_bits) - 1 & 0xFF))
    offsets[1::2] = raw[5::8].translate(_and_table((1 << block_bits) - 1 >> 8))
    return bytes(offsets), raw[1::8], _tags(raw)


def _tags(notes: bytes) -> bytes:
    """The tags of noted entries (``notes``' bytes), with ``MULTI`` set where a note counts several messages."""
    tags, several = notes[0::8], notes[2::8].translate(_SEVERAL)
    more = notes[3::8]
    if more.count(0) != len(more):
        several = _or_bytes(several, more.translate(_ANY))
    return _or_bytes(tags, several) if several.count(0) != len(several) else tags


def _or_bytes(one: bytes, other: bytes) -> bytes:
    """``one | other`` byte by byte (of one length), as big integers in C."""
    return (int.from_bytes(one, "little") | int.from_bytes(other, "little")).to_bytes(len(one), "little")


#: ``bytes.translate`` tables: ``MULTI`` for a count's low byte of 2 or more, and for any high byte but 0.
_SEVERAL = bytes(MULTI if value > 1 else 0 for value in range(256))
_ANY = bytes(MULTI if value else 0 for value in range(256))


@lru_cache(maxsize=4)
def _and_table(bits: int) -> bytes:
    """A ``bytes.translate`` table that keeps only ``bits`` of every byte."""
    return bytes(value & bits for value in range(256))


def _derived(values: U64, shift: int, sessions: U64, block_bits: int,
             posted_from: int) -> tuple[list[int], list[int], list[int], U64, list[int], U64]:
    """From ``group``'s sorted integers (``values``): each term's id, where its notes start, its message count,
    then the notes, where each term's posted messages
    start, and those messages: the arrays of a posting are dropped as soon as they are used (millions of them)."""
    ends = np.bitwise_xor(values[1:], values[:-1])
    ends >>= np.uint64(KEY_BITS)  # nonzero where the term or the session changes
    lasts = np.append(np.flatnonzero(ends), len(values) - 1)
    del ends
    sizes = np.diff(lasts, prepend=-1)
    counted = (values & np.uint64(1)).astype(np.uint8)
    counts = np.add.reduceat(counted, lasts - sizes + 1, dtype=np.uint32)
    best = values[lasts]  # a group's last has its greatest key
    del lasts
    pairs = best >> np.uint64(KEY_BITS)  # term, session rank
    ranks = np.uint64((1 << (shift - KEY_BITS)) - 1)
    notes = (sessions[pairs & ranks] << np.uint64(SID_SHIFT)
             | np.minimum(counts, MOST_COUNTED).astype(np.uint64) << np.uint64(COUNT_SHIFT)
             | (best >> np.uint64(1) & np.uint64(0xFFFF)) ^ np.uint64(LAST_TAG))
    del best
    terms = pairs >> np.uint64(shift - KEY_BITS)
    del pairs
    term_firsts = _firsts(terms)
    added = np.add.reduceat(counts, term_firsts).tolist()
    term_ids = terms[term_firsts]
    del terms
    # The messages of each session holding a term in several: a posting's count is its group's.
    chosen = np.repeat(counts >= posted_from, sizes)
    chosen &= counted.view(np.bool_)
    del counted, counts, sizes
    several = values[chosen]
    del chosen
    sids = sessions[several >> np.uint64(KEY_BITS) & ranks]
    positions = (several >> np.uint64(1) & np.uint64(LAST_TAG)) ^ np.uint64(LAST_TAG)
    posted = (sids >> np.uint64(block_bits) << np.uint64(POSTED_BLOCK) | positions << np.uint64(MAP_SHIFT)
              | sids & np.uint64((1 << block_bits) - 1))
    del sids, positions
    posted_starts = [*np.searchsorted(several >> np.uint64(shift), term_ids).tolist(), len(posted)]
    return (term_ids.tolist(), [*term_firsts.tolist(), len(notes)], added, notes, posted_starts, posted)


def _u64_array(values: U64) -> array[int]:
    found = array("Q")
    found.frombytes(values.tobytes())
    return found


#: ``indexed``'s term id between two messages' terms (ids start at 1).
BETWEEN = 0
#: Counts the items of an iterable into a dict, in C: what ``Counter.update`` calls, without the checks and calls
#: around it that cost as much as counting a message's terms.
_count_into: Callable[[dict[Any, int], Iterable[Any]], None] = collections._count_elements  # type: ignore[attr-defined]
_NO_POSTINGS: ChunkMessage = (b"", (), 0, (), b"")  # a message without terms (redacted, or no token character)
_LOW = 1 << 16  # the first term id a chunk stores in its high run (``formats.chunks``)


class Indexed(NamedTuple):
    """The postings of runs of appended messages (``indexed``), as the writer adds them to its batch."""

    #: Their flat arrays, message after message.
    postings: Postings
    #: Each message packed for its session's chunk (``chunk_append``'s form).
    messages: list[ChunkMessage]
    #: How many postings (``len(postings)``) the runs up to each one's end hold.
    ends: list[int]
    #: The postings at another level than their message's (the level its chunk stores), of the messages with a map
    #: key: their term ids, and their notes ``block << POSTED_BLOCK | level << 32 | map key``.
    repeated: tuple[list[int], list[int]]
    #: ``(block, level, map keys)``: the messages with a map key, by block and the level their chunk stores.
    levels: list[tuple[int, int, list[int]]]


#: Messages from which ``indexed`` works in numpy: below, a message at a time in plain Python costs less than
#: numpy's calls, whose fixed cost a query through a batch of a few new messages would pay. At least 1: numpy's path
#: takes one message or more.
INDEXED_NUMPY_FROM = 8


def indexed(ids: Sequence[int] | npt.NDArray[np.int64], sids: Sequence[int], firsts: Sequence[int],
            sizes: Sequence[int], block_bits: int) -> Indexed:
    """The postings of runs of messages appended to sessions, derived over all of them at once: run ``i`` is
    ``sizes[i]`` messages of session ``sids[i]``, the first of them its message ``firsts[i]``; ``ids`` are the
    ids of their terms in order, message after message (a term as often as the message holds it), with ``BETWEEN``
    between two messages' terms (an int64 array or an ``array("q")`` is read in place).

    A message's distinct terms, ascending, are its postings; a term it holds once has the level of one occurrence
    in a message of its length, and the others their own (``scoring.impact``). Its chunk stores the level of
    the terms it holds once, or, when at least half of its terms have another, the most common level
    (``message_level``), and places the postings at another level than that. Its code in ``Postings`` has the level
    of one occurrence, and the postings with another have codes of their own.
    """
    if sum(sizes) < INDEXED_NUMPY_FROM:
        return _indexed_few(np.asarray(ids, dtype=np.int64).tolist(), sids, firsts, sizes, block_bits)
    return _indexed_many(np.asarray(ids, dtype=np.int64), sids, firsts, sizes, block_bits)


def _indexed_few(ids: list[int], sids: Sequence[int], firsts: Sequence[int], sizes: Sequence[int],
                 block_bits: int) -> Indexed:
    """``indexed`` a message at a time: its terms counted in a dict."""
    found, packed, ends = Postings(), [], []
    noted: tuple[list[int], list[int]] = ([], [])
    levels: dict[tuple[int, int], list[int]] = {}
    messages = _split(ids)
    for sid, first, size in zip(sids, firsts, sizes):
        block, offset = sid >> block_bits, sid & (1 << block_bits) - 1
        for place in range(first, first + size):
            terms, position = next(messages), min(place, LAST_TAG)
            if not terms:
                packed.append(_NO_POSTINGS)
                continue
            counts: dict[int, int] = {}
            _count_into(counts, terms)
            tids = sorted(counts)
            once = impact(1, len(terms))
            own = [] if len(counts) == len(terms) else \
                sorted((tid, level) for tid, count in counts.items()
                       if count > 1 and (level := impact(count, len(terms))) != once)
            if 2 * len(own) >= len(tids):  # ``once`` may not be the message's most common level
                message = chunk_message_of(tids, bytes(map(dict(own).get, tids, repeat(once))))
            else:
                message = chunk_posted(tids, once, own)
            packed.append(message)
            code = sid << SID_SHIFT | position ^ LAST_TAG
            found.tids.extend(tids)
            found.codes.append(code | once << 8)
            found.sizes.append(len(tids))
            for tid, level in own:
                found.own_tids.append(tid)
                found.own_codes.append(code | level << 8)
            if position < LAST_TAG:
                key = position << MAP_SHIFT | offset
                levels.setdefault((block, message[2]), []).append(key)
                for at, level in zip(message[3], message[4]):
                    noted[0].append(tids[at])
                    noted[1].append(block << POSTED_BLOCK | level << 32 | key)
        ends.append(len(found.tids))
    return Indexed(found, packed, ends, noted,
                   [(block, level, keys) for (block, level), keys in sorted(levels.items())])


def _split(ids: list[int]) -> Iterator[list[int]]:
    """Each message's term ids, from ``indexed``'s ``ids``."""
    start = 0
    for _ in range(ids.count(BETWEEN)):
        end = ids.index(BETWEEN, start)
        yield ids[start:end]
        start = end + 1
    yield ids[start:]


def _indexed_many(ids: npt.NDArray[np.int64], sids: Sequence[int], firsts: Sequence[int], sizes: Sequence[int],
                  block_bits: int) -> Indexed:
    """``indexed`` in numpy: one integer a posting, one sort of them; of at least one message (``indexed`` takes the
    plain path below ``INDEXED_NUMPY_FROM``, which is at least 1)."""
    messages = sum(sizes)
    run_sizes = np.array(sizes, dtype=np.intp)
    sessions = np.repeat(np.array(sids, dtype=np.uint64), run_sizes)
    places = np.arange(messages) + np.repeat(np.array(firsts, dtype=np.intp) - (np.cumsum(run_sizes) - run_sizes),
                                             run_sizes)
    positions = np.minimum(places, LAST_TAG)
    between = ids == BETWEEN
    held = ~between
    of_message = np.cumsum(between)[held]
    lengths = np.bincount(of_message, minlength=messages)
    # One integer a posting, ``message << 32 | term id``: one sort puts each message's terms in order, each term's
    # occurrences together.
    ordered = of_message.astype(np.uint64) << np.uint64(32) | ids[held].astype(np.uint64)
    ordered.sort()
    starts = _firsts(ordered)
    distinct = ordered[starts]
    message = (distinct >> np.uint64(32)).astype(np.intp)
    tids = (distinct & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    held_terms = np.bincount(message, minlength=messages)
    once = np.array(list(map(impact, repeat(1), lengths.tolist())), dtype=np.uint8)
    levels = once[message]
    counts = np.diff(starts, append=len(ordered))
    repeated = np.flatnonzero(counts > 1)
    if len(repeated):
        levels[repeated] = list(map(impact, counts[repeated].tolist(), lengths[message[repeated]].tolist()))
    own = np.flatnonzero(levels != once[message])
    ends = np.cumsum(held_terms)
    firsts_of = ends - held_terms
    common, placed = once, own
    if len(own):
        several = np.bincount(message[own], minlength=messages)
        chosen = np.flatnonzero((2 * several >= held_terms) & (held_terms > 0)).tolist()
        if chosen:  # a level of its own for half of its terms or more: the chunk stores the most common level
            common = once.copy()
            all_levels, bounds, ends_at = levels.tobytes(), firsts_of.tolist(), ends.tolist()
            for at in chosen:
                common[at] = message_level(all_levels[bounds[at]:ends_at[at]])
            placed = np.flatnonzero(levels != common[message])
    found = Postings()
    with_terms = held_terms > 0
    index = (positions ^ LAST_TAG).astype(np.uint64)
    session_bits = sessions << np.uint64(SID_SHIFT)
    found.tids.frombytes(tids.tobytes())
    found.codes.frombytes((session_bits | once.astype(np.uint64) << np.uint64(8) | index)[with_terms].tobytes())
    found.sizes.frombytes(held_terms[with_terms].astype(np.uint32).tobytes())
    if len(own):
        of_own = message[own]
        found.own_tids.frombytes(tids[own].tobytes())
        found.own_codes.frombytes((session_bits[of_own] | levels[own].astype(np.uint64) << np.uint64(8)
                                   | index[of_own]).tobytes())
    packed = _packed(tids, firsts_of.tolist(), ends.tolist(), common.tolist(), message, placed, levels)
    if not with_terms.all():
        for at in np.flatnonzero(~with_terms).tolist():
            packed[at] = _NO_POSTINGS
    keys = positions.astype(np.uint64) << np.uint64(MAP_SHIFT) | sessions & np.uint64((1 << block_bits) - 1)
    keyed = positions < LAST_TAG  # a message past the last tag has no map key
    blocks = sessions >> np.uint64(block_bits)
    of_placed = message[placed]
    noted = keyed[of_placed]
    of_noted = of_placed[noted]
    notes = (blocks[of_noted] << np.uint64(POSTED_BLOCK) | levels[placed][noted].astype(np.uint64) << np.uint64(32)
             | keys[of_noted])
    run_ends = np.cumsum(run_sizes)
    return Indexed(found, packed, [0 if end == 0 else int(ends[end - 1]) for end in run_ends.tolist()],
                   (tids[placed][noted].tolist(), notes.tolist()),
                   _by_level(blocks, common, keys, np.flatnonzero(keyed & with_terms)))


def _packed(tids: npt.NDArray[np.uint32], starts: list[int], ends: list[int], common: list[int],
            message: npt.NDArray[np.intp], placed: npt.NDArray[np.intp],
            levels: npt.NDArray[np.uint8]) -> list[ChunkMessage]:
    """Each message packed for its chunk (``chunk_posted``'s form): its term ids below 65,536 as u16 bytes, the
    others, its chunk's level, and the places (among its terms) and levels of its postings at another level
    (``placed``)."""
    count = len(starts)
    high = tids >= _LOW
    if not high.any():  # most batches
        low = tids.astype("<u2").tobytes()
        lows = [low[2 * start:2 * end] for start, end in zip(starts, ends)]
        highs: list[tuple[int, ...]] = [()] * count
    else:  # a message's ids are ascending: its low ones, then its high ones
        low_ends = np.cumsum(np.bincount(message[~high], minlength=count)).tolist()
        high_ends = np.cumsum(np.bincount(message[high], minlength=count)).tolist()
        low, high_ids = tids[~high].astype("<u2").tobytes(), tids[high].tolist()
        lows = [low[2 * start:2 * end] for start, end in zip([0, *low_ends], low_ends)]
        highs = [tuple(high_ids[start:end]) for start, end in zip([0, *high_ends], high_ends)]
    places: list[tuple[int, ...]] = [()] * count
    own: list[bytes] = [b""] * count
    if len(placed):
        of_placed = message[placed]
        at = (placed - np.array(starts, dtype=np.intp)[of_placed]).tolist()
        own_levels = levels[placed].tobytes()
        firsts = _firsts(of_placed)
        bounds = [*firsts.tolist(), len(placed)]
        for number, start, end in zip(of_placed[firsts].tolist(), bounds, bounds[1:]):
            places[number] = tuple(at[start:end])
            own[number] = own_levels[start:end]
    return list(zip(lows, highs, common, places, own))


def _by_level(blocks: U64, common: npt.NDArray[np.uint8], keys: U64,
              chosen: npt.NDArray[np.intp]) -> list[tuple[int, int, list[int]]]:
    """``(block, level, map keys)`` of the ``chosen`` messages, by block and level."""
    if not len(chosen):
        return []
    grouped = blocks[chosen] << np.uint64(8) | common[chosen].astype(np.uint64)
    order = np.argsort(grouped, kind="stable")
    grouped, ordered = grouped[order], keys[chosen][order].tolist()
    firsts = _firsts(grouped)
    bounds = [*firsts.tolist(), len(ordered)]
    return [(group >> 8, group & 0xFF, ordered[start:end])
            for group, start, end in zip(grouped[firsts].tolist(), bounds, bounds[1:])]


def _firsts(values: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.intp]:
    """Where each run of equal ``values`` starts."""
    if not len(values):
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
