"""Snapshots an older store lacks, derived a batch at a time on a writable open: the events of the sessions before
a batch's start are counted for its progress reports once an open, not again by every batch, and a batch reads
the stream ids it folds, not all those after its start (either was a pass over the sessions for each batch of a
large store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore._log import EventLog
from eventstore.services import maintenance
from eventstore.storage import WriteTransaction

SESSIONS = 40


def _an_older_store(path: Path) -> int:
    """Sessions of one to three events, without the checkpoint of complete snapshots (as older code left them);
    how many events."""
    with SessionStore(path, durable=False) as store:
        for number in range(SESSIONS):
            store.append_many(f"s{number}", [ChatMessage.user(f"m{number} {n}") for n in range(number % 3 + 1)])
        events = store.stats().events
        store._write(lambda txn: txn.delete(store._checkpoints._db, b"snapshots"))
    return events


def test_an_open_deriving_many_batches_reads_each_sessions_version_a_few_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _an_older_store(tmp_path)
    monkeypatch.setattr(maintenance, "_DERIVATION_BATCH", 1)  # a session a batch
    reads: list[int] = []
    plain = EventLog.stream_version

    def counted(self: EventLog, txn: object, stream_id: int) -> int:
        reads.append(stream_id)
        return plain(self, txn, stream_id)  # type: ignore[arg-type]

    monkeypatch.setattr(EventLog, "stream_version", counted)
    listed: list[int] = []
    plain_ids = EventLog.stream_ids

    def counted_ids(self: EventLog, txn: object, start: int = 0) -> Iterator[tuple[int, str]]:
        for found in plain_ids(self, txn, start):  # type: ignore[arg-type]
            listed.append(found[0])
            yield found

    monkeypatch.setattr(EventLog, "stream_ids", counted_ids)
    reports: list[tuple[int, int]] = []
    with SessionStore(tmp_path, durable=False, rebuild_progress=lambda *done: reports.append(done)) as store, \
            store._read() as txn:
        assert store._checkpoints.get(txn, "snapshots") is not None
    assert reports[-1] == (events, events)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)  # monotonic
    # Linear in the sessions: a few reads each (folding it, counting it), not one per batch after it.
    assert len(reads) <= 3 * SESSIONS, len(reads)
    assert len(listed) <= 3 * SESSIONS, len(listed)


def test_a_resumed_open_counts_the_sessions_done_by_an_earlier_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress of an open going on where an earlier one stopped starts from the events that one folded."""
    events = _an_older_store(tmp_path)
    monkeypatch.setattr(maintenance, "_DERIVATION_BATCH", 1)
    stopped: list[int] = []

    def stop_after_ten(done: int, total: int) -> None:
        stopped.append(done)
        if len(stopped) == 10:
            raise KeyboardInterrupt  # the user stops the open mid-way

    monkeypatch.setattr(maintenance, "_PROGRESS_EVERY", 1)
    with pytest.raises(KeyboardInterrupt):
        SessionStore(tmp_path, durable=False, rebuild_progress=stop_after_ten)
    reports: list[tuple[int, int]] = []
    with SessionStore(tmp_path, durable=False, rebuild_progress=lambda *done: reports.append(done)):
        pass
    assert reports[0][0] >= stopped[-2]  # what the committed batches folded is not counted from zero again
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert reports[-1] == (events, events)


def test_an_open_whose_derivation_another_process_finished_reports_it_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes opening an older store at once take batches in turn; the one that finds the last batch taken
    by the other still reports the pass done, as a progress bar expects."""
    events = _an_older_store(tmp_path)
    monkeypatch.setattr(maintenance, "_DERIVATION_BATCH", 10)
    monkeypatch.setattr(maintenance, "_PROGRESS_EVERY", 1)
    real = maintenance.Maintenance._derive_missing_snapshots
    batches: list[object] = []

    def other_process_finishes_after_the_first(self: maintenance.Maintenance, txn: WriteTransaction,
                                               progress: object, counted: object) -> object:
        batches.append(counted)
        if len(batches) == 2:  # what the other process's last batch leaves, committed between ours
            self._checkpoints.put(txn, "snapshots", maintenance.SNAPSHOTS_VERSION, self._log.head(txn)[0])
            self._checkpoints.delete(txn, "snapshots.next")
        return real(self, txn, progress, counted)  # type: ignore[arg-type]

    monkeypatch.setattr(maintenance.Maintenance, "_derive_missing_snapshots", other_process_finishes_after_the_first)
    reports: list[tuple[int, int]] = []
    with SessionStore(tmp_path, durable=False, rebuild_progress=lambda *done: reports.append(done)):
        pass
    assert len(batches) == 2 and reports[0][0] < events
    assert reports[-1] == (events, events)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
