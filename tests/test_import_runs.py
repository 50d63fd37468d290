"""``import_sessions`` records a session's events a run at a time, each with its own time: what it stores is what
the same events given one by one as commands, with the clock at each event's time, store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from eventstore.events import LastMessageReplaced, MessageAppended, SessionEvent, SessionRenamed
from eventstore.storage import MemoryStorage

from conftest import FakeClock
from strategies import messages

START = datetime(2026, 1, 1, tzinfo=UTC)

#: (seconds after START, which the next event may be before; what happens; its message)
steps = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(("append", "replace", "rename")), messages),
                 min_size=1, max_size=25)


def given_as_commands(store: SessionStore, clock: FakeClock, key: str,
                      session: list[tuple[int, str, ChatMessage]]) -> list[tuple[datetime, SessionEvent]]:
    """Give ``session``'s steps to ``store`` one command each, the clock at each step's time; the events they
    recorded, each with its step's time, for an import (a command that changes nothing records none)."""
    timed: list[tuple[datetime, SessionEvent]] = []
    for number, (seconds, kind, message) in enumerate(session):
        clock.now = START + timedelta(seconds=seconds)
        before = len(store.history(key))
        event: SessionEvent
        if kind == "rename":
            event = SessionRenamed(f"name {number}")
            store.set_session_name(key, f"name {number}")
        elif kind == "replace" and store.load(key):
            event = LastMessageReplaced(message)
            store.update_last(key, message)
        else:
            event = MessageAppended(message)
            store.append(key, message)
        if len(store.history(key)) > before:
            timed.append((clock.now, event))
    return timed


@given(st.dictionaries(st.sampled_from(("a", "b", "c")), steps, min_size=1))
@example({"a": [(50, "append", ChatMessage.user("late")), (10, "append", ChatMessage.user("earlier")),
                (60, "rename", ChatMessage.user("")), (20, "replace", ChatMessage.assistant("back again"))]})
def test_an_import_stores_what_the_same_events_given_as_commands_store(sessions):
    clock = FakeClock(START)
    # Snapshots every 3 versions: an import's runs are cut where one is due, so each is taken at its version.
    with SessionStore.on_storage(MemoryStorage(), clock=clock, snapshot_every=3) as commanded, \
            SessionStore.on_storage(MemoryStorage(), clock=clock, snapshot_every=3) as imported:
        batch = {key: given_as_commands(commanded, clock, key, session) for key, session in sessions.items()}
        clock.now = START + timedelta(seconds=10_000)  # no event is later than the importing store's clock
        outcome = imported.import_sessions(batch)
        assert outcome.receipt.sessions == len(sessions)
        for key in sessions:
            assert imported.load_with_timestamps(key) == commanded.load_with_timestamps(key)
            assert imported.get_session_metadata(key) == commanded.get_session_metadata(key)
            assert ([(e.version, e.recorded_at, e.event) for e in imported.history(key)]
                    == [(e.version, e.recorded_at, e.event) for e in commanded.history(key)])
            assert snapshot_versions(imported, key) == snapshot_versions(commanded, key)
        assert imported.list_sessions_with_metadata() == commanded.list_sessions_with_metadata()
        assert imported.verify().ok


def snapshot_versions(store: SessionStore, key: str) -> list[int]:
    with store._read() as txn:
        stream_id = store._log.stream_id(txn, key)
        assert stream_id is not None
        return store._snapshots.stream_versions(txn, stream_id)


#: (the session, what happens to it, a message)
operations = st.lists(st.tuples(st.sampled_from(("a", "b")),
                                st.sampled_from(("append", "append", "append_many", "rename", "redact", "delete")),
                                messages), min_size=1, max_size=30)


def commanded_store(clock: FakeClock, steps: list[tuple[str, str, ChatMessage]]) -> SessionStore:
    store = SessionStore.on_storage(MemoryStorage(), clock=clock, snapshot_every=3)
    for number, (key, kind, message) in enumerate(steps):
        clock.advance(seconds=number % 3)  # some commands share a time
        if kind == "append_many":
            store.append_many(key, [message, ChatMessage.assistant(f"reply {number}")])
        elif kind == "rename":
            store.set_session_name(key, f"name {number}")
        elif kind == "redact" and store.session_exists(key):
            store.redact(key, "a test")
        elif kind == "delete" and store.session_exists(key):
            store.delete_session(key)
        else:
            store.append(key, message)
    return store


@given(operations)
@example([("a", "append", ChatMessage.user("x")), ("a", "append_many", ChatMessage.user("y")),
          ("b", "append", ChatMessage.user("z")), ("a", "redact", ChatMessage.user("")),
          ("a", "append", ChatMessage.user("after"))])
def test_a_replica_copied_in_runs_holds_what_one_copied_event_by_event_holds(steps):
    clock = FakeClock(START)
    with commanded_store(clock, steps) as source, \
            SessionStore.on_storage(MemoryStorage(), clock=clock, snapshot_every=3) as in_runs, \
            SessionStore.on_storage(MemoryStorage(), clock=clock, snapshot_every=3) as one_by_one:
        events = list(source.events())
        assert in_runs.replicate(events) == len(events)
        for event in events:
            one_by_one.replicate([event])
        assert list(in_runs.events()) == events == list(one_by_one.events())
        for key in {key for key, _, _ in steps}:
            assert in_runs.load_with_timestamps(key) == one_by_one.load_with_timestamps(key)
            assert in_runs.get_session_metadata(key) == one_by_one.get_session_metadata(key)
            if in_runs.history(key):
                assert snapshot_versions(in_runs, key) == snapshot_versions(one_by_one, key)
        assert in_runs.verify().ok
