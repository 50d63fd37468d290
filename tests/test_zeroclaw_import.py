"""Importing ZeroClaw workspaces: JSONL files and the SQLite database, message by message.

Each test builds a small workspace in a temp dir the way ZeroClaw writes it:
``sessions/<sanitized key>.jsonl`` (one ``{"role","content"}`` object a line) and
``sessions/sessions.db`` with ZeroClaw's schema (new and old ``session_metadata``
columns), including the bad input ZeroClaw itself skips.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionState, SessionStore
from eventstore.cli import cli
from eventstore.events import SessionRenamed
from eventstore.zeroclaw import (
    import_workspace,
    jsonl_bytes,
    parse_time,
    read_jsonl,
    read_sqlite,
    sanitize_key,
)

MTIME = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

TOOL_CALL = ('{"content":null,"tool_calls":[{"id":"call_1","name":"shell",'
             '"arguments":"{\\"command\\":\\"ls -la\\"}"}]}')
TOOL_RESULT = '{"tool_call_id":"call_1","content":"total 0\\nfile\\u2028name"}'
LINE_SEPARATOR_TEXT = "first part\u2028second part\u2029third"

ALICE_LINES = [
    json.dumps({"role": "user", "content": "Hello"}).encode(),
    b"",  # blank (line 2)
    b"this is not json",  # line 3
    json.dumps({"role": "assistant", "content": LINE_SEPARATOR_TEXT}, ensure_ascii=False).encode(),  # line 4
    json.dumps({"foo": "bar"}).encode(),  # not a message (line 5)
    b"\xff\xfe{\"role\": \"user\"}",  # invalid UTF-8 (line 6)
    json.dumps({"role": "assistant", "content": TOOL_CALL}).encode(),  # line 7
    json.dumps({"role": "tool", "content": TOOL_RESULT}).encode(),  # line 8
    b"   \t ",  # blank (line 9)
    json.dumps({"role": "", "content": "no role"}).encode(),  # not a message (line 10)
    json.dumps([1, 2, 3]).encode(),  # not a message (line 11)
    json.dumps({"role": "user", "content": "Bye", "extra": 1}).encode() + b"\r",  # CRLF line end (line 12)
]
ALICE_MESSAGES = [
    ChatMessage.user("Hello"),
    ChatMessage.assistant(LINE_SEPARATOR_TEXT),
    ChatMessage.assistant(TOOL_CALL),
    ChatMessage.tool(TOOL_RESULT),
    ChatMessage.user("Bye"),
]

NEW_SCHEMA = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE session_metadata (
    session_key TEXT PRIMARY KEY, created_at TEXT NOT NULL, last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0, name TEXT, state TEXT NOT NULL DEFAULT 'idle',
    turn_id TEXT, turn_started_at TEXT, queue_depth INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0);
"""
OLD_SCHEMA = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE session_metadata (
    session_key TEXT PRIMARY KEY, created_at TEXT NOT NULL, last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0);
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return path


