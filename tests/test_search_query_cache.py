"""The search index's cache of decoded summaries and message maps (``index.CachedReader``).

Queries of one committed state share what they decode; every commit names another state, so a search after a
removal, a redaction, a rebuild or another store object's commit never sees a cached word, and the cache stays
within its budget. Checked against the same queries through a plain ``IndexReader`` of the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore.storage import MemoryStorage
from projections.search import formats
from projections.search import index as search_index
from projections.search import queries as search_queries
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

from conftest import FakeClock

#: Messages that put two words in enough sessions for the shared-sessions path, with message maps in small blocks.
_WORDS = ("amber", "basil", "cedar", "delta", "ember", "fjord")


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 16 sessions, maps from 2: a few dozen sessions spread over blocks with and without maps."""
    monkeypatch.setattr(formats, "BLOCK_BITS", 4)
    monkeypatch.setattr(formats, "MAP_FROM", 2)


def _fill(store: SessionStore, sessions: int = 40) -> None:
    for number in range(sessions):
        texts = [f"{_WORDS[number % 6]} {_WORDS[(number * 5 + index) % 6]} filler{index}" for index in range(4)]
        store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])
    store.catch_up()


def _keys(store: SessionStore, keyword: str, limit: int = 10) -> list[str]:
    return [found.key for found in store.search(SessionQuery(keyword, limit))]


def _uncached(store: SessionStore, keyword: str, limit: int = 10) -> list[tuple[int, float]]:
    """The same query through a plain reader of a fresh read transaction (nothing cached)."""
    index = store._search_index
    with store._read() as txn:
        view = IndexReader(index._spaces, index._term_ids, txn)
        return search_queries.search_sessions(view, parse_query(keyword), limit)


def _cached(store: SessionStore, keyword: str, limit: int = 10) -> list[tuple[int, float]]:
    with store._read() as txn:
        return search_queries.search_sessions(store._search_index.reader(txn, read_only=True),
                                              parse_query(keyword), limit)


def _counting_block_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    plain = IndexReader.block_raw

    def counted(self: IndexReader, tid: int, block: int) -> bytes | None:
        reads.append(tid)
        return plain(self, tid, block)

    monkeypatch.setattr(IndexReader, "block_raw", counted)
    return reads


