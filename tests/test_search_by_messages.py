"""Queries of a few words in most sessions, answered message by message from the maps, the blocks' messages by level
and the terms' repeated messages: the same sessions in the same order as a plain BM25, as sessions come and go."""

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
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats import maps, summaries
from projections.search.formats.keys import block_key
from projections.search.index import SearchIndex

from conftest import FakeClock, lmdb_storage
from test_search import ReferenceSearch, append_sessions, as_search_code, run_script_step, search

WORDS = ["the", "of", "and", "w1", "w2"]
#: Words drawn so that "the" and "of" are in most messages, often several times (their level there differs).
texts = st.lists(st.sampled_from(["the"] * 4 + ["of"] * 3 + ["and"] * 2 + ["w1", "w2"]), min_size=1,
                 max_size=7).map(" ".join)
keywords = st.lists(st.sampled_from(WORDS), min_size=2, max_size=4, unique=True).map(" ".join)


#: How the message path scores the messages where a term repeats (``SCORED_IN_ARRAYS_FROM``, ``_RANKS_PER_ARRAY``,
#: ``_COPIES_PER_BLOCK``): over whole arrays, each block's repeats an array; over arrays, each level found by its rank;
#: over arrays, every repeat of the term copied at its first lookup; over arrays, levels found by rank until the
#: query's lookups visited as many blocks as the term has repeats, then copied (mid-query); as stored queries do
#: (these tests' terms repeat in fewer messages than ``_COPIES_PER_BLOCK``: copied at the first lookup).
ARRAYS = [(1, 1, 0), (1, 1 << 20, 0), (1, 1 << 20, 1 << 40), (1, 1 << 20, 1),
          (search_queries.SCORED_IN_ARRAYS_FROM, search_queries._RANKS_PER_ARRAY, search_queries._COPIES_PER_BLOCK)]


def scored_by(patch: pytest.MonkeyPatch, arrays: tuple[int, int, int]) -> None:
    """Score the messages where a term repeats as ``arrays`` (one of ``ARRAYS``) says."""
    for name, value in zip(("SCORED_IN_ARRAYS_FROM", "_RANKS_PER_ARRAY", "_COPIES_PER_BLOCK"), arrays, strict=True):
        patch.setattr(search_queries, name, value)


@contextmanager
def message_path(map_from: int, block_bits: int) -> Iterator[list[int]]:
    """Every query of several words off the shared-sessions path; maps from ``map_from`` sessions a block, blocks
    of ``1 << block_bits`` sessions. Yields a list that counts the queries ``_by_messages`` answered."""
    saved = (search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO,
             formats.MAP_FROM, formats.BLOCK_BITS, search_queries._by_messages)
    answered: list[int] = []
    by_messages = search_queries._by_messages

    def counted(*args: object) -> tuple[dict[int, float], float | None]:
        answered.append(1)
        return by_messages(*args)  # type: ignore[arg-type]

    search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO = 0, 0, -1
    formats.MAP_FROM, formats.BLOCK_BITS = map_from, block_bits
    search_queries._by_messages = counted  # type: ignore[assignment]
    try:
        yield answered
    finally:
        (search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO,
         formats.MAP_FROM, formats.BLOCK_BITS, search_queries._by_messages) = saved


class TestAgainstReference:
    @settings(max_examples=60)
    @given(st.lists(st.tuples(st.integers(0, 11), texts,
                              st.sampled_from(["append"] * 8 + ["remove_last", "update_last", "clear", "redact",
                                                                "delete"])),
                    min_size=10, max_size=90),
           st.lists(keywords, min_size=1, max_size=4), st.integers(1, 6), st.sampled_from([1, 2, 4]),
           st.sampled_from([2, 3]))
    @example([(n % 6, "the of the", "append") for n in range(30)] + [(n % 6, "of the w1", "append") for n in range(12)],
             ["the of", "the of w1"], 3, 2, 2)
    def test_same_ranking_over_edits(self, script: list[tuple[int, str, str]], queries: list[str], limit: int,
                                     map_from: int, block_bits: int) -> None:
        """Blocks gain and lose their maps as sessions are appended to, edited, cleared, redacted and deleted
        (a term crossing ``MAP_FROM``), terms repeat in messages and not; the ranking is a plain BM25's, the index
        verifies, and a rebuild gives the same stored forms."""
        with message_path(map_from, block_bits) as answered, tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for number, text, command in script:
                    key = f"s{number}"
                    clock.advance(seconds=1)
                    run_script_step(store, key, [text], command)
                    if number % 7 == 0:
                        store.catch_up()  # the index follows in several batches
                store.catch_up()
                assert store.verify().ok
                reference = ReferenceSearch(store)
                asked = 0
                for keyword in queries:
                    asked += sum(1 for word in keyword.split() if reference.scores(word)) > 1
                    assert reference.search(keyword, limit) == search(store, keyword, limit), keyword
                if map_from == 1:  # every block of a term has its map: every query of two words present is answered
                    assert len(answered) == asked
                with store._environment.read() as txn:
                    caught_up = store._search_index.dump(txn)
                store.rebuild_projections(["search"])
                with store._environment.read() as txn:
                    assert caught_up == store._search_index.dump(txn)

    @settings(max_examples=30)
    @given(st.lists(st.lists(texts, min_size=1, max_size=4), min_size=20, max_size=60),
           st.lists(keywords, min_size=1, max_size=4), st.integers(1, 8), st.sampled_from([2, 3]),
           st.sampled_from(ARRAYS))
    def test_many_sessions_with_ties(self, sessions: list[list[str]], queries: list[str], limit: int,
                                     block_bits: int, arrays: tuple[int, int, int]) -> None:
        """Many sessions of the same few words (scores tie at the cut), in many blocks: a plain BM25's ranking, and
        every query of several words present answered message by message (the messages where a term repeats
        scored over whole arrays, or only many of them)."""
        with message_path(1, block_bits) as answered, tempfile.TemporaryDirectory() as directory, \
                pytest.MonkeyPatch.context() as patch:
            scored_by(patch, arrays)
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                append_sessions(store, clock, sessions)
                reference = ReferenceSearch(store)
                asked = 0
                for keyword in queries:
                    asked += sum(1 for word in keyword.split() if reference.scores(word)) > 1
                    assert reference.search(keyword, limit) == search(store, keyword, limit), keyword
                assert len(answered) == asked


