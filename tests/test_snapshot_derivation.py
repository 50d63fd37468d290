"""Snapshots a store lacks are taken again from the log: on the first writable open of a store that older code left
without them (dropped by a redaction or a rebuild, or kept in another layout), by a rebuild of the message lists,
and by a redaction; so its point-in-time reads fold from a nearby snapshot, as a store written by this code does."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from eventstore import ChatMessage, SessionStore, StoreFull
from eventstore._folding import log_changes, view_of
from eventstore.services import maintenance
from eventstore.services.maintenance import SNAPSHOTS_VERSION
from eventstore.services.writer import CommandWriter
from eventstore.storage import WriteTransaction
from projections.session import SessionSnapshot, empty_snapshot, fold

EVERY = 10
KEYS = ("long", "edited", "short")


def _write(path: Path) -> None:
    """A long session of appends, one with removals, streaming updates, a rename, a deletion and a restore, and a
    short one: sessions older code wrote alike."""
    with SessionStore(path, snapshot_every=EVERY) as store:
        for i in range(57):
            store.append("long", ChatMessage.user(f"long {i}"))
            store.append("edited", ChatMessage.assistant(f"edited {i}"))
            if i % 7 == 3:
                store.remove_last("edited")
            if i % 5 == 1:
                store.update_last("edited", ChatMessage.assistant(f"edited {i}, revised"))
            if i == 20:
                store.set_session_name("edited", "renamed")
            if i == 30:
                store.delete_session("edited")
                store.restore("edited", version=store.history("edited")[-2].version)
        store.append_many("short", [ChatMessage.user("a"), ChatMessage.user("b")])


def _as_older_code_left_it(path: Path, layout: int | None = None) -> None:
    """Drop every snapshot (what older code's redactions and rebuilds did) or, with ``layout``, mark each as of
    that snapshot layout; and drop the checkpoint this code records once snapshots are complete."""
    with SessionStore(path, snapshot_every=EVERY) as store:
        def body(txn):
            checkpoints = store._checkpoints._db
            assert txn.get(checkpoints, b"snapshots") is not None
            txn.delete(checkpoints, b"snapshots")
            for stream_id, version in store._snapshots.versions(txn):
                if layout is None:
                    store._snapshots.delete_stream(txn, stream_id)
                else:
                    record = orjson.loads(store._snapshots.get(txn, stream_id, version) or b"")
                    store._snapshots.put(txn, stream_id, version, orjson.dumps({**record, "format": layout}))

        store._write(body)


def _fresh_folds(store: SessionStore) -> dict[str, list[SessionSnapshot]]:
    """Each session at each of its versions, folded from its first event with no snapshot."""
    folds = {}
    with store._read() as txn:
        for key in KEYS:
            stream_id = _stream(store, txn, key)
            state, states = empty_snapshot(key), []
            for change in log_changes(store._log.read_stream(txn, stream_id)):
                state = fold(state, [change])
                states.append(state)
            folds[key] = states
    return folds


def _stream(store: SessionStore, txn, key: str) -> int:
    stream_id = store._log.stream_id(txn, key)
    assert stream_id is not None
    return stream_id


def _snapshot_versions(store: SessionStore) -> dict[str, list[int]]:
    with store._read() as txn:
        return {key: store._snapshots.stream_versions(txn, _stream(store, txn, key)) for key in KEYS}


def _multiples(store: SessionStore) -> dict[str, list[int]]:
    return {key: list(range(EVERY, len(store.history(key)) + 1, EVERY)) for key in KEYS}


def _assert_reads_right_from_near(store: SessionStore) -> None:
    """Every version reads as the fold from the first event does, from a snapshot at most EVERY versions back."""
    for key, states in _fresh_folds(store).items():
        for version, state in enumerate(states, 1):
            view = store.session_at(key, version=version)
            assert view == view_of(state.head, state.messages)
            with store._read() as txn:
                found = store._snapshots.latest(txn, _stream(store, txn, key), version)
            assert version < EVERY or (found is not None and version - found[0] < EVERY), (key, version)


def test_a_store_older_code_left_without_snapshots_gets_them_on_its_first_writable_open(tmp_path: Path) -> None:
    _write(tmp_path)
    _as_older_code_left_it(tmp_path)
    with SessionStore(tmp_path, snapshot_every=EVERY, readonly=True) as store:
        assert {key: [] for key in KEYS} == _snapshot_versions(store)  # a read-only open writes nothing
    reports: list[tuple[int, int]] = []
    with SessionStore(tmp_path, snapshot_every=EVERY, rebuild_progress=lambda *done: reports.append(done)) as store:
        events = store.stats().events
        assert _multiples(store) == _snapshot_versions(store)
        assert reports and reports[-1] == (events, events)
        _assert_reads_right_from_near(store)
        assert store.verify().ok
        with store._read() as txn:
            assert (SNAPSHOTS_VERSION, events) == store._checkpoints.get(txn, "snapshots")
        assert "snapshots" not in store.stats().checkpoints  # not a read model's
    reports.clear()
    with SessionStore(tmp_path, snapshot_every=EVERY, rebuild_progress=lambda *done: reports.append(done)):
        assert [] == reports  # once


def test_snapshots_of_another_layout_are_taken_again_in_this_one(tmp_path: Path) -> None:
    _write(tmp_path)
    _as_older_code_left_it(tmp_path, layout=2)
    with SessionStore(tmp_path, snapshot_every=EVERY) as store:
        _assert_reads_right_from_near(store)
        assert store.verify().ok


def test_a_rebuild_of_the_message_lists_takes_the_snapshots_again(tmp_path: Path) -> None:
    _write(tmp_path)
    with SessionStore(tmp_path, snapshot_every=EVERY) as store:
        reports: list[tuple[int, int]] = []
        store.rebuild_projections(["messages"], progress=lambda *done: reports.append(done))
        events = store.stats().events
        assert reports[-1] == (2 * events, 2 * events) and all(done <= total for done, total in reports)
        assert _multiples(store) == _snapshot_versions(store)
        _assert_reads_right_from_near(store)
        assert store.verify().ok


def test_a_redaction_takes_its_sessions_snapshots_again_from_the_redacted_log(tmp_path: Path) -> None:
    _write(tmp_path)
    with SessionStore(tmp_path, snapshot_every=EVERY) as store:
        store.redact("long", "asked to forget")
        assert _multiples(store)["long"] == _snapshot_versions(store)["long"]
        assert {"[redacted]"} == {m.content for m in store.session_at("long", version=EVERY * 3).messages}
        _assert_reads_right_from_near(store)
        assert store.verify().ok


def test_a_store_at_its_size_cap_derives_a_batch_at_a_time_and_goes_on_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch commits alone: a store whose cap stops the derivation opens without the rest, and each later open
    goes on from the first session not done instead of folding the whole log again in vain."""
    _write(tmp_path)
    _as_older_code_left_it(tmp_path)
    monkeypatch.setattr(maintenance, "_DERIVATION_BATCH", 1)  # a session a batch
    derived: list[str] = []
    real = CommandWriter.derive_snapshots

    def derive_until_full(self: CommandWriter, txn: WriteTransaction, stream_id: int, key: str) -> None:
        derived.append(key)
        if key != "long":
            raise StoreFull("the store reached its size cap")
        real(self, txn, stream_id, key)

    monkeypatch.setattr(CommandWriter, "derive_snapshots", derive_until_full)
    for _ in range(2):
        with SessionStore(tmp_path, snapshot_every=EVERY) as store:
            assert _snapshot_versions(store)["long"] == _multiples(store)["long"]
            assert _snapshot_versions(store)["edited"] == []
            assert store.verify().ok
            with store._read() as txn:
                resume = store._checkpoints.get(txn, "snapshots.next")
                assert resume == (SNAPSHOTS_VERSION, _stream(store, txn, "edited"))
            assert "snapshots.next" not in store.stats().checkpoints  # not a read model's
    assert derived == ["long", "edited", "edited"]  # the second open did not fold "long" again
    monkeypatch.setattr(CommandWriter, "derive_snapshots", real)
    reports: list[tuple[int, int]] = []
    with SessionStore(tmp_path, snapshot_every=EVERY, rebuild_progress=lambda *done: reports.append(done)) as store:
        events = store.stats().events
        assert _multiples(store) == _snapshot_versions(store)
        assert reports[-1] == (events, events)
        _assert_reads_right_from_near(store)
        with store._read() as txn:
            assert (SNAPSHOTS_VERSION, events) == store._checkpoints.get(txn, "snapshots")
            assert store._checkpoints.get(txn, "snapshots.next") is None
