"""A batch's new terms: given their ids in the order they first come, whether the batch is fresh or later (stored
terms looked up beside new ones, all at once: the same ids as looked up one by one), and stored under their keys with
their entries, long terms' too."""

from __future__ import annotations

from pathlib import Path

import lmdb
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore.storage import MemoryStorage
from projections.search.formats.keys import term_of_entry
from projections.search.reader import IndexReader

from conftest import FakeClock


def test_new_terms_get_ids_in_order_and_their_entries(tmp_path: Path) -> None:
    long_one, long_two = "a" * 300, "b" * 250 + "c"
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("one", [ChatMessage("user", f"Alpha {long_one} beta alpha {long_one}")])
        store.catch_up()  # a fresh batch: every term new
        store.append_many("two", [ChatMessage("user", f"beta {long_two} gamma {long_one}"),
                                  ChatMessage("user", f"gamma {long_two}")])
        store.catch_up()  # a later batch: stored terms and new ones, each new one once however often it comes
        found = {word: sorted(m.key for m in store.search(SessionQuery(keyword=word)))
                 for word in ("alpha", long_one, long_two, "gamma")}
    assert found == {"alpha": ["one"], long_one: ["one", "two"], long_two: ["two"], "gamma": ["two"]}
    env = lmdb.open(str(tmp_path / "store"), readonly=True, lock=False, max_dbs=256)
    with env.begin() as txn:
        terms = dict(term_of_entry(bytes(key), bytes(value))
                     for key, value in txn.cursor(db=env.open_db(b"search.terms", txn=txn, create=False)))
    env.close()
    assert terms == {"alpha": 1, long_one: 2, "beta": 3, long_two: 4, "gamma": 5}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "a" * 300, "a" * 299 + "b", "delta", "epsilon"]),
                max_size=12),
       st.booleans())
def test_terms_looked_up_together_are_those_looked_up_one_by_one(asked: list[str], learn: bool) -> None:
    """``IndexReader.tids`` (what a later batch looks its terms up with, all at once) gives each term's ``tid``:
    stored terms (long ones among them) and absent ones, repeated or not, with the reader learning ids or not, and
    the cache holding some of them (learnt by an earlier reader) or none."""
    with SessionStore.on_storage(MemoryStorage(Path("tids")), clock=FakeClock()) as store:
        store.append_many("one", [ChatMessage("user", f"Alpha beta {'a' * 300} {'a' * 299}b gamma")])
        store.catch_up()
        index = store._search_index
        with store._environment.read() as txn:
            one_by_one = [IndexReader(index._spaces, index._term_ids, txn, learn).tid(term) for term in asked]
            reader = IndexReader(index._spaces, index._term_ids, txn, learn)
            together = reader.tids(asked)
            again = reader.tids(asked)  # what the first call learnt, if it learns, is read from the cache
    assert together == again == one_by_one
    assert [tid is None for tid in together] == [term in ("delta", "epsilon") for term in asked]
