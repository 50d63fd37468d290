"""Export and import round trips: ``export --format events`` then ``import events`` gives a store that
verifies and answers every read identically (redaction included); ``export --format jsonl`` matches ``load``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore.cli import cli
from eventstore.interchange import (
    BadExportFile,
    event_from_dict,
    event_to_dict,
    import_events,
)
from eventstore.zeroclaw import MANIFEST_NAME, read_jsonl, sanitize_key

from conftest import FakeClock

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def build(path: Path) -> None:
    """A store with every kind of event, snapshots, a deleted and revived key, a redaction, odd keys and content."""
    clock = FakeClock(START)
    with SessionStore(path, clock=clock, snapshot_every=4) as store:
        for turn in range(6):
            clock.advance(seconds=30)
            store.append("chat/1", ChatMessage.user(f"question {turn} about lisbon"))
            clock.advance(seconds=3)
            store.append("chat/1", ChatMessage.assistant(f"answer {turn}\u2028with a line separator"))
        store.set_session_name("chat/1", "Trip")
        store.update_last("chat/1", ChatMessage.assistant("answer 5, corrected"))
        store.remove_last("chat/1")
        clock.advance(minutes=5)
        store.set_session_state("ops:deploy", "running", turn_id="t-9")
        store.append("ops:deploy", ChatMessage.assistant('{"tool_calls":[{"id":"c1","name":"deploy"}]}'))
        store.append("ops:deploy", ChatMessage.tool('{"tool_call_id":"c1","content":"ok"}'))
        store.set_session_state("ops:deploy", "idle")
        clock.advance(minutes=5)
        store.append("secret", ChatMessage.user("my password is hunter2"))
        store.append("secret", ChatMessage.assistant("noted"))
        store.redact("secret", "contained a password")
        store.append("secret", ChatMessage.user("after the redaction"))
        clock.advance(minutes=5)
        store.append("reused", ChatMessage.user("first life"))
        store.delete_session("reused", reason="done")
        clock.advance(minutes=1)
        store.append("reused", ChatMessage.user("second life"))
        store.clear_messages("reused")
        store.append("reused", ChatMessage.user("after clear"))
        store.restore("chat/1", version=5)
        clock.advance(minutes=1)
        store.append("gone", ChatMessage.user("bye"))
        store.delete_session("gone")
        store.append("ünïcødé key ✓", ChatMessage.system("Sé concisa."))
        store.compact("ops:deploy")


def reads(store: SessionStore) -> dict[str, Any]:
    """Every read the facade offers, for comparing two stores."""
    keys = sorted({e.session_key for e in store.events()})
    answers: dict[str, Any] = {
        "events": list(store.events()),
        "sessions": store.list_sessions(),
        "metadata": store.list_sessions_with_metadata(),
        "running": store.list_running_sessions(),
        "search": [store.search(SessionQuery(word)) for word in ("lisbon", "deploy", "redacted", "nothing")],
        "all": store.search(SessionQuery()),
    }
    for key in keys:
        history = store.history(key)
        answers[key] = {
            "history": history,
            "load": store.load(key),
            "timestamps": store.load_with_timestamps(key),
            "metadata": store.get_session_metadata(key),
            "name": store.get_session_name(key),
            "state": store.get_session_state(key),
            "exists": store.session_exists(key),
            "versions": [store.session_at(key, version=v) for v in range(len(history) + 1)],
            "as_of": [store.session_at(key, as_of=r.recorded_at) for r in history],
            "replay": list(store.replay(key)),
        }
    return answers


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    build(path)
    return path


def export_all(store: Path, out: Path) -> Result:
    result = run("--store", str(store), "export", "--all", "--format", "events", "--out", str(out))
    assert result.exit_code == 0, result.output
    return result


class TestEventsRoundTrip:
    def test_whole_log_answers_identically(self, source: Path, tmp_path: Path) -> None:
        """A whole-log export imported into an empty store verifies and answers every read the same."""
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        target = tmp_path / "copy"
        result = run("--store", str(target), "import", "events", str(dump), "--json")
        assert result.exit_code == 0, result.output
        with SessionStore(source) as original:
            expected = reads(original)
            count = original.stats().events
        assert json.loads(result.stdout) == {"file": str(dump), "mode": "replicate", "events": count,
                                             "already_present": 0, "existing_keys": [], "warnings": []}
        with SessionStore(target) as copy:
            report = copy.verify()
            assert report.ok, report.problems
            assert report.events_checked == count
            assert reads(copy) == expected
        assert run("--store", str(target), "verify").exit_code == 0

    def test_line_separators_are_escaped(self, source: Path, tmp_path: Path) -> None:
        """U+2028 in content is written as an escape, so even str.splitlines() sees one event a line."""
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        text = dump.read_text(encoding="utf-8")
        assert "\u2028" not in text and "\\u2028" in text
        assert text.splitlines() == text.split("\n")[:-1]

    def test_redaction_survives_the_round_trip(self, source: Path, tmp_path: Path) -> None:
        """Redacted events keep their flag, digest and hash; the secret is nowhere in the export."""
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        assert b"hunter2" not in dump.read_bytes()
        lines = [json.loads(line) for line in dump.read_text(encoding="utf-8").split("\n")[1:-2]]
        redacted = [line for line in lines if line["redacted"]]
        assert [line["payload"]["message"] for line in redacted] == [["user", "[redacted]"],
                                                                   ["assistant", "[redacted]"]]
        target = tmp_path / "copy"
        assert run("--store", str(target), "import", "events", str(dump)).exit_code == 0
        with SessionStore(target) as copy:
            assert [m.content for m in copy.load("secret")] == ["[redacted]", "[redacted]", "after the redaction"]
            assert [r.redacted for r in copy.history("secret")] == [True, True, False, False]

    def test_redaction_after_import_matches(self, source: Path, tmp_path: Path) -> None:
        """Redacting the same session in both stores (same clock) keeps them answering alike."""
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        target = tmp_path / "copy"
        run("--store", str(target), "import", "events", str(dump))
        later = START + timedelta(days=1)
        answers = []
        for path in (source, target):
            with SessionStore(path, clock=lambda: later) as store:
                store.redact("chat/1", "user request")
                answers.append(reads(store))
                assert store.verify().ok
        assert answers[0]["chat/1"]["load"] == answers[1]["chat/1"]["load"]
        assert [(r.version, r.hash, r.redacted) for r in answers[0]["chat/1"]["history"][:-1]] == \
            [(r.version, r.hash, r.redacted) for r in answers[1]["chat/1"]["history"][:-1]]

    def test_importing_again_adds_nothing(self, source: Path, tmp_path: Path) -> None:
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        target = tmp_path / "copy"
        run("--store", str(target), "import", "events", str(dump))
        result = run("--store", str(target), "import", "events", str(dump))
        assert result.exit_code == 0
        assert "0 events replicated exactly;" in result.stdout and "were already in the store" in result.stdout
        with SessionStore(source) as a, SessionStore(target) as b:
            assert a.stats().events == b.stats().events

    def test_continues_a_replica(self, source: Path, tmp_path: Path) -> None:
        """A newer whole-log export brings a replica up to date (the events it has are checked, not rewritten)."""
        first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
        export_all(source, first)
        target = tmp_path / "copy"
        run("--store", str(target), "import", "events", str(first))
        with SessionStore(source, clock=lambda: START + timedelta(days=2)) as store:
            store.append("chat/1", ChatMessage.user("one more"))
        export_all(source, second)
        data = json.loads(run("--store", str(target), "import", "events", str(second), "--json").stdout)
        first_events = len(first.read_text(encoding="utf-8").split("\n")) - 3  # a header, a trailer, a newline
        assert (data["events"], data["already_present"]) == (1, first_events)
        with SessionStore(source) as a, SessionStore(target) as b:
            assert reads(a) == reads(b)

    def test_into_a_different_store_is_refused(self, source: Path, tmp_path: Path) -> None:
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        other = tmp_path / "other"
        with SessionStore(other) as store:
            store.append("x", ChatMessage.user("unrelated"))
        result = run("--store", str(other), "import", "events", str(dump))
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: the store already holds other events")
        assert len(result.stderr.strip().splitlines()) == 1
        with SessionStore(other) as store:
            assert store.stats().events == 1

    def test_bad_line_names_its_number(self, source: Path, tmp_path: Path) -> None:
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        lines = dump.read_text(encoding="utf-8").split("\n")[:-1]
        lines[3] = '{"position": 3, "oops": true}'
        dump.write_text("\n".join(lines) + "\n")
        result = run("--store", str(tmp_path / "copy"), "import", "events", str(dump))
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: line 4: ")
        with SessionStore(tmp_path / "copy") as copy:
            assert copy.stats().events == 0

    def test_tampered_event_is_refused(self, source: Path, tmp_path: Path) -> None:
        """Changing an event's time in the file breaks its hash: the import stops there."""
        dump = tmp_path / "all.events.jsonl"
        export_all(source, dump)
        lines = dump.read_text(encoding="utf-8").split("\n")[:-1]
        event = json.loads(lines[2])
        event["recorded_at"] = "2020-01-01T00:00:00.000000+00:00"
        lines[2] = json.dumps(event)
        dump.write_text("\n".join(lines) + "\n")
        result = run("--store", str(tmp_path / "copy"), "import", "events", str(dump))
        assert result.exit_code == 1
        assert result.stderr == ("Error: line 3: session 'chat/1': the hash does not follow from the event and "
                                 "the one before it\n")
        with SessionStore(tmp_path / "copy") as copy:
            assert copy.stats().events == 0


