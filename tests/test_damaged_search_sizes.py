"""Search index values and keys of the wrong size, or not text where text is stored: every search, command and
``verify`` ends in ``StoreCorrupted`` or a reported problem, never ``struct.error``, ``UnicodeDecodeError`` or
``ValueError`` (as they did), and ``rebuild_projections(["search"])`` repairs the index.

The byte flips of ``test_garbage.py`` keep every value's size; these change it, as a torn or misdirected write
does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted

#: (named database, which of its entries (by index, in key order), how the entry changes: key, value → key, value)
Change = Callable[[bytes, bytes], tuple[bytes, bytes]]
DAMAGES: dict[str, tuple[bytes, int, Change]] = {
    "message count empty": (b"search.meta", 1, lambda key, value: (key, b"")),
    "message count too long": (b"search.meta", 1, lambda key, value: (key, value + b"\x01")),
    "session value empty": (b"search.sessions", 0, lambda key, value: (key, b"")),
    "session key too long": (b"search.sessions", 1, lambda key, value: (key + b"\x00", value)),
    "block key too long": (b"search.blocks", 0, lambda key, value: (key + b"\x00", value)),
    "term entry too long": (b"search.terms", 2, lambda key, value: (key, value + b"\xc3\x28")),
    "term key not text": (b"search.terms", 2, lambda key, value: (b"\xff" + key, value)),
    "term id zeroed": (b"search.terms", 2, lambda key, value: (key, bytes(len(value)))),
    "term id of another term": (b"search.terms", 2, lambda key, value: (key, b"\x01" + value[1:])),
}


def _build(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        for number in range(6):
            store.append_many(f"s{number}", [ChatMessage.user(f"alpha beta w{number}"),
                                             ChatMessage.user(f"beta gamma w{number} alpha")])
        store.catch_up()


def _damage(path: Path, database: bytes, entry: int, change: Change) -> None:
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            handle = environment.open_db(database, txn=txn, create=False)
            key, value = list(txn.cursor(db=handle))[entry]
            new_key, new_value = change(bytes(key), bytes(value))
            txn.delete(key, db=handle)
            txn.put(new_key, new_value, db=handle)
    finally:
        environment.close()


@pytest.mark.usefixtures("terms_in_blocks")
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_search_value_of_the_wrong_size_is_damage(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "store"
    _build(path)
    _damage(path, *DAMAGES[damage])
    with SessionStore(path, durable=False) as store:
        reads: list[Callable[[], object]] = [
            lambda: store.search(SessionQuery("alpha beta")),
            lambda: store.search(SessionQuery("gamma w1")),
            lambda: store.search_messages("alpha w2"),
            lambda: (store.remove_last("s1"), store.catch_up()),
            lambda: (store.redact("s2", "asked to forget"), store.catch_up()),
        ]
        refused = 0
        for read in reads:
            try:
                read()
            except StoreCorrupted as exc:
                assert "search" in str(exc)
                refused += 1
        report = store.verify()
        assert refused or not report.ok, "the damage was neither met nor reported"
        if not report.ok:
            assert report.damaged == {"search"}, report.problems
        store.rebuild_projections(["search"])
        assert store.verify().ok
        assert {found.key for found in store.search(SessionQuery("w3"))} == {"s3"}


def test_a_term_whose_id_was_zeroed_leaving_and_coming_back_in_one_batch_is_damage(tmp_path: Path) -> None:
    """The term's key looks up no id, so a message bringing it back gives it a new one, while the message taking
    it away empties its stored id: its key would be both written and deleted (a ``TypeError`` sorting them)."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("river alpha"), ChatMessage.user("beta")])
        store.catch_up()
    _damage(path, b"search.terms", 2, lambda key, value: (key, bytes(len(value))))  # alpha, beta, river
    with SessionStore(path, durable=False) as store:
        store.replace_messages("a", [ChatMessage.user("river gamma")])
        with pytest.raises(StoreCorrupted, match="search"):
            store.catch_up()
        store.rebuild_projections(["search"])
        assert store.verify().ok
        assert [found.key for found in store.search(SessionQuery("river"))] == ["a"]
