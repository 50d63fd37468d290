"""ADK's session-service contract, restated for ``EventStoreSessionService``.

ADK keeps the contract every ``BaseSessionService`` owes its callers in its repository
(google/adk-python, tests/unittests/sessions/test_session_service.py), not on PyPI. Each test here restates
one of those tests against our service and names the upstream test it mirrors; the tests upstream runs only
on its persistent (database and SQLite) services, such as the stale-writer checks, are restated too.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.genai import types

from eventstore.integrations.adk import EventStoreSessionService

APP = "my_app"


def delta_event(delta: dict[str, object], invocation_id: str = "inv1", timestamp: float | None = None) -> Event:
    event = Event(invocation_id=invocation_id, author="user", actions=EventActions(state_delta=delta))
    if timestamp is not None:
        event.timestamp = timestamp
    return event


# -- create, get, list, delete -------------------------------------------------------------------------------------

async def test_get_empty_session(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_empty_session."""
    assert await session_service.get_session(app_name=APP, user_id="test_user", session_id="123") is None


async def test_create_get_session(session_service: EventStoreSessionService) -> None:
    """Upstream: test_create_get_session."""
    session = await session_service.create_session(app_name=APP, user_id="test_user", state={"key": "value"})
    assert (session.app_name, session.user_id, session.state) == (APP, "test_user", {"key": "value"})
    assert session.id
    assert session.last_update_time <= time.time()
    got = await session_service.get_session(app_name=APP, user_id="test_user", session_id=session.id)
    assert got == session
    await session_service.delete_session(app_name=APP, user_id="test_user", session_id=session.id)
    assert await session_service.get_session(app_name=APP, user_id="test_user", session_id=session.id) is None


async def test_create_and_list_sessions(session_service: EventStoreSessionService) -> None:
    """Upstream: test_create_and_list_sessions."""
    ids = [f"session{i}" for i in range(5)]
    for session_id in ids:
        await session_service.create_session(app_name=APP, user_id="test_user", session_id=session_id,
                                             state={"key": "value" + session_id})
    sessions = (await session_service.list_sessions(app_name=APP, user_id="test_user")).sessions
    assert sorted(s.id for s in sessions) == ids
    assert all(s.state == {"key": "value" + s.id} for s in sessions)


async def test_list_sessions_ordered_by_last_update_time(session_service: EventStoreSessionService) -> None:
    """Upstream: test_list_sessions_ordered_by_last_update_time (least recently updated first)."""
    for session_id in ("a", "b", "c"):
        await session_service.create_session(app_name=APP, user_id="test_user", session_id=session_id)
    session_a = await session_service.get_session(app_name=APP, user_id="test_user", session_id="a")
    assert session_a is not None
    await asyncio.sleep(0.01)
    await session_service.append_event(session_a, Event(invocation_id="invocation", author="user"))
    listed = (await session_service.list_sessions(app_name=APP, user_id="test_user")).sessions
    assert [s.id for s in listed] == ["b", "c", "a"]


async def test_list_sessions_all_users(session_service: EventStoreSessionService) -> None:
    """Upstream: test_list_sessions_all_users."""
    for user_id, session_id in (("user1", "session1a"), ("user1", "session1b"), ("user2", "session2a")):
        await session_service.create_session(app_name=APP, user_id=user_id, session_id=session_id,
                                             state={"key": "value" + session_id.removeprefix("session")})
    by_user = {user_id: {s.id: s.state for s in (await session_service.list_sessions(
        app_name=APP, user_id=user_id)).sessions} for user_id in ("user1", "user2", None)}
    assert by_user["user1"] == {"session1a": {"key": "value1a"}, "session1b": {"key": "value1b"}}
    assert by_user["user2"] == {"session2a": {"key": "value2a"}}
    assert by_user[None] == {**by_user["user1"], **by_user["user2"]}


