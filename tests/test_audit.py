"""Audit and time travel (issue 3): history, the change feed, point-in-time reads, restore, replay,
verify's progress, redaction and vacuum, driven through the public ``SessionStore`` API."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import lmdb
import pytest

from eventstore import (
    REDACTED,
    ChatMessage,
    InvalidArgument,
    InvalidSessionKey,
    InvalidVersion,
    RecordedEvent,
    ReplicationMismatch,
    SessionMetadata,
    SessionState,
    SessionStore,
    SessionView,
    StoreBusy,
    _audit,
    _folding,
)
from eventstore._codec import encode_event
from eventstore._log import GENESIS_HASH, chain_hash
from eventstore._time import to_micros
from eventstore.events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    SessionDeleted,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)

from conftest import LOG_BACKENDS, FakeClock, engine_of, open_store


@pytest.fixture(params=LOG_BACKENDS)
def engine(request: pytest.FixtureRequest) -> str:
    """The tests that take the ``store`` fixture run with the log in LMDB and on PostgreSQL."""
    return engine_of(request)

#: More events than one streaming batch of the store reads (1000), so streaming crosses batches.
BIG = 2500
_MINUTE = timedelta(minutes=1)


# -- helpers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the live (current-state) API answered right after a version was written."""

    version: int
    at: datetime
    exists: bool
    messages: list[ChatMessage]
    name: str | None
    state: SessionState | None
    metadata: SessionMetadata | None


def observe(store: SessionStore, key: str, at: datetime) -> Seen:
    """The session as the current-state queries show it now."""
    return Seen(len(store.history(key)), at, store.session_exists(key), store.load(key),
                store.get_session_name(key), store.get_session_state(key), store.get_session_metadata(key))


def scripted(store: SessionStore, clock: FakeClock, key: str = "k") -> dict[int, Seen]:
    """Run a fixed life of one session (one event per step, a minute apart); return what was seen per version.

    Versions: 1-2 appends, 3 rename, 4 running, 5 update_last (a snapshot with snapshot_every=5),
    6 append, 7 remove_last, 8 idle, 9 clear, 10 append, 11 delete, 12 append (the key's second
    life), 13 rename.
    """
    steps = [
        lambda: store.append(key, ChatMessage.user("hello")),
        lambda: store.append(key, ChatMessage.assistant("hi")),
        lambda: store.set_session_name(key, "trip"),
        lambda: store.set_session_state(key, "running", turn_id="t1"),
        lambda: store.update_last(key, ChatMessage.assistant("hi there")),
        lambda: store.append(key, ChatMessage.user("plan a trip")),
        lambda: store.remove_last(key),
        lambda: store.set_session_state(key, "idle"),
        lambda: store.clear_messages(key),
        lambda: store.append(key, ChatMessage.user("again")),
        lambda: store.delete_session(key, reason="done"),
        lambda: store.append(key, ChatMessage.user("new life")),
        lambda: store.set_session_name(key, "second"),
    ]
    seen = {}
    for step in steps:
        at = clock.advance(minutes=1)
        step()
        observed = observe(store, key, at)
        seen[observed.version] = observed
    return seen


def view_matches(seen: Seen, view: SessionView) -> tuple[Any, Any]:
    """(expected, actual) over everything a view shares with the live API."""
    expected = (seen.version, seen.exists, seen.messages, seen.name, seen.state, seen.metadata)
    actual = (view.version, view.exists, view.messages, view.name, view.state, view.metadata)
    return expected, actual


def head_position(store: SessionStore) -> int:
    """The position of the newest event in the log (0 when empty)."""
    return max((event.position for event in store.events()), default=0)


def fields(view: SessionView) -> tuple[object, ...]:
    """Every public field of a view, for comparing views by value."""
    return (view.key, view.version, view.exists, view.messages, list(view.timestamped), view.metadata, view.name,
            view.state)


def empty(key: str) -> tuple[object, ...]:
    """The fields of the empty, non-existent session at version 0."""
    return (key, 0, False, [], [], None, None, None)


