"""The search index's next term id, damaged to one a stored term has (or lost): a catch-up, or a search through
events not folded yet, that would give a new term an id a stored term has raises ``StoreCorrupted`` instead of
mixing the two terms' postings; ``verify`` names the search index, whose rebuild repairs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted
from projections.search.formats.keys import META_NEXT_TID, count_of_value, count_value

from _damage import change_value


def _lose(path: Path, database: bytes, key: bytes) -> None:
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            assert txn.delete(key, db=environment.open_db(database, txn=txn, create=False))
    finally:
        environment.close()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "lowered to the first id": lambda path: change_value(path, b"search.meta", META_NEXT_TID,
                                                         lambda _: count_value(1)),
    "lowered to the last id given": lambda path: change_value(
        path, b"search.meta", META_NEXT_TID, lambda raw: count_value(count_of_value(META_NEXT_TID, raw) - 1)),
    "lost": lambda path: _lose(path, b"search.meta", META_NEXT_TID),
}


def _keys(store: SessionStore, words: str) -> list[str]:
    return sorted(session.key for session in store.search(SessionQuery(words)))


def _indexed_then_damaged(tmp_path: Path, damage: str) -> Path:
    """A store whose sessions ``a`` and ``b`` are indexed, then its next term id damaged as ``DAMAGE[damage]``."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma")])
        store.append("b", ChatMessage.user("delta"))
        store.catch_up()
    DAMAGE[damage](path)
    return path


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_new_term_never_takes_the_id_of_a_stored_one(tmp_path: Path, damage: str) -> None:
    with SessionStore(_indexed_then_damaged(tmp_path, damage), durable=False) as store:
        report = store.verify()
        assert not report.ok and "search" in report.damaged
        assert any("next term id" in problem for problem in report.problems)
        store.append("c", ChatMessage.user("zeta eta"))
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            _keys(store, "zeta")  # through the event not folded yet
        with pytest.raises(StoreCorrupted, match="search index is damaged: its next term id"):
            store.catch_up()
        assert [message.content for message in store.load("c")] == ["zeta eta"]
        assert not store.verify().ok
        store.rebuild_projections(["search"])
        assert store.verify().ok
        assert _keys(store, "zeta") == ["c"] and _keys(store, "alpha") == ["a"] and _keys(store, "delta") == ["b"]
        store.append("d", ChatMessage.user("theta alpha"))
        store.catch_up()
        assert _keys(store, "alpha") == ["a", "d"] and _keys(store, "theta") == ["d"] and store.verify().ok


def test_a_catch_up_of_known_words_alone_is_refused_too(tmp_path: Path) -> None:
    """A batch takes a term whose id is not below the next one for a term new to the index, and writes its entries
    without the stored ones: so a batch that gives no new id is refused as well (it lost session ``a`` from the
    terms ``gamma`` and ``alpha``)."""
    with SessionStore(_indexed_then_damaged(tmp_path, "lowered to the first id"), durable=False) as store:
        store.append("c", ChatMessage.user("gamma alpha"))
        with pytest.raises(StoreCorrupted, match="search index is damaged: its next term id"):
            store.catch_up()
        store.rebuild_projections(["search"])
        assert _keys(store, "gamma") == ["a", "c"] and _keys(store, "alpha") == ["a", "c"]
        assert store.verify().ok
