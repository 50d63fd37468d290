"""User mistakes and damaged inputs the command line meets, each told in one line that says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore, StoreNotFound
from eventstore.cli import cli
from eventstore.interchange import BadExportFile, export_events, import_events


def error_of(*arguments: str) -> str:
    result = CliRunner().invoke(cli, list(arguments), catch_exceptions=False)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_a_directory_whose_data_file_is_empty_holds_no_store_to_read(tmp_path: Path) -> None:
    """A creation that never finished (or a data file emptied by hand, with no trace of a store beside it): LMDB
    cannot read it, and said "Bad file descriptor", as if the file were not this process's to open."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "data.mdb").touch()
    with pytest.raises(StoreNotFound, match="its data file is empty"):
        SessionStore(tmp_path / "store", readonly=True)
    assert "its data file is empty" in error_of("--store", str(tmp_path / "store"), "sessions")
    with SessionStore(tmp_path / "store") as store:  # opened writable, it is created there
        assert [] == store.list_sessions()


@pytest.mark.parametrize("schema_version", [0, -1])
def test_an_events_file_with_a_schema_version_below_1_is_refused_naming_it(tmp_path: Path,
                                                                           schema_version: int) -> None:
    with SessionStore(tmp_path / "source") as source, open(tmp_path / "events.jsonl", "wb") as out:
        source.append("k", ChatMessage.user("hi"))
        export_events(source, out)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    event = json.loads(lines[1])
    event["schema_version"] = schema_version
    (tmp_path / "events.jsonl").write_text("\n".join([lines[0], json.dumps(event), *lines[2:]]) + "\n")
    said = (f"line 2: MessageAppended payload does not decode: its schema version {schema_version} is one no "
            "version of eventstore wrote")
    with SessionStore(tmp_path / "copy") as copy, pytest.raises(BadExportFile, match=said):
        import_events(copy, tmp_path / "events.jsonl")
    assert error_of("--store", str(tmp_path / "copy"), "import", "events", str(tmp_path / "events.jsonl")) == \
        f"Error: {said}"


def test_an_events_file_that_does_not_check_out_creates_no_store(tmp_path: Path) -> None:
    """Importing a bad file into a path that holds no store refuses it and leaves no new, empty store behind (the
    store was created before the file was checked); a good file then creates it as before."""
    with SessionStore(tmp_path / "source") as source, open(tmp_path / "events.jsonl", "wb") as out:
        source.append("k", ChatMessage.user("hi"))
        export_events(source, out)
    good = (tmp_path / "events.jsonl").read_text()
    (tmp_path / "bad.jsonl").write_text(good.replace('"hi"', '"hello"', 1))
    said = error_of("--store", str(tmp_path / "new"), "import", "events", str(tmp_path / "bad.jsonl"))
    assert said.startswith("Error: line 2:"), said
    assert not (tmp_path / "new").exists()
    arguments = ["--store", str(tmp_path / "new"), "import", "events", str(tmp_path / "events.jsonl")]
    result = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with SessionStore(tmp_path / "new", readonly=True) as copy:
        assert [message.content for message in copy.load("k")] == ["hi"]


@pytest.mark.parametrize("arguments", [[], ["import"]])
def test_no_command_shows_the_help_as_lines(arguments: list[str]) -> None:
    """The first thing a new user types: the list of commands, one a line, not the help escaped into one line
    after "Error:" (a group run with no command raises its help as a usage error)."""
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 2
    assert "Commands:\n" in result.output
    assert "\\n" not in result.output and "Error:" not in result.output, result.output[:300]