async def test_list_sessions_sync_strips_events_and_merges_scoped_state(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_list_sessions_sync_strips_events_and_merges_scoped_state (there on the in-memory
    service's sync listing; here the async one)."""
    session = await session_service.create_session(
        app_name=APP, user_id="u1", session_id="s1",
        state={"app:a": "av", "user:u": "uv", "sk": "sv", "temp:t": "tv"})
    await session_service.append_event(session, delta_event({"sk2": "sv2"}))
    listed = (await session_service.list_sessions(app_name=APP, user_id="u1")).sessions
    assert [s.id for s in listed] == ["s1"]
    assert listed[0].events == []
    assert listed[0].state == {"app:a": "av", "user:u": "uv", "sk": "sv", "sk2": "sv2"}


async def test_list_sessions_sync_unknown_app_or_user_returns_empty_response(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_list_sessions_sync_unknown_app_or_user_returns_empty_response."""
    await session_service.create_session(app_name=APP, user_id="u1", session_id="s1")
    assert (await session_service.list_sessions(app_name="unknown_app")).sessions == []
    assert (await session_service.list_sessions(app_name=APP, user_id="unknown_user")).sessions == []
    assert [s.id for s in (await session_service.list_sessions(app_name=APP)).sessions] == ["s1"]


async def test_get_session_respects_user_id(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_session_respects_user_id."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await session_service.append_event(session1, Event(invocation_id="inv1", author="user"))
    await session_service.create_session(app_name=APP, user_id="u2", session_id="s1")
    got = await session_service.get_session(app_name=APP, user_id="u2", session_id="s1")
    assert got is not None
    assert got.user_id == "u2"
    assert got.events == []


async def test_create_session_with_existing_id_raises_error(session_service: EventStoreSessionService) -> None:
    """Upstream: test_create_session_with_existing_id_raises_error."""
    await session_service.create_session(app_name=APP, user_id="test_user", session_id="existing_session")
    with pytest.raises(AlreadyExistsError):
        await session_service.create_session(app_name=APP, user_id="test_user", session_id="existing_session")


async def test_create_session_with_padded_duplicate_id_raises_error(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_create_session_with_padded_duplicate_id_raises_error."""
    await session_service.create_session(app_name=APP, user_id="test_user", session_id="existing_session",
                                         state={"keep": "original"})
    with pytest.raises(AlreadyExistsError):
        await session_service.create_session(app_name=APP, user_id="test_user", session_id="  existing_session  ",
                                             state={"keep": "clobbered"})
    session = await session_service.get_session(app_name=APP, user_id="test_user", session_id="existing_session")
    assert session is not None
    assert session.state["keep"] == "original"


async def test_padded_session_id_reads_and_deletes(session_service: EventStoreSessionService) -> None:
    """Upstream: test_padded_session_id_reads_and_deletes."""
    created = await session_service.create_session(app_name=APP, user_id="test_user", session_id="order-42\n",
                                                   state={"cart": "book"})
    assert created.id == "order-42"
    session = await session_service.get_session(app_name=APP, user_id="test_user", session_id="order-42\n")
    assert session is not None
    assert (session.id, session.state["cart"]) == ("order-42", "book")
    await session_service.delete_session(app_name=APP, user_id="test_user", session_id="order-42\n")
    assert await session_service.get_session(app_name=APP, user_id="test_user", session_id="order-42") is None


async def test_create_session_with_blank_id_generates_one(session_service: EventStoreSessionService) -> None:
    """Upstream: test_create_session_with_blank_id_generates_one."""
    session = await session_service.create_session(app_name=APP, user_id="test_user", session_id="   ")
    assert session.id.strip()


async def test_delete_session_sync_removes_only_the_targeted_users_session(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_delete_session_sync_removes_only_the_targeted_users_session."""
    await session_service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await session_service.create_session(app_name=APP, user_id="u2", session_id="s1")
    await session_service.delete_session(app_name=APP, user_id="u1", session_id="s1")
    assert await session_service.get_session(app_name=APP, user_id="u1", session_id="s1") is None
    other = await session_service.get_session(app_name=APP, user_id="u2", session_id="s1")
    assert other is not None
    assert other.id == "s1"


async def test_delete_session_sync_unknown_session_is_a_noop(session_service: EventStoreSessionService) -> None:
    """Upstream: test_delete_session_sync_unknown_session_is_a_noop."""
    await session_service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await session_service.delete_session(app_name=APP, user_id="u1", session_id="unknown_session")
    await session_service.delete_session(app_name=APP, user_id="unknown_user", session_id="s1")
    await session_service.delete_session(app_name="unknown_app", user_id="u1", session_id="s1")
    assert await session_service.get_session(app_name=APP, user_id="u1", session_id="s1") is not None


# -- state scopes ----------------------------------------------------------------------------------------------------

async def test_app_state_is_shared_by_all_users_of_app(session_service: EventStoreSessionService) -> None:
    """Upstream: test_app_state_is_shared_by_all_users_of_app."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                    state={"app:k1": "v1"})
    await session_service.append_event(session1, delta_event({"app:k2": "v2"}))
    session2 = await session_service.create_session(app_name=APP, user_id="u2", session_id="s2")
    assert session2.state == {"app:k1": "v1", "app:k2": "v2"}
    again = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert again is not None
    assert (again.state.get("app:k1"), again.state.get("app:k2")) == ("v1", "v2")


async def test_user_state_is_shared_only_by_user_sessions(session_service: EventStoreSessionService) -> None:
    """Upstream: test_user_state_is_shared_only_by_user_sessions."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                    state={"user:k1": "v1"})
    await session_service.append_event(session1, delta_event({"user:k2": "v2"}))
    session1b = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1b")
    assert session1b.state == {"user:k1": "v1", "user:k2": "v2"}
    session2 = await session_service.create_session(app_name=APP, user_id="u2", session_id="s2")
    assert session2.state == {}


async def test_session_state_is_not_shared(session_service: EventStoreSessionService) -> None:
    """Upstream: test_session_state_is_not_shared."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                    state={"sk1": "v1"})
    await session_service.append_event(session1, delta_event({"sk2": "v2"}))
    again = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert again is not None
    assert (again.state.get("sk1"), again.state.get("sk2")) == ("v1", "v2")
    session1b = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1b")
    assert session1b.state == {}


async def test_dict_valued_state_delta_replaces_stored_value(session_service: EventStoreSessionService) -> None:
    """Upstream: test_dict_valued_state_delta_replaces_stored_value."""
    session = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                   state={"profile": {"name": "ada", "role": "admin"}})
    await session_service.append_event(session, delta_event({"profile": {"name": "bob"}}))
    reloaded = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert reloaded is not None
    assert reloaded.state["profile"] == session.state["profile"] == {"name": "bob"}


async def test_none_valued_state_delta_is_stored_not_dropped(session_service: EventStoreSessionService) -> None:
    """Upstream: test_none_valued_state_delta_is_stored_not_dropped."""
    session = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                   state={"flag": True})
    await session_service.append_event(session, delta_event({"flag": None}))
    reloaded = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert reloaded is not None
    for state in (reloaded.state, session.state):
        assert "flag" in state
        assert state["flag"] is None


async def test_boolean_state_survives_unrelated_state_delta(session_service: EventStoreSessionService) -> None:
    """Upstream: test_boolean_state_survives_unrelated_state_delta."""
    session = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                   state={"flag": False})
    await session_service.append_event(session, delta_event({"new_flag": True}))
    reloaded = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert reloaded is not None
    for state in (reloaded.state, session.state):
        assert state["new_flag"] is True
        assert state["flag"] is False


async def test_app_state_dict_valued_delta_replaces_stored_value(session_service: EventStoreSessionService) -> None:
    """Upstream: test_app_state_dict_valued_delta_replaces_stored_value."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                    state={"app:cfg": {"name": "ada", "role": "admin"}})
    await session_service.append_event(session1, delta_event({"app:cfg": {"name": "bob"}}))
    session2 = await session_service.create_session(app_name=APP, user_id="u2", session_id="s2")
    assert session2.state["app:cfg"] == session1.state["app:cfg"] == {"name": "bob"}


async def test_user_state_none_valued_delta_is_stored_not_dropped(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_user_state_none_valued_delta_is_stored_not_dropped."""
    session1 = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                                    state={"user:pref": "dark_mode"})
    await session_service.append_event(session1, delta_event({"user:pref": None}))
    session1b = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1b")
    for state in (session1b.state, session1.state):
        assert "user:pref" in state
        assert state["user:pref"] is None


