"""The decoded-terms cache of search queries (``index._Decoded``) within its budget in memory, not only in the bytes
its terms were stored in: a rare term's stored bytes are a few dozen, the objects decoding it makes several
hundred, so a budget counted in stored bytes alone let a cache of many rare terms hold ten times its budget."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore.storage import MemoryStorage
from projections.search import index as search_index

from conftest import FakeClock

RARE_TERMS = 3000
BUDGET = 200_000


def _add_rare_terms(store: SessionStore) -> None:
    """A session for each rare term, then the index caught up."""
    for start in range(0, RARE_TERMS, 500):
        with store.transaction() as batch:
            for number in range(start, start + 500):
                batch.append(f"s{number}", ChatMessage.user(f"rare{number}"))
    store.catch_up()


def _read_every_term(store: SessionStore) -> None:
    with store._read() as txn:
        reader = store._search_index.reader(txn, read_only=True)
        for number in range(RARE_TERMS):
            tid = reader.tid(f"rare{number}")
            assert tid is not None and reader.summary(tid) is not None


def test_a_cache_of_many_rare_terms_holds_about_its_budget_in_memory(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    with SessionStore(tmp_path / "store", clock=clock, durable=False) as store:
        _add_rare_terms(store)
        _read_every_term(store)  # the term ids learned: what is measured below is the decoded terms alone
        states = search_index._DecodedStates(BUDGET)
        monkeypatch.setattr(store._search_index, "_decoded", states)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            _read_every_term(store)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        decoded = states._latest
        assert decoded is not None and decoded._size <= BUDGET
        assert held <= 1.5 * BUDGET, held
        assert len(decoded._entries) < RARE_TERMS  # the budget, not the terms, bounded it


def test_a_store_keeps_its_searches_decoded_terms_within_search_cache_bytes(tmp_path: Path, clock: FakeClock) -> None:
    """``search_cache_bytes`` sets both budgets, a fifth for the terms that are not large (all of these)."""
    with SessionStore(tmp_path / "store", clock=clock, durable=False, search_cache_bytes=5 * BUDGET) as store:
        _add_rare_terms(store)
        _read_every_term(store)
        decoded = store._search_index._decoded._latest
        assert decoded is not None
        assert (decoded._budget, decoded._large_budget) == (BUDGET, 4 * BUDGET)
        assert 0 < decoded._size <= BUDGET and decoded._large_size == 0
        assert len(decoded._entries) < RARE_TERMS  # the default budgets would keep every one
        store.vacuum()  # opens the read models again: with the store's budgets
        assert store._search_index._decoded._budgets == (BUDGET, 4 * BUDGET)


def test_a_store_with_no_search_cache_keeps_no_decoded_term_and_still_finds_them(clock: FakeClock) -> None:
    with SessionStore.on_storage(MemoryStorage(), clock=clock, search_cache_bytes=0) as store:
        _add_rare_terms(store)
        _read_every_term(store)
        for number in (0, 7, RARE_TERMS - 1):
            assert [found.key for found in store.search(SessionQuery(f"rare{number}"))] == [f"s{number}"]
        decoded = store._search_index._decoded._latest
        assert decoded is not None and decoded._entries == {} and decoded._size == decoded._large_size == 0
