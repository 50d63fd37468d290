"""A term's repeated messages grouped by level (``IndexReader.repeated_at``), which bounds the message path's parts
of messages where a term repeats: the groups equal those read from the stored repeats of every block, through a
plain reader, the queries' kept decodes, a store's pending events and a catch-up between queries, and the message
path ranks as a plain BM25 with them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import ChatMessage, SessionStore
from projections.search import queries as search_queries
from projections.search import reader, writer
from projections.search.formats import maps, summaries
from projections.search.formats.maps import JOINED_SHIFT
from projections.search.reader import IndexReader

from conftest import FakeClock
from test_search import ReferenceSearch, search
from test_search_by_messages import ARRAYS, message_path, scored_by

#: Messages of many lengths where "the" and "of" repeat from one to four times: their levels there vary with both.
texts = st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(0, 12)).map(
    lambda shape: " ".join(["the"] * shape[0] + ["of"] * shape[1] + [f"w{n}" for n in range(shape[2])]))
keywords = st.sampled_from(["the of", "the of w1", "of w2", "the w0 w3"])


def expected_groups(view: IndexReader, tid: int) -> dict[int, BitMap]:
    """Level → the joined keys where ``tid`` repeats at it, read from each block's stored repeats (the model)."""
    groups: dict[int, BitMap] = {}
    for number in view.blocks_of(tid):
        stored = view.term_repeats(tid, number)
        if stored is not None:
            for key, level in zip(stored[0], stored[1]):
                groups.setdefault(level, BitMap()).add(number << JOINED_SHIFT | key)
    return groups


def check_groups(view: IndexReader, tid: int) -> int:
    """That the view's levels and groups of ``tid`` are the model's; how many levels it left ungrouped."""
    groups = expected_groups(view, tid)
    levels = view.repeated_levels(tid)
    assert list(levels) == sorted(set(levels))
    assert set(groups) <= set(levels)  # a level no message has any more may stay listed (a bound, not a score)
    ungrouped = 0
    for level in levels:
        found = view.repeated_at(tid, level)
        if found is None:
            ungrouped += 1
            assert len(groups.get(level, ())) > reader.REPEATED_GROUP_UP_TO or type(view).__name__ == "_Overlaid"
        else:
            assert found == groups.get(level, BitMap()), (tid, level)
    return ungrouped


@contextmanager
def checked_groups() -> Iterator[list[int]]:
    """Every term the message path bounds by its groups is checked against the model first. Yields the number of
    levels left ungrouped, one entry a term checked."""
    checked: list[int] = []
    repeated = search_queries._Repeated

    class Checked(repeated):  # type: ignore[misc, valid-type]
        def __init__(self, view: IndexReader, tid: int, keys: BitMap, every: BitMap) -> None:
            checked.append(check_groups(view, tid))
            super().__init__(view, tid, keys, every)

    search_queries._Repeated = Checked  # type: ignore[misc]
    try:
        yield checked
    finally:
        search_queries._Repeated = repeated  # type: ignore[misc]


def test_grouping_of_one_block_value() -> None:
    keys = BitMap([3, 4100, 4101, 8195, 12300, 20480])
    levels = bytes([90, 120, 90, 90, 200, 120])
    assert maps.repeated_levels(levels) == bytes([90, 120, 200])
    assert maps.repeated_at(keys, levels, 90, 3) == BitMap([3, 4101, 8195])  # many: one pass in C
    assert maps.repeated_at(keys, levels, 200, 1) == BitMap([12300])  # few: found alone
    assert maps.repeated_at(keys, levels, 121, 0) == BitMap()


@settings(max_examples=40)
@given(st.lists(st.integers(0, (summaries.LAST_TAG << maps.MAP_SHIFT) - 1), unique=True, max_size=80),
       st.data())
