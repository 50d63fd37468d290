"""What ``eventstore import zeroclaw`` says and exits with: nothing importable, bad keys, nothing new, Ctrl-C.

An import from which no source could be imported fails (status 1) and creates no store, as ``import events``
of a bad file does; a bad key is listed with the key and why; a source whose every session is already in the
store says so; Ctrl-C exits 130 with one line saying what was imported and that the same command imports the
rest; and Ctrl-C while the command line loads prints no traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import SessionStore
from eventstore.cli import INTERRUPTED, cli

from test_zeroclaw_import import NEW_SCHEMA, write_file

GOOD = b'{"role":"user","content":"fine"}\n'


def run(*arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)


def sessions(tmp_path: Path) -> Path:
    path = tmp_path / "ws" / "sessions"
    path.mkdir(parents=True)
    return path


class TestNothingImportable:
    @pytest.mark.parametrize("content", [b"not a database at all", b""], ids=["not-sqlite", "no-sessions-table"])
    def test_fails_and_creates_no_store(self, tmp_path: Path, content: bytes) -> None:
        database = sessions(tmp_path) / "sessions.db"
        if content:
            database.write_bytes(content)
        else:
            sqlite3.connect(database).execute("CREATE TABLE other (x)").connection.close()
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"))
        assert result.exit_code == 1
        assert "sessions.db" in result.stdout  # the table, still printed
        assert result.stdout.endswith("No source could be imported (see RESULT above).\n")
        assert not (tmp_path / "store").exists()

    def test_json_says_so_too(self, tmp_path: Path) -> None:
        (sessions(tmp_path) / "sessions.db").write_bytes(b"junk")
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"), "--json")
        assert result.exit_code == 1
        [source] = json.loads(result.stdout)["sources"]
        assert source["status"] == "unreadable" and "is not a ZeroClaw sessions database" in source["detail"]

    def test_one_importable_source_is_success(self, tmp_path: Path) -> None:
        directory = sessions(tmp_path)
        (directory / "sessions.db").write_bytes(b"junk")
        write_file(directory / "k.jsonl", GOOD)
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"))
        assert result.exit_code == 0, result.output
        with SessionStore(tmp_path / "store") as store:
            assert store.list_sessions() == ["k"]

    def test_into_an_existing_store_it_fails_and_leaves_the_store_as_it_was(self, tmp_path: Path) -> None:
        with SessionStore(tmp_path / "store") as store:
            before = store.stats().events
        (sessions(tmp_path) / "sessions.db").write_bytes(b"junk")
        assert run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws")).exit_code == 1
        with SessionStore(tmp_path / "store") as store:
            assert store.stats().events == before


class TestWhatTheTableSays:
    def test_verbose_names_the_bad_key_escaped_and_why(self, tmp_path: Path) -> None:
        database = sessions(tmp_path) / "sessions.db"
        with sqlite3.connect(database) as db:
            db.executescript(NEW_SCHEMA)
            db.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                           [("good", "user", "hi", "2026-01-01T00:00:00Z"),
                            ("bad\x00key", "user", "hi", "2026-01-01T00:00:00Z")])
            db.execute("INSERT INTO session_metadata (session_key, created_at, last_activity) "
                       "VALUES ('', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
        db.close()
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"), "--verbose")
        assert result.exit_code == 0, result.output
        assert ("sessions.db row 2: invalid session key: 'bad\\x00key': session key must not contain NUL"
                in result.stdout)
        assert ("sessions.db: invalid session key: '', in session_metadata: session key must not be empty"
                in result.stdout)
        assert "row 0" not in result.stdout
        data = run("--store", str(tmp_path / "other"), "import", "zeroclaw", str(tmp_path / "ws"), "--json")
        assert {"line": 2, "reason": "invalid session key",
                "detail": "'bad\\x00key': session key must not contain NUL"} in json.loads(
                    data.stdout)["sources"][0]["skipped_lines"]

    def test_a_jsonl_file_named_by_a_bad_key(self, tmp_path: Path) -> None:
        long_name = "k" * 1100
        (sessions(tmp_path) / f"{long_name[:200]}.jsonl").write_bytes(b'{"session_key": ""}\n' + GOOD)
        write_file(tmp_path / "ws" / "sessions" / ".jsonl", GOOD)  # the key would be empty
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"), "--verbose")
        assert ".jsonl: invalid session key: '': session key must not be empty" in result.stdout

    def test_a_source_whose_every_session_is_in_the_store_says_nothing_new(self, tmp_path: Path) -> None:
        write_file(sessions(tmp_path) / "k.jsonl", GOOD)
        with SessionStore(tmp_path / "store") as store:
            store.set_session_name("k", "mine")
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"))
        assert result.exit_code == 0
        assert "nothing new: every session is already in the store" in result.stdout
        assert "k.jsonl: session 'k' is already in the store; not merged." in result.stdout


class TestInterrupted:
    def test_ctrl_c_says_what_was_imported_and_that_running_again_finishes(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        directory = sessions(tmp_path)
        for name in ("a", "b", "c"):
            write_file(directory / f"{name}.jsonl", GOOD)
        real = SessionStore.import_sessions
        calls = []

        def import_sessions(self: SessionStore, *args: object, **kwargs: object) -> object:
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(SessionStore, "import_sessions", import_sessions)
        result = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"))
        assert result.exit_code == INTERRUPTED == 130
        assert result.stderr == ("Interrupted: imported a.jsonl before it; running the same command again "
                                 "imports the rest\n")
        assert "Traceback" not in result.output and "Aborted!" not in result.output
        monkeypatch.setattr(SessionStore, "import_sessions", real)
        again = run("--store", str(tmp_path / "store"), "import", "zeroclaw", str(tmp_path / "ws"))
        assert again.exit_code == 0
        with SessionStore(tmp_path / "store") as store:
            assert sorted(store.list_sessions()) == ["a", "b", "c"]

    def test_ctrl_c_in_another_command_exits_130_with_one_line(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        with SessionStore(tmp_path / "store") as store:
            store.set_session_name("k", "n")

        def interrupted(*_args: object, **_kwargs: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(SessionStore, "list_sessions_page", interrupted)
        result = run("--store", str(tmp_path / "store"), "sessions")
        assert (result.exit_code, result.stderr) == (130, "Interrupted.\n")

    def test_ctrl_c_while_the_command_line_loads_prints_no_traceback(self) -> None:
        """The console script's entry point: SIGINT arriving while click and the commands are imported."""
        script = ("import sys\n"
                  "class Interrupt:\n"
                  "    def find_spec(self, name, path=None, target=None):\n"
                  "        if name == 'eventstore.cli':\n"
                  "            raise KeyboardInterrupt\n"
                  "sys.meta_path.insert(0, Interrupt())\n"
                  "from eventstore.__main__ import main\n"
                  "main()\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert (done.returncode, done.stderr, done.stdout) == (130, "Interrupted.\n", "")

    def test_ctrl_c_in_import_events_says_running_again_finishes(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        with SessionStore(tmp_path / "source") as store:
            store.set_session_name("k", "n")
        exported = tmp_path / "k.events.jsonl"
        assert run("--store", str(tmp_path / "source"), "export", "k", "--out", str(exported)).exit_code == 0
        real = SessionStore.import_sessions

        def interrupted(*_args: object, **_kwargs: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(SessionStore, "import_sessions", interrupted)
        result = run("--store", str(tmp_path / "copy"), "import", "events", str(exported))
        assert (result.exit_code, result.stderr) == (130, "Interrupted: running the same command again imports "
                                                          "the rest\n")
        monkeypatch.setattr(SessionStore, "import_sessions", real)
        assert run("--store", str(tmp_path / "copy"), "import", "events", str(exported)).exit_code == 0
        with SessionStore(tmp_path / "copy") as store:
            assert store.get_session_name("k") == "n"
