"""A command given from the ``progress`` callback of ``rebuild_projections`` while the read models are rebuilt in one
write transaction raises ``StoreBusy`` and records nothing, and the rebuild goes on (on LMDB it failed with LMDB's
nested-transaction error, worded as a failure of the store; in memory it waited for the rebuild's lock for
ever). Given once the rebuild's transaction committed (its last report), it is recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, StoreBusy

from conftest import STORE_ENGINES, engine_of, open_store


@pytest.fixture(params=STORE_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return engine_of(request)


def test_a_command_from_the_rebuilds_progress_is_refused_and_the_rebuild_ends(engine: str, tmp_path: Path) -> None:
    store = open_store(engine, tmp_path / "store")
    try:
        store.append_many("k", [ChatMessage.user(f"m{number}") for number in range(2500)])  # progress is reported
        outcomes: list[int | EventStoreError] = []

        def progress(done: int, total: int) -> None:
            try:
                outcomes.append(store.append("from the callback", ChatMessage.user(f"{done} of {total}")))
            except EventStoreError as error:
                outcomes.append(error)

        rebuild = threading.Thread(target=store.rebuild_projections, args=(["catalog", "messages"], progress),
                                   daemon=True)
        rebuild.start()
        rebuild.join(30)
        assert not rebuild.is_alive(), "the rebuild waits for a command its own callback gave"
        *during, last = outcomes
        assert during and all(isinstance(outcome, StoreBusy) for outcome in during), outcomes
        assert "progress callback" in str(during[0]) and "nothing was recorded" in str(during[0])
        # The message lists' rebuild takes the snapshots again in a second pass over the log: 2 x 2,500 events.
        assert last == 1 and store.load("from the callback") == [ChatMessage.user("5000 of 5000")]
        assert len(store.load("k")) == 2500
        assert store.verify().ok
    finally:
        store.close()
