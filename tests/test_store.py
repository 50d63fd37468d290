"""``SessionStore`` on a real LMDB store: every method of the SessionBackend API and its edge cases."""

from __future__ import annotations

import math
import struct
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from eventstore import (
    ChatMessage,
    Durability,
    EventStoreError,
    InvalidArgument,
    SessionMetadata,
    SessionQuery,
    SessionState,
    SessionStore,
    StoreBusy,
    StoreClosed,
    StoreCorrupted,
    StoreFull,
    StoreReadOnly,
    TimestampedMessage,
    WrongExpectedVersion,
)
from eventstore._folding import fold_stream, to_recorded
from eventstore.events import MessageAppended, MessagesCleared, SessionDeleted, SessionRenamed, SessionRestored
from eventstore.storage import MemoryStorage
from eventstore.storage import lmdb as _environment
from projections.session import empty_snapshot, fold

from conftest import STORE_ENGINES, FakeClock, engine_of, lmdb_storage, stream_id_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's start
_STREAM_VERSION = struct.Struct(">QQ")  # the log's stream index key: stream id, version


def user(text: str) -> ChatMessage:
    return ChatMessage.user(text)


def head_position(store: SessionStore) -> int:
    with store._environment.read() as txn:
        return store._log.head(txn)[0]


def read_models(store: SessionStore) -> tuple[object, object]:
    with store._environment.read() as txn:
        return store._catalog.dump(txn), store._messages.dump(txn)


def stream_events(store: SessionStore, key: str):
    with store._environment.read() as txn:
        stream_id = store._log.stream_id(txn, key)
        return [] if stream_id is None else [to_recorded(e) for e in store._log.read_stream(txn, stream_id)]


def all_events(store: SessionStore):
    with store._environment.read() as txn:
        return [to_recorded(e) for e in store._log.read_all(txn)]


def has_snapshot(store: SessionStore, key: str, version: int) -> bool:
    with store._environment.read() as txn:
        stream_id = store._log.stream_id(txn, key)
        return stream_id is not None and store._snapshots.has(txn, stream_id, version)


def replayed(store: SessionStore, key: str, version: int):
    """The session folded from its first event up to ``version``, without snapshots."""
    return fold(empty_snapshot(key), [e for e in stream_events(store, key) if e.version <= version])