async def test_temp_state_is_not_persisted_in_state_or_events(session_service: EventStoreSessionService) -> None:
    """Upstream: test_temp_state_is_not_persisted_in_state_or_events; the reload is an older upstream
    version's check of the same test."""
    session = await session_service.create_session(app_name=APP, user_id="u1", session_id="s1")
    event = delta_event({"temp:k1": "v1", "sk": "v2"})
    await session_service.append_event(session, event)
    assert (session.state.get("temp:k1"), session.state.get("sk")) == ("v1", "v2")
    assert event.actions.state_delta == {"sk": "v2"}
    reloaded = await session_service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert reloaded is not None
    assert reloaded.state == {"sk": "v2"}
    assert reloaded.events[0].actions.state_delta == {"sk": "v2"}


async def test_temp_state_visible_across_sequential_events(session_service: EventStoreSessionService) -> None:
    """Upstream: test_temp_state_visible_across_sequential_events."""
    session = await session_service.create_session(app_name=APP, user_id="u1", session_id="s_seq")
    event = Event(invocation_id="inv1", author="agent1",
                  actions=EventActions(state_delta={"temp:output": "result_from_a1"}))
    await session_service.append_event(session, event)
    assert session.state.get("temp:output") == "result_from_a1"
    assert "temp:output" not in event.actions.state_delta


