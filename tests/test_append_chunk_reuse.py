"""An append edits the message chunk the previous append wrote without parsing it again, only while that chunk is
the one stored: a write that rolled back, or another store object's append, must not leave its chunk to be edited."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionExists, SessionStore


def _stored(path: Path, key: str) -> list[ChatMessage]:
    """The session's messages as a fresh store object reads them from the chunks (no decoded list kept)."""
    with SessionStore(path, cache_sessions=0) as store:
        return store.load(key)


def test_an_append_after_a_rolled_back_one_edits_the_stored_chunk(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("s", ChatMessage.user("one"))
        store.fork("s", "copy")
        with pytest.raises(SessionExists), store.transaction() as tx:
            tx.append("s", ChatMessage.user("rolled back"))  # its chunk is written, then the block fails
            tx.fork("s", "copy")
        store.append("s", ChatMessage.user("two"))
        assert store.verify().ok
    assert _stored(path, "s") == [ChatMessage.user("one"), ChatMessage.user("two")]


def test_appends_through_two_store_objects_each_edit_what_the_other_stored(tmp_path: Path) -> None:
    path = tmp_path / "store"
    expected = []
    with SessionStore(path) as first, SessionStore(path) as second:
        for index in range(40):
            message = ChatMessage.user(f"message {index}", {"n": index} if index % 3 else None)
            (first if index % 2 else second).append("s", message)
            expected.append(message)
        assert first.verify().ok
    assert _stored(path, "s") == expected


def test_an_append_after_an_edit_of_the_last_message_edits_the_stored_chunk(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("s", ChatMessage.user("one"))
        store.append("s", ChatMessage.assistant("draft"))
        store.update_last("s", ChatMessage.assistant("final"))
        store.append("s", ChatMessage.user("two"))
        store.remove_last("s")
        store.append("s", ChatMessage.user("three"))
    assert _stored(path, "s") == [ChatMessage.user("one"), ChatMessage.assistant("final"), ChatMessage.user("three")]
