"""Terms stored whole (``formats.wholes``): a term in at most ``WHOLE_UP_TO`` messages keeps the summaries and message
maps of all its blocks in its head. Checked against a plain model of each term's sessions and messages through
catch-ups of a few messages at a time, across the threshold both ways; the shared sessions a query finds over the
joined keys are those it finds a block at a time; an index of the version before is rebuilt in this form."""

from __future__ import annotations

import struct
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.storage import MemoryStorage, ReadTransaction, WriteTransaction
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats.arrays import packed_u16s
from projections.search.formats.keys import WHOLE_MARK, id_key, whole_head
from projections.search.formats.maps import JOINED_BLOCKS, MAP_SHIFT, mapped_size
from projections.search.formats.summaries import LAST_TAG
from projections.search.formats.wholes import (
    Whole,
    stored_whole,
    unmapped_whole,
    whole_end,
    whole_ends,
    whole_value,
)
from projections.search.index import SearchIndex
from projections.search.planning import plan_query
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query, tokenize
from projections.search.writer import IndexWriter

from conftest import FakeClock, stream_id_of
from test_search import ReferenceSearch, as_search_code, run_script_step, search
from test_search_bulk_writer import Stored, stored_index

WORDS = ("amber", "basil", "cedar", "delta", "ember")