async def test_append_event_with_non_serializable_state_delta(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_with_non_serializable_state_delta (database and SQLite services)."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    await session_service.append_event(session, delta_event({"callback": lambda: 1, "ok": 2}))
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert len(reloaded.events) == 1
    assert reloaded.state["ok"] == 2
    assert isinstance(reloaded.state["callback"], str)


# -- get_user_state -------------------------------------------------------------------------------------------------

async def test_get_user_state_returns_empty_dict_when_no_state_exists(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_returns_empty_dict_when_no_state_exists."""
    assert await session_service.get_user_state(app_name=APP, user_id="u1") == {}


async def test_get_user_state_returns_state_written_via_append_event(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_returns_state_written_via_append_event."""
    session = await session_service.create_session(app_name=APP, user_id="u1")
    await session_service.append_event(session, Event(author="system", actions=EventActions(
        state_delta={"user:profile": {"name": "Alice"}, "session_key": 1})))
    assert await session_service.get_user_state(app_name=APP, user_id="u1") == {"profile": {"name": "Alice"}}


async def test_get_user_state_is_not_visible_across_users(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_is_not_visible_across_users."""
    session = await session_service.create_session(app_name=APP, user_id="u1")
    await session_service.append_event(session, Event(author="system", actions=EventActions(
        state_delta={"user:secret": "only-for-u1"})))
    assert await session_service.get_user_state(app_name=APP, user_id="u2") == {}


async def test_get_user_state_is_not_visible_across_apps(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_is_not_visible_across_apps."""
    session = await session_service.create_session(app_name=APP, user_id="u1")
    await session_service.append_event(session, Event(author="system", actions=EventActions(
        state_delta={"user:data": "only-app-a"})))
    assert await session_service.get_user_state(app_name="other_app", user_id="u1") == {}


async def test_get_user_state_available_before_session_is_created(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_available_before_session_is_created."""
    first = await session_service.create_session(app_name=APP, user_id="u1")
    await session_service.append_event(first, Event(author="system", actions=EventActions(
        state_delta={"user:ctx": {"v": 1}})))
    assert await session_service.get_user_state(app_name=APP, user_id="u1") == {"ctx": {"v": 1}}


async def test_get_user_state_reflects_latest_write(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_user_state_reflects_latest_write."""
    session = await session_service.create_session(app_name=APP, user_id="u1")
    for counter in (1, 2):
        await session_service.append_event(session, Event(author="system", actions=EventActions(
            state_delta={"user:counter": counter})))
    assert (await session_service.get_user_state(app_name=APP, user_id="u1"))["counter"] == 2


# -- events ---------------------------------------------------------------------------------------------------------

async def test_append_event_bytes(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_bytes."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    content = types.Content(role="user", parts=[types.Part.from_bytes(data=b"test_image_data",
                                                                      mime_type="image/png")])
    grounding = types.GroundingMetadata(search_entry_point=types.SearchEntryPoint(sdk_blob=b"test_sdk_blob"))
    await session_service.append_event(session, Event(invocation_id="invocation", author="user", content=content,
                                                      grounding_metadata=grounding))
    assert session.events[0].content == content
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert len(reloaded.events) == 1
    assert reloaded.events[0].content == content
    assert reloaded.events[0].grounding_metadata == grounding


async def test_append_event_complete(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_complete."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    event = Event(
        invocation_id="invocation", author="user",
        content=types.Content(role="user", parts=[types.Part(text="test_text")]),
        turn_complete=True, partial=False,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"}, error_code="error_code", error_message="error_message", interrupted=True,
        grounding_metadata=types.GroundingMetadata(web_search_queries=["query1"]),
        usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=1, candidates_token_count=1,
                                                                  total_token_count=2),
        citation_metadata=types.CitationMetadata(), custom_metadata={"custom_key": "custom_value"},
        timestamp=1700000000.123,
        input_transcription=types.Transcription(text="input transcription", finished=True),
        output_transcription=types.Transcription(text="output transcription", finished=True),
    )
    await session_service.append_event(session, event)
    assert await session_service.get_session(app_name=APP, user_id="user", session_id=session.id) == session


async def test_append_event_with_requested_tool_confirmations(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_with_requested_tool_confirmations."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    confirmation = ToolConfirmation(hint="dynamic hint", confirmed=False,
                                    payload={"collection_name": "photos", "resource_id": "album_1"})
    await session_service.append_event(session, Event(invocation_id="invocation", author="user", actions=EventActions(
        requested_tool_confirmations={"tool_call_1": confirmation})))
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert len(reloaded.events) == 1
    assert reloaded.events[0].actions.requested_tool_confirmations == {"tool_call_1": confirmation}


async def test_session_last_update_time_updates_on_event(session_service: EventStoreSessionService) -> None:
    """Upstream: test_session_last_update_time_updates_on_event."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    original = session.last_update_time
    await session_service.append_event(session, Event(invocation_id="invocation", author="user",
                                                      timestamp=original + 10))
    assert session.last_update_time == original + 10
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert reloaded.last_update_time == original + 10


async def test_get_session_with_config(session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_session_with_config."""
    base = int(time.time())
    session = await session_service.create_session(app_name=APP, user_id="user")
    for i in range(1, 6):
        await session_service.append_event(session, Event(author="user", timestamp=base + i))

    async def timestamps(**config: int) -> list[float]:
        got = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id,
                                                config=GetSessionConfig(**config) if config else None)
        assert got is not None
        return [event.timestamp for event in got.events]

    assert await timestamps() == [base + i for i in range(1, 6)]
    assert await timestamps(num_recent_events=0) == []
    assert await timestamps(num_recent_events=3) == [base + 3, base + 4, base + 5]
    assert await timestamps(after_timestamp=base + 4) == [base + 4, base + 5]
    assert await timestamps(after_timestamp=base + 50) == []
    assert await timestamps(after_timestamp=base + 4, num_recent_events=3) == [base + 4, base + 5]


