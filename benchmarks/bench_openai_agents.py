"""EventStoreSession against the SDK's SQLiteSession on a file: the calls an agent's turn makes.

Run: python -m benchmarks.bench_openai_agents [--quick] [--dir DIR]

Both stores durable (each commit on disk when the call returns: LMDB's default and SQLite's, WAL with
synchronous=FULL). 20 sessions of 200 items each (a user message, a tool call, its output and an answer per turn),
then, in one run taking turns so a shared machine's noise falls on all alike, medians and p99 of:
  * ``get_items()`` of a 200-item session, and ``get_items(limit=20)`` (``SessionSettings(limit=...)``);
  * ``add_items`` of a turn (4 items), and ``pop_item`` (a retry);
  * listing the sessions (ours ``list_sessions``; SQLite, the session table read as an application would);
  * the floor of a durable write: the bare I/O of the pages our ``add_items`` commit writes (counted first, by
    database) with LMDB's two ordered flushes, against SQLite's WAL protocol (one page, one ``fdatasync``), no
    database on either: what a write's time cannot go below on this disk.
Ours runs on the ``AsyncSessionStore`` and on the ``SessionStore``, whose writes go to a worker thread. Two more
peers, at the lower durability each offers: ours on a ``SessionStore`` at ``Durability.NORMAL`` (one flush a commit,
its data pages: a power loss may roll back the latest commit) and ``SQLiteSession`` with ``synchronous=NORMAL`` (WAL:
no flush at commit, the WAL is flushed when it is checkpointed: a power loss may roll back the commits since); their
floor rows are the pages and one ``fdatasync`` for ours, none for SQLite, which flushes nothing at a commit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import SQLiteSession, TResponseInputItem

from eventstore import AsyncSessionStore, Durability, SessionStore
from eventstore.integrations.openai_agents import EventStoreSession

from .commit_pages import describe, pages_of
from .flush_floor import FlushProbe, commit_floor_probe, fsync_probe

SESSIONS = 20
TURNS = 50  # of 4 items: 200 items a session


def turn(number: int) -> list[TResponseInputItem]:
    """One turn's items, as a run with a tool call stores them."""
    call_id = f"call_{number}"
    return [
        {"role": "user", "content": f"Question {number}: what is the weather in city {number}, and why?"},
        {"type": "function_call", "id": f"fc_{number}", "call_id": call_id, "name": "get_weather",
         "arguments": f'{{"city": "city {number}", "days": 3}}', "status": "completed"},
        {"type": "function_call_output", "call_id": call_id, "output": '{"forecast": "sunny", "high": 21.5}'},
        {"id": f"msg_{number}", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                      "text": f"In city {number} it will be sunny, up to 21.5 °C: a high-pressure ridge. " * 3}]},
    ]


class Peer:
    """One store under test: its sessions by id, how it lists them, and the bare I/O floor of its commits."""

    def __init__(self, name: str, sessions: dict[str, Any], list_sessions: Callable[[], Awaitable[object]],
                 close: Callable[[], Awaitable[None]]) -> None:
        self.name, self.sessions, self.list_sessions, self.close = name, sessions, list_sessions, close
        #: The bare I/O of one commit; ``None`` for a peer whose commit flushes nothing.
        self.floor: FlushProbe | None = None

    async def flush_floor(self) -> None:
        if self.floor is not None:
            self.floor(0)


async def open_ours(path: Path, kind: str, durable: Durability = Durability.FULL) -> Peer:
    with SessionStore(path, durable=False) as builder:  # built fast, then opened durable below
        for n in range(SESSIONS):
            await EventStoreSession(f"s{n}", builder).add_items([i for t in range(TURNS) for i in turn(t)])
    store: SessionStore | AsyncSessionStore = AsyncSessionStore(path, durable=durable) if kind == "async" else \
        SessionStore(path, durable=durable)
    sessions = {f"s{n}": EventStoreSession(f"s{n}", store) for n in range(SESSIONS)}
    sessions["writer"] = EventStoreSession("writer", store)
    sessions["meter"] = EventStoreSession("meter", store)  # where the pages of a commit are counted

    async def list_sessions() -> object:
        return await store.list_sessions() if isinstance(store, AsyncSessionStore) else store.list_sessions()

    async def close() -> None:
        if isinstance(store, AsyncSessionStore):
            await store.close()
        else:
            store.close()
    level = "" if durable is Durability.FULL else f", {durable.name}"
    return Peer(f"ours ({kind} store{level})", sessions, list_sessions, close)


class NormalSQLiteSession(SQLiteSession):
    """``SQLiteSession`` whose connections run with ``synchronous=NORMAL``: in WAL mode, no flush at a commit."""

    @staticmethod
    def _configure_connection(conn: sqlite3.Connection) -> None:
        SQLiteSession._configure_connection(conn)
        conn.execute("PRAGMA synchronous=NORMAL")


