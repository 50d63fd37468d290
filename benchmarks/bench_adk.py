"""ADK's session service on our store against ADK's ``DatabaseSessionService`` on a SQLite file, side by side.

Usage (from the project root, with ``pip install -e '.[adk-bench]'``)::

    python -m benchmarks.bench_adk            # the full run, a Markdown table on stdout (about a minute)
    python -m benchmarks.bench_adk --quick    # a smoke run (seconds)

Both services get the same ADK events: one session of 200 events (user messages, model replies, tool calls
and results, with state changes in the session, user and app scopes) among 50 sessions of the user; the turns
are appended to another of them, so the loaded session stays at 200 events. Then the
calls a turn makes run on both, interleaved one round at a time so the noise of a shared machine lands on
both alike: ``get_session`` of the 200-event session, a turn's two ``append_event`` calls (the user's message,
the model's reply with a state change), and ``list_sessions`` of the user. Both are durable as they come: our
store flushes every commit, SQLite runs with its default ``synchronous=FULL``. Reported: medians, p99 and the
ratio database/ours (above 1: ours is faster). Stores live in a temporary directory, removed afterwards.

A last row gives the floor of the turn's two durable writes on this disk: the bare I/O of the pages each of our
``append_event`` commits writes (counted first, by database) with LMDB's two ordered flushes, against SQLite's WAL
protocol (one page, one ``fdatasync``), twice, with no database on either.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.adk.sessions.session import Session
from google.genai import types

from eventstore import AsyncSessionStore
from eventstore.integrations.adk import EventStoreSessionService

from .commit_pages import describe, pages_of
from .flush_floor import FlushProbe, commit_floor_probe, fsync_probe

APP, USER, BIG = "bench", "user", "big"
BACKENDS = ("ours", "database")
now_ns = time.perf_counter_ns


def text_event(author: str, text: str, delta: dict[str, object] | None = None) -> Event:
    role = "user" if author == "user" else "model"
    return Event(author=author, invocation_id="inv", content=types.Content(role=role, parts=[types.Part(text=text)]),
                 actions=EventActions(state_delta=delta or {}))


def tool_events(i: int) -> list[Event]:
    call = types.FunctionCall(id=f"call{i}", name="lookup", args={"query": f"item {i}", "limit": 5})
    result = types.FunctionResponse(id=f"call{i}", name="lookup", response={"rows": [[i, f"row {i}", 1.5]] * 3})
    return [Event(author="agent", invocation_id="inv", content=types.Content(role="model", parts=[
                types.Part(function_call=call)])),
            Event(author="agent", invocation_id="inv", content=types.Content(role="user", parts=[
                types.Part(function_response=result)]), actions=EventActions(
                    state_delta={"user:lookups": i, "app:lookups_total": i}))]


def conversation(events: int) -> list[Event]:
    """A session's events: turns of a user message, a tool call and result, and a reply."""
    made: list[Event] = []
    i = 0
    while len(made) < events:
        made += [text_event("user", f"Question {i}: what about the {i}th item of my list? " * 3), *tool_events(i),
                 text_event("agent", f"The {i}th item is a row of three columns. " * 6, {"turns": i})]
        i += 1
    return made[:events]


async def populate(service: BaseSessionService, sessions: int, big_events: int) -> Session:
    """The user's sessions: ``BIG`` of ``big_events`` events, the others of four; return the one turns go to."""
    for n in range(sessions - 1):
        small = await service.create_session(app_name=APP, user_id=USER, session_id=f"s{n}", state={"n": n})
        for event in conversation(4):
            await service.append_event(small, event)
    big = await service.create_session(app_name=APP, user_id=USER, session_id=BIG, state={"user:name": "Ada"})
    for event in conversation(big_events):
        await service.append_event(big, event)
    return small


async def get(service: BaseSessionService, _turns: Session, _round: int) -> None:
    await service.get_session(app_name=APP, user_id=USER, session_id=BIG)


async def turn(service: BaseSessionService, turns: Session, round_: int) -> None:
    await service.append_event(turns, text_event("user", f"Round {round_}: and now?"))
    await service.append_event(turns, text_event("agent", f"Round {round_}: done.", {"round": round_}))


async def listing(service: BaseSessionService, _turns: Session, _round: int) -> None:
    await service.list_sessions(app_name=APP, user_id=USER)


CALLS: dict[str, Callable[[BaseSessionService, Session, int], Awaitable[None]]] = {
    "get_session": get, "append turn": turn, "list_sessions": listing}
FLOOR = "floor: bare I/O of a turn's two commits (no database)"


def two_flush_floors(probe: FlushProbe) -> int:
    return probe(0) + probe(1)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def run(rounds: int, sessions: int, big_events: int, directory: Path
              ) -> tuple[dict[str, dict[str, list[float]]], str]:
    """Samples (µs) by call and backend, and the pages an ``append_event`` of ours writes."""
    store = AsyncSessionStore(directory / "store")
    database = DatabaseSessionService(f"sqlite+aiosqlite:///{directory / 'sessions.db'}")
    services: dict[str, BaseSessionService] = {"ours": EventStoreSessionService(store), "database": database}
    try:
        held = {name: await populate(service, sessions, big_events) for name, service in services.items()}
        meter = await services["ours"].create_session(app_name=APP, user_id=USER, session_id="meter")
        pages = await pages_of(directory / "store" / "data.mdb", lambda n: services["ours"].append_event(
            meter, text_event("agent", f"Round {n}: done.", {"round": n})), 15)
        # The probe writes the meta page itself, after the others' flush, as LMDB does.
        floors = {"ours": commit_floor_probe(directory / "floor-lmdb", max(1, round(pages["total"]) - 1)),
                  "database": fsync_probe(directory / "floor-sqlite")}
        samples: dict[str, dict[str, list[float]]] = {call: {name: [] for name in BACKENDS}
                                                      for call in [*CALLS, FLOOR]}
        for round_ in range(rounds):
            for name in BACKENDS if round_ % 2 else BACKENDS[::-1]:
                for call, body in CALLS.items():
                    started = now_ns()
                    await body(services[name], held[name], round_)
                    samples[call][name].append((now_ns() - started) / 1000)
                samples[FLOOR][name].append(two_flush_floors(floors[name]) / 1000)
        for probe in floors.values():
            probe.close()
        return samples, describe(pages)
    finally:
        await database.close()
        await store.close()


def table(samples: dict[str, dict[str, list[float]]], pages: str, rounds: int, sessions: int, big_events: int
          ) -> str:
    lines = [f"ADK session service, {datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, "
             f"{rounds} interleaved rounds; {sessions} sessions of one user, the loaded one of {big_events} events.",
             f"Our append_event writes {pages} (medians of 15 commits); the floor row writes as many twice with "
             "LMDB's protocol for ours, one page and one fdatasync twice for the database.",
             "",
             "| call | ours median µs | database median µs | ratio | ours p99 µs | database p99 µs |",
             "|---|---:|---:|---:|---:|---:|"]
    for call, by_backend in samples.items():
        ours, database = (statistics.median(by_backend[name]) for name in BACKENDS)
        lines.append(f"| {call} | {ours:,.0f} | {database:,.0f} | {database / ours:.1f}× | "
                     f"{p99(by_backend['ours']):,.0f} | {p99(by_backend['database']):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, small sessions")
    args = parser.parse_args(argv)
    rounds, sessions, big_events = (3, 3, 12) if args.quick else (200, 50, 200)
    with tempfile.TemporaryDirectory() as directory:
        samples, pages = asyncio.run(run(rounds, sessions, big_events, Path(directory)))
    print(table(samples, pages, rounds, sessions, big_events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
