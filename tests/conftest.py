"""Shared fixtures, and the Hypothesis profiles: ``ci`` (set when CI is in the environment) is fixed and
deadline-free."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import HealthCheck, settings

from eventstore import SessionStore
from eventstore._log import EventLog
from eventstore.services.replica import ReplicaStorage
from eventstore.storage import Durability, MemoryStorage, ReadTransaction, Storage, WriteTransaction
from eventstore.storage.lmdb import Environment

from postgres_server import PostgresServer

#: The storage engines a test parametrised over ``engine`` or ``open_storage`` runs on.
ENGINES = ("lmdb", "memory")
#: The engines a store contract test runs on: those, and the log on PostgreSQL with an LMDB replica.
STORE_ENGINES = (*ENGINES, "postgres")
#: Where the log lives: in the store's LMDB file, or on PostgreSQL (each host reading an LMDB replica). Tests
#: that also look at the store's files (audit, search, the feed) run on both.
LOG_BACKENDS = ("lmdb", "postgres")

settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


class FakeClock:
    """A clock the test moves by hand; each call returns the current time."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


def open_store(engine: str, path: Path, **options: Any) -> SessionStore:
    """A ``SessionStore`` at ``path`` on LMDB, or in memory (then ``path`` only names it), or on the test's
    PostgreSQL schema with its replica at ``path`` (the engine fixture chose the schema: ``engine_of``)."""
    if engine == "memory":
        return SessionStore.on_storage(MemoryStorage(path), **options)
    if engine == "postgres":
        return SessionStore(_postgres_url[0], cache=path, **options)
    return SessionStore(path, **options)


def engine_of(request: pytest.FixtureRequest) -> str:
    """The engine of a test parametrised over ``STORE_ENGINES``; on PostgreSQL, with a fresh schema."""
    if request.param == "postgres":
        _postgres_url[:] = [request.getfixturevalue("postgres_url")]
    return str(request.param)


_postgres_url: list[str] = []


def lmdb_storage(store: SessionStore) -> Environment:
    """The LMDB engine under a store opened on LMDB, for a test that looks beneath the storage protocol."""
    storage = store._environment
    if isinstance(storage, ReplicaStorage):  # the log is shared; the replica is on LMDB
        storage = storage.replica
    assert isinstance(storage, Environment), f"{storage!r} is not on LMDB"
    return storage


def raw_value(txn: lmdb.Transaction, key: bytes, db: lmdb._Database | None = None) -> bytes:
    """The value LMDB holds at ``key``, which the test knows is there (it damages or reads what it wrote)."""
    value = txn.get(key, db=db)
    assert value is not None, f"nothing at {key!r}"
    return bytes(value)


def stream_id_of(log: EventLog, txn: ReadTransaction, key: str) -> int:
    """The stream id of a session the test has written, so that it has one."""
    stream_id = log.stream_id(txn, key)
    assert stream_id is not None, f"session {key!r} has no stream"
    return stream_id


def while_a_write_holds_the_lock(write: Callable[[Callable[[WriteTransaction], None]], object],
                                 calls: list[Callable[[], object]], queued: Callable[[], int],
                                 timeout: float = 60.0) -> list[object]:
    """Run each call on a thread of its own while a first ``write`` (an engine's) holds its writers' lock, and
    release it once ``queued()`` counts them all waiting, so that the next leader commits them as one group; what
    each call returned, or the exception it raised."""
    holding, release = threading.Event(), threading.Event()
    results: list[object] = [None] * len(calls)

    def blocker(_txn: WriteTransaction) -> None:
        holding.set()
        release.wait()

    def call(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    first = threading.Thread(target=write, args=(blocker,))
    first.start()
    holding.wait()
    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    try:
        while queued() < len(calls):
            assert time.monotonic() < deadline, "the calls never queued"
            time.sleep(0.001)
    finally:
        release.set()
        for thread in [first, *threads]:
            thread.join()
    return results


def waited_for(condition: Callable[[], bool], failure: str) -> None:
    """Wait until ``condition()`` holds (what should happen within a few retries); ``failure`` if it never does."""
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), failure


def at_a_subscriptions_look(store: SessionStore, looks: int, action: Callable[[], object],
                            counting: Callable[[], bool] = lambda: True) -> None:
    """Run ``action`` in a subscription's thread when it looks for a new commit (``_last_commit``) for the
    ``looks``-th time while ``counting()`` holds, before the look; for subscriptions of ``store`` begun after this
    call. A caught-up subscription looks before its read, before its first wait and after each wait: its third look
    after its last event comes after a wait, whatever the machine's load (a fixed pause may end before it)."""
    seen = [0]
    last_commit = store._last_commit

    def looking() -> int:
        if counting():
            seen[0] += 1
            if seen[0] == looks:
                action()
        return last_commit()

    store._last_commit = looking  # type: ignore[method-assign]


@pytest.fixture
def engine() -> str:
    """The engine the ``store`` fixture opens; a module that runs on every engine overrides this
    with ``@pytest.fixture(params=ENGINES)``."""
    return "lmdb"


@pytest.fixture
def store(store_path: Path, clock: FakeClock, engine: str) -> Iterator[SessionStore]:
    with open_store(engine, store_path, clock=clock, snapshot_every=5) as opened:
        yield opened


@pytest.fixture(params=ENGINES)
def scratch_store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[SessionStore]:
    """A store on each engine (LMDB, memory) whose commits flush nothing, for tests that commit a lot."""
    store = (SessionStore(tmp_path / "store", clock=clock, durable=False) if request.param == "lmdb"
             else SessionStore.on_storage(MemoryStorage(tmp_path / "store"), clock=clock))
    with store:
        yield store


@pytest.fixture(params=ENGINES)
def open_storage(request: pytest.FixtureRequest) -> Callable[[Path], Storage]:
    """Opens a storage engine at a path; opening a path again gives the same contents. Once per engine."""
    if request.param == "lmdb":
        return lambda path: Environment.acquire(path, durability=Durability.OFF)
    stores: dict[Path, MemoryStorage] = {}
    return lambda path: stores.setdefault(path, MemoryStorage(path)).open_again()


@pytest.fixture
def environment(tmp_path: Path, open_storage: Callable[[Path], Storage]) -> Iterator[Storage]:
    """A storage engine opened at a fresh path, once per engine."""
    opened = open_storage(tmp_path)
    yield opened
    opened.release()


@pytest.fixture
def lmdb_environment(tmp_path: Path) -> Iterator[Environment]:
    """An LMDB environment of its own, not flushed."""
    (tmp_path / "env").mkdir()
    opened = Environment.acquire(tmp_path / "env", durability=Durability.OFF, max_size=None)
    yield opened
    opened.release()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run; a test that needs it fails if it cannot start."""
    server = PostgresServer()
    try:
        server.start()
        yield server
        server.stop()
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty schema of the throwaway server (its own ``search_path``)."""
    return schema_url(postgres_server.url, f"test_{next(_schemas)}")


def schema_url(server_url: str, schema: str) -> str:
    """The URL of ``schema``, created empty on the server at ``server_url``, as its ``search_path``."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{server_url}&options=-csearch_path%3D{schema}"


_schemas = itertools.count(1)


@pytest.fixture
def terms_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every search term stored in blocks (``search.blocks``, ``search.maps``), none whole: for tests of the block
    form's values and of what a query reads of them."""
    from projections.search import formats  # the search index's own: not every test module imports it

    monkeypatch.setattr(formats, "WHOLE_UP_TO", 0)
