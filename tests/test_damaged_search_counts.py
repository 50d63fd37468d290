"""The search index's count of messages, damaged to fewer than it holds: a command that takes messages out of the
index raises ``StoreCorrupted`` and records nothing (it failed with ``struct.error`` packing a negative count), and
``verify`` names the search index, whose rebuild repairs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted
from projections.search.formats.keys import META_MESSAGES, count_value, session_of_value, session_value
from projections.search.writer import IndexWriter

from _damage import change_value

COMMANDS: dict[str, Callable[[SessionStore], object]] = {
    "remove_last": lambda store: store.remove_last("a"),
    "replace_messages": lambda store: store.replace_messages("a", [ChatMessage.user("summary")]),
    "delete_session": lambda store: store.delete_session("a"),
    "clear_messages": lambda store: store.clear_messages("a"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_on_an_index_counting_too_few_messages_is_refused(tmp_path: Path, command: str) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma")])
        store.catch_up()
    change_value(path, b"search.meta", META_MESSAGES, lambda _: count_value(0))
    with SessionStore(path, durable=False) as store:
        history = store.history("a")
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            COMMANDS[command](store)
            store.catch_up()  # a command whose index work is deferred meets the damage here
        assert store.history("a")[: len(history)] == history
        report = store.verify()
        assert not report.ok and "search" in report.damaged
        store.rebuild_projections(["search"])
        assert store.verify().ok
        COMMANDS[command](store)
        store.catch_up()
        assert store.verify().ok
        assert store.search(SessionQuery("zeta")) == []


def only_key(path: Path, database: bytes) -> bytes:
    """The one key of the store's named ``database``."""
    environment = lmdb.open(str(path), max_dbs=64, readonly=True)
    try:
        with environment.begin() as txn:
            keys = [bytes(key) for key, _ in txn.cursor(db=environment.open_db(database, txn=txn, create=False))]
    finally:
        environment.close()
    assert len(keys) == 1
    return keys[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_session_counted_past_its_chunks_is_refused_without_a_look_for_each_chunk_it_names(
        tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session's count of messages damaged to billions: a command that takes its messages out of the index raises
    ``StoreCorrupted`` at once (it looked for each of the 30 million chunks that count names: minutes of a search's
    or a catch-up's time, then the same error)."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma")])
        store.catch_up()
    key = only_key(path, b"search.sessions")
    change_value(path, b"search.sessions", key,
                 lambda value: session_value(2_000_000_000, session_of_value(key, value)[1]))
    looks: list[int] = []
    real_chunk = IndexWriter.chunk

    def chunk(self: IndexWriter, sid: int, number: int) -> bytes | None:
        looks.append(number)
        return real_chunk(self, sid, number)

    monkeypatch.setattr(IndexWriter, "chunk", chunk)
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            COMMANDS[command](store)
            store.catch_up()
        assert len(looks) <= 2  # the chunks the session has, not those its count names