class TestPartialExport:
    def test_sessions_import_with_their_times(self, source: Path, tmp_path: Path) -> None:
        """An export of some sessions imports as new events keeping times, messages, names and states."""
        dump = tmp_path / "some.jsonl"
        result = run("--store", str(source), "export", "chat/1", "ops:deploy", "--out", str(dump))
        assert result.exit_code == 0, result.output
        target = tmp_path / "copy"
        with SessionStore(target) as store:
            store.append("ops:deploy", ChatMessage.user("already here"))
        result = run("--store", str(target), "import", "events", str(dump))
        assert result.exit_code == 0, result.output
        assert "session 'ops:deploy' is already in the store; not merged." in result.stdout
        with SessionStore(source) as a, SessionStore(target) as b:
            assert b.load_with_timestamps("chat/1") == a.load_with_timestamps("chat/1")
            assert b.get_session_metadata("chat/1") == a.get_session_metadata("chat/1")
            assert [(r.version, r.recorded_at, r.event) for r in b.history("chat/1")] == \
                [(r.version, r.recorded_at, r.event) for r in a.history("chat/1")]
            assert b.load("ops:deploy") == [ChatMessage.user("already here")]
            assert b.verify().ok
        again = json.loads(run("--store", str(target), "import", "events", str(dump), "--json").stdout)
        assert again["events"] == 0