@pytest.fixture(autouse=True)
def small_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 sessions, maps from 2 sessions a block, and terms whole up to 6 messages: the sessions below span
    several blocks, some with maps, and their terms cross the threshold as messages come and go."""
    monkeypatch.setattr(formats, "BLOCK_BITS", 2)
    monkeypatch.setattr(formats, "MAP_FROM", 2)
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 6)


def _model(store: SessionStore, txn: ReadTransaction, keys: list[str]) -> dict[str, dict[int, set[int]]]:
    """Term → session id → the indices of its current messages holding the term: from the messages themselves."""
    found: dict[str, dict[int, set[int]]] = {}
    for key in keys:
        if not store.session_exists(key):
            continue
        sid = stream_id_of(store._log, txn, key)
        for index, message in enumerate(store.load(key)):
            for term in set(tokenize(message.content)):
                found.setdefault(term, {}).setdefault(sid, set()).add(index)
    return found


def _check_against_model(store: SessionStore, keys: list[str]) -> None:
    """Every term's stored form follows its count, and its sessions and message maps are the model's."""
    index = store._search_index
    with store._read() as txn:
        model = _model(store, txn, keys)
        reader = IndexReader(index._spaces, index._term_ids, txn)
        for term, sessions in model.items():
            tid = reader.tid(term)
            assert tid is not None, term
            df = sum(map(len, sessions.values()))
            summary = reader.summary(tid)
            assert summary is not None and reader.df(tid) == df
            numbers = sorted({sid >> formats.BLOCK_BITS for sid in sessions})
            assert isinstance(summary, Whole) == stored_whole(df, numbers) == (not reader.blocks_apart(tid)), term
            assert list(summary.sorted_sids()) == sorted(sessions)
            assert list(reader.blocks_of(tid)) == numbers
            for number in numbers:
                held = {sid: indices for sid, indices in sessions.items() if sid >> formats.BLOCK_BITS == number}
                wanted = {min(at, LAST_TAG) << MAP_SHIFT | sid & ((1 << formats.BLOCK_BITS) - 1)
                          for sid, indices in held.items() for at in indices}
                stored = reader.term_map(tid, number)
                assert (set(stored) if stored is not None else None) == (wanted if mapped_size(len(held)) else None)
    assert store.verify().ok


_commands = st.lists(st.tuples(st.sampled_from(["append", "append", "remove", "update", "clear"]), st.integers(0, 11),
                               st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_commands, min_size=1, max_size=5))
def test_catch_ups_of_a_few_messages_keep_each_term_as_the_model_has_it(
        steps: list[list[tuple[str, int, list[str]]]]) -> None:
    keys = [f"s{number}" for number in range(12)]
    with SessionStore.on_storage(MemoryStorage(Path("wholes")), clock=FakeClock()) as store:
        for number, key in enumerate(keys[:6]):
            store.append_many(key, [ChatMessage.user(f"{WORDS[number % 5]} {WORDS[(number + 1) % 5]}")])
        store.catch_up()
        _check_against_model(store, keys)
        for commands in steps:  # each a catch-up of a few messages
            for name, number, words in commands:
                key = keys[number]
                text = ChatMessage.user(" ".join(words))
                if name == "append" or not store.session_exists(key) or not store.load(key):
                    store.append(key, text)
                elif name == "remove":
                    store.remove_last(key)
                elif name == "update":
                    store.update_last(key, text)
                else:
                    store.clear_messages(key)
            store.catch_up()
            _check_against_model(store, keys)
        store.rebuild_projections(["search"])
        _check_against_model(store, keys)


@pytest.mark.parametrize("late", [0, 1, 2])
def test_a_block_new_to_a_term_between_or_around_its_stored_blocks_keeps_them_in_order(late: int) -> None:
    """A term stored whole in the first and third of three blocks gains a session in the middle one, then in the
    others, a catch-up at a time: each head keeps its blocks in order, as the model has them."""
    keys = [f"s{number}" for number in range(12)]  # 4 sessions a block: blocks 0, 1 and 2 (the stream ids from 1)
    with SessionStore.on_storage(MemoryStorage(Path("between")), clock=FakeClock()) as store:
        for number, key in enumerate(keys):
            store.append(key, ChatMessage.user("amber" if number in (1, 9) else "basil"))
        store.catch_up()
        _check_against_model(store, keys)
        for number in (5, 1 + 4 * late, 2 + 4 * late):
            store.append(keys[number], ChatMessage.user("amber cedar"))
            store.catch_up()
            _check_against_model(store, keys)


@settings(max_examples=60, deadline=None)
@given(sessions=st.lists(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
                                  min_size=1, max_size=4), min_size=2, max_size=24),
       whole_up_to=st.sampled_from([0, 4, 8, 1 << 20]), words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=3,
                                                                      unique=True))
def test_the_joined_keys_find_the_shared_sessions_found_a_block_at_a_time(
        sessions: list[list[str]], whole_up_to: int, words: list[str]) -> None:
    """Over terms stored whole, in blocks, or some of each, the sessions where two terms may share a message are
    those a block at a time finds; and queries rank as a plain BM25 does."""
    formats.WHOLE_UP_TO = whole_up_to  # restored by the fixture's monkeypatch
    with SessionStore.on_storage(MemoryStorage(Path("joined")), clock=FakeClock()) as store:
        for number, texts in enumerate(sessions):
            store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])
        store.catch_up()
        index = store._search_index
        with store._read() as txn:
            reader = IndexReader(index._spaces, index._term_ids, txn)
            plan = plan_query(reader, parse_query(" ".join(words)))
            if plan is not None and len(plan.terms) > 1:
                assert search_queries._sessions_sharing(reader, plan) == \
                    search_queries._sessions_sharing_by_block(reader, plan)
        keyword = " ".join(words)
        assert ReferenceSearch(store).search(keyword, 5) == search(store, keyword, 5)


def _pairs_searched(store: SessionStore) -> list[list[str]]:
    """The results of a 2-word search of every pair of ``WORDS``."""
    return [search(store, f"{one} {other}", 5) for one in WORDS for other in WORDS if one < other]


def _ten_sessions_searched(store: SessionStore) -> list[list[str]]:
    """Ten sessions of ``WORDS`` and a rare word appended and indexed; ``_pairs_searched`` of them."""
    for number in range(10):
        store.append_many(f"s{number}", [ChatMessage.user(f"{WORDS[number % 5]} {WORDS[(number + 2) % 5]} rare"),
                                         ChatMessage.user(WORDS[number % 3])])
    store.catch_up()
    return _pairs_searched(store)


def test_an_index_of_code_version_6_is_rebuilt_with_terms_stored_whole(store_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose index version 6 wrote (every term in blocks) rebuilds it when opened: its rare terms are then
    stored whole, nothing of them in the blocks' spaces, and it verifies and ranks as before."""
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 0)  # what version 6 stored
    with SessionStore(store_path) as store:
        before = _ten_sessions_searched(store)
        spaces = store._search_index._spaces
        as_search_code(store, 6)
        with store._environment.read() as txn:
            assert txn.count(spaces.blocks) and txn.count(spaces.maps)
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 12)
    with SessionStore(store_path) as store:
        assert store.stats().checkpoints["search"].code_version == SearchIndex.code_version
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            rare = reader.tid("rare")
            assert rare is not None and not reader.blocks_apart(rare)
            assert isinstance(reader.summary(rare), Whole)
            assert all(not reader.blocks_apart(tid) for _, tid in reader.stored_terms() if reader.df(tid) <= 12)
            in_blocks = {tid for _, tid in reader.stored_terms() if reader.blocks_apart(tid)}
            assert {tid for _, tid in reader.stored_blocks()} == in_blocks
        assert store.verify().ok
        assert _pairs_searched(store) == before


