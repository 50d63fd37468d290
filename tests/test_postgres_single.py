"""A command alone on the PostgreSQL log (``es_append_alone``, no subtransaction): a refusal aborts the whole call, so
it leaves neither a position hole nor half of the command, and the rows it writes are exactly those the batch
path (``es_append_many``) writes for the same commands."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreCorrupted, WrongExpectedVersion
from eventstore.sharedlog import Commit, HeadMoved, NewEvent, RecordTaken, Rewrite, SessionAppend, SharedRecord
from eventstore.sharedlog.postgres import PostgresLog
from eventstore.sharedlog.postgres_listener import Listener

from conftest import schema_url
from postgres_server import PostgresServer
from test_postgres_log import T0, assert_chain, everything

TABLES = ("es_head", "es_sessions", "es_events", "es_records")


def event(text: str, *, redacted: bool = False, digest_of: str | None = None) -> NewEvent:
    """An event with an id derived from its text, so that two logs given the same commands store the same rows."""
    payload = text.encode()
    return NewEvent(hashlib.sha256(b"id " + payload).digest()[:16], "MessageAppended", 1, payload,
                    hashlib.sha256((text if digest_of is None else digest_of).encode()).digest(), redacted)


def append(key: str, expected: int, *texts: str, at: int = T0) -> SessionAppend:
    return SessionAppend(key, expected, at, tuple(event(text) for text in texts))


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the log's tables, in key order."""
    with psycopg.connect(url, autocommit=True) as connection:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in TABLES}


@pytest.fixture
def log(postgres_url: str) -> Iterator[PostgresLog]:
    opened = PostgresLog(postgres_url)
    yield opened
    opened.close()


@pytest.fixture
def another_url(postgres_server: PostgresServer) -> str:
    """A second fresh schema of the throwaway server."""
    return schema_url(postgres_server.url, f"single_{uuid.uuid4().hex}")


@pytest.fixture
def alone(log: PostgresLog, monkeypatch: pytest.MonkeyPatch) -> list[Commit]:
    """The commands that went to the server alone (through ``es_append_alone``)."""
    sent: list[Commit] = []
    real = PostgresLog._commit_one

    def commit_one(connection: psycopg.Connection[Any], commit: Commit, turns: list[str]) -> object:
        sent.append(commit)
        return real(connection, commit, turns)

    monkeypatch.setattr(PostgresLog, "_commit_one", staticmethod(commit_one))
    return sent


def refused_after_writing(kind: str) -> tuple[Commit, Callable[[EventStoreError], bool]]:
    """A command the server refuses after its first session's events were already inserted in the call (or, for
    a held turn, before anything), and how its refusal must read."""
    fresh = append("fresh", 0, "would be position 3", "and 4")
    if kind == "version":
        return (Commit((fresh, append("a", 0, "stale"))),
                lambda e: isinstance(e, WrongExpectedVersion) and (e.key, e.expected, e.actual) == ("a", 0, 2))
    if kind == "record":
        taken = SharedRecord("facade.idempotency", b"key", b"second")
        return (Commit((fresh,), records=(SharedRecord("facade.idempotency", b"other", b"x"), taken)),
                lambda e: isinstance(e, RecordTaken) and e.record == taken and e.value == b"first")
    if kind == "digest":
        bad = SessionAppend("a", 2, T0, (event("fine"), event("tampered", digest_of="original")))
        return Commit((fresh, bad)), lambda e: isinstance(e, StoreCorrupted)
    if kind == "head":
        return Commit((fresh,), first_position=2), lambda e: isinstance(e, HeadMoved)
    assert kind == "turn"
    return (Commit((fresh, append("a", 2, "while another writer holds the turn"))),
            lambda e: isinstance(e, WrongExpectedVersion) and (e.key, e.actual) == ("a", 2))


@pytest.mark.parametrize("kind", ["version", "record", "digest", "head", "turn"])
def test_a_refused_command_alone_leaves_no_position_hole_and_no_half_state(
        kind: str, log: PostgresLog, alone: list[Commit], postgres_url: str) -> None:
    log.commit(Commit((append("a", 0, "one", "two"),), records=(SharedRecord("facade.idempotency", b"key",
                                                                              b"first"),)))
    before = rows(postgres_url)
    commit, reads_right = refused_after_writing(kind)
    holder = PostgresLog(postgres_url)
    try:
        with holder.turn(["a"]) if kind == "turn" else nullcontext(), pytest.raises(EventStoreError) as refused:
            log.commit(commit)
        assert reads_right(refused.value), refused.value
        assert rows(postgres_url) == before  # not the first session's events, nor a record, nor a moved head
        assert log.commit(Commit((append("a", 2, "three"),))).first_position == 3  # no hole
    finally:
        holder.close()
    assert alone[1] == commit
    stored = everything(log)
    assert [(e.position, e.session_key, e.version) for e in stored] == [(1, "a", 1), (2, "a", 2), (3, "a", 3)]
    assert_chain(stored)


COMMANDS = [
    Commit((append("a", 0, "one", "two", at=T0 + 5),)),
    Commit((append("b", 0, "b one"), append("a", 2, "three", at=T0))),  # "a"'s time never goes back
    Commit((append("c", 0, "c one"),), records=(SharedRecord("facade.idempotency", b"k", b"answer"),)),
    Commit(rewrites=(Rewrite(1, b"[redacted]"),)),
    Commit((append("d", 0, "pinned"),), first_position=6),
    Commit((append("a", 0, "stale"),)),  # refused: "a" is at version 3
    Commit((SessionAppend("a", 3, T0 + 9, (event("[redacted]", redacted=True, digest_of="secret"),)),)),
    Commit((append("e", 0, "e one"),), records=(SharedRecord("facade.idempotency", b"k", b"again"),)),  # taken
    Commit((append("f", 0, "f one", "f two"), append("b", 1, "b two"))),
    Commit((append("g", 0, "late pin"),), first_position=3),  # refused: the head moved on
]


