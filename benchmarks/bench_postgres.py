"""The log on PostgreSQL, each host reading from its LMDB replica, side by side with the LMDB store.

Run: python -m benchmarks.bench_postgres --url postgresql://... [--quick] [--dir DIR]

The URL names a PostgreSQL server (15 or later) with ``fsync`` on for the durable figures; each run works in
a fresh schema of it, dropped afterwards. Measured, as the median of many calls:

* a durable single append: the PostgreSQL store, the LMDB store (``durable=True``), a bare PostgreSQL
  insert-plus-upsert transaction (one statement, one round trip: the floor of any log on the server), and
  the ``eventsourcing`` library's PostgreSQL recorder (``insert_events``) when it is installed; then the
  PostgreSQL store and the bare transaction again with ``synchronous_commit`` off, so that the flush's share
  of each shows;
* 100 appends in one command; a load of a 1,000-message session (from the replica, which skips the server
  while its listener heard of no commit it lacks); the listing of 1,000 sessions; a search;
* durable appends per second with 1, 4 and 8 writer processes spread over 2 hosts (replica directories),
  each process appending to its own session: every commit passes the one head row, so this is its ceiling.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg

from eventstore import ChatMessage, SessionQuery, SessionStore

MESSAGE = ChatMessage("user", "a message of ordinary length, about as long as a short chat turn " * 3)
WRITERS = (1, 4, 8)
HOSTS = 2


def median_ms(call: Callable[[int], object], count: int) -> float:
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        call(index)
        latencies.append(time.perf_counter() - started)
    return round(statistics.median(latencies) * 1000, 3)


def in_schema(url: str, schema: str, *settings: str) -> str:
    options = " ".join(f"-c{setting}" for setting in (f"search_path={schema}", *settings))
    return f"{url}{'&' if '?' in url else '?'}options={quote(options)}"


def bare_transaction(url: str, table: str = "bare") -> Callable[[int], object]:
    """An event insert and a session upsert in one statement: one round trip, one commit."""
    connection = psycopg.connect(url, autocommit=True)
    connection.execute(f"CREATE TABLE {table}_events (position bigserial PRIMARY KEY, key text, version int8, "
                       "payload bytea)")
    connection.execute(f"CREATE TABLE {table}_sessions (key text PRIMARY KEY, version int8)")
    payload = json.dumps({"role": MESSAGE.role, "content": MESSAGE.content}).encode()
    statement = (f"WITH e AS (INSERT INTO {table}_events (key, version, payload) VALUES (%s, %s, %s)) "
                 f"INSERT INTO {table}_sessions VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET version = "
                 "excluded.version")
    return lambda n: connection.execute(statement, ("k", n + 1, payload, "k", n + 1), prepare=True)


def eventsourcing_recorder(url: str, schema: str) -> Callable[[int], object] | None:
    """The ``eventsourcing`` library's PostgreSQL recorder inserting one event per call (None: not installed)."""
    try:
        postgres = importlib.import_module("eventsourcing.postgres")
        persistence = importlib.import_module("eventsourcing.persistence")
    except ImportError:
        return None
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    datastore = postgres.PostgresDatastore(parts.path.lstrip("/") or "postgres", host, parts.port or 5432,
                                           parts.username or "postgres", parts.password or "", schema=schema)
    recorder = postgres.PostgresApplicationRecorder(datastore)
    recorder.create_table()
    originator = uuid.uuid4()
    payload = json.dumps({"role": MESSAGE.role, "content": MESSAGE.content}).encode()
    return lambda n: recorder.insert_events([persistence.StoredEvent(originator, n + 1, "MessageAppended", payload)])


def durable_appends(peers: dict[str, Callable[[int], object]], count: int) -> dict[str, float]:
    """The median latency of each peer's durable append, in ms, measured in interleaved blocks of 10 calls so
    that the disk's noise falls on all alike."""
    latencies: dict[str, list[float]] = {name: [] for name in peers}
    for block in range(0, count, 10):
        for name, call in peers.items():
            for index in range(block, block + 10):
                started = time.perf_counter()
                call(index)
                latencies[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(found) * 1000, 3) for name, found in latencies.items()}


