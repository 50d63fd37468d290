"""``store.transaction()``: commands on several sessions committed together, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventstore import (
    ChatMessage,
    InvalidArgument,
    SessionStore,
    StoreReadOnly,
    TransactionError,
    WrongExpectedVersion,
)
from eventstore.services.transaction import Pending

from conftest import FakeClock


def hello(text: str) -> ChatMessage:
    return ChatMessage("user", text)


#: (method, args, kwargs) run on a store one at a time, and in one transaction on another.
SCRIPT: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("append", ("a", hello("one")), {}),
    ("append_many", ("b", [hello("two"), hello("three")]), {"expected_version": 0}),
    ("set_session_name", ("a", "first"), {}),
    ("set_session_state", ("user", "running", "turn-1"), {}),
    ("update_last", ("b", hello("three, edited")), {}),
    ("remove_last", ("b",), {"expected_version": 3}),
    ("remove_last", ("nobody",), {}),
    ("append", ("b", ChatMessage("tool", "out", {"call_id": "c1", "n": 1.0})), {}),
    ("pop_last", ("b",), {"idempotency_key": "pop-b"}),
    ("pop_last", ("nobody",), {}),
    ("append", ("a", hello("four")), {"idempotency_key": "retry-me"}),
    ("clear_messages", ("b",), {}),
    ("delete_session", ("c",), {"reason": "never there"}),
    ("append", ("c", hello("five")), {}),
    ("delete_session", ("c",), {"reason": "done"}),
]


def state(store: SessionStore) -> dict[str, Any]:
    return {key: (store.load(key), store.get_session_name(key), store.get_session_state(key) and
                  store.get_session_state(key).state, store.session_exists(key))
            for key in ("a", "b", "c", "user", "nobody")}


def test_a_transaction_answers_and_leaves_the_store_as_the_same_calls_one_by_one(tmp_path: Path,
                                                                                 clock: FakeClock) -> None:
    with SessionStore(tmp_path / "one", clock=clock) as one, SessionStore(tmp_path / "tx", clock=clock) as tx_store:
        expected = [getattr(one, name)(*args, **kwargs) for name, args, kwargs in SCRIPT]
        with tx_store.transaction() as tx:
            pending = [getattr(tx, name)(*args, **kwargs) for name, args, kwargs in SCRIPT]
        assert [item.result for item in pending] == expected
        assert state(tx_store) == state(one)
        assert [(e.session_key, e.version, type(e.event)) for e in tx_store.events()] == [
            (e.session_key, e.version, type(e.event)) for e in one.events()]
        # One commit: one recorded time for every event of the transaction.
        assert len({event.recorded_at for event in tx_store.events()}) == 1
        assert tx_store.verify().ok


def test_one_failing_command_fails_the_transaction_and_nothing_is_written(store: SessionStore) -> None:
    store.append("a", hello("before"))
    state_before = store.get_session_state("a")
    with pytest.raises(WrongExpectedVersion), store.transaction() as tx:
        first = tx.append("b", hello("never"))
        tx.set_session_state("a", "running")
        tx.append("a", hello("late"), expected_version=0)
    assert [event.position for event in store.events()] == [1]
    assert not store.session_exists("b") and store.get_session_state("a") == state_before
    with pytest.raises(TransactionError):
        _ = first.result


def test_an_exception_in_the_block_writes_nothing(store: SessionStore) -> None:
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.append("a", hello("never"))
        raise KeyError("the caller changed its mind")
    assert list(store.events()) == []


def test_a_result_is_known_only_after_the_commit_and_an_ended_transaction_takes_no_command(
        store: SessionStore) -> None:
    with store.transaction() as tx:
        version = tx.append("a", hello("one"))
        with pytest.raises(TransactionError):
            _ = version.result
    assert version.result == 1
    with pytest.raises(TransactionError):
        tx.append("a", hello("two"))
    with pytest.raises(TransactionError):
        tx.commit()


def test_a_pending_version_is_the_sessions_right_after_its_command_and_known_after_the_commit(
        store: SessionStore) -> None:
    store.append("gone", hello("one"))
    store.delete_session("gone")
    with store.transaction() as tx:
        appended = tx.append_many("a", [hello("one"), hello("two")])
        named = tx.set_session_name("a", "first")
        unchanged = tx.set_session_name("a", "first")
        deleted = tx.delete_session("a")
        nothing = tx.delete_session("gone")
        with pytest.raises(TransactionError):
            _ = deleted.version
    store.append("a", hello("after the transaction"))
    assert [appended.version, named.version, unchanged.version, deleted.version] == [2, 3, 3, 4]
    assert (nothing.result, nothing.version) == (False, 2)
    assert store.session_version("a") == 5


def test_a_replayed_commands_pending_version_is_the_one_its_first_run_gave(store: SessionStore) -> None:
    """Given again with its idempotency key, a command records nothing and answers as it did: its version too, not
    the session's version now."""
    with store.transaction() as tx:
        first = tx.append("a", hello("one"), idempotency_key="first")
    store.append("a", hello("two"))
    with store.transaction() as tx:
        again = tx.append("a", hello("one"), idempotency_key="first")
    assert (first.result, first.version) == (again.result, again.version) == (1, 1)
    assert store.session_version("a") == 2


def test_arguments_are_checked_when_the_command_is_added(store: SessionStore) -> None:
    with store.transaction() as tx:
        with pytest.raises(InvalidArgument):
            tx.append_many("a", "not a list of messages")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            tx.set_session_state("a", "")
        with pytest.raises(InvalidArgument):
            tx.append("", hello("no key"))
        kept = tx.append("a", hello("fine"))
    assert kept.result == 1 and store.load("a") == [hello("fine")]


def test_a_retried_transaction_with_idempotency_keys_writes_nothing_again(store: SessionStore) -> None:
    results: list[list[Pending[Any]]] = []
    for _ in range(2):
        with store.transaction() as tx:
            results.append([tx.append("b", hello("once"), idempotency_key="b-1"),
                            tx.set_session_name("a", "named", idempotency_key="a-2")])
    assert [[item.result for item in round_] for round_ in results] == [[1, None], [1, None]]
    assert len(list(store.events())) == 2


def test_a_read_only_store_refuses_a_transaction(store_path: Path) -> None:
    SessionStore(store_path).close()
    with SessionStore(store_path, readonly=True) as reader, pytest.raises(StoreReadOnly):
        reader.transaction()
