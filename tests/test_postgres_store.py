"""A store whose log is on PostgreSQL, each host reading from its own LMDB replica."""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from eventstore import (
    ChatMessage,
    IdempotencyKeyReused,
    InvalidArgument,
    InvalidVersion,
    SessionStore,
    StoreNotFound,
    StoreUnavailable,
    WrongExpectedVersion,
)
from eventstore._compression import TRAINING_EVENTS
from eventstore.cli import cli
from eventstore.cli._context import Env
from eventstore.events import MessageAppended
from eventstore.services.replica import ReplicaStorage
from eventstore.sharedlog import SharedHead
from eventstore.sharedlog.postgres import PostgresLog

from conftest import FakeClock
from test_cli import START, fill, run


@pytest.fixture
def open_host(postgres_url: str, tmp_path: Path):
    opened: list[SessionStore] = []

    def open_host(name: str = "host", **options) -> SessionStore:
        store = SessionStore(postgres_url, cache=tmp_path / name, **options)
        opened.append(store)
        return store

    yield open_host
    for store in opened:
        store.close()


def heard(*hosts: SessionStore) -> None:
    """Wait until every host heard of the latest commit any of them made: a host's read skips the server until
    the notification of another host's commit arrives (docs/postgres.md, reads)."""
    latest = max(host._environment.last_commit() for host in hosts)
    deadline = time.monotonic() + 10
    while any(host._environment.last_commit() < latest for host in hosts) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert all(host._environment.last_commit() >= latest for host in hosts), "a host never heard of the commit"


def replica_of(host: SessionStore) -> ReplicaStorage:
    replica = host._environment
    assert isinstance(replica, ReplicaStorage)
    return replica


def lose_commits_after(postgres_url: str, position: int) -> None:
    """What a failover to a standby that lacked the newest commits leaves: the log as it was at ``position``
    (one session's, ``k``'s, stream: its version is the position)."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DELETE FROM es_events WHERE position > %s", (position,))
        connection.execute("UPDATE es_head SET position = %s, hash = (SELECT hash FROM es_events WHERE position = %s)",
                           (position, position))
        connection.execute("UPDATE es_sessions SET version = %s", (position,))


def server_reads(host: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the ``after`` of each read of the log the host asks the server for, as they happen."""
    asked: list[int] = []
    shared = replica_of(host)._shared
    real_read = shared.read

    def read(after: int, limit: int) -> SharedHead:
        asked.append(after)
        return real_read(after, limit)

    monkeypatch.setattr(shared, "read", read)
    return asked


def listening(host: SessionStore) -> None:
    deadline = time.monotonic() + 10
    while not replica_of(host).listening and time.monotonic() < deadline:
        time.sleep(0.001)
    assert replica_of(host).listening


def test_two_hosts_read_each_others_writes(open_host):
    one, two = open_host("one"), open_host("two")
    assert one.append("k", ChatMessage.user("hello")) == 1
    assert two.append("k", ChatMessage.assistant("hi")) == 2
    heard(one, two)
    assert [m.content for m in one.load("k")] == ["hello", "hi"]
    with pytest.raises(WrongExpectedVersion):
        one.append("k", ChatMessage.user("late"), expected_version=1)
    assert one.append("k", ChatMessage.user("again"), expected_version=2) == 3
    assert two.verify().ok and one.verify().ok


