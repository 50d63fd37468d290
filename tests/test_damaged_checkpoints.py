"""A read model's checkpoint of the wrong size (cut short, grown, emptied): the store opens and rebuilds that model
from the log, as one built by other code, instead of failing every open (read-only ones too) with ``struct.error``."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreReadOnly

from _damage import change_value

CHANGES = {"emptied": lambda value: b"", "cut short": lambda value: value[:5], "grown": lambda value: value + b"\x00"}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("model", ["catalog", "messages", "search"])
def test_a_checkpoint_of_the_wrong_size_rebuilds_its_model(tmp_path: Path, model: str, change: str) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma")])
        store.set_session_name("a", "named")
        store.append("b", ChatMessage.user("beta delta"))
        store.catch_up()
        listed, loaded = store.list_sessions_with_metadata(), store.load("a")
    change_value(path, b"projections.checkpoints", model.encode(), CHANGES[change])
    try:
        with SessionStore(path, readonly=True) as store:  # a read-only open cannot rebuild; it reads or says so
            assert store.load("a") == loaded
            assert {found.key for found in store.search(SessionQuery("beta"))} == {"a", "b"}
    except StoreReadOnly as exc:
        assert "rebuilt" in str(exc) or "out of date" in str(exc)
    with SessionStore(path, durable=False) as store:
        assert store.list_sessions_with_metadata() == listed
        assert store.load("a") == loaded
        assert {found.key for found in store.search(SessionQuery("beta"))} == {"a", "b"}
        assert store.verify().ok
        assert model in store.stats().checkpoints
