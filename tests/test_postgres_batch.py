"""A host's group commit on PostgreSQL, reviewed command by command: what one call of ``es_append_many`` does with
commands that are refused, that share a session, that retry one another, that span sessions, and what its
callers learn when the call itself fails (before or after the server committed) or when they stop waiting."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest

from eventstore import (
    AsyncSessionStore,
    EventStoreError,
    IdempotencyKeyReused,
    SessionStore,
    StoreInaccessible,
    StoreUnavailable,
    WrongExpectedVersion,
)
from eventstore.aio import WRITER_THREADS
from eventstore.services import replica as replica_module
from eventstore.sharedlog import Commit, Committed

from test_postgres_group import GATE_SECONDS, a_held_call, in_one_group, record_calls, texts, user
from test_postgres_store import heard, listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

MAY_OR_MAY_NOT = "may or may not have been recorded"


def stale(host: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """As while the notification of another host's commit is on its way: the host decides without catching up."""
    listening(host)
    monkeypatch.setattr(replica_of(host), "_heard_by_commands", lambda: 0)


def same_everywhere(host: SessionStore, fresh: SessionStore, keys: str) -> None:
    """The host's replica and a fresh one filled from the log agree, and both chains verify."""
    for key in keys:
        assert texts(fresh, key) == texts(host, key), key
        versions = [event.version for event in fresh.history(key)]
        assert versions == [event.version for event in host.history(key)] == list(range(1, len(versions) + 1))
    assert host.verify().ok and fresh.verify().ok


def append(host: SessionStore, key: str, text: str, **options: object) -> Callable[[], object]:
    return lambda: host.append(key, user(text), **options)  # type: ignore[arg-type]


def test_refused_expected_versions_fail_alone_and_the_other_commands_of_the_call_commit(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    for key in "abcd":
        one.append(key, user(f"{key} first"))
    stale(one, monkeypatch)
    two.append("b", user("b from two"))  # one's replica lacks it: one's command on b passes there, not on the server
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [
        append(one, "a", "a from one"),
        append(one, "b", "b from one", expected_version=1),  # refused by the server
        append(one, "c", "c from one", expected_version=5),  # refused by the replica: c is at version 1
        append(one, "d", "d from one", expected_version=1),
    ])
    assert results[0] == 2 and results[3] == 2
    assert isinstance(results[1], WrongExpectedVersion) and (results[1].expected, results[1].actual) == (1, 2)
    assert isinstance(results[2], WrongExpectedVersion) and (results[2].expected, results[2].actual) == (5, 1)
    assert sorted(calls[0]) == ["Committed", "Committed", "WrongExpectedVersion"]  # c never reached the server
    assert calls[1:] == []  # b, decided again against the current session, failed on the replica
    assert texts(one, "b") == ["b first", "b from two"]
    assert texts(one, "c") == ["c first"]
    same_everywhere(one, open_host("fresh"), "abcd")


def test_commands_on_one_session_in_one_call_take_consecutive_versions(open_host, monkeypatch):
    one = open_host("one")
    one.append("a", user("a first"))
    listening(one)
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [append(one, "a", "a 1"), append(one, "a", "a 2"), append(one, "b", "b 1"),
                                 append(one, "a", "a 3")])
    assert calls == [["Committed"] * 4]
    assert results[2] == 1
    by_version = {results[0]: "a 1", results[1]: "a 2", results[3]: "a 3"}  # in the order they queued
    assert sorted(by_version) == [2, 3, 4]  # type: ignore[type-var]
    assert texts(one, "a") == ["a first", *(by_version[version] for version in (2, 3, 4))]
    same_everywhere(one, open_host("fresh"), "ab")


def test_commands_on_one_session_after_a_refused_one_are_decided_again_in_order(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("a", user("a first"))
    stale(one, monkeypatch)
    two.append("a", user("a from two"))
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [append(one, "a", "a 1"), append(one, "a", "a 2"), append(one, "b", "b 1")])
    assert sorted(calls[0]) == ["Committed", "WrongExpectedVersion", "WrongExpectedVersion"]
    assert sorted(results[:2]) == [3, 4] and results[2] == 1  # type: ignore[type-var]
    mine = sorted(zip(results[:2], ["a 1", "a 2"]))
    assert texts(one, "a") == ["a first", "a from two", *(text for _, text in mine)]
    same_everywhere(one, open_host("fresh"), "ab")


