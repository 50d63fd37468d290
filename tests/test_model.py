"""Model-based tests: a ``SessionStore`` driven side by side with a plain in-memory model, and fold properties."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from eventstore import ChatMessage, SessionMetadata, SessionState, SessionStore, TimestampedMessage
from eventstore._folding import fold_stream, to_recorded
from eventstore.storage import MemoryStorage
from projections.session import SessionHead, empty_snapshot, fold, timestamped

from conftest import FakeClock
from strategies import KEYS, STATES, histories, messages, names, session_keys, turn_ids

#: Key prefixes the listing check asks about: none, one of each key's first letter, one inside the long key's
#: digest-shortened index entry and one past it, one of no key.
PREFIXES = ("", "a", "к", "é", "é" * 200, "é" * 300, "é" * 512, "ab", "\U0001f600")
#: Thresholds the stuck-session check asks about after every step, in seconds.
STUCK_THRESHOLDS = (0, 60, 3600)


@attrs.define
class ModelSession:
    """What the model knows about one session key."""

    exists: bool = False
    version: int = 0
    latest_time: datetime | None = None  # the time of the key's latest event, across deletions
    messages: list[TimestampedMessage] = attrs.Factory(list)
    name: str | None = None
    state: SessionState | None = None
    created_at: datetime | None = None
    last_activity: datetime | None = None

    def metadata(self, key: str) -> SessionMetadata | None:
        return self.live_metadata(key) if self.exists else None

    def live_metadata(self, key: str) -> SessionMetadata:
        """The metadata of a live session, which has both its times."""
        assert self.exists and self.created_at is not None and self.last_activity is not None
        return SessionMetadata(key, self.name, self.created_at, self.last_activity, len(self.messages))

    def turn_started_at(self) -> datetime:
        """When the turn of a running session started."""
        assert self.state is not None and self.state.turn_started_at is not None
        return self.state.turn_started_at

    def run_state(self) -> SessionState | None:
        """What ``get_session_state`` answers: idle for a live session that never had a state set."""
        if not self.exists:
            return None
        return SessionState("idle") if self.state is None else self.state

    def head(self, key: str) -> SessionHead:
        if not self.exists:
            return SessionHead(key, self.version, False, None, None, None, None, 0)
        return SessionHead(key, self.version, True, self.name, self.state, self.created_at, self.last_activity,
                           len(self.messages))


class Model:
    """The SessionBackend contract in a few dicts: one event per change, times from the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sessions = {key: ModelSession() for key in KEYS}
        self.snapshots: set[tuple[str, int]] = set()

    def _event(self, key: str, count: int = 1, creates: bool = True) -> datetime:
        """Record ``count`` events of ``key`` at one time (never before the key's latest); return the time."""
        session = self.sessions[key]
        at = self.clock.now if session.latest_time is None else max(self.clock.now, session.latest_time)
        session.latest_time = at
        session.version += count
        if session.version // SNAPSHOT_EVERY > (session.version - count) // SNAPSHOT_EVERY:
            # The commit reached a multiple of SNAPSHOT_EVERY: a snapshot as the commit leaves the session.
            self.snapshots.add((key, session.version))
        if creates:
            if not session.exists:
                session.exists, session.created_at = True, at
                session.messages, session.name, session.state = [], None, None
            session.last_activity = at
        return at

    def append_many(self, key: str, batch: list[ChatMessage]) -> int:
        if batch:
            at = self._event(key, len(batch))
            self.sessions[key].messages += [TimestampedMessage(m, at) for m in batch]
        return self.sessions[key].version

    def remove_last(self, key: str) -> bool:
        session = self.sessions[key]
        if not (session.exists and session.messages):
            return False
        self._event(key)
        session.messages.pop()
        return True

    def pop_last(self, key: str) -> ChatMessage | None:
        session = self.sessions[key]
        last = session.messages[-1].message if session.exists and session.messages else None
        self.remove_last(key)
        return last

    def replace_messages(self, key: str, wanted: list[ChatMessage]) -> int:
        session = self.sessions[key]
        current = session.messages if session.exists else []
        if session.exists and [m.message for m in current] == wanted:
            return session.version
        at = self._event(key)
        kept, after = [], 0
        for message in wanted:  # each the first equal message after the one matched before keeps its time
            found = next((i for i in range(after, len(current)) if current[i].message == message), None)
            kept.append(TimestampedMessage(message, at if found is None else current[found].created_at))
            after = after if found is None else found + 1
        session.messages = kept
        return session.version

    def update_last(self, key: str, message: ChatMessage) -> bool:
        session = self.sessions[key]
        if not (session.exists and session.messages):
            return False
        if session.messages[-1].message == message:
            return True  # changes nothing, so records nothing
        self._event(key)
        session.messages[-1] = TimestampedMessage(message, session.messages[-1].created_at)
        return True

    def clear_messages(self, key: str) -> int:
        session = self.sessions[key]
        count = len(session.messages) if session.exists else 0
        if count:
            self._event(key)
            session.messages = []
        return count

    def set_session_name(self, key: str, name: str) -> None:
        session = self.sessions[key]
        if not session.exists or session.name != (name or None):
            self._event(key)
            session.name = name or None

    def set_session_state(self, key: str, state: str, turn_id: str | None) -> None:
        session = self.sessions[key]
        if session.exists and (session.run_state().state, session.run_state().turn_id) == (state, turn_id):
            return
        at = self._event(key)
        session.state = SessionState(state, turn_id, at if state == "running" else None)

    def delete_session(self, key: str) -> bool:
        session = self.sessions[key]
        if not session.exists:
            return False
        self._event(key, creates=False)
        session.exists = False
        session.messages, session.name, session.state = [], None, None
        session.created_at = session.last_activity = None
        return True

    def cleanup_stale(self, ttl_hours: float) -> int:
        cutoff = self.clock.now - timedelta(hours=ttl_hours)
        stale = [key for key, s in self.sessions.items() if s.exists and s.live_metadata(key).last_activity < cutoff]
        for key in stale:
            self.delete_session(key)
        return len(stale)

    def compact(self, key: str) -> bool:
        version = self.sessions[key].version
        if not version or (key, version) in self.snapshots:
            return False
        self.snapshots.add((key, version))
        return True

    def live(self) -> dict[str, ModelSession]:
        return {key: s for key, s in self.sessions.items() if s.exists}