def new_database(path: Path) -> None:
    """A sessions.db with the current schema: two sessions, names, states, RFC 3339 times with nanoseconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(NEW_SCHEMA)
        rows = [
            ("telegram:42", "user", "Plan my week", "2026-02-01T09:00:00.123456789+00:00"),
            ("telegram:42", "assistant", "Monday: gym.\nTuesday: rest.", "2026-02-01T09:00:05.5+00:00"),
            ("slack/ops", "user", "Is the deploy done?", "2026-02-02T10:00:00+00:00"),
            ("telegram:42", "user", "Thanks \u2028 a lot", "2026-02-01T09:01:00+00:00"),
            ("slack/ops", "assistant", TOOL_CALL, "2026-02-02T10:00:02+00:00"),
        ]
        db.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)", rows)
        db.execute("INSERT INTO sessions (session_key, role, content, created_at) "
                   "VALUES ('slack/ops', 'user', CAST(X'FFFE41' AS TEXT), '2026-02-02T10:00:03+00:00')")  # row 6
        db.execute("INSERT INTO sessions (session_key, role, content, created_at) "
                   "VALUES ('slack/ops', 'user', X'6869', '2026-02-02T10:00:04+00:00')")  # row 7: a BLOB
        db.executemany(
            "INSERT INTO session_metadata (session_key, created_at, last_activity, message_count, name, state, "
            "turn_id, turn_started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [("telegram:42", "2026-02-01T09:00:00.123456789+00:00", "2026-02-01T09:01:00+00:00", 3,
              "Weekly plan", "idle", None, None),
             ("slack/ops", "2026-02-02T10:00:00+00:00", "2026-02-02T10:00:02+00:00", 2, None, "running",
              "turn-7", "2026-02-02T10:00:01+00:00"),
             # No message left (ZeroClaw's remove_last keeps the row), but a state: imported as an empty session.
             ("no-messages", "2026-02-03T10:00:00+00:00", "2026-02-03T11:00:00+00:00", 0, None, "idle", None,
              None)])


def old_database(path: Path) -> None:
    """A sessions.db from before the name and state columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                       [("discord_7", "user", "old hello", "2025-01-01T08:00:00+00:00"),
                        ("discord_7", "assistant", "old reply", "not a time"),
                        ("discord_7", "user", "later", "2025-01-01T08:05:00Z")])
        db.execute("INSERT INTO session_metadata VALUES ('discord_7', '2025-01-01T08:00:00+00:00', "
                   "'2025-01-01T08:05:00+00:00', 3)")
        # A row with no message, name or state: a session with no messages, as an empty JSONL file is.
        db.execute("INSERT INTO session_metadata VALUES ('ghost', '2025-01-02T08:00:00+00:00', "
                   "'2025-01-02T08:00:00+00:00', 0)")


def wal_writer(path: Path) -> sqlite3.Connection:
    """ZeroClaw's connection to a new sessions.db in WAL mode, which never checkpoints by itself: while it stays
    open, what it commits stays in the ``-wal`` file."""
    path.parent.mkdir(parents=True)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executescript(NEW_SCHEMA)
    return writer


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    sessions = root / "sessions"
    write_file(sessions / "alice.jsonl", b"\n".join(ALICE_LINES) + b"\n")
    write_file(sessions / "bob.jsonl", b'{"role":"user","content":"hi bob"}\n{"role":"assistant","content":"yo"}')
    write_file(sessions / "nothing.jsonl", b"\n\nnot json\n{\"x\": 1}\n")
    write_file(sessions / "notes.txt", b"not a session file")
    new_database(sessions / "sessions.db")
    return root


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore(tmp_path / "store") as opened:
        yield opened


def snapshot_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli_run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- reading ------------------------------------------------------------------------------------


class TestReadJsonl:
    def test_messages_and_skipped_lines(self, workspace: Path) -> None:
        """Valid lines become messages in order; every other line is skipped with its number and reason."""
        batch = read_jsonl(workspace / "sessions" / "alice.jsonl")
        assert [event.message for _, event in batch.sessions["alice"]] == ALICE_MESSAGES
        assert [(s.line, s.reason) for s in batch.skipped] == [
            (2, "blank"), (3, "not JSON"), (5, "not a message"), (6, "invalid UTF-8"), (9, "blank"),
            (10, "not a message"), (11, "not a message")]
        assert batch.skipped_by_reason() == {"blank": 2, "not JSON": 1, "not a message": 3, "invalid UTF-8": 1}

    def test_line_separator_inside_content_is_not_a_line_break(self, tmp_path: Path) -> None:
        """U+2028/U+2029 inside a JSON string stay in the content (lines split on \\n only)."""
        path = write_file(tmp_path / "k.jsonl", ALICE_LINES[3] + b"\n")
        assert "\u2028".encode() in path.read_bytes()  # raw, not escaped, in the file
        batch = read_jsonl(path)
        assert [e.message.content for _, e in batch.sessions["k"]] == [LINE_SEPARATOR_TEXT]
        assert batch.skipped == ()

    def test_times_are_the_file_modification_time(self, workspace: Path) -> None:
        batch = read_jsonl(workspace / "sessions" / "bob.jsonl")
        assert {moment for moment, _ in batch.sessions["bob"]} == {MTIME}

    def test_file_without_valid_message(self, workspace: Path) -> None:
        batch = read_jsonl(workspace / "sessions" / "nothing.jsonl")
        assert batch.sessions == {}
        assert batch.empty_sessions == ("nothing",)
        assert len(batch.skipped) == 4

    def test_receipt_fields(self, workspace: Path) -> None:
        path = workspace / "sessions" / "bob.jsonl"
        batch = read_jsonl(path)
        assert batch.size == path.stat().st_size
        assert batch.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


