"""``redact_session``: a redacted ADK session takes the ``app:`` and ``user:`` values only it set with it, in the same
transaction; values another session set since stay."""

from __future__ import annotations

from typing import Any

import pytest
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions

from eventstore import AsyncSessionStore, ChatMessage, InvalidArgument
from eventstore.integrations.adk import EventStoreSessionService, session_key
from eventstore.services.transaction import Transaction

APP = "my_app"
SECRET = "4111-1111-1111-1111"
USER_SCOPE = 'adk:user:["my_app", "u"]'
APP_SCOPE = 'adk:app:["my_app"]'


async def _set(service: EventStoreSessionService, user_id: str, session_id: str, delta: dict[str, Any]) -> None:
    session = await service.get_session(app_name=APP, user_id=user_id, session_id=session_id)
    if session is None:
        session = await service.create_session(app_name=APP, user_id=user_id, session_id=session_id)
    await service.append_event(session, Event(author="user", actions=EventActions(state_delta=delta)))


async def _readable_anywhere(store: AsyncSessionStore, text: str) -> list[str]:
    """The keys of the sessions whose history (every event, not only what they hold now) still holds ``text``."""
    found = []
    for key in await store.list_sessions(prefix="adk:"):
        if any(text in repr(event) for event in await store.history(key)):
            found.append(key)
    return found


async def test_values_only_the_redacted_session_set_go_and_others_stay(session_service: EventStoreSessionService,
                                                                       store: AsyncSessionStore) -> None:
    await session_service.create_session(app_name=APP, user_id="u", session_id="s1",
                                         state={"user:plan": "gold", "note": SECRET})
    await _set(session_service, "u", "s1", {"user:card": SECRET, "user:color": "blue", "app:promo": SECRET})
    await _set(session_service, "u", "s2", {"user:color": "green", "s2 own": 1})
    await _set(session_service, "v", "s3", {"app:motd": "hello", "user:card": "v's own"})
    assert sorted(await _readable_anywhere(store, SECRET)) == [APP_SCOPE, session_key(APP, "u", "s1"), USER_SCOPE]

    await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason="card number")

    assert await session_service.get_user_state(app_name=APP, user_id="u") == {"color": "green"}
    assert await session_service.get_user_state(app_name=APP, user_id="v") == {"card": "v's own"}
    s2 = await session_service.get_session(app_name=APP, user_id="u", session_id="s2")
    assert s2 is not None and s2.state == {"user:color": "green", "app:motd": "hello", "s2 own": 1}
    s1 = await session_service.get_session(app_name=APP, user_id="u", session_id="s1")
    assert s1 is not None and (s1.events, s1.state) == ([], {"user:color": "green", "app:motd": "hello"})
    assert await _readable_anywhere(store, SECRET) == []
    assert await _readable_anywhere(store, "gold") == []
    assert (await store.verify()).ok
    # The states go on: the next change lands on what stayed.
    await _set(session_service, "u", "s2", {"user:size": "L"})
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {"color": "green", "size": "L"}


async def test_a_state_the_session_never_changed_is_not_touched(session_service: EventStoreSessionService,
                                                                store: AsyncSessionStore) -> None:
    await _set(session_service, "u", "s1", {"user:card": SECRET})
    await _set(session_service, "u", "s2", {"app:motd": "hello"})
    app_history = await store.history(APP_SCOPE)
    await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason="card number")
    assert await store.history(APP_SCOPE) == app_history
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {}


async def test_a_change_written_before_changes_named_their_session_goes_when_its_value_is_the_sessions(
        session_service: EventStoreSessionService, store: AsyncSessionStore) -> None:
    await _set(session_service, "u", "s1", {"user:card": SECRET, "user:color": "blue"})
    # As a service of the previous version wrote them: no session named.
    await store.append(USER_SCOPE, ChatMessage("system", "", {"delta": {"card": SECRET, "color": "red"}}))
    await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason="card number")
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {"color": "red"}
    assert await _readable_anywhere(store, SECRET) == []


async def test_a_compacted_state_keeps_which_session_set_each_value(session_service: EventStoreSessionService,
                                                                    store: AsyncSessionStore) -> None:
    await _set(session_service, "u", "s1", {"user:card": SECRET})
    for n in range(70):  # past the changes a state keeps before they are made one
        await _set(session_service, "u", "s2", {"user:count": n})
    assert len(await store.load(USER_SCOPE)) < 70
    await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason="card number")
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {"count": 69}
    assert await _readable_anywhere(store, SECRET) == []


async def test_the_redaction_and_the_states_commit_together_or_not_at_all(
        session_service: EventStoreSessionService, store: AsyncSessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    await _set(session_service, "u", "s1", {"user:card": SECRET, "note": SECRET})
    await _set(session_service, "u", "s2", {"user:color": "green"})

    def failing_append(*_: object, **__: object) -> None:
        raise RuntimeError("the write failed")

    monkeypatch.setattr(Transaction, "append", failing_append)  # the kept values cannot be written again
    with pytest.raises(RuntimeError):
        await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason="card number")
    monkeypatch.undo()
    s1 = await session_service.get_session(app_name=APP, user_id="u", session_id="s1")
    assert s1 is not None and s1.state["note"] == SECRET  # the session was not redacted either
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {"card": SECRET, "color": "green"}


async def test_redacting_an_unknown_session_or_without_a_reason_is_refused(
        session_service: EventStoreSessionService) -> None:
    with pytest.raises(SessionNotFoundError):
        await session_service.redact_session(app_name=APP, user_id="u", session_id="nope", reason="r")
    await _set(session_service, "u", "s1", {"user:card": SECRET})
    with pytest.raises(InvalidArgument):
        await session_service.redact_session(app_name=APP, user_id="u", session_id="s1", reason=" ")
    assert session_key(APP, "u", "s1") in await session_service._store.list_sessions(prefix="adk:session:")
