"""The log on PostgreSQL, each host reading from its LMDB replica, side by side with the LMDB store.

Run: python -m benchmarks.bench_postgres --url postgresql://... [--quick] [--rounds N] [--parts P ...] [--markdown]
[--dir DIR]

The URL names a PostgreSQL server (15 or later) with ``fsync`` on for the durable figures; each run works in
fresh schemas of it (one for the calls, the procedures and the throughput rows, one for each store of the single
appends), dropped afterwards. Measured, as the median of many calls:

* a durable single append: the PostgreSQL store, the LMDB store (``durable=True``), the store's call to the
  server alone (``PostgresLog.commit`` of one event: the procedure without the client's deciding), a bare
  PostgreSQL insert-plus-upsert transaction (one statement, one round trip: the floor of any log on the
  server), the procedure alone (``CALL es_append_alone`` from a bare connection with every call's parameters
  built beforehand: the server's own cost of a command), two floors of the log's design with no code of ours
  around them (``design_statement``: the work the design requires of one append, as one plain SQL statement
  from a bare connection; and the bare transaction followed by an LMDB store's append of the same message with
  ``durable=False``, the work a host does for the event on its replica), the bare transaction sent as the
  design's statement is (libpq alone, binary parameters built beforehand: the design's statement over it is the
  server's share of the design), and the ``eventsourcing`` library's PostgreSQL recorder (``insert_events``, the
  ``postgres-bench`` extra); then every peer but the LMDB store and the recorder again with
  ``synchronous_commit`` off, so that the flush's share of each shows. Each peer's median latency (of all its
  calls and of each round's, in ``--rounds`` rounds) and its client CPU time per append, and each round's median
  of the store, its call, the procedure, the two floors and the bare transaction through libpq as a multiple of
  the bare transaction's at the same durability (the target: the durable store within 1.2x). The procedure's row splits
  the store's gap to the floor into the server's part and the client's; the floors say how much of that gap the
  design itself requires;
* 100 appends in one command; a load of a 1,000-message session (from the replica, which skips the server
  while its listener heard of no commit it lacks); the listing of 1,000 sessions; a search;
* durable appends per second with 1, 4 and 8 writers spread over 2 hosts (replica directories), each
  appending to its own session: as processes (a host's processes share its replica, each its own connection)
  and as threads of one process per host (whose concurrent commands the host commits in one call). Every
  commit passes the one head row, so this is its ceiling. The writer counts take turns within a round, and
  the rounds (``--rounds``) show the spread: the median rate, and each round's 8 : 1 ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import multiprocessing
import os
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
from psycopg import pq

from eventstore import ChatMessage, SessionQuery, SessionStore
from eventstore._codec import encode_event
from eventstore._log import GENESIS_HASH
from eventstore.events import MessageAppended
from eventstore.sharedlog import Commit, NewEvent, SessionAppend
from eventstore.sharedlog.postgres import PostgresLog, _call_alone, _columns, _connect, _Flush, _texts

MESSAGE = ChatMessage("user", "a message of ordinary length, about as long as a short chat turn " * 3)
WRITERS = (1, 4, 8)
HOSTS = 2
#: How a throughput row runs its writers: one process each, or threads of one process per host.
LAYOUTS = ("processes", "threads")
#: The benchmark's parts (``--parts``).
PARTS = ("appends", "figures", "throughput")
#: The peers compared with the bare transaction: the store, its call (the client's path to the server without
#: deciding), the procedure alone (the server's part), the design's two floors (``design_statement``, and the bare
#: transaction with the replica's append), and the bare transaction through libpq (the design's statement's client
#: path).
FLOOR_PEERS = ("PostgreSQL store", "the store's call alone", "the procedure alone", "the design's statement",
               "bare transaction + the replica's append", "bare transaction through libpq")


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


_TEXT, _INT8, _BYTEA, _INT4 = 25, 20, 17, 23  # the parameters' type oids
#: The bare transaction: an event insert and a session upsert in one statement (placeholders: the key, the version,
#: the payload, then the key and the version again).
_BARE = ("WITH e AS (INSERT INTO {table}_events (key, version, payload) VALUES ({}, {}, {})) "
         "INSERT INTO {table}_sessions VALUES ({}, {}) ON CONFLICT (key) DO UPDATE SET version = excluded.version")


def bare_tables(url: str, table: str) -> psycopg.Connection[Any]:
    """A connection to ``url`` (autocommit) and the bare transaction's two tables, created there."""
    connection = psycopg.connect(url, autocommit=True)
    connection.execute(f"CREATE TABLE {table}_events (position bigserial PRIMARY KEY, key text, version int8, "
                       "payload bytea)")
    connection.execute(f"CREATE TABLE {table}_sessions (key text PRIMARY KEY, version int8)")
    return connection


