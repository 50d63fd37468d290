"""A store whose log is on PostgreSQL, each host reading from its own LMDB replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, WrongExpectedVersion


@pytest.fixture
def open_host(postgres_url: str, tmp_path: Path):
    opened: list[SessionStore] = []

    def open_host(name: str = "host", **options) -> SessionStore:
        store = SessionStore(postgres_url, cache=tmp_path / name, **options)
        opened.append(store)
        return store

    yield open_host
    for store in opened:
        store.close()


def test_two_hosts_read_each_others_writes(open_host):
    one, two = open_host("one"), open_host("two")
    assert one.append("k", ChatMessage.user("hello")) == 1
    assert two.append("k", ChatMessage.assistant("hi")) == 2
    assert [m.content for m in one.load("k")] == ["hello", "hi"]
    with pytest.raises(WrongExpectedVersion):
        one.append("k", ChatMessage.user("late"), expected_version=1)
    assert one.append("k", ChatMessage.user("again"), expected_version=2) == 3
    assert two.verify().ok and one.verify().ok
