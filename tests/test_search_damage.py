"""Damaged search index bytes that once ended in Python errors: each is now the store's ``StoreCorrupted``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted

from _damage import change_value

WORDS = "the store keeps every change as an event of its session message chunk log".split()


def _store(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        for number in range(12):
            words = " ".join(WORDS[(number * 3 + place) % len(WORDS)] for place in range(number % 5 + 8))
            store.append("a", ChatMessage.user(f"{words} store store"))
        store.catch_up()


def _flip(path: Path, database: bytes, key: bytes, offset: int, mask: int) -> None:
    def flipped(value: bytes) -> bytes:
        changed = bytearray(value)
        changed[offset] ^= mask
        return bytes(changed)

    change_value(path, database, key, flipped)


def _entries(path: Path, database: bytes) -> dict[bytes, bytes]:
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    try:
        with environment.begin() as txn:
            return dict(txn.cursor(db=environment.open_db(database, txn=txn, create=False)))
    finally:
        environment.close()


def test_a_chunk_whose_level_places_are_out_of_order_is_damage_verify_reports(tmp_path: Path) -> None:
    _store(tmp_path)
    docs = _entries(tmp_path, b"search.docs")
    key = bytes.fromhex("0000000100000000")
    assert len(docs[key]) == 346
    # Byte 310 of the session's first chunk (the places of its levels) changed, as a fuzzer found it.
    _flip(tmp_path, b"search.docs", key, 310, 0x68)
    with SessionStore(tmp_path, durable=False) as store:
        report = store.verify()
        assert not report.ok
        assert any("search index" in problem for problem in map(str, report.problems))
        for word in WORDS:  # a query reads the chunk's levels only when it needs them: an answer or the error
            with contextlib.suppress(StoreCorrupted):
                store.search_messages(word)


def test_a_message_count_below_a_terms_count_is_damage_not_a_math_error(tmp_path: Path) -> None:
    _store(tmp_path)
    meta = _entries(tmp_path, b"search.meta")
    assert b"messages" in meta
    # The index's message count drops from 12 to 4, below the 12 messages that hold "store".
    _flip(tmp_path, b"search.meta", b"messages", 0, 0x08)
    with SessionStore(tmp_path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search(SessionQuery("store"))
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search_messages("store")


@pytest.mark.usefixtures("terms_in_blocks")
def test_a_message_map_that_cannot_be_read_is_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from projections.search import formats

    monkeypatch.setattr(formats, "MAP_FROM", 1)
    _store(tmp_path)
    maps = _entries(tmp_path, b"search.maps")
    assert maps
    key = next(iter(maps))
    _flip(tmp_path, b"search.maps", key, 0, 0xFF)  # the serialized bitmap's cookie
    with SessionStore(tmp_path, durable=False) as store:
        report = store.verify()
        assert not report.ok and any("message map" in problem for problem in map(str, report.problems))
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            for first in WORDS:
                for second in WORDS:
                    store.search(SessionQuery(f"{first} {second}"))
