"""The commands framework adapters build on: ``pop_last``, ``replace_messages`` and ``fork``."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventstore import (
    REDACTED,
    ChatMessage,
    InvalidArgument,
    InvalidVersion,
    SessionExists,
    SessionNotFound,
    SessionStore,
    WrongExpectedVersion,
)
from eventstore.events import LastMessageRemoved, MessageAppended, SessionForked, SessionRedacted
from eventstore.interchange import export_events, import_events

from conftest import LOG_BACKENDS, FakeClock, engine_of, open_store


def user(text: str, payload: dict[str, object] | None = None) -> ChatMessage:
    return ChatMessage("user", text, payload)


@pytest.fixture(params=LOG_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[SessionStore]:
    """The commands run with the log in LMDB and on PostgreSQL."""
    engine = engine_of(request)
    with open_store(engine, tmp_path / "store", clock=clock, durable=False, snapshot_every=3) as opened:
        yield opened


class TestPopLast:
    def test_returns_the_removed_message_as_one_event(self, store):
        store.append_many("k", [user("one"), user("two", {"id": "item-2"})])
        assert user("two", {"id": "item-2"}) == store.pop_last("k")
        assert [user("one")] == store.load("k")
        assert isinstance(store.history("k")[-1].event, LastMessageRemoved)
        assert 3 == len(store.history("k"))

    def test_nothing_to_pop_records_nothing(self, store):
        assert store.pop_last("nobody") is None
        store.append("k", user("one"))
        store.pop_last("k")
        assert store.pop_last("k") is None
        assert 2 == len(store.history("k"))

    def test_what_it_removed_comes_back_with_restore(self, store):
        store.append_many("k", [user("one"), user("two", {"id": 2})])
        store.pop_last("k")
        store.restore("k", version=2)
        assert [user("one"), user("two", {"id": 2})] == store.load("k")

    def test_a_retry_answers_the_same_message_and_removes_nothing_more(self, store):
        store.append_many("k", [user("one", {"\ud800": 1}), user("two", {"big": 2**80})])
        first = store.pop_last("k", idempotency_key="retry")
        assert first == store.pop_last("k", idempotency_key="retry") == user("two", {"big": 2**80})
        assert [user("one", {"\ud800": 1})] == store.load("k")

    def test_a_retry_after_a_redaction_answers_the_redacted_message(self, store):
        """The idempotency record keeps no copy of the message, which a redaction would leave behind."""
        store.append_many("k", [user("one"), user("two", {"card": "4111"})])
        store.pop_last("k", idempotency_key="retry")
        store.redact("k", "user request")
        assert user(REDACTED, {}) == store.pop_last("k", idempotency_key="retry")
        with store.transaction() as tx:
            again = tx.pop_last("k", idempotency_key="retry")
        assert user(REDACTED, {}) == again.result

    def test_expected_version(self, store):
        store.append("k", user("one"))
        with pytest.raises(WrongExpectedVersion):
            store.pop_last("k", expected_version=0)
        assert user("one") == store.pop_last("k", expected_version=1)


class TestReplaceMessages:
    def test_one_event_and_the_pruned_messages_stay_in_history(self, store, clock):
        store.append_many("k", [user("one"), user("two"), user("three", {"n": 3})])
        appended = store.load_with_timestamps("k")
        clock.advance(seconds=5)
        version = store.replace_messages("k", [ChatMessage.system("summary of one and two"), user("three", {"n": 3})])
        assert 4 == version == len(store.history("k"))
        assert [ChatMessage.system("summary of one and two"), user("three", {"n": 3})] == store.load("k")
        kept_times = [m.created_at for m in store.load_with_timestamps("k")]
        assert [clock.now, appended[2].created_at] == kept_times
        assert [user("one"), user("two"), user("three", {"n": 3})] == store.session_at("k", version=3).messages
        store.restore("k", version=3)
        assert appended == store.load_with_timestamps("k")

    def test_the_same_list_records_nothing(self, store):
        store.append_many("k", [user("one"), user("two")])
        assert 2 == store.replace_messages("k", [user("one"), user("two")])
        assert 3 == store.replace_messages("k", [user("one"), user("two", {"differs": True})])
        assert 3 == len(store.history("k"))

    def test_creates_the_session(self, store):
        assert 1 == store.replace_messages("new", [user("one")])
        assert [user("one")] == store.load("new")
        assert 1 == store.replace_messages("empty", [])
        assert store.session_exists("empty") and [] == store.load("empty")

    def test_a_deleted_session_starts_afresh(self, store):
        store.append("k", user("old"))
        store.delete_session("k")
        store.replace_messages("k", [user("old")])
        assert [user("old")] == store.load("k")
        assert 1 == store.get_session_metadata("k").message_count

    def test_options_and_arguments(self, store):
        store.append("k", user("one"))
        with pytest.raises(WrongExpectedVersion):
            store.replace_messages("k", [], expected_version=0)
        assert 2 == store.replace_messages("k", [], idempotency_key="prune")
        store.append("k", user("two"))
        assert 2 == store.replace_messages("k", [], idempotency_key="prune")
        assert [user("two")] == store.load("k")
        with pytest.raises(InvalidArgument):
            store.replace_messages("k", user("not a list"))
        with pytest.raises(InvalidArgument):
            store.replace_messages("k", ["text"])

    def test_in_a_transaction_with_other_sessions(self, store):
        store.append("a", user("one"))
        with store.transaction() as tx:
            replaced = tx.replace_messages("a", [user("summary")])
            popped = tx.pop_last("a")
            tx.append("b", user("two"))
        assert 2 == replaced.result and user("summary") == popped.result
        assert [] == store.load("a") and [user("two")] == store.load("b")
        assert store.verify().ok

    def test_a_long_session_pruned_through_snapshots_verifies(self, store):
        store.append_many("k", [user(f"m{i}", {"i": i} if i % 3 else None) for i in range(200)])
        store.replace_messages("k", store.load("k")[150:])
        store.compact("k")
        assert store.load("k") == store.session_at("k").messages
        assert store.verify().ok
        store.rebuild_projections()
        assert store.verify().ok


class TestFork:
    def test_starts_as_the_source_was_and_names_it(self, store, clock):
        store.append_many("src", [user("one"), user("two", {"id": 2})])
        store.set_session_name("src", "trip")
        clock.advance(seconds=10)
        assert 1 == store.fork("src", "copy", version=2)
        assert store.load_with_timestamps("src") == store.load_with_timestamps("copy")
        assert store.get_session_name("copy") is None  # the name came at version 3
        (started,) = store.history("copy")
        assert isinstance(started.event, SessionForked)
        assert ("src", 2, store.history("src")[1].hash) == (started.event.source_key, started.event.source_version,
                                                           started.event.source_hash)
        assert clock.now == store.get_session_metadata("copy").created_at
        assert 1 == store.fork("src", "named")
        assert "trip" == store.get_session_name("named")

    def test_later_changes_of_either_stay_apart(self, store):
        store.append_many("src", [user("one"), user("two")])
        store.fork("src", "copy")
        store.append("src", user("source only"))
        store.update_last("copy", user("fork only"))
        assert [user("one"), user("source only")] == store.load("src")[::2]
        assert [user("one"), user("fork only")] == store.load("copy")
        assert [user("one"), user("two")] == store.session_at("copy", version=1).messages
        store.restore("copy", version=1)
        assert [user("one"), user("two")] == store.load("copy")
        assert store.verify().ok

    def test_at_a_time(self, store, clock):
        store.append("src", user("one"))
        moment = clock.now
        clock.advance(seconds=5)
        store.append("src", user("two"))
        store.fork("src", "copy", as_of=moment)
        assert [user("one")] == store.load("copy")

    def test_refusals_write_nothing(self, store):
        store.append("src", user("one"))
        store.append("taken", user("mine"))
        with pytest.raises(SessionExists):
            store.fork("src", "taken")
        with pytest.raises(SessionNotFound):
            store.fork("nobody", "copy")
        with pytest.raises(SessionNotFound, match="'src' had no events at that point"):
            store.fork("src", "copy", version=0)  # not "has no events": it has one
        with pytest.raises(InvalidVersion):
            store.fork("src", "copy", version=9)
        with pytest.raises(InvalidArgument):
            store.fork("src", "copy", version=1, as_of=datetime(2026, 1, 1, tzinfo=UTC))
        store.delete_session("src")
        with pytest.raises(SessionNotFound):
            store.fork("src", "copy")
        assert 3 == len(list(store.events())) and not store.session_exists("copy")

    def test_onto_a_deleted_key_and_a_retry(self, store):
        store.append("src", user("one"))
        store.append("old", user("old"))
        store.delete_session("old")
        assert 3 == store.fork("src", "old", idempotency_key="f1")
        assert 3 == store.fork("src", "old", idempotency_key="f1")
        assert [user("one")] == store.load("old")

    def test_in_a_transaction_sees_the_commands_before_it(self, store):
        with store.transaction() as tx:
            tx.append("src", user("one"))
            forked = tx.fork("src", "copy")
            tx.append("copy", user("two"))
        assert 1 == forked.result
        assert [user("one"), user("two")] == store.load("copy")

    def test_redacting_the_source_redacts_its_forks(self, store):
        store.append_many("src", [user("secret 1234", {"card": "1234"}), user("plain")])
        store.fork("src", "copy")
        store.fork("copy", "copy of copy")
        store.append("copy", user("own 5678"))
        store.append("unrelated", user("keep 1234"))
        store.redact("src", "gdpr")
        for key in ("src", "copy", "copy of copy"):
            assert all(m.content == "[redacted]" for m in store.load(key))
            assert isinstance(store.history(key)[-1].event, SessionRedacted)
        assert [user("keep 1234")] == store.load("unrelated")
        with store._read() as txn:
            # The secret as the payloads hold it: a bare b"1234" also turns up in event hashes (hex), one run in 80.
            leaks = [e.session_key for e in store._log.read_all(txn)
                     if (b"secret 1234" in e.encoded.payload or b'"1234"' in e.encoded.payload)
                     and e.session_key != "unrelated"]
        assert [] == leaks
        assert ["unrelated"] == [hit.session_key for hit in store.search_messages("1234")]
        assert store.verify().ok

    def test_export_import_and_replicate(self, store, tmp_path):
        """Forks, replacements and pops, redacted or not, import and replicate exactly and verify."""
        store.append_many("src", [user("one", {"\ud800": 1}), user("two")])
        store.fork("src", "copy", version=1)
        store.replace_messages("copy", [user("summary", {"of": [1]}), user("one", {"\ud800": 1})])
        store.pop_last("src")
        store.redact("src", "gdpr")
        store.fork("src", "after")
        store.replace_messages("after", [user("fresh")])
        buffer = io.BytesIO()
        export_events(store, buffer)
        (tmp_path / "events.jsonl").write_bytes(buffer.getvalue())
        for name in ("import", "replica"):
            with SessionStore(tmp_path / name, durable=False) as other:
                if name == "import":
                    import_events(other, tmp_path / "events.jsonl")
                else:
                    other.replicate(store.events())
                for key in ("src", "copy", "after"):
                    assert store.load_with_timestamps(key) == other.load_with_timestamps(key)
                    assert store.history(key) == other.history(key)
                assert other.verify().ok

    def test_import_refuses_a_fork_onto_a_live_session(self, store):
        fork = SessionForked("src", 1, "0" * 64, (), None)
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(InvalidArgument, match="SessionForked on a live session"):
            store.import_sessions({"k": [(moment, MessageAppended(user("x"))), (moment, fork)]})


def test_the_fork_command(tmp_path):
    from click.testing import CliRunner

    from eventstore.cli import cli

    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append_many("src", [user("one"), user("two")])

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--store", str(path), *args])
        return result.exit_code, result.output

    assert (0, "Forked src at its version 1 into copy: 1 message.\n") == run("fork", "src", "copy", "--version", "1")
    code, output = run("fork", "src", "copy")
    assert 1 == code and output.startswith("Error: session 'copy' exists") and len(output.splitlines()) == 1
    code, output = run("fork", "src", "other", "--version", "7")
    assert 1 == code and "version 7 does not exist" in output and len(output.splitlines()) == 1
    assert 0 == run("fork", "src", "latest", "--json")[0]
    with SessionStore(path) as store:
        assert [user("one")] == store.load("copy")
        assert [user("one"), user("two")] == store.load("latest")


def test_no_byte_of_a_redacted_source_survives_in_its_fork_after_vacuum(tmp_path):
    with SessionStore(tmp_path / "store") as store:
        store.append_many("src", [user("secret-4711", {"note": "payload-0815"}), user("plain")])
        store.fork("src", "copy")
        store.replace_messages("copy", [user("summary"), user("secret-4711", {"note": "payload-0815"})])
        store.compact("copy")
        store.redact("src", "gdpr")
        store.vacuum()
        assert store.verify().ok
    held = b"".join(path.read_bytes() for path in (tmp_path / "store").iterdir() if path.is_file())
    assert b"secret-4711" not in held and b"payload-0815" not in held


def test_a_failing_transaction_replaces_and_forks_nothing(store):
    store.append_many("src", [user("one"), user("two")])
    with pytest.raises(WrongExpectedVersion), store.transaction() as tx:
        tx.replace_messages("src", [user("summary")])
        tx.fork("src", "copy")
        tx.pop_last("src")
        tx.append("src", user("late"), expected_version=0)
    assert [user("one"), user("two")] == store.load("src")
    assert not store.session_exists("copy") and 2 == len(list(store.events()))


_REPLACER = """
import sys
from eventstore import ChatMessage, SessionStore
with SessionStore(sys.argv[1], durable=False) as store:
    print("ready", flush=True)
    turn = 0
    while True:
        turn += 1
        size = 50 + turn % 150
        store.replace_messages("k", [ChatMessage("user", f"{turn}:{i}", {"i": i}) for i in range(size)])
        store.fork("k", f"fork-{turn}")
"""


@pytest.mark.slow
def test_killed_while_replacing_and_forking(tmp_path):
    """A replacement or a fork is one event in one commit: a killed writer leaves whole lists and whole forks."""
    path = str(tmp_path / "store")
    rng = random.Random(15)
    for _ in range(4):
        worker = subprocess.Popen([sys.executable, "-c", _REPLACER, path], stdout=subprocess.PIPE, text=True)
        assert worker.stdout is not None and "ready" == worker.stdout.readline().strip()
        time.sleep(rng.uniform(0.05, 0.6))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        with SessionStore(path, durable=False) as store:
            assert store.verify().ok
            loaded = store.load("k")
            turn = loaded[0].content.split(":")[0] if loaded else None
            assert loaded == [ChatMessage("user", f"{turn}:{i}", {"i": i}) for i in range(len(loaded))]
            for key in store.list_sessions():
                if key.startswith("fork-"):
                    (forked,) = store.history(key)
                    assert store.load(key) == store.session_at("k", version=forked.event.source_version).messages