@pytest.fixture(params=STORE_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every test using the ``store`` fixture runs on LMDB, in memory and on PostgreSQL; tests that open a
    path themselves (reopening, file options, map size, threads) run on LMDB only."""
    return engine_of(request)


class _Abort(Exception):
    pass


def hide_versions(txn, streams, stream_id: int, hidden: int) -> None:
    """Take versions 1 to ``hidden`` of the stream out of the stream index; an entry holding a run of versions
    that reaches past them keeps its later ones."""
    for raw_key, raw in list(txn.scan(streams, _STREAM_VERSION.pack(stream_id, 1))):
        found_stream, first = _STREAM_VERSION.unpack(raw_key)
        if found_stream != stream_id or first > hidden:
            break
        position = struct.unpack(">Q", raw[:8])[0]
        count = 1 if len(raw) == 8 else struct.unpack(">I", raw[8:])[0]
        assert txn.delete(streams, raw_key)
        kept, start = first + count - 1 - hidden, position + hidden + 1 - first
        if kept > 0:
            txn.put(streams, _STREAM_VERSION.pack(stream_id, hidden + 1),
                    struct.pack(">Q", start) if kept == 1 else struct.pack(">QI", start, kept))


def fold_from_snapshot(store: SessionStore, key: str, version: int):
    """(snapshot version, session at ``version``) folded the way the store does, with every event up to the
    latest snapshot hidden from the stream index, so that the result can only come from that snapshot plus
    the events after it. The hiding happens in a write transaction that is then aborted."""
    result = []

    def body(txn):
        stream_id = stream_id_of(store._log, txn, key)
        found = store._snapshots.latest(txn, stream_id, version)
        hidden = 0 if found is None else found[0]
        hide_versions(txn, store._log._streams, stream_id, hidden)
        result.append((hidden, fold_stream(txn, store._log, store._snapshots, stream_id, key, version)))
        raise _Abort

    with pytest.raises(_Abort):
        store._environment.write(body)
    return result[0]


def fill(store: SessionStore, clock: FakeClock) -> None:
    """A varied history: several sessions, renames, states, removals, clears, a deletion and a reuse."""
    store.append_many("alpha", [user(f"a{n}") for n in range(70)])
    clock.advance(seconds=1)
    store.set_session_name("alpha", "first")
    store.remove_last("alpha")
    store.update_last("alpha", ChatMessage.assistant("edited"))
    clock.advance(seconds=1)
    store.set_session_state("beta", "running", "t1")
    store.append("beta", user("b0"))
    store.append("gamma", ChatMessage.system("g0"))
    clock.advance(seconds=1)
    store.clear_messages("gamma")
    store.append("gamma", user("g1"))
    store.delete_session("beta")
    clock.advance(seconds=1)
    store.append("beta", user("reborn"))
    store.set_session_state("gamma", "running")
    store.set_session_state("gamma", "idle", "t2")


class TestAppend:
    """``append`` and ``append_many``."""

    def test_append_creates_session(self, store, clock):
        """The first append creates the session with that message."""
        store.append("s", user("hello"))
        assert [user("hello")] == store.load("s")
        assert SessionMetadata("s", None, T0, T0, 1) == store.get_session_metadata("s")

    def test_append_returns_versions(self, store):
        """Each append returns the session's new version, counted per session."""
        assert [1, 2, 1, 3] == [store.append("a", user("1")), store.append("a", user("2")),
                                store.append("b", user("1")), store.append("a", user("3"))]

    def test_append_many_one_event_per_message(self, store):
        """A batch of three records three events, in order, and returns the last version."""
        assert 3 == store.append_many("s", [user("1"), ChatMessage.assistant("2"), user("3")])
        assert [user("1"), ChatMessage.assistant("2"), user("3")] == store.load("s")
        assert [MessageAppended(m) for m in store.load("s")] == [e.event for e in all_events(store)]

    def test_append_many_accepts_any_iterable(self, store):
        """A generator of messages is appended whole."""
        store.append_many("s", (user(str(n)) for n in range(4)))
        assert [user(str(n)) for n in range(4)] == store.load("s")

    def test_append_many_one_clock_reading(self, store_path):
        """All messages of a batch carry one time even if the clock moves during the call."""
        ticking = FakeClock()

        def clock():
            ticking.advance(seconds=1)
            return ticking.now

        with SessionStore(store_path, clock=clock) as store:
            store.append_many("s", [user("1"), user("2"), user("3")])
            assert 1 == len({m.created_at for m in store.load_with_timestamps("s")})

    def test_append_many_atomic(self, store):
        """A batch with one bad message writes nothing at all."""
        store.append("s", user("before"))
        before = head_position(store)
        with pytest.raises(InvalidArgument, match="expected a ChatMessage, not str"):
            store.append_many("s", [user("1"), "not a message", user("3"), 4])
        with pytest.raises(InvalidArgument, match="expected a ChatMessage, not NoneType"):
            store.append_many("other", [user("1"), None])
        assert before == head_position(store)
        assert [user("before")] == store.load("s")
        assert ["s"] == store.list_sessions()

    def test_append_many_empty(self, store):
        """An empty batch writes nothing and creates no session."""
        assert 0 == store.append_many("s", [])
        assert 0 == head_position(store)
        assert not store.session_exists("s")

    def test_content_round_trips(self, store):
        """Unicode, control characters, NUL and a 200 KiB content come back unchanged."""
        messages = [user("é😀\u2028\x00\r\n\t\"\\"), ChatMessage("custom-role", ""), user("x" * 200_000)]
        store.append_many("s", messages)
        assert messages == store.load("s")


class TestLoad:
    """``load`` and ``load_with_timestamps``."""

    def test_unknown_session(self, store):
        """An unknown session loads as an empty list."""
        assert [] == store.load("nobody")
        assert [] == store.load_with_timestamps("nobody")

    def test_times_from_the_clock(self, store, clock):
        """Each message carries the clock's time when it was appended."""
        store.append("s", user("1"))
        second = clock.advance(minutes=5)
        store.append_many("s", [user("2"), user("3")])
        assert [TimestampedMessage(user("1"), T0), TimestampedMessage(user("2"), second),
                TimestampedMessage(user("3"), second)] == store.load_with_timestamps("s")

    def test_times_are_utc(self, store):
        """Loaded times are timezone-aware UTC."""
        store.append("s", user("1"))
        assert UTC == store.load_with_timestamps("s")[0].created_at.tzinfo

    def test_returned_list_is_a_copy(self, store):
        """Mutating a loaded list does not change what the next load returns."""
        store.append_many("s", [user("1"), user("2")])
        loaded = store.load("s")
        loaded.append(user("intruder"))
        loaded[0] = user("changed")
        assert [user("1"), user("2")] == store.load("s")

    def test_many_messages(self, store):
        """A session of 300 messages loads whole and in order."""
        messages = [user(f"m{n}") for n in range(300)]
        store.append_many("s", messages[:150])
        for message in messages[150:]:
            store.append("s", message)
        assert messages == store.load("s")
        assert messages == [m.message for m in store.load_with_timestamps("s")]


class TestRemoveLast:
    """``remove_last``."""

    def test_removes_last(self, store):
        """The last message goes and ``True`` comes back."""
        store.append_many("s", [user("1"), user("2")])
        assert store.remove_last("s")
        assert [user("1")] == store.load("s")
        assert 1 == store.get_session_metadata("s").message_count

    def test_empty_session(self, store):
        """With nothing to remove: ``False``, and no event or new version."""
        store.append("s", user("1"))
        assert store.remove_last("s")
        before = head_position(store)
        assert not store.remove_last("s")
        assert before == head_position(store)
        assert 3 == store.append("s", user("2"))

    def test_unknown_session(self, store):
        """An unknown session gives ``False`` and is not created."""
        assert not store.remove_last("nobody")
        assert not store.session_exists("nobody")
        assert 0 == head_position(store)

    def test_across_chunks(self, store):
        """Removing back across many messages keeps the rest intact, and appending afterwards works."""
        store.append_many("s", [user(str(n)) for n in range(140)])
        for _ in range(80):
            assert store.remove_last("s")
        assert [user(str(n)) for n in range(60)] == store.load("s")
        store.append_many("s", [user("new") for _ in range(10)])
        assert [user(str(n)) for n in range(60)] + [user("new")] * 10 == store.load("s")
        assert 70 == store.get_session_metadata("s").message_count

    def test_counts_as_activity(self, store, clock):
        """A removal moves ``last_activity`` to its time."""
        store.append_many("s", [user("1"), user("2")])
        later = clock.advance(hours=1)
        store.remove_last("s")
        assert later == store.get_session_metadata("s").last_activity


class TestUpdateLast:
    """``update_last``."""

    def test_replaces_last(self, store):
        """The last message is replaced and ``True`` comes back."""
        store.append_many("s", [user("1"), ChatMessage.assistant("partial")])
        assert store.update_last("s", ChatMessage.assistant("partial answer"))
        assert [user("1"), ChatMessage.assistant("partial answer")] == store.load("s")
        assert 2 == store.get_session_metadata("s").message_count

    def test_keeps_original_time(self, store, clock):
        """The replaced message keeps its first time; ``last_activity`` moves on."""
        store.append("s", ChatMessage.assistant("par"))
        later = clock.advance(seconds=30)
        store.update_last("s", ChatMessage.assistant("partial"))
        assert [TimestampedMessage(ChatMessage.assistant("partial"), T0)] == store.load_with_timestamps("s")
        assert (T0, later) == (store.get_session_metadata("s").created_at,
                               store.get_session_metadata("s").last_activity)

    def test_last_of_a_full_chunk(self, store):
        """Updating the last message of a long session changes only that message."""
        store.append_many("s", [user(str(n)) for n in range(128)])
        store.update_last("s", user("last"))
        assert [user(str(n)) for n in range(127)] + [user("last")] == store.load("s")

    def test_empty_and_unknown(self, store):
        """No message to replace: ``False``, no event, no session created."""
        assert not store.update_last("nobody", user("x"))
        store.set_session_name("named", "n")
        before = head_position(store)
        assert not store.update_last("named", user("x"))
        assert before == head_position(store)
        assert not store.session_exists("nobody")
        assert [] == store.load("named")


class TestClearMessages:
    """``clear_messages``."""

    def test_returns_count_and_clears(self, store):
        """All messages go; the count removed comes back; the session stays."""
        store.append_many("s", [user(str(n)) for n in range(100)])
        assert 100 == store.clear_messages("s")
        assert [] == store.load("s")
        assert store.session_exists("s")
        assert 0 == store.get_session_metadata("s").message_count

    def test_keeps_name_and_state(self, store, clock):
        """Name, state and ``created_at`` survive a clear."""
        store.append("s", user("1"))
        store.set_session_name("s", "kept")
        store.set_session_state("s", "running", "t1")
        clock.advance(seconds=5)
        store.clear_messages("s")
        assert "kept" == store.get_session_name("s")
        assert SessionState("running", "t1", T0) == store.get_session_state("s")
        assert T0 == store.get_session_metadata("s").created_at

    def test_nothing_to_clear(self, store):
        """An empty or unknown session returns 0 and records nothing."""
        store.set_session_name("s", "n")
        before = head_position(store)
        assert 0 == store.clear_messages("s")
        assert 0 == store.clear_messages("nobody")
        assert before == head_position(store)
        assert not store.session_exists("nobody")

    def test_append_after_clear(self, store):
        """Appending after a clear starts a fresh list in the same session."""
        store.append_many("s", [user(str(n)) for n in range(70)])
        store.clear_messages("s")
        store.append("s", user("after"))
        assert [user("after")] == store.load("s")


class TestListing:
    """``list_sessions`` and ``list_sessions_with_metadata``."""

    def test_empty_store(self, store):
        """A new store lists nothing."""
        assert [] == store.list_sessions()
        assert [] == store.list_sessions_with_metadata()

    def test_most_recent_activity_first(self, store, clock):
        """Sessions come most recent ``last_activity`` first, and any event counts as activity."""
        for key in ("a", "b", "c"):
            store.append(key, user(key))
            clock.advance(seconds=1)
        assert ["c", "b", "a"] == store.list_sessions()
        store.set_session_name("a", "renamed")
        clock.advance(seconds=1)
        store.remove_last("b")
        assert ["b", "a", "c"] == store.list_sessions()

    def test_metadata_matches(self, store, clock):
        """Each listed metadata has the session's name, times and count."""
        store.append_many("a", [user("1"), user("2")])
        t1 = clock.advance(seconds=1)
        store.set_session_name("b", "bee")
        t2 = clock.advance(seconds=1)
        store.append("a", user("3"))
        assert [SessionMetadata("a", None, T0, t2, 3), SessionMetadata("b", "bee", t1, t1, 0)] == \
            store.list_sessions_with_metadata()
        assert [m.key for m in store.list_sessions_with_metadata()] == store.list_sessions()


class TestMetadata:
    """``get_session_metadata`` and ``session_exists``."""

    def test_unknown(self, store):
        """An unknown session has no metadata and does not exist."""
        assert None is store.get_session_metadata("nobody")
        assert not store.session_exists("nobody")

    def test_created_and_last_activity(self, store, clock):
        """``created_at`` is the first event's time; ``last_activity`` the latest event's of any kind."""
        store.set_session_state("s", "idle")
        t1 = clock.advance(seconds=10)
        store.append("s", user("1"))
        t2 = clock.advance(seconds=10)
        store.set_session_name("s", "n")
        assert SessionMetadata("s", "n", T0, t2, 1) == store.get_session_metadata("s")
        assert t1 < t2
        assert store.session_exists("s")

    def test_non_utc_clock(self, store_path):
        """Times from a clock in another zone come back as the same instants in UTC."""
        zone = timezone(timedelta(hours=5))
        with SessionStore(store_path, clock=lambda: datetime(2026, 1, 1, 5, tzinfo=zone)) as store:
            store.append("s", user("1"))
            metadata = store.get_session_metadata("s")
        assert (T0, UTC) == (metadata.created_at, metadata.created_at.tzinfo)


class TestNames:
    """``set_session_name`` and ``get_session_name``."""

    def test_set_and_get(self, store):
        """A name set is the name read; renaming replaces it."""
        store.append("s", user("1"))
        store.set_session_name("s", "first")
        store.set_session_name("s", "second")
        assert "second" == store.get_session_name("s")
        assert "second" == store.get_session_metadata("s").name

    def test_empty_name_clears(self, store):
        """An empty name clears the name."""
        store.set_session_name("s", "named")
        store.set_session_name("s", "")
        assert None is store.get_session_name("s")
        assert store.session_exists("s")

    def test_unknown_session_is_created(self, store):
        """Naming an unknown session creates it with zero messages."""
        store.set_session_name("new", "hello")
        assert SessionMetadata("new", "hello", T0, T0, 0) == store.get_session_metadata("new")
        assert ["new"] == store.list_sessions()

    def test_empty_name_on_unknown_session_creates_it(self, store):
        """Even an empty name on an unknown session creates it (nothing a caller says is dropped)."""
        store.set_session_name("new", "")
        assert store.session_exists("new")
        assert None is store.get_session_name("new")

    def test_unknown_name(self, store):
        """An unknown session, or one never named, has no name."""
        store.append("s", user("1"))
        assert None is store.get_session_name("s")
        assert None is store.get_session_name("nobody")

    def test_same_name_records_nothing(self, store):
        """Setting the name a session already has records no event."""
        store.set_session_name("s", "n")
        before = head_position(store)
        store.set_session_name("s", "n")
        assert before == head_position(store)


class TestState:
    """``set_session_state``, ``get_session_state``, ``list_running_sessions`` and ``list_stuck_sessions``."""

    def test_running_starts_turn(self, store, clock):
        """``running`` records the change's time as ``turn_started_at``."""
        store.append("s", user("1"))
        started = clock.advance(minutes=1)
        store.set_session_state("s", "running", "turn-1")
        assert SessionState("running", "turn-1", started) == store.get_session_state("s")

    def test_other_states_have_no_turn_time(self, store, clock):
        """Any state but ``running`` has ``turn_started_at`` None, and keeps its turn id."""
        store.set_session_state("s", "running", "t1")
        clock.advance(minutes=1)
        store.set_session_state("s", "idle", "t1")
        assert SessionState("idle", "t1", None) == store.get_session_state("s")
        store.set_session_state("s", "error")
        assert SessionState("error", None, None) == store.get_session_state("s")

    def test_unknown_session_is_created(self, store):
        """Setting the state of an unknown session creates it with zero messages."""
        store.set_session_state("new", "running")
        assert SessionMetadata("new", None, T0, T0, 0) == store.get_session_metadata("new")
        assert SessionState("running", None, T0) == store.get_session_state("new")

    def test_no_state(self, store):
        """A live session never given a state is idle with no turn (as ZeroClaw's column default); an unknown or
        deleted one has state None."""
        store.append("s", user("1"))
        assert SessionState("idle", None, None) == store.get_session_state("s")
        assert SessionState("idle", None, None) == store.session_at("s").state
        assert None is store.get_session_state("nobody")
        store.delete_session("s")
        assert None is store.get_session_state("s")
        assert None is store.session_at("s").state
        assert [] == store.list_running_sessions()

    def test_setting_idle_on_a_session_that_never_had_a_state_records_nothing(self, store):
        """It already reads as idle: the call changes nothing, so it records nothing."""
        store.append("s", user("1"))
        store.set_session_state("s", "idle")
        assert 1 == store.session_at("s").version
        store.set_session_state("s", "idle", "t1")  # a turn id is a change
        assert SessionState("idle", "t1", None) == store.get_session_state("s")
        assert 2 == store.session_at("s").version

    def test_new_turn_restarts_clock(self, store, clock):
        """A new running turn starts its clock again."""
        store.set_session_state("s", "running", "t1")
        later = clock.advance(minutes=3)
        store.set_session_state("s", "running", "t2")
        assert SessionState("running", "t2", later) == store.get_session_state("s")

    def test_running_latest_turn_first(self, store, clock):
        """Running sessions are listed latest turn first; others are left out."""
        store.set_session_state("a", "running")
        clock.advance(seconds=1)
        store.set_session_state("b", "running")
        clock.advance(seconds=1)
        store.set_session_state("c", "idle")
        store.set_session_state("d", "running")
        clock.advance(seconds=1)
        store.append("a", user("activity does not move the turn"))
        assert ["d", "b", "a"] == [m.key for m in store.list_running_sessions()]
        store.set_session_state("b", "idle")
        assert ["d", "a"] == [m.key for m in store.list_running_sessions()]
        assert store.get_session_metadata("a") == store.list_running_sessions()[1]

    def test_stuck_oldest_first(self, store, clock):
        """Stuck sessions are running ones whose turn started over the threshold ago, oldest first."""
        store.set_session_state("old", "running")
        clock.advance(seconds=100)
        store.set_session_state("mid", "running")
        clock.advance(seconds=100)
        store.set_session_state("new", "running")
        store.set_session_state("idle", "idle")
        clock.advance(seconds=50)
        assert ["old", "mid"] == [m.key for m in store.list_stuck_sessions(60)]
        assert ["old", "mid", "new"] == [m.key for m in store.list_stuck_sessions(0)]
        assert ["old"] == [m.key for m in store.list_stuck_sessions(150)]
        assert [] == store.list_stuck_sessions(250)
        assert ["old", "mid"] == [m.key for m in store.list_stuck_sessions(149.5)]
        assert ["old"] == [m.key for m in store.list_stuck_sessions(150.5)]

    def test_stuck_threshold_is_strict(self, store, clock):
        """A turn exactly ``threshold_secs`` old is not stuck yet."""
        store.set_session_state("s", "running")
        clock.advance(seconds=60)
        assert [] == store.list_stuck_sessions(60)
        clock.advance(microseconds=1)
        assert ["s"] == [m.key for m in store.list_stuck_sessions(60)]

    def test_same_state_records_nothing(self, store):
        """Setting the state and turn id a session already has records no event."""
        store.set_session_state("s", "running", "t1")
        before = head_position(store)
        store.set_session_state("s", "running", "t1")
        assert before == head_position(store)

    def test_huge_thresholds(self, store, clock):
        """A threshold longer than any turn finds nothing stuck instead of failing."""
        store.set_session_state("s", "running")
        clock.advance(hours=1)
        assert [] == store.list_stuck_sessions(10 ** 9)
        assert [] == store.list_stuck_sessions(10 ** 14)


class TestDelete:
    """``delete_session`` and reuse of a deleted key."""

    def test_unknown(self, store):
        """Deleting an unknown session returns ``False`` and records nothing."""
        assert not store.delete_session("nobody")
        assert 0 == head_position(store)

    def test_disappears_from_every_read(self, store, clock):
        """A deleted session is gone from every query."""
        store.append_many("s", [user("needle"), user("2")])
        store.set_session_name("s", "n")
        store.set_session_state("s", "running", "t")
        store.append("other", user("stays"))
        clock.advance(hours=1)
        assert store.delete_session("s")
        assert [] == store.load("s")
        assert [] == store.load_with_timestamps("s")
        assert ["other"] == store.list_sessions()
        assert ["other"] == [m.key for m in store.list_sessions_with_metadata()]
        assert None is store.get_session_metadata("s")
        assert not store.session_exists("s")
        assert None is store.get_session_name("s")
        assert None is store.get_session_state("s")
        assert [] == store.list_running_sessions()
        assert [] == store.list_stuck_sessions(0)
        assert [] == store.search(SessionQuery("needle"))
        assert ["other"] == [m.key for m in store.search(SessionQuery())]
        assert not store.delete_session("s")

    def test_reuse_starts_fresh(self, store, clock):
        """Reusing a deleted key starts a fresh session: new created_at, no name, no state, no messages."""
        store.append_many("s", [user("1"), user("2")])
        store.set_session_name("s", "old name")
        store.set_session_state("s", "running")
        store.delete_session("s")
        reborn = clock.advance(hours=2)
        assert 6 == store.append("s", user("fresh"))
        assert SessionMetadata("s", None, reborn, reborn, 1) == store.get_session_metadata("s")
        assert [TimestampedMessage(user("fresh"), reborn)] == store.load_with_timestamps("s")
        assert SessionState("idle", None, None) == store.get_session_state("s")  # not the old running state
        assert [] == store.list_running_sessions()

    def test_reuse_by_rename(self, store, clock):
        """A rename of a deleted key also starts a fresh session with zero messages."""
        store.append("s", user("1"))
        store.delete_session("s")
        later = clock.advance(minutes=1)
        store.set_session_name("s", "again")
        assert SessionMetadata("s", "again", later, later, 0) == store.get_session_metadata("s")

    def test_history_stays_in_log(self, store):
        """The deleted life stays in the log, and versions continue from where they were."""
        store.append_many("s", [user("1"), user("2")])
        store.delete_session("s", reason="user asked")
        store.append("s", user("3"))
        assert [1, 2, 3, 4] == [e.version for e in stream_events(store, "s")]
        assert SessionDeleted("user asked") == stream_events(store, "s")[2].event


class TestCleanupStale:
    """``cleanup_stale``."""

    def test_deletes_idle_sessions(self, store, clock):
        """Sessions idle longer than the TTL are deleted, one event each; the count comes back."""
        store.append("old1", user("1"))
        store.set_session_name("old2", "n")
        clock.advance(hours=3)
        store.append("fresh", user("1"))
        clock.advance(hours=2)
        before = head_position(store)
        assert 2 == store.cleanup_stale(4)
        assert ["fresh"] == store.list_sessions()
        assert before + 2 == head_position(store)
        assert [SessionDeleted, SessionDeleted] == [type(e.event) for e in all_events(store)[before:]]
        assert 0 == store.cleanup_stale(4)

    def test_uses_the_clock(self, store, clock):
        """Nothing is stale until the injected clock says so; activity exactly at the cutoff is kept."""
        store.append("s", user("1"))
        clock.advance(hours=24)
        assert 0 == store.cleanup_stale(24)
        clock.advance(microseconds=1)
        assert 1 == store.cleanup_stale(24)
        assert not store.session_exists("s")

    def test_recent_activity_keeps_session(self, store, clock):
        """Any recent event, not only an append, keeps a session alive."""
        store.append("s", user("1"))
        clock.advance(hours=10)
        store.set_session_state("s", "error")
        clock.advance(hours=1)
        assert 0 == store.cleanup_stale(5)
        assert store.session_exists("s")

    def test_huge_ttl(self, store, clock):
        """A TTL longer than any session's age deletes nothing instead of failing."""
        store.append("s", user("1"))
        clock.advance(hours=1)
        assert 0 == store.cleanup_stale(10 ** 9)
        assert store.session_exists("s")


class TestSnapshots:
    """``compact`` and automatic snapshots."""

    def test_compact_takes_snapshot(self, store):
        """``compact`` stores a snapshot at the current version that folds to a full replay; reads are unchanged."""
        store.append_many("s", [user("1"), user("2")])
        store.set_session_name("s", "n")
        before = (store.load_with_timestamps("s"), store.get_session_metadata("s"), head_position(store))
        assert not has_snapshot(store, "s", 3)
        assert store.compact("s")
        assert has_snapshot(store, "s", 3)
        assert (3, replayed(store, "s", 3)) == fold_from_snapshot(store, "s", 3)
        assert before == (store.load_with_timestamps("s"), store.get_session_metadata("s"), head_position(store))

    def test_compact_again_and_unknown(self, store):
        """A second compact at the same version, or of an unknown key, returns ``False``."""
        store.append("s", user("1"))
        assert store.compact("s")
        assert not store.compact("s")
        assert not store.compact("nobody")

    def test_automatic_every_n_events(self, store):
        """With ``snapshot_every=5`` a session gets snapshots at versions 5 and 10 and no others."""
        store.append_many("s", [user(str(n)) for n in range(4)])
        store.append("other", user("x"))
        assert not has_snapshot(store, "s", 4)
        store.set_session_name("s", "fifth")
        assert (5, replayed(store, "s", 5)) == fold_from_snapshot(store, "s", 5)
        store.append_many("s", [user(str(n)) for n in range(3)])
        store.delete_session("s")
        store.append("s", user("reborn"))
        store.set_session_state("s", "running")
        assert [5, 10] == [v for v in range(1, 12) if has_snapshot(store, "s", v)]
        assert (10, replayed(store, "s", 10)) == fold_from_snapshot(store, "s", 10)
        assert (10, replayed(store, "s", 11)) == fold_from_snapshot(store, "s", 11)
        assert not has_snapshot(store, "other", 1)

    def test_batch_reaching_a_multiple(self, store):
        """A batch that reaches version 5 snapshots the session as the batch leaves it (version 7), not before."""
        store.append_many("s", [user(str(n)) for n in range(7)])
        hidden, state = fold_from_snapshot(store, "s", 7)
        assert (7, [user(str(n)) for n in range(7)]) == (hidden, [message for message, _ in state.messages])
        assert 0 == fold_from_snapshot(store, "s", 6)[0]
        assert [user(str(n)) for n in range(7)] == store.load("s")

    def test_snapshot_plus_tail_equals_replay(self, store):
        """Folding from the latest snapshot and the events after it equals folding all events."""
        store.append_many("s", [user(str(n)) for n in range(12)])
        store.remove_last("s")
        store.update_last("s", user("u"))
        store.clear_messages("s")
        store.append("s", user("after"))
        assert (15, replayed(store, "s", 16)) == fold_from_snapshot(store, "s", 16)
        assert (12, replayed(store, "s", 14)) == fold_from_snapshot(store, "s", 14)


class TestRebuild:
    """``rebuild_projections``."""

    def test_identical_read_models(self, store, clock):
        """Rebuilding from the log reproduces the inline read models byte for byte."""
        fill(store, clock)
        before = read_models(store)
        store.rebuild_projections()
        assert before == read_models(store)

    def test_reads_unchanged_and_writes_continue(self, store, clock):
        """Reads agree after a rebuild, and later writes keep inline and rebuilt models equal."""
        fill(store, clock)
        reads = (store.list_sessions_with_metadata(), store.load_with_timestamps("alpha"),
                 store.list_running_sessions(), store.get_session_state("gamma"))
        store.rebuild_projections()
        assert reads == (store.list_sessions_with_metadata(), store.load_with_timestamps("alpha"),
                         store.list_running_sessions(), store.get_session_state("gamma"))
        store.append("alpha", user("after"))
        store.delete_session("gamma")
        inline = read_models(store)
        store.rebuild_projections()
        assert inline == read_models(store)

    def test_outdated_checkpoint_rebuilds_on_open(self, store_path, clock):
        """A read model whose checkpoint lags the log is rebuilt when the store opens."""
        with SessionStore(store_path, clock=clock) as store:
            fill(store, clock)
            expected = read_models(store)

            def forget_messages(txn):
                store._messages.clear(txn)
                store._checkpoints.put(txn, store._messages.name, store._messages.code_version, 0)

            store._environment.write(forget_messages)
            assert expected != read_models(store)
        with SessionStore(store_path, clock=clock) as reopened:
            assert expected == read_models(reopened)

    def test_damaged_event_names_position(self, store):
        """A stored payload that does not decode makes the rebuild raise StoreCorrupted naming its position."""
        store.append_many("s", [user("1"), user("2"), user("3")])
        key = (2).to_bytes(8, "big")

        def damage(txn):
            raw = bytes(txn.get(store._log._events, key))
            txn.put(store._log._events, key, raw[:-5])

        store._environment.write(damage)
        with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
            store.rebuild_projections()
        assert [user("1"), user("2"), user("3")] == store.load("s")


class TestReopen:
    """Closing and reopening the same path."""

    def test_sees_everything(self, store_path, clock):
        """A reopened store reads every committed change, and versions continue."""
        with SessionStore(store_path, clock=clock) as store:
            fill(store, clock)
            reads = (store.list_sessions_with_metadata(), store.load_with_timestamps("alpha"),
                     store.load("beta"), store.get_session_state("gamma"), store.list_running_sessions(),
                     read_models(store), head_position(store))
        with SessionStore(store_path, clock=clock) as store:
            assert reads == (store.list_sessions_with_metadata(), store.load_with_timestamps("alpha"),
                             store.load("beta"), store.get_session_state("gamma"), store.list_running_sessions(),
                             read_models(store), head_position(store))
            assert len(stream_events(store, "beta")) + 1 == store.append("beta", user("more"))

    def test_directory_created(self, tmp_path, clock):
        """A missing directory, with parents, is created."""
        path = tmp_path / "a" / "b" / "store"
        with SessionStore(path, clock=clock) as store:
            store.append("s", user("1"))
        assert path.is_dir()
        with SessionStore(str(path), clock=clock) as store:
            assert [user("1")] == store.load("s")


class TestSearch:
    """``search`` (the simple scan of this issue)."""

    def test_no_keyword_returns_all(self, store, clock):
        """A ``None`` keyword returns every session's metadata, most recent first."""
        for key in ("a", "b", "c"):
            store.append(key, user(key))
            clock.advance(seconds=1)
        assert store.list_sessions_with_metadata() == store.search(SessionQuery())
        assert store.list_sessions_with_metadata() == store.search(SessionQuery(keyword=None))
        assert store.list_sessions_with_metadata() == store.search(SessionQuery(keyword="  "))

    def test_limit(self, store, clock):
        """At most ``limit`` sessions come back, most recent first."""
        for key in ("a", "b", "c"):
            store.append(key, user("common word"))
            clock.advance(seconds=1)
        assert ["c", "b"] == [m.key for m in store.search(SessionQuery(limit=2))]
        assert ["c", "b"] == [m.key for m in store.search(SessionQuery("common", limit=2))]
        assert [] == store.search(SessionQuery("common", limit=0))

    def test_word_match_not_substring(self, store):
        """A keyword matches whole words, case-insensitively, not substrings."""
        store.append("cats", user("I concatenate strings"))
        store.append("pets", user("My Cat sleeps"))
        assert ["pets"] == [m.key for m in store.search(SessionQuery("cat"))]

    def test_key_alone_does_not_match(self, store):
        """A session whose key (or name) contains the word, but no message does, is not found."""
        store.append("weather-bot", user("hello"))
        store.set_session_name("weather-bot", "weather")
        assert [] == store.search(SessionQuery("weather"))

    def test_any_word_and_current_messages_only(self, store, clock):
        """Words are OR-ed, and only current messages count."""
        store.append("a", user("alpha"))
        clock.advance(seconds=1)
        store.append_many("b", [user("beta"), user("gamma")])
        assert ["b", "a"] == [m.key for m in store.search(SessionQuery("alpha gamma"))]
        store.remove_last("b")
        assert ["a"] == [m.key for m in store.search(SessionQuery("alpha gamma"))]
        store.update_last("a", user("changed"))
        assert [] == store.search(SessionQuery("alpha gamma"))


class TestExpectedVersion:
    """Optimistic concurrency with ``expected_version``."""

    def test_matching_version(self, store):
        """The current version is accepted, including 0 for a new session."""
        assert 1 == store.append("s", user("1"), expected_version=0)
        assert 3 == store.append_many("s", [user("2"), user("3")], expected_version=1)

    def test_wrong_version_writes_nothing(self, store):
        """Another version raises WrongExpectedVersion and writes nothing."""
        store.append_many("s", [user("1"), user("2")])
        before = head_position(store)
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append("s", user("late"), expected_version=1)
        assert ("s", 1, 2) == (caught.value.key, caught.value.expected, caught.value.actual)
        with pytest.raises(WrongExpectedVersion):
            store.append_many("s", [user("a"), user("b")], expected_version=5)
        with pytest.raises(WrongExpectedVersion):
            store.append("new", user("x"), expected_version=1)
        assert before == head_position(store)
        assert [user("1"), user("2")] == store.load("s")
        assert not store.session_exists("new")

    def test_is_an_eventstore_error(self, store):
        """The conflict is catchable as EventStoreError without importing lmdb."""
        store.append("s", user("1"))
        with pytest.raises(EventStoreError):
            store.append("s", user("2"), expected_version=0)


class TestClock:
    """The injected clock."""

    def test_backwards_clock_never_decreases_times(self, store, clock):
        """When the clock goes back, a session's times stay where they were instead of decreasing."""
        late = clock.advance(hours=1)
        store.append("s", user("1"))
        clock.advance(hours=-2)
        store.append("s", user("2"))
        store.set_session_state("s", "running")
        assert [late, late] == [m.created_at for m in store.load_with_timestamps("s")]
        assert late == store.get_session_metadata("s").last_activity
        assert late == store.get_session_state("s").turn_started_at
        times = [e.recorded_at for e in stream_events(store, "s")]
        assert sorted(times) == times

    def test_backwards_clock_after_reopen(self, store_path, clock):
        """Times do not decrease across a reopen either."""
        late = clock.advance(hours=1)
        with SessionStore(store_path, clock=clock) as store:
            store.append("s", user("1"))
        clock.advance(hours=-5)
        with SessionStore(store_path, clock=clock) as store:
            store.update_last("s", user("1b"))
            store.append("s", user("2"))
            assert [late, late] == [m.created_at for m in store.load_with_timestamps("s")]
            assert late == store.get_session_metadata("s").last_activity

    def test_naive_clock_rejected(self, store_path):
        """A clock returning a naive datetime raises InvalidArgument and writes nothing."""
        with SessionStore(store_path, clock=lambda: datetime(2026, 1, 1)) as store:
            with pytest.raises(InvalidArgument):
                store.append("s", user("1"))
            assert 0 == head_position(store)


BAD_CALLS = {
    "append-empty-key": lambda s: s.append("", user("x")),
    "append-nul-key": lambda s: s.append("a\x00", user("x")),
    "append-long-key": lambda s: s.append("k" * 1025, user("x")),
    "append-int-key": lambda s: s.append(7, user("x")),
    "append-str-message": lambda s: s.append("k", "hello"),
    "append-dict-message": lambda s: s.append("k", {"role": "user", "content": "x"}),
    "append-negative-version": lambda s: s.append("k", user("x"), expected_version=-1),
    "append-bool-version": lambda s: s.append("k", user("x"), expected_version=True),
    "append-str-version": lambda s: s.append("k", user("x"), expected_version="1"),
    "append_many-bad-key": lambda s: s.append_many("", [user("x")]),
    "append_many-bad-item": lambda s: s.append_many("k", [user("x"), 3]),
    "append_many-negative-version": lambda s: s.append_many("k", [user("x")], expected_version=-2),
    "remove_last-bad-key": lambda s: s.remove_last(""),
    "remove_last-none-key": lambda s: s.remove_last(None),
    "update_last-bad-key": lambda s: s.update_last("\x00", user("x")),
    "update_last-bad-message": lambda s: s.update_last("k", "text"),
    "clear_messages-bad-key": lambda s: s.clear_messages(""),
    "set_session_name-bad-key": lambda s: s.set_session_name("", "n"),
    "set_session_name-int-name": lambda s: s.set_session_name("k", 5),
    "set_session_name-none-name": lambda s: s.set_session_name("k", None),
    "set_session_name-surrogate-name": lambda s: s.set_session_name("k", "\ud800"),
    "set_session_state-bad-key": lambda s: s.set_session_state("", "idle"),
    "set_session_state-empty-state": lambda s: s.set_session_state("k", ""),
    "set_session_state-none-state": lambda s: s.set_session_state("k", None),
    "set_session_state-int-turn": lambda s: s.set_session_state("k", "running", 5),
    "set_session_state-surrogate-state": lambda s: s.set_session_state("k", "\udfff"),
    "delete_session-bad-key": lambda s: s.delete_session(""),
    "delete_session-bad-reason": lambda s: s.delete_session("k", reason=5),
    "cleanup_stale-negative": lambda s: s.cleanup_stale(-1),
    "cleanup_stale-nan": lambda s: s.cleanup_stale(math.nan),
    "cleanup_stale-str": lambda s: s.cleanup_stale("24"),
    "cleanup_stale-bool": lambda s: s.cleanup_stale(True),
    "cleanup_stale-none": lambda s: s.cleanup_stale(None),
    "compact-bad-key": lambda s: s.compact(""),
    "load-bad-key": lambda s: s.load(""),
    "load_with_timestamps-bad-key": lambda s: s.load_with_timestamps("a\x00"),
    "get_session_metadata-bad-key": lambda s: s.get_session_metadata(""),
    "session_exists-bad-key": lambda s: s.session_exists(b"k"),
    "get_session_name-bad-key": lambda s: s.get_session_name(""),
    "get_session_state-bad-key": lambda s: s.get_session_state(""),
    "list_stuck_sessions-negative": lambda s: s.list_stuck_sessions(-5),
    "list_stuck_sessions-str": lambda s: s.list_stuck_sessions("60"),
    "list_stuck_sessions-nan": lambda s: s.list_stuck_sessions(math.nan),
    "search-not-a-query": lambda s: s.search("text"),
    "search-negative-limit": lambda s: s.search(SessionQuery(limit=-1)),
    "search-bool-limit": lambda s: s.search(SessionQuery(limit=True)),
    # The test passes a wrong type on purpose:
    "search-float-limit": lambda s: s.search(SessionQuery(limit=2.5)),  # type: ignore[arg-type]
    "search-int-keyword": lambda s: s.search(SessionQuery(keyword=5)),  # type: ignore[arg-type]
}


class TestBadArguments:
    """Every method refuses bad arguments with an InvalidArgument subclass and writes nothing."""

    @pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
    def test_rejected_and_nothing_written(self, store, clock, call):
        """The call raises InvalidArgument (a ValueError and EventStoreError); the log head is unchanged."""
        store.append("k", user("existing"))
        store.set_session_state("k", "running")
        clock.advance(hours=1)
        before = (head_position(store), read_models(store))
        with pytest.raises(InvalidArgument) as caught:
            call(store)
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, EventStoreError)
        assert str(caught.value)
        assert before == (head_position(store), read_models(store))

    def test_unencodable_path(self, tmp_path):
        """A path the file system cannot name (a lone surrogate) is a bad argument, and nothing is created."""
        for bad in ("\ud800", tmp_path / "x\ud800y"):
            with pytest.raises(InvalidArgument, match="cannot be encoded"):
                SessionStore(bad)
        assert [] == list(tmp_path.iterdir())

    def test_bad_snapshot_every(self, store_path):
        """``snapshot_every`` must be a positive int."""
        for bad in (0, -1, 1.5, True, "5"):
            with pytest.raises(InvalidArgument):
                SessionStore(store_path, snapshot_every=bad)  # type: ignore[arg-type]  # a wrong type on purpose