def test_sessions_past_the_maps_range_are_scored_from_postings() -> None:
    """Messages from index ``LAST_TAG`` on share one key in the maps (and have none in the levels and repeats): a
    session whose best message lies there still ranks as a plain BM25 says."""
    with message_path(1, 2) as answered, tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            long = [ChatMessage.user("the " * 30 + "of " * 30 + "w1 " * 20)] * (summaries.LAST_TAG + 5)
            store.append_many("long", [*long, ChatMessage.user("the of")])
            store.append_many("short", [ChatMessage.user("the " * 10 + "of " * 5 + "and")])
            for number in range(6):
                clock.advance(seconds=1)
                store.append_many(f"s{number}", [ChatMessage.user("the w2 " * 4 + "of " * (number + 1))])
            reference = ReferenceSearch(store)
            for limit in (1, 2, 3, 8):
                assert reference.search("the of", limit) == search(store, "the of", limit)
            assert reference.search("the of", 1) == ["long"]
            assert store.verify().ok
    assert answered


class TestStoredForms:
    def test_verify_checks_the_levels_and_repeats(self, store: SessionStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """verify compares the blocks' messages by level and each term's repeated messages with the log: a level
        set that lost a message, a repeat with another level, and one kept for a block no term lists are each
        reported; a rebuild puts them right."""
        monkeypatch.setattr(formats, "MAP_FROM", 1)
        store.append_many("k", [ChatMessage.user("the the of w1"), ChatMessage.user("of w1 w2")])
        store.append_many("j", [ChatMessage.user("the of of of")])
        store.catch_up()
        assert store.verify().ok
        environment = lmdb_storage(store)
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            the, of = reader.tid("the"), reader.tid("of")
            assert the is not None and of is not None
            repeated = reader.term_repeats(the, 0)
            assert repeated is not None and 0 << maps.MAP_SHIFT | 1 in repeated[0]  # k's first message
            levels = reader.block_levels(0)
            assert levels and sum(len(reader.level_messages(0, level) or ()) for level in levels) == 3

        def put(space: bytes, key: bytes, value: bytes) -> None:
            with environment._env.begin(write=True) as txn:
                txn.put(key, value, db=environment._env.open_db(space, txn=txn))

        put(b"search.levels", maps.level_key(0, levels[0]), maps.map_value(BitMap()))
        assert any("by level" in problem for problem in store.verify().problems)
        store.rebuild_projections(["search"])
        assert store.verify().ok
        put(b"search.repeats", block_key(0, the), maps.repeats_value(BitMap([1 << maps.MAP_SHIFT | 1]), bytes([200])))
        assert any("repeated messages" in problem for problem in store.verify().problems)
        store.rebuild_projections(["search"])
        put(b"search.repeats", block_key(7, of), maps.repeats_value(BitMap([1]), bytes([200])))
        assert any("no term lists" in problem for problem in store.verify().problems)

    def test_an_index_of_code_version_5_is_rebuilt_on_open(self, store_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """A store whose index has version 5's stored form (no levels, no repeats, maps only up to a cap) rebuilds
        it when opened: the new forms are there, it verifies, and queries take the message path."""
        monkeypatch.setattr(formats, "MAP_FROM", 1)
        with SessionStore(store_path) as store:
            store.append_many("k", [ChatMessage.user("the the of w1"), ChatMessage.user("of")])
            store.append("j", ChatMessage.user("the of"))
            store.catch_up()
            spaces = store._search_index._spaces
            as_search_code(store, 5, spaces.levels, spaces.repeats)
            assert not store.verify().ok  # the version-6 check finds the forms missing
        with SessionStore(store_path) as store:
            assert store.stats().checkpoints["search"].code_version == SearchIndex.code_version
            with store._environment.read() as txn:
                reader = store._search_index.reader(txn)
                the = reader.tid("the")
                assert the is not None and reader.term_repeats(the, 0) is not None
                assert reader.block_levels(0)
            assert store.verify().ok
            with message_path(1, formats.BLOCK_BITS) as answered:
                assert ReferenceSearch(store).search("the of", 10) == search(store, "the of")
            assert answered