class TestReadSqlite:
    def test_new_schema(self, workspace: Path) -> None:
        """Messages per key in id order with their times; names; states at their turn start."""
        batch = read_sqlite(workspace / "sessions" / "sessions.db")
        week = batch.sessions["telegram:42"]
        assert [type(e).__name__ for _, e in week] == ["SessionRenamed", "MessageAppended", "MessageAppended",
                                                       "MessageAppended", "SessionStateChanged"]
        assert week[0][1].name == "Weekly plan"
        assert [m for m, _ in week] == [utc("2026-02-01T09:00:00.123456+00:00"),
                                        utc("2026-02-01T09:00:00.123456+00:00"),
                                        utc("2026-02-01T09:00:05.5+00:00"), utc("2026-02-01T09:01:00+00:00"),
                                        utc("2026-02-01T09:01:00+00:00")]
        ops = batch.sessions["slack/ops"]
        assert [type(e).__name__ for _, e in ops] == ["MessageAppended", "SessionStateChanged", "MessageAppended"]
        assert ops[1] == (utc("2026-02-02T10:00:01+00:00"), ops[1][1])
        assert (ops[1][1].state, ops[1][1].turn_id) == ("running", "turn-7")
        assert [(s.line, s.reason) for s in batch.skipped] == [(6, "invalid UTF-8"), (7, "not a message")]
        assert batch.sessions["no-messages"] == [(utc("2026-02-03T11:00:00+00:00"),
                                                  batch.sessions["no-messages"][0][1])]
        assert batch.empty_sessions == ()

    def test_old_schema_without_name_and_state(self, tmp_path: Path) -> None:
        """An old session_metadata without name/state columns imports; a bad time takes the one before it."""
        path = tmp_path / "sessions.db"
        old_database(path)
        batch = read_sqlite(path)
        events = batch.sessions["discord_7"]
        assert [e.message.content for _, e in events] == ["old hello", "old reply", "later"]
        assert [m for m, _ in events] == [utc("2025-01-01T08:00:00+00:00"), utc("2025-01-01T08:00:00+00:00"),
                                          utc("2025-01-01T08:05:00+00:00")]
        assert batch.bad_times == 1
        assert batch.empty_sessions == ()
        assert batch.sessions["ghost"] == [(utc("2025-01-02T08:00:00+00:00"), SessionRenamed(None))]

    def test_reads_the_write_ahead_log_without_touching_the_source(self, tmp_path: Path) -> None:
        """Rows still in sessions.db-wal are read, and no file appears or changes beside the database."""
        path = tmp_path / "ws" / "sessions" / "sessions.db"
        writer = wal_writer(path)
        writer.execute("INSERT INTO sessions (session_key, role, content, created_at) "
                       "VALUES ('wal-key', 'user', 'in the wal', '2026-01-01T00:00:00+00:00')")
        writer.commit()
        try:
            assert (path.parent / "sessions.db-wal").stat().st_size > 0
            before = snapshot_files(tmp_path / "ws")
            batch = read_sqlite(path)
            assert snapshot_files(tmp_path / "ws") == before
        finally:
            writer.close()
        assert [e.message.content for _, e in batch.sessions["wal-key"]] == ["in the wal"]

    def test_not_a_database(self, tmp_path: Path) -> None:
        from eventstore.zeroclaw import NotAWorkspace
        path = write_file(tmp_path / "sessions.db", b"garbage" * 100)
        with pytest.raises(NotAWorkspace, match="not a ZeroClaw sessions database"):
            read_sqlite(path)


