"""Search index values cut short or naming a message their session's postings lack: each query that reads them
raises the store's ``StoreCorrupted`` (they ended in ``TypeError``, ``struct.error`` and ``IndexError``)."""

from __future__ import annotations

import struct
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted
from projections.search import formats

from _damage import change_value


def _store(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma")])
        store.append_many("b", [ChatMessage.user("alpha"), ChatMessage.user("gamma")])
        store.catch_up()



def _term_id(path: Path, term: str) -> int:
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    try:
        with environment.begin() as txn:
            value = txn.get(term.encode(), db=environment.open_db(b"search.terms", txn=txn, create=False))
    finally:
        environment.close()
    assert value is not None
    return int(struct.unpack_from("<I", value)[0])


def _queries_refuse(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search(SessionQuery("alpha beta"))
        assert not store.verify().ok  # reported, not raised


def test_a_terms_head_cut_short_is_damage(tmp_path: Path) -> None:
    _store(tmp_path)
    # The head is the term's message count (u32), then its blocks (u32 each): 6 bytes hold half a block.
    change_value(tmp_path, b"search.summary", struct.pack(">I", _term_id(tmp_path, "alpha")), lambda value: value[:6])
    _queries_refuse(tmp_path)


def test_a_head_without_its_message_count_is_damage(tmp_path: Path) -> None:
    _store(tmp_path)
    change_value(tmp_path, b"search.summary", struct.pack(">I", _term_id(tmp_path, "alpha")), lambda value: value[:2])
    _queries_refuse(tmp_path)


@pytest.mark.usefixtures("terms_in_blocks")
def test_a_block_of_a_summary_cut_short_of_its_head_is_damage(tmp_path: Path) -> None:
    _store(tmp_path)
    key = struct.pack(">II", 0, _term_id(tmp_path, "alpha"))
    change_value(tmp_path, b"search.blocks", key, lambda value: value[:2])
    _queries_refuse(tmp_path)


@pytest.mark.usefixtures("terms_in_blocks")
def test_a_tag_naming_a_message_past_the_sessions_postings_is_damage(tmp_path: Path) -> None:
    _store(tmp_path)
    # "alpha" is in one message of each session: its block holds sessions 1 and 2 (head 7 bytes, sessions 2 × u16,
    # best levels 2 bytes, then the tags). Session 1's tag goes from message 0 to message 5 of its two; "beta",
    # in both its messages, leaves the session open, so the query reads the message the tag names.
    block = struct.pack(">II", 0, _term_id(tmp_path, "alpha"))

    def retagged(value: bytes) -> bytes:
        assert len(value) == 7 + 2 * 2 + 2 + 2 and value[13] == 0
        return value[:13] + bytes((5,)) + value[14:]

    change_value(tmp_path, b"search.blocks", block, retagged)
    _queries_refuse(tmp_path)


def test_a_chunk_whose_message_ends_stop_short_of_its_postings_is_damage(tmp_path: Path) -> None:
    _store(tmp_path)
    # Session 1's chunk: flags, messages, low, high and exception counts (8 bytes), then where each message's low
    # postings end (u16 each). Its last message made to end where the first does leaves "gamma" in no message.
    def ended_early(value: bytes) -> bytes:
        assert value[1] == 2
        return value[:10] + value[8:10] + value[12:]

    change_value(tmp_path, b"search.docs", struct.pack(">II", 1, 0), ended_early)
    with SessionStore(tmp_path, durable=False) as store, \
            pytest.raises(StoreCorrupted, match="search index is damaged"):
        store.search_messages("gamma")


def test_an_event_whose_stream_id_is_past_the_index_is_damage_to_search_and_catch_up(tmp_path: Path) -> None:
    _store(tmp_path)
    # The log's last event record: format, flags, then its stream id (u64, big-endian) from byte 2. Its high byte
    # flipped names a stream no store reaches (ids count up from 1), past the index's u32 ids.
    def far_stream(value: bytes) -> bytes:
        assert value[2] == 0
        return value[:2] + bytes((value[2] ^ 1,)) + value[3:]

    with SessionStore(tmp_path, durable=False) as store:
        store.append("c", ChatMessage.user("alpha after"))  # indexed later, by a query or catch_up
    change_value(tmp_path, b"log.events", struct.pack(">Q", 5), far_stream)
    with SessionStore(tmp_path, durable=False) as store:
        for query in (lambda: store.search(SessionQuery("alpha")), lambda: store.search_messages("alpha"),
                      store.catch_up):
            with pytest.raises(StoreCorrupted):
                query()


@pytest.mark.usefixtures("terms_in_blocks")
def test_a_head_whose_blocks_are_out_of_order_is_damage_that_verify_reports(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of four sessions, so that a term of twelve sessions has a summary in three blocks, as a term of a
    # large store has in blocks of 4,096.
    monkeypatch.setattr(formats, "BLOCK_BITS", 2)
    with SessionStore(tmp_path, durable=False) as store:
        for number in range(12):
            store.append_many(f"s{number}", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma alpha")])
        store.catch_up()

    def reversed_blocks(value: bytes) -> bytes:
        blocks = struct.unpack_from("<3I", value, 4)
        assert list(blocks) == sorted(blocks)
        return value[:4] + struct.pack("<3I", *reversed(blocks))

    change_value(tmp_path, b"search.summary", struct.pack(">I", _term_id(tmp_path, "alpha")), reversed_blocks)
    with SessionStore(tmp_path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search(SessionQuery("alpha beta"))  # a ValueError of an empty max() before
        report = store.verify()
        assert not report.ok and any("out of order" in str(problem) for problem in report.problems)