class TestJsonlExport:
    def test_files_match_load(self, source: Path, tmp_path: Path) -> None:
        """One <sanitized key>.jsonl per live session whose messages are exactly load()'s, and a manifest."""
        out = tmp_path / "zeroclaw" / "sessions"
        result = run("--store", str(source), "export", "--all", "--format", "jsonl", "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        with SessionStore(source) as store:
            keys = store.list_sessions()
            names = {key: f"{sanitize_key(key)}.jsonl" for key in keys}
            assert sorted(p.name for p in out.iterdir()) == sorted([*names.values(), MANIFEST_NAME])
            manifest = json.loads((out / MANIFEST_NAME).read_bytes())
            assert manifest == {"format": "eventstore.jsonl-export", "version": 1, "sessions": names}
            for key in keys:
                path = out / names[key]
                lines = path.read_bytes().split(b"\n")
                assert lines[-1] == b""
                # The key itself comes first when the file name does not say it (ZeroClaw skips that line).
                header = [] if path.stem == key else [{"session_key": key}]
                assert [json.loads(line) for line in lines[:-1]] == header + [
                    {"role": m.role, "content": m.content} for m in store.load(key)]
                assert [e.message for _, e in read_jsonl(path).sessions[key]] == store.load(key)
        assert "chat_1.jsonl" in json.loads(result.stdout)["files"]["chat/1"]

    def test_existing_files_are_kept(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "sessions"
        out.mkdir()
        (out / "chat_1.jsonl").write_text("mine\n")
        result = run("--store", str(source), "export", "chat/1", "--format", "jsonl", "--out", str(out))
        assert result.exit_code == 1
        assert "not written: 'chat/1'" in result.stdout
        assert (out / "chat_1.jsonl").read_text() == "mine\n"
        assert run("--store", str(source), "export", "chat/1", "--format", "jsonl", "--out", str(out),
                   "--force").exit_code == 0
        assert (out / "chat_1.jsonl").read_text() != "mine\n"


class TestLibrary:
    def test_event_dict_round_trip(self, source: Path) -> None:
        with SessionStore(source) as store:
            for recorded in store.events():
                assert event_from_dict(json.loads(json.dumps(event_to_dict(recorded)))) == recorded

    def test_empty_file(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        with SessionStore(tmp_path / "s") as store, pytest.raises(BadExportFile, match="empty"):
            import_events(store, empty)
