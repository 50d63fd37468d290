"""A session key emptied in ``log.stream_keys``: every read and command that meets it, ``rebuild_projections`` and
``verify`` end in ``StoreCorrupted`` or a reported problem (a rebuild failed with LMDB's ``ValueError`` for an empty
key, a store then failing every writable open), and the other sessions read as before."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreCorrupted

from _damage import change_value


def test_an_emptied_session_key_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.append("b", ChatMessage.user("gamma"))
        loaded = store.load("b")
    change_value(path, b"log.stream_keys", struct.pack(">Q", 1), lambda _: b"")
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="session key of stream 1"):
            store.rebuild_projections()
        with pytest.raises(StoreCorrupted, match="session key of stream 1"):
            list(store.events())
        report = store.verify()
        assert not report.ok and "log" in report.damaged
        assert store.load("b") == loaded
        store.append("b", ChatMessage.user("delta"))
        assert store.load("b") == [*loaded, ChatMessage.user("delta")]
    try:
        with SessionStore(path, durable=False) as store:
            assert store.load("b")[-1] == ChatMessage.user("delta")
    except EventStoreError as exc:
        assert isinstance(exc, StoreCorrupted), exc
