"""A store opened from inside a write of the same thread on the same store (a rebuild's ``progress`` callback)
raises ``StoreBusy`` instead of waiting for the write's lock for ever, on either engine, and the store opens once the
write is over. In memory, creating a space, watching commits and vacuuming all take the writer's lock: from the
thread that holds it they waited for ever."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreBusy
from eventstore.storage import MemoryStorage


def _on_disk(path: Path) -> tuple[SessionStore, Callable[[], SessionStore]]:
    return SessionStore(path, durable=False), lambda: SessionStore(path, durable=False)


def _in_memory(_: Path) -> tuple[SessionStore, Callable[[], SessionStore]]:
    storage = MemoryStorage()
    return SessionStore.on_storage(storage), lambda: SessionStore.on_storage(storage.open_again())


@pytest.mark.parametrize("pair", [_on_disk, _in_memory], ids=["lmdb", "memory"])
def test_a_store_opened_from_the_progress_callback_is_refused(
        pair: Callable[[Path], tuple[SessionStore, Callable[[], SessionStore]]], tmp_path: Path) -> None:
    store, open_another = pair(tmp_path / "store")
    store.append_many("k", [ChatMessage.user(f"m{number}") for number in range(2500)])
    outcomes: list[EventStoreError | SessionStore] = []

    def progress(done: int, total: int) -> None:
        if done < total:
            try:
                outcomes.append(open_another())
            except EventStoreError as error:
                outcomes.append(error)

    rebuild = threading.Thread(target=store.rebuild_projections, args=(["catalog", "messages"], progress), daemon=True)
    rebuild.start()
    rebuild.join(30)
    assert not rebuild.is_alive(), "the rebuild waits for the store its own callback opens"
    assert outcomes and all(isinstance(outcome, StoreBusy) for outcome in outcomes), outcomes
    other = open_another()
    try:
        assert other.load("k") == store.load("k") and len(store.load("k")) == 2500
    finally:
        other.close()
        store.close()


def test_watching_and_vacuuming_memory_from_its_own_write_are_refused() -> None:
    storage = MemoryStorage()
    refusals: list[type[BaseException]] = []

    def body(_: object) -> None:
        for call in (lambda: storage.watch_commits(lambda: None), lambda: storage.vacuum(lambda: None),
                     lambda: storage.space("new")):
            try:
                call()
            except StoreBusy:
                refusals.append(StoreBusy)

    writer = threading.Thread(target=storage.write, args=(body,), daemon=True)
    writer.start()
    writer.join(10)
    assert not writer.is_alive(), "a call from inside the write waits for the write's own lock"
    assert refusals == [StoreBusy] * 3
    assert storage.space("new").name == "new"  # after the write: created as usual
