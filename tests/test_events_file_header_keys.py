"""An events file of some sessions holds the whole history of each key its header names: a key named with no event
in the file, or named twice, is refused naming line 1, before anything is written. A truly empty export (an empty
store's whole log, or no key at all) still round-trips, and a version 1 file that matches its header still imports.
The export never writes such a header: it refuses a key with no history before it writes anything."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, InvalidArgument, SessionStore
from eventstore.cli import cli
from eventstore.interchange import BadExportFile, check_events_file, export_events, import_events


@pytest.fixture
def source(tmp_path: Path) -> Path:
    with SessionStore(tmp_path / "source") as store:
        store.append_many("a", [ChatMessage.user("one"), ChatMessage.assistant("two")])
        store.append("b", ChatMessage.user("three"))
    return tmp_path / "source"


def exported(store_path: Path, file: Path, keys: list[str] | None) -> list[dict[str, Any]]:
    with SessionStore(store_path) as store, open(file, "wb") as out:
        export_events(store, out, keys)
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]


def write(file: Path, lines: list[dict[str, Any]]) -> None:
    file.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def refused(file: Path, tmp_path: Path, said: str) -> None:
    """The import refuses ``file`` with ``said``, writing nothing, and the command line says it in one line."""
    with SessionStore(tmp_path / "copy") as copy:
        with pytest.raises(BadExportFile) as raised:
            import_events(copy, file)
        assert str(raised.value) == said
        assert list(copy.events()) == [] and copy.import_receipts() == []
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "copy"), "import", "events", str(file)])
    assert (result.exit_code, result.stderr) == (1, f"Error: {said}\n")


def test_a_key_of_the_header_without_events_is_refused(source: Path, tmp_path: Path) -> None:
    """The lines of session 'b' taken out, the trailer counting what is left (as a forger would): accepted before."""
    lines = exported(source, tmp_path / "file.jsonl", ["a", "b"])
    kept = [line for line in lines[1:-1] if line["session_key"] == "a"]
    write(tmp_path / "file.jsonl", [lines[0], *kept, {"end": True, "events": 2, "last_hash": kept[-1]["hash"]}])
    refused(tmp_path / "file.jsonl", tmp_path,
            "line 1: the header names session 'b', but the file holds no event of it")


def test_a_header_naming_keys_over_no_event_is_refused(source: Path, tmp_path: Path) -> None:
    lines = exported(source, tmp_path / "file.jsonl", ["a"])
    write(tmp_path / "file.jsonl", [lines[0], {"end": True, "events": 0, "last_hash": None}])
    refused(tmp_path / "file.jsonl", tmp_path,
            "line 1: the header names session 'a', but the file holds no event of it")


def test_a_version_1_file_missing_a_key_is_refused(source: Path, tmp_path: Path) -> None:
    """Without a trailer, a file cut after session 'a' was accepted as whole; its header says otherwise."""
    lines = exported(source, tmp_path / "file.jsonl", ["a", "b"])
    lines[0]["version"] = 1
    write(tmp_path / "file.jsonl", [lines[0], *(line for line in lines[1:-1] if line["session_key"] == "a")])
    refused(tmp_path / "file.jsonl", tmp_path,
            "line 1: the header names session 'b', but the file holds no event of it")


def test_a_key_named_twice_is_refused(source: Path, tmp_path: Path) -> None:
    lines = exported(source, tmp_path / "file.jsonl", ["a"])
    lines[0]["keys"] = ["a", "a"]
    write(tmp_path / "file.jsonl", lines)
    refused(tmp_path / "file.jsonl", tmp_path, "line 1: the header names session 'a' twice")


def test_a_version_1_file_that_matches_its_header_still_imports(source: Path, tmp_path: Path) -> None:
    lines = exported(source, tmp_path / "file.jsonl", ["b", "a"])
    lines[0]["version"] = 1
    write(tmp_path / "file.jsonl", lines[:-1])
    with SessionStore(tmp_path / "copy") as copy:
        done = import_events(copy, tmp_path / "file.jsonl")
        assert (done.mode, done.events, len(done.warnings)) == ("sessions", 3, 1)
        assert [copy.load("a"), copy.load("b")] == [
            [ChatMessage.user("one"), ChatMessage.assistant("two")], [ChatMessage.user("three")]]


@pytest.mark.parametrize("keys", [None, []])
def test_an_empty_export_round_trips(tmp_path: Path, keys: list[str] | None) -> None:
    """An empty store's whole log, and an export of no session: no event, and nothing the header declares."""
    with SessionStore(tmp_path / "empty"):
        pass
    lines = exported(tmp_path / "empty", tmp_path / "file.jsonl", keys)
    assert lines[1:] == [{"end": True, "events": 0, "last_hash": None}]
    assert check_events_file(tmp_path / "file.jsonl").events == 0
    with SessionStore(tmp_path / "copy") as copy:
        assert import_events(copy, tmp_path / "file.jsonl").events == 0
        assert list(copy.events()) == []


def test_the_command_line_round_trips_an_empty_store(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "empty"):
        pass
    runner = CliRunner()
    done = runner.invoke(cli, ["--store", str(tmp_path / "empty"), "export", "--all", "--out",
                               str(tmp_path / "file.jsonl")])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["--store", str(tmp_path / "copy"), "import", "events", str(tmp_path / "file.jsonl")])
    assert (done.exit_code, done.stdout) == (0, "0 events replicated exactly.\n")


def test_the_export_refuses_a_key_without_history_before_writing(source: Path) -> None:
    """It wrote a header naming the key, and no event of it: a file its own import now refuses."""
    out = io.BytesIO()
    with SessionStore(source) as store, pytest.raises(InvalidArgument,
                                                      match="no session 'nope' in the store: it has no event"):
        export_events(store, out, ["a", "nope"])
    assert out.getvalue() == b""