def all_database_bytes(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every key and value of every named LMDB database of a closed store."""
    env = lmdb.open(str(path), max_dbs=32)
    try:
        with env.begin() as txn:
            names = [bytes(name) for name, _ in txn.cursor()]
        dumped = {}
        for name in names:
            db = env.open_db(name)
            with env.begin(db=db) as txn:
                dumped[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
        return dumped
    finally:
        env.close()


def files_containing(directory: Path, needle: bytes) -> list[str]:
    """Names of the files under ``directory`` whose bytes contain ``needle``."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() and needle in p.read_bytes())


class ReadCounter:
    """Counts the entries a wrapped log reader has produced so far."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> None:
        self.count = 0
        original = getattr(obj, name)

        def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for item in original(*args, **kwargs):
                self.count += 1
                yield item

        monkeypatch.setattr(obj, name, counting)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionStore]:
    """A read-only store holding one session of BIG message events (plus one of another key at the end)."""
    clock = FakeClock()
    with SessionStore(tmp_path_factory.mktemp("big") / "store", clock=clock, snapshot_every=250,
                      durable=False) as opened:
        opened.append_many("long", [ChatMessage.user(f"message {i}") for i in range(BIG)])
        clock.advance(minutes=1)
        opened.append("other", ChatMessage.user("last"))
        yield opened


# -- history ---------------------------------------------------------------------------------------


class TestHistory:
    """``history(key)``: every event of one session key, oldest first."""

    def test_every_event_oldest_first(self, store, clock):
        """History lists each event of the key, in the order they were recorded."""
        scripted(store, clock)
        expected = [MessageAppended, MessageAppended, SessionRenamed, SessionStateChanged, LastMessageReplaced,
                    MessageAppended, LastMessageRemoved, SessionStateChanged, MessagesCleared, MessageAppended,
                    SessionDeleted, MessageAppended, SessionRenamed]
        assert expected == [type(e.event) for e in store.history("k")]

    def test_events_carry_their_content(self, store, clock):
        """The typed events in history hold what the commands were given."""
        store.append("k", ChatMessage.user("hello"))
        store.set_session_name("k", "trip")
        store.set_session_state("k", "running", turn_id="t9")
        store.delete_session("k", reason="bye")
        expected = [MessageAppended(ChatMessage.user("hello")), SessionRenamed("trip"),
                    SessionStateChanged("running", "t9"), SessionDeleted("bye")]
        assert expected == [e.event for e in store.history("k")]

    def test_across_deletion_and_key_reuse(self, store, clock):
        """Events of an earlier life of a reused key stay in history, versions keep counting."""
        store.append("k", ChatMessage.user("first life"))
        store.delete_session("k")
        store.append("k", ChatMessage.user("second life"))
        history = store.history("k")
        assert [1, 2, 3] == [e.version for e in history]
        assert [MessageAppended(ChatMessage.user("first life")), SessionDeleted(None),
                MessageAppended(ChatMessage.user("second life"))] == [e.event for e in history]

    def test_recorded_event_fields(self, store, clock):
        """position is global, version per session, recorded_at the clock's time, ids unique, hash hex."""
        times = []
        for key, text in (("a", "1"), ("b", "2"), ("a", "3"), ("b", "4"), ("a", "5")):
            times.append((key, clock.advance(seconds=7)))
            store.append(key, ChatMessage.user(text))
        history = store.history("a")
        assert all(isinstance(e, RecordedEvent) for e in history)
        assert [1, 3, 5] == [e.position for e in history]
        assert ["a", "a", "a"] == [e.session_key for e in history]
        assert [1, 2, 3] == [e.version for e in history]
        assert [t for k, t in times if k == "a"] == [e.recorded_at for e in history]
        assert all(e.recorded_at.tzinfo is not None for e in history)
        assert all(isinstance(e.event_id, uuid.UUID) for e in history)
        every_id = [e.event_id for e in store.history("a") + store.history("b")]
        assert len(every_id) == len(set(every_id))
        assert all(len(e.hash) == 64 and int(e.hash, 16) >= 0 for e in history)

    def test_hash_chains_every_event_to_the_one_before(self, store, clock):
        """Each hash is SHA-256 over the previous hash and the event's canonical bytes, from the genesis value."""
        scripted(store, clock, "a")
        store.append("b", ChatMessage.user("other"))
        previous = GENESIS_HASH
        for event in store.events():
            encoded = encode_event(event.event)
            expected = chain_hash(previous, event.position, event.session_key, event.version,
                                  round((event.recorded_at - datetime(1970, 1, 1, tzinfo=UTC))
                                        / timedelta(microseconds=1)),
                                  event.event_id.bytes, encoded, hashlib.sha256(encoded.payload).digest())
            assert expected.hex() == event.hash
            previous = expected

    def test_history_hashes_equal_the_feed(self, store, clock):
        """history and events describe the same recorded events."""
        scripted(store, clock, "a")
        store.append("b", ChatMessage.user("other"))
        assert [e for e in store.events() if e.session_key == "a"] == store.history("a")

    def test_other_sessions_are_left_out(self, store, clock):
        """Only the key's own events are listed."""
        store.append("a", ChatMessage.user("mine"))
        store.append("b", ChatMessage.user("not mine"))
        assert ["a"] == [e.session_key for e in store.history("a")]

    def test_unknown_key_has_no_history(self, store):
        """A key that never had an event has an empty history."""
        assert [] == store.history("never")

    def test_invalid_key_is_refused(self, store):
        """An invalid key raises InvalidSessionKey."""
        with pytest.raises(InvalidSessionKey):
            store.history("")


# -- the change feed -------------------------------------------------------------------------------


class TestEvents:
    """``events(after, limit)``: every event of every session in global order."""

    def test_global_order_across_sessions(self, store, clock):
        """Events of all sessions come in commit order, positions 1, 2, 3, ..."""
        store.append("a", ChatMessage.user("1"))
        store.append_many("b", [ChatMessage.user("2"), ChatMessage.user("3")])
        store.set_session_name("a", "x")
        events = list(store.events())
        assert [1, 2, 3, 4] == [e.position for e in events]
        assert ["a", "b", "b", "a"] == [e.session_key for e in events]
        assert [1, 1, 2, 2] == [e.version for e in events]

    def test_after(self, store, clock):
        """Only events after the given position come back."""
        store.append_many("a", [ChatMessage.user(str(i)) for i in range(6)])
        assert [4, 5, 6] == [e.position for e in store.events(after=3)]

    def test_after_the_end_is_empty(self, store, clock):
        """A position at or past the head gives nothing."""
        store.append_many("a", [ChatMessage.user(str(i)) for i in range(3)])
        assert ([], []) == (list(store.events(after=3)), list(store.events(after=50)))

    def test_limit(self, store, clock):
        """At most ``limit`` events come back, from ``after`` on."""
        store.append_many("a", [ChatMessage.user(str(i)) for i in range(6)])
        assert [1, 2] == [e.position for e in store.events(limit=2)]
        assert [3, 4, 5] == [e.position for e in store.events(after=2, limit=3)]
        assert [] == list(store.events(limit=0))

    def test_empty_store(self, store):
        """An empty log has an empty feed."""
        assert [] == list(store.events())

    def test_returns_an_iterator(self, store, clock):
        """events() returns an iterator, not a list."""
        store.append("a", ChatMessage.user("1"))
        feed = store.events()
        assert not isinstance(feed, (list, tuple))
        assert feed is iter(feed)
        assert 1 == next(feed).position

    def test_streams_across_batches(self, big_store):
        """More events than one batch all come back once, in order."""
        positions = [e.position for e in big_store.events()]
        assert list(range(1, BIG + 2)) == positions

    def test_after_and_limit_across_a_batch_boundary(self, big_store):
        """A window that straddles batch boundaries is exact."""
        assert list(range(990, 2011)) == [e.position for e in big_store.events(after=989, limit=1021)]

    def test_feed_matches_history_on_a_big_log(self, big_store):
        """The feed of a big log holds the same events as the session's history."""
        feed = [e for e in big_store.events() if e.session_key == "long"]
        assert big_store.history("long") == feed

    def test_reads_lazily(self, big_store, monkeypatch):
        """Taking the first event of a big log reads at most one batch from the log."""
        counter = ReadCounter(monkeypatch, big_store._log, "read_all")
        feed = big_store.events()
        first = next(feed)
        assert 1 == first.position
        assert counter.count <= 1000

    @pytest.mark.parametrize("arguments", [{"after": -1}, {"after": "1"}, {"after": 1.5}, {"after": True},
                                           {"limit": -1}, {"limit": "3"}, {"limit": False}])
    def test_bad_arguments(self, store, arguments):
        """A negative or non-int after/limit raises InvalidArgument when called, before iterating."""
        with pytest.raises(InvalidArgument):
            store.events(**arguments)


# -- point-in-time reads ---------------------------------------------------------------------------


class TestSessionAt:
    """``session_at(key, version=, as_of=)``: the whole session as it was then."""

    def test_every_version(self, store, clock):
        """The view at each version equals what the live API showed right after it was written."""
        seen = scripted(store, clock)
        for version, observed in seen.items():
            expected, actual = view_matches(observed, store.session_at("k", version=version))
            assert expected == actual, version

    def test_timestamped_messages(self, store, clock):
        """The view's timestamped messages keep the times they were first appended."""
        store.append("k", ChatMessage.user("a"))
        first = clock.now
        clock.advance(minutes=5)
        store.append("k", ChatMessage.assistant("b"))
        second = clock.now
        clock.advance(minutes=5)
        store.update_last("k", ChatMessage.assistant("b2"))
        expected = ((ChatMessage.user("a"), first), (ChatMessage.assistant("b2"), second))
        assert expected == tuple((m.message, m.created_at) for m in store.session_at("k", version=3).timestamped)

    def test_version_zero_is_empty(self, store, clock):
        """Version 0 is the empty, non-existent session."""
        scripted(store, clock)
        assert empty("k") == fields(store.session_at("k", version=0))

    def test_no_argument_is_current(self, store, clock):
        """With neither argument, the view is the current session."""
        seen = scripted(store, clock)
        expected, actual = view_matches(seen[13], store.session_at("k"))
        assert expected == actual

    def test_unknown_key(self, store):
        """A key with no events reads as the empty session, now and at version 0."""
        assert (empty("x"), empty("x")) == (fields(store.session_at("x")), fields(store.session_at("x", version=0)))

    def test_deleted_version_does_not_exist(self, store, clock):
        """At the version of a deletion the session does not exist and has no messages."""
        scripted(store, clock)
        view = store.session_at("k", version=11)
        assert (11, False, [], None, None, None) == (view.version, view.exists, view.messages, view.metadata,
                                                    view.name, view.state)

    def test_as_of_each_event_time(self, store, clock):
        """as_of an event's time is the session right after that event."""
        seen = scripted(store, clock)
        for version, observed in seen.items():
            expected, actual = view_matches(observed, store.session_at("k", as_of=observed.at))
            assert expected == actual, version

    def test_as_of_between_events(self, store, clock):
        """as_of a time between two events is the session after the earlier one."""
        seen = scripted(store, clock)
        for version, observed in seen.items():
            view = store.session_at("k", as_of=observed.at + timedelta(seconds=30))
            assert version == view.version

    def test_as_of_same_time_events(self, store, clock):
        """Events recorded at the same instant: as_of that instant includes all of them."""
        store.append_many("k", [ChatMessage.user("1"), ChatMessage.user("2"), ChatMessage.user("3")])
        view = store.session_at("k", as_of=clock.now)
        assert (3, [ChatMessage.user(t) for t in "123"]) == (view.version, view.messages)

    def test_as_of_before_first_event_is_empty(self, store, clock):
        """A time before the first event gives the empty, non-existent session."""
        seen = scripted(store, clock)
        assert empty("k") == fields(store.session_at("k", as_of=seen[1].at - timedelta(microseconds=1)))

    def test_as_of_after_last_event_is_current(self, store, clock):
        """A time after the last event gives the current session."""
        scripted(store, clock)
        assert store.session_at("k") == store.session_at("k", as_of=clock.now + timedelta(days=365))

    def test_as_of_other_time_zone(self, store, clock):
        """An aware datetime in another zone means the same instant."""
        seen = scripted(store, clock)
        zone = timezone(timedelta(hours=-5))
        assert 4 == store.session_at("k", as_of=seen[4].at.astimezone(zone)).version

    def test_version_past_the_end(self, store, clock):
        """A version past the session's last raises InvalidVersion."""
        scripted(store, clock)
        with pytest.raises(InvalidVersion):
            store.session_at("k", version=14)

    def test_version_of_unknown_key(self, store):
        """Any version above 0 of a key with no events raises InvalidVersion."""
        with pytest.raises(InvalidVersion):
            store.session_at("x", version=1)

    def test_naive_datetime(self, store, clock):
        """A naive as_of raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.session_at("k", as_of=datetime(2026, 1, 1, 0, 5))

    def test_both_arguments(self, store, clock):
        """Giving version and as_of at once raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.session_at("k", version=2, as_of=clock.now)

    @pytest.mark.parametrize("version", [-1, "2", 2.0, True])
    def test_wrong_version_type(self, store, clock, version):
        """A negative, non-int or bool version raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.session_at("k", version=version)

    @pytest.mark.parametrize("as_of", ["2026-01-01T00:00:00Z", 1767225600, date(2026, 1, 2)])
    def test_wrong_as_of_type(self, store, clock, as_of):
        """An as_of that is not a datetime raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.session_at("k", as_of=as_of)

    def test_invalid_key(self, store):
        """An invalid key raises InvalidSessionKey."""
        with pytest.raises(InvalidSessionKey):
            store.session_at("a\x00b", version=0)

    def test_reads_through_snapshots(self, big_store):
        """Versions just before, at and after snapshot points fold to the right messages."""
        for version in (1, 249, 250, 251, 999, 1000, 1001, BIG):
            view = big_store.session_at("long", version=version)
            assert [ChatMessage.user(f"message {i}") for i in range(version)] == view.messages


class TestLoadAt:
    """``load(key, version=, as_of=)``: the messages of ``session_at``."""

    def test_load_version(self, store, clock):
        """load with a version returns the messages seen right after that version."""
        seen = scripted(store, clock)
        assert [o.messages for o in seen.values()] == [store.load("k", version=v) for v in seen]

    def test_load_as_of(self, store, clock):
        """load with as_of returns the messages as of that time."""
        seen = scripted(store, clock)
        assert [o.messages for o in seen.values()] == [store.load("k", as_of=o.at) for o in seen.values()]

    def test_load_equals_session_at(self, store, clock):
        """load(version=v) is session_at(version=v).messages."""
        seen = scripted(store, clock)
        assert [store.session_at("k", version=v).messages for v in seen] == [store.load("k", version=v)
                                                                             for v in seen]

    def test_load_version_zero(self, store, clock):
        """load at version 0 is empty."""
        scripted(store, clock)
        assert [] == store.load("k", version=0)

    def test_load_errors(self, store, clock):
        """load passes on the errors of session_at."""
        scripted(store, clock)
        with pytest.raises(InvalidVersion):
            store.load("k", version=99)
        with pytest.raises(InvalidArgument):
            store.load("k", version=1, as_of=clock.now)
        with pytest.raises(InvalidArgument):
            store.load("k", as_of=datetime(2026, 1, 1))


# -- restore ---------------------------------------------------------------------------------------


class TestRestore:
    """``restore(key, version=, as_of=)``: make the session what it was, by appending an event."""

    @pytest.mark.parametrize("old", range(1, 13))
    def test_round_trip(self, store, clock, old):
        """After restore, load(key) == session_at(key, version=old).messages, and name and state are back."""
        seen = scripted(store, clock)
        clock.advance(minutes=1)
        new_version = store.restore("k", version=old)
        assert 14 == new_version
        assert store.session_at("k", version=old).messages == store.load("k")
        expected = (seen[old].exists, seen[old].messages, seen[old].name, seen[old].state)
        actual = (store.session_exists("k"), store.load("k"), store.get_session_name("k"),
                  store.get_session_state("k"))
        assert expected == actual

    def test_restored_view_equals_old_view(self, store, clock):
        """The view at the new version equals the old one in messages (with times), name, state and existence."""
        scripted(store, clock)
        new_version = store.restore("k", version=5)
        old, new = store.session_at("k", version=5), store.session_at("k", version=new_version)
        assert (old.exists, old.timestamped, old.name, old.state) == (new.exists, new.timestamped, new.name,
                                                                      new.state)
        assert old.timestamped == list(store.load_with_timestamps("k"))

    def test_restores_creation_time(self, store, clock):
        """The restored session keeps the creation time it had then."""
        seen = scripted(store, clock)
        clock.advance(hours=1)
        store.restore("k", version=8)
        assert seen[8].metadata.created_at == store.get_session_metadata("k").created_at

    def test_deleted_session_comes_back(self, store, clock):
        """Restoring a deleted session to a version before its deletion brings it back."""
        store.append_many("k", [ChatMessage.user("a"), ChatMessage.assistant("b")])
        store.set_session_name("k", "named")
        clock.advance(minutes=1)
        store.delete_session("k")
        assert [] == store.list_sessions()
        clock.advance(minutes=1)
        store.restore("k", version=3)
        assert (True, ["k"], [ChatMessage.user("a"), ChatMessage.assistant("b")], "named") == (
            store.session_exists("k"), store.list_sessions(), store.load("k"), store.get_session_name("k"))

    def test_restore_to_version_zero(self, store, clock):
        """Restoring to version 0 makes the session non-existent, with an event, not a deletion of events."""
        store.append_many("k", [ChatMessage.user("a"), ChatMessage.assistant("b")])
        clock.advance(minutes=1)
        new_version = store.restore("k", version=0)
        assert (3, False, [], []) == (new_version, store.session_exists("k"), store.load("k"),
                                      store.list_sessions())
        assert [1, 2, 3] == [e.version for e in store.history("k")]

    def test_history_shows_the_restore(self, store, clock):
        """The last event of history is a SessionRestored naming the restored version."""
        scripted(store, clock)
        store.restore("k", version=6)
        last = store.history("k")[-1].event
        assert (SessionRestored, 6) == (type(last), last.restored_version)

    def test_nothing_is_deleted(self, store, clock):
        """A restore only appends: every earlier event is still in the log, unchanged."""
        scripted(store, clock)
        before = list(store.events())
        store.restore("k", version=2)
        assert before == list(store.events())[:-1]

    def test_restore_to_current_writes_nothing(self, store, clock):
        """Restoring to the current version is a no-op: it returns the version and the log head stays."""
        scripted(store, clock)
        head = head_position(store)
        assert (13, head) == (store.restore("k", version=13), head_position(store))

    def test_restore_to_an_equal_state_writes_nothing(self, store, clock):
        """Restoring to an earlier version whose state equals the current one writes nothing."""
        store.append("k", ChatMessage.user("a"))
        store.append("k", ChatMessage.user("b"))
        store.remove_last("k")
        head = head_position(store)
        assert (3, head) == (store.restore("k", version=1), head_position(store))

    def test_restore_as_of(self, store, clock):
        """Restoring as of a time restores the version current then."""
        seen = scripted(store, clock)
        clock.advance(minutes=1)
        store.restore("k", as_of=seen[6].at + timedelta(seconds=1))
        assert (seen[6].messages, 6) == (store.load("k"), store.history("k")[-1].event.restored_version)

    def test_restore_to_running_state(self, store, clock):
        """A restored running state is listed as running again."""
        scripted(store, clock)
        store.restore("k", version=4)
        assert ["k"] == [m.key for m in store.list_running_sessions()]

    def test_restore_then_verify(self, store, clock):
        """Stores with restores of every kind still verify."""
        scripted(store, clock)
        for version in (0, 4, 11, 2):
            clock.advance(minutes=1)
            store.restore("k", version=version)
        assert (True, []) == (store.verify().ok, store.verify().problems)

    def test_requires_an_argument(self, store, clock):
        """Restore with neither version nor as_of raises InvalidArgument and writes nothing."""
        scripted(store, clock)
        head = head_position(store)
        with pytest.raises(InvalidArgument):
            store.restore("k")
        assert head == head_position(store)

    def test_both_arguments(self, store, clock):
        """Restore with both version and as_of raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.restore("k", version=3, as_of=clock.now)

    def test_version_past_the_end(self, store, clock):
        """Restore to a version past the end raises InvalidVersion and writes nothing."""
        scripted(store, clock)
        head = head_position(store)
        with pytest.raises(InvalidVersion):
            store.restore("k", version=14)
        assert head == head_position(store)

    def test_naive_as_of(self, store, clock):
        """Restore as of a naive datetime raises InvalidArgument."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.restore("k", as_of=datetime(2026, 1, 1, 0, 3))


# -- replay ----------------------------------------------------------------------------------------


class TestReplay:
    """``replay(key, from_version, to_version)``: (event, session right after it) pairs."""

    def test_pairs_follow_history(self, store, clock):
        """One pair per event; the events are the session's history."""
        scripted(store, clock)
        assert store.history("k") == [event for event, _ in store.replay("k")]

    def test_view_right_after_each_event(self, store, clock):
        """Each view is what the live API showed right after that event."""
        seen = scripted(store, clock)
        views = {event.version: view for event, view in store.replay("k")}
        for version, observed in seen.items():
            expected, actual = view_matches(observed, views[version])
            assert expected == actual, version

    def test_views_equal_session_at(self, store, clock):
        """Each view equals session_at at the event's version."""
        scripted(store, clock)
        for event, view in store.replay("k"):
            assert store.session_at("k", version=event.version) == view

    def test_bounds(self, store, clock):
        """from_version and to_version are inclusive bounds, and the first view starts from the right state."""
        scripted(store, clock)
        pairs = list(store.replay("k", from_version=6, to_version=9))
        assert [6, 7, 8, 9] == [e.version for e, _ in pairs]
        assert [store.session_at("k", version=v) for v in (6, 7, 8, 9)] == [v for _, v in pairs]

    def test_from_version_only(self, store, clock):
        """Without to_version, replay runs to the last event."""
        scripted(store, clock)
        assert [11, 12, 13] == [e.version for e, _ in store.replay("k", from_version=11)]

    def test_to_version_only(self, store, clock):
        """Without from_version, replay starts at the first event."""
        scripted(store, clock)
        assert [1, 2, 3] == [e.version for e, _ in store.replay("k", to_version=3)]

    def test_from_version_zero_is_from_the_start(self, store, clock):
        """from_version=0 replays from the first event."""
        scripted(store, clock)
        assert list(range(1, 14)) == [e.version for e, _ in store.replay("k", from_version=0)]

    def test_empty_range(self, store, clock):
        """to_version below from_version, or to_version 0, yields nothing."""
        scripted(store, clock)
        assert ([], []) == (list(store.replay("k", from_version=5, to_version=4)),
                            list(store.replay("k", to_version=0)))

    def test_unknown_key(self, store):
        """A key with no events replays nothing."""
        assert [] == list(store.replay("never"))

    def test_to_version_past_the_end(self, store, clock):
        """A to_version past the end raises InvalidVersion at the call."""
        scripted(store, clock)
        with pytest.raises(InvalidVersion):
            store.replay("k", to_version=14)

    @pytest.mark.parametrize("arguments", [{"from_version": -1}, {"from_version": "2"}, {"to_version": -1},
                                           {"to_version": 1.0}])
    def test_bad_arguments(self, store, clock, arguments):
        """Negative or non-int bounds raise InvalidArgument at the call."""
        scripted(store, clock)
        with pytest.raises(InvalidArgument):
            store.replay("k", **arguments)

    def test_streams_across_batches(self, big_store):
        """A replay of more events than a batch yields every version once, with growing views."""
        versions, counts, last = [], [], None
        for event, view in big_store.replay("long"):
            versions.append(event.version)
            counts.append(len(view.messages))
            last = view
        assert list(range(1, BIG + 1)) == versions
        assert list(range(1, BIG + 1)) == counts
        assert big_store.session_at("long") == last

    def test_window_across_batches(self, big_store):
        """A replay window straddling batches starts at the right state and ends at to_version."""
        pairs = list(big_store.replay("long", from_version=995, to_version=2005))
        assert list(range(995, 2006)) == [e.version for e, _ in pairs]
        assert big_store.session_at("long", version=995) == pairs[0][1]
        assert big_store.session_at("long", version=1000) == pairs[5][1]
        assert big_store.session_at("long", version=2005) == pairs[-1][1]

    def test_returns_an_iterator(self, big_store):
        """replay returns an iterator, not a list."""
        pairs = big_store.replay("long")
        assert not isinstance(pairs, (list, tuple))
        assert pairs is iter(pairs)

    def test_reads_lazily(self, big_store, monkeypatch):
        """The first pair of a big replay reads at most one batch of events from the log."""
        counter = ReadCounter(monkeypatch, big_store._log, "read_stream")
        pairs = big_store.replay("long")
        event, view = next(pairs)
        assert (1, [ChatMessage.user("message 0")]) == (event.version, view.messages)
        assert counter.count <= 1000


# -- verify's progress -----------------------------------------------------------------------------


class TestVerifyProgress:
    """``verify(progress)``: a clean store is ok, and progress is reported as (done, total)."""

    def test_clean_store(self, store, clock):
        """A store written only through the API verifies ok, having checked every event."""
        scripted(store, clock, "a")
        store.append("b", ChatMessage.user("b"))
        store.compact("b")
        report = store.verify()
        assert (True, 14, []) == (report.ok, report.events_checked, report.problems)

    def test_empty_store(self, store):
        """An empty store verifies ok with nothing checked."""
        report = store.verify()
        assert (True, 0, []) == (report.ok, report.events_checked, report.problems)

    def test_progress_on_a_small_store(self, store, clock):
        """On a small store the callback is called, last with (total, total)."""
        scripted(store, clock)
        calls = []
        store.verify(progress=lambda done, total: calls.append((done, total)))
        assert (13, 13) == calls[-1]

    def test_progress_on_a_big_store(self, big_store):
        """On a big store the callback reports along the walk, done growing to total."""
        calls = []
        report = big_store.verify(progress=lambda done, total: calls.append((done, total)))
        total = BIG + 1
        assert (True, total) == (report.ok, report.events_checked)
        assert {total} == {t for _, t in calls}
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)
        assert (total, total) == calls[-1]
        assert any(0 < done < total for done, _ in calls)


    def test_shared_snapshot_blobs_are_decoded_once(self, tmp_path, clock, monkeypatch):
        """Checking every snapshot of a long session decodes each of its blobs once, not once per snapshot."""
        with SessionStore(tmp_path / "long", clock=clock, snapshot_every=40) as long_store:
            for n in range(1000):
                long_store.append("long", ChatMessage.user(f"message {n}"))
            with long_store._read() as txn:
                blobs = txn.count(long_store._environment.space("snapshots.blobs"))
            decoded: list[str] = []
            real_read_blob = _folding.read_blob

            def read_blob_counting(*args: Any) -> Any:
                decoded.append(args[3])
                return real_read_blob(*args)
            monkeypatch.setattr(_audit, "read_blob", read_blob_counting)
            report = long_store.verify()
        assert (True, []) == (report.ok, report.problems)
        references = sum(-(-version // 64) for version in range(40, 1001, 40))  # blobs each snapshot lists
        assert len(decoded) == len(set(decoded)) <= blobs < references / 4

# -- redaction -------------------------------------------------------------------------------------


SECRET = "passport-X91-7734-secret"
SECRET_TOO = "card-4111-0000-secret"


def secret_session(store: SessionStore, clock: FakeClock, key: str = "k") -> None:
    """A session of 7 events whose message content holds the secrets (a snapshot at 5), and a restore."""
    store.append(key, ChatMessage.user(f"my passport is {SECRET}"))
    store.append(key, ChatMessage.assistant("noted"))
    store.append(key, ChatMessage.assistant("typing"))
    store.update_last(key, ChatMessage.assistant(f"your card is {SECRET_TOO}"))
    store.set_session_name(key, "private")
    clock.advance(minutes=1)
    store.remove_last(key)
    store.restore(key, version=5)


class TestRedact:
    """``redact(key, reason)``: message content becomes unrecoverable, the audit trail stays."""

    def test_content_gone_from_history(self, store, clock):
        """Every message-carrying event in history reads the redaction marker."""
        secret_session(store, clock)
        store.redact("k", "user request")
        contents = []
        for recorded in store.history("k"):
            event = recorded.event
            if isinstance(event, (MessageAppended, LastMessageReplaced)):
                contents.append(event.message.content)
            elif isinstance(event, SessionRestored):
                contents.extend(m.message.content for m in event.messages)
        assert [REDACTED] * 7 == contents  # 3 appends, 1 update, 3 restored messages

    def test_history_keeps_place_type_and_hash(self, store, clock):
        """Redacted events keep their position, version, type, time, id and hash; roles stay."""
        secret_session(store, clock)
        before = store.history("k")
        store.redact("k", "user request")
        after = store.history("k")[:-1]

        def envelope(e: RecordedEvent) -> tuple[object, ...]:
            role = getattr(getattr(e.event, "message", None), "role", None)
            return e.position, e.version, type(e.event), e.recorded_at, e.event_id, e.hash, role
        assert [envelope(e) for e in before] == [envelope(e) for e in after]

    def test_redaction_event_with_reason(self, store, clock):
        """The redaction is recorded as a SessionRedacted event carrying the reason."""
        secret_session(store, clock)
        store.redact("k", "GDPR art. 17")
        event = store.history("k")[-1].event
        assert (SessionRedacted, "GDPR art. 17") == (type(event), event.reason)
        assert [e.position for e in store.history("k") if e.redacted] == [p for p, _ in event.rewritten]

    def test_returns_how_many_events_changed(self, store, clock):
        """redact returns the number of events whose content it replaced."""
        secret_session(store, clock)
        assert 5 == store.redact("k", "user request")  # 3 appends, 1 update, 1 restore

    def test_content_gone_from_load(self, store, clock):
        """The current messages read the marker, with their roles and count kept."""
        secret_session(store, clock)
        roles = [m.role for m in store.load("k")]
        store.redact("k", "user request")
        assert [ChatMessage(role, REDACTED) for role in roles] == store.load("k")

    def test_content_gone_from_every_version(self, store, clock):
        """No point-in-time view or replayed view holds the secrets."""
        secret_session(store, clock)
        store.redact("k", "user request")
        versions = len(store.history("k"))
        texts = [m.content for v in range(versions + 1) for m in store.load("k", version=v)]
        texts += [m.content for _, view in store.replay("k") for m in view.messages]
        assert [] == [t for t in texts if SECRET in t or SECRET_TOO in t]
        assert {REDACTED} == set(texts)

    def test_content_gone_from_snapshots_and_projections(self, store, store_path, clock):
        """No key or value of any LMDB database (log, snapshots, read models) holds the secrets afterwards."""
        secret_session(store, clock)
        store.close()
        snapshots_before = [v for name, entries in all_database_bytes(store_path).items()
                            if name.startswith(b"snapshots") for _, v in entries]
        assert any(SECRET.encode() in value for value in snapshots_before)
        with SessionStore(store_path, clock=clock, snapshot_every=5) as reopened:
            reopened.redact("k", "user request")
        leaks = [name for name, entries in all_database_bytes(store_path).items()
                 for k, v in entries if any(s.encode() in k + v for s in (SECRET, SECRET_TOO))]
        assert [] == leaks

    def test_verify_stays_ok(self, store, clock):
        """The hash chain and the projections still verify after a redaction."""
        secret_session(store, clock)
        store.redact("k", "user request")
        report = store.verify()
        assert (True, []) == (report.ok, report.problems)

    def test_other_sessions_untouched(self, store, clock):
        """Another session's messages keep their content."""
        secret_session(store, clock)
        store.append("other", ChatMessage.user(SECRET))
        store.redact("k", "user request")
        assert ([ChatMessage.user(SECRET)], MessageAppended(ChatMessage.user(SECRET))) == (
            store.load("other"), store.history("other")[0].event)

    def test_earlier_life_redacted(self, store, clock):
        """Content from a deleted earlier life of the key is redacted too."""
        store.append("k", ChatMessage.user(SECRET))
        store.delete_session("k")
        store.append("k", ChatMessage.user("later"))
        store.redact("k", "user request")
        assert [MessageAppended(ChatMessage.user(REDACTED)), SessionDeleted(None),
                MessageAppended(ChatMessage.user(REDACTED))] == [e.event for e in store.history("k")[:3]]

    def test_later_messages_are_kept(self, store, clock):
        """Messages appended after the redaction are stored as given, and the store verifies."""
        secret_session(store, clock)
        store.redact("k", "user request")
        store.append("k", ChatMessage.user("after"))
        assert (ChatMessage.user("after"), True) == (store.load("k")[-1], store.verify().ok)

    @pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
    def test_blank_reason_refused(self, store, clock, reason):
        """A blank reason raises InvalidArgument and changes nothing."""
        secret_session(store, clock)
        before = store.history("k")
        with pytest.raises(InvalidArgument):
            store.redact("k", reason)
        assert before == store.history("k")

    def test_non_str_reason_refused(self, store, clock):
        """A reason that is not a str raises InvalidArgument."""
        secret_session(store, clock)
        with pytest.raises(InvalidArgument):
            store.redact("k", None)


class TestReplicatedRedaction:
    """A replica follows redactions (issue 12, item 11): a replicated ``SessionRedacted`` rewrites the events
    of its session that the copy already holds, in the same transaction, so the copy verifies."""

    def test_copy_redacts_what_it_already_holds(self, store, clock, tmp_path):
        secret_session(store, clock)
        store.append("other", ChatMessage.user(SECRET))
        with SessionStore(tmp_path / "copy", clock=clock, snapshot_every=2) as copy:
            copy.replicate(store.events())
            store.redact("k", "user request")
            assert 1 == copy.replicate(store.events(after=head_position(copy)))
            report = copy.verify()
            assert (True, []) == (report.ok, report.problems)
            assert (store.history("k"), store.load("k")) == (copy.history("k"), copy.load("k"))
            assert [ChatMessage.user(SECRET)] == copy.load("other")
            texts = [m.content for v in range(len(copy.history("k")) + 1) for m in copy.load("k", version=v)]
            assert [] == [t for t in texts if SECRET in t or SECRET_TOO in t]

    def test_redaction_of_an_earlier_life_and_a_second_redaction(self, store, clock, tmp_path):
        """Each replicated redaction rewrites only what no earlier redaction covered, across lives of the key."""
        store.append("k", ChatMessage.user(SECRET))
        store.delete_session("k")
        with SessionStore(tmp_path / "copy", clock=clock) as copy:
            copy.replicate(store.events())
            store.append("k", ChatMessage.user(SECRET_TOO))
            store.redact("k", "first")
            copy.replicate(store.events(after=head_position(copy)))
            store.append("k", ChatMessage.user("third secret"))
            copy.replicate(store.events(after=head_position(copy)))
            store.redact("k", "second")
            copy.replicate(store.events(after=head_position(copy)))
            assert (True, store.history("k")) == (copy.verify().ok, copy.history("k"))

    def test_redaction_naming_other_events_is_refused(self, store, clock, tmp_path):
        """A redaction event that does not name exactly what the copy holds of its session writes nothing."""
        secret_session(store, clock)
        with SessionStore(tmp_path / "copy", clock=clock) as copy:
            copy.replicate(store.events())
            store.redact("k", "user request")
            redaction = store.history("k")[-1]
            forged = SessionRedacted("user request", redaction.event.rewritten[1:])
            encoded = encode_event(forged)
            digest = hashlib.sha256(encoded.payload).digest()
            previous = bytes.fromhex(store.history("k")[-2].hash)
            link = chain_hash(previous, redaction.position, "k", redaction.version,
                              to_micros(redaction.recorded_at), redaction.event_id.bytes,
                              encoded, digest)
            events = [RecordedEvent(redaction.position, "k", redaction.version, redaction.recorded_at, forged,
                                    redaction.event_id, link.hex(), digest.hex())]
            with pytest.raises(InvalidArgument, match="the redaction names other events"):
                copy.replicate(events)
            assert SECRET in copy.history("k")[0].event.message.content
            assert copy.verify().ok

    @pytest.mark.parametrize("extra", ["00", "ab0000"])
    def test_redacted_event_with_a_longer_payload_digest_is_refused(self, store, clock, tmp_path, extra):
        """A redacted event whose payload digest is its source's with bytes after it is not its source's event:
        nothing is written (the chain hashes a digest of 32 bytes, and a longer one must not be cut to them)."""
        secret_session(store, clock)
        store.redact("k", "user request")
        events = [attrs.evolve(event, payload_digest=event.payload_digest + extra) if event.redacted else event
                  for event in store.events()]
        with SessionStore(tmp_path / "copy", clock=clock) as copy:
            with pytest.raises(ReplicationMismatch, match="position 1: bad event id or payload digest"):
                copy.replicate(events)
            assert [] == list(copy.events())


# -- vacuum ----------------------------------------------------------------------------------------


class TestVacuum:
    """``vacuum()``: a compacting rewrite of the data file."""

    LONG_SECRET = " ".join(f"longsecret{i:05d}" for i in range(700))  # overflow pages, not just leaf pages

    def test_redacted_text_is_nowhere_in_the_files(self, store, store_path, clock):
        """After redact and vacuum, the original texts occur in no file of the store's directory."""
        secret_session(store, clock)
        store.append("k", ChatMessage.user(self.LONG_SECRET))
        for i in range(12):
            store.append("filler", ChatMessage.user(f"filler {i}"))
        assert ["data.mdb"] == files_containing(store_path, SECRET.encode())
        store.redact("k", "user request")
        store.vacuum()
        needles = [SECRET, SECRET_TOO, *self.LONG_SECRET.split()]
        leaks = {n: files_containing(store_path, n.encode()) for n in needles}
        assert {} == {n: files for n, files in leaks.items() if files}

    def test_returns_sizes(self, store, store_path, clock):
        """vacuum returns (bytes before, bytes after) of the data file, after no larger than before."""
        for i in range(50):
            store.append(f"s{i % 5}", ChatMessage.user("x" * 3000))
        for i in range(5):
            store.redact(f"s{i}", "cleanup")
        size_before = os.path.getsize(store_path / "data.mdb")
        before, after = store.vacuum()
        assert (size_before, os.path.getsize(store_path / "data.mdb")) == (before, after)
        assert after <= before

    def test_store_works_afterwards(self, store, clock):
        """After vacuum the data is intact, new commands work and the store verifies."""
        scripted(store, clock)
        before = (list(store.events()), store.load("k"), store.session_at("k", version=5))
        store.vacuum()
        assert before == (list(store.events()), store.load("k"), store.session_at("k", version=5))
        store.append("k", ChatMessage.user("after vacuum"))
        assert (ChatMessage.user("after vacuum"), True) == (store.load("k")[-1], store.verify().ok)

    def test_busy_with_a_second_store_open(self, store, store_path, clock, engine):
        """With a second SessionStore open on the same path, vacuum raises StoreBusy and changes nothing."""
        scripted(store, clock)
        events = list(store.events())
        with open_store(engine, store_path, clock=clock) as second:
            with pytest.raises(StoreBusy):
                store.vacuum()
            assert events == list(second.events())
        assert events == list(store.events())

    def test_works_after_the_second_store_closes(self, store, store_path, clock, engine):
        """Once the other store object is closed, vacuum succeeds."""
        scripted(store, clock)
        open_store(engine, store_path, clock=clock).close()
        _before, after = store.vacuum()
        assert (True, after) == (store.verify().ok, os.path.getsize(store_path / "data.mdb"))
