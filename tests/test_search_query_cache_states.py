"""The decoded-terms cache of search queries across committed states: a read transaction held open across commits,
queries of several states taking turns, threads querying while another commits, and a vacuum (whose new file
numbers its states from the start again) between queries. Each query through the cache ranks as the same query
through a plain reader of the same transaction."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from eventstore.storage import MemoryStorage, ReadTransaction
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

from conftest import FakeClock

WORDS = ("amber", "basil", "cedar", "delta", "ember", "fjord")
QUERIES = ("amber", "amber basil", "cedar delta ember", "fjord basil", "delta")


@pytest.fixture
def opened(scratch_store: SessionStore) -> SessionStore:
    """``scratch_store`` with 30 sessions of the words, indexed."""
    store = scratch_store
    for number in range(30):
        store.append_many(f"s{number}", [ChatMessage.user(f"{WORDS[number % 6]} {WORDS[(number * 5 + i) % 6]}")
                                         for i in range(3)])
    store.catch_up()
    return store


def _both(store: SessionStore, txn: ReadTransaction, keyword: str) -> tuple[object, object]:
    """The query through the cache and through a plain reader, of one transaction."""
    index = store._search_index
    words = parse_query(keyword)
    cached = search_queries.search_sessions(index.reader(txn, read_only=True), words, 10)
    plain = search_queries.search_sessions(IndexReader(index._spaces, index._term_ids, txn), words, 10)
    return cached, plain


def _change(store: SessionStore, step: int) -> None:
    """A new session holding every word (at the top of every query's results), or the last one's message removed
    (gone from them)."""
    if step % 2:
        store.remove_last(f"n{step - 1}")
    else:
        store.append(f"n{step}", ChatMessage.user(" ".join(WORDS)))
    store.catch_up()


def test_a_read_transaction_held_across_commits_reads_its_own_state(opened: SessionStore) -> None:
    with opened._read() as held:
        first = {keyword: _both(opened, held, keyword)[1] for keyword in QUERIES}
        for step in range(6):
            _change(opened, step)
            with opened._read() as later:
                for keyword in QUERIES:  # the two states take turns in the cache
                    cached, plain = _both(opened, later, keyword)
                    assert cached == plain
                    cached, plain = _both(opened, held, keyword)
                    assert cached == plain == first[keyword]


def test_threads_querying_while_another_commits(opened: SessionStore) -> None:
    failures: list[object] = []
    stop = threading.Event()

    def query(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            with opened._read() as txn:
                keyword = rng.choice(QUERIES)
                cached, plain = _both(opened, txn, keyword)
                if cached != plain:
                    failures.append((keyword, cached, plain))

    threads = [threading.Thread(target=query, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    try:
        for step in range(40):
            _change(opened, step)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []


def _state(store: SessionStore) -> int:
    with store._read() as txn:
        return txn.snapshot_id()


def test_a_vacuum_then_commits_back_to_the_same_state_number(tmp_path: Path, clock: FakeClock) -> None:
    """LMDB numbers a vacuumed file's states from the start again: a state of the new file may bear the number of
    one queried before the vacuum, and must not be served what was decoded from that one."""
    with SessionStore(tmp_path / "store", clock=clock, durable=False) as store:
        for number in range(12):
            store.append(f"s{number}", ChatMessage.user(f"{WORDS[number % 6]} amber"))
        store.catch_up()
        with store._read() as txn:
            queried = txn.snapshot_id()
            for keyword in QUERIES:
                cached, plain = _both(store, txn, keyword)
                assert cached == plain
        store.vacuum()
        distance = queried - _state(store)
        assert distance >= 2
        for number in range(distance - 1):  # sessions holding every word: at the top of every query's results
            store.append(f"n{number}", ChatMessage.user(" ".join(WORDS)))
        store.catch_up()
        assert _state(store) == queried
        with store._read() as txn:
            for keyword in QUERIES:
                cached, plain = _both(store, txn, keyword)
                assert cached == plain


_steps = st.lists(st.tuples(st.sampled_from(["append", "remove", "delete", "redact", "hold"]), st.integers(0, 39),
                            st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)), min_size=1, max_size=10)


@given(steps=_steps)
def test_cached_queries_of_message_maps_and_held_states_rank_as_plain_ones(steps: list[tuple[str, int, list[str]]]
                                                                          ) -> None:
    """Small blocks with message maps in most (the path of two terms sharing a message), random commands, and read
    transactions held open ("hold") while later ones commit: every cached query of every open transaction, the
    held ones included, ranks as a plain reader's of the same transaction."""
    with pytest.MonkeyPatch.context() as patch, ExitStack() as held:
        patch.setattr(formats, "BLOCK_BITS", 4)
        patch.setattr(formats, "MAP_FROM", 2)
        store = held.enter_context(SessionStore.on_storage(MemoryStorage(Path("held")), clock=FakeClock()))
        for number in range(40):
            store.append_many(f"s{number}", [ChatMessage.user(f"{WORDS[number % 6]} {WORDS[(number * 5 + i) % 6]}")
                                             for i in range(3)])
        store.catch_up()
        transactions = [held.enter_context(store._read())]
        run: dict[str, Callable[[str, list[str]], object]] = {
            "append": lambda key, words: store.append(key, ChatMessage.user(" ".join(words))),
            "remove": lambda key, _: store.remove_last(key),
            "delete": lambda key, _: store.delete_session(key),
            "redact": lambda key, _: store.session_exists(key) and store.redact(key, "asked to"),
            "hold": lambda _key, _words: transactions.append(held.enter_context(store._read())),
        }
        for name, number, words in steps:
            run[name](f"s{number}", words)
            store.catch_up()
            for txn in [*transactions, held.enter_context(store._read())]:
                for keyword in QUERIES:
                    cached, plain = _both(store, txn, keyword)
                    assert cached == plain
