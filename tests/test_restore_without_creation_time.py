"""A restore to a live session recorded without the session's creation time (imports and ``replicate`` accepted one
before their validator asked for it) reads as recorded, and every fold gives it the creation time of the session at
the version it restored, from the log: the store loads, lists, time-travels, verifies, rebuilds, exports and
salvages every event, and its hashes stay as they were. Where the log gives no such time, it is damage, named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import attrs
import orjson
import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli
from eventstore.events import MessageAppended, SessionDeleted, SessionEvent, SessionRestored
from eventstore.interchange import BadExportFile, export_events, import_events

from test_import_integrity import START, crafted, sealed


def _without_creation_time(restored_version: int) -> SessionRestored:
    """The event no command writes, built as an earlier version's validator let it be (imported, forged)."""
    with attrs.validators.disabled():
        return SessionRestored(restored_version, True, (), "restored", None, None)


def _at(position: int):
    return START + timedelta(seconds=position)  # the time ``sealed`` records at a position


def _timeline() -> list[tuple[str, SessionEvent]]:
    """``k``: two appends, then a restore to version 1 without its creation time (position 3). ``d``: an append,
    a deletion, an append that starts a new life, then such a restore to version 1, of the first life
    (position 8). ``j``: another session."""
    return [("k", MessageAppended(ChatMessage.user("hi"))), ("k", MessageAppended(ChatMessage.user("ho"))),
            ("k", _without_creation_time(1)), ("j", MessageAppended(ChatMessage.user("other"))),
            ("d", MessageAppended(ChatMessage.user("first life"))), ("d", SessionDeleted()),
            ("d", MessageAppended(ChatMessage.user("second life"))), ("d", _without_creation_time(1))]


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A store whose log holds the two restores, as an earlier version's ``replicate`` accepted them."""
    with attrs.validators.disabled(), SessionStore(tmp_path / "store", snapshot_every=2) as store:
        store.replicate(sealed(_timeline()))
    return tmp_path / "store"


def _assert_reads_right(store: SessionStore) -> None:
    # The creation time of each session at the version restored: d's first life, not its second.
    created = {"k": _at(1), "d": _at(5)}
    for key, at in created.items():
        metadata = store.get_session_metadata(key)
        assert metadata is not None and (at, "restored") == (metadata.created_at, store.get_session_name(key))
        assert at == store.session_at(key).metadata.created_at
        assert at == store.session_at(key, version=store.session_at(key).version).metadata.created_at
        assert at == [view for _, view in store.replay(key)][-1].metadata.created_at
    listed = {metadata.key: metadata.created_at for metadata in store.list_sessions_with_metadata()}
    assert {**created, "j": _at(4)} == listed
    assert [] == store.load("k") == store.load("d")  # the restores carry no messages
    assert [ChatMessage.user("hi"), ChatMessage.user("ho")] == store.session_at("k", version=2).messages
    # The log keeps the record as it was written.
    assert [None, None] == [event.event.created_at for event in store.events()
                            if isinstance(event.event, SessionRestored)]
    assert store.verify().ok


def test_the_store_reads_lists_and_verifies(legacy: Path) -> None:
    with SessionStore(legacy, snapshot_every=2) as store:
        _assert_reads_right(store)
        store.rebuild_projections()
        _assert_reads_right(store)


def test_an_export_imports_with_its_hashes(legacy: Path, tmp_path: Path) -> None:
    exported = tmp_path / "events.jsonl"
    with SessionStore(legacy) as store, open(exported, "wb") as out:
        export_events(store, out)
        hashes = [event.hash for event in store.events()]
    with SessionStore(tmp_path / "copy") as copy:
        import_events(copy, exported)
        assert hashes == [event.hash for event in copy.events()]
        _assert_reads_right(copy)


def test_salvage_keeps_every_event(legacy: Path, tmp_path: Path) -> None:
    rescued = tmp_path / "rescued.jsonl"
    result = CliRunner().invoke(cli, ["--store", str(legacy), "salvage", "--out", str(rescued)],
                                catch_exceptions=False)
    assert 0 == result.exit_code, result.output
    assert f"Wrote all {len(_timeline())} events" in result.stdout and "no damage was met" in result.stdout
    with SessionStore(tmp_path / "new") as new:
        import_events(new, rescued)
        _assert_reads_right(new)


def test_a_snapshot_older_code_took_of_such_a_session_is_not_used_and_is_taken_again(legacy: Path) -> None:
    """Older code's snapshot of ``k`` at version 3 holds a live session without its creation time."""
    with SessionStore(legacy, snapshot_every=2) as store:
        def as_older_code_took_it(txn):
            stream_id = store._log.stream_id(txn, "k")
            assert stream_id is not None
            record = orjson.loads(store._snapshots.get(txn, stream_id, 2) or b"")
            store._snapshots.put(txn, stream_id, 3, orjson.dumps(
                {**record, "head": {**record["head"], "version": 3, "created_at": None}}))
            txn.delete(store._checkpoints._db, b"snapshots")

        store._write(as_older_code_took_it)
        assert _at(1) == store.session_at("k", version=3).metadata.created_at
    with SessionStore(legacy, snapshot_every=2) as store:  # the first writable open takes it again
        _assert_reads_right(store)


def test_one_whose_session_did_not_exist_at_the_version_it_restored_is_refused(tmp_path: Path) -> None:
    """No event gives that time: an events file holding one imports nothing, naming it."""
    events: list[tuple[str, SessionEvent]] = [("k", MessageAppended(ChatMessage.user("hi"))),
                                              ("k", _without_creation_time(0))]
    file = crafted(tmp_path / "forged.jsonl", events, whole_log=True)
    with SessionStore(tmp_path / "store") as store:
        with pytest.raises(BadExportFile, match="line 3: session 'k': a SessionRestored recorded without the time "
                                                "its session was created, which the session's history does not "
                                                r"give \(it had no live session at version 0, the one restored\)"):
            import_events(store, file)
        assert [] == list(store.events())