def test_an_idempotent_retry_in_the_call_of_its_first_attempt_answers_as_it_and_records_nothing(
        open_host, monkeypatch):
    one = open_host("one")
    one.append("k", user("first"))
    listening(one)
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [append(one, "k", "once", idempotency_key="request-1"),
                                 append(one, "k", "once", idempotency_key="request-1"), append(one, "other", "x")])
    assert results == [2, 2, 1]
    assert sorted(calls[0]) == ["Committed", "Committed"]  # the retry was answered on the replica
    assert texts(one, "k") == ["first", "once"]
    same_everywhere(one, open_host("fresh"), "k")


def test_an_idempotent_retry_in_the_call_of_its_refused_first_attempt_is_recorded_once(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("k", user("first"))
    stale(one, monkeypatch)
    two.append("k", user("from two"))  # the first attempt is refused; the retry answered from it must not stand
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [append(one, "k", "once", idempotency_key="request-1"),
                                 append(one, "k", "once", idempotency_key="request-1"), append(one, "other", "x")])
    assert results == [3, 3, 1]
    assert sorted(calls[0]) == ["Committed", "WrongExpectedVersion"]
    assert texts(one, "k") == ["first", "from two", "once"]
    same_everywhere(one, open_host("fresh"), "k")


def across(host: SessionStore, keys: str, text: str) -> Callable[[], object]:
    """A transaction appending ``text`` to each session of ``keys``; the versions it gave them."""
    def run() -> object:
        with host.transaction() as tx:
            pending = [tx.append(key, user(text)) for key in keys]
        return [appended.result for appended in pending]

    return run


def test_transactions_over_several_sessions_in_one_call_commit_whole_or_are_decided_again_whole(
        open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    for key in "abcd":
        one.append(key, user(f"{key} first"))
    stale(one, monkeypatch)
    two.append("a", user("a from two"))  # the transaction on a and b is refused; the one on b and c follows it
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [across(one, "ab", "ab"), across(one, "bc", "bc"), across(one, "d", "d")])
    assert sorted(calls[0]) == ["Committed", "WrongExpectedVersion", "WrongExpectedVersion"]
    assert results[2] == [2]
    ab, bc = results[0], results[1]
    assert isinstance(ab, list) and isinstance(bc, list) and ab[0] == 3 and bc[1] == 2
    assert sorted([ab[1], bc[0]]) == [2, 3]  # each decided again on b, one after the other
    b_order = ["ab", "bc"] if ab[1] < bc[0] else ["bc", "ab"]
    assert texts(one, "a") == ["a first", "a from two", "ab"]
    assert texts(one, "b") == ["b first", *b_order]
    assert texts(one, "c") == ["c first", "bc"]
    same_everywhere(one, open_host("fresh"), "abcd")


@contextlib.contextmanager
def poison(postgres_url: str) -> Iterator[None]:
    """The server rejects any event whose payload names "poison" (as a constraint, a trigger or a full disk would)."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("""
            CREATE FUNCTION es_test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF position('poison' IN convert_from(NEW.payload, 'UTF8')) > 0 THEN
                    RAISE EXCEPTION 'the test server rejects this payload';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER es_test_poison BEFORE INSERT ON es_events FOR EACH ROW EXECUTE FUNCTION es_test_poison();
        """)
    yield
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP TRIGGER es_test_poison ON es_events")


def listening_with_three_sessions(open_host: Callable[..., SessionStore]) -> SessionStore:
    """A host with sessions a, b and c (a message each) whose watcher listens."""
    one = open_host("one")
    for key in "abc":
        one.append(key, user(f"{key} first"))
    listening(one)
    return one


def test_a_server_error_in_one_command_reaches_every_command_of_the_call_and_applies_none(
        open_host, monkeypatch, postgres_url):
    one = listening_with_three_sessions(open_host)
    calls = record_calls(one, monkeypatch)
    with poison(postgres_url):
        results = in_one_group(one, [append(one, "a", "a ok"), append(one, "b", "b poison"),
                                     append(one, "c", "c ok")])
    assert calls == []  # the call raised: no answers
    for result in results:
        assert isinstance(result, EventStoreError), result
        assert "the test server rejects this payload" in str(result) and MAY_OR_MAY_NOT in str(result)
    for key in "abc":
        assert texts(one, key) == [f"{key} first"]
    fresh = open_host("fresh")
    same_everywhere(one, fresh, "abc")
    assert len(list(fresh.events())) == 3
    assert one.append("a", user("a again")) == 2  # the store goes on


def backends_of_calls(postgres_url: str, procedure: str) -> list[int]:
    """The server processes running a call of ``procedure`` this moment."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'", (f"CALL {procedure}(%",))]


