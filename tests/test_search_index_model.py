"""The search index (code version 6) against a plain model, as a state machine: sessions appended to, edited,
cleared, redacted, deleted, forked, restored and renamed, the index caught up, rebuilt or left a few events behind
(read through the batch that applies them in memory), on LMDB and in memory.

After each step a query on every path (the shared-sessions path, the message path, the threshold path) ranks as a
plain BM25 does (``ReferenceSearch``), from this store object and another on the same store; ``search_messages``
returns the best messages with their plain scores; and once the index is caught up no word that left every current
message is in any key or value of any ``search.*`` space, and ``verify`` is green."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eventstore import REDACTED, ChatMessage, SessionStore
from eventstore.storage import MemoryStorage
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats import summaries
from projections.search.tokenizer import parse_query, tokenize

from conftest import FakeClock, lmdb_storage
from test_search import ReferenceSearch, search

KEYS = [f"s{number}" for number in range(7)]
#: Words in most messages, words in some, and rare words long enough to grep for in stored bytes.
COMMON = ["the", "of", "and"]
MIDDLE = ["tram", "lisbon"]
RARE = ["zephyrine", "quokkafish", "marmalade", "xylophonic"]
WORDS = COMMON + MIDDLE + RARE

texts = st.one_of(
    st.lists(st.sampled_from(COMMON * 4 + MIDDLE * 2 + RARE), min_size=1, max_size=8).map(" ".join),
    # long messages, a word repeated: terms at low and high levels, and a level of its own for the repeated word
    st.tuples(st.sampled_from(WORDS), st.integers(2, 40), st.lists(st.sampled_from(WORDS), max_size=3))
    .map(lambda drawn: " ".join([drawn[0]] * drawn[1] + drawn[2])),
)
query_words = st.sampled_from([*WORDS, *WORDS, "the-of", "of-the", "ma*", "x*", "absent", "the-absent"])
keywords = st.lists(query_words, min_size=1, max_size=6).map(" ".join)
limits = st.sampled_from([1, 2, 3, 5, 8, 10**6])
#: The query path a query is forced onto (module settings of ``queries``), or ``default`` for the routing's own.
PATHS = {
    "default": {},
    # the routing's own, with its lines low enough that terms cross them as sessions come and go
    "routed": {"MATERIALIZE_UP_TO": 4, "INTERSECT_UP_TO": 2, "SPREAD_UP_TO": 3},
    "shared sessions": {"MATERIALIZE_UP_TO": 10**9},
    "messages": {"MATERIALIZE_UP_TO": 0, "INTERSECT_UP_TO": 0, "SPREAD_UP_TO": -1},
    "threshold": {"MATERIALIZE_UP_TO": 0, "INTERSECT_UP_TO": 0, "SPREAD_UP_TO": -1, "BY_MESSAGES_UP_TO": 0},
}


@contextmanager
def query_path(path: str) -> Iterator[None]:
    saved = {name: getattr(search_queries, name) for name in PATHS[path]}
    for name, value in PATHS[path].items():
        setattr(search_queries, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(search_queries, name, value)


def search_spaces(store: SessionStore) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key and value of every ``search.*`` space, as the engine holds them (committed)."""
    environment = store._environment
    if isinstance(environment, MemoryStorage):
        _, tables = environment._contents.committed
        return {name: [(key, table.values[key]) for key in table.keys]
                for name, table in tables.items() if name.startswith("search.")}
    env = lmdb_storage(store)._env
    found = {}
    with env.begin() as txn:
        names = [bytes(name) for name in txn.cursor().iternext(values=False)]
        for name in names:
            if name.startswith(b"search."):
                database = env.open_db(name, txn=txn, create=False)
                found[name.decode()] = [(bytes(key), bytes(value)) for key, value in txn.cursor(db=database)]
    return found


class SearchIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.clock = FakeClock()
        self.saved = formats.MAP_FROM, formats.BLOCK_BITS
        self.store: SessionStore | None = None
        self.other: SessionStore | None = None
        self.behind = False  # whether commands were given since the index last caught up
        self.ever: set[str] = set()  # every token any message held

    @initialize(engine=st.sampled_from(["lmdb", "memory"]), map_from=st.sampled_from([1, 2, 3]),
                block_bits=st.sampled_from([1, 2, formats.BLOCK_BITS]))
    def open(self, engine: str, map_from: int, block_bits: int) -> None:
        # Blocks of a few sessions and maps from a few: terms cross the "most sessions" line in many blocks.
        formats.MAP_FROM, formats.BLOCK_BITS = map_from, block_bits
        if engine == "lmdb":
            path = Path(self.directory.name) / "store"
            self.store = SessionStore(path, clock=self.clock, durable=False)
            self.other = SessionStore(path, clock=self.clock, durable=False)
        else:
            storage = MemoryStorage()
            self.store = SessionStore.on_storage(storage.open_again(), clock=self.clock)
            self.other = SessionStore.on_storage(storage, clock=self.clock)

    def teardown(self) -> None:
        for store in (self.store, self.other):
            if store is not None:
                store.close()
        self.directory.cleanup()
        formats.MAP_FROM, formats.BLOCK_BITS = self.saved

    @property
    def live(self) -> SessionStore:
        assert self.store is not None
        return self.store

    def _changed(self) -> None:
        self.clock.advance(seconds=1)
        self.behind = True

    # -- commands ------------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), appended=st.lists(texts, min_size=1, max_size=4))
    def append(self, key: str, appended: list[str]) -> None:
        self._changed()
        self.live.append_many(key, [ChatMessage.user(text) for text in appended])
        self.ever.update(token for text in appended for token in tokenize(text))

    @rule(key=st.sampled_from(KEYS), text=texts, past=st.integers(0, 3))
    def append_long(self, key: str, text: str, past: int) -> None:
        """Messages up to and past ``LAST_TAG``, where one key of a map stands for several messages."""
        self._changed()
        self.live.append_many(key, [ChatMessage.user(text)] * (summaries.LAST_TAG - 1 + past))
        self.ever.update(tokenize(text))

    @rule(key=st.sampled_from(KEYS), text=texts)
    def update_last(self, key: str, text: str) -> None:
        self._changed()
        self.live.update_last(key, ChatMessage.user(text))
        self.ever.update(tokenize(text))

    @rule(key=st.sampled_from(KEYS))
    def remove_last(self, key: str) -> None:
        self._changed()
        self.live.remove_last(key)

    @rule(key=st.sampled_from(KEYS))
    def clear(self, key: str) -> None:
        self._changed()
        self.live.clear_messages(key)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        self._changed()
        self.live.delete_session(key)

    @rule(key=st.sampled_from(KEYS))
    def redact(self, key: str) -> None:
        if self.live.session_exists(key):
            self._changed()
            self.live.redact(key, reason="test")
            self.behind = False  # a redaction catches the index up in its own commit
            self.check_erasure()

    @rule(source=st.sampled_from(KEYS), into=st.sampled_from(KEYS))
    def fork(self, source: str, into: str) -> None:
        if self.live.session_exists(source) and not self.live.session_exists(into):
            self._changed()
            self.live.fork(source, into)

    @rule(key=st.sampled_from(KEYS), back=st.integers(1, 4))
    def restore(self, key: str, back: int) -> None:
        version = len(self.live.history(key)) - back
        if version >= 1:
            self._changed()
            self.live.restore(key, version)

    @rule(key=st.sampled_from(KEYS), name=st.sampled_from(["", "renamed"]))
    def rename(self, key: str, name: str) -> None:
        if self.live.session_exists(key):  # a later activity, which ties are broken by
            self._changed()
            self.live.set_session_name(key, name)

    # -- the index -----------------------------------------------------------------------------

    @rule()
    def catch_up(self) -> None:
        self.live.catch_up()
        self.behind = False
        self.check_erasure()
        assert self.live.verify().ok

    @rule()
    def rebuild(self) -> None:
        self.live.rebuild_projections(["search"])
        self.behind = False
        self.check_erasure()
        assert self.live.verify().ok

    def check_erasure(self) -> None:
        """No word that left every current message is in a key or value of a ``search.*`` space; the term
        dictionary holds exactly the current messages' words."""
        current = {token for key in self.live.list_sessions() for message in self.live.load(key)
                   if message.content != REDACTED for token in tokenize(message.content)}
        spaces = search_spaces(self.live)
        gone = [word.encode() for word in RARE if word in self.ever and word not in current]
        for name, pairs in spaces.items():
            for key, value in pairs:
                for word in gone:
                    assert word not in key and word not in value, (word, name)
        assert {bytes(key).decode() for key, _ in spaces["search.terms"]} == current

    # -- queries -------------------------------------------------------------------------------

    @rule(keyword=keywords, limit=limits, path=st.sampled_from(list(PATHS)), from_other=st.booleans())
    def query(self, keyword: str, limit: int, path: str, from_other: bool) -> None:
        store = self.other if from_other else self.live
        assert store is not None
        reference = ReferenceSearch(self.live)
        with query_path(path):
            found = search(store, keyword, limit)
        assert reference.search(keyword, limit) == found, (keyword, limit, path)

    @rule(keyword=keywords, limit=limits, path=st.sampled_from(list(PATHS)))
    def query_messages(self, keyword: str, limit: int, path: str) -> None:
        expected = ReferenceSearch(self.live).message_scores(keyword)
        with query_path(path):
            hits = self.live.search_messages(keyword, limit)
        assert len(hits) == min(limit, len(expected))
        terms = {token for word in parse_query(keyword) for token in word.tokens}
        for hit in hits:
            assert hit.message == self.live.load(hit.session_key)[hit.index]
            assert math.isclose(hit.score, expected.pop((hit.session_key, hit.index)), rel_tol=1e-9)
            marked = {token for piece in hit.snippet.split("[")[1:] for token in tokenize(piece.split("]")[0])}
            assert marked, hit.snippet
            assert all(token in terms or any(token.startswith(term) for term in terms) for token in marked)
        if hits:  # none left out scores more than the last returned
            assert all(score <= hits[-1].score * (1 + 1e-9) for score in expected.values())

    @precondition(lambda self: self.store is not None)
    @invariant()
    def common_words_answer_as_a_plain_bm25(self) -> None:
        """Two and three of the most common words, through the message path, at the cut of a few sessions."""
        reference = ReferenceSearch(self.live)
        with query_path("messages"):
            for keyword, limit in (("the of", 2), ("the of and", 3)):
                assert reference.search(keyword, limit) == search(self.live, keyword, limit), keyword


SearchIndexMachine.TestCase.settings = settings(SearchIndexMachine.TestCase.settings, stateful_step_count=30)
TestSearchIndexModel = SearchIndexMachine.TestCase


def test_the_machine_restores_the_index_settings() -> None:
    """The machine changes ``MAP_FROM`` and ``BLOCK_BITS`` for its stores only."""
    saved = formats.MAP_FROM, formats.BLOCK_BITS
    machine = SearchIndexMachine()
    machine.open("memory", 1, 1)
    machine.teardown()
    assert (formats.MAP_FROM, formats.BLOCK_BITS) == saved
