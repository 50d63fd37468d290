"""What search queries decode, kept across commits (by the index's stored state) and through a thread's kept batch
of pending events, against a fresh store object, as a state machine.

Two store objects give commands, catch up, rebuild and query one LMDB store, in the main thread and in two worker
threads (each keeps its batch for its next query), sometimes two queries at once; with blocks of a few sessions,
a decoded-state budget that evicts, few blocks patched before a state is decoded afresh, and a small lag read
through the batch. After each query, its sessions (in order), their scores, and ``search_messages``' hits (scores
and snippets) equal those of a store object opened afresh, read-only (it keeps nothing, and never writes)."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eventstore import ChatMessage, SessionQuery, SessionStore, _deferred
from eventstore.storage import ReadTransaction
from projections.search import formats
from projections.search import index as search_index
from projections.search import queries as search_queries
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

from conftest import FakeClock

KEYS = [f"s{number}" for number in range(10)]
WORDS = ["the", "of", "tram", "lisbon", "zephyrine", "quokka"]
texts = st.one_of(
    st.lists(st.sampled_from(WORDS[:2] * 3 + WORDS), min_size=1, max_size=6).map(" ".join),
    st.tuples(st.sampled_from(WORDS), st.integers(2, 30)).map(lambda drawn: " ".join([drawn[0]] * drawn[1])),
)
keywords = st.lists(st.sampled_from([*WORDS, "the-of", "tr*", "absent"]), min_size=1, max_size=4).map(" ".join)
limits = st.sampled_from([1, 2, 3, 10**6])
#: Module settings each example draws from: small blocks and maps, few catch-ups remembered, the level table's forms.
PATCHED = [(formats, "BLOCK_BITS"), (formats, "MAP_FROM"), (search_index, "_CHANGED_UP_TO"),
           (search_index, "_TRANSITIONS_KEPT"), (_deferred, "OVERLAY_UP_TO"), (search_index, "_DENSE_UP_TO"),
           (search_index, "_PATCHED_UP_TO"), (search_index, "_PATCHES_UP_TO"), (search_index, "LARGE_ENTRY_FROM"),
           (formats, "WHOLE_UP_TO")]
#: The level table's forms (``_DENSE_UP_TO``: every block as entries, the default, every block as an array), the
#: sessions patched before it is read afresh, and the patches before its blocks are laid out again.
TABLES = [(0, 512, 4096), (5, 512, 4096), (1 << 30, 512, 4096), (1 << 30, 1, 0), (1 << 30, 512, 0), (5, 2, 1)]
PATHS = {
    "default": {},
    "messages": {"MATERIALIZE_UP_TO": 0, "INTERSECT_UP_TO": 0, "SPREAD_UP_TO": -1},
    "shared sessions": {"MATERIALIZE_UP_TO": 10**9},
}


def answer(store: SessionStore, keyword: str, limit: int) -> tuple[Any, ...]:
    """Everything a query returns: the sessions' metadata, their scores as the index ranks them (stream id,
    score), and the message hits."""
    index = store._search_index
    words = parse_query(keyword)

    def scores(view: IndexReader, txn: ReadTransaction) -> object:
        return index.search_sessions(view, words, limit), index.search_messages(view, words, limit)

    return (store.search(SessionQuery(keyword, limit)), store._search.query(scores),
            store.search_messages(keyword, min(limit, 50)))


class KeptDecodesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "store"
        self.clock = FakeClock()
        self.saved = [(module, name, getattr(module, name)) for module, name in PATCHED]
        self.saved_paths = {name: getattr(search_queries, name) for values in PATHS.values() for name in values}
        self.stores: list[SessionStore] = []
        self.workers = [ThreadPoolExecutor(1), ThreadPoolExecutor(1)]

    @initialize(block_bits=st.sampled_from([1, 2]), map_from=st.sampled_from([1, 2]),
                changed_up_to=st.sampled_from([1, 3, 64]), transitions=st.sampled_from([1, 2, 64]),
                overlay_up_to=st.sampled_from([2, 6, 32]),
                budget=st.sampled_from([1500, 6000, 32 << 20]), large_from=st.sampled_from([600, 700, 1 << 40]),
                table=st.sampled_from(TABLES), whole_up_to=st.sampled_from([0, 4, 8192]))
    def open(self, block_bits: int, map_from: int, changed_up_to: int, transitions: int, overlay_up_to: int,
             budget: int, large_from: int, table: tuple[int, int, int], whole_up_to: int) -> None:
        formats.BLOCK_BITS, formats.MAP_FROM = block_bits, map_from
        # Every term stored in blocks, those in more than 4 messages, or none: those in blocks are kept as large.
        formats.WHOLE_UP_TO = whole_up_to
        search_index._CHANGED_UP_TO, search_index._TRANSITIONS_KEPT = changed_up_to, transitions
        _deferred.OVERLAY_UP_TO = overlay_up_to
        search_index._DENSE_UP_TO, search_index._PATCHED_UP_TO, search_index._PATCHES_UP_TO = table
        # Entries counted at 600 or 700 bytes or more (the commoner terms here) are large, in a budget of their own.
        search_index.LARGE_ENTRY_FROM = large_from
        self.stores = [SessionStore(self.path, clock=self.clock, durable=False) for _ in range(2)]
        for store in self.stores:
            store._search_index._decoded._budgets = budget, budget

    def teardown(self) -> None:
        for worker in self.workers:
            worker.shutdown()
        for store in self.stores:
            store.close()
        self.directory.cleanup()
        for module, name, value in self.saved:
            setattr(module, name, value)
        for name, value in self.saved_paths.items():
            setattr(search_queries, name, value)

    # -- commands, from either store object ------------------------------------------------------

    @rule(by=st.integers(0, 1), key=st.sampled_from(KEYS), appended=st.lists(texts, min_size=1, max_size=4))
    def append(self, by: int, key: str, appended: list[str]) -> None:
        self.clock.advance(seconds=1)
        self.stores[by].append_many(key, [ChatMessage.user(text) for text in appended])

    @rule(by=st.integers(0, 1), key=st.sampled_from(KEYS), text=texts)
    def update_last(self, by: int, key: str, text: str) -> None:
        self.clock.advance(seconds=1)
        self.stores[by].update_last(key, ChatMessage.user(text))

    @rule(by=st.integers(0, 1), key=st.sampled_from(KEYS))
    def remove_last(self, by: int, key: str) -> None:
        self.clock.advance(seconds=1)
        self.stores[by].remove_last(key)

    @rule(by=st.integers(0, 1), key=st.sampled_from(KEYS), what=st.sampled_from(["clear", "delete", "redact"]))
    def erase(self, by: int, key: str, what: str) -> None:
        store = self.stores[by]
        self.clock.advance(seconds=1)
        if what == "clear":
            store.clear_messages(key)
        elif what == "delete":
            store.delete_session(key)
        elif store.session_exists(key):
            store.redact(key, reason="test")

    @rule(source=st.sampled_from(KEYS), into=st.sampled_from(KEYS))
    def fork(self, source: str, into: str) -> None:
        store = self.stores[0]
        if store.session_exists(source) and not store.session_exists(into):
            self.clock.advance(seconds=1)
            store.fork(source, into)

    @rule(key=st.sampled_from(KEYS), back=st.integers(1, 3))
    def restore(self, key: str, back: int) -> None:
        store = self.stores[1]
        version = len(store.history(key)) - back
        if version >= 1:
            self.clock.advance(seconds=1)
            store.restore(key, version)

    # -- the index -----------------------------------------------------------------------------------

    @rule(by=st.integers(0, 1))
    def catch_up(self, by: int) -> None:
        self.stores[by].catch_up()

    @rule(by=st.integers(0, 1))
    def rebuild(self, by: int) -> None:
        self.stores[by].rebuild_projections(["search"])

    # -- queries ---------------------------------------------------------------------------------------

    def expected(self, keyword: str, limit: int) -> tuple[Any, ...]:
        with SessionStore(self.path, durable=False, readonly=True) as fresh:
            return answer(fresh, keyword, limit)

    @precondition(lambda self: self.stores)
    @rule(by=st.integers(0, 1), thread=st.sampled_from([None, 0, 1]), keyword=keywords, limit=limits,
          path=st.sampled_from(list(PATHS)))
    def query(self, by: int, thread: int | None, keyword: str, limit: int, path: str) -> None:
        for name, value in {**self.saved_paths, **PATHS[path]}.items():
            setattr(search_queries, name, value)
        store = self.stores[by]
        found = answer(store, keyword, limit) if thread is None else \
            self.workers[thread].submit(answer, store, keyword, limit).result()
        assert found == self.expected(keyword, limit), (keyword, limit, path)

    @precondition(lambda self: self.stores)
    @rule(by=st.integers(0, 1), keyword=keywords, other=keywords, limit=limits)
    def query_at_once(self, by: int, keyword: str, other: str, limit: int) -> None:
        """Two threads query one store object at once, each with its own kept batch."""
        store = self.stores[by]
        futures = [worker.submit(answer, store, words, limit)
                   for worker, words in zip(self.workers, (keyword, other))]
        for future, words in zip(futures, (keyword, other)):
            assert future.result() == self.expected(words, limit), words

    @invariant()
    def budgets_hold(self) -> None:
        """Each store object's decoded state within its two budgets, each counting exactly its own entries."""
        for store in self.stores:
            decoded = store._search_index._decoded
            latest = decoded._latest
            if latest is None:
                continue
            with latest._lock:
                costs, large = latest._costs, latest._large
                assert costs.keys() == latest._entries.keys() and large.keys() <= costs.keys()
                assert latest._small.keys() == costs.keys() - large.keys()  # each entry in one budget's order
                assert latest._size == sum(cost for key, cost in costs.items() if key not in large)
                assert latest._large_size == sum(costs[key] for key in large)
                assert latest._size <= decoded._budgets[0] and latest._large_size <= decoded._budgets[1]
                entries = latest._entries
                assert all(costs[key] >= search_index.LARGE_ENTRY_FROM or search_index.in_blocks(entries[key])
                           for key in large)
                assert not any(search_index.in_blocks(entries[key]) for key in costs.keys() - large.keys())


KeptDecodesMachine.TestCase.settings = settings(KeptDecodesMachine.TestCase.settings, stateful_step_count=40)
TestKeptDecodesModel = KeptDecodesMachine.TestCase
