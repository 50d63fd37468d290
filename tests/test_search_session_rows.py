"""A search orders the sessions that tie on score by their catalog rows' last activity, the rows its results'
metadata come from (``catalog.SessionRows``, one read a session): the times the search index keeps too, so the
order is the index's own tie-break's, after any history (forks, restores, replacements, redactions of a live session
and of an old life, imports whose times go back, a clock that goes back), through a current index or one a few
events behind."""

from __future__ import annotations

import contextlib
import struct
import tempfile
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionExists, SessionNotFound, SessionQuery, SessionStore, StoreCorrupted
from eventstore.events import MessageAppended
from eventstore.storage import ReadTransaction, Space
from projections.catalog import _keys_entry
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

from _damage import change_value
from conftest import FakeClock
from test_damaged_catalog_row_emptied import position_of
from test_listing import put_first_catalog_row

_KEYS = [f"s{number}" for number in range(8)]
#: Few words, so that many sessions hold the same messages and tie on score.
_TEXTS = st.sampled_from(["red", "red blue", "blue", "red red blue", "green", "blue green red"])

_STEPS = st.one_of(
    st.tuples(st.sampled_from(["append", "update_last", "replace", "fork", "import"]), st.sampled_from(_KEYS), _TEXTS),
    st.tuples(st.sampled_from(["rename", "running", "remove_last", "clear", "delete", "redact", "restore", "back",
                               "catch_up"]), st.sampled_from(_KEYS), st.just("")),
)


def _step(store: SessionStore, clock: FakeClock, step: tuple[str, str, str], tick: bool) -> None:
    """One command; the clock moves by a second or not at all, so activities tie too (then the stream id decides),
    or goes back (``back``); an import records times earlier than the store's, its last the earliest."""
    command, key, text = step
    if tick:
        clock.advance(seconds=1)
    if command == "append":
        store.append(key, ChatMessage.user(text))
    elif command == "catch_up":
        store.catch_up()
    elif command == "back":
        clock.advance(seconds=-3)
    elif command == "import":
        imported = f"{key}.{len(store.list_sessions())}"
        store.import_sessions({imported: [(clock() - timedelta(seconds=1), MessageAppended(ChatMessage.user(text))),
                                          (clock() - timedelta(seconds=9), MessageAppended(ChatMessage.user("red")))]})
    elif command == "fork":
        with contextlib.suppress(SessionExists, SessionNotFound):  # the target lives, or the source does not
            store.fork(key, _KEYS[(_KEYS.index(key) + 1) % len(_KEYS)])
    elif command in ("redact", "restore") and store.history(key):  # an old life's too
        if command == "redact":
            store.redact(key, "test")
        else:
            store.restore(key, version=1 + len(store.history(key)) // 2)
    elif not store.session_exists(key):
        return
    elif command == "rename":
        store.set_session_name(key, f"name of {key}")
    elif command == "running":
        store.set_session_state(key, "running", "turn")
    elif command == "replace":
        store.replace_messages(key, [ChatMessage.user(text), ChatMessage.user("red")])
    elif command == "delete":
        store.delete_session(key)
    elif not store.load(key):
        return
    elif command == "update_last":
        store.update_last(key, ChatMessage.user(text))
    elif command == "remove_last":
        store.remove_last(key)
    elif command == "clear":
        store.clear_messages(key)


def _index_order(store: SessionStore, keyword: str, limit: int) -> tuple[list[str], dict[int, int], dict[int, int]]:
    """What the index ranks with its own activities, read as a search reads it; and the activities of every
    session with messages, from the index and from the catalog's rows."""

    def run(view: IndexReader, txn: ReadTransaction) -> tuple[list[str], dict[int, int], dict[int, int]]:
        found = store._search_index.search_sessions(view, parse_query(keyword), limit)
        heads = dict(store._catalog.heads(txn))
        with_messages = [sid for sid, head in heads.items() if head.message_count]
        return ([heads[sid].key for sid, _ in found], view.activities(with_messages),
                store._catalog.rows(txn).activities(with_messages))

    return store._search.query(run)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_STEPS, st.booleans()), min_size=1, max_size=60),
       st.lists(st.sampled_from(["red", "blue", "red blue", "green red", "blue green red"]), min_size=1, max_size=3),
       st.integers(1, 5))