SNAPSHOT_EVERY = 3


def by_key(metadata: SessionMetadata) -> str:
    return metadata.key


def read_models(store: SessionStore) -> tuple[object, object]:
    with store._environment.read() as txn:
        return store._catalog.dump(txn), store._messages.dump(txn)


class StoreMachine(RuleBasedStateMachine):
    """Random commands on a real store and on the model; every read must agree after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="eventstore-model-")
        self.clock = FakeClock()
        self.model = Model(self.clock)
        self.store = self._open()

    def _open(self) -> SessionStore:
        return SessionStore(self.directory, clock=self.clock, snapshot_every=SNAPSHOT_EVERY, durable=False)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the clock ------------------------------------------------------------------

    @rule(seconds=st.sampled_from((0, 1, 59, 61, 1800, 3601, 7200)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule(seconds=st.sampled_from((1, 120, 5400)))
    def clock_goes_back(self, seconds: int) -> None:
        self.clock.advance(seconds=-seconds)

    # -- commands -------------------------------------------------------------------

    @rule(key=session_keys, message=messages)
    def append(self, key: str, message: ChatMessage) -> None:
        assert self.model.append_many(key, [message]) == self.store.append(key, message)

    @rule(key=session_keys, batch=st.lists(messages, max_size=4))
    def append_many(self, key: str, batch: list[ChatMessage]) -> None:
        assert self.model.append_many(key, batch) == self.store.append_many(key, batch)

    @rule(key=session_keys)
    def remove_last(self, key: str) -> None:
        assert self.model.remove_last(key) == self.store.remove_last(key)

    @rule(key=session_keys, data=st.data())
    def replace_messages(self, key: str, data: st.DataObject) -> None:
        """A prune (some current messages, in order), with new ones mixed in."""
        session = self.model.sessions[key]
        current = [m.message for m in session.messages] if session.exists else []
        kept = data.draw(st.lists(st.sampled_from(current), max_size=4) if current else st.just([]), label="kept")
        wanted = data.draw(st.permutations(kept + data.draw(st.lists(messages, max_size=2))), label="wanted")
        assert self.model.replace_messages(key, wanted) == self.store.replace_messages(key, wanted)

    @rule(key=session_keys)
    def pop_last(self, key: str) -> None:
        assert self.model.pop_last(key) == self.store.pop_last(key)

    @rule(key=session_keys, message=messages)
    def update_last(self, key: str, message: ChatMessage) -> None:
        assert self.model.update_last(key, message) == self.store.update_last(key, message)

    @rule(key=session_keys)
    def update_last_unchanged(self, key: str) -> None:
        """A streaming update that repeats the last message as it is."""
        session = self.model.sessions[key]
        message = session.messages[-1].message if session.exists and session.messages else ChatMessage.user("x")
        assert self.model.update_last(key, message) == self.store.update_last(key, message)

    @rule(key=session_keys)
    def clear_messages(self, key: str) -> None:
        assert self.model.clear_messages(key) == self.store.clear_messages(key)

    @rule(key=session_keys, name=names)
    def set_session_name(self, key: str, name: str) -> None:
        self.model.set_session_name(key, name)
        self.store.set_session_name(key, name)

    @rule(key=session_keys, state=st.sampled_from(STATES), turn_id=turn_ids)
    def set_session_state(self, key: str, state: str, turn_id: str | None) -> None:
        self.model.set_session_state(key, state, turn_id)
        self.store.set_session_state(key, state, turn_id)

    @rule(key=session_keys)
    def delete_session(self, key: str) -> None:
        assert self.model.delete_session(key) == self.store.delete_session(key)

    @rule(ttl_hours=st.sampled_from((0, 0.5, 1, 2, 6)))
    def cleanup_stale(self, ttl_hours: float) -> None:
        assert self.model.cleanup_stale(ttl_hours) == self.store.cleanup_stale(ttl_hours)

    @rule(key=session_keys)
    def compact(self, key: str) -> None:
        assert self.model.compact(key) == self.store.compact(key)

    @rule()
    def rebuild_projections(self) -> None:
        before = read_models(self.store)
        self.store.rebuild_projections()
        assert before == read_models(self.store)
        # Rebuilding the message lists drops the snapshots (copies of their chunks) and takes them again from the
        # log, one at each multiple of SNAPSHOT_EVERY.
        self.model.snapshots = {(key, version) for key, session in self.model.sessions.items()
                                for version in range(SNAPSHOT_EVERY, session.version + 1, SNAPSHOT_EVERY)}

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def sessions_agree(self) -> None:
        for key, session in self.model.sessions.items():
            expected = session.messages if session.exists else []
            assert [m.message for m in expected] == self.store.load(key)
            assert expected == self.store.load_with_timestamps(key)
            assert session.metadata(key) == self.store.get_session_metadata(key)
            assert session.exists == self.store.session_exists(key)
            assert (session.name if session.exists else None) == self.store.get_session_name(key)
            assert session.run_state() == self.store.get_session_state(key)

    @invariant()
    def listing_agrees(self) -> None:
        listed = self.store.list_sessions_with_metadata()
        expected = sorted((s.live_metadata(key) for key, s in self.model.live().items()), key=by_key)
        assert expected == sorted(listed, key=by_key)
        activity = [m.last_activity for m in listed]
        assert sorted(activity, reverse=True) == activity
        assert [m.key for m in listed] == self.store.list_sessions()
        for prefix in PREFIXES:
            with_prefix = [m for m in listed if m.key.startswith(prefix)]
            assert with_prefix == self.store.list_sessions_with_metadata(prefix=prefix)
            assert [m.key for m in with_prefix] == self.store.list_sessions(prefix=prefix)
            page = self.store.list_sessions_page(limit=len(KEYS), prefix=prefix)
            assert (tuple(with_prefix), None, len(with_prefix)) == (page.sessions, page.next_cursor, page.total)

    @invariant()
    def running_agrees(self) -> None:
        live = self.model.live()
        running = {key: s for key, s in live.items() if s.state is not None and s.state.state == "running"}
        listed = self.store.list_running_sessions()
        assert sorted((s.live_metadata(key) for key, s in running.items()), key=by_key) == sorted(listed, key=by_key)
        turns = [running[m.key].turn_started_at() for m in listed]
        assert sorted(turns, reverse=True) == turns
        for threshold in STUCK_THRESHOLDS:
            cutoff = self.clock.now - timedelta(seconds=threshold)
            stuck = self.store.list_stuck_sessions(threshold)
            expected = [s.live_metadata(k) for k, s in running.items() if s.turn_started_at() < cutoff]
            assert sorted(expected, key=by_key) == sorted(stuck, key=by_key)
            turns = [running[m.key].turn_started_at() for m in stuck]
            assert sorted(turns) == turns

    @invariant()
    def folds_agree(self) -> None:
        """A full replay of the log gives the model's session, and so does the nearest snapshot plus its tail."""
        store = self.store
        with store._environment.read() as txn:
            for key, session in self.model.sessions.items():
                stream_id = store._log.stream_id(txn, key)
                if stream_id is None:
                    assert 0 == session.version
                    continue
                events = [to_recorded(e) for e in store._log.read_stream(txn, stream_id)]
                replayed = fold(empty_snapshot(key), events)
                assert session.head(key) == replayed.head
                assert session.messages == [timestamped(entry) for entry in replayed.messages]
                assert replayed == fold_stream(txn, store._log, store._snapshots, stream_id, key, session.version)