def test_a_command_alone_writes_the_rows_the_batch_path_writes_for_it(
        log: PostgresLog, alone: list[Commit], postgres_url: str, another_url: str) -> None:
    answers_alone = [log.commit_many([command])[0] for command in COMMANDS]
    batched = PostgresLog(another_url)
    try:  # in pairs whose commands share no session, so that a refusal in a pair does not refuse its partner
        answers_batched = [answer for pair in range(0, len(COMMANDS), 2)
                           for answer in batched.commit_many(COMMANDS[pair:pair + 2])]
    finally:
        batched.close()
    assert alone == COMMANDS
    assert [_described(answer) for answer in answers_alone] == [_described(answer) for answer in answers_batched]
    assert [type(answer).__name__ for answer in answers_alone] == [
        "Committed", "Committed", "Committed", "Committed", "Committed", "WrongExpectedVersion", "Committed",
        "RecordTaken", "Committed", "HeadMoved"]
    assert rows(postgres_url) == rows(another_url)
    assert_chain(everything(log))


def _described(answer: object) -> object:
    if isinstance(answer, EventStoreError):
        return type(answer).__name__, str(answer), vars(answer)
    return answer


def test_a_listener_takes_the_head_from_a_lone_commands_notification_and_asks_after_a_batch(
        log: PostgresLog, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    log.commit(Commit((append("a", 0, "one"),)))
    listener = PostgresLog(postgres_url)
    asked: list[int] = []
    real = Listener._head

    def head(connection: psycopg.Connection[Any]) -> int:
        asked.append(real(connection))
        return asked[-1]

    monkeypatch.setattr(Listener, "_head", staticmethod(head))
    try:
        assert listener.wait(0, 30.0, lambda: None) == 1 and asked == [1]  # a new listener asks
        answers: list[int] = []
        waiter = threading.Thread(target=lambda: answers.append(listener.wait(1, 30.0, listening.set)))
        listening = threading.Event()
        waiter.start()
        assert listening.wait(10)
        log.commit(Commit((append("a", 1, "two"),)))
        waiter.join(30)
        assert answers == [2] and asked == [1]  # the notification named the head
        log.commit(Commit((append("a", 2, "three"),)))
        log.commit(Commit((append("a", 3, "four"),)))
        position = 2
        while position < 4:  # both came while it did not wait, in one delivery or two
            position = listener.wait(position, 30.0, lambda: None)
        assert position == 4 and asked == [1]
        log.commit_many([Commit((append("b", 0, "b"),)), Commit((append("c", 0, "c"),))])
        assert listener.wait(4, 30.0, lambda: None) == 6 and asked == [1, 6]  # a batch's commit names no head
    finally:
        listener.close()


@contextmanager
def flushes_held(server_url: str) -> Iterator[None]:
    """Every durable commit on the server waits while this lasts: it waits for a synchronous standby that never
    comes. Commits with ``synchronous_commit`` off (the call's own transaction) go ahead."""
    probes: list[threading.Thread] = []

    def probe() -> None:  # a durable commit of its own, which waits once the server took the setting up
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute("SELECT pg_logical_emit_message(true, 'test', '')")

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        connection.execute("SELECT pg_reload_conf()")
        try:
            deadline = time.monotonic() + 30
            while connection.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                                     ).fetchone() == (0,):
                assert time.monotonic() < deadline, "durable commits never waited"
                if not any(waiting.is_alive() for waiting in probes):
                    probes.append(threading.Thread(target=probe))
                    probes[-1].start()
                time.sleep(0.05)
            yield
        finally:
            connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
            connection.execute("SELECT pg_reload_conf()")  # releases the commits waiting for the standby
            for waiting in probes:
                waiting.join(30)


def test_a_command_alone_frees_the_replica_before_its_flush_and_is_acknowledged_only_after_it(
        postgres_server: PostgresServer, postgres_url: str, tmp_path: Path) -> None:
    """The replica's write lock, which a host's processes share, is not held through a command's flush: while one
    command waits for its flush, the next one commits on the replica too. Neither returns before its flush."""
    with SessionStore(postgres_url, cache=tmp_path / "host") as store:
        store.append("warm", ChatMessage.user("up"))
        versions: dict[str, int] = {}

        def append(key: str) -> threading.Thread:
            thread = threading.Thread(target=lambda: versions.update({key: store.append(key, ChatMessage.user(key))}))
            thread.start()
            return thread

        def reaches_the_replica(key: str) -> bool:
            """Whether ``key``'s message is on the replica within 10 s (a read that waits for the replica's write
            lock, held through a flush, is given up on)."""
            loaded: list[int] = []
            deadline = time.monotonic() + 10
            while not loaded and time.monotonic() < deadline:
                reader = threading.Thread(target=lambda: loaded.extend([1] if store.load(key) else []), daemon=True)
                reader.start()
                reader.join(max(0.0, deadline - time.monotonic()))
                time.sleep(0.02)
            return bool(loaded)

        with flushes_held(postgres_server.url):
            first = append("first")
            assert reaches_the_replica("first")
            second = append("second")  # it waited for the replica, held through the first one's flush, before
            assert reaches_the_replica("second")
            time.sleep(0.2)
            assert first.is_alive() and second.is_alive() and not versions  # neither is acknowledged yet
        first.join(30)
        second.join(30)
        assert versions == {"first": 1, "second": 1}
        assert store.verify().ok
