"""The decoded-terms cache of search queries (``index._Decoded``) within its budget in memory, not only in the bytes
its terms were stored in: a rare term's stored bytes are a few dozen, the objects decoding it makes several
hundred, so a budget counted in stored bytes alone let a cache of many rare terms hold ten times its budget."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from projections.search import index as search_index

from conftest import FakeClock

RARE_TERMS = 3000
BUDGET = 200_000


def _read_every_term(store: SessionStore) -> None:
    with store._read() as txn:
        reader = store._search_index.reader(txn, read_only=True)
        for number in range(RARE_TERMS):
            tid = reader.tid(f"rare{number}")
            assert tid is not None and reader.summary(tid) is not None


def test_a_cache_of_many_rare_terms_holds_about_its_budget_in_memory(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    with SessionStore(tmp_path / "store", clock=clock, durable=False) as store:
        for start in range(0, RARE_TERMS, 500):
            with store.transaction() as batch:
                for number in range(start, start + 500):
                    batch.append(f"s{number}", ChatMessage.user(f"rare{number}"))
        store.catch_up()
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
