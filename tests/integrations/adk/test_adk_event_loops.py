"""One session service used from two event loops at once, as ADK's sync ``Runner.run`` does (each call runs its
own loop in a thread of its own): two appends to one session read at one version never hang; one lands and the
other is refused as stale, as an append from another process is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from google.adk.errors import StaleSessionError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.session import Session

from eventstore import AsyncSessionStore
from eventstore.integrations.adk import EventStoreSessionService, session_key
from eventstore.services.transaction import Transaction

#: How long a test waits for something that should happen at once.
PATIENCE_SECONDS = 10.0
#: Time for the second append to reach the wait for the first one on a loaded machine.
SETTLE_SECONDS = 0.3


def test_appends_to_one_session_from_two_loops_at_once_both_end(
        session_service: EventStoreSessionService, store: AsyncSessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    session = asyncio.run(session_service.create_session(app_name="app", user_id="u", session_id="s"))
    committing, release = threading.Event(), threading.Event()
    commit = Transaction.commit

    def held_commit(self: Transaction) -> None:
        if not committing.is_set():  # the first append's commit waits until the second append has started
            committing.set()
            release.wait(PATIENCE_SECONDS)
        commit(self)

    monkeypatch.setattr(Transaction, "commit", held_commit)
    outcomes: dict[str, object] = {}

    def append_on_a_loop_of_its_own(name: str, read: Callable[[], Session]) -> threading.Thread:
        async def append() -> None:
            event = Event(author="user", actions=EventActions(state_delta={name: True}))
            try:
                await session_service.append_event(read(), event)
                outcomes[name] = "appended"
            except StaleSessionError as stale:
                outcomes[name] = stale

        thread = threading.Thread(target=asyncio.run, args=(append(),), daemon=True)
        thread.start()
        return thread

    first = append_on_a_loop_of_its_own("first", lambda: session)
    assert committing.wait(PATIENCE_SECONDS)
    second = append_on_a_loop_of_its_own("second", lambda: session.model_copy(deep=True))
    threading.Event().wait(SETTLE_SECONDS)
    release.set()
    first.join(PATIENCE_SECONDS)
    second.join(PATIENCE_SECONDS)
    assert not first.is_alive() and not second.is_alive(), "an append hung"
    # Both read the session at one version: one lands, the other is stale (whichever commits second).
    assert sorted(isinstance(outcome, StaleSessionError) for outcome in outcomes.values()) == [False, True]
    read = asyncio.run(session_service.get_session(app_name="app", user_id="u", session_id="s"))
    assert read is not None
    appended = [name for name in ("first", "second") if outcomes[name] == "appended"]
    assert [next(iter(event.actions.state_delta)) for event in read.events] == appended
    assert len(asyncio.run(store.history(session_key("app", "u", "s")))) == 1 + len(appended)
