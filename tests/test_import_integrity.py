"""Imports check what they accept (issue 12, items 5, 6, 7 and 10; issue 13, item 8): an events file is
checked line by line before anything is written, redacted sessions travel in a form that verifies, and an
event no command records is refused as the caller's mistake, never reported as damage to the store."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, InvalidArgument, RecordedEvent, SessionStore
from eventstore._codec import encode_event
from eventstore._log import GENESIS_HASH, chain_hash
from eventstore._time import to_micros
from eventstore.cli import cli
from eventstore.events import (
    LastMessageRemoved,
    MessageAppended,
    MessagesCleared,
    SessionEvent,
    SessionRedacted,
    SessionRestored,
)
from eventstore.interchange import BadExportFile, ExportHeader, import_events, write_events

from conftest import FakeClock
from test_export_roundtrip import build

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
Lines = list[dict[str, Any]]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sealed(events: list[tuple[str, SessionEvent]]) -> list[RecordedEvent]:
    """A log as a forger would write it: positions, versions, digests and hashes all consistent."""
    previous = GENESIS_HASH
    versions: dict[str, int] = {}
    log: list[RecordedEvent] = []
    for position, (key, event) in enumerate(events, 1):
        version = versions[key] = versions.get(key, 0) + 1
        at = START + timedelta(seconds=position)
        encoded = encode_event(event)
        digest = hashlib.sha256(encoded.payload).digest()
        event_id = uuid.uuid4()
        link = chain_hash(previous, position, key, version, to_micros(at), event_id.bytes, encoded, digest)
        log.append(RecordedEvent(position, key, version, at, event, event_id, link.hex(), digest.hex()))
        previous = link
    return log


def crafted(path: Path, events: list[tuple[str, SessionEvent]], *, whole_log: bool) -> Path:
    keys = None if whole_log else tuple(dict.fromkeys(key for key, _ in events))
    with open(path, "wb") as out:
        write_events(sealed(events), out, ExportHeader(whole_log, keys))
    return path


def read_lines(path: Path) -> Lines:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rewrite(path: Path, lines: Lines) -> None:
    """Write ``lines`` back, with a trailer that matches them when the file has one (as a forger would)."""
    events = [line for line in lines[1:] if "end" not in line]
    trailer = [{"end": True, "events": len(events), "last_hash": events[-1]["hash"] if events else None}]
    ends = any("end" in line for line in lines[1:])
    path.write_text("".join(json.dumps(line) + "\n" for line in [lines[0], *events, *(trailer if ends else [])]),
                    encoding="utf-8")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "source"
    build(path)
    return path


def export(source: Path, out: Path, *keys: str) -> Path:
    result = run("--store", str(source), "export", *(keys or ("--all",)), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def refused(store_path: Path, file: Path, message: str) -> None:
    """Importing ``file`` raises BadExportFile with ``message`` in it and writes nothing."""
    with SessionStore(store_path) as store:
        before = list(store.events())
        with pytest.raises(BadExportFile) as raised:
            import_events(store, file)
        assert message in str(raised.value)
        assert (before, True) == (list(store.events()), store.verify().ok)


# -- redacted sessions travel (item 5) -----------------------------------------------------------------


class TestRedactedSessions:
    def test_export_of_a_redacted_session_imports_and_verifies(self, source: Path, tmp_path: Path) -> None:
        """Redacted events stay redacted, with their original digests; the redaction names their new places."""
        dump = export(source, tmp_path / "secret.jsonl", "secret")
        target = tmp_path / "copy"
        with SessionStore(target) as copy:
            copy.append("first", ChatMessage.user("so that positions differ"))
        assert run("--store", str(target), "import", "events", str(dump)).exit_code == 0
        assert run("--store", str(target), "verify").exit_code == 0
        with SessionStore(source) as original, SessionStore(target) as copy:
            mine, theirs = copy.history("secret"), original.history("secret")
            # The redaction (version 3) names other positions here, so its payload and digest differ.
            assert [(r.version, r.event, r.payload_digest, r.redacted) for r in mine if r.version != 3] == \
                [(r.version, r.event, r.payload_digest, r.redacted) for r in theirs if r.version != 3]
            assert mine[2].event == SessionRedacted("contained a password",
                                                    tuple((r.position, h) for r, (_, h)
                                                          in zip(mine[:2], theirs[2].event.rewritten)))
            assert copy.load("secret") == original.load("secret")
            copy.rebuild_projections()
            assert copy.verify().ok

    def test_history_of_another_store_imports_and_verifies(self, source: Path, tmp_path: Path) -> None:
        with SessionStore(source) as original, SessionStore(tmp_path / "copy") as copy:
            copy.import_sessions({"secret": original.history("secret")})
            assert [r.redacted for r in copy.history("secret")] == [True, True, False, False]
            assert copy.verify().ok

    def test_crafted_redaction_line_is_refused(self, tmp_path: Path) -> None:
        """A 3-line file whose SessionRedacted names an event it did not redact would damage any store."""
        store_path = tmp_path / "store"
        with SessionStore(store_path) as store:
            store.append("mine", ChatMessage.user("keep me"))
        file = crafted(tmp_path / "crafted.jsonl", [
            ("x", MessageAppended(ChatMessage.user("hello"))),
            ("x", SessionRedacted("forged", ((1, "0" * 64),))),
        ], whole_log=False)
        refused(store_path, file, "line 3: session 'x': a SessionRedacted that leaves message content before it")


# -- a file of some sessions is checked (item 6) ---------------------------------------------------------


def forge_message(lines: Lines) -> None:
    lines[1]["payload"]["message"][1] = "question 0 about porto"


def forge_hash(lines: Lines) -> None:
    lines[2]["hash"] = hashlib.sha256(b"forged").hexdigest()


def duplicate_line(lines: Lines) -> None:
    lines.insert(3, lines[2])


def drop_whole_log(lines: Lines) -> None:
    del lines[0]["whole_log"]


def drop_keys(lines: Lines) -> None:
    del lines[0]["keys"]


def swap_versions(lines: Lines) -> None:
    lines[2], lines[3] = lines[3], lines[2]


def drop_version_1(lines: Lines) -> None:
    del lines[1]


@pytest.mark.parametrize(("forge", "message"), [
    (forge_message, "line 2: session 'chat/1': the payload does not match its payload_digest"),
    (forge_hash, "line 3: session 'chat/1': the hash does not follow from the event and the one before it"),
    (duplicate_line, "line 4: position 2 repeats line 3"),
    (drop_whole_log, "line 1: the header's 'whole_log' must be true or false"),
    (drop_keys, "line 1: the header's 'keys' must list the file's session keys"),
    (swap_versions, "line 3: session 'chat/1': version 3 where version 2 was due"),
    (drop_version_1, "line 2: session 'chat/1': version 2 where version 1 was due"),
])
def test_forged_sessions_file_is_refused(source: Path, tmp_path: Path, forge: Callable[[Lines], None],
                                         message: str) -> None:
    file = export(source, tmp_path / "some.jsonl", "chat/1", "ops:deploy")
    lines = read_lines(file)
    forge(lines)
    rewrite(file, lines)
    refused(tmp_path / "copy", file, message)


def test_what_could_not_be_checked_is_reported(source: Path, tmp_path: Path) -> None:
    """chat/1's restore follows another session's event: its hash cannot be checked, and the report says so."""
    file = export(source, tmp_path / "some.jsonl", "chat/1")
    events = len(read_lines(file)) - 2
    result = run("--store", str(tmp_path / "copy"), "import", "events", str(file))
    assert result.exit_code == 0, result.output
    assert f"warning: the hashes of 1 of the {events} events could not be checked: the event before each " \
        "belongs to a session not in the file." in result.stdout


# -- a whole log is checked (item 7) ----------------------------------------------------------------------


class TestWholeLog:
    def test_file_cut_at_a_line_boundary_is_refused(self, source: Path, tmp_path: Path) -> None:
        file = export(source, tmp_path / "all.jsonl")
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        file.write_text("".join(lines[:-4]), encoding="utf-8")
        refused(tmp_path / "copy", file, "the file ends without its trailer line after")

    def test_trailer_that_does_not_match_is_refused(self, source: Path, tmp_path: Path) -> None:
        file = export(source, tmp_path / "all.jsonl")
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        file.write_text("".join(lines[:-4] + lines[-1:]), encoding="utf-8")
        refused(tmp_path / "copy", file, "the trailer counts")

    def test_file_without_a_trailer_imports_with_a_warning(self, source: Path, tmp_path: Path) -> None:
        """A version 1 file (no trailer) still imports; the report and the CLI say what could not be checked."""
        file = export(source, tmp_path / "all.jsonl")
        lines = read_lines(file)
        lines[0]["version"] = 1
        file.write_text("".join(json.dumps(line) + "\n" for line in lines[:-1]), encoding="utf-8")
        result = run("--store", str(tmp_path / "copy"), "import", "events", str(file), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["warnings"] == [
            "the file has no trailer line (it was written by an older eventstore): a file cut short at a line "
            "boundary cannot be told from a whole one"]
        again = run("--store", str(tmp_path / "copy"), "import", "events", str(file))
        assert "warning: the file has no trailer line" in again.stdout
        with SessionStore(tmp_path / "copy") as copy, SessionStore(source) as original:
            assert (copy.verify().ok, list(copy.events())) == (True, list(original.events()))

    def test_forged_redaction_is_refused(self, source: Path, tmp_path: Path) -> None:
        """An event marked redacted, its payload replaced, that no redaction names: the copy would not verify."""
        file = export(source, tmp_path / "all.jsonl")
        lines = read_lines(file)
        line = next(line for line in lines[1:-1] if line.get("type") == "MessageAppended"
                    and line["session_key"] == "chat/1")
        line["redacted"], line["payload"]["message"][1] = True, "[redacted]"
        rewrite(file, lines)
        refused(tmp_path / "copy", file, f"session 'chat/1': events at positions [{line['position']}] are marked "
                                         "redacted, but no SessionRedacted names them")


# -- an event no command records is the file's mistake, not damage (item 10; issue 13, item 8) -------------


@pytest.mark.parametrize("whole_log", [True, False])
def test_removal_from_an_empty_session_names_the_line(tmp_path: Path, whole_log: bool) -> None:
    file = crafted(tmp_path / "bad.jsonl", [("a", MessageAppended(ChatMessage.user("hi"))),
                                            ("x", LastMessageRemoved())], whole_log=whole_log)
    refused(tmp_path / "store", file, "line 3: session 'x': LastMessageRemoved on a session with no message")
    result = run("--store", str(tmp_path / "store"), "import", "events", str(file))
    assert (result.exit_code, result.stderr) == (1, "Error: line 3: session 'x': LastMessageRemoved on a "
                                                    "session with no message\n")


HI = (START, MessageAppended(ChatMessage.user("hi")))


@pytest.mark.parametrize(("timed", "message"), [
    ([(START, LastMessageRemoved())], "session 'k', event 1: LastMessageRemoved on a session with no message"),
    ([HI, (START, MessagesCleared(3))], "session 'k', event 2: MessagesCleared(3) on a session with 1 messages"),
    ([(START, SessionRestored(50, False, (), None, None, None))],
     "session 'k', event 1: SessionRestored to version 50 of a session at version 0"),
    ([HI, (START, SessionRestored(2, True, (), None, None, START))],
     "session 'k', event 2: SessionRestored to version 2 of a session at version 1"),
])
def test_import_sessions_refuses_what_no_command_records(store: SessionStore, clock: FakeClock,
                                                         timed: list[Any], message: str) -> None:
    clock.now = START  # the events' time: not in the store's future
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        store.import_sessions({"fine": [HI], "k": timed})
    assert store.stats().events == 0


def test_events_file_with_a_wrong_clear_names_the_line(tmp_path: Path) -> None:
    file = crafted(tmp_path / "bad.jsonl", [("k", MessageAppended(ChatMessage.user("hi"))),
                                            ("k", MessagesCleared(5))], whole_log=False)
    refused(tmp_path / "store", file, "line 3: session 'k': MessagesCleared(5) on a session with 1 messages")
