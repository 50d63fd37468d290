"""Point-in-time reads against an in-memory model (issue 3): for random command sequences with random
snapshot points, ``session_at(key, version=v)`` and ``replay`` equal the model's session after v events."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionExists, SessionNotFound, SessionState, SessionStore, SessionView
from eventstore.services import time_travel

from conftest import FakeClock
from strategies import json_payloads

KEYS = ("a", "b")
STATES = ("idle", "running", "error")


@dataclass(frozen=True)
class Model:
    """A session as the model sees it: what a point-in-time read must show."""

    exists: bool = False
    name: str | None = None
    state: SessionState | None = None
    created_at: datetime | None = None
    messages: tuple[tuple[ChatMessage, datetime], ...] = ()


GONE = Model()


class Sessions:
    """The model: per key, the session after each of its versions (index 0 is version 0), and their times."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Model]] = {key: [GONE] for key in KEYS}
        self.times: dict[str, list[datetime | None]] = {key: [None] for key in KEYS}

    def current(self, key: str) -> Model:
        return self.versions[key][-1]

    def record(self, key: str, session: Model, now: datetime) -> None:
        self.versions[key].append(session)
        self.times[key].append(now)

    def live(self, key: str, now: datetime) -> Model:
        """The current session, or a fresh one created now if it does not exist."""
        current = self.current(key)
        return current if current.exists else Model(True, None, None, now, ())

    def apply(self, command: tuple[Any, ...], now: datetime) -> None:
        """What the store's command does to the session, as new versions (none for a no-op)."""
        kind, key, *args = command
        current = self.current(key)
        if kind == "append":
            session = self.live(key, now)
            self.record(key, replace(session, messages=(*session.messages, (args[0], now))), now)
        elif kind == "append_many":
            for message in args[0]:
                self.apply(("append", key, message), now)
        elif kind in ("remove_last", "pop_last") and current.messages:
            self.record(key, replace(current, messages=current.messages[:-1]), now)
        elif kind == "update_last" and current.messages and current.messages[-1][0] != args[0]:
            last = (args[0], current.messages[-1][1])
            self.record(key, replace(current, messages=(*current.messages[:-1], last)), now)
        elif kind == "replace":
            asked = self.replacement(key, args[0])
            if not (current.exists and [m for m, _ in current.messages] == asked):
                kept, after = [], 0
                for message in asked:  # each the first equal message after the one matched before keeps its time
                    found = next((i for i in range(after, len(current.messages))
                                  if current.messages[i][0] == message), None)
                    kept.append((message, now if found is None else current.messages[found][1]))
                    after = after if found is None else found + 1
                self.record(key, replace(self.live(key, now), messages=tuple(kept)), now)
        elif kind == "clear" and current.messages:
            self.record(key, replace(current, messages=()), now)
        elif kind == "rename":
            name = args[0] or None
            if not current.exists or current.name != name:
                self.record(key, replace(self.live(key, now), name=name), now)
        elif kind == "state":
            state, turn_id = args
            old = seen(current).state
            if not (current.exists and (old.state, old.turn_id) == (state, turn_id)):
                started = now if state == "running" else None
                self.record(key, replace(self.live(key, now), state=SessionState(state, turn_id, started)), now)
        elif kind == "fork":
            source = self.versions[args[0]][self.restore_target(args[0], args[1])]
            if source.exists and not current.exists:
                self.record(key, Model(True, source.name, None, now, source.messages), now)
        elif kind == "delete" and current.exists:
            self.record(key, GONE, now)
        elif kind == "restore":
            wanted = self.versions[key][self.restore_target(key, args[0])]
            if seen(wanted) != seen(current) and (wanted.exists or current.exists):
                self.record(key, wanted, now)

    def replacement(self, key: str, choices: list[int | ChatMessage]) -> list[ChatMessage]:
        """The list a replace asks for: a number picks a current message (if there is one), a message is new."""
        current = [m for m, _ in self.current(key).messages]
        return [choice if isinstance(choice, ChatMessage) else current[choice % len(current)]
                for choice in choices if isinstance(choice, ChatMessage) or current]

    def restore_target(self, key: str, choice: int) -> int:
        return choice % len(self.versions[key])


def run(store: SessionStore, sessions: Sessions, clock: FakeClock, command: tuple[Any, ...]) -> None:
    """Run one command on the store and the model."""
    kind, key, *args = command
    now = clock.advance(seconds=args.pop())
    if kind == "append":
        store.append(key, args[0])
    elif kind == "append_many":
        store.append_many(key, args[0])
    elif kind == "remove_last":
        store.remove_last(key)
    elif kind == "pop_last":
        current = sessions.current(key).messages
        assert (current[-1][0] if current else None) == store.pop_last(key)
    elif kind == "update_last":
        store.update_last(key, args[0])
    elif kind == "clear":
        store.clear_messages(key)
    elif kind == "replace":
        store.replace_messages(key, sessions.replacement(key, args[0]))
    elif kind == "rename":
        store.set_session_name(key, args[0])
    elif kind == "state":
        store.set_session_state(key, args[0], args[1])
    elif kind == "delete":
        store.delete_session(key)
    elif kind == "restore":
        target = sessions.restore_target(key, args[0])
        returned = store.restore(key, version=target)
        sessions.apply((kind, key, *args), now)
        assert len(sessions.versions[key]) - 1 == returned
        return
    elif kind == "compact":
        store.compact(key)
    elif kind == "fork":
        source_version = sessions.restore_target(args[0], args[1])
        exists, source = sessions.current(key).exists, sessions.versions[args[0]][source_version]
        try:
            store.fork(args[0], key, version=source_version)
            assert source.exists and not exists
        except SessionExists:
            assert exists
        except SessionNotFound:
            assert not source.exists and not exists
    sessions.apply((kind, key, *args), now)


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
messages = st.builds(ChatMessage, st.sampled_from(("user", "assistant", "tool")), texts,
                     st.none() | st.none() | json_payloads)