@pytest.mark.usefixtures("terms_in_blocks")
def test_queries_of_one_state_decode_a_term_once(scratch_store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(scratch_store)
    reads = _counting_block_reads(monkeypatch)
    first = _keys(scratch_store, "amber basil")
    assert reads, "the first query reads the terms' blocks"
    del reads[:]
    assert _keys(scratch_store, "amber basil") == first
    assert _keys(scratch_store, "basil amber") == first
    assert reads == [], "the same state's later queries read no block again"
    scratch_store.append("s0", ChatMessage.user("amber"))  # a commit: another state
    scratch_store.catch_up()
    _keys(scratch_store, "amber basil")
    assert reads, "a query of a later state decodes afresh"


def test_removed_and_redacted_words_are_not_served(scratch_store: SessionStore) -> None:
    _fill(scratch_store, 8)
    scratch_store.append("late", ChatMessage.user("zephyr quartz amber"))
    scratch_store.catch_up()
    assert _keys(scratch_store, "zephyr") == ["late"] and _keys(scratch_store, "quartz zephyr") == ["late"]
    assert _keys(scratch_store, "amber zephyr", 50)[0] == "late"
    scratch_store.remove_last("late")
    assert _keys(scratch_store, "zephyr") == []  # read-your-writes: in memory over the index
    scratch_store.catch_up()
    assert _keys(scratch_store, "zephyr") == [] and _keys(scratch_store, "quartz zephyr") == []
    # "amber" stays in other sessions: its summary, decoded again, no longer holds the session.
    assert "late" not in _keys(scratch_store, "amber zephyr", 50)
    assert _cached(scratch_store, "amber zephyr", 50) == _uncached(scratch_store, "amber zephyr", 50)
    scratch_store.append("late", ChatMessage.user("zephyr quartz amber"))
    scratch_store.catch_up()
    assert _keys(scratch_store, "zephyr quartz") == ["late"] and _keys(scratch_store, "amber quartz", 50)[0] == "late"
    scratch_store.redact("late", "asked to")
    scratch_store.catch_up()
    assert _keys(scratch_store, "zephyr") == [] and _keys(scratch_store, "zephyr quartz") == []
    assert _cached(scratch_store, "amber quartz", 50) == _uncached(scratch_store, "amber quartz", 50)
    assert all(sid != 9 for sid, _ in _cached(scratch_store, "amber quartz", 50))  # the ninth session, redacted


def test_a_rebuild_is_a_new_state(scratch_store: SessionStore, small_blocks: None) -> None:
    _fill(scratch_store)
    before = _keys(scratch_store, "cedar delta")
    scratch_store.rebuild_projections(["search"])  # term ids change; the log position does not
    assert _keys(scratch_store, "cedar delta") == before
    assert _cached(scratch_store, "cedar delta ember") == _uncached(scratch_store, "cedar delta ember")


def test_another_store_objects_commits_are_seen(tmp_path: Path, clock: FakeClock) -> None:
    with SessionStore(tmp_path / "store", clock=clock, durable=False) as first, \
            SessionStore(tmp_path / "store", clock=clock, durable=False) as second:
        _fill(first, 12)
        assert "new" not in _keys(first, "amber zephyr", 50)
        second.append("new", ChatMessage.user("zephyr amber"))
        second.catch_up()
        assert _keys(first, "amber zephyr", 50)[0] == "new"
        second.delete_session("new")
        second.catch_up()
        assert "new" not in _keys(first, "amber zephyr", 50)
        assert _cached(first, "amber zephyr", 50) == _uncached(first, "amber zephyr", 50)


def test_the_cache_keeps_within_its_budget(scratch_store: SessionStore, small_blocks: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(scratch_store)
    budget = 4000
    monkeypatch.setattr(scratch_store._search_index, "_decoded", search_index._DecodedStates(budget))
    held_at_most = 0
    for first in _WORDS:
        for second in _WORDS:
            assert _cached(scratch_store, f"{first} {second}") == _uncached(scratch_store, f"{first} {second}")
            held = scratch_store._search_index._decoded._latest
            assert held is not None and held._size <= budget
            assert held._size == sum(held._costs.values()) and held._costs.keys() == held._entries.keys()
            held_at_most = max(held_at_most, len(held._entries))
    assert 1 < held_at_most < len(_WORDS)  # it held terms, and the budget, not the words, bounded them


def _rare_terms_counted(store: SessionStore, monkeypatch: pytest.MonkeyPatch, large_budget: int
                        ) -> tuple[search_index._DecodedStates, list[int]]:
    """``_fill``'s 80 sessions and 30 rare terms (one session each: each counted below the large entries), then the
    store's queries given decoded states of 2,500 bytes for the others and ``large_budget``, and the terms they
    decode listed."""
    _fill(store, 80)
    for number in range(30):
        store.append(f"rare{number}", ChatMessage.user(f"rare{number}"))
    store.catch_up()
    states = search_index._DecodedStates(2500, large_budget)
    monkeypatch.setattr(store._search_index, "_decoded", states)
    decodes: list[int] = []
    term_of = search_index._term_of

    def counted(view: IndexReader, tid: int, *rest: Any) -> Any:
        decodes.append(tid)
        return term_of(view, tid, *rest)

    monkeypatch.setattr(search_index, "_term_of", counted)
    return states, decodes


def test_large_entries_keep_within_a_budget_of_their_own(scratch_store: SessionStore, small_blocks: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The terms counted at ``LARGE_ENTRY_FROM`` or more are kept apart: the rarer terms' budget full, they stay
    (queries read them again without a decode), and they are dropped, oldest first, only for each other."""
    monkeypatch.setattr(search_index, "LARGE_ENTRY_FROM", 1200)
    states, decodes = _rare_terms_counted(scratch_store, monkeypatch, 5000)
    assert _cached(scratch_store, "amber basil") == _uncached(scratch_store, "amber basil")
    held = states._latest
    assert held is not None
    large = list(held._large)
    assert len(large) == 2 and all(held._costs[tid] >= 1200 for tid in large)
    for number in range(30):  # fills the rarer terms' budget over and over
        assert _cached(scratch_store, f"rare{number}") == _uncached(scratch_store, f"rare{number}")
    assert held._size <= 2500 and list(held._large) == large
    decodes.clear()
    assert _cached(scratch_store, "basil amber") == _uncached(scratch_store, "basil amber")
    assert decodes == []  # both read as kept
    assert _cached(scratch_store, "cedar delta") == _uncached(scratch_store, "cedar delta")
    assert _cached(scratch_store, "ember fjord") == _uncached(scratch_store, "ember fjord")
    assert held._large_size <= 5000 and large[0] not in held._large  # the oldest large ones went first


def test_terms_stored_in_blocks_keep_with_the_large_entries(scratch_store: SessionStore, small_blocks: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A term stored in blocks is kept in the large entries' budget however small: a stream of terms stored whole,
    each read once, fills the other budget over and over, and the queries of the terms in blocks read them again
    without a decode (each would read every block and map again)."""
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 8)  # the words of ``_fill`` in dozens of messages, the rare ones in 1
    states, decodes = _rare_terms_counted(scratch_store, monkeypatch, 1 << 20)
    assert _cached(scratch_store, "amber basil") == _uncached(scratch_store, "amber basil")
    held = states._latest
    assert held is not None
    in_blocks = list(held._large)
    assert len(in_blocks) == 2 and all(search_index.in_blocks(held._entries[tid]) for tid in in_blocks)
    assert all(held._costs[tid] < search_index.LARGE_ENTRY_FROM for tid in in_blocks)  # kept apart, not for size
    for number in range(30):
        assert _cached(scratch_store, f"rare{number}") == _uncached(scratch_store, f"rare{number}")
    assert held._size <= 2500 and len(held._entries) < 32  # the rare terms, stored whole, pushed one another out
    assert list(held._large) == in_blocks
    decodes.clear()
    assert _cached(scratch_store, "basil amber") == _uncached(scratch_store, "basil amber")
    assert decodes == []


class _CountedKeys(dict[Any, None]):
    """A budget's keys, counting the lookups of keys in them."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_dropping_a_term_stored_whole_looks_past_no_term_in_blocks(scratch_store: SessionStore, small_blocks: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of terms stored in blocks may be kept, however small, with the large entries: a rare term's decode
    that fills the other budget drops its oldest term at once, not after looking at each of those kept before it."""
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 1)  # a word in two messages is stored in blocks, in one whole
    with scratch_store.transaction() as batch:
        for number in range(200):
            batch.append(f"common{number}", ChatMessage.user(f"common{number}"))
            batch.append(f"common{number}", ChatMessage.assistant(f"common{number} again"))
        for number in range(30):
            batch.append(f"rare{number}", ChatMessage.user(f"rare{number}"))
    scratch_store.catch_up()
    states = search_index._DecodedStates(2500, 1 << 30)
    monkeypatch.setattr(scratch_store._search_index, "_decoded", states)
    for number in range(200):
        assert _cached(scratch_store, f"common{number}") == _uncached(scratch_store, f"common{number}")
    held = states._latest
    assert held is not None and len(held._large) == 200
    counted = held._large = _CountedKeys(held._large)
    for number in range(30):
        assert _cached(scratch_store, f"rare{number}") == _uncached(scratch_store, f"rare{number}")
    assert held._size <= 2500 and len(held._entries) < 230  # the rare terms pushed one another out
    assert len(held._large) == 200
    assert counted.lookups <= 10 * 30, counted.lookups  # a few a decode, not one a term in blocks kept


_commands = st.lists(st.tuples(st.sampled_from(["append", "remove", "redact", "clear", "delete", "rebuild"]),
                               st.integers(0, 11), st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4)),
                     min_size=1, max_size=12)


