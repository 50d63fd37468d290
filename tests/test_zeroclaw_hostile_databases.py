"""A hostile ``sessions.db``: SQL of the file's own that a read would run is refused before any row is read.

ZeroClaw's tables are plain tables. A ``sessions`` view that recurses for ever
made the import hang while its memory grew without bound; a generated column
made a gigabyte-long value per row from a file of a few kilobytes.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import SessionStore
from eventstore.zeroclaw import import_workspace

from test_zeroclaw_import import NEW_SCHEMA

ENDLESS_SESSIONS = """
CREATE VIEW sessions AS
    WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n)
    SELECT id, 'k' AS session_key, 'user' AS role, 'again' AS content, '2026-01-01T00:00:00Z' AS created_at FROM n;
"""
PLAIN_SESSIONS = ("CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT NOT NULL, "
                  "role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL);")


def workspace(tmp_path: Path, script: str) -> Path:
    sessions = tmp_path / "ws" / "sessions"
    sessions.mkdir(parents=True)
    with sqlite3.connect(sessions / "sessions.db") as db:
        db.executescript(script)
    db.close()
    (sessions / "zz-good.jsonl").write_bytes(b'{"role":"user","content":"fine"}\n')
    return tmp_path / "ws"


def limit_memory() -> None:
    """Bound the child, so that an import that never ends cannot take the machine's memory with it."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_an_endless_sessions_view_is_refused_and_the_import_goes_on(tmp_path: Path) -> None:
    ws = workspace(tmp_path, ENDLESS_SESSIONS)
    try:
        done = subprocess.run([sys.executable, "-m", "eventstore", "--store", str(tmp_path / "store"), "import",
                               "zeroclaw", str(ws), "--json"], capture_output=True, text=True, timeout=60,
                              preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("the import of a database whose sessions view never ends did not end")
    assert done.returncode == 0, done.stderr
    sources = {Path(s["source"]).name: s for s in json.loads(done.stdout)["sources"]}
    assert sources["sessions.db"]["status"] == "unreadable"
    assert "its sessions is a view, which ZeroClaw never writes" in sources["sessions.db"]["detail"]
    assert sources["zz-good.jsonl"]["status"] == "imported"


@pytest.mark.parametrize(("script", "said"), [
    (NEW_SCHEMA.replace("CREATE TABLE session_metadata (", "CREATE TABLE metadata_rows (")
     + "INSERT INTO metadata_rows (session_key, created_at, last_activity, name) "
       "VALUES ('k', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'named');"
     + "CREATE VIEW session_metadata AS SELECT * FROM metadata_rows;",
     "its session_metadata is a view"),
    ("CREATE TABLE sessions (id INTEGER PRIMARY KEY, session_key TEXT, role TEXT, created_at TEXT, "
     "content TEXT GENERATED ALWAYS AS (printf('%.*c', 20000000, 'x')) VIRTUAL);"
     "INSERT INTO sessions (session_key, role, created_at) VALUES ('k', 'user', '2026-01-01T00:00:00Z');",
     "its sessions has generated columns"),
    ("CREATE VIRTUAL TABLE sessions USING fts5(id, session_key, role, content, created_at);"
     "INSERT INTO sessions VALUES (1, 'k', 'user', 'hello', '2026-01-01T00:00:00Z');",
     "its sessions is a virtual table"),
    (PLAIN_SESSIONS.replace("CREATE TABLE sessions", "CREATE TABLE Sessions_rows") +
     "CREATE VIEW SESSIONS AS SELECT * FROM Sessions_rows;", "its sessions is a view"),
])
def test_tables_zeroclaw_never_writes_are_refused(tmp_path: Path, script: str, said: str) -> None:
    ws = workspace(tmp_path, script)
    with SessionStore(tmp_path / "store") as store:
        result = import_workspace(store, ws)
        assert {r.path.name: r.status for r in result.sources} == {"sessions.db": "unreadable",
                                                                    "zz-good.jsonl": "imported"}
        assert said in result.sources[0].detail
        assert store.list_sessions() == ["zz-good"]


def test_plain_tables_with_an_index_and_a_trigger_still_import(tmp_path: Path) -> None:
    """What ZeroClaw may add beside its tables (indexes, triggers) runs no SQL on a read: still read."""
    ws = workspace(tmp_path, NEW_SCHEMA + "CREATE INDEX by_key ON sessions (session_key);"
                   "CREATE TRIGGER touch AFTER INSERT ON sessions BEGIN UPDATE session_metadata SET "
                   "message_count = message_count + 1 WHERE session_key = new.session_key; END;"
                   "INSERT INTO sessions (session_key, role, content, created_at) "
                   "VALUES ('k', 'user', 'hello', '2026-01-01T00:00:00Z');")
    with SessionStore(tmp_path / "store") as store:
        result = import_workspace(store, ws)
        assert [r.status for r in result.sources] == ["imported", "imported"]
        assert [m.content for m in store.load("k")] == ["hello"]
