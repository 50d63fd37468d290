"""A session's catalog entry emptied: it is damage (``StoreCorrupted``) to every command on that session, not the
empty head the catalog's cache of the last row started with (commands failed with ``AssertionError``, or went on
from an unknown session); reads that go by the other catalog indexes stay right. ``verify`` names the catalog,
whose rebuild repairs it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, RecordedEvent, SessionMetadata, SessionStore, StoreCorrupted
from projections.catalog import _keys_entry

from _damage import change_value

COMMANDS: dict[str, Callable[[SessionStore], object]] = {
    "append": lambda store: store.append("a", ChatMessage.user("more")),
    "set_session_name": lambda store: store.set_session_name("a", "renamed"),
    "remove_last": lambda store: store.remove_last("a"),
    "delete_session": lambda store: store.delete_session("a"),
}


def assert_catalog_repaired(store: SessionStore, metadata: SessionMetadata | None) -> None:
    """``verify`` names the catalog alone, and its rebuild gives session "a" ``metadata`` again and verifies."""
    report = store.verify()
    assert not report.ok and report.damaged == {"catalog"}, report.problems
    store.rebuild_projections(["catalog"])
    assert store.get_session_metadata("a") == metadata
    assert store.verify().ok


def two_sessions(path: Path) -> tuple[list[RecordedEvent], SessionMetadata | None, SessionMetadata | None]:
    """A store at ``path`` of sessions "a" and "b": a's history and metadata, and b's metadata."""
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.append("b", ChatMessage.user("gamma"))
        return store.history("a"), store.get_session_metadata("a"), store.get_session_metadata("b")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_emptied_catalog_position_is_damage(tmp_path: Path, command: str) -> None:
    path = tmp_path / "store"
    history, metadata, _ = two_sessions(path)
    change_value(path, b"catalog.sessions", struct.pack(">Q", 1), lambda _: b"")
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="catalog"):
            COMMANDS[command](store)
        assert store.history("a") == history
        assert store.get_session_metadata("a") == metadata
        assert_catalog_repaired(store, metadata)


def position_of(path: Path, key: str) -> bytes:
    with SessionStore(path, readonly=True) as store, store._environment.read() as txn:
        entry = txn.get(store._catalog._keys, key.encode())
    assert entry is not None
    return entry[:16]  # the last activity and the stream id, then the version, the count and a checksum


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_emptied_catalog_row_is_damage(tmp_path: Path, command: str) -> None:
    """The row itself emptied (``catalog.activity``, where each row is kept once): every read of that session's
    head or metadata says so; its messages and the other session stay readable."""
    path = tmp_path / "store"
    history, metadata, other = two_sessions(path)
    change_value(path, b"catalog.activity", position_of(path, "a"), lambda _: b"")
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="catalog"):
            COMMANDS[command](store)
        with pytest.raises(StoreCorrupted, match="catalog"):
            store.get_session_metadata("a")
        assert store.history("a") == history
        assert store.get_session_metadata("b") == other
        assert_catalog_repaired(store, metadata)


def test_a_position_naming_no_row_is_damage(tmp_path: Path) -> None:
    """Entries that name another time than their session's row (the key's with its checksum right): the reads by
    stream id and by key say the catalog is damaged rather than report the session missing."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append("a", ChatMessage.user("alpha"))
        metadata = store.get_session_metadata("a")
        with store._environment.read() as txn:
            head = store._catalog.head_of_key(txn, "a")
    assert head is not None
    position = position_of(path, "a")
    moved = struct.pack(">Q", struct.unpack(">Q", position[:8])[0] + 1) + position[8:]
    change_value(path, b"catalog.keys", b"a", lambda _: _keys_entry(head, moved)[1])
    change_value(path, b"catalog.sessions", position[8:], lambda _: moved)
    with SessionStore(path, durable=False) as store:
        for read in (store.get_session_metadata, store.get_session_state,
                     lambda key: store.append(key, ChatMessage.user("more"))):
            with pytest.raises(StoreCorrupted, match="no row"):
                read("a")
        assert not store.verify().ok
        store.rebuild_projections(["catalog"])
        assert store.get_session_metadata("a") == metadata


@pytest.mark.parametrize("change", [lambda entry: entry[:15] + bytes([entry[15] ^ 3]) + entry[16:],
                                    lambda entry: entry[:-1]], ids=["stream id", "cut short"])
def test_a_key_entry_changed_is_damage(tmp_path: Path, change: Callable[[bytes], bytes]) -> None:
    """A key index entry whose stream id changed (one bit), or cut short: a load, and a listing of a prefix that
    reads the entry among others, refuse it by its checksum, rather than read another stream's messages or list
    the key at another session's place."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        for key in ("a", "ab", "b"):
            store.append(key, ChatMessage.user(key))
    change_value(path, b"catalog.keys", b"a", change)
    with SessionStore(path, durable=False) as store:
        for read in (store.load, store.get_session_metadata, store.list_sessions, store.list_sessions_with_metadata,
                     lambda prefix: store.list_sessions_page(prefix=prefix)):
            with pytest.raises(StoreCorrupted, match="checksum"):
                read("a")
        assert store.load("b") == [ChatMessage.user("b")]
        assert store.list_sessions(prefix="ab") == ["ab"]