async def test_partial_events_are_not_persisted(session_service: EventStoreSessionService) -> None:
    """Upstream: test_partial_events_are_not_persisted."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    await session_service.append_event(session, Event(author="user", partial=True))
    assert session.events == []
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert reloaded.events == []


async def test_get_session_keeps_exact_epoch_across_a_repeated_local_hour(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_get_session_keeps_exact_epoch_across_a_repeated_local_hour (timestamps are stored as
    given, so no local time zone can shift them)."""
    epochs = [1730613600.0, 1730615400.0]
    session = await session_service.create_session(app_name=APP, user_id="user")
    for epoch in epochs:
        await session_service.append_event(session, Event(author="user", timestamp=epoch))
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert reloaded is not None
    assert [event.timestamp for event in reloaded.events] == epochs


async def test_append_different_events_not_deduplicated(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_different_events_not_deduplicated."""
    session = await session_service.create_session(app_name="test_app", user_id="user_multi",
                                                   session_id="session_multi")
    await session_service.append_event(session, Event(id="shared-event-id", invocation_id="inv_a", author="user"))
    await session_service.append_event(session, Event(id="shared-event-id", invocation_id="inv_b", author="agent"))
    reloaded = await session_service.get_session(app_name="test_app", user_id="user_multi",
                                                 session_id="session_multi")
    assert reloaded is not None
    assert [event.author for event in reloaded.events] == ["user", "agent"]


# -- stale and missing sessions (upstream: the database and SQLite services) ----------------------------------------

async def test_append_event_to_deleted_session_raises_session_not_found(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_to_deleted_session_raises_session_not_found."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    await session_service.delete_session(app_name=APP, user_id="user", session_id=session.id)
    with pytest.raises(SessionNotFoundError):
        await session_service.append_event(session, Event(invocation_id="inv1", author="user"))


async def test_append_event_to_stale_session(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_to_stale_session."""
    now = time.time()
    original = await session_service.create_session(app_name=APP, user_id="user")
    await session_service.append_event(original, delta_event({"sk1": "v1"}, "inv1", timestamp=now + 1))
    updated = await session_service.get_session(app_name=APP, user_id="user", session_id=original.id)
    assert updated is not None
    await session_service.append_event(updated, delta_event({"sk2": "v2"}, "inv2", timestamp=now + 2))
    assert original.last_update_time < updated.last_update_time
    assert len(original.events) == 1
    assert "sk2" not in original.state
    with pytest.raises(StaleSessionError, match="modified in storage"):
        await session_service.append_event(original, delta_event({"sk3": "v3"}, "inv3", timestamp=now + 3))
    final = await session_service.get_session(app_name=APP, user_id="user", session_id=original.id)
    assert final is not None
    assert [event.invocation_id for event in final.events] == ["inv1", "inv2"]
    assert (final.state.get("sk1"), final.state.get("sk2"), final.state.get("sk3")) == ("v1", "v2", None)


async def test_sqlite_append_event_uses_typed_stale_session_error(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_sqlite_append_event_uses_typed_stale_session_error."""
    session = await session_service.create_session(app_name="app", user_id="user")
    stale = session.model_copy(deep=True)
    await session_service.append_event(session, Event(invocation_id="winner", author="user",
                                                      timestamp=session.last_update_time + 1))
    with pytest.raises(StaleSessionError) as error:
        await session_service.append_event(stale, Event(invocation_id="stale", author="user",
                                                        timestamp=session.last_update_time + 1))
    assert isinstance(error.value, ValueError)


async def test_append_event_concurrent_stale_sessions_reject_stale_writer(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_concurrent_stale_sessions_reject_stale_writer."""
    session = await session_service.create_session(app_name=APP, user_id="user")
    rounds = 8
    for i in range(rounds):
        latest = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
        assert latest is not None
        copies = [latest.model_copy(deep=True) for _ in range(2)]
        base = latest.last_update_time + 10
        results = await asyncio.gather(*(
            session_service.append_event(copy, delta_event({f"sk{i}-{n}": f"v{i}-{n}"}, f"inv{i}-{n}",
                                                           timestamp=base + n))
            for n, copy in enumerate(copies, 1)), return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        assert len(errors) == 1
        assert isinstance(errors[0], StaleSessionError)
        assert "modified in storage" in str(errors[0])
    final = await session_service.get_session(app_name=APP, user_id="user", session_id=session.id)
    assert final is not None
    assert len(final.events) == rounds
    for i in range(rounds):
        values = {final.state.get(f"sk{i}-1"), final.state.get(f"sk{i}-2")}
        assert None in values
        assert values & {f"v{i}-1", f"v{i}-2"}


async def test_append_event_allows_timestamp_drift_for_current_session(
        session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_allows_timestamp_drift_for_current_session."""
    session = await session_service.create_session(app_name=APP, user_id="user", session_id="s1")
    first = Event(invocation_id="inv1", author="user", timestamp=session.last_update_time + 10)
    await session_service.append_event(session, first)
    session.last_update_time -= 0.0001
    await session_service.append_event(session, Event(invocation_id="inv2", author="user",
                                                      timestamp=first.timestamp + 10))
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id="s1")
    assert reloaded is not None
    assert [event.invocation_id for event in reloaded.events] == ["inv1", "inv2"]


async def test_append_event_allows_markerless_current_session(session_service: EventStoreSessionService) -> None:
    """Upstream: test_append_event_allows_markerless_current_session."""
    session = await session_service.create_session(app_name=APP, user_id="user", session_id="s1")
    first = Event(invocation_id="inv1", author="user", timestamp=session.last_update_time + 10)
    await session_service.append_event(session, first)
    session._storage_update_marker = None
    session.last_update_time -= 0.0001
    await session_service.append_event(session, Event(invocation_id="inv2", author="user",
                                                      timestamp=first.timestamp + 10))
    reloaded = await session_service.get_session(app_name=APP, user_id="user", session_id="s1")
    assert reloaded is not None
    assert [event.invocation_id for event in reloaded.events] == ["inv1", "inv2"]