def bare_transaction(url: str, table: str = "bare") -> Callable[[int], object]:
    """An event insert and a session upsert in one statement: one round trip, one commit."""
    connection = bare_tables(url, table)
    payload = json.dumps({"role": MESSAGE.role, "content": MESSAGE.content}).encode()
    statement = _BARE.format(*["%s"] * 5, table=table)
    return lambda n: connection.execute(statement, ("k", n + 1, payload, "k", n + 1), prepare=True)


def prepared(connection: psycopg.Connection[Any], name: str, statement: str, types: Sequence[int],
             arguments: Sequence[Sequence[bytes]]) -> Callable[[int], pq.abc.PGresult]:
    """``statement`` prepared as ``name`` on ``connection``: call ``n`` runs it through libpq alone, with
    ``arguments[n]`` (built beforehand in the binary form of ``types``, their oids), and returns its result."""
    pgconn = connection.pgconn
    made = pgconn.prepare(name.encode(), statement.encode(), types)
    if made.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.ProgrammingError(made.error_message.decode())
    formats = [1] * len(types)

    def run(n: int) -> pq.abc.PGresult:
        result = pgconn.exec_prepared(name.encode(), arguments[n], formats, 1)
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise psycopg.DatabaseError(result.error_message.decode())
        return result

    return run


def bare_through_libpq(url: str, calls: int, table: str = "bare_libpq") -> Callable[[int], object]:
    """The bare transaction sent as the design's statement is (``design_statement``): through libpq alone, its
    parameters built beforehand in binary form; the same server work as ``bare_transaction``, less client work."""
    payload = json.dumps({"role": MESSAGE.role, "content": MESSAGE.content}).encode()
    arguments = [(b"k", struct.pack(">q", n + 1), payload) for n in range(calls)]
    return prepared(bare_tables(url, table), table, _BARE.format("$1", "$2", "$3", "$1", "$2", table=table),
                    (_TEXT, _INT8, _BYTEA), arguments)


#: The log's design for one append (issue 17), in one plain SQL statement: the session row's version checked and
#: advanced (an upsert that takes the row's lock; a new session only at expected version 0), then the one-row head
#: read and advanced with the chain link, its SHA-256 computed by the server over the same canonical bytes as
#: ``eventstore._log.chain_hash``, then the event row with every column of ``es_events``. A stale version matches no
#: session row, so neither the head nor the log moves: no hole. It leaves out what the design adds after the commit
#: (the ``NOTIFY``) and what the store checks beyond it (the payload's digest, the sessions' turns, idempotency).
#: Parameters: the key, the expected version, the recorded time, the event's id, type, schema version, payload and
#: payload digest.
_DESIGN = """
WITH s AS (
    INSERT INTO {table}_sessions AS s (key, version, recorded_at)
    SELECT $1, $2 + 1, $3 WHERE $2 = 0 OR EXISTS (SELECT FROM {table}_sessions WHERE key = $1)
    ON CONFLICT (key) DO UPDATE SET version = excluded.version,
        recorded_at = greatest(s.recorded_at, excluded.recorded_at)
    WHERE s.version = $2
    RETURNING version, recorded_at),
h AS (
    UPDATE {table}_head SET position = position + 1, hash = sha256(hash || int8send(position + 1)
        || int8send(s.version) || int8send(s.recorded_at) || $4 || substr(int4send($6), 3)
        || substr(int4send(octet_length(convert_to($5, 'UTF8'))), 3)
        || substr(int4send(octet_length(convert_to($1, 'UTF8'))), 3) || convert_to($5, 'UTF8')
        || convert_to($1, 'UTF8') || $8)
    FROM s RETURNING position, hash, s.version, s.recorded_at)
INSERT INTO {table}_events SELECT h.position, $1, h.version, h.recorded_at, $4, $5, $6, $7, $8, h.hash, false FROM h
RETURNING position
"""
_DESIGN_TYPES = (_TEXT, _INT8, _INT8, _BYTEA, _TEXT, _INT4, _BYTEA, _BYTEA)