def test_parse_time() -> None:
    """RFC 3339 with nanoseconds, Z, or no offset (UTC); garbage is None."""
    assert parse_time("2026-02-01T09:00:00.123456789+02:00") == datetime(2026, 2, 1, 7, 0, 0, 123456, UTC)
    assert parse_time(b"2026-02-01T09:00:00Z") == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert parse_time("2026-02-01 09:00:00") == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert parse_time("yesterday") is None and parse_time(None) is None and parse_time(5) is None


# -- importing ------------------------------------------------------------------------------------


class TestImportWorkspace:
    def test_sessions_message_by_message(self, workspace: Path, store: SessionStore) -> None:
        """Every session arrives with its messages, times, names and states."""
        result = import_workspace(store, workspace)
        assert {r.path.name: r.status for r in result.sources} == {
            "sessions.db": "imported", "alice.jsonl": "imported", "bob.jsonl": "imported", "nothing.jsonl": "empty"}
        assert sorted(store.list_sessions()) == ["alice", "bob", "no-messages", "slack/ops", "telegram:42"]

        assert store.load("alice") == ALICE_MESSAGES
        assert {m.created_at for m in store.load_with_timestamps("alice")} == {MTIME}
        assert store.load("bob") == [ChatMessage.user("hi bob"), ChatMessage.assistant("yo")]

        week = store.load_with_timestamps("telegram:42")
        assert [(m.message.role, m.message.content) for m in week] == [
            ("user", "Plan my week"), ("assistant", "Monday: gym.\nTuesday: rest."), ("user", "Thanks \u2028 a lot")]
        assert [m.created_at for m in week] == [utc("2026-02-01T09:00:00.123456+00:00"),
                                                utc("2026-02-01T09:00:05.5+00:00"), utc("2026-02-01T09:01:00+00:00")]
        assert store.get_session_name("telegram:42") == "Weekly plan"
        assert store.get_session_state("telegram:42") == SessionState("idle", None, None)
        meta = store.get_session_metadata("telegram:42")
        assert meta is not None
        assert (meta.created_at, meta.last_activity, meta.message_count) == (
            utc("2026-02-01T09:00:00.123456+00:00"), utc("2026-02-01T09:01:00+00:00"), 3)

        assert store.load("slack/ops") == [ChatMessage.user("Is the deploy done?"), ChatMessage.assistant(TOOL_CALL)]
        assert store.get_session_name("slack/ops") is None
        assert store.get_session_state("slack/ops") == SessionState("running", "turn-7",
                                                                     utc("2026-02-02T10:00:01+00:00"))
        assert [m.key for m in store.list_running_sessions()] == ["slack/ops"]
        assert store.load("no-messages") == []
        assert store.get_session_state("no-messages") == SessionState("idle", None, None)
        assert store.verify().ok

    def test_counts(self, workspace: Path, store: SessionStore) -> None:
        result = import_workspace(store, workspace)
        assert result.sessions == 5
        assert result.messages == 5 + 2 + 3 + 2
        assert result.skipped_lines == 7 + 4 + 2

    def test_idempotent(self, workspace: Path, store: SessionStore) -> None:
        """A second import writes nothing: every source is unchanged."""
        import_workspace(store, workspace)
        events = store.stats().events
        again = import_workspace(store, workspace)
        assert {r.path.name: r.status for r in again.sources} == {
            "sessions.db": "unchanged", "alice.jsonl": "unchanged", "bob.jsonl": "unchanged",
            "nothing.jsonl": "empty"}
        assert again.sessions == 0
        assert store.stats().events == events
        assert len(store.import_receipts()) == 3

    def test_changed_source_is_reported_not_merged(self, workspace: Path, store: SessionStore) -> None:
        import_workspace(store, workspace)
        bob = workspace / "sessions" / "bob.jsonl"
        bob.write_bytes(bob.read_bytes() + b'\n{"role":"user","content":"more"}\n')
        again = import_workspace(store, workspace)
        changed = next(r for r in again.sources if r.path.name == "bob.jsonl")
        assert changed.status == "changed"
        assert "not merged" in changed.detail
        assert store.load("bob") == [ChatMessage.user("hi bob"), ChatMessage.assistant("yo")]

    def test_existing_key_is_reported_not_merged(self, workspace: Path, store: SessionStore) -> None:
        store.append("bob", ChatMessage.user("already here"))
        result = import_workspace(store, workspace)
        bob = next(r for r in result.sources if r.path.name == "bob.jsonl")
        assert (bob.status, bob.existing_keys, bob.sessions) == ("imported", ("bob",), 0)
        assert store.load("bob") == [ChatMessage.user("already here")]

    def test_key_in_both_database_and_jsonl(self, workspace: Path, store: SessionStore) -> None:
        """The database is read first; a JSONL file for the same key is then reported, not merged."""
        write_file(workspace / "sessions" / "slack_ops.jsonl", b'{"role":"user","content":"x"}\n')
        write_file(workspace / "sessions" / "telegram:42.jsonl", b'{"role":"user","content":"dup"}\n')
        result = import_workspace(store, workspace)
        dup = next(r for r in result.sources if r.path.name == "telegram:42.jsonl")
        assert dup.existing_keys == ("telegram:42",)
        assert store.load("slack_ops") == [ChatMessage.user("x")]
        assert store.get_session_name("telegram:42") == "Weekly plan"

    def test_sources_are_never_modified(self, workspace: Path, store: SessionStore) -> None:
        before = snapshot_files(workspace)
        mtimes = {p: p.stat().st_mtime_ns for p in workspace.rglob("*")}
        import_workspace(store, workspace)
        import_workspace(store, workspace)
        assert snapshot_files(workspace) == before
        assert {p: p.stat().st_mtime_ns for p in workspace.rglob("*")} == mtimes

    def test_old_database(self, tmp_path: Path, store: SessionStore) -> None:
        old_database(tmp_path / "old" / "sessions" / "sessions.db")
        result = import_workspace(store, tmp_path / "old")
        assert [r.status for r in result.sources] == ["imported"]
        assert result.sources[0].batch.empty_sessions == ()
        # Listed, as ZeroClaw lists it, with no messages and no name, created when its row says.
        assert store.session_exists("ghost") and store.load("ghost") == []
        assert store.get_session_name("ghost") is None
        ghost = store.get_session_metadata("ghost")
        assert ghost is not None and ghost.created_at == utc("2025-01-02T08:00:00+00:00")
        assert [m.content for m in store.load("discord_7")] == ["old hello", "old reply", "later"]
        assert store.get_session_name("discord_7") is None
        assert store.get_session_state("discord_7") == SessionState("idle", None, None)  # no state column
        meta = store.get_session_metadata("discord_7")
        assert meta is not None and meta.created_at == utc("2025-01-01T08:00:00+00:00")

    def test_workspace_may_be_the_sessions_directory(self, workspace: Path, store: SessionStore) -> None:
        result = import_workspace(store, workspace / "sessions")
        assert result.sessions == 5


