"""Progress within one imported source: ``import_sessions`` reports sessions as it records them, the workspace
import counts sessions across its sources, and an events file of session histories reports events."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import ChatMessage, InvalidArgument, SessionStore, interchange
from eventstore.aio import AsyncSessionStore
from eventstore.events import MessageAppended, SessionEvent
from eventstore.zeroclaw import import_workspace

from test_zeroclaw_import import OLD_SCHEMA

START = datetime(2026, 3, 1, tzinfo=UTC)


def timed_messages(count: int, text: str) -> list[tuple[datetime, SessionEvent]]:
    return [(START + timedelta(seconds=n), MessageAppended(ChatMessage.user(f"{text} {n}"))) for n in range(count)]


def recorded_reports() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
    reports: list[tuple[int, int]] = []
    return reports, lambda done, total: reports.append((done, total))


def test_import_sessions_reports_sessions_every_thousand_events_or_so_and_at_the_end(tmp_path: Path) -> None:
    sessions = {f"s{n}": timed_messages(400, f"session {n}") for n in range(7)}
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "store") as store:
        outcome = store.import_sessions(sessions, progress=progress)
        assert outcome.receipt.sessions == 7
        # Reported once at least 1,000 events went in since the last report (after 3 and 6 sessions), and at the end.
        assert reports == [(3, 7), (6, 7), (7, 7)]
        assert [len(store.load(key)) for key in sessions] == [400] * 7


def test_sessions_already_in_the_store_count_as_done(tmp_path: Path) -> None:
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "store") as store:
        store.append("taken", ChatMessage.user("already here"))
        outcome = store.import_sessions({"taken": timed_messages(3, "no"), "new": timed_messages(2, "yes")},
                                        progress=progress)
        assert outcome.skipped == ("taken",)
        assert reports == [(2, 2)]


def test_a_progress_callback_that_raises_writes_nothing(tmp_path: Path) -> None:
    def failing(done: int, total: int) -> None:
        raise KeyboardInterrupt

    sessions = {f"s{n}": timed_messages(600, "text") for n in range(3)}
    with SessionStore(tmp_path / "store") as store:
        with pytest.raises(KeyboardInterrupt):
            store.import_sessions(sessions, source="a file", progress=failing)
        assert store.list_sessions() == []
        assert store.import_receipts() == []
        assert store.verify().ok


def test_progress_must_be_callable(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store:
        with pytest.raises(InvalidArgument, match="progress must be a callable"):
            store.import_sessions({"a": timed_messages(1, "x")}, progress=3)  # type: ignore[arg-type]
        assert store.list_sessions() == []


def test_the_async_import_reports_the_same(tmp_path: Path) -> None:
    sessions = {f"s{n}": timed_messages(700, "async") for n in range(3)}
    reports, progress = recorded_reports()

    async def run() -> int:
        async with AsyncSessionStore(tmp_path / "store") as store:
            outcome = await store.import_sessions(sessions, progress=progress)
            return outcome.receipt.sessions

    assert asyncio.run(run()) == 3
    assert reports == [(2, 3), (3, 3)]


def a_workspace(root: Path, database_sessions: int, messages: int, jsonl_files: int) -> Path:
    sessions = root / "sessions"
    sessions.mkdir(parents=True)
    with sqlite3.connect(sessions / "sessions.db") as db:
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, 'user', ?, ?)",
                       [(f"db_{s}", f"message {m} of {s}", (START + timedelta(seconds=m)).isoformat())
                        for s in range(database_sessions) for m in range(messages)])
    for n in range(jsonl_files):
        (sessions / f"file_{n}.jsonl").write_text('{"role":"user","content":"hello"}\n')
    return root


def test_a_workspace_import_counts_sessions_within_its_database(tmp_path: Path) -> None:
    workspace = a_workspace(tmp_path / "workspace", database_sessions=30, messages=100, jsonl_files=2)
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "store") as store:
        result = import_workspace(store, workspace, progress)
        assert result.sessions == 32
    # Reported within the database (every ten sessions: a thousand messages), then after each source.
    assert reports == [(10, 32), (20, 32), (30, 32), (31, 32), (32, 32)]
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)


def test_a_workspace_whose_sources_are_not_imported_still_ends_at_its_total(tmp_path: Path) -> None:
    workspace = a_workspace(tmp_path / "workspace", database_sessions=0, messages=0, jsonl_files=1)
    (workspace / "sessions" / "empty.jsonl").write_text("not json\n")
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "store") as store:
        result = import_workspace(store, workspace, progress)
        assert [source.status for source in result.sources] == ["empty", "empty", "imported"]
    assert reports == [(1, 3), (2, 3), (3, 3)]


def test_an_events_file_of_histories_reports_events(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "source") as source:
        for n in range(4):
            source.append_many(f"s{n}", [ChatMessage.user(f"m{m}") for m in range(600)])
        with open(tmp_path / "some.events.jsonl", "wb") as stream:
            interchange.export_events(source, stream, ["s0", "s1", "s2", "s3"])
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "target") as target:
        result = interchange.import_events(target, tmp_path / "some.events.jsonl", progress)
        assert (result.mode, result.events) == ("sessions", 2_400)
    assert reports == [(1_200, 2_400), (2_400, 2_400)]


def test_an_events_file_imported_again_reports_its_end(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "source") as source:
        source.append_many("only", [ChatMessage.user("a"), ChatMessage.user("b")])
        with open(tmp_path / "one.events.jsonl", "wb") as stream:
            interchange.export_events(source, stream, ["only"])
    reports, progress = recorded_reports()
    with SessionStore(tmp_path / "target") as target:
        interchange.import_events(target, tmp_path / "one.events.jsonl")
        again = interchange.import_events(target, tmp_path / "one.events.jsonl", progress)
        assert again.outcome is not None and again.outcome.already_imported
    assert reports == [(2, 2)]