class Refused(Exception):
    """The design's statement appended nothing: the session was not at the expected version."""


def design_statement(url: str, key: str, calls: int, table: str = "design") -> tuple[
        Callable[[int], object], Callable[[], None]]:
    """The floor of the log's design for one append: ``_DESIGN``, one plain SQL statement in a transaction of its
    own (one round trip, one commit) sent by libpq from a bare connection, in tables of its own shaped like the
    log's (created unless there), every call's parameters built beforehand in their binary form; call ``n``
    appends version ``n + 1`` of session ``key`` and raises ``Refused`` if the session is elsewhere (and its
    close)."""
    connection = psycopg.connect(url, autocommit=True)
    connection.execute(f"CREATE TABLE IF NOT EXISTS {table}_head (one bool PRIMARY KEY DEFAULT true CHECK (one), "
                       "position int8 NOT NULL, hash bytea NOT NULL)")
    connection.execute(f"INSERT INTO {table}_head VALUES (true, 0, %s) ON CONFLICT DO NOTHING", (GENESIS_HASH,))
    connection.execute(f"CREATE TABLE IF NOT EXISTS {table}_sessions (key text PRIMARY KEY, version int8 NOT NULL, "
                       "recorded_at int8 NOT NULL)")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {table}_events (position int8 PRIMARY KEY, key text NOT NULL, "
                       "version int8 NOT NULL, recorded_at int8 NOT NULL, event_id bytea NOT NULL, type text NOT NULL, "
                       "schema_version int4 NOT NULL, payload bytea NOT NULL, digest bytea NOT NULL, "
                       "hash bytea NOT NULL, redacted bool NOT NULL)")
    encoded = encode_event(MessageAppended(MESSAGE))
    fixed = (encoded.type_name.encode(), struct.pack(">i", encoded.schema_version), encoded.payload,
             hashlib.sha256(encoded.payload).digest())
    arguments = [(key.encode(), struct.pack(">q", n), struct.pack(">q", time.time_ns() // 1000), os.urandom(16),
                  *fixed) for n in range(calls)]
    run = prepared(connection, f"{table}_append", _DESIGN.format(table=table), _DESIGN_TYPES, arguments)

    def append(n: int) -> object:
        result = run(n)
        if result.ntuples != 1:
            raise Refused(f"session {key!r} is not at version {n}")
        return result

    return append, connection.close


def log_call(url: str, key: str) -> tuple[Callable[[int], object], Callable[[], None]]:
    """The store's call to the server alone: ``PostgresLog.commit`` of one event to session ``key`` (and its
    close)."""
    log = PostgresLog(url)
    encoded = encode_event(MessageAppended(MESSAGE))
    digest = hashlib.sha256(encoded.payload).digest()

    def commit(n: int) -> object:
        event = NewEvent(os.urandom(16), encoded.type_name, encoded.schema_version, encoded.payload, digest)
        return log.commit(Commit((SessionAppend(key, n, time.time_ns() // 1000, (event,)),)))

    return commit, log.close


def procedure_call(url: str, key: str, calls: int) -> tuple[Callable[[int], object], Callable[[], None]]:
    """The server's own cost of a command: ``es_append_alone`` of one event to session ``key`` and its flush, sent
    as the store sends them from a bare connection, every call's parameters built beforehand (and its close)."""
    PostgresLog(url).close()  # the schema
    encoded = encode_event(MessageAppended(MESSAGE))
    digest = hashlib.sha256(encoded.payload).digest()
    arguments = [[*_columns((Commit((SessionAppend(key, n, time.time_ns() // 1000, (NewEvent(
        os.urandom(16), encoded.type_name, encoded.schema_version, encoded.payload, digest),)),)),)), None,
        _texts([])] for n in range(calls)]
    connection = _connect(url)

    def call(n: int) -> object:
        result = _call_alone(connection, arguments[n])
        _Flush(connection, None).wait()
        return result

    return call, connection.close


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


def durable_appends(peers: dict[str, Callable[[int], object]], count: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Each peer's median latency (of all its calls, and of each round's), and its mean client CPU time (this
    process's) per append, in ms. Each round runs ``count`` calls of every peer in interleaved blocks of 10, so
    that the disk's noise falls on all alike, and the rounds show the spread."""
    latencies: dict[str, list[list[float]]] = {name: [] for name in peers}
    cpu = dict.fromkeys(peers, 0.0)
    for round_number in range(rounds):
        for found in latencies.values():
            found.append([])
        for block in range(0, count, 10):
            for name, call in peers.items():
                started_cpu = time.process_time()
                for index in range(round_number * count + block, round_number * count + block + 10):
                    started = time.perf_counter()
                    call(index)
                    latencies[name][-1].append(time.perf_counter() - started)
                cpu[name] += time.process_time() - started_cpu
    return {name: {"median, ms": round(statistics.median([one for each in found for one in each]) * 1000, 3),
                   "each round, ms": [round(statistics.median(each) * 1000, 3) for each in found],
                   "client CPU, ms": round(cpu[name] / (rounds * count) * 1000, 3)}
            for name, found in latencies.items()}


def with_replica(bare: Callable[[int], object], replica: SessionStore, key: str) -> Callable[[int], object]:
    """The bare transaction and then the LMDB work a host does for the event on its replica: ``replica``'s append of
    the same message to session ``key`` (an LMDB store opened with ``durable=False``: the server holds the durable
    copy)."""

    def append(n: int) -> object:
        bare(n)
        return replica.append(key, MESSAGE)

    return append


@contextlib.contextmanager
def own_schema(server: str, schema: str) -> Iterator[str]:
    """A schema of its own on ``server`` while it lasts (dropped after), created empty."""
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def single_appends(server: str, schema: str, directory: Path, count: int, rounds: int
                   ) -> dict[str, dict[str, Any]]:
    """Every peer's single appends, durable and without a flush, side by side (``durable_appends``), in ``schema``
    of the ``server``. Each store has a schema of its own: in the log of the calls and procedures it would catch up
    with their events before each of its appends, which is not the cost of an append alone."""
    url, unflushed = in_schema(server, schema), in_schema(server, schema, "synchronous_commit=off")
    with own_schema(server, f"{schema}_store") as store_schema, \
            own_schema(server, f"{schema}_store_unflushed") as unflushed_schema, \
            SessionStore(in_schema(server, store_schema), cache=directory / "appends") as shared, \
            SessionStore(directory / "lmdb-appends") as local, \
            SessionStore(in_schema(server, unflushed_schema, "synchronous_commit=off"),
                         cache=directory / "unflushed") as shared_unflushed, \
            SessionStore(directory / "replica-share", durable=False) as replica, \
            contextlib.ExitStack() as closing:
        call, close = log_call(url, "call")
        closing.callback(close)
        call_unflushed, close = log_call(unflushed, "call unflushed")
        closing.callback(close)
        procedure, close = procedure_call(url, "procedure", count * rounds)
        closing.callback(close)
        procedure_unflushed, close = procedure_call(unflushed, "procedure unflushed", count * rounds)
        closing.callback(close)
        design, close = design_statement(url, "design", count * rounds)
        closing.callback(close)
        design_unflushed, close = design_statement(unflushed, "design unflushed", count * rounds, "unflushed_design")
        closing.callback(close)
        peers = {"PostgreSQL store": lambda _: shared.append("single", MESSAGE),
                 "LMDB store": lambda _: local.append("single", MESSAGE),
                 "the store's call alone": call,
                 "the procedure alone": procedure,
                 "the design's statement": design,
                 "bare transaction + the replica's append": with_replica(bare_transaction(url, "replicated"),
                                                                         replica, "replicated"),
                 "bare PostgreSQL transaction": bare_transaction(url),
                 "bare transaction through libpq": bare_through_libpq(url, count * rounds)}
        recorder = eventsourcing_recorder(server, schema)
        if recorder is not None:
            peers["eventsourcing recorder"] = recorder
        peers["PostgreSQL store, no flush"] = lambda _: shared_unflushed.append("unflushed", MESSAGE)
        peers["the store's call alone, no flush"] = call_unflushed
        peers["the procedure alone, no flush"] = procedure_unflushed
        peers["the design's statement, no flush"] = design_unflushed
        peers["bare transaction + the replica's append, no flush"] = with_replica(
            bare_transaction(unflushed, "unflushed_replicated"), replica, "unflushed replicated")
        peers["bare PostgreSQL transaction, no flush"] = bare_transaction(unflushed, "unflushed")
        peers["bare transaction through libpq, no flush"] = bare_through_libpq(unflushed, count * rounds,
                                                                               "unflushed_libpq")
        return durable_appends(peers, count, rounds)


def against_the_floor(appends: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Each round's median latency of the store and of its call alone, as a multiple of the bare transaction's at
    the same durability (the target: at most 1.2 for the durable store)."""
    ratios: dict[str, dict[str, list[float]]] = {}
    for flush in ("", ", no flush"):
        floor = appends[f"bare PostgreSQL transaction{flush}"]["each round, ms"]
        ratios[f"durable{flush}" if not flush else "no flush"] = {
            peer: [round(mine / bare, 2) for mine, bare in zip(appends[peer + flush]["each round, ms"], floor,
                                                               strict=True)]
            for peer in FLOOR_PEERS}
    return ratios


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


def writer_process(url: str, cache: str, keys: list[str], seconds: float, start_at: float,
                   done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One host process: a thread per key, each appending to its key until ``seconds`` have passed; puts its
    appends per second and its CPU time per append."""
    with SessionStore(url, cache=cache) as store:
        for key in keys:
            store.append(key, MESSAGE)
        counts = [0] * len(keys)

        def write(index: int) -> None:
            while time.time() - began < seconds:
                store.append(keys[index], MESSAGE)
                counts[index] += 1

        time.sleep(max(0.0, start_at - time.time()))
        began, cpu = time.time(), time.process_time()
        threads = [Thread(target=write, args=(index,)) for index in range(len(keys))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.put((sum(counts) / (time.time() - began), (time.process_time() - cpu) / max(sum(counts), 1)))


def throughput(url: str, directory: Path, writers: int, layout: str, seconds: float) -> tuple[float, float]:
    """Appends per second of all the writers together, and the writer processes' mean CPU time per append (ms):
    on a machine short of cores, the second says whether the first is bounded by the clients' CPU."""
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    keys = [f"writer-{layout}-{writers}-{n}" for n in range(writers)]
    per_host = [keys[host::HOSTS] for host in range(HOSTS)]
    groups = [[key] for key in keys] if layout == "processes" else [group for group in per_host if group]
    start_at = time.time() + 3 + len(groups) * 0.3  # every process opened before the clock starts
    processes = [context.Process(target=writer_process, args=(
        url, str(directory / f"host-{next(n for n, host in enumerate(per_host) if group[0] in host)}"), group,
        seconds, start_at, done)) for group in groups]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    rates, cpu = zip(*(done.get(timeout=5) for _ in processes), strict=True)
    return float(sum(rates)), statistics.mean(cpu) * 1000


def throughput_rounds(url: str, directory: Path, rounds: int, seconds: float) -> dict[str, Any]:
    """Every layout and writer count once per round, in turn (one writer is the same in both layouts): the median
    rate and CPU per append of each, and each round's ratio of 8 writers to 1."""
    measured: dict[str, list[tuple[float, float]]] = {}
    for round_number in range(rounds):
        for layout in LAYOUTS:
            for writers in WRITERS:
                name = "1" if writers == 1 else f"{writers} {layout}"
                if writers == 1 and layout != LAYOUTS[0]:
                    continue
                place = directory / f"round-{round_number}-{layout}-{writers}"
                measured.setdefault(name, []).append(throughput(url, place, writers, layout, seconds))
    return {
        "appends per second (median of the rounds)": {
            name: round(statistics.median(rate for rate, _ in found)) for name, found in measured.items()},
        "writer CPU per append, ms (median)": {
            name: round(statistics.median(cpu for _, cpu in found), 3) for name, found in measured.items()},
        "8 : 1, each round": {
            layout: [round(eight[0] / one[0], 2) for eight, one in zip(measured[f"8 {layout}"], measured["1"],
                                                                       strict=True)]
            for layout in LAYOUTS},
    }


def markdown(results: dict[str, Any]) -> str:
    """The figures measured (``--parts``) as the tables of docs/benchmarks.md."""
    lines: list[str] = []
    if "durable append, ms" in results:
        lines += ["| single append (median; each round's; client CPU) | durable | no flush |", "|---|---|---|"]
        appends = results["durable append, ms"]
        for peer in [name for name in appends if not name.endswith(", no flush")]:
            cells = [appends.get(name) for name in (peer, f"{peer}, no flush")]
            lines.append(f"| {peer} | " + " | ".join(
                f"{cell['median, ms']} ms ({', '.join(map(str, cell['each round, ms']))}); "
                f"{cell['client CPU, ms']} ms" if cell else "" for cell in cells) + " |")
        ratios = results["single append : bare transaction, each round"]
        lines += ["", "| each round's median : the bare transaction's | " + " | ".join(ratios) + " |", "|---|---|---|"]
        lines += [f"| {peer} | " + " | ".join(", ".join(map(str, each[peer])) for each in ratios.values()) + " |"
                  for peer in FLOOR_PEERS]
        lines.append("")
    if "LMDB store" in results:
        lines += ["| measure | PostgreSQL store | LMDB store |", "|---|---|---|"]
        lines += [f"| {measure} | {results['PostgreSQL store'][measure]} | {results['LMDB store'][measure]} |"
                  for measure in results["LMDB store"]]
        lines.append("")
    if "8 : 1, each round" in results:
        rates, cpu = results["appends per second (median of the rounds)"], results["writer CPU per append, ms (median)"]
        lines += ["| writers over 2 hosts | " + " | ".join(rates) + " |", "|---" * (len(rates) + 1) + "|",
                  "| durable appends per second (median) | " + " | ".join(str(rate) for rate in rates.values()) + " |",
                  "| writer CPU time per append (median) | " + " | ".join(f"{ms} ms" for ms in cpu.values()) + " |"]
        lines += ["", "| 8 writers : 1, each round | " + " | ".join(
            f"{layout}: {', '.join(map(str, ratios))}" for layout, ratios in results["8 : 1, each round"].items())
            + " |"]
    return "\n".join(lines).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_postgres",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="a PostgreSQL server (fsync on for the durable figures)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small counts")
    parser.add_argument("--rounds", type=int,
                        help="rounds of the single appends and the throughput rows (default 3; 1 with --quick)")
    parser.add_argument("--markdown", action="store_true", help="print the tables of docs/benchmarks.md, not JSON")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS,
                        help="what to measure: the single appends, the single store's figures, the throughput rows")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the stores and replicas")
    arguments = parser.parse_args(argv)
    count, seconds = (20, 0.5) if arguments.quick else (300, 5.0)
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    schema = f"bench_{os.getpid()}"
    with psycopg.connect(arguments.url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = in_schema(arguments.url, schema)
    try:
        with tempfile.TemporaryDirectory(dir=arguments.dir) as scratch:
            directory = Path(scratch)
            results: dict[str, Any] = {}
            if "appends" in arguments.parts:
                appends = single_appends(arguments.url, schema, directory, count, rounds)
                results["durable append, ms"] = appends
                results["single append : bare transaction, each round"] = against_the_floor(appends)
            if "figures" in arguments.parts:
                results["PostgreSQL store"] = single_store_figures(
                    lambda: SessionStore(url, cache=directory / "replica"), count)
                results["LMDB store"] = single_store_figures(lambda: SessionStore(directory / "lmdb"), count)
            if "throughput" in arguments.parts:
                results.update(throughput_rounds(url, directory, rounds, seconds))
    finally:
        with psycopg.connect(arguments.url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    print(markdown(results) if arguments.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
