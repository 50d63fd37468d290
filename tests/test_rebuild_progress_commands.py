"""A command given from the ``progress`` callback of ``rebuild_projections`` while the read models are rebuilt in one
write transaction raises ``StoreBusy`` and records nothing, and the rebuild goes on (on LMDB it failed with LMDB's
nested-transaction error, worded as a failure of the store; in memory it waited for the rebuild's lock for
ever). Given once the rebuild's transaction committed (its last report), it is recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreBusy
from eventstore.events import MessageAppended

from conftest import STORE_ENGINES, engine_of, open_store


@pytest.fixture(params=STORE_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return engine_of(request)


def test_a_command_from_the_rebuilds_progress_is_refused_and_the_rebuild_ends(engine: str, tmp_path: Path) -> None:
    store = open_store(engine, tmp_path / "store")
    try:
        refusals = refused_then_recorded(store, store)
        assert "progress callback while rebuild_projections holds" in str(refusals[0])
        assert "once rebuild_projections returns" in str(refusals[0]) and "import" not in str(refusals[0])
    finally:
        store.close()


def test_a_command_from_the_progress_of_an_import_names_the_import(engine: str, tmp_path: Path) -> None:
    """The refusal names the call whose write transaction is open, here ``import_sessions`` (it once said that the
    store rebuilt its read models), and the import goes on; the command is recorded once the import returned."""
    store = open_store(engine, tmp_path / "store")
    refusals: list[StoreBusy] = []

    def progress(_done: int, _total: int) -> None:
        try:
            store.append("from the callback", ChatMessage.user("refused"))
        except StoreBusy as refused:
            refusals.append(refused)

    try:
        now = store.clock()
        imported = store.import_sessions({"a": [(now, MessageAppended(ChatMessage.user("imported")))]},
                                         progress=progress)
        assert imported.receipt.sessions == 1 and refusals
        message = str(refusals[0])
        assert "progress callback while import_sessions holds" in message and "rebuild" not in message
        assert "nothing was recorded" in message and "once import_sessions returns" in message
        assert store.load("from the callback") == []
        assert store.append("from the callback", ChatMessage.user("recorded")) == 1
        assert store.load("a") == [ChatMessage.user("imported")]
    finally:
        store.close()


def refused_then_recorded(rebuilding: SessionStore, other: SessionStore) -> list[EventStoreError]:
    """Rebuild the catalog and message lists of ``rebuilding`` (2,500 events, so progress is reported) with a
    progress callback that appends through ``other``: every command given during the rebuild's transaction is
    ``StoreBusy`` recording nothing, the one given at its last report is recorded, and the store is sound.
    Returns the refusals."""
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
    refusals: list[EventStoreError] = [outcome for outcome in during if isinstance(outcome, StoreBusy)]
    assert during and refusals == during, outcomes
    assert "nothing was recorded" in str(refusals[0])
    # The message lists' rebuild takes the snapshots again in a second pass over the log: 2 x 2,500 events.
    assert last == 1 and other.load("from the callback") == [ChatMessage.user("5000 of 5000")]
    assert len(rebuilding.load("k")) == 2500
    assert rebuilding.verify().ok
    return refusals


def test_a_holder_ends_with_its_write_even_when_its_callback_raises(engine: str, tmp_path: Path) -> None:
    """An import whose callback gives a command (refused) and then raises writes nothing; this thread then holds no
    write: its next command is recorded, and a command from a later rebuild's callback is refused naming the rebuild,
    not the import that ended."""
    store = open_store(engine, tmp_path / "store")
    refusals: list[str] = []

    def refused_then_raising(_done: int, _total: int) -> None:
        try:
            store.append("from the callback", ChatMessage.user("refused"))
        except StoreBusy as refused:
            refusals.append(str(refused))
        raise KeyboardInterrupt("the caller stops the import")

    try:
        now = store.clock()
        with pytest.raises(KeyboardInterrupt):
            store.import_sessions({"a": [(now, MessageAppended(ChatMessage.user("imported")))]},
                                  progress=refused_then_raising)
        assert store.load("a") == [] and store.load("from the callback") == []
        assert store.append("after", ChatMessage.user("recorded")) == 1
        store.rebuild_projections(["catalog"], refused_at_its_first_report(store, refusals))
        assert len(refusals) == 2 and "while import_sessions holds" in refusals[0], refusals
        assert "while rebuild_projections holds" in refusals[1] and "import" not in refusals[1]
        assert store.verify().ok
    finally:
        store.close()


def refused_at_its_first_report(store: SessionStore, refusals: list[str]) -> Callable[[int, int], None]:
    """A progress callback that gives a command at its first report only, adding the refusal to ``refusals``."""
    def progress(_done: int, _total: int) -> None:
        if len(refusals) == 1:
            try:
                store.append("from the rebuild", ChatMessage.user("refused"))
            except StoreBusy as refused:
                refusals.append(str(refused))

    return progress
