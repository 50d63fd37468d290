"""What ADK's own contract tests do not check: stale writers in other processes, exact round trips, atomic
scoped state, and the event store's history and restore under an ADK session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from eventstore import AsyncSessionStore, ChatMessage, InvalidArgument, SessionQuery, SessionStore, StoreCorrupted
from eventstore.integrations.adk import EventStoreSessionService, session_key

APP = "my_app"

# A writer in another process: appends ROUNDS events to one session, each read fresh and retried when stale,
# each adding one to the session's, the user's and the app's counters.
WRITER = textwrap.dedent("""
    import asyncio, sys
    from google.adk.errors import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from eventstore import AsyncSessionStore
    from eventstore.integrations.adk import EventStoreSessionService

    async def main(path, name, rounds):
        async with AsyncSessionStore(path) as store:
            service = EventStoreSessionService(store)
            stale = 0
            for i in range(rounds):
                while True:
                    session = await service.get_session(app_name="my_app", user_id="u", session_id="s")
                    delta = {key: session.state.get(key, 0) + 1 for key in ("n", "user:n", "app:n")}
                    try:
                        await service.append_event(session, Event(author=name, invocation_id=f"{name}{i}",
                                                                  actions=EventActions(state_delta=delta)))
                        break
                    except StaleSessionError:
                        stale += 1
            print(stale)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


def writer(store_path: Path, name: str, rounds: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(store_path), name, str(rounds)],
                            stdout=subprocess.PIPE, text=True)


async def test_a_session_read_before_another_process_appended_is_stale(
        session_service: EventStoreSessionService, store_path: Path) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    other = writer(store_path, "other", 1)
    assert other.wait(timeout=120) == 0
    with pytest.raises(StaleSessionError):
        await session_service.append_event(session, Event(author="me", actions=EventActions(
            state_delta={"app:n": 100, "user:n": 100})))
    fresh = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert fresh is not None
    # The refused event changed no state of any scope: the event and its state commit together or not at all.
    assert fresh.state == {"n": 1, "user:n": 1, "app:n": 1}
    await session_service.append_event(fresh, Event(author="me"))
    assert [event.author for event in fresh.events] == ["other", "me"]


def test_writers_in_two_processes_lose_no_update(tmp_path: Path) -> None:
    """Each writer reads, adds one and appends; a stale read is refused and retried, so no increment is lost."""
    store_path = tmp_path / "store"

    async def create() -> None:
        async with AsyncSessionStore(store_path) as store:
            await EventStoreSessionService(store).create_session(app_name=APP, user_id="u", session_id="s")

    async def final() -> tuple[int, dict[str, object]]:
        async with AsyncSessionStore(store_path) as store:
            session = await EventStoreSessionService(store).get_session(app_name=APP, user_id="u", session_id="s")
            assert session is not None
            return len(session.events), session.state

    asyncio.run(create())
    rounds = 40
    writers = [writer(store_path, name, rounds) for name in ("a", "b")]
    assert [process.wait(timeout=300) for process in writers] == [0, 0]
    assert asyncio.run(final()) == (2 * rounds, {"n": 2 * rounds, "user:n": 2 * rounds, "app:n": 2 * rounds})


async def test_events_round_trip_exactly(session_service: EventStoreSessionService) -> None:
    """Lone surrogates and NUL in text, ints against floats, key order: an event comes back as it went in."""
    session = await session_service.create_session(app_name=APP, user_id="u")
    metadata = {"z": 1, "a": 1.0, "big": 2**63, "tiny": 5e-324, "nested": {"b": [1, 2.5, None], "a": "\udc80\x00"}}
    event = Event(author="user", invocation_id="inv", content=types.Content(role="user", parts=[
        types.Part(text="lone \ud800 surrogate and NUL \x00")]), custom_metadata=metadata,
        actions=EventActions(state_delta={"count": 3, "ratio": 3.0}))
    await session_service.append_event(session, event)
    reloaded = await session_service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert reloaded is not None
    assert reloaded.events == [event]
    got = reloaded.events[0]
    assert got.custom_metadata is not None
    assert list(got.custom_metadata) == list(metadata)
    assert [type(value) for value in got.custom_metadata.values()] == [type(value) for value in metadata.values()]
    assert type(reloaded.state["count"]) is int
    assert type(reloaded.state["ratio"]) is float