class TestOnStorage:
    """``SessionStore.on_storage``: a store on any engine, which it owns from then on."""

    def test_close_releases_the_storage(self, clock):
        storage = MemoryStorage()
        with SessionStore.on_storage(storage, clock=clock) as store:
            store.append("a", user("hi"))
        with pytest.raises(StoreClosed):
            storage.space("log.events")
        with SessionStore.on_storage(storage.open_again(readonly=True), clock=clock) as reader:
            assert [user("hi")] == reader.load("a")
            with pytest.raises(StoreReadOnly):
                reader.append("a", user("no"))

    def test_bad_option_releases_the_storage(self):
        storage = MemoryStorage()
        for options in ({"snapshot_every": 0}, {"clock": "now"}, {"cache_sessions": -1}, {"rebuild_progress": 1}):
            with pytest.raises(InvalidArgument):
                SessionStore.on_storage(storage.open_again(), **options)
        with pytest.raises(InvalidArgument):
            SessionStore.on_storage(storage, snapshot_every=0)
        with pytest.raises(StoreClosed):
            storage.space("log.events")


class TestClose:
    """``close``, and one path opened twice in one process."""

    def test_closed_store_refuses(self, store_path, clock):
        """Every call after ``close`` raises StoreClosed; closing twice is harmless."""
        store = SessionStore(store_path, clock=clock)
        store.append("s", user("1"))
        store.close()
        store.close()
        for call in (lambda: store.append("s", user("2")), lambda: store.load("s"),
                     lambda: store.list_sessions(), lambda: store.session_exists("s"),
                     lambda: store.cleanup_stale(1), lambda: store.compact("s"),
                     lambda: store.search(SessionQuery()), lambda: store.rebuild_projections()):
            with pytest.raises(StoreClosed):
                call()

    def test_context_manager_closes(self, store_path, clock):
        """Leaving the ``with`` block closes the store."""
        with SessionStore(store_path, clock=clock) as store:
            store.append("s", user("1"))
        with pytest.raises(StoreClosed):
            store.load("s")

    def test_same_path_twice(self, store_path, clock):
        """Two stores on one path share the data; closing one leaves the other usable."""
        first = SessionStore(store_path, clock=clock)
        second = SessionStore(store_path, clock=clock)
        try:
            first.append("s", user("from first"))
            assert [user("from first")] == second.load("s")
            assert 2 == second.append("s", user("from second"))
            assert [user("from first"), user("from second")] == first.load("s")
            first.close()
            second.append("s", user("after close"))
            assert 3 == len(second.load("s"))
        finally:
            first.close()
            second.close()
        with SessionStore(store_path, clock=clock) as reopened:
            assert 3 == len(reopened.load("s"))

    def test_closed_twin_refuses(self, store_path, clock):
        """A closed store raises StoreClosed even while another store on the same path is open."""
        with SessionStore(store_path, clock=clock) as survivor:
            closed = SessionStore(store_path, clock=clock)
            closed.close()
            with pytest.raises(StoreClosed):
                closed.append("s", user("1"))
            with pytest.raises(StoreClosed):
                closed.load("s")
            assert [] == survivor.list_sessions()


