"""A command given from the ``progress`` callback of ``rebuild_projections`` through *another* store object on the
same store (a second ``SessionStore`` on the path in this process, a second handle on a ``MemoryStorage``) raises
``StoreBusy`` and records nothing, as one through the rebuilding object does: the rebuild's write transaction is
open on this thread whichever object gives it (on LMDB it failed with LMDB's nested-transaction error, worded as
a failure of the store; in memory it waited for the rebuild's lock for ever)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import SessionStore
from eventstore.storage import MemoryStorage

from test_rebuild_progress_commands import refused_then_recorded


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
        refused_then_recorded(rebuilding, other)
    finally:
        other.close()
        rebuilding.close()