def test_grouping_is_a_partition_by_level(keys: list[int], data: st.DataObject) -> None:
    ordered = sorted(keys)
    levels = bytes(data.draw(st.lists(st.sampled_from([1, 2, 77, 255]), min_size=len(ordered),
                                      max_size=len(ordered))))
    stored = BitMap(ordered)
    assert maps.repeated_levels(levels) == bytes(sorted(set(levels)))
    for level in range(256):
        assert maps.repeated_at(stored, levels, level, levels.count(level)) == BitMap(
            key for key, at in zip(ordered, levels) if at == level)


class TestThroughQueries:
    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 13), texts, st.sampled_from(["append"] * 6 + ["remove", "catch_up",
                                                                                         "query"])),
                    min_size=8, max_size=60),
           keywords, st.integers(1, 5), st.sampled_from([2, 3]), st.sampled_from([1, 3, 1 << 20]),
           st.sampled_from(ARRAYS))
    # One level: every message the same length, "the" twice in each.
    @example([(n % 9, "the the of w0", "append") for n in range(18)] + [(0, "", "query")], "the of", 3, 2, 1 << 20,
             ARRAYS[0])
    def test_groups_and_ranking(self, script: list[tuple[int, str, str]], keyword: str, limit: int,
                                block_bits: int, group_up_to: int, arrays: tuple[int, int, int]) -> None:
        """Terms repeating at many levels (or one), in blocks of 4 or 8 sessions (their keys cross block
        boundaries), queried between appends the index has not folded yet (read through their batch) and between
        catch-ups (the kept decodes brought up to date): each query's groups are the stored repeats' and its
        ranking is a plain BM25's, its repeated messages scored over whole arrays or one by one; some levels are
        left ungrouped when they hold more than a few messages."""
        with message_path(1, block_bits), checked_groups(), tempfile.TemporaryDirectory() as directory, \
                pytest.MonkeyPatch.context() as patch:
            patch.setattr(reader, "REPEATED_GROUP_UP_TO", group_up_to)
            scored_by(patch, arrays)
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for number, text, step in script:
                    clock.advance(seconds=1)
                    key = f"s{number}"
                    if step == "remove" and store.load(key):
                        store.remove_last(key)
                    elif step == "catch_up":
                        store.catch_up()
                    elif step == "query":
                        assert ReferenceSearch(store).search(keyword, limit) == search(store, keyword, limit)
                    else:
                        store.append(key, ChatMessage.user(text))
                assert ReferenceSearch(store).search(keyword, limit) == search(store, keyword, limit)
                store.catch_up()
                assert ReferenceSearch(store).search(keyword, limit) == search(store, keyword, limit)


def test_groups_after_a_catch_up_are_the_new_states(scratch_store: SessionStore) -> None:
    """A catch-up that moves a term's repeated message to another level in one block: the next state's groups are
    read again there (the kept decode of the earlier state is not served), the other blocks' kept."""
    store = scratch_store
    with message_path(1, 2), checked_groups() as checked:
        for number in range(12):
            store.append_many(f"s{number}", [ChatMessage.user("the the of " + "w " * number),
                                             ChatMessage.user("of the")])
        store.catch_up()
        before = search(store, "the of", 3)
        store.update_last("s5", ChatMessage.user("the the the of"))  # a short message: the best level of "the"
        store.catch_up()
        after = search(store, "the of", 3)
        assert after[0] == "s5" != before[0]
        assert after == ReferenceSearch(store).search("the of", 3)
    assert checked


@pytest.mark.parametrize("group_up_to", [0, 2, 1 << 20])
def test_top_is_the_best_level_among_the_keys(scratch_store: SessionStore, monkeypatch: pytest.MonkeyPatch,
                                              group_up_to: int) -> None:
    """``_Repeated.top`` bounds a part: never below the best level its term repeats at among the part's messages,
    exactly that where every level above is grouped, and a level left ungrouped may hold them."""
    store = scratch_store
    with message_path(1, 2):
        for number in range(10):
            store.append_many(f"s{number}", [ChatMessage.user("the the " + "w " * (number % 4)),
                                             ChatMessage.user("the " * (2 + number % 3) + "of w w w w")])
        store.catch_up()
        monkeypatch.setattr(reader, "REPEATED_GROUP_UP_TO", group_up_to)
        index = store._search_index
        with store._environment.read() as txn:
            view = index.reader(txn, read_only=True)
            tid = view.tid("the")
            assert tid is not None
            groups = expected_groups(view, tid)
            assert len(groups) > 2  # repeats at several levels
            for best in sorted(groups):
                keys = BitMap.union(*(found for level, found in groups.items() if level <= best))
                top = search_queries._Repeated(view, tid, keys, keys).top
                if group_up_to == 0:
                    assert top == max(groups)  # the best level is not grouped: it may hold some
                elif all(len(found) <= group_up_to for level, found in groups.items() if level > best):
                    assert top == best
                else:
                    assert top >= best