keys = st.sampled_from(KEYS)
pauses = st.sampled_from((0, 0, 1, 60))

restores = st.tuples(st.just("restore"), keys, st.integers(0, 1000), pauses)
commands = st.one_of(
    st.tuples(st.just("append"), keys, messages, pauses),
    st.tuples(st.just("append_many"), keys, st.lists(messages, max_size=3), pauses),
    st.tuples(st.just("remove_last"), keys, pauses),
    st.tuples(st.just("pop_last"), keys, pauses),
    st.tuples(st.just("update_last"), keys, messages, pauses),
    st.tuples(st.just("clear"), keys, pauses),
    st.tuples(st.just("replace"), keys, st.lists(st.integers(0, 9) | messages, max_size=4), pauses),
    st.tuples(st.just("rename"), keys, st.sampled_from(("", "trip", "work")), pauses),
    st.tuples(st.just("state"), keys, st.sampled_from(STATES), st.none() | st.sampled_from(("t1", "t2")), pauses),
    st.tuples(st.just("delete"), keys, pauses),
    restores,
    restores,
    st.tuples(st.just("compact"), keys, pauses),
    st.tuples(st.just("fork"), keys, keys, st.integers(0, 1000), pauses),
)
scripts = st.lists(commands, min_size=1, max_size=50)
snapshot_every = st.integers(1, 4)


def seen(session: Model) -> Model:
    """The session as readers see it: a live session that never had a state set is idle."""
    return replace(session, state=session.state or SessionState("idle")) if session.exists else session


def observed(view: SessionView) -> tuple[Any, ...]:
    """What a view shows, in the model's terms."""
    return (view.exists, view.name, view.state, view.messages, [(m.message, m.created_at) for m in view.timestamped])


def expected(session: Model) -> tuple[Any, ...]:
    session = seen(session)
    return (session.exists, session.name, session.state, [m for m, _ in session.messages], list(session.messages))


@contextmanager
def played(script: list[tuple[Any, ...]], every: int) -> Iterator[tuple[SessionStore, Sessions]]:
    """A fresh store with ``script`` run on it and on the model."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    sessions = Sessions()
    with tempfile.TemporaryDirectory() as directory, \
            SessionStore(Path(directory) / "store", clock=clock, snapshot_every=every, durable=False) as store:
        for command in script:
            run(store, sessions, clock, command)
        yield store, sessions


class TestTimeTravelMatchesModel:
    """Point-in-time reads and replay agree with the model after any command sequence."""

    @given(scripts, snapshot_every)
    def test_session_at_every_version(self, script, every):
        """session_at(key, version=v) equals the model's session after v events, for every key and v."""
        with played(script, every) as (store, sessions):
            for key in KEYS:
                versions = sessions.versions[key]
                assert len(versions) - 1 == len(store.history(key))
                for version, session in enumerate(versions):
                    assert expected(session) == observed(store.session_at(key, version=version)), (key, version)

    @given(scripts, snapshot_every)
    def test_replay_yields_the_model_views(self, script, every):
        """replay yields one pair per version, each view equal to the model's session after that event."""
        with played(script, every) as (store, sessions):
            for key in KEYS:
                pairs = list(store.replay(key))
                versions = sessions.versions[key]
                assert list(range(1, len(versions))) == [event.version for event, _ in pairs]
                assert [expected(s) for s in versions[1:]] == [observed(view) for _, view in pairs]

    @given(scripts, snapshot_every, st.integers(1, 60))
    def test_replay_from_any_version_in_short_pages_keeps_the_model_views(self, script, every, start):
        """A replay begun midway, read two versions a transaction: every view kept to its end is the model's
        session at its version, and equals (and hashes as) the view ``session_at`` gives for it; the history
        streamed in those pages is ``history``."""
        with played(script, every) as (store, sessions), pytest.MonkeyPatch.context() as patch:
            patch.setattr(time_travel, "BATCH", 2)  # a page ends mid-script
            for key in KEYS:
                versions = sessions.versions[key]
                pairs = list(store.replay(key, from_version=start))
                assert [event.version for event, _ in pairs] == list(range(start, len(versions)))
                for event, view in pairs:
                    assert expected(versions[event.version]) == observed(view), (key, event.version)
                    at = store.session_at(key, version=event.version)
                    assert (view, hash(view)) == (at, hash(at))
                assert list(store.iter_history(key)) == store.history(key)

    @given(scripts, snapshot_every)
    def test_session_at_as_of_every_event_time(self, script, every):
        """session_at(key, as_of=t) equals the model's session after the last event recorded at or before t."""
        with played(script, every) as (store, sessions):
            for key in KEYS:
                times = sessions.times[key]
                for moment in sorted({t for t in times if t is not None}):
                    last = max(v for v, t in enumerate(times) if t is not None and t <= moment)
                    view = store.session_at(key, as_of=moment)
                    assert (last, expected(sessions.versions[key][last])) == (view.version, observed(view))
                    earlier = max((v for v, t in enumerate(times) if t is not None and t < moment), default=0)
                    before = store.session_at(key, as_of=moment - timedelta(microseconds=1))
                    assert earlier == before.version
