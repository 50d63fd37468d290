"""State values a user may hand ADK that JSON does not hold as they are: bytes are kept as ADK keeps them in an
event's state delta (base64), whichever way they come in; a value that cannot be stored at all (a circular
reference) raises ``InvalidArgument`` and writes nothing, never an error of pydantic's."""

from __future__ import annotations

from typing import Any

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions

from eventstore import AsyncSessionStore, InvalidArgument
from eventstore.integrations.adk import EventStoreSessionService, session_key


def circular() -> dict[str, Any]:
    looped: dict[str, Any] = {}
    looped["itself"] = looped
    return looped


async def test_bytes_in_a_created_state_read_back_as_in_an_event_delta(
        session_service: EventStoreSessionService) -> None:
    created = await session_service.create_session(app_name="app", user_id="u", session_id="created",
                                                   state={"blob": b"\xff\x00"})
    other = await session_service.create_session(app_name="app", user_id="u", session_id="appended")
    await session_service.append_event(other, Event(author="user",
                                                    actions=EventActions(state_delta={"blob": b"\xff\x00"})))
    appended = await session_service.get_session(app_name="app", user_id="u", session_id="appended")
    assert appended is not None
    assert created.state["blob"] == appended.state["blob"] == "_wA="


@pytest.mark.parametrize("key", ["value", "app:value", "user:value"])
async def test_a_circular_created_state_is_refused_and_writes_nothing(
        session_service: EventStoreSessionService, store: AsyncSessionStore, key: str) -> None:
    with pytest.raises(InvalidArgument, match=r"(?i)circular"):
        await session_service.create_session(app_name="app", user_id="u", session_id="s", state={key: circular()})
    assert await session_service.get_session(app_name="app", user_id="u", session_id="s") is None
    assert await store.list_sessions() == []


@pytest.mark.parametrize("key", ["value", "app:value", "user:value"])
async def test_a_circular_state_delta_is_refused_and_writes_nothing(
        session_service: EventStoreSessionService, store: AsyncSessionStore, key: str) -> None:
    session = await session_service.create_session(app_name="app", user_id="u", session_id="s")
    before = await store.events().__anext__()
    with pytest.raises(InvalidArgument, match=r"(?i)circular"):
        await session_service.append_event(session, Event(author="user",
                                                          actions=EventActions(state_delta={key: circular()})))
    assert [event async for event in store.events()] == [before]
    await session_service.append_event(session, Event(author="user", actions=EventActions(state_delta={key: 1})))
    assert len(await store.history(session_key("app", "u", "s"))) == 2
