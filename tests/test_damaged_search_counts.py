"""The search index's count of messages, damaged to fewer than it holds: a command that takes messages out of the
index raises ``StoreCorrupted`` and records nothing (it failed with ``struct.error`` packing a negative count), and
``verify`` names the search index, whose rebuild repairs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted
from projections.search.formats.keys import META_MESSAGES, count_value

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
