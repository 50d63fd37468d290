"""What queries derive from the decoded state, kept where nothing that could change it did: a query through a thread's
kept batch of pending events starts from what the batch's previous query read and reads again only the blocks of the
events folded since; a state a catch-up of this store object reached takes a term's joined sessions and repeated
messages by level from the earlier state's decode outside the blocks the catch-up changed. Each query ranks (sessions,
scores and message hits) as the same query through a plain reader or a plain overlay of the same transaction, and as a
plain BM25; the derivations are counted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from pyroaring import BitMap

from eventstore import ChatMessage, SessionQuery, SessionStore
from projections.search import index as search_index
from projections.search import writer
from projections.search.formats import summaries
from projections.search.formats.maps import JOINED_SHIFT
from projections.search.index import CachedReader, _LevelTable
from projections.search.reader import IndexReader

from test_search import ReferenceSearch, search
from test_search_by_messages import message_path
from test_search_query_cache_commits import _block, _both

QUERIES = ("the of", "the of w1", "of w2 the")


def _fill(store: SessionStore) -> None:
    """16 sessions over 4 blocks (of 4), where "the" and "of" repeat at many levels."""
    for number in range(16):
        store.append_many(f"s{number}", [ChatMessage.user("the the of " + "w1 " * (number % 5)),
                                         ChatMessage.user("of the of w2 " + "w3 " * (number % 3))])
    store.catch_up()


def _checked(store: SessionStore) -> None:
    for keyword in QUERIES:
        cached, plain = _both(store, keyword, 5)
        assert cached == plain, keyword
        assert search(store, keyword, 5) == ReferenceSearch(store).search(keyword, 5), keyword


def _counted(reads: list[int], plain: Callable[[writer.IndexWriter, int, int], object], block_first: bool
             ) -> Callable[[writer.IndexWriter, int, int], object]:
    """``plain``, noting the block it reads (its first argument, else its second) in ``reads``."""
    def counted(self: writer.IndexWriter, first: int, second: int) -> object:
        reads.append(first if block_first else second)
        return plain(self, first, second)

    return counted


@contextmanager
def _batch_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The blocks whose messages by level, terms' blocks and repeats queries read through a batch."""
    reads: list[int] = []
    for name in ("level_messages", "block_raw", "term_repeats"):
        monkeypatch.setattr(writer.IndexWriter, name,
                            _counted(reads, getattr(writer.IndexWriter, name), name == "level_messages"))
    yield reads


def test_a_query_through_a_kept_batch_reads_again_only_the_blocks_folded_since(
        scratch_store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = scratch_store
    with message_path(1, 2) as answered, _batch_reads(monkeypatch) as reads:
        _fill(store)
        store.append("s1", ChatMessage.user("the the the of"))  # pending: queries read it through their batch
        store.search(SessionQuery("the of w1", 5))
        assert reads and set(reads) == {_block(store, "s1")}
        _checked(store)  # a plain overlay is a batch too: its reads are not counted
        for key, text in (("s6", "of of the w1"), ("s13", "the w2 w2"), ("s6", "the of")):
            store.append(key, ChatMessage.user(text))
            del reads[:]
            store.search(SessionQuery("the of w1", 5))  # one query: it reads the levels and the terms' blocks
            assert reads and set(reads) == {_block(store, key)}, "only the block folded since is read again"
            _checked(store)
        store.remove_last("s13")  # a removal folded into the kept batch moves messages between levels
        _checked(store)
        store.update_last("s1", ChatMessage.user("w1 w2 w3 the of the of of"))
        _checked(store)
    assert answered


def test_a_catch_up_patches_what_queries_derived_of_the_terms(scratch_store: SessionStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A term whose block a catch-up changed keeps its joined sessions and its repeated messages by level outside that
    block (read again there), in a state the catch-up reached, and ranks as a fresh reader does."""
    store = scratch_store
    joined, grouped = [], []
    plain_join, plain_groups = summaries._absolute_all, IndexReader.repeated_at

    def counted_join(*args: object) -> bytes:
        joined.append(1)
        return plain_join(*args)  # type: ignore[arg-type]

    def counted_groups(self: IndexReader, tid: int, level: int) -> BitMap | None:
        grouped.append(level)
        return plain_groups(self, tid, level)

    monkeypatch.setattr(summaries, "_absolute_all", counted_join)
    monkeypatch.setattr(IndexReader, "repeated_at", counted_groups)
    with message_path(1, 2):
        _fill(store)
        _checked(store)
        for key, text in (("s5", "the the the of"), ("s9", "of of w1 the"), ("s5", "w2 w3 w1 the of the")):
            store.append(key, ChatMessage.user(text))
            store.catch_up()
            del joined[:], grouped[:]
            assert search(store, "the of w1", 5) == ReferenceSearch(store).search("the of w1", 5)
            assert not joined and not grouped, "derived again whole after a catch-up of one block"
            _checked(store)
        store.remove_last("s5")
        store.catch_up()
        _checked(store)


def _level_table(store: SessionStore) -> _LevelTable:
    """The level table as the queries of the store's current state read it (a kept entry)."""
    def read(view: IndexReader, _txn: object) -> _LevelTable:
        assert isinstance(view, CachedReader)
        return view._decoded.level_table(view)

    return store._search.query(read)


def _entry_sessions(table: _LevelTable) -> set[tuple[int, int]]:
    """The sessions (block, offset) the table's entries are of."""
    return {(key >> JOINED_SHIFT, key & 0xFFF) for key in table.keys.tolist()}


def test_a_catch_up_patches_the_level_table_with_the_sessions_it_changed(
        scratch_store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catch-ups of appends to sessions of some blocks and not others: the level table of each next state shares
    the earlier one's arrays, reads no block's levels again, and holds entries for the changed sessions' keys alone;
    queries rank as a fresh reader's."""
    store = scratch_store
    monkeypatch.setattr(search_index, "_DENSE_UP_TO", 1 << 30)  # every block as an array, even of 4 sessions
    with message_path(1, 2):
        _fill(store)
        before = _level_table(store)
        assert not len(before.keys)
        reads: list[int] = []
        monkeypatch.setattr(IndexReader, "level_messages", _counted(reads, IndexReader.level_messages, True))
        for keys in (["s5"], ["s1", "s9"], ["s5", "s14"]):
            for key in keys:
                store.append(key, ChatMessage.user("the of w1 w2 w3 w3 w2 " + "w1 " * (int(key[1:]) % 3)))
            store.catch_up()  # which reads the changed blocks' levels to write them
            del reads[:]
            after = _level_table(store)
            assert after.flat is before.flat and not reads, "the arrays shared, no block's levels read again"
            with store._read() as txn:
                sids = [store._catalog.stream_of_key(txn, key)[0] for key in keys]  # type: ignore[index]
            assert _entry_sessions(after) == _entry_sessions(before) | {(sid >> 2, sid & 3) for sid in sids}
            _checked(store)
            before = after