class _StoredRepeats:
    """What ``_Repeated`` reads of a view: one term's stored repeats by block (none of its levels grouped)."""

    def __init__(self, blocks: dict[int, dict[int, int]]) -> None:
        self.stored = {number: (BitMap(levels), bytes(levels[key] for key in sorted(levels)))
                       for number, levels in blocks.items()}

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        return self.stored.get(block)

    def repeated_levels(self, tid: int) -> bytes:
        return b""


#: A term's repeated messages by block: message key → its level there.
repeats_by_block = st.dictionaries(st.integers(0, 40), st.dictionaries(st.integers(0, 400), st.integers(1, 255),
                                                                       min_size=1, max_size=50),
                                   min_size=1, max_size=8)


@settings(max_examples=200)
@given(repeats_by_block, st.lists(st.lists(st.integers(0, 1 << 16), max_size=60), min_size=1, max_size=10),
       st.sampled_from([0, 1, 4, 64, 1 << 40]), st.sampled_from([1, 1 << 20]))
def test_levels_looked_up_block_by_block_then_copied_are_the_stored_ones(
        blocks: dict[int, dict[int, int]], picks: list[list[int]], copies_per_block: int, ranks_per_array: int
) -> None:
    """``_Repeated.levels_of`` over a query's calls: block by block (each level by its rank, or a block's repeats as
    an array), then, once the blocks' steps would pay for it, from every repeated message copied to arrays (never
    with 0, at the first call with a huge ratio, after a few calls between): each call's levels are the stored ones,
    whatever calls came before."""
    model = {number << JOINED_SHIFT | key: level for number, levels in blocks.items() for key, level in levels.items()}
    ordered = sorted(model)
    every = BitMap(model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_queries, "_COPIES_PER_BLOCK", copies_per_block)
        patch.setattr(search_queries, "_RANKS_PER_ARRAY", ranks_per_array)
        repeated = search_queries._Repeated(_StoredRepeats(blocks), 0, every, every)  # type: ignore[arg-type]
        for pick in picks:
            keys = BitMap(ordered[at % len(ordered)] for at in pick)
            if keys:
                assert repeated.levels_of(keys).tolist() == [model[key] for key in keys]


def test_a_query_through_pending_events_reads_a_changed_blocks_repeats_once(scratch_store: SessionStore,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A query of an index a few events behind reads the repeats of the blocks those events changed through their
    batch, which builds them afresh on each read: once a term and block for the whole query, not once for each
    message the message path scores there (nor each level its bound tries)."""
    store = scratch_store
    reads: list[tuple[int, int]] = []
    batch_repeats = writer.IndexWriter.term_repeats

    def counted(self: writer.IndexWriter, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        reads.append((tid, block))
        return batch_repeats(self, tid, block)

    with message_path(1, 2):
        for number in range(12):
            store.append_many(f"s{number}", [ChatMessage.user("the the of " + "w " * (number % 5)),
                                             ChatMessage.user("of the of " + "w " * (number % 3))])
        store.catch_up()
        store.append("s1", ChatMessage.user("the the the of w"))  # pending: the query reads it through its batch
        monkeypatch.setattr(writer.IndexWriter, "term_repeats", counted)
        found = search(store, "the of", 8)
        assert found == ReferenceSearch(store).search("the of", 8)
    assert reads  # the changed block's repeats were read through the batch
    assert len(reads) == len(set(reads)), sorted(reads)