# -- the command ------------------------------------------------------------------------------------


class TestImportCommand:
    def test_summary_and_verbose_line_numbers(self, workspace: Path, tmp_path: Path) -> None:
        target = tmp_path / "cli-store"
        result = cli_run("--store", str(target), "import", "zeroclaw", str(workspace))
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "alice.jsonl" in out and "2 blank, 1 not JSON, 3 not a message, 1 invalid UTF-8" in out
        assert "no valid message; nothing imported" in out  # nothing.jsonl
        assert "Imported 5 sessions with 12 messages; skipped 13 lines. (--verbose lists them)" in out
        assert "line 6: invalid UTF-8" not in out

        verbose = cli_run("--store", str(tmp_path / "other"), "import", "zeroclaw", str(workspace), "--verbose")
        assert "alice.jsonl line 6: invalid UTF-8" in verbose.stdout
        assert "alice.jsonl line 3: not JSON" in verbose.stdout
        assert "sessions.db row 6: invalid UTF-8" in verbose.stdout

    def test_json_and_second_run(self, workspace: Path, tmp_path: Path) -> None:
        target = tmp_path / "cli-store"
        data = json.loads(cli_run("--store", str(target), "import", "zeroclaw", str(workspace), "--json").stdout)
        assert (data["sessions"], data["messages"], data["skipped_lines"]) == (5, 12, 13)
        alice = next(s for s in data["sources"] if s["source"].endswith("alice.jsonl"))
        assert alice["status"] == "imported"
        assert {"line": 4, "reason": "not JSON"} not in alice["skipped_lines"]
        assert {"line": 3, "reason": "not JSON"} in alice["skipped_lines"]
        again = json.loads(cli_run("--store", str(target), "import", "zeroclaw", str(workspace), "--json").stdout)
        assert again["sessions"] == 0
        assert {s["status"] for s in again["sources"]} == {"unchanged", "empty"}
        text = cli_run("--store", str(target), "import", "zeroclaw", str(workspace)).stdout
        assert "unchanged since its import; nothing added" in text

    def test_reports_existing_key_and_changed_source(self, workspace: Path, tmp_path: Path) -> None:
        target = tmp_path / "cli-store"
        with SessionStore(target) as store:
            store.append("alice", ChatMessage.user("mine"))
        result = cli_run("--store", str(target), "import", "zeroclaw", str(workspace))
        assert "alice.jsonl: session 'alice' is already in the store; not merged." in result.stdout
        bob = workspace / "sessions" / "bob.jsonl"
        bob.write_bytes(bob.read_bytes() + b"\n{}\n")
        result = cli_run("--store", str(target), "import", "zeroclaw", str(workspace))
        assert result.exit_code == 0
        assert "changed since it was imported; not merged" in result.stdout

    def test_missing_workspace(self, tmp_path: Path) -> None:
        result = cli_run("--store", str(tmp_path / "s"), "import", "zeroclaw", str(tmp_path / "nope"))
        assert result.exit_code == 1
        assert result.stderr.strip() == f"Error: {tmp_path / 'nope'} is not a directory; give the ZeroClaw " \
                                        "workspace directory"
        assert not (tmp_path / "s").exists()