class TestImportedEvents:
    """``import_sessions`` takes events as the log will store and read them back."""

    def test_subclass_refused(self, store):
        """An instance of a subclass of an event class is refused: it would be read back as its base."""
        class Clearing(MessagesCleared):
            pass

        moment = datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(InvalidArgument, match="Clearing"):
            store.import_sessions({"s": [(moment, MessageAppended(user("x"))), (moment, Clearing(1))]})
        assert [] == store.list_sessions()

    def test_restore_to_nothing_carries_nothing(self):
        """A restore to a session that does not exist cannot carry messages, a name, a state or a time."""
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        for fields in ({"messages": (TimestampedMessage(user("x"), moment),)}, {"name": "n"},
                       {"state": SessionState("idle", None, None)}, {"created_at": moment}):
            arguments: dict[str, Any] = {"messages": (), "name": None, "state": None, "created_at": None, **fields}
            with pytest.raises(ValueError, match="does not exist"):
                SessionRestored(1, False, **arguments)

    def test_restore_time_in_another_zone_is_kept_in_utc(self, store):
        """A restore's creation time given at +02:00 is stored as the same instant in UTC."""
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        local = datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
        # A restore needs a version to go back to (a restore to version 1 of a session at version 2).
        store.import_sessions({"s": [(moment, SessionRenamed("a")), (moment, SessionRenamed("b")),
                                     (moment, SessionRestored(1, True, (), "a", None, local))]})
        metadata = store.get_session_metadata("s")
        assert (moment, UTC) == (metadata.created_at, metadata.created_at.tzinfo)
        assert store.verify().ok

    def test_snapshot_from_the_log_when_read_models_disagree(self, store_path, clock):
        """A snapshot due while the message list has drifted from the catalog is folded from the log instead."""
        with SessionStore(store_path, clock=clock, snapshot_every=4) as drifting:
            drifting.append_many("s", [user("0"), user("1"), user("2")])
            with drifting._read() as txn:
                stream_id = stream_id_of(drifting._log, txn, "s")
            drifting._environment.write(lambda txn: drifting._messages._delete_all(txn, stream_id))
            drifting.append("s", user("3"))  # version 4: a snapshot is due
            problems = drifting.verify().problems
            assert problems and not any("snapshot" in problem for problem in problems), problems
            assert [user(str(n)) for n in range(4)] == drifting.load("s", version=4)


