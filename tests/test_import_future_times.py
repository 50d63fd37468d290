"""Imports take no event from the future: an audit store's sessions must not outlive its clock.

A session whose last event is a year ahead stamps every later command with that time (a command's time is raised
to its session's last), says it "did not exist" as of today, and is never aged by ``cleanup_stale``. So
``import_sessions`` refuses an event later than the store's clock plus ``CLOCK_SKEW`` (nothing is written), the
ZeroClaw readers count such a time as a bad time (the time before it is used), and ``replicate``, an exact copy
of another store's log, takes its times as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import ChatMessage, InvalidArgument, SessionStore
from eventstore._time import CLOCK_SKEW
from eventstore.events import MessageAppended
from eventstore.storage import MemoryStorage
from eventstore.zeroclaw import import_workspace, read_jsonl, read_sqlite

from test_zeroclaw_hostile import database
from test_zeroclaw_import import write_file

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
YEAR_AHEAD = NOW + timedelta(days=365)


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with SessionStore.on_storage(MemoryStorage(), clock=fixed_clock) as opened:
        yield opened


def hello(moment: datetime) -> tuple[datetime, MessageAppended]:
    return moment, MessageAppended(ChatMessage.user("hello"))


class TestImportSessions:
    def test_an_event_a_year_ahead_is_refused_naming_session_and_event(self, store: SessionStore) -> None:
        with pytest.raises(InvalidArgument) as raised:
            store.import_sessions({"fine": [hello(NOW)], "ahead": [hello(NOW), hello(YEAR_AHEAD)]}, source="s")
        assert "session 'ahead', event 2: recorded at 2027-12-05T12:00:00+00:00" in str(raised.value)
        assert "nothing was imported" in str(raised.value)
        assert store.list_sessions() == [] and store.import_receipts() == []

    def test_up_to_the_clock_skew_ahead_is_taken(self, store: SessionStore) -> None:
        store.import_sessions({"k": [hello(NOW + CLOCK_SKEW)]})
        assert [m.created_at for m in store.load_with_timestamps("k")] == [NOW + CLOCK_SKEW]
        with pytest.raises(InvalidArgument):
            store.import_sessions({"j": [hello(NOW + CLOCK_SKEW + timedelta(microseconds=1))]})
        assert not store.session_exists("j")

    def test_replicate_keeps_a_whole_log_exact_even_ahead_of_its_clock(self, store: SessionStore) -> None:
        """The times are part of the hashes, and a copy holds what its source recorded: it accepts them."""
        with SessionStore.on_storage(MemoryStorage(), clock=lambda: YEAR_AHEAD) as source:
            source.append("k", ChatMessage.user("from a clock a year ahead"))
            events = source.history("k")
        assert store.replicate(events) == 1
        assert store.history("k") == events
        assert store.verify().ok


class TestZeroClaw:
    def test_a_row_dated_2099_is_a_bad_time_and_the_time_before_is_used(self, tmp_path: Path) -> None:
        database(tmp_path / "ws" / "sessions" / "sessions.db", "2099-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
        batch = read_sqlite(tmp_path / "ws" / "sessions" / "sessions.db")
        assert batch.bad_times == 4  # the message's time, and created_at, last_activity, turn_started_at
        assert [type(e).__name__ for _, e in batch.sessions["k"]] == ["MessageAppended", "MessageAppended",
                                                                      "SessionStateChanged"]
        assert {moment for moment, _ in batch.sessions["k"]} == {datetime(2026, 1, 1, tzinfo=UTC)}

    def test_such_a_workspace_imports_and_the_session_ages(self, tmp_path: Path) -> None:
        database(tmp_path / "ws" / "sessions" / "sessions.db", "2099-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
        with SessionStore(tmp_path / "store") as store:
            assert [s.status for s in import_workspace(store, tmp_path / "ws").sources] == ["imported"]
            metadata = store.get_session_metadata("k")
            assert metadata is not None and metadata.last_activity == datetime(2026, 1, 1, tzinfo=UTC)
            assert store.cleanup_stale(24) == 1

    def test_a_jsonl_file_modified_in_the_future(self, tmp_path: Path) -> None:
        path = write_file(tmp_path / "k.jsonl", b'{"role":"user","content":"hi"}\n')
        ahead = (datetime.now(UTC) + timedelta(days=365)).timestamp()  # without a clock, the real one judges
        os.utime(path, (ahead, ahead))
        batch = read_jsonl(path)
        assert batch.bad_times == 1
        assert [moment for moment, _ in batch.sessions["k"]] == [datetime(1970, 1, 1, tzinfo=UTC)]


class TestTheStoresClockJudges:
    """The readers judge a time in the future by the clock the import records with (the store's), not by this
    machine's: a time they let through must be one ``import_sessions`` takes, and one it would take must not be
    counted as bad."""

    PAST = datetime(2001, 1, 1, tzinfo=UTC)  # a store clock behind this machine's
    AHEAD = datetime(2100, 1, 1, tzinfo=UTC)  # and one ahead of it

    def jsonl(self, root: Path, modified: datetime) -> Path:
        path = write_file(root / "ws" / "sessions" / "k.jsonl", b'{"role":"user","content":"hi"}\n')
        os.utime(path, (modified.timestamp(), modified.timestamp()))
        return path

    def test_a_file_ahead_of_a_clock_set_back_is_a_bad_time_and_the_source_imports(self, tmp_path: Path) -> None:
        self.jsonl(tmp_path, self.PAST + timedelta(days=1))
        with SessionStore.on_storage(MemoryStorage(), clock=lambda: self.PAST) as store:
            result = import_workspace(store, tmp_path / "ws")
            assert [s.status for s in result.sources] == ["imported"]
            assert result.sources[0].batch is not None and result.sources[0].batch.bad_times == 1
            assert [m.created_at for m in store.load_with_timestamps("k")] == [datetime(1970, 1, 1, tzinfo=UTC)]

    def test_a_file_behind_a_clock_set_ahead_keeps_its_time(self, tmp_path: Path) -> None:
        modified = self.AHEAD - timedelta(days=1)
        self.jsonl(tmp_path, modified)
        with SessionStore.on_storage(MemoryStorage(), clock=lambda: self.AHEAD) as store:
            result = import_workspace(store, tmp_path / "ws")
            assert result.sources[0].batch is not None and result.sources[0].batch.bad_times == 0
            assert [m.created_at for m in store.load_with_timestamps("k")] == [modified]

    def test_a_callable_opening_the_store_gives_its_clock(self, tmp_path: Path) -> None:
        self.jsonl(tmp_path, self.PAST + timedelta(days=1))
        with SessionStore.on_storage(MemoryStorage(), clock=lambda: self.PAST) as store:
            result = import_workspace(lambda: store, tmp_path / "ws", clock=lambda: self.PAST)
            assert [s.status for s in result.sources] == ["imported"]
            assert [m.created_at for m in store.load_with_timestamps("k")] == [datetime(1970, 1, 1, tzinfo=UTC)]

    def test_a_clock_beside_a_store_is_refused_before_anything_is_read(self, tmp_path: Path,
                                                                        store: SessionStore) -> None:
        self.jsonl(tmp_path, self.PAST)
        with pytest.raises(InvalidArgument, match="a store brings its own"):
            import_workspace(store, tmp_path / "ws", clock=fixed_clock)
        assert store.list_sessions() == []

    def test_the_database_reader_takes_the_clock(self, tmp_path: Path) -> None:
        path = tmp_path / "ws" / "sessions" / "sessions.db"
        database(path, "2099-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
        assert read_sqlite(path, clock=lambda: self.AHEAD).bad_times == 0
        behind = read_sqlite(path, clock=lambda: self.PAST)
        assert behind.bad_times == 6  # every time: both rows', the three of the metadata row, and the file's
        assert {moment for moment, _ in behind.sessions["k"]} == {datetime(1970, 1, 1, tzinfo=UTC)}