# -- writing -----------------------------------------------------------------------------------------


class TestWriteJsonl:
    def test_sanitize_key(self) -> None:
        """Every character but a Unicode letter, digit, _ or - becomes _ (ZeroClaw's rule)."""
        assert sanitize_key("slack/thread:123/user") == "slack_thread_123_user"
        assert sanitize_key("télé_gram-٣") == "télé_gram-٣"
        assert sanitize_key("a b.c") == "a_b_c"

    def test_round_trip_through_the_reader(self, tmp_path: Path) -> None:
        """What write_jsonl writes, read_jsonl reads back exactly, U+2028 and tool calls included."""
        path = tmp_path / "k.jsonl"
        path.write_bytes(jsonl_bytes(ALICE_MESSAGES))
        assert path.read_bytes().count(b"\n") == len(ALICE_MESSAGES)
        batch = read_jsonl(path)
        assert [e.message for _, e in batch.sessions["k"]] == ALICE_MESSAGES
        assert batch.skipped == ()


def test_local_time_zone_does_not_change_imported_times(workspace: Path, store: SessionStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite times carry their offset; the importer never reads them as local time."""
    monkeypatch.setenv("TZ", "XYZ+07:00")
    time.tzset()
    try:
        import_workspace(store, workspace)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert store.load_with_timestamps("slack/ops")[0].created_at == utc("2026-02-02T10:00:00+00:00")