def single_store_figures(open_store: Callable[[], SessionStore], count: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with open_store() as store:
        store.append("warm-up", MESSAGE)
        batch = [MESSAGE] * 100
        figures["100 appends in one command, ms"] = median_ms(lambda _: store.append_many("batch", batch),
                                                             max(5, count // 20))
        for start in range(0, 1000, 100):
            store.append_many("long", [ChatMessage("user", f"message {start + n} about lisbon") for n in range(100)])
        for number in range(1000):
            if number % 100 == 0:
                store.append_many(f"listed-{number}", [MESSAGE])
        for number in range(1000):
            if number % 100:
                store.append(f"listed-{number}", MESSAGE)
        figures["load 1,000 messages, ms"] = median_ms(lambda _: store.load("long"), count)
        figures["list 1,000 sessions, ms"] = median_ms(lambda _: store.list_sessions_with_metadata(),
                                                      max(5, count // 10))
        store.search(SessionQuery(keyword="lisbon"))  # the index catches up once
        figures["search, ms"] = median_ms(lambda _: store.search(SessionQuery(keyword="lisbon", limit=10)), count)
    return figures


def writer_process(url: str, cache: str, key: str, seconds: float, start_at: float,
                   done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with SessionStore(url, cache=cache) as store:
        store.append(key, MESSAGE)
        time.sleep(max(0.0, start_at - time.time()))
        count, began, cpu = 0, time.time(), time.process_time()
        while time.time() - began < seconds:
            store.append(key, MESSAGE)
            count += 1
        done.put((count / (time.time() - began), (time.process_time() - cpu) / max(count, 1)))


def throughput(url: str, directory: Path, writers: int, seconds: float) -> tuple[float, float]:
    """Appends per second of all the writers together, and the writer processes' mean CPU time per append (ms):
    on a machine short of cores, the second says whether the first is bounded by the clients' CPU."""
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    start_at = time.time() + 3 + writers * 0.3  # every process opened before the clock starts
    processes = [context.Process(target=writer_process, args=(
        url, str(directory / f"host-{n % HOSTS}"), f"writer-{writers}-{n}", seconds, start_at, done))
        for n in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    rates, cpu = zip(*(done.get(timeout=5) for _ in processes), strict=True)
    return float(sum(rates)), statistics.mean(cpu) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_postgres",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="a PostgreSQL server (fsync on for the durable figures)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small counts")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the stores and replicas")
    arguments = parser.parse_args(argv)
    count, seconds = (30, 1.0) if arguments.quick else (300, 5.0)
    schema = f"bench_{os.getpid()}"
    with psycopg.connect(arguments.url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = in_schema(arguments.url, schema)
    try:
        with tempfile.TemporaryDirectory(dir=arguments.dir) as scratch:
            directory = Path(scratch)
            unflushed = in_schema(arguments.url, schema, "synchronous_commit=off")
            with SessionStore(url, cache=directory / "appends") as shared, \
                    SessionStore(directory / "lmdb-appends") as local, \
                    SessionStore(unflushed, cache=directory / "unflushed") as shared_unflushed:
                peers = {"PostgreSQL store": lambda _: shared.append("single", MESSAGE),
                         "LMDB store": lambda _: local.append("single", MESSAGE),
                         "bare PostgreSQL transaction": bare_transaction(url)}
                recorder = eventsourcing_recorder(arguments.url, schema)
                if recorder is not None:
                    peers["eventsourcing recorder"] = recorder
                peers["PostgreSQL store, no flush"] = lambda _: shared_unflushed.append("unflushed", MESSAGE)
                peers["bare PostgreSQL transaction, no flush"] = bare_transaction(unflushed, "unflushed")
                appends = durable_appends(peers, count)
            results: dict[str, Any] = {
                "durable append, ms": appends,
                "PostgreSQL store": single_store_figures(lambda: SessionStore(url, cache=directory / "replica"),
                                                         count),
                "LMDB store": single_store_figures(lambda: SessionStore(directory / "lmdb"), count),
            }
            measured = {n: throughput(url, directory / f"hosts-{n}", n, seconds) for n in WRITERS}
            results["appends per second (processes over 2 hosts)"] = {n: round(r) for n, (r, _) in measured.items()}
            results["writer CPU per append, ms"] = {n: round(cpu, 3) for n, (_, cpu) in measured.items()}
    finally:
        with psycopg.connect(arguments.url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    print(json.dumps(results, indent=2, default=lambda value: round(value, 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
