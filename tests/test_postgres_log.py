"""The shared log on PostgreSQL, driven directly: gap-free positions under writers in several processes, a
tailing reader that never skips a commit, refused commits that take no position, and a chain that verifies."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time

import psycopg
import pytest

from eventstore import IncompatibleStore, StoreUnavailable, WrongExpectedVersion
from eventstore._codec import EncodedEvent
from eventstore._log import GENESIS_HASH, chain_hash
from eventstore.sharedlog import (
    Commit,
    NewEvent,
    RecordTaken,
    Rewrite,
    SessionAppend,
    SharedEvent,
    SharedRecord,
)
from eventstore.sharedlog.postgres import SCHEMA_FORMAT, PostgresLog

T0 = 1_767_225_600_000_000


def event(text: str) -> NewEvent:
    payload = text.encode()
    return NewEvent(os.urandom(16), "MessageAppended", 1, payload, hashlib.sha256(payload).digest())


def append(key: str, expected: int, *texts: str, at: int = T0) -> Commit:
    return Commit((SessionAppend(key, expected, at, tuple(event(text) for text in texts)),))


def everything(log: PostgresLog) -> list[SharedEvent]:
    found: list[SharedEvent] = []
    while batch := log.read(found[-1].position if found else 0, 100).events:
        found += batch
    return found


def assert_chain(events: list[SharedEvent]) -> None:
    previous = GENESIS_HASH
    for number, stored in enumerate(events, 1):
        assert stored.position == number
        encoded = EncodedEvent(stored.type_name, stored.schema_version, stored.payload)
        previous = chain_hash(previous, stored.position, stored.session_key, stored.version, stored.recorded_at,
                              stored.event_id, encoded, stored.payload_digest)
        assert stored.hash == previous, f"position {stored.position} does not link"


@pytest.fixture
def log(postgres_url: str):
    opened = PostgresLog(postgres_url)
    yield opened
    opened.close()


def test_commits_take_consecutive_positions_and_link_as_the_local_log_does(log):
    first = log.commit(append("a", 0, "one", "two"))
    second = log.commit(Commit((SessionAppend("b", 0, T0, (event("x"),)), SessionAppend("a", 2, T0, (event("3"),)))))
    assert (first.first_position, first.head_position) == (1, 2)
    assert (second.first_position, second.head_position) == (3, 4)
    stored = everything(log)
    assert [(e.session_key, e.version) for e in stored] == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert_chain(stored)
    assert second.head_hash == stored[-1].hash == log.read(4, 10).hash


def test_a_refused_commit_takes_no_position_and_writes_nothing(log):
    log.commit(append("a", 0, "one"))
    with pytest.raises(WrongExpectedVersion) as refused:
        log.commit(Commit((SessionAppend("new", 0, T0, (event("n"),)), SessionAppend("a", 0, T0, (event("x"),)))))
    assert (refused.value.key, refused.value.expected, refused.value.actual) == ("a", 0, 1)
    record = SharedRecord("facade.idempotency", b"k", b"first")
    log.commit(Commit(append("a", 1, "two").appends, records=(record,)))
    with pytest.raises(RecordTaken) as taken:
        log.commit(Commit(append("a", 2, "three").appends, records=(SharedRecord(record.space, b"k", b"second"),)))
    assert taken.value.value == b"first"
    stored = everything(log)
    assert [(e.position, e.session_key, e.payload) for e in stored] == [(1, "a", b"one"), (2, "a", b"two")]
    assert log.commit(append("new", 0, "n")).first_position == 3


def test_a_batch_answers_each_command_alone_and_a_refused_one_takes_no_position(log):
    log.commit(append("a", 0, "one"))
    record = SharedRecord("facade.idempotency", b"k", b"first")
    log.commit(Commit(append("r", 0, "r").appends, records=(record,)))
    answers = log.commit_many([
        append("b", 0, "b1", "b2"),
        append("a", 0, "stale"),  # "a" is at version 1
        append("c", 0, "c1"),
        Commit(append("d", 0, "d1").appends, records=(SharedRecord(record.space, b"k", b"second"),)),
        Commit(rewrites=(Rewrite(1, b"[redacted]"),)),
        append("c", 1, "c2"),
    ])
    assert [type(answer).__name__ for answer in answers] == [
        "Committed", "WrongExpectedVersion", "Committed", "RecordTaken", "Committed", "Committed"]
    wrong, taken = answers[1], answers[3]
    assert isinstance(wrong, WrongExpectedVersion) and (wrong.key, wrong.expected, wrong.actual) == ("a", 0, 1)
    assert isinstance(taken, RecordTaken) and taken.value == b"first"
    assert [(a.first_position, a.head_position) for a in answers if not isinstance(a, Exception)] == [
        (3, 4), (5, 5), (6, 5), (6, 6)]
    stored = everything(log)
    assert [(e.position, e.session_key, e.version, e.payload) for e in stored] == [
        (1, "a", 1, b"[redacted]"), (2, "r", 1, b"r"), (3, "b", 1, b"b1"), (4, "b", 2, b"b2"), (5, "c", 1, b"c1"),
        (6, "c", 2, b"c2")]
    assert_chain(stored)
    last = answers[-1]
    assert not isinstance(last, Exception) and last.head_hash == stored[-1].hash


def test_a_command_after_a_refused_one_on_the_same_session_is_refused_though_its_version_matches(log):
    log.commit(append("a", 0, "elsewhere"))
    # Decided on a replica that lacked "elsewhere": the second command followed the first, refused, command.
    answers = log.commit_many([append("a", 0, "first"), append("a", 1, "after the first"), append("b", 0, "b")])
    assert [type(answer).__name__ for answer in answers] == ["WrongExpectedVersion", "WrongExpectedVersion",
                                                             "Committed"]
    assert [(e.session_key, e.payload) for e in everything(log)] == [("a", b"elsewhere"), ("b", b"b")]


def test_a_batch_refuses_at_once_the_commands_on_a_session_whose_turn_another_writer_holds(log, postgres_url):
    other = PostgresLog(postgres_url)
    try:
        with other.turn(["a"]):
            started = time.monotonic()
            answers = log.commit_many([append("a", 0, "waits for no turn"), append("b", 0, "b")])
            assert time.monotonic() - started < 5
            assert [type(answer).__name__ for answer in answers] == ["WrongExpectedVersion", "Committed"]
            other.commit(append("a", 0, "the turn's"))  # the holder's commit goes ahead
        assert log.commit(append("a", 1, "after the turn")).first_position == 3
    finally:
        other.close()


def test_a_batch_of_refused_commands_only_writes_nothing(log):
    log.commit(append("a", 0, "one"))
    answers = log.commit_many([append("a", 0, "x"), append("a", 0, "y")])
    assert all(isinstance(answer, WrongExpectedVersion) for answer in answers)
    assert [e.payload for e in everything(log)] == [b"one"]
    assert log.read(0, 0).position == 1


def test_times_never_go_back_along_a_session_and_a_rewrite_keeps_the_link(log):
    log.commit(append("a", 0, "one", at=T0 + 10))
    log.commit(append("a", 1, "two", at=T0))
    log.commit(Commit(rewrites=(Rewrite(1, b"[redacted]"),)))
    stored = everything(log)
    assert [e.recorded_at for e in stored] == [T0 + 10, T0 + 10]
    assert (stored[0].payload, stored[0].redacted) == (b"[redacted]", True)
    assert_chain(stored)  # the link covers the original payload's digest, which the rewrite keeps


def _writer(url: str, key: str, commits: int, shared: str) -> None:
    log = PostgresLog(url)
    version = 0
    for number in range(commits):
        log.commit(append(key, number, f"{key} {number}"))
        while True:  # the shared session: retry on a conflict, as a store does
            try:
                log.commit(append(shared, version, f"{key} shared {number}"))
                version += 1
                break
            except WrongExpectedVersion as conflict:
                version = conflict.actual
    log.close()


def test_writers_in_several_processes_leave_no_gap_and_a_tailing_reader_skips_nothing(log, postgres_url):
    seen: list[int] = []
    done = threading.Event()

    def tail() -> None:
        after = 0
        while not done.is_set() or log.read(after, 1).position > after:
            for stored in log.read(after, 50).events:
                seen.append(stored.position)
                after = stored.position

    reader = threading.Thread(target=tail)
    reader.start()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(postgres_url, f"w{n}", 25, "shared")) for n in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    done.set()
    reader.join(30)
    stored = everything(log)
    assert len(stored) == 4 * 25 * 2
    assert seen == [e.position for e in stored] == list(range(1, 201))
    assert_chain(stored)
    shared = [e for e in stored if e.session_key == "shared"]
    assert [e.version for e in shared] == list(range(1, 101))


def test_a_newer_format_is_refused_and_an_unreachable_server_is_a_clear_error(log, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE es_meta SET format = %s", (SCHEMA_FORMAT + 1,))
    with pytest.raises(IncompatibleStore, match="newer"):
        PostgresLog(postgres_url)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        PostgresLog("postgresql://postgres@/postgres?host=/nonexistent-directory&connect_timeout=2")


def test_a_schema_of_the_first_format_is_upgraded_when_a_store_opens_it(log, postgres_url):
    log.commit(append("a", 0, "one"))
    log.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP PROCEDURE es_append_many")
        connection.execute("DROP FUNCTION es_commit_batch")
        connection.execute("DROP PROCEDURE es_append_alone")
        connection.execute("DROP FUNCTION es_channel")
        connection.execute("UPDATE es_meta SET format = 1")
    upgraded = PostgresLog(postgres_url)
    try:
        assert upgraded.commit(append("a", 1, "two")).head_position == 2
        assert_chain(everything(upgraded))
    finally:
        upgraded.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute("SELECT format FROM es_meta").fetchone() == (SCHEMA_FORMAT,)


def test_a_commit_wakes_another_logs_listener_long_before_its_poll(log, postgres_url):
    """The commit's NOTIFY (sent by ``es_append``) wakes a waiting listener: it does not sit out its timeout."""
    log.commit(append("a", 0, "one"))
    other = PostgresLog(postgres_url)
    listening = threading.Event()
    woke: list[tuple[int, float]] = []
    waiter = threading.Thread(target=lambda: woke.append((other.wait(1, 60.0, listening.set), time.monotonic())))
    try:
        waiter.start()
        assert listening.wait(10)
        committed = time.monotonic()
        log.commit(append("a", 1, "two"))
        waiter.join(30)
        assert woke and woke[0][0] == 2
        assert woke[0][1] - committed < 30  # the 60 s wait ended on the notification
    finally:
        other.close()
        waiter.join(5)


def test_the_holder_of_a_turn_commits_while_another_writer_waits_for_it(log, postgres_url):
    waiting_log = PostgresLog(postgres_url)
    try:
        with log.turn(["a"]):
            waiter = threading.Thread(target=lambda: waiting_log.turn(["a"]).__enter__())
            waiter.start()
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                deadline = time.monotonic() + 10
                while connection.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                         ).fetchone() != (1,):
                    assert time.monotonic() < deadline, "the other writer never waited for the turn"
                    time.sleep(0.01)
            assert log.commit(append("a", 0, "the holder's")).first_position == 1  # not refused behind the waiter
        waiter.join(10)
        assert not waiter.is_alive()
    finally:
        waiting_log.close()
