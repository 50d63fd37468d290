"""The commands framework adapters build on: ``pop_last``, ``replace_messages`` and ``fork``."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, WrongExpectedVersion
from eventstore.events import LastMessageRemoved

from conftest import FakeClock


def user(text: str, payload: dict[str, object] | None = None) -> ChatMessage:
    return ChatMessage("user", text, payload)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SessionStore:
    with SessionStore(tmp_path / "store", clock=clock, durable=False, snapshot_every=3) as opened:
        yield opened


class TestPopLast:
    def test_returns_the_removed_message_as_one_event(self, store):
        store.append_many("k", [user("one"), user("two", {"id": "item-2"})])
        assert user("two", {"id": "item-2"}) == store.pop_last("k")
        assert [user("one")] == store.load("k")
        assert isinstance(store.history("k")[-1].event, LastMessageRemoved)
        assert 3 == len(store.history("k"))

    def test_nothing_to_pop_records_nothing(self, store):
        assert store.pop_last("nobody") is None
        store.append("k", user("one"))
        store.pop_last("k")
        assert store.pop_last("k") is None
        assert 2 == len(store.history("k"))

    def test_what_it_removed_comes_back_with_restore(self, store):
        store.append_many("k", [user("one"), user("two", {"id": 2})])
        store.pop_last("k")
        store.restore("k", version=2)
        assert [user("one"), user("two", {"id": 2})] == store.load("k")

    def test_a_retry_answers_the_same_message_and_removes_nothing_more(self, store):
        store.append_many("k", [user("one", {"\ud800": 1}), user("two", {"big": 2**80})])
        first = store.pop_last("k", idempotency_key="retry")
        assert first == store.pop_last("k", idempotency_key="retry") == user("two", {"big": 2**80})
        assert [user("one", {"\ud800": 1})] == store.load("k")

    def test_expected_version(self, store):
        store.append("k", user("one"))
        with pytest.raises(WrongExpectedVersion):
            store.pop_last("k", expected_version=0)
        assert user("one") == store.pop_last("k", expected_version=1)