StoreMachine.TestCase.__doc__ = "The store agrees with the in-memory model after every random step."
TestStoreModel = StoreMachine.TestCase


class MemoryStoreMachine(StoreMachine):
    """The same machine on the in-memory engine; reopening opens the same contents again."""

    def _open(self) -> SessionStore:
        storage = self.__dict__.get("storage")
        self.storage = MemoryStorage() if storage is None else storage.open_again()
        return SessionStore.on_storage(self.storage, clock=self.clock, snapshot_every=SNAPSHOT_EVERY)


MemoryStoreMachine.TestCase.__doc__ = "The store on the in-memory engine agrees with the model after every step."
TestStoreModelInMemory = MemoryStoreMachine.TestCase


@pytest.mark.slow
class TestFold:
    """``projections.session.fold``: snapshots plus tails."""

    @given(history=histories(), data=st.data())
    def test_snapshot_plus_tail_equals_full_replay(self, history, data):
        """Folding a prefix, then the rest, equals folding the whole history."""
        split = data.draw(st.integers(0, len(history)), label="split")
        empty = empty_snapshot("session")
        assert fold(empty, history) == fold(fold(empty, history[:split]), history[split:])

    @given(history=histories())
    def test_fold_is_pure(self, history):
        """Folding never changes the state it starts from."""
        empty = empty_snapshot("session")
        start = fold(empty, history[: len(history) // 2])
        copy = attrs.evolve(start)
        fold(start, history[len(history) // 2:])
        assert copy == start

    @given(history=histories())
    def test_version_and_count(self, history):
        """The folded head's version is the last event's, and its count is its number of messages."""
        folded = fold(empty_snapshot("session"), history)
        assert (history[-1].version if history else 0) == folded.head.version
        assert len(folded.messages) == folded.head.message_count