async def test_a_deleted_session_comes_back_with_restore_and_takes_new_events(
        session_service: EventStoreSessionService, store: AsyncSessionStore) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s", state={"k": 1})
    await session_service.append_event(session, Event(author="user", invocation_id="kept"))
    await session_service.delete_session(app_name=APP, user_id="u", session_id="s")
    assert await session_service.get_session(app_name=APP, user_id="u", session_id="s") is None

    key = session_key(APP, "u", "s")
    await store.restore(key, version=2)
    restored = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert restored is not None
    assert ([event.invocation_id for event in restored.events], restored.state) == (["kept"], {"k": 1})
    # The restore moved the session's version on without an ADK event: the restored session is current.
    await session_service.append_event(restored, Event(author="user", invocation_id="after"))
    again = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert again is not None
    assert [event.invocation_id for event in again.events] == ["kept", "after"]
    kinds = [type(recorded).__name__ for recorded in await store.history(key)]
    assert len(kinds) == 5


async def test_a_recreated_session_id_starts_empty(session_service: EventStoreSessionService) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s", state={"old": 1})
    await session_service.append_event(session, Event(author="user"))
    await session_service.delete_session(app_name=APP, user_id="u", session_id="s")
    again = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    assert (again.state, again.events) == ({}, [])
    await session_service.append_event(again, Event(author="user", invocation_id="new"))
    reloaded = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert reloaded is not None
    assert [event.invocation_id for event in reloaded.events] == ["new"]


