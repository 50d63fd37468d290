"""``grouping.group`` at the edges of the integer it sorts a posting as (term id, session rank, key, counted bit),
at the index's real widths: term ids up to 2**32 - 1 beside more sessions than leave those ids room (grouped a range
at a time without lowering ``SORTED_BITS``), session ids up to ``MAX_ID``, the best level and the last tag, batches
of one posting, session counts at a power of two and either side of it; what it yields are plain ints, and the
entries' bytes are little-endian whatever numpy's order; each batch sorted in numpy and in plain Python."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from projections.search import formats, grouping
from projections.search.formats import MAX_ID
from projections.search.formats.summaries import LAST_TAG
from projections.search.grouping import columns_of, group

from test_search_bulk_writer import Message, grouped_in, modelled, postings_of

MOST_TID = (1 << 32) - 1


def grouped(batch: list[Message], posted_from: int = 2) -> list[tuple[int, list[int], int, list[int]]]:
    """What ``group`` yields for ``batch``, in the model's form, after checking each value's type and bytes: the
    same sorted in numpy as in plain Python (as a few postings are)."""
    found: dict[bool, list[tuple[int, list[int], int, list[int]]]] = {True: [], False: []}
    for numpy, into in found.items():
        with grouped_in(numpy):
            for tid, notes, columns, added, posted in group(postings_of(batch), formats.BLOCK_BITS, posted_from):
                assert type(tid) is int and type(added) is int  # no numpy scalar reaches the stored ints
                assert columns == columns_of(b"".join(note.to_bytes(8, "little") for note in notes),
                                             formats.BLOCK_BITS)
                into.append((tid, notes.tolist(), added, sorted(posted.tolist())))
    assert found[True] == found[False]
    return found[True]


def test_term_ids_near_2_32_beside_many_sessions() -> None:
    """33,000 sessions take 16 bits for their ranks, so ids from 2**31 on are grouped a range at a time: every
    term's entries, counts and posted messages are still the model's."""
    chosen = random.Random(5)
    tids = [1, 2, 65_535, 65_536, (1 << 31) - 1, 1 << 31, MOST_TID - 1, MOST_TID]
    batch: list[Message] = [
        (sid, chosen.randint(1, 255), chosen.randint(0, LAST_TAG), sorted(chosen.sample(tids, 3)),
         [(0, chosen.randint(1, 255))])
        for sid in range(33_000) for _ in range(1 + (sid % 3 == 0))]
    assert len({sid for sid, *_ in batch}).bit_length() + grouping.KEY_BITS + 32 > grouping.SORTED_BITS
    assert grouped(batch) == modelled(batch, formats.BLOCK_BITS, 2)


def test_the_greatest_ids_levels_and_tags() -> None:
    """Session ids up to ``MAX_ID`` and 0, term id 2**32 - 1, level 255 and the last tag: nothing wraps."""
    batch: list[Message] = [(MAX_ID, 255, LAST_TAG, [MOST_TID], [(0, 255)]), (MAX_ID, 1, 0, [1, MOST_TID], []),
                            (0, 255, LAST_TAG, [MOST_TID], []), (MAX_ID - 1, 255, 0, [MOST_TID], [(0, 254)])]
    assert grouped(batch) == modelled(batch, formats.BLOCK_BITS, 2)
    assert grouped(batch, posted_from=1) == modelled(batch, formats.BLOCK_BITS, 1)


def test_a_batch_of_one_posting() -> None:
    batches: list[list[Message]] = [[(7, 3, 0, [5], [])], [(MAX_ID, 255, LAST_TAG, [MOST_TID], [(0, 1)])]]
    for batch in batches:
        assert grouped(batch, posted_from=1) == modelled(batch, formats.BLOCK_BITS, 1)


@given(st.integers(0, 8), st.integers(-1, 1), st.integers(1, 3), st.sampled_from([1, 2, 3]),
       st.randoms(use_true_random=False))
def test_session_counts_at_the_edges_of_their_bits(power: int, side: int, room: int, posted_from: int,
                                                   chosen: random.Random) -> None:
    """2**k - 1, 2**k and 2**k + 1 sessions, with only ``room`` bits left for term ids (``SORTED_BITS`` lowered):
    the ranks' width and the ranges of ids meet exactly at their edges."""
    sessions = max(1, (1 << power) + side)
    sids = chosen.sample([*range(256), *range(MAX_ID - 255, MAX_ID + 1)], sessions)
    batch: list[Message] = [(sid, chosen.randint(1, 255), chosen.randint(0, LAST_TAG),
                             sorted(chosen.sample(range(1, 40), 3)), [(chosen.randint(0, 2), chosen.randint(1, 255))])
                            for sid in sids for _ in range(chosen.randint(1, 2))]
    saved = grouping.SORTED_BITS
    grouping.SORTED_BITS = grouping.KEY_BITS + sessions.bit_length() + room
    try:
        found = grouped(batch, posted_from)
    finally:
        grouping.SORTED_BITS = saved
    assert found == modelled(batch, formats.BLOCK_BITS, posted_from)
