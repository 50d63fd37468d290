"""User mistakes and damaged inputs the command line meets, each told in one line that says what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore, StoreNotFound, pause_gc_while_decoding
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


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding sessions under keys a shell splits, reads as an option or expands (zsh: ``=ls`` is the path
    of ``ls``)."""
    with SessionStore(tmp_path / "store") as opened:
        for key in ("sp ace", "-dash", "it's", "=ls"):
            opened.append(key, ChatMessage.user("hi"))
            opened.append(key, ChatMessage.user("there"))
    return tmp_path / "store"


@pytest.mark.parametrize(("key", "quoted"), [("sp ace", "'sp ace'"), ("-dash", "-- -dash"), ("it's", "'it'\\''s'"),
                                            ("=ls", "'=ls'")])
def test_a_command_suggested_in_an_error_is_quoted_for_a_shell_and_names_the_key(store: Path, key: str,
                                                                                  quoted: str) -> None:
    """Each error that suggests ``eventstore history`` gives the key, quoted as the `Next:` line of ``sessions``
    quotes its prefix (and after ``--`` when it looks like an option), not the placeholder ``KEY``."""
    suggested = f"`eventstore --store {store} history {quoted}`"
    for arguments in (["show", "--version", "9", "--", key], ["restore", "--version", "9", "--yes", "--", key],
                      ["fork", "--version", "9", "--", key, "new"], ["show", "--as-of", "2000-01-01", "--", key]):
        assert suggested in error_of("--store", str(store), *arguments), arguments


@pytest.mark.parametrize("name", ["hangul\u3164filler", "zero\u200bwidth", "sp ace", "plain"])
def test_a_suggested_command_gives_a_shell_the_store_s_path_however_it_is_spelled(tmp_path: Path, name: str) -> None:
    """The suggested command's ``--store`` word, read by bash, is the path the user gave: a letter the terminal
    would show as an escape (U+3164, a blank) is quoted as one, not printed bare as its escape."""
    path = tmp_path / name
    said = error_of("--store", str(path), "sessions")
    suggested = said.split("`")[1]
    assert suggested.startswith("eventstore --store ") and suggested.endswith(" demo")
    word = suggested.removeprefix("eventstore --store ").removesuffix(" demo")
    read = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True, text=True).stdout
    assert read == str(path)


@pytest.mark.parametrize("seconds", ["-5", "nan"])
def test_a_negative_stuck_threshold_is_told_by_its_option(store: Path, seconds: str) -> None:
    said = error_of("--store", str(store), "sessions", "--stuck", seconds)
    assert said == f"Error: --stuck: {seconds} is not a number of seconds (give 0 or more)"


def test_a_cursor_no_listing_printed_is_told_in_the_command_lines_words(store: Path) -> None:
    said = error_of("--store", str(store), "sessions", "--after", "bogus")
    assert said == "Error: --after: 'bogus' is not a cursor a page of `eventstore sessions` printed"


def test_a_long_cursor_no_listing_printed_is_shortened_inside_its_quotes(store: Path) -> None:
    said = error_of("--store", str(store), "sessions", "--after", "x" * 500)
    assert said == (f"Error: --after: '{'x' * 59}…' is not a cursor a page of `eventstore sessions` printed")


def test_a_line_of_an_events_file_that_is_not_json_is_told_so(store: Path, tmp_path: Path) -> None:
    """orjson's words ("invalid literal, expected 'null': line 1 column 1") count lines within the line."""
    with SessionStore(store) as opened, open(tmp_path / "events.jsonl", "wb") as out:
        export_events(opened, out, ["sp ace"])
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    (tmp_path / "events.jsonl").write_text("\n".join([*lines[:2], "nonsense", *lines[2:]]) + "\n")
    said = error_of("--store", str(tmp_path / "copy"), "import", "events", str(tmp_path / "events.jsonl"))
    assert said == "Error: line 3 is not JSON"


def test_a_store_in_a_directory_that_is_not_writable_says_so(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user asked for no read-only open: the directory's permissions made it one, and the error says that.
    (``os.access`` is what the store and the command line ask; the tests may run as root, whom chmod binds not.)"""
    access = os.access

    def no_writes_to_the_store(path: Any, mode: int, **options: Any) -> bool:
        return not (mode & os.W_OK and Path(path) == store) and access(path, mode, **options)

    monkeypatch.setattr(os, "access", no_writes_to_the_store)
    said = error_of("--store", str(store), "delete", "sp ace")
    assert said == (f"Error: the store at {store} cannot be changed: its directory is not writable, so the store "
                    "could only be read")


def test_the_command_line_opts_in_to_the_collector_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """It owns its process, so it takes the call the library leaves to its host: the collector pauses while
    sessions decode and the search index catches up (what an import ends with)."""
    import eventstore.cli

    seen: list[bool] = []
    monkeypatch.setattr(eventstore.cli, "cli", lambda prog_name: seen.append(pause_gc_while_decoding(False)))
    previous = pause_gc_while_decoding(False)
    try:
        eventstore.cli.main()
    finally:
        pause_gc_while_decoding(previous)
    assert seen == [True]


@pytest.mark.parametrize(("arguments", "told"), [
    (["--store", "", "sessions"], "--store is empty"),
    (["--store", "{tmp}/store", "--cache", "{tmp}/cache", "sessions"], "--cache is the replica directory"),
])
def test_an_empty_store_or_an_unused_cache_typed_is_a_usage_error(tmp_path: Path, arguments: list[str],
                                                                  told: str) -> None:
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in arguments])
    assert result.exit_code == 2 and told in result.stderr, result.output
    assert not (tmp_path / "store").exists() and not (tmp_path / "cache").exists()


def test_an_empty_store_or_a_cache_from_the_environment_changes_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Set for every command a shell runs: an empty store path means the default, a cache serves a shared log."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with SessionStore(tmp_path / "data" / "eventstore") as store:
        store.append("k", ChatMessage.user("hi"))
    result = CliRunner().invoke(cli, ["sessions", "--json"],
                                env={"EVENTSTORE_PATH": "", "EVENTSTORE_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["k"]
