"""What search queries decode, kept across commits: a commit of the log alone leaves the index's stored state (its
generation and checkpoint) as it was, so its decoded terms stay; a query of a store a few events behind reads the
blocks of the sessions it has events of through the batch that applies them, the rest from that state; and a
catch-up of this store object reads again only the blocks it changed. A commit touching a term's block is never
served the term's old decode: each query is checked against the same query through a plain reader (or a plain
overlay), with commits between queries, through other store objects and in another process."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore.storage import MemoryStorage, ReadTransaction
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats.keys import block_of
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

from conftest import FakeClock

WORDS = ("amber", "basil", "cedar", "delta", "ember", "fjord")


@pytest.fixture(autouse=True, params=["shared sessions", "messages"])
def small_blocks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 8 sessions, message maps from 2 sessions: the sessions below span several blocks. Queries of
    several words take the shared-sessions path (few sessions), or (maps from 1 session) the message path (the most
    common words'), which reads the blocks' messages by level too."""
    monkeypatch.setattr(formats, "BLOCK_BITS", 3)
    monkeypatch.setattr(formats, "MAP_FROM", 2)
    if request.param == "messages":  # every block has maps: the message path takes every query of a few words
        monkeypatch.setattr(formats, "MAP_FROM", 1)
        monkeypatch.setattr(search_queries, "MATERIALIZE_UP_TO", 0)
        monkeypatch.setattr(search_queries, "INTERSECT_UP_TO", 0)
        monkeypatch.setattr(search_queries, "SPREAD_UP_TO", -1)


def _fill(store: SessionStore, sessions: int = 40) -> None:
    for number in range(sessions):
        texts = [f"{WORDS[number % 6]} {WORDS[(number * 5 + index) % 6]} {WORDS[index % 6]} filler{index}"
                 for index in range(3)]
        store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])
    store.catch_up()


def _both(store: SessionStore, keyword: str, limit: int = 10) -> tuple[object, object]:
    """The query as ``search`` reads the index (a current one through the decoded state, one behind through its
    batch) and through a plain reader, or a plain overlay of the same events, of the same transaction; sessions
    and messages."""
    index = store._search_index
    words = parse_query(keyword)

    def run(view: IndexReader, txn: ReadTransaction) -> tuple[object, object]:
        plain: IndexReader = IndexReader(index._spaces, index._term_ids, txn)
        if view.holds_unwritten_changes:
            plain = index.overlay(txn, store._search.pending(txn))
        return ((index.search_sessions(view, words, limit), index.search_messages(view, words, limit)),
                (search_queries.search_sessions(plain, words, limit),
                 search_queries.search_messages(plain, words, limit)))

    return store._search.query(run)


