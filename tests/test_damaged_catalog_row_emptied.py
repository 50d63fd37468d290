"""A session's catalog row emptied: it is damage (``StoreCorrupted``) to every command on that session, not the
empty head the catalog's cache of the last row started with (commands failed with ``AssertionError``, or went on
from an unknown session); reads that go by the other catalog indexes stay right. ``verify`` names the catalog,
whose rebuild repairs it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted

from _damage import change_value

COMMANDS: dict[str, Callable[[SessionStore], object]] = {
    "append": lambda store: store.append("a", ChatMessage.user("more")),
    "set_session_name": lambda store: store.set_session_name("a", "renamed"),
    "remove_last": lambda store: store.remove_last("a"),
    "delete_session": lambda store: store.delete_session("a"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_emptied_catalog_row_is_damage(tmp_path: Path, command: str) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.append("b", ChatMessage.user("gamma"))
        history = store.history("a")
        metadata = store.get_session_metadata("a")
    change_value(path, b"catalog.sessions", struct.pack(">Q", 1), lambda _: b"")
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="catalog"):
            COMMANDS[command](store)
        assert store.history("a") == history
        assert store.get_session_metadata("a") == metadata
        report = store.verify()
        assert not report.ok and report.damaged == {"catalog"}, report.problems
        store.rebuild_projections(["catalog"])
        assert store.get_session_metadata("a") == metadata
        assert store.verify().ok
