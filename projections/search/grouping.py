"""A batch's postings grouped by term and session, in C calls over whole arrays (numpy): the entries the index's
writer settles, derived for every term at once rather than noted a term at a time.

The writer keeps a batch's appended messages as flat typed arrays (``Postings``): each message's term ids, and one
code a message. ``group`` sorts the postings by term and session once and derives, for each (term, session), its
entry (the best level, the first message at it) and how many messages hold the term, and for each term its
entries, its message count and the messages to note for its message maps: a few dozen numpy calls a batch
whatever its size, where noting each entry from Python cost a lookup and an append a term. A few postings (a
removal groups those appended since the batch last grouped) are grouped in plain Python, below numpy's fixed cost.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import groupby, islice
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from .formats.arrays import packed_u64s
from .formats.maps import MAP_SHIFT
from .formats.summaries import LAST_TAG

__all__ = ["Postings", "group"]

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


#: A term's id, its entries (``array("Q")``) and their little-endian bytes, its message count, its posted messages.
Term = tuple[int, "array[int]", bytes, int, "array[int]"]
#: The bits of the one integer a posting is sorted as: its term id, then its session's rank among the batch's
#: sessions, its code's key (16 bits) and whether it counts a message (1 bit). Terms whose ids do not fit beside the
#: sessions' ranks are grouped a range of ids at a time (tests lower it to make that happen).
SORTED_BITS = 64
KEY_BITS = 17


#: Postings from which ``group`` sorts in numpy: below, a few plain Python steps a posting cost less than numpy's
#: calls, whose fixed cost a removal that groups the postings appended since the last grouping would pay.
NUMPY_FROM = 64


def group(postings: Postings, block_bits: int, posted_from: int) -> Iterator[Term]:
    """``(term id, its entries, their bytes, its message count, its posted messages)`` for each term of
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
        yield tid, notes, packed_u64s(notes), added, posted


def _many(postings: Postings, block_bits: int, posted_from: int) -> Iterator[Term]:
    """``group`` in numpy: each posting is one integer, one sort of them."""
    codes = np.frombuffer(postings.codes, dtype=np.uint64)
    own_codes = np.frombuffer(postings.own_codes, dtype=np.uint64)
    sessions = _distinct(codes >> np.uint64(32))
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
        yield from _terms(*derived, 0)
        return
    mask = np.uint64((1 << page_bits) - 1)
    for page in _distinct(pages).tolist():
        chosen = pages == np.uint64(page)
        packed = (tids[chosen] & mask) << np.uint64(shift) | rows[chosen]
        packed.sort()
        yield from _terms(*_derived(packed, shift, sessions, block_bits, posted_from), page << page_bits)


def _distinct(values: U64) -> U64:
    """The distinct ``values``, ascending: ``numpy.unique``'s result without its import of ``numpy.ma`` (which the
    first grouping of a process would pay for)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _low_bits(codes: U64, sessions: U64, counted: int) -> U64:
    """The low bits of the integers ``group`` sorts for postings of ``codes``: the session's rank among
    ``sessions``, the code's key, and whether it counts a message."""
    ranks = np.searchsorted(sessions, codes >> np.uint64(32)).astype(np.uint64)
    return ranks << np.uint64(KEY_BITS) | (codes & np.uint64(0xFFFF)) << np.uint64(1) | np.uint64(counted)


def _terms(term_ids: list[int], starts: list[int], added: list[int], notes: U64, posted_starts: list[int],
           posted: U64, first_tid: int) -> Iterator[Term]:
    """``group``'s terms from what ``_derived`` found, of terms from ``first_tid`` on."""
    # Sliced a term at a time as arrays and bytes (cheaper than numpy's slices of a few items).
    notes_raw, notes_all, posted_all = notes.astype("<u8").tobytes(), _u64_array(notes), _u64_array(posted)
    del notes, posted
    for tid, start, end, posted_start, posted_end, added_here in zip(term_ids, starts, starts[1:],
                                                                    posted_starts, posted_starts[1:], added):
        yield (first_tid + tid, notes_all[start:end], notes_raw[8 * start:8 * end], added_here,
               posted_all[posted_start:posted_end])


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
    term_firsts = np.flatnonzero(np.concatenate(([True], terms[1:] != terms[:-1])))
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