def _counting_block_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The blocks read from the store (or from a batch's stored state) from now on."""
    reads: list[int] = []
    plain = IndexReader.block_raw

    def counted(self: IndexReader, tid: int, block: int) -> bytes | None:
        reads.append(block)
        return plain(self, tid, block)

    monkeypatch.setattr(IndexReader, "block_raw", counted)
    return reads


def _block(store: SessionStore, key: str) -> int:
    with store._read() as txn:
        found = store._catalog.stream_of_key(txn, key)
    assert found is not None
    return block_of(found[0])


def test_an_append_leaves_the_other_blocks_decoded(scratch_store: SessionStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(scratch_store)
    expected = _both(scratch_store, "amber basil")
    assert expected[0] == expected[1]
    reads = _counting_block_reads(monkeypatch)
    scratch_store.append("s9", ChatMessage.user("amber basil cedar"))  # the index is now one event behind
    scratch_store.search(SessionQuery("amber basil"))
    assert reads and set(reads) == {_block(scratch_store, "s9")}, "only the appended session's block is read again"
    cached, plain = _both(scratch_store, "amber basil")
    assert cached == plain and cached != expected


@pytest.mark.usefixtures("terms_in_blocks")
def test_a_catch_up_reads_again_only_the_blocks_it_changed(scratch_store: SessionStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(scratch_store)
    _both(scratch_store, "amber basil")
    _both(scratch_store, "amber basil cedar")
    reads = _counting_block_reads(monkeypatch)
    scratch_store.append("s17", ChatMessage.user("amber basil cedar"))
    scratch_store.catch_up()
    del reads[:]
    scratch_store.search(SessionQuery("amber basil cedar"))
    assert reads and set(reads) == {_block(scratch_store, "s17")}, "only the caught-up session's block is read again"
    cached, plain = _both(scratch_store, "amber basil cedar")
    assert cached == plain


def test_a_commit_touching_a_terms_block_never_serves_its_old_decode(scratch_store: SessionStore) -> None:
    _fill(scratch_store)
    for keyword in ("amber", "amber basil", "cedar delta ember"):
        _both(scratch_store, keyword)
    steps: list[Callable[[], object]] = [
        lambda: scratch_store.append("s3", ChatMessage.user("amber amber basil")),
        lambda: scratch_store.remove_last("s3"),
        # A short message (a high level, which another block has first), then a long one in its place: its key
        # moves to a lower level.
        lambda: scratch_store.append("s30", ChatMessage.user("cedar fjord")),
        lambda: scratch_store.append("s3", ChatMessage.user("amber basil")),
        lambda: scratch_store.remove_last("s3"),
        lambda: scratch_store.append("s3", ChatMessage.user("amber basil cedar delta ember fjord filler long words")),
        lambda: scratch_store.update_last("s4", ChatMessage.user("cedar delta ember cedar")),
        lambda: scratch_store.clear_messages("s5"),
        lambda: scratch_store.redact("s6", "asked to"),
        lambda: scratch_store.delete_session("s7"),
        lambda: scratch_store.append("late", ChatMessage.user("amber basil cedar delta ember")),
    ]
    for step in steps:
        step()
        for keyword in ("amber", "amber basil", "cedar delta ember", "basil cedar"):
            cached, plain = _both(scratch_store, keyword)  # through the batch of the events not yet indexed
            assert cached == plain, keyword
        scratch_store.catch_up()
        for keyword in ("amber", "amber basil", "cedar delta ember", "basil cedar"):
            cached, plain = _both(scratch_store, keyword)
            assert cached == plain, keyword
    assert "late" in [found.key for found in scratch_store.search(SessionQuery("amber basil cedar delta ember", 50))]


def test_what_a_state_left_unread_is_brought_up_to_date_with_every_catch_up_since(scratch_store: SessionStore) -> None:
    """Terms and levels a state inherited and no query of it read carry its catch-up's changes to the next state."""
    _fill(scratch_store)
    _both(scratch_store, "amber basil cedar")
    scratch_store.append("s3", ChatMessage.user("amber basil cedar"))  # one block
    scratch_store.catch_up()
    _both(scratch_store, "delta")  # a state whose queries read other terms, and no levels
    scratch_store.append("s20", ChatMessage.user("delta ember"))  # another block
    scratch_store.catch_up()
    cached, plain = _both(scratch_store, "amber basil cedar")
    assert cached == plain


def test_a_read_transaction_held_open_reads_its_own_events(scratch_store: SessionStore) -> None:
    """A query through a transaction held open while more events were logged (and read by a later query) sees the
    events of its own state only."""
    _fill(scratch_store)
    scratch_store.append("s1", ChatMessage.user("amber basil"))
    with scratch_store._read() as held:
        index = scratch_store._search_index
        words = parse_query("amber basil")
        before = index.search_sessions(index.overlay(held, scratch_store._search.pending(held), read_only=True),
                                       words, 10)
        for _ in range(3):
            scratch_store.append("late", ChatMessage.user("amber basil basil amber"))
            later = _both(scratch_store, "amber basil")
            assert later[0] == later[1]
        again = index.search_sessions(index.overlay(held, scratch_store._search.pending(held), read_only=True),
                                      words, 10)
        plain = search_queries.search_sessions(index.overlay(held, scratch_store._search.pending(held)), words, 10)
        assert again == plain == before
        assert isinstance(later[0], tuple) and later[0][0] != before  # the late session leads the later state


def test_another_store_objects_catch_up_is_not_taken_for_a_known_one(tmp_path: Path, clock: FakeClock) -> None:
    with SessionStore(tmp_path / "store", clock=clock, durable=False) as first, \
            SessionStore(tmp_path / "store", clock=clock, durable=False) as second:
        _fill(first)
        assert _both(first, "amber basil")[0] == _both(first, "amber basil")[1]
        for step in range(4):
            first.append(f"s{step}", ChatMessage.user("amber basil"))  # behind: read through its batch
            second.catch_up()  # another object's catch-up: no transition this one knows
            second.append(f"s{8 * step + 1}", ChatMessage.user("amber basil amber"))
            second.catch_up()
            cached, plain = _both(first, "amber basil")
            assert cached == plain
            first.catch_up()
            cached, plain = _both(first, "amber basil cedar")
            assert cached == plain


def _change_in_child(path: Path, key: str) -> None:
    with SessionStore(path, durable=False) as store:
        store.append(key, ChatMessage.user("amber basil cedar delta"))
        store.catch_up()


def test_another_process_catch_up_is_seen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "store"
    with SessionStore(path, clock=clock, durable=False) as store:
        _fill(store)
        before = _both(store, "amber basil cedar delta")
        assert before[0] == before[1]
        child = multiprocessing.get_context("fork").Process(target=_change_in_child, args=(path, "s2"))
        child.start()
        child.join()
        assert child.exitcode == 0
        cached, plain = _both(store, "amber basil cedar delta")
        assert cached == plain and cached != before


_steps = st.lists(st.tuples(st.sampled_from(["append", "remove", "update", "clear", "redact", "delete", "catch up",
                                             "rebuild"]),
                            st.integers(0, 23), st.lists(st.sampled_from(WORDS), min_size=1, max_size=5)),
                  min_size=1, max_size=14)


@given(steps=_steps, queries=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3, unique=True),
                                      min_size=1, max_size=3))
def test_queries_across_commits_rank_as_plain_ones(steps: list[tuple[str, int, list[str]]],
                                                   queries: list[list[str]]) -> None:
    """Random commands on sessions over several blocks, the index sometimes caught up (a state this object reached,
    whose decoded terms are carried over) and sometimes left behind (read through its batch, kept for the next
    query of the same state); after each, every query (sessions and messages) ranks as through a plain reader or a
    plain overlay of the same transaction."""
    with SessionStore.on_storage(MemoryStorage(Path("commits")), clock=FakeClock()) as store:
        _fill(store, 24)
        run: dict[str, Callable[[str, list[str]], object]] = {
            "append": lambda key, words: store.append(key, ChatMessage.user(" ".join(words))),
            "remove": lambda key, _: store.remove_last(key),
            "update": lambda key, words: store.update_last(key, ChatMessage.user(" ".join(words))),
            "clear": lambda key, _: store.clear_messages(key),
            "redact": lambda key, _: store.session_exists(key) and store.redact(key, "asked to"),
            "delete": lambda key, _: store.delete_session(key),
            "catch up": lambda _key, _words: store.catch_up(),
            "rebuild": lambda _key, _words: store.rebuild_projections(["search"]),
        }
        for name, number, words in steps:
            run[name](f"s{number}", words)
            for query in queries:
                cached, plain = _both(store, " ".join(query))
                assert cached == plain