class TestDurability:
    """``durable``: what a commit survives, set as LMDB's flush flags."""

    @pytest.mark.parametrize("durable, sync, metasync", [
        (True, True, True), (Durability.FULL, True, True), ("full", True, True),
        (Durability.NORMAL, True, False), ("normal", True, False),
        (False, False, False), (Durability.OFF, False, False), ("off", False, False),
    ])
    def test_levels(self, store_path, durable, sync, metasync):
        """Each level sets LMDB's sync and metasync flags; committed data reads back after a reopen."""
        with SessionStore(store_path, durable=durable) as store:
            flags = lmdb_storage(store)._env.flags()
            assert (sync, metasync) == (flags["sync"], flags["metasync"])
            store.append("s", user("kept"))
        with SessionStore(store_path) as reopened:
            assert [user("kept")] == reopened.load("s")

    def test_bad_level(self, store_path):
        """Anything but a bool or a Durability is refused before a directory is created."""
        for bad in ("fast", "FULL", 1, 0, None, 2.5):
            with pytest.raises(InvalidArgument, match="durable must be"):
                SessionStore(store_path, durable=bad)  # type: ignore[arg-type]  # a wrong type on purpose
        assert not store_path.exists()

    def test_conflicting_options_in_one_process(self, store_path):
        """A path open in this process refuses a second open with another durability or size cap."""
        with SessionStore(store_path, durable=Durability.NORMAL) as first:
            with SessionStore(store_path, durable="normal") as twin:
                twin.append("s", user("shared"))
            for options in ({"durable": True}, {"durable": False}, {"durable": "normal", "max_size": 1 << 30}):
                with pytest.raises(StoreBusy, match="already open in this process"):
                    SessionStore(store_path, **options)
            assert [user("shared")] == first.load("s")