@contextlib.contextmanager
def killed_mid_call(postgres_url: str, procedure: str) -> Iterator[None]:
    """While it lasts, the first call of ``procedure`` to reach the server waits for the head row (held here) and
    has its connection closed by the server; on leaving, that it was closed is checked."""
    killed: list[bool] = []
    with psycopg.connect(postgres_url, autocommit=True) as holder:  # its close ends the transaction
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM es_head FOR UPDATE")  # the call waits for the head row

        def kill_in_its_call() -> None:
            deadline = time.monotonic() + GATE_SECONDS
            while not (pids := backends_of_calls(postgres_url, procedure)) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not pids:  # the head row goes free: whatever waits for it ends, and the check below fails
                holder.execute("ROLLBACK")
                return
            row = holder.execute("SELECT pg_terminate_backend(%s)", (pids[0],)).fetchone()
            killed.append(row is not None and row[0] is True)

        killer = threading.Thread(target=kill_in_its_call)
        killer.start()
        try:
            yield
        finally:
            killer.join()
    assert killed == [True], f"no call of {procedure} reached the server, or its connection outlived the kill"


def test_a_connection_killed_mid_call_fails_every_command_of_the_call_and_applies_none(
        open_host, monkeypatch, postgres_url):
    one = listening_with_three_sessions(open_host)
    with killed_mid_call(postgres_url, "es_append_many"):
        results = in_one_group(one, [append(one, key, f"{key} lost") for key in "abc"])
    for result in results:
        assert isinstance(result, StoreUnavailable), result
        assert MAY_OR_MAY_NOT in str(result)
    for key in "abc":
        assert texts(one, key) == [f"{key} first"]
    same_everywhere(one, open_host("fresh"), "abc")
    assert one.append("a", user("a again")) == 2  # the next call connects again


FLUSH_MESSAGE = "pg_logical_emit_message(bool, text, text)"


@pytest.fixture
def app_role_url(postgres_url: str, postgres_server) -> Iterator[str]:
    """The URL of the test's schema for a role that owns it and is no superuser (a superuser is never refused)."""
    schema = postgres_url.rsplit("%3D", 1)[1]
    role = f"{schema}_app"
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f"ALTER SCHEMA {schema} OWNER TO {role}")
    try:
        yield postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    finally:
        may_flush(postgres_server.url, True)


