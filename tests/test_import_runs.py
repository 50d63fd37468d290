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
    with SessionStore.on_storage(MemoryStorage(), clock=clock) as commanded, \
            SessionStore.on_storage(MemoryStorage(), clock=clock) as imported:
        batch = {key: given_as_commands(commanded, clock, key, session) for key, session in sessions.items()}
        outcome = imported.import_sessions(batch)
        assert outcome.receipt.sessions == len(sessions)
        for key in sessions:
            assert imported.load_with_timestamps(key) == commanded.load_with_timestamps(key)
            assert imported.get_session_metadata(key) == commanded.get_session_metadata(key)
            assert ([(e.version, e.recorded_at, e.event) for e in imported.history(key)]
                    == [(e.version, e.recorded_at, e.event) for e in commanded.history(key)])
        assert imported.list_sessions_with_metadata() == commanded.list_sessions_with_metadata()
        assert imported.verify().ok
