"""Loads read a session through its key index entry and as many chunks as its head counts: the same messages
whatever the cache, and damage found on the way is ``StoreCorrupted``."""

from __future__ import annotations

import struct
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from projections.chunk import CHUNK_MESSAGES

from conftest import raw_value

_U64 = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QI")


def conversation(count: int, tag: str) -> list[ChatMessage]:
    """``count`` messages, alternating user and assistant, every fifth with a payload."""
    return [ChatMessage("user" if i % 2 else "assistant", f"{tag} {i} é🙂",
                        {"turn": i, "tag": tag} if i % 5 == 0 else None) for i in range(count)]


@pytest.fixture
def sessions(tmp_path: Path) -> tuple[Path, dict[str, list[ChatMessage]]]:
    """A closed store of a live session with no messages, a short, a one-chunk and a several-chunk session,
    and one deleted."""
    written = {"empty": [], "short": conversation(3, "short"), "full": conversation(CHUNK_MESSAGES, "full"),
               "long": conversation(3 * CHUNK_MESSAGES + 7, "long")}
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("empty", ChatMessage.user("cleared"))
        store.clear_messages("empty")
        for key, messages in written.items():
            if messages:
                store.append_many(key, messages[:5])
                for message in messages[5:]:
                    store.append(key, message)
        store.append("gone", ChatMessage.user("bye"))
        store.delete_session("gone")
    return tmp_path / "store", written


@pytest.mark.parametrize("cache_sessions", [0, 256])
def test_loads_give_what_was_appended_with_the_cache_on_or_off(sessions, cache_sessions: int) -> None:
    """Each session loads as appended, twice (the second from the cache when it is on), and as its timed
    load's messages; an unknown or deleted session loads as nothing."""
    path, written = sessions
    with SessionStore(path, cache_sessions=cache_sessions) as store:
        for key, messages in written.items():
            assert [store.load(key), store.load(key)] == [messages, messages]
            assert [entry.message for entry in store.load_with_timestamps(key)] == messages
        assert ([], []) == (store.load("gone"), store.load("never"))


def edit_raw(path: Path, name: bytes, edit) -> None:
    env = lmdb.open(str(path), max_dbs=32)
    try:
        with env.begin(write=True, db=env.open_db(name)) as txn:
            edit(txn)
    finally:
        env.close()


def stream_of(path: Path, key: str) -> int:
    env = lmdb.open(str(path), max_dbs=32, readonly=True)
    try:
        with env.begin(db=env.open_db(b"log.stream_keys")) as txn:
            return int(next(_U64.unpack(k)[0] for k, v in txn.cursor() if bytes(v) == key.encode()))
    finally:
        env.close()


@pytest.mark.parametrize("cache_sessions", [0, 256])
def test_a_key_index_entry_of_another_session_is_corruption(sessions, cache_sessions: int) -> None:
    """The key index leads "short" to the entry of "full": a load refuses it rather than give full's messages."""
    path, _ = sessions
    edit_raw(path, b"catalog.keys", lambda txn: txn.put(b"short", raw_value(txn, b"full")))
    with SessionStore(path, cache_sessions=cache_sessions) as store:
        with pytest.raises(StoreCorrupted, match="another session"):
            store.load("short")
        assert store.load("full") == conversation(CHUNK_MESSAGES, "full")


@pytest.mark.parametrize("cache_sessions", [0, 256])
@pytest.mark.parametrize("key, first", [("short", 0), ("long", 0), ("long", CHUNK_MESSAGES)])
def test_a_missing_chunk_is_corruption(sessions, cache_sessions: int, key: str, first: int) -> None:
    """Without its first chunk, or one after, a session's load raises ``StoreCorrupted`` naming it."""
    path, _ = sessions
    chunk_key = _CHUNK_KEY.pack(stream_of(path, key), first)
    edit_raw(path, b"messages.chunks", lambda txn: txn.delete(chunk_key) or pytest.fail("no such chunk"))
    with SessionStore(path, cache_sessions=cache_sessions) as store, pytest.raises(StoreCorrupted, match=repr(key)):
        store.load(key)


@pytest.mark.parametrize("cache_sessions", [0, 256])
def test_a_chunk_holding_more_than_counted_is_corruption(sessions, cache_sessions: int) -> None:
    """The first chunk of "full" put in place of "short"'s: more messages stored than "short" counts."""
    path, _ = sessions
    short, full = stream_of(path, "short"), stream_of(path, "full")
    edit_raw(path, b"messages.chunks",
             lambda txn: txn.put(_CHUNK_KEY.pack(short, 0), raw_value(txn, _CHUNK_KEY.pack(full, 0))))
    counted = f"{CHUNK_MESSAGES} messages stored, 3 counted"
    with SessionStore(path, cache_sessions=cache_sessions) as store, pytest.raises(StoreCorrupted, match=counted):
        store.load("short")


@pytest.mark.parametrize("row", [b"not json", b'{"short": 1}', b'"short"', b'"short", null, null, null, 3, "1"',
                                 b'"short", null, null, null, 3.0, 1, null, null, null'])
def test_a_damaged_key_index_row_is_corruption(sessions, row: bytes) -> None:
    """The head row in "short"'s key index entry does not decode, or holds no whole version and count."""
    path, _ = sessions
    edit_raw(path, b"catalog.keys", lambda txn: txn.put(b"short", raw_value(txn, b"short")[:16] + row))
    with SessionStore(path, cache_sessions=0) as store, pytest.raises(StoreCorrupted, match="catalog"):
        store.load("short")