def may_flush(server_url: str, allowed: bool) -> None:
    """Whether roles other than superusers may call ``pg_logical_emit_message``, which ``es_append_many`` calls
    after its first transaction committed."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"GRANT EXECUTE ON FUNCTION {FLUSH_MESSAGE} TO PUBLIC" if allowed
                           else f"REVOKE EXECUTE ON FUNCTION {FLUSH_MESSAGE} FROM PUBLIC")


def test_a_call_that_fails_after_the_server_committed_never_tells_its_commands_they_were_not_recorded(
        app_role_url, postgres_server, tmp_path):
    with SessionStore(app_role_url, cache=tmp_path / "one") as one:
        one.append("warm", user("up"))
        listening(one)
        may_flush(postgres_server.url, False)  # taken away while the store is open
        results = in_one_group(one, [append(one, key, f"{key} sent", idempotency_key=f"request-{key}")
                                     for key in "ab"])
        with pytest.raises(EventStoreError) as alone:  # a command alone, in a call of its own
            one.append("c", user("c sent"), idempotency_key="request-c")
        for result in [*results, alone.value]:
            assert isinstance(result, EventStoreError), result
            assert "pg_logical_emit_message" in str(result) and MAY_OR_MAY_NOT in str(result)
        replica_of(one).catch_up()  # rather than wait for the notification of the commit
        for key in "abc":
            assert texts(one, key) == [f"{key} sent"]  # it was recorded
            # The retry the error advises: answered from the record, without a call to the server.
            assert one.append(key, user(f"{key} sent"), idempotency_key=f"request-{key}") == 1
        assert one.verify().ok


def test_a_role_that_could_write_but_not_commit_is_refused_when_the_store_opens(
        app_role_url, postgres_server, tmp_path):
    may_flush(postgres_server.url, False)
    with pytest.raises(StoreInaccessible, match="pg_logical_emit_message"):
        SessionStore(app_role_url, cache=tmp_path / "one")
    may_flush(postgres_server.url, True)
    with SessionStore(app_role_url, cache=tmp_path / "one") as one:
        assert one.append("k", user("hello")) == 1


def test_an_async_command_cancelled_before_its_thread_started_is_never_recorded(postgres_url, tmp_path, monkeypatch):
    async def main() -> None:
        async with AsyncSessionStore(postgres_url, cache=tmp_path / "async") as store:
            first, gate, _ = await a_held_call(store, monkeypatch, "k0", "0")
            # Every other writer thread takes a command; two more wait for a thread.
            busy = [asyncio.create_task(store.append(f"k{n}", user(f"{n}"))) for n in range(1, WRITER_THREADS + 2)]
            await asyncio.sleep(0.2)
            cancelled, last = busy[-2], busy[-1]
            cancelled.cancel()
            # The cancellation reaches the command's place in the queue on the loop's next turn: released before it,
            # the held call's thread could finish and start the command first (it then commits, as documented).
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            gate.set()
            assert await first == 1
            assert [await task for task in [*busy[:-2], last]] == [1] * WRITER_THREADS
            assert not await store.session_exists(f"k{WRITER_THREADS}")
            assert (await store.verify()).ok

    asyncio.run(main())
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        assert sorted(fresh.list_sessions()) == sorted(
            ["warm", *(f"k{n}" for n in range(WRITER_THREADS + 2) if n != WRITER_THREADS)])


def test_a_callers_expected_version_is_checked_again_when_the_call_left_the_replica_at_the_same_position(
        open_host, monkeypatch):
    """A command decided after a batchmate that the server refused saw that batchmate's event; once the replica
    caught up, it holds another host's event at the very position the batchmate's had: the same position, other
    events, so the command is decided again rather than failed on what it saw."""
    one, two = open_host("one"), open_host("two")
    one.append("a", user("a first"))
    two.set_session_name("a", "named")
    two.set_session_name("a", "named", idempotency_key="request-1")  # no event; a record one's replica lacks
    heard(one, two)
    assert one.get_session_name("a") == "named"
    listening(one)
    calls = record_calls(one, monkeypatch)
    real = replica_of(one)._shared.commit_many

    def commit_many(commits: Sequence[Commit]) -> list[Committed | EventStoreError]:
        answers = real(commits)
        if len(calls) == 1:  # another host commits at the position one's refused command took
            two.append("other", user("elsewhere"))
        return answers

    monkeypatch.setattr(replica_of(one)._shared, "commit_many", commit_many)
    results = in_one_group(one, [append(one, "a", "a retried", idempotency_key="request-1"),
                                 append(one, "a", "a second", expected_version=2)])
    assert calls[0] == ["RecordTaken"]  # the second command failed on the replica, after the first's event
    assert isinstance(results[0], IdempotencyKeyReused)  # request-1 named another command on a
    assert results[1] == 3
    assert texts(one, "a") == ["a first", "a second"]
    same_everywhere(one, open_host("fresh"), "a")


class Interrupted(BaseException):
    """What stops a thread mid-call (as ``KeyboardInterrupt`` would), after the server committed the call."""


def test_commands_whose_leader_stopped_after_the_servers_commit_are_told_they_may_have_been_recorded(
        open_host, monkeypatch):
    one = listening_with_three_sessions(open_host)
    real = replica_of(one)._shared.commit_many

    def committed_then_interrupted(commits: Sequence[Commit]) -> list[Committed | EventStoreError]:
        real(commits)
        raise Interrupted

    def caught(command: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            try:
                return command()
            except Interrupted as interrupted:
                return interrupted

        return run

    monkeypatch.setattr(replica_of(one)._shared, "commit_many", committed_then_interrupted)
    results = in_one_group(one, [caught(append(one, key, f"{key} sent")) for key in "abc"])
    monkeypatch.undo()
    assert sorted(type(result).__name__ for result in results) == ["Interrupted", "StoreUnavailable",
                                                                  "StoreUnavailable"]
    assert all(MAY_OR_MAY_NOT in str(result) for result in results if isinstance(result, StoreUnavailable))
    replica_of(one).catch_up()  # rather than wait for the notification of the commit
    for key in "abc":
        assert texts(one, key) == [f"{key} first", f"{key} sent"]  # the call had committed them all
    same_everywhere(one, open_host("fresh"), "abc")


def test_a_command_that_shares_nothing_runs_again_when_its_group_was_rolled_back_without_spending_an_attempt(
        open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("a", user("a first"))
    one.append("b", user("b first"))
    one.set_session_name("b", "named")
    stale(one, monkeypatch)
    two.append("x", user("elsewhere"))  # one's command on a goes to the server at another position than one's
    monkeypatch.setattr(replica_module, "ATTEMPTS", 1)  # only a refusal of the write itself spends an attempt
    calls = record_calls(one, monkeypatch)
    results = in_one_group(one, [append(one, "a", "a from one"), lambda: one.set_session_name("b", "named")])
    assert calls[0] == ["Committed"]  # the name was already b's: nothing to send, but decided in a rolled-back group
    assert results == [2, None]
    assert one.get_session_name("b") == "named"
    same_everywhere(one, open_host("fresh"), "abx")
