"""A batch's new terms: given their ids in the order they first come, whether the batch is fresh or later (stored
terms looked up beside new ones), and stored under their keys with their entries, long terms' too."""

from __future__ import annotations

from pathlib import Path

import lmdb

from eventstore import ChatMessage, SessionQuery, SessionStore
from projections.search.formats.keys import term_of_entry


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