def _as_version_7(head: bytes) -> bytes:
    """A head stored whole as code version 7 laid it out: its block numbers and their session counts u32 each."""
    blocks = struct.unpack_from("<I", head, 8)[0]
    narrow = struct.unpack_from(f"<{2 * blocks}H", head, 20)
    return head[:20] + struct.pack(f"<{2 * blocks}I", *narrow) + head[20 + 4 * blocks:]


def test_an_index_of_code_version_7_is_rebuilt_with_narrow_heads(store_path: Path) -> None:
    """A store whose heads stored whole version 7 wrote (block numbers and counts u32 each), which this code cannot
    read, rebuilds its index when opened: the heads are then those this code writes, and it verifies and ranks as
    before."""
    with SessionStore(store_path) as store:
        before = _ten_sessions_searched(store)
        spaces = store._search_index._spaces
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            heads = {tid: bytes(head) for _, tid in reader.stored_terms()
                     if (head := reader.head(tid)) is not None and whole_head(head)}
        assert any(len(Whole(head).block_numbers()) > 1 for head in heads.values())

        def widen(txn: WriteTransaction) -> None:
            for tid, head in heads.items():
                txn.put(spaces.summary, id_key(tid), _as_version_7(head))

        store._environment.write(widen)
        as_search_code(store, 7)
    for head in heads.values():
        with pytest.raises(StoreCorrupted):
            Whole(_as_version_7(head))
    with SessionStore(store_path) as store:
        assert store.stats().checkpoints["search"].code_version == SearchIndex.code_version == 8
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            assert {tid: reader.head(tid) for tid in heads} == heads
        assert store.verify().ok
        assert _pairs_searched(store) == before