@given(commands=_commands, queries=st.lists(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3),
                                            min_size=1, max_size=4))
def test_cached_queries_rank_as_uncached_ones(commands: list[tuple[str, int, list[str]]],
                                              queries: list[list[str]]) -> None:
    """After every command, each query through the cache (asked twice: the second is served from it) ranks as the
    same query through a plain reader."""
    with SessionStore.on_storage(MemoryStorage(Path("cached")), clock=FakeClock()) as store:
        _fill(store, 12)
        run: dict[str, Callable[[str, list[str]], object]] = {
            "append": lambda key, words: store.append(key, ChatMessage.user(" ".join(words))),
            "remove": lambda key, _: store.remove_last(key),
            "redact": lambda key, _: store.session_exists(key) and store.redact(key, "asked to"),
            "clear": lambda key, _: store.clear_messages(key),
            "delete": lambda key, _: store.delete_session(key),
            "rebuild": lambda _key, _words: store.rebuild_projections(["search"]),
        }
        for name, number, words in commands:
            run[name](f"s{number}", words)
            store.catch_up()
            for query in queries:
                keyword = " ".join(query)
                expected = _uncached(store, keyword)
                assert _cached(store, keyword) == expected
                assert _cached(store, keyword) == expected
                with store._read() as txn:
                    listed = store._catalog.rows(txn).metadata([sid for sid, _ in expected])
                assert _keys(store, keyword) == [metadata.key for metadata in listed]


def test_a_reader_reading_every_term_keeps_a_bounded_number(scratch_store: SessionStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify`` reads every term's summary through the reader of a current index: it keeps no more of them than
    a query's worth (and the shared state its budget)."""
    scratch_store.append_many("many", [ChatMessage.user(f"word{number}") for number in range(300)])
    scratch_store.catch_up()
    monkeypatch.setattr(scratch_store._search_index, "_decoded", search_index._DecodedStates(4000))
    with scratch_store._read() as txn:
        reader = scratch_store._search_index.reader(txn, read_only=True)
        assert isinstance(reader, search_index.CachedReader)
        kept = 0
        for number in range(300):
            tid = reader.tid(f"word{number}")
            assert tid is not None and reader.summary(tid) is not None
            kept = max(kept, len(reader._read))
        assert kept == search_index._READER_TERMS
    assert scratch_store.verify().ok