def test_hosts_past_the_compression_dictionary_share_plain_payloads(open_host):
    """Each replica trains its own dictionary; what a host sends the shared log is the decompressed event."""
    one = open_host("one")
    for batch in range(TRAINING_EVENTS // 500 + 1):
        one.append_many(f"s{batch}", [ChatMessage.user(f"message {batch} {n} of a batch") for n in range(500)])
    one.append("after", ChatMessage.user("written with a trained dictionary"))
    two = open_host("two")
    two.append("after", ChatMessage.assistant("and answered from another host"))
    heard(one, two)
    assert [m.content for m in one.load("after")] == ["written with a trained dictionary",
                                                     "and answered from another host"]
    one.redact("after", "a test")  # rewrites compressed local records: the shared log gets them plain
    heard(one, two)
    assert {m.content for m in two.load("after")} == {"[redacted]"}
    assert one.verify().ok and two.verify().ok
    assert open_host("three").load("s0")[0] == ChatMessage.user("message 0 0 of a batch")


COMMANDS = [
    ["sessions"], ["sessions", "--json"], ["sessions", "--running"], ["show", "alpha"], ["show", "gamma", "--json"],
    ["show", "alpha", "--version", "3"], ["search", "lisbon"], ["stats", "--json"], ["nothing-such"],
    ["show", "missing"],
]


def test_the_command_line_takes_the_url_where_it_takes_a_path_and_answers_alike(open_host, tmp_path, postgres_url):
    on_lmdb, on_postgres = tmp_path / "lmdb", tmp_path / "replica"
    for opened in (lambda clock: SessionStore(on_lmdb, clock=clock), lambda clock: open_host("filler", clock=clock)):
        clock = FakeClock(START)
        with opened(clock) as store:
            fill(store, clock)
    for command in COMMANDS:
        local = run(on_lmdb, *command)
        shared = CliRunner().invoke(cli, ["--store", postgres_url, "--cache", str(on_postgres), *command],
                                    catch_exceptions=False)
        # A suggested command names the store as it was given: a directory, or the URL and its replica.
        options = (Env.chosen_by(str(on_lmdb), None).store_option(),
                   Env.chosen_by(postgres_url, on_postgres).store_option())
        answers = [(result.exit_code, result.output.replace(option, " --store STORE").replace(str(on_lmdb), "STORE")
                    .replace(str(on_postgres), "STORE")) for result, option in zip((local, shared), options)]
        if command[0] == "stats":  # the sizes of the files and their pages differ: the counts must not
            answers = [(code, re.sub(r"\"(bytes|file_pages|free_pages)\": \d+", "", text)) for code, text in answers]
            # Nor the index of the streams' versions: the replica copies a session's consecutive events in one
            # run, which takes one entry, where the commands here took one each.
            answers = [(code, re.sub(r"(\"name\": \"log\.streams\",)[^}]*", r"\1", text)) for code, text in answers]
        assert answers[0] == answers[1], command
    verified = CliRunner().invoke(cli, ["--store", postgres_url, "--cache", str(on_postgres), "verify"])
    assert verified.exit_code == 0, verified.output


def _host(url: str, cache: str, name: str, rounds: int, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One host: appends (some expecting a version), idempotent retries that the other host also sends,
    restores and deletions racing the other's appends. Reports the idempotency keys it was answered for."""
    answered = []
    with SessionStore(url, cache=cache) as store:
        for number in range(rounds):
            store.append(f"{name}-own", ChatMessage.user(f"{name} {number}"))
            store.append("shared", ChatMessage.user(f"{name} says {number}"))
            version = store.append("shared", ChatMessage.user("retried"), idempotency_key=f"retry {number}")
            answered.append((number, version))
            with contextlib.suppress(WrongExpectedVersion):
                seen = store.session_at("shared").version
                store.append("shared", ChatMessage.assistant(f"{name} after {seen}"), expected_version=seen)
            if number % 7 == 3:
                with contextlib.suppress(WrongExpectedVersion, InvalidVersion):
                    store.restore("shared", version=max(1, store.session_at("shared").version - 2))
            if number % 11 == 5:
                store.delete_session("shared", reason=f"{name} {number}")
    done.put((name, answered))


def test_two_hosts_writing_the_same_sessions_end_with_replicas_equal_to_a_fresh_one(postgres_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    rounds = 30
    hosts = [context.Process(target=_host, args=(postgres_url, str(tmp_path / name), name, rounds, done))
             for name in ("one", "two")]
    for process in hosts:
        process.start()
    for process in hosts:
        process.join(240)
        assert process.exitcode == 0
    answers = dict(done.get(timeout=5) for _ in hosts)
    # Each retried key was recorded once, and both hosts were answered with that one command's version.
    assert answers["one"] == answers["two"]
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        retried = [e for e in fresh.events() if getattr(e.event, "message", None) == ChatMessage.user("retried")]
        assert [e.version for e in retried] == [version for _, version in answers["one"]]
        assert len(fresh.history("one-own")) == len(fresh.history("two-own")) == rounds
        expected = {key: (fresh.load(key), fresh.session_at(key).version) for key in fresh.list_sessions()}
        assert fresh.verify().ok
        for name in ("one", "two"):
            with SessionStore(postgres_url, cache=tmp_path / name) as replica:
                assert {key: (replica.load(key), replica.session_at(key).version)
                        for key in replica.list_sessions()} == expected
                assert replica.list_sessions_with_metadata() == fresh.list_sessions_with_metadata()
                assert replica.verify().ok


def test_an_idempotent_retry_on_another_host_answers_as_the_first_and_records_nothing(open_host):
    one, two = open_host("one"), open_host("two")
    assert one.append("k", ChatMessage.user("hi"), idempotency_key="request-1") == 1
    one.append("k", ChatMessage.user("later"))
    assert two.append("k", ChatMessage.user("hi"), idempotency_key="request-1") == 1
    heard(one, two)
    assert [m.content for m in two.load("k")] == ["hi", "later"]
    with pytest.raises(IdempotencyKeyReused):
        two.append("k", ChatMessage.user("other"), idempotency_key="request-1")
    assert len(one.history("k")) == 2


def test_a_subscription_on_one_host_sees_the_commits_of_another(open_host):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("before"))
    feed = two.subscribe(timeout=10)
    assert next(feed).position == 1
    writer = threading.Timer(0.2, lambda: one.append("k", ChatMessage.user("after")))
    writer.start()
    started = time.monotonic()
    seen = next(feed)
    writer.join()
    assert (seen.position, seen.event) == (2, MessageAppended(ChatMessage.user("after")))
    assert time.monotonic() - started < 5  # woken by the notification (or the head poll), not by the timeout


def test_opening_mistakes_are_named(postgres_url, tmp_path):
    with pytest.raises(InvalidArgument, match="needs cache=DIR"):
        SessionStore(postgres_url)
    with pytest.raises(InvalidArgument, match="a path needs none"):
        SessionStore(tmp_path / "lmdb", cache=tmp_path / "replica")
    with pytest.raises(StoreNotFound, match="no eventstore log"):
        SessionStore(postgres_url, cache=tmp_path / "replica", readonly=True)


def test_a_stale_replica_checks_a_callers_expected_version_against_the_current_session(open_host):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("first"))
    two.append("k", ChatMessage.user("second"))  # host one's replica has not seen it
    assert one.append("k", ChatMessage.user("third"), expected_version=2) == 3
    two.append("k", ChatMessage.user("fourth"))
    with pytest.raises(WrongExpectedVersion) as refused:
        one.append("k", ChatMessage.user("late"), expected_version=3)
    assert (refused.value.expected, refused.value.actual) == (3, 4)
    assert [m.content for m in one.load("k")] == ["first", "second", "third", "fourth"]


def test_a_read_skips_the_server_until_the_notification_of_a_foreign_commit(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listening(one)
    asked = server_reads(one, monkeypatch)
    assert [m.content for m in one.load("k")] == ["mine"]  # its own write, read without a round trip
    assert asked == []
    two.append("k", ChatMessage.assistant("theirs"))
    heard(one, two)
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
    assert asked == [1]  # the notification sent this read to the server, once
    assert [m.content for m in one.load("k")] == ["mine", "theirs"] and asked == [1]


def test_with_the_listener_killed_reads_ask_the_server(open_host, postgres_url, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("mine"))
    listening(one)
    shared = replica_of(one)._shared
    assert isinstance(shared, PostgresLog) and shared._listener._connection is not None
    listener = shared._listener._connection.info.backend_pid

    def away(seen, timeout, listening):
        raise StoreUnavailable("the listener stays down")

    monkeypatch.setattr(shared, "wait", away)  # what the watcher calls next, once the killed listener fails
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (listener,))
    deadline = time.monotonic() + 10
    while replica_of(one).listening and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not replica_of(one).listening
    two.append("k", ChatMessage.assistant("theirs"))
    assert [m.content for m in one.load("k")] == ["mine", "theirs"]