def test_a_head_holds_the_greatest_block_number_and_count_a_term_stored_whole_can_have(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The last block a term stored whole may have (``JOINED_BLOCKS - 1``) full of sessions, at the stored block
    size, comes back from its head as it went in: its number, its count and its sessions, and where a later
    session joins it."""
    monkeypatch.setattr(formats, "BLOCK_BITS", 12)
    full = 1 << formats.BLOCK_BITS
    last = JOINED_BLOCKS - 1
    head = whole_value(full + 1, [3, last], [1, full],
                       [(packed_u16s([5]), b"\x01", b"\x00"), (packed_u16s(range(full)), bytes(full), bytes(full))],
                       BitMap())
    whole = Whole(head)
    assert whole.block_sizes() == [(3, 1), (last, full)]
    assert whole_end(head) == (full + 1, last, full, full - 1)
    assert whole._all_sids().tolist() == [3 << formats.BLOCK_BITS | 5, *range(last << formats.BLOCK_BITS,
                                                                               (last + 1) << formats.BLOCK_BITS)]


@given(st.lists(st.tuples(st.integers(1, 3), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4),
       st.integers(1, 1 << 20))
def test_a_head_without_maps_joined_once_is_the_general_heads(blocks: list[tuple[int, bytes]], df: int) -> None:
    """``unmapped_whole`` (a term none of whose blocks has a map, its columns in one run) gives the bytes of
    ``whole_value`` with no keys, and they read back as its blocks."""
    numbers = list(accumulate(gap for gap, _ in blocks))  # ascending
    counts = [len(levels) for _, levels in blocks]
    offsets = packed_u16s([offset for count in counts for offset in range(count)])
    levels = b"".join(levels for _, levels in blocks)
    tags = bytes(len(levels))
    head = unmapped_whole(df, numbers, counts, (offsets, levels, tags))
    assert head == whole_value(df, numbers, counts, [(offsets, levels, tags)], BitMap())
    assert Whole(head).block_sizes() == list(zip(numbers, counts))


def _whole_end_or_none(raw: bytes | None) -> tuple[int, int, int, int] | None:
    """``whole_end`` of a head, ``None`` where it is none, is not stored whole, or fails its checks."""
    if raw is None or not whole_head(raw):
        return None
    try:
        return whole_end(raw)
    except StoreCorrupted:
        return None


def _marked(head: bytes, mark: int) -> bytes:
    """``head`` with its second u32 (``WHOLE_MARK`` in a head stored whole) ``mark``."""
    return head[:4] + mark.to_bytes(4, "little") + head[8:]


_head = st.builds(
    lambda df, blocks, keys: whole_value(df, list(accumulate(gap for gap, _ in blocks)), [count for _, count in blocks],
                                         [(packed_u16s(range(count)), bytes(count), bytes(count))
                                          for _, count in blocks], BitMap(keys)),
    st.integers(0, 1 << 20), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=0, max_size=4),
    st.lists(st.integers(0, (1 << 32) - 1), max_size=3))
#: A head as stored, or damaged: bytes of it changed, cut or added, or none at all.
_heads_maybe_damaged = st.one_of(
    _head,
    st.tuples(_head, st.integers(0, 40), st.integers(0, 255)).map(
        lambda held: held[0][:held[1]] + bytes([held[2]]) + held[0][held[1] + 1:]),
    st.tuples(_head, st.integers(0, 60)).map(lambda held: held[0][:held[1]]),
    _head.map(lambda head: head + b"\x00"),
    st.none(), st.binary(max_size=40))


@given(st.lists(_heads_maybe_damaged, max_size=12))
@example([whole_value(1, [last], [1], [(packed_u16s([7]), b"\x01", b"\x00")], BitMap())
          for last in (JOINED_BLOCKS - 1, JOINED_BLOCKS)]
         + [whole_value(2, [3, 3], [1, 1], [(packed_u16s([1, 2]), b"\x01\x01", b"\x00\x00")], BitMap())]
         + [_marked(whole_value(1, [3], [1], [(packed_u16s([7]), b"\x01", b"\x00")], BitMap()), mark)
            for mark in (WHOLE_MARK, WHOLE_MARK - 1)])
def test_the_ends_of_many_heads_read_at_once_are_each_ones(heads: list[bytes | None]) -> None:
    """``whole_ends`` (the heads a later batch extends, read at once) gives each head's ``whole_end`` where it is
    a head stored whole that passes its checks, and marks every other one: not stored whole, damaged in any way
    (blocks out of order or repeated, a block past the joined keys' or without sessions, counts that do not add up,
    a size that does not fit), or none."""
    found = whole_ends(heads)
    assert [(int(df), int(last), int(sessions), int(offset)) if whole else None
            for whole, df, last, sessions, offset in zip(*found)] == list(map(_whole_end_or_none, heads))


def test_a_damaged_head_of_a_term_stored_whole_is_reported(store_path: Path) -> None:
    """A term stored whole whose joined keys differ from its sessions' (a key taken out) is reported by ``verify``,
    as is a head cut short."""
    with SessionStore(store_path) as store:
        for number in range(3):
            store.append_many(f"s{number}", [ChatMessage.user("amber basil"), ChatMessage.user("amber")])
        store.catch_up()
        spaces = store._search_index._spaces
        with store._environment.read() as txn:
            tid = store._search_index.reader(txn).tid("amber")
            assert tid is not None
            stored = txn.get(spaces.summary, id_key(tid))
            assert stored is not None
            head = bytes(stored)
        whole = Whole(head)
        keys = whole.keys().copy()
        keys.discard(keys.min())
        damaged = head[:len(head) - len(whole.keys().serialize())] + keys.serialize()
        damaged = damaged[:16] + (len(keys.serialize())).to_bytes(4, "little") + damaged[20:]
        for value in (damaged, head[:-1]):
            def put(txn: WriteTransaction, value: bytes = value) -> None:
                txn.put(spaces.summary, id_key(tid), value)

            store._environment.write(put)
            assert not store.verify().ok


_script = st.lists(st.tuples(st.integers(0, 11), st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)
                                                           .map(" ".join), min_size=1, max_size=3),
                             st.sampled_from(["append"] * 3 + ["remove_last", "update_last", "clear"])),
                   min_size=1, max_size=16)


def _built(script: list[tuple[int, list[str], str]], every: int) -> tuple[Stored, Stored]:
    """The index of ``script``, caught up every ``every`` steps and at the end, then rebuilt."""
    with SessionStore.on_storage(MemoryStorage(Path("twice")), clock=FakeClock()) as store:
        for number, (session, texts, command) in enumerate(script, 1):
            run_script_step(store, f"s{session}", texts, command)
            if number % every == 0:
                store.catch_up()
        store.catch_up()
        caught_up = stored_index(store)
        store.rebuild_projections(["search"])
        assert store.verify().ok
        return caught_up, stored_index(store)


@settings(max_examples=40, deadline=None)
@given(script=_script, every=st.sampled_from([1, 3, 100]))
def test_a_flush_run_again_writes_what_one_flush_does(script: list[tuple[int, list[str], str]], every: int) -> None:
    """A batch's flush run again (as when its transaction is retried once the map has grown) writes what it built
    the first time, and leaves every stored byte as one flush does, caught up and rebuilt."""
    once = _built(script, every)
    flush = IndexWriter.flush

    def twice(writer: IndexWriter, txn: WriteTransaction) -> None:
        flush(writer, txn)
        flush(writer, txn)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(IndexWriter, "flush", twice)
        assert _built(script, every) == once


def test_a_batch_changed_after_a_flush_builds_its_heads_again() -> None:
    """What a flush built (heads stored whole among it) is not written again by a later flush of the batch once
    the batch has changed."""

    def appends(texts: list[list[str]]) -> Stored:
        with SessionStore.on_storage(MemoryStorage(Path("changed")), clock=FakeClock()) as store:
            index = store._search_index

            def body(txn: WriteTransaction) -> None:
                batch, sid = index.prepare(txn), 0
                for flushed in texts:
                    for text in flushed:
                        sid += 1
                        batch.append(sid, [text], sid)
                    batch.flush(txn)

            store._environment.write(body)
            return stored_index(store)

    first, then = ["amber basil", "amber"], ["amber cedar", "basil"]
    assert appends([first, then]) == appends([first + then])


@pytest.mark.parametrize("change", ["remove_last", "clear", "touch"])
def test_a_batch_changed_after_its_size_was_taken_writes_the_change(change: str) -> None:
    """What ``written_bytes`` built for the write is built again once the batch changes in any way after it (a
    removal, a clear, a session's time): the stored bytes are those of one flush of the changed batch."""

    def written(measured: bool) -> Stored:
        with SessionStore.on_storage(MemoryStorage(Path("changed")), clock=FakeClock()) as store:
            index = store._search_index

            def body(txn: WriteTransaction) -> None:
                batch = index.prepare(txn)
                batch.append(1, ["amber basil", "amber"], 1)
                batch.append(2, ["amber cedar"], 2)
                if measured:
                    assert batch.written_bytes() > 0
                if change == "touch":
                    batch.touch(2, 99)
                else:
                    getattr(batch, change)(1)
                batch.flush(txn)

            store._environment.write(body)
            return stored_index(store)

    assert written(measured=True) == written(measured=False)


def test_a_reader_reads_the_form_of_a_terms_head_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A query asks a reader for each block of a term stored in blocks (its summary there, its message map): the
    reader tells a head stored whole from one stored in blocks once a term, not once a block, and answers as a
    reader that tells it again each time (a plain BM25 of the same sessions)."""
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 2)  # "amber" in blocks, "ember" whole
    with SessionStore.on_storage(MemoryStorage(Path("heads")), clock=FakeClock()) as store:
        for number in range(24):  # blocks of four sessions
            text = "amber basil" if number % 2 else "amber cedar amber"
            store.append_many(f"s{number}", [ChatMessage.user(text), ChatMessage.user("ember" * (number < 2))])
        store.catch_up()
        index = store._search_index
        told: list[bytes] = []

        def telling(value: bytes) -> bool:
            told.append(value)
            return whole_head(value)

        monkeypatch.setattr("projections.search.reader.whole_head", telling)
        with store._read() as txn:
            reader = IndexReader(index._spaces, index._term_ids, txn)
            plan = plan_query(reader, parse_query("amber basil ember"))
            assert plan is not None
            blocks = {term.term: list(reader.blocks_of(term.tid)) for term in plan.terms}
            assert len(blocks["amber"]) == 7 and len(blocks["ember"]) == 1  # stream ids from 1
            assert not reader.blocks_apart(plan.terms[-1].tid)  # "ember" is stored whole
            told.clear()
            for term in plan.terms:
                for number in blocks[term.term]:
                    reader.block_raw(term.tid, number)
                    reader.term_map(term.tid, number)
            assert told == []  # every term's form was told when the plan read it
        assert ReferenceSearch(store).search("amber basil ember", 5) == search(store, "amber basil ember", 5)


def _decoded_whole(store: SessionStore, word: str) -> Whole:
    """The term of ``word``, stored whole, as a reader decodes it."""
    index = store._search_index
    with store._read() as txn:
        reader = IndexReader(index._spaces, index._term_ids, txn)
        tid = reader.tid(word)
        assert tid is not None
        whole = reader.summary(tid)
    assert isinstance(whole, Whole)
    return whole


def test_a_term_stored_whole_finds_its_spread_sessions_without_a_map_once() -> None:
    """The sessions of a term stored whole whose blocks have no map and whose tag names no one message are found
    once a decoded term (every query of several words asks for them), and are those its entries say."""
    with SessionStore.on_storage(MemoryStorage(Path("spread")), clock=FakeClock()) as store:
        store.append_many("s0", [ChatMessage.user("amber"), ChatMessage.user("amber basil")])
        store.append_many("s1", [ChatMessage.user("basil")])  # "amber" in one session of its block: no map there
        store.catch_up()
        whole = _decoded_whole(store, "amber")
        spread = whole.unmapped_spread()
        assert spread is whole.unmapped_spread()
        assert list(spread) == [sid for sid, code in whole.entries().items() if code & 0xFF >= LAST_TAG]
        with store._read() as txn:
            assert list(spread) == [stream_id_of(store._log, txn, "s0")]


def test_a_query_asking_for_a_terms_keys_while_another_builds_them_gets_them_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoded term is shared by every query of its stored state, in any thread: one asking for its query keys
    while another query is building them (here: from inside the build) gets them all, the keys of its blocks
    without a map too, never the maps' keys alone (which left sessions out of a query's shared ones)."""
    with SessionStore.on_storage(MemoryStorage(Path("racing")), clock=FakeClock()) as store:
        for number in range(8):  # amber in three sessions of the first block (a map) and one of the second (none)
            store.append(f"s{number}", ChatMessage.user("amber" if number in (0, 1, 2, 5) else "filler"))
        store.catch_up()
        whole = _decoded_whole(store, "amber")
        built = Whole._in_unmapped
        meanwhile: list[BitMap] = []
        asked: list[bool] = []

        def another_query_asks(self: Whole) -> Any:
            if not asked:  # once: the other query's own build comes here too
                asked.append(True)
                meanwhile.append(BitMap(self.query_keys()))
            return built(self)

        monkeypatch.setattr(Whole, "_in_unmapped", another_query_asks)
        keys = whole.query_keys()
    assert len(keys) > len(whole.keys())  # the unmapped block's key is among them
    assert meanwhile == [keys]