class TestThreads:
    """One store shared by threads."""

    def test_concurrent_appends(self, store_path):
        """Four threads appending at once lose nothing and keep each thread's order."""
        with SessionStore(store_path, durable=False) as store:
            def work(name: str) -> None:
                for n in range(25):
                    store.append("shared", user(f"{name}-{n}"))
                    store.append(name, user(str(n)))

            threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            shared = [m.content for m in store.load("shared")]
            assert 100 == len(shared)
            for i in range(4):
                assert [f"t{i}-{n}" for n in range(25)] == [c for c in shared if c.startswith(f"t{i}-")]
                assert [user(str(n)) for n in range(25)] == store.load(f"t{i}")
            assert list(range(1, 201)) == [e.position for e in all_events(store)]


class TestMapSize:
    """Growing the LMDB map, and the size cap."""

    def test_full_map_grows(self, store_path, monkeypatch):
        """Writing past the initial map size grows the map and loses nothing."""
        monkeypatch.setattr(_environment, "_INITIAL_MAP_SIZE", 1 << 20)
        big = "x" * (300 << 10)
        with SessionStore(store_path, durable=False) as store:
            for n in range(8):
                store.append("s", user(f"{n}{big}"))
            assert [f"{n}{big}" for n in range(8)] == [m.content for m in store.load("s")]

    def test_cap_raises_store_full(self, store_path):
        """Reaching ``max_size`` raises StoreFull and writes nothing."""
        with SessionStore(store_path, durable=False, max_size=1 << 20) as store:
            store.append("s", user("small"))
            before = head_position(store)
            with pytest.raises(StoreFull):
                store.append("s", user("x" * (2 << 20)))
            assert before == head_position(store)
            assert [user("small")] == store.load("s")
