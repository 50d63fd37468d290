"""A restore to a live session carries the time the session was created: a new event without it is refused, an
events file holding one is refused naming its line, and a log (or a snapshot) that an earlier version let one into
reads as damage naming where it is, never as an ``AssertionError``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, InvalidArgument, SessionStore, StoreCorrupted
from eventstore.cli import cli
from eventstore.events import MessageAppended, SessionEvent, SessionRestored
from eventstore.interchange import BadExportFile, import_events

from test_import_integrity import crafted, sealed

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NO_TIME = "a restore to a live session carries the time the session was created"


def _without_creation_time() -> SessionRestored:
    """The event no command writes, built as an earlier version's validator let it be (imported, forged)."""
    with attrs.validators.disabled():
        return SessionRestored(1, True, (), None, None, None)


def _timeline() -> list[tuple[str, SessionEvent]]:
    """Two appends, then a restore to version 1 without its creation time (position 3), then another session."""
    return [("k", MessageAppended(ChatMessage.user("hi"))), ("k", MessageAppended(ChatMessage.user("ho"))),
            ("k", _without_creation_time()), ("j", MessageAppended(ChatMessage.user("other")))]


def test_a_new_restore_to_a_live_session_without_its_creation_time_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=NO_TIME):
        SessionRestored(1, True, (), None, None, None)
    assert SessionRestored(1, True, (), None, None, T0).created_at == T0
    assert SessionRestored(0, False, (), None, None, None).created_at is None  # a restore to no session has none


def test_an_events_file_holding_one_is_refused_naming_its_line(tmp_path: Path) -> None:
    file = crafted(tmp_path / "forged.jsonl", _timeline(), whole_log=True)
    with SessionStore(tmp_path / "store") as store:
        with pytest.raises(BadExportFile, match=f"line 4: SessionRestored payload does not decode: {NO_TIME}"):
            import_events(store, file)
        assert [] == list(store.events())
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "store"), "import", "events", str(file)],
                                catch_exceptions=False)
    assert (1, f"Error: line 4: SessionRestored payload does not decode: {NO_TIME}\n") == (result.exit_code,
                                                                                       result.stderr)


def _forged(path: Path, snapshot_every: int = 250) -> Path:
    """A store whose log holds the event at position 3, as an earlier version's ``replicate`` accepted it."""
    with attrs.validators.disabled(), SessionStore(path, snapshot_every=snapshot_every) as store:
        store.replicate(sealed(_timeline()))
    return path


@pytest.fixture
def forged_store(tmp_path: Path) -> Path:
    return _forged(tmp_path / "store")


def test_a_log_holding_one_reads_as_damage_naming_its_position(forged_store: Path) -> None:
    at_position_3 = f"position 3: SessionRestored payload does not decode: {NO_TIME}"
    with SessionStore(forged_store) as store:
        for read in (lambda: store.session_at("k", version=3), lambda: store.history("k"),
                     lambda: list(store.events()), lambda: store.rebuild_projections()):
            with pytest.raises(StoreCorrupted, match=at_position_3):
                read()
        report = store.verify()
        assert not report.ok and at_position_3 in report.problems
        # What the damage does not reach reads as before.
        assert [ChatMessage.user("hi"), ChatMessage.user("ho")] == store.session_at("k", version=2).messages
        assert [ChatMessage.user("other")] == store.load("j")
    result = CliRunner().invoke(cli, ["--store", str(forged_store), "history", "k"], catch_exceptions=False)
    assert 1 == result.exit_code and [] == result.stdout.splitlines()
    assert f"is damaged: {at_position_3}. Run `eventstore verify`" in result.stderr
    assert "Traceback" not in result.output


def test_salvage_copies_out_the_log_before_it(forged_store: Path, tmp_path: Path) -> None:
    """What ``verify`` advises for a damaged log: the events before the one that does not decode."""
    rescued = tmp_path / "rescued.jsonl"
    result = CliRunner().invoke(cli, ["--store", str(forged_store), "salvage", "--out", str(rescued)],
                                catch_exceptions=False)
    assert 0 == result.exit_code, result.output
    assert "Wrote 2 events" in result.stdout and "position 3 cannot be read, and 1 later event" in result.stdout
    with SessionStore(tmp_path / "new") as new:
        import_events(new, rescued)
        assert [ChatMessage.user("hi"), ChatMessage.user("ho")] == new.load("k")
        assert new.verify().ok


def test_a_snapshot_an_earlier_version_took_of_such_a_session_reads_as_damage(tmp_path: Path) -> None:
    forged_store = _forged(tmp_path / "store", snapshot_every=3)  # the commit of version 3 takes a snapshot
    with SessionStore(forged_store) as store, pytest.raises(
            StoreCorrupted, match="a snapshot of stream 1 is damaged: it holds a live session without the time it "
                                  "was created"):
        store.session_at("k", version=3)