async def open_sqlite(path: Path, session_class: type[SQLiteSession] = SQLiteSession) -> Peer:
    sessions = {f"s{n}": session_class(f"s{n}", path) for n in range(SESSIONS)}
    for session in sessions.values():
        await session.add_items([i for t in range(TURNS) for i in turn(t)])
    sessions["writer"] = session_class("writer", path)
    reader = sqlite3.connect(path, check_same_thread=False)

    async def list_sessions() -> object:  # the SDK has no listing: an application reads the table in a thread
        return await asyncio.to_thread(
            lambda: reader.execute("SELECT session_id FROM agent_sessions ORDER BY session_id").fetchall())

    async def close() -> None:
        reader.close()
        for session in sessions.values():
            session.close()
    level = ", NORMAL" if session_class is NormalSQLiteSession else ""
    return Peer(f"SQLiteSession (file{level})", sessions, list_sessions, close)


async def timed(call: Awaitable[object]) -> float:
    start = time.perf_counter()
    await call
    return time.perf_counter() - start


def calls(peer: Peer, rng: random.Random, number: int) -> dict[str, Callable[[], Awaitable[object]]]:
    """The calls of one round, by name, on one peer (each bound to its session now)."""
    read = peer.sessions[f"s{rng.randrange(SESSIONS)}"]
    writer = peer.sessions["writer"]
    return {
        "get_items() of 200 items": read.get_items,
        "get_items(limit=20)": lambda: read.get_items(limit=20),
        "add_items of a turn (4 items)": lambda: writer.add_items(turn(number)),
        "pop_item": writer.pop_item,
        f"list the {SESSIONS + 1} sessions": peer.list_sessions,
        "floor: bare I/O of a durable commit (no database)": peer.flush_floor,
    }


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


async def run(directory: str, rounds: int) -> None:
    peers = [await open_ours(Path(directory) / "async", "async"), await open_ours(Path(directory) / "sync", "sync"),
             await open_sqlite(Path(directory) / "sqlite.db"),
             await open_ours(Path(directory) / "normal", "sync", Durability.NORMAL),
             await open_sqlite(Path(directory) / "sqlite-normal.db", NormalSQLiteSession)]
    times: dict[tuple[str, str], list[float]] = {}
    pages = await pages_of(Path(directory) / "sync" / "data.mdb",
                           lambda n: peers[1].sessions["meter"].add_items(turn(n)), 15)
    # The probe writes the meta page itself, after the others' flush, as LMDB does.
    lmdb_floor = commit_floor_probe(Path(directory) / "floor-lmdb", max(1, round(pages["total"]) - 1))
    sqlite_floor = fsync_probe(Path(directory) / "floor-sqlite")
    # At NORMAL, LMDB flushes its data pages once and writes the meta page without a flush of its own.
    lmdb_normal_floor = FlushProbe(Path(directory) / "floor-lmdb-normal", pages=max(1, round(pages["total"])),
                                   synchronous_page=False)
    peers[0].floor = peers[1].floor = lmdb_floor
    peers[2].floor, peers[3].floor = sqlite_floor, lmdb_normal_floor
    try:
        for number in range(rounds):
            for peer in peers if number % 2 else reversed(peers):  # who goes first alternates
                for call_name, call in calls(peer, random.Random(number), TURNS + number).items():
                    times.setdefault((call_name, peer.name), []).append(await timed(call()))
    finally:
        for peer in peers:
            await peer.close()
        lmdb_floor.close()
        sqlite_floor.close()
        lmdb_normal_floor.close()
    names = [peer.name for peer in peers]
    print(f"{rounds} rounds; median ms (p99 ms); ratios: SQLiteSession / ours on the async store, both at FULL, and "
          "SQLiteSession / ours, both at NORMAL (above 1: ours is faster)")
    print(f"Our add_items of a turn writes {describe(pages)} (medians of 15 commits); the floor row writes as "
          "many with LMDB's protocol for ours (at NORMAL: one fdatasync, no synchronous meta page), one page and "
          "one fdatasync for SQLite at FULL, nothing for SQLite at NORMAL (it flushes nothing at a commit)\n")
    print("| call | " + " | ".join(names) + " | SQLite / ours (FULL) | SQLite / ours (NORMAL) |")
    print("|---|" + "---|" * (len(names) + 2))
    for call_name in dict.fromkeys(call for call, _peer in times):
        cells = [times[(call_name, name)] for name in names]
        medians = [statistics.median(cell) * 1000 for cell in cells]
        shown = [f"{median:.3f} ({p99(cell) * 1000:.2f})" if peer.floor is not None or "floor" not in call_name
                 else "no flush" for peer, median, cell in zip(peers, medians, cells)]
        normal = f"{medians[4] / medians[3]:.1f}x" if "floor" not in call_name else ""
        print(f"| {call_name} | " + " | ".join(shown) + f" | {medians[2] / medians[0]:.1f}x | {normal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: too few rounds to judge")
    parser.add_argument("--dir", help="where the temporary stores go (default: the system's temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        asyncio.run(run(directory, 10 if args.quick else 300))


if __name__ == "__main__":
    main()
