"""Importing a hostile or damaged ZeroClaw workspace: each bad source or line is reported and the run goes on.

The issue's cases: a time past year 9999 once converted to UTC, a time before
1970, a FIFO named ``x.jsonl``, a ``x.jsonl`` link to ``/dev/zero``, links to
files outside the workspace, and oversized lines and files; and empty JSONL
files, which ZeroClaw lists as sessions with no messages.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli
from eventstore.zeroclaw import MAX_FILE_BYTES, MAX_LINE_BYTES, import_workspace, parse_time, read_jsonl

from test_zeroclaw_import import MTIME, NEW_SCHEMA, write_file

FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # past datetime.max once converted to UTC
MOON_LANDING = "1969-07-20T20:17:40+00:00"  # before 1970: the store records no event there
GOOD = b'{"role":"user","content":"fine"}\n'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def sessions(tmp_path: Path) -> Path:
    """A workspace's sessions directory holding one good JSONL file, ``zz-good.jsonl``, sorted last."""
    path = tmp_path / "ws" / "sessions"
    write_file(path / "zz-good.jsonl", GOOD)
    return path


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail, rather than hang forever, if the test blocks (as reading a FIFO would)."""
    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError("the import blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def statuses(result: object) -> dict[str, tuple[str, str]]:
    return {r.path.name: (r.status, r.detail) for r in result.sources}  # type: ignore[attr-defined]


def database(path: Path, created_at: str, metadata_time: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(NEW_SCHEMA)
        db.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                       [("k", "user", "first", "2026-01-01T00:00:00+00:00"), ("k", "assistant", "odd", created_at)])
        db.execute("INSERT INTO session_metadata (session_key, created_at, last_activity, state, turn_id, "
                   "turn_started_at) VALUES ('k', ?, ?, 'running', 't', ?)", (metadata_time, metadata_time,
                                                                               metadata_time))


class TestTimes:
    def test_parse_time_of_a_time_past_year_9999_in_utc(self) -> None:
        assert parse_time(FAR_FUTURE) is None
        assert parse_time("9999-12-31T23:59:59+00:00") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

    @pytest.mark.parametrize("bad", [FAR_FUTURE, MOON_LANDING])
    def test_a_bad_time_is_counted_and_the_run_goes_on(self, sessions: Path, store: SessionStore,
                                                       bad: str) -> None:
        """The row imports with the time before it; the JSONL file after the database imports too."""
        database(sessions / "sessions.db", bad, bad)
        result = import_workspace(store, sessions.parent)
        assert {name: status for name, (status, _) in statuses(result).items()} == {
            "sessions.db": "imported", "zz-good.jsonl": "imported"}
        assert result.sources[0].batch is not None and result.sources[0].batch.bad_times == 4
        assert [(m.message.content, m.created_at) for m in store.load_with_timestamps("k")] == [
            ("first", datetime(2026, 1, 1, tzinfo=UTC)), ("odd", datetime(2026, 1, 1, tzinfo=UTC))]
        assert store.get_session_state("k").state == "running"
        assert store.load("zz-good") == [ChatMessage.user("fine")]
        assert store.verify().ok

    def test_a_file_time_before_1970(self, sessions: Path, store: SessionStore) -> None:
        old = write_file(sessions / "old.jsonl", GOOD)
        os.utime(old, (-86400, -86400))
        result = import_workspace(store, sessions.parent)
        assert [r.status for r in result.sources] == ["imported", "imported"]
        assert result.sources[0].batch is not None and result.sources[0].batch.bad_times == 1
        assert store.load_with_timestamps("old")[0].created_at == datetime(1970, 1, 1, tzinfo=UTC)

    def test_cli_reports_bad_times(self, sessions: Path, tmp_path: Path) -> None:
        database(sessions / "sessions.db", FAR_FUTURE, MOON_LANDING)
        result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s"), "import", "zeroclaw",
                                          str(sessions.parent)])
        assert result.exit_code == 0, result.output
        assert "sessions.db: 4 timestamps did not parse, were before 1970 or were in the future" in result.stdout


class TestOnlyRegularFilesInside:
    def test_fifo_is_reported_not_opened_for_blocking(self, sessions: Path, store: SessionStore,
                                                      deadline: None) -> None:
        os.mkfifo(sessions / "x.jsonl")
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["x.jsonl"] == ("refused", "a FIFO, not a regular file; not read")
        assert store.load("zz-good") == [ChatMessage.user("fine")]

    def test_link_to_dev_zero_is_refused(self, sessions: Path, store: SessionStore, deadline: None) -> None:
        (sessions / "x.jsonl").symlink_to("/dev/zero")
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["x.jsonl"] == ("refused", "a symbolic link to /dev/zero, outside the workspace; "
                                                          "not read")
        assert store.list_sessions() == ["zz-good"]

    @pytest.mark.parametrize("name", ["x.jsonl", "sessions.db"])
    def test_link_to_a_file_outside_is_refused(self, sessions: Path, store: SessionStore, tmp_path: Path,
                                               name: str) -> None:
        secret = write_file(tmp_path / "elsewhere" / "secret.jsonl", b'{"role":"user","content":"secret"}\n')
        (sessions / name).symlink_to(secret)
        result = import_workspace(store, sessions.parent)
        assert statuses(result)[name] == ("refused", f"a symbolic link to {secret}, outside the workspace; not read")
        assert store.list_sessions() == ["zz-good"]

    def test_link_to_a_file_inside_is_followed(self, sessions: Path, store: SessionStore) -> None:
        write_file(sessions.parent / "archive" / "kept.txt", b'{"role":"user","content":"archived"}\n')
        (sessions / "linked.jsonl").symlink_to(Path("..") / "archive" / "kept.txt")
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["linked.jsonl"][0] == "imported"
        assert store.load("linked") == [ChatMessage.user("archived")]

    def test_directory_and_dangling_link(self, sessions: Path, store: SessionStore) -> None:
        (sessions / "dir.jsonl").mkdir()
        (sessions / "gone.jsonl").symlink_to(sessions / "nothing-here")
        result = statuses(import_workspace(store, sessions.parent))
        assert result["dir.jsonl"] == ("refused", "a directory, not a regular file; not read")
        assert result["gone.jsonl"] == ("unreadable", "cannot read it: No such file or directory")
        assert store.list_sessions() == ["zz-good"]

    def test_cli_table_names_each_refused_source(self, sessions: Path, tmp_path: Path, deadline: None) -> None:
        os.mkfifo(sessions / "x.jsonl")
        (sessions / "y.jsonl").symlink_to("/dev/zero")
        result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s"), "import", "zeroclaw",
                                          str(sessions.parent), "--json"])
        assert result.exit_code == 0, result.output
        rows = {Path(s["source"]).name: (s["status"], s["detail"]) for s in json.loads(result.stdout)["sources"]}
        assert rows == {"x.jsonl": ("refused", "a FIFO, not a regular file; not read"),
                        "y.jsonl": ("refused", "a symbolic link to /dev/zero, outside the workspace; not read"),
                        "zz-good.jsonl": ("imported", None)}
        table = CliRunner().invoke(cli, ["--store", str(tmp_path / "t"), "import", "zeroclaw",
                                         str(sessions.parent)]).stdout
        assert "a FIFO, not a regular file; not read" in table


class TestSizeLimits:
    def test_an_oversized_line_is_skipped(self, sessions: Path, store: SessionStore) -> None:
        huge = json.dumps({"role": "user", "content": "x" * MAX_LINE_BYTES}).encode()
        write_file(sessions / "big.jsonl", GOOD + huge + b"\n" + GOOD)
        batch = read_jsonl(sessions / "big.jsonl")
        assert [(s.line, s.reason) for s in batch.skipped] == [(2, "longer than 16 MiB")]
        assert [e.message for _, e in batch.sessions["big"]] == [ChatMessage.user("fine")] * 2

    def test_an_oversized_file_is_refused_unread(self, sessions: Path, store: SessionStore) -> None:
        with open(sessions / "huge.jsonl", "wb") as sparse:
            sparse.truncate(MAX_FILE_BYTES + 1)  # a hole: no disk is used
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["huge.jsonl"] == ("refused", f"{MAX_FILE_BYTES + 1} bytes, over the 1 GiB limit; "
                                                             "not read")
        assert store.list_sessions() == ["zz-good"]


class TestEmptyFiles:
    @pytest.mark.parametrize("content", [b"", b"\n", b"  \n\t\n   "], ids=["empty", "newline", "blank"])
    def test_an_empty_file_is_a_session_with_no_messages(self, sessions: Path, store: SessionStore,
                                                          content: bytes) -> None:
        write_file(sessions / "cleared.jsonl", content)
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["cleared.jsonl"][0] == "imported"
        assert store.session_exists("cleared")
        assert store.load("cleared") == []
        assert sorted(store.list_sessions()) == ["cleared", "zz-good"]
        meta = store.get_session_metadata("cleared")
        assert meta is not None and (meta.created_at, meta.message_count) == (MTIME, 0)
        assert store.get_session_name("cleared") is None
        again = import_workspace(store, sessions.parent)
        assert statuses(again)["cleared.jsonl"][0] == "unchanged"

    def test_a_file_of_bad_lines_stays_empty(self, sessions: Path, store: SessionStore) -> None:
        """Lines that are there but are no message do not make a session (they may not be ZeroClaw's)."""
        write_file(sessions / "junk.jsonl", b"not json\n")
        result = import_workspace(store, sessions.parent)
        assert statuses(result)["junk.jsonl"][0] == "empty"
        assert not store.session_exists("junk")

    def test_export_of_an_empty_session_comes_back(self, tmp_path: Path, store: SessionStore) -> None:
        store.set_session_name("no messages/yet", "")
        out = tmp_path / "out" / "sessions"
        result = CliRunner().invoke(cli, ["--store", str(store.path), "export", "--all", "--format", "jsonl",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        with SessionStore(tmp_path / "copy") as copy:
            import_workspace(copy, out.parent)
            assert copy.list_sessions() == ["no messages/yet"]
            assert copy.load("no messages/yet") == []