def test_a_store_of_another_kind_is_refused_when_the_service_is_made(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store, pytest.raises(InvalidArgument, match="AsyncSessionStore"):
        EventStoreSessionService(store)  # type: ignore[arg-type]


def test_importing_eventstore_does_not_import_adk() -> None:
    code = "import sys, eventstore; eventstore.SessionStore; print('google.adk' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


async def test_an_event_removed_through_the_store_is_gone_from_the_session(
        session_service: EventStoreSessionService, store: AsyncSessionStore) -> None:
    """The service reuses what it folded from a session's messages only while they are the same messages."""
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    for n in (1, 2):
        await session_service.append_event(session, Event(author="user", invocation_id=f"inv{n}", actions=EventActions(
            state_delta={f"k{n}": n})))
    assert await session_service.get_session(app_name=APP, user_id="u", session_id="s") == session
    assert await store.remove_last(session_key(APP, "u", "s"))
    pruned = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert pruned is not None
    assert ([event.invocation_id for event in pruned.events], pruned.state) == (["inv1"], {"k1": 1})
    await session_service.append_event(pruned, Event(author="user", invocation_id="inv3"))
    again = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert again is not None
    assert [event.invocation_id for event in again.events] == ["inv1", "inv3"]


async def test_the_store_searches_the_text_of_adk_events(session_service: EventStoreSessionService,
                                                         store: AsyncSessionStore) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    await session_service.append_event(session, Event(author="user", content=types.Content(role="user", parts=[
        types.Part(text="Which lighthouse keeper \udc80 wrote this?")])))
    hits = await store.search(SessionQuery("lighthouse"))
    assert [hit.key for hit in hits] == ['adk:session:["my_app", "u", "s"]']


async def test_a_redacted_session_reads_empty_and_takes_new_events(session_service: EventStoreSessionService,
                                                                    store: AsyncSessionStore) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s", state={"pin": 1234})
    await session_service.append_event(session, Event(author="user", actions=EventActions(
        state_delta={"card": "4111", "user:card": "4111"})))
    await store.redact(session_key(APP, "u", "s"), "card numbers")
    await store.redact('adk:user:["my_app", "u"]', "card numbers")
    redacted = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert redacted is not None
    assert (redacted.events, redacted.state) == ([], {})
    await session_service.append_event(redacted, Event(author="user", invocation_id="after"))
    again = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert again is not None
    assert [event.invocation_id for event in again.events] == ["after"]


async def test_concurrent_appends_through_one_session_object_all_land(
        session_service: EventStoreSessionService) -> None:
    """Parallel agents of one invocation share a session object: their appends wait for each other, as ADK's
    database service serializes them, instead of finding the shared session stale."""
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    events = [Event(author=f"branch{n}", invocation_id="inv", actions=EventActions(state_delta={f"k{n}": n}))
              for n in range(6)]
    await asyncio.gather(*(session_service.append_event(session, event) for event in events))
    reloaded = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert reloaded is not None
    assert sorted(event.author for event in reloaded.events) == [f"branch{n}" for n in range(6)]
    assert reloaded.state == {f"k{n}": n for n in range(6)} == session.state


async def test_a_fork_starts_as_the_source_was_and_goes_its_own_way(session_service: EventStoreSessionService,
                                                                     store: AsyncSessionStore) -> None:
    source = await session_service.create_session(app_name=APP, user_id="u", session_id="s", state={"plan": "a"})
    await session_service.append_event(source, Event(author="user", invocation_id="first", actions=EventActions(
        state_delta={"step": 1})))
    after_first = len(await store.history(session_key(APP, "u", "s")))
    await session_service.append_event(source, Event(author="user", invocation_id="second", actions=EventActions(
        state_delta={"step": 2})))

    fork = await session_service.fork_session(app_name=APP, user_id="u", session_id="s", new_session_id="retry",
                                              version=after_first)
    assert ([event.invocation_id for event in fork.events], fork.state) == (["first"], {"plan": "a", "step": 1})
    stale_fork = fork.model_copy(deep=True)
    await session_service.append_event(fork, Event(author="user", invocation_id="other", actions=EventActions(
        state_delta={"step": 5})))
    # The source goes on from where it was, untouched by the fork; and both stale checks still hold.
    await session_service.append_event(source, Event(author="user", invocation_id="third"))
    with pytest.raises(StaleSessionError):
        await session_service.append_event(stale_fork, Event(author="user"))
    reloaded_fork = await session_service.get_session(app_name=APP, user_id="u", session_id="retry")
    reloaded_source = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert reloaded_fork is not None
    assert reloaded_source is not None
    assert [event.invocation_id for event in reloaded_fork.events] == ["first", "other"]
    assert [event.invocation_id for event in reloaded_source.events] == ["first", "second", "third"]
    assert (reloaded_fork.state["step"], reloaded_source.state["step"]) == (5, 2)


async def test_forks_of_unknown_sessions_or_onto_live_ones_are_refused(
        session_service: EventStoreSessionService) -> None:
    await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    await session_service.create_session(app_name=APP, user_id="u", session_id="taken")
    with pytest.raises(AlreadyExistsError):
        await session_service.fork_session(app_name=APP, user_id="u", session_id="s", new_session_id="taken")
    with pytest.raises(SessionNotFoundError):
        await session_service.fork_session(app_name=APP, user_id="u", session_id="missing")


async def test_many_changes_of_user_state_are_made_one_and_keep_their_history(
        session_service: EventStoreSessionService, store: AsyncSessionStore) -> None:
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    for n in range(150):
        await session_service.append_event(session, Event(author="user", actions=EventActions(
            state_delta={"user:count": n, f"user:k{n % 3}": n})))
    user_scope = 'adk:user:["my_app", "u"]'
    assert len(await store.load(user_scope)) <= 64
    assert await session_service.get_user_state(app_name=APP, user_id="u") == {
        "count": 149, "k0": 147, "k1": 148, "k2": 149}
    # Each change is still an event of the log.
    assert len(await store.history(user_scope)) > 150


async def test_an_event_adk_cannot_read_is_a_store_error_not_a_pydantic_one(
        session_service: EventStoreSessionService, store: AsyncSessionStore) -> None:
    await session_service.create_session(app_name=APP, user_id="u", session_id="s")
    key = session_key(APP, "u", "s")
    await store.append(key, ChatMessage("user", "?", {"event": {"author": ["not", "a", "str"], "timestamp": 1.0},
                                                      "key": key, "version": 2}))
    with pytest.raises(StoreCorrupted, match="holds an event this version of ADK does not read"):
        await session_service.get_session(app_name=APP, user_id="u", session_id="s")


async def test_writes_into_returned_state_and_events_change_nothing_stored(
        session_service: EventStoreSessionService) -> None:
    """The service keeps what it folded between reads; what it hands out must be the caller's own."""
    session = await session_service.create_session(app_name=APP, user_id="u", session_id="s",
                                                   state={"tags": ["a"], "user:prefs": {"tea": True}})
    await session_service.append_event(session, Event(author="user", custom_metadata={"seen": [1]},
                                                      actions=EventActions(state_delta={"app:list": [1]})))
    first = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert first is not None
    first.state["tags"].append("b")
    first.state["user:prefs"]["tea"] = False
    first.state["app:list"].append(2)
    assert first.events[0].custom_metadata is not None
    first.events[0].custom_metadata["seen"].append(2)
    (await session_service.get_user_state(app_name=APP, user_id="u"))["prefs"]["tea"] = False
    again = await session_service.get_session(app_name=APP, user_id="u", session_id="s")
    assert again is not None
    assert again.state == {"tags": ["a"], "user:prefs": {"tea": True}, "app:list": [1]}
    assert again.events[0].custom_metadata == {"seen": [1]}
