"""A command given from the ``progress`` callback of ``rebuild_projections`` through *another* store object on the
same store (a second ``SessionStore`` on the path in this process, a second handle on a ``MemoryStorage``) raises
``StoreBusy`` and records nothing, as one through the rebuilding object does: the rebuild's write transaction is
open on this thread whichever object gives it (on LMDB it failed with LMDB's nested-transaction error, worded as
a failure of the store; in memory it waited for the rebuild's lock for ever)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreBusy
from eventstore.storage import MemoryStorage


def _on_disk(path: Path) -> tuple[SessionStore, SessionStore]:
    return SessionStore(path, durable=False), SessionStore(path, durable=False)


def _in_memory(_: Path) -> tuple[SessionStore, SessionStore]:
    storage = MemoryStorage()
    return SessionStore.on_storage(storage), SessionStore.on_storage(storage.open_again())


@pytest.mark.parametrize("pair", [_on_disk, _in_memory], ids=["lmdb", "memory"])
def test_a_command_from_the_progress_through_another_object_is_refused(
        pair: Callable[[Path], tuple[SessionStore, SessionStore]], tmp_path: Path) -> None:
    _refused_then_recorded(*pair(tmp_path / "store"))


def test_on_a_shared_log_through_another_object_sharing_the_replica_too(postgres_url: str, tmp_path: Path) -> None:
    """Nothing reaches the server either (it was the LMDB error there too)."""
    _refused_then_recorded(SessionStore(postgres_url, cache=tmp_path / "replica", durable=False),
                           SessionStore(postgres_url, cache=tmp_path / "replica", durable=False))


def _refused_then_recorded(rebuilding: SessionStore, other: SessionStore) -> None:
    try:
        rebuilding.append_many("k", [ChatMessage.user(f"m{number}") for number in range(2500)])
        outcomes: list[int | EventStoreError] = []

        def progress(done: int, total: int) -> None:
            try:
                outcomes.append(other.append("from the callback", ChatMessage.user(f"{done} of {total}")))
            except EventStoreError as error:
                outcomes.append(error)

        rebuild = threading.Thread(target=rebuilding.rebuild_projections, args=(["catalog", "messages"], progress),
                                   daemon=True)
        rebuild.start()
        rebuild.join(30)
        assert not rebuild.is_alive(), "the rebuild waits for a command its own callback gave"
        *during, last = outcomes
        assert during and all(isinstance(outcome, StoreBusy) for outcome in during), outcomes
        assert "nothing was recorded" in str(during[0])
        assert last == 1 and other.load("from the callback") == [ChatMessage.user("2500 of 2500")]
        assert len(rebuilding.load("k")) == 2500
        assert rebuilding.verify().ok
    finally:
        other.close()
        rebuilding.close()