def test_ties_order_as_the_index_orders_them_and_results_carry_the_catalogs_metadata(
        steps: list[tuple[tuple[str, str, str], bool]], keywords: list[str], limit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            for step, tick in steps:
                _step(store, clock, step, tick)
            for keyword in keywords:
                found = store.search(SessionQuery(keyword, limit))
                expected, from_index, from_rows = _index_order(store, keyword, limit)
                assert [metadata.key for metadata in found] == expected, keyword
                assert found == [store.get_session_metadata(metadata.key) for metadata in found]
                assert from_rows == from_index


def test_rows_are_read_once_for_the_ties_and_the_results(scratch_store: SessionStore, clock: FakeClock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions that tie (``a``, ``b``, ``c``) are read once: their activities and then their metadata come from
    the same rows; the one that does not (``d``) is read for its metadata alone."""
    for key in ("a", "b", "c"):
        scratch_store.append(key, ChatMessage.user("same words"))
        clock.advance(seconds=1)
    scratch_store.append("d", ChatMessage.user("same same words"))
    scratch_store.catch_up()
    reads: list[bytes] = []

    with scratch_store._read() as txn:
        transaction = type(txn)

    def counted(read: Callable[[ReadTransaction, Space, list[bytes]], Any]) -> Any:
        def reading(self: ReadTransaction, space: Space, keys: Iterable[bytes]) -> Any:
            keys = list(keys)
            if space is scratch_store._catalog._sessions:
                reads.extend(keys)
            return read(self, space, keys)
        return reading

    for name in ("get_many", "get_each"):  # whichever of the batched reads the positions come by
        monkeypatch.setattr(transaction, name, counted(getattr(transaction, name)))
    assert ["d", "c", "b", "a"] == [found.key for found in scratch_store.search(SessionQuery("same"))]
    assert len(reads) == len(set(reads)) == 4


def test_a_tie_with_a_damaged_last_activity_says_the_catalog_is_damaged(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        store.append("tg:1", ChatMessage.user("first"))
        store.append("tg:2", ChatMessage.user("first"))
        store.catch_up()
    put_first_catalog_row(store_path, b'"tg:1",null,"2026-12-04T00:00:00+00:00",null,1,1,null,null,null')
    with SessionStore(store_path) as store, pytest.raises(StoreCorrupted, match="session catalog is damaged"):
        store.search(SessionQuery("first"))


@pytest.mark.parametrize("damage", ["another stream's position", "cut short", "emptied"])
@pytest.mark.parametrize(("keyword", "damaged"), [("same", "a"), ("alpha", "c")], ids=["a tie", "a result alone"])
def test_a_damaged_stream_entry_is_damage_to_a_search_not_another_sessions_metadata(
        store_path: Path, keyword: str, damaged: str, damage: str) -> None:
    """A ``catalog.sessions`` entry (stream id → position) naming another session's position, cut short or emptied
    (an empty entry is not an absent one): the search that reads it (for a tie's activity, or for a result's row
    alone) says the catalog is damaged, however many entries it checks at once, rather than return the other
    session's metadata or leave the session out."""
    with SessionStore(store_path) as store:
        for key, text in (("a", "same words"), ("b", "same words"), ("c", "alpha")):
            store.append(key, ChatMessage.user(text))
        store.catch_up()
        assert [found.key for found in store.search(SessionQuery(keyword))] == (
            ["b", "a"] if keyword == "same" else ["c"])
    own, other = position_of(store_path, damaged), position_of(store_path, "b")
    change_value(store_path, b"catalog.sessions", own[8:],
                 lambda _: {"another stream's position": other, "cut short": own[:15], "emptied": b""}[damage])
    with SessionStore(store_path) as store, pytest.raises(StoreCorrupted, match="session catalog is damaged"):
        store.search(SessionQuery(keyword))


@pytest.mark.parametrize("damage", ["cut short, the next lengthened by as much", "emptied, the next doubled"])
def test_two_damaged_stream_entries_whose_bytes_add_up_are_damage(store_path: Path, damage: str) -> None:
    """Two ``catalog.sessions`` entries read together, one shorter than a position and the next longer by as much,
    their bytes together those of two good entries (so their stream ids sit where the ids of two positions would):
    the search that reads them for a tie says the catalog is damaged, although neither is among its results."""
    clock = FakeClock()
    with SessionStore(store_path, clock=clock) as store:
        for key in ("x1", "x2", "x3"):
            clock.advance(seconds=1)
            store.append(key, ChatMessage.user("same words"))
        store.catch_up()
        assert [found.key for found in store.search(SessionQuery("same", 1))] == ["x3"]
    first, second = position_of(store_path, "x1"), position_of(store_path, "x2")
    cut = 15 if damage.startswith("cut") else 0
    change_value(store_path, b"catalog.sessions", first[8:], lambda _: first[:cut])
    change_value(store_path, b"catalog.sessions", second[8:], lambda _: first[cut:] + second)
    with SessionStore(store_path, clock=clock) as store, pytest.raises(StoreCorrupted,
                                                                       match="session catalog is damaged"):
        store.search(SessionQuery("same", 1))


@pytest.mark.parametrize(("keyword", "damaged"), [("same", "a"), ("alpha", "c")], ids=["a tie", "a result alone"])
def test_a_position_naming_no_row_is_damage_to_a_search_and_a_prefix_listing(
        store_path: Path, keyword: str, damaged: str) -> None:
    """A session's entries (by stream id, and by key with its checksum right) naming a time its row is not at: the
    search that reads its row, and the listing of a prefix that does, name the stream whose entry leads nowhere."""
    with SessionStore(store_path) as store:
        for key, text in (("a", "same words"), ("b", "same words"), ("c", "alpha")):
            store.append(key, ChatMessage.user(text))
        store.catch_up()
        with store._environment.read() as txn:
            head = store._catalog.head_of_key(txn, damaged)
    assert head is not None
    position = position_of(store_path, damaged)
    moved = struct.pack(">Q", struct.unpack(">Q", position[:8])[0] + 1) + position[8:]
    change_value(store_path, b"catalog.keys", damaged.encode(), lambda _: _keys_entry(head, moved)[1])
    change_value(store_path, b"catalog.sessions", position[8:], lambda _: moved)
    message = f"stream {struct.unpack('>Q', position[8:])[0]}'s index entry names a position with no row"
    with SessionStore(store_path) as store:
        with pytest.raises(StoreCorrupted, match=message):
            store.search(SessionQuery(keyword))
        for listing in (store.list_sessions_with_metadata, lambda prefix: store.list_sessions_page(prefix=prefix)):
            with pytest.raises(StoreCorrupted, match=message):
                listing(damaged)
