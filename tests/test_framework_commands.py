"""The commands framework adapters build on: ``pop_last``, ``replace_messages`` and ``fork``."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, InvalidArgument, SessionStore, WrongExpectedVersion
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


class TestReplaceMessages:
    def test_one_event_and_the_pruned_messages_stay_in_history(self, store, clock):
        store.append_many("k", [user("one"), user("two"), user("three", {"n": 3})])
        appended = store.load_with_timestamps("k")
        clock.advance(seconds=5)
        version = store.replace_messages("k", [ChatMessage.system("summary of one and two"), user("three", {"n": 3})])
        assert 4 == version == len(store.history("k"))
        assert [ChatMessage.system("summary of one and two"), user("three", {"n": 3})] == store.load("k")
        kept_times = [m.created_at for m in store.load_with_timestamps("k")]
        assert [clock.now, appended[2].created_at] == kept_times
        assert [user("one"), user("two"), user("three", {"n": 3})] == store.session_at("k", version=3).messages
        store.restore("k", version=3)
        assert appended == store.load_with_timestamps("k")

    def test_the_same_list_records_nothing(self, store):
        store.append_many("k", [user("one"), user("two")])
        assert 2 == store.replace_messages("k", [user("one"), user("two")])
        assert 3 == store.replace_messages("k", [user("one"), user("two", {"differs": True})])
        assert 3 == len(store.history("k"))

    def test_creates_the_session(self, store):
        assert 1 == store.replace_messages("new", [user("one")])
        assert [user("one")] == store.load("new")
        assert 1 == store.replace_messages("empty", [])
        assert store.session_exists("empty") and [] == store.load("empty")

    def test_a_deleted_session_starts_afresh(self, store):
        store.append("k", user("old"))
        store.delete_session("k")
        store.replace_messages("k", [user("old")])
        assert [user("old")] == store.load("k")
        assert 1 == store.get_session_metadata("k").message_count

    def test_options_and_arguments(self, store):
        store.append("k", user("one"))
        with pytest.raises(WrongExpectedVersion):
            store.replace_messages("k", [], expected_version=0)
        assert 2 == store.replace_messages("k", [], idempotency_key="prune")
        store.append("k", user("two"))
        assert 2 == store.replace_messages("k", [], idempotency_key="prune")
        assert [user("two")] == store.load("k")
        with pytest.raises(InvalidArgument):
            store.replace_messages("k", user("not a list"))  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            store.replace_messages("k", ["text"])  # type: ignore[list-item]

    def test_in_a_transaction_with_other_sessions(self, store):
        store.append("a", user("one"))
        with store.transaction() as tx:
            replaced = tx.replace_messages("a", [user("summary")])
            popped = tx.pop_last("a")
            tx.append("b", user("two"))
        assert 2 == replaced.result and user("summary") == popped.result
        assert [] == store.load("a") and [user("two")] == store.load("b")
        assert store.verify().ok

    def test_a_long_session_pruned_through_snapshots_verifies(self, store):
        store.append_many("k", [user(f"m{i}", {"i": i} if i % 3 else None) for i in range(200)])
        store.replace_messages("k", store.load("k")[150:])
        store.compact("k")
        assert store.load("k") == store.session_at("k").messages
        assert store.verify().ok
        store.rebuild_projections()
        assert store.verify().ok
