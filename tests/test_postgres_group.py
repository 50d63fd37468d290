"""Group commit per host: the commands a host's threads (or async tasks) give at once go to the server in one call,
each accepted or refused alone, and none is acknowledged before the server committed it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from eventstore import AsyncSessionStore, ChatMessage, SessionStore, StoreUnavailable
from eventstore.sharedlog import Commit, Committed
from eventstore.sharedlog.postgres import PostgresLog

from conftest import waited_for, while_a_write_holds_the_lock
from test_postgres_store import heard, listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

GATE_SECONDS = 30  # how long a test waits for threads it released; they normally take milliseconds


def texts(store: SessionStore, key: str) -> list[str]:
    return [message.content for message in store.load(key)]


def record_calls(host: SessionStore, monkeypatch: pytest.MonkeyPatch,
                 before: Callable[[], None] = lambda: None) -> list[list[str]]:
    """The kind of each answer of each call of the host's shared log to commit several commands (``before`` runs
    first in each call)."""
    shared = replica_of(host)._shared
    real = shared.commit_many
    calls: list[list[str]] = []

    def commit_many(commits: Sequence[Commit]) -> list[Committed | Exception]:
        before()
        answers = real(commits)
        calls.append([type(answer).__name__ for answer in answers])
        return list(answers)

    monkeypatch.setattr(shared, "commit_many", commit_many)
    return calls


async def a_held_call(store: AsyncSessionStore, monkeypatch: pytest.MonkeyPatch, key: str, text: str
                      ) -> tuple[asyncio.Task[int], threading.Event, list[list[str]]]:
    """Make the async store's calls to the server wait at a gate (after a warm-up), and start an append of
    ``text`` to ``key`` that is in such a call: the append's task, the gate, and the calls (``record_calls``)."""
    await store.append("warm", user("up"))
    listening(store._store)
    in_call, gate = threading.Event(), threading.Event()

    def held() -> None:
        in_call.set()
        assert gate.wait(GATE_SECONDS)

    calls = record_calls(store._store, monkeypatch, held)
    first = asyncio.create_task(store.append(key, user(text)))
    while not in_call.is_set():
        await asyncio.sleep(0.001)
    return first, gate, calls


def queued_commands(host: SessionStore) -> Callable[[], int]:
    """How many of the host's commands wait in its replica's group queue, for the next leader to commit."""
    replica = replica_of(host)
    group = replica.replica._group  # type: ignore[attr-defined]

    def queued() -> int:
        return len([member for member in group._queued if member.before_commit == replica._ship])

    return queued


def in_one_group(host: SessionStore, commands: list[Callable[[], object]]) -> list[object]:
    """Run each command on a thread of its own while a write holds the replica's lock, so that they queue and the
    next leader commits them as one group; what each returned, or raised."""
    engine = replica_of(host).replica
    queued = queued_commands(host)

    def in_turn(index: int, command: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:  # queued after the commands before it: the group decides them in the order given
            deadline = time.monotonic() + GATE_SECONDS
            while queued() < index and time.monotonic() < deadline:
                time.sleep(0.001)
            return command()

        return run

    return while_a_write_holds_the_lock(engine.write, [in_turn(index, command) for index, command in
                                                      enumerate(commands)], queued, timeout=GATE_SECONDS)


def user(text: str) -> ChatMessage:
    return ChatMessage.user(text)


def test_a_refused_command_among_accepted_ones_is_decided_again_and_the_others_commit(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    for key in "abc":
        one.append(key, user(f"{key} first"))
    listening(one)
    # As while the notification of two's commit is on its way: one decides without catching up first.
    monkeypatch.setattr(replica_of(one), "_heard_by_commands", lambda: 0)
    two.append("b", user("b from two"))  # one's replica has not caught up: its command on b is refused once
    calls = record_calls(one, monkeypatch)
    def command(key: str) -> Callable[[], object]:
        return lambda: one.append(key, user(f"{key} from one"))

    results = in_one_group(one, [command(key) for key in "abc"])
    assert results == [2, 3, 2]
    assert sorted(calls[0]) == ["Committed", "Committed", "WrongExpectedVersion"]  # one call for the group
    assert calls[1:] == [["Committed"]]  # b, decided again
    assert texts(one, "b") == ["b first", "b from two", "b from one"]
    fresh = open_host("fresh")
    for key in "abc":
        assert texts(fresh, key) == texts(one, key)
    assert one.verify().ok and fresh.verify().ok


def test_a_failure_of_the_groups_call_reaches_every_waiting_command(open_host, monkeypatch):
    one = open_host("one")
    for key in "abc":
        one.append(key, user(f"{key} first"))
    listening(one)
    shared = replica_of(one)._shared

    def unreachable(commits: Sequence[Commit]) -> list[Committed | Exception]:
        raise StoreUnavailable("PostgreSQL cannot be reached (a test cut it off)")

    monkeypatch.setattr(shared, "commit_many", unreachable)
    def command(key: str) -> Callable[[], object]:
        return lambda: one.append(key, user(f"{key} lost"))

    results = in_one_group(one, [command(key) for key in "abc"])
    assert [type(result) for result in results] == [StoreUnavailable] * 3
    monkeypatch.undo()
    for key in "abc":
        assert texts(one, key) == [f"{key} first"]  # nothing of the group was kept on the replica
    assert texts(open_host("fresh"), "a") == ["a first"]
    assert one.append("a", user("a again")) == 2


def test_no_command_is_acknowledged_before_the_server_committed_it(open_host, monkeypatch, postgres_url):
    one = open_host("one")
    one.append("warm", user("up"))
    listening(one)
    in_call, gate = threading.Event(), threading.Event()

    def held() -> None:
        in_call.set()
        assert gate.wait(GATE_SECONDS)

    calls = record_calls(one, monkeypatch, held)
    finished: list[str] = []

    def command(key: str) -> None:
        one.append(key, user(f"{key} message"))
        finished.append(key)

    threads = [threading.Thread(target=command, args=(key,)) for key in "abcd"]
    # The first alone into the held call: started together, a loaded machine may let a second join its group.
    threads[0].start()
    assert in_call.wait(GATE_SECONDS)
    for thread in threads[1:]:
        thread.start()
    queued = queued_commands(one)
    # The other three wait in the queue; a command that did not wait for its call to be acknowledged would be gone.
    waited_for(lambda: queued() == 3, "the three commands behind the held call never queued")
    assert finished == []
    with SessionStore(postgres_url, cache=Path(replica_of(one).path).parent / "observer") as observer:
        assert observer.list_sessions() == ["warm"]  # nothing reached the server while its call is held
    gate.set()
    for thread in threads:
        thread.join()
    assert sorted(finished) == list("abcd")
    assert sum(map(len, calls)) == 4 and len(calls) < 4  # the commands that queued behind the first went together
    assert sorted(open_host("fresh").list_sessions()) == ["a", "b", "c", "d", "warm"]


def test_a_cancelled_async_command_leaves_the_others_and_the_store_whole(postgres_url, tmp_path, monkeypatch):
    async def main() -> None:
        async with AsyncSessionStore(postgres_url, cache=tmp_path / "async") as store:
            first, gate, calls = await a_held_call(store, monkeypatch, "a", "a message")
            others = [asyncio.create_task(store.append(key, user(f"{key} message"))) for key in "bcd"]
            queued, deadline = queued_commands(store._store), time.monotonic() + GATE_SECONDS
            # Cancelled before its thread starts the call, a command writes nothing: wait until all three wait
            # for the call under way (a writer thread can take longer than any fixed pause to start).
            while queued() < len(others):
                assert time.monotonic() < deadline, "the commands never queued behind the call under way"
                await asyncio.sleep(0.001)
            others[0].cancel()
            gate.set()
            assert await first == 1
            assert [await task for task in others[1:]] == [1, 1]
            with pytest.raises(asyncio.CancelledError):
                await others[0]
            deadline = time.monotonic() + GATE_SECONDS
            while sum(map(len, calls)) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the cancelled command's thread carries on
            assert sum(map(len, calls)) == 4
            assert await store.append("b", user("b again")) == 2  # the cancelled command was committed, whole
            assert [m.content for m in await store.load("b")] == ["b message", "b again"]
            assert (await store.verify()).ok

    asyncio.run(main())
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        assert sorted(fresh.list_sessions()) == ["a", "b", "c", "d", "warm"]


def test_a_session_whose_turn_another_writer_holds_does_not_hold_up_the_groups_other_commands(
        open_host, postgres_url, monkeypatch):
    one = open_host("one")
    for key in "ab":
        one.append(key, user(f"{key} first"))
    listening(one)
    holder = PostgresLog(postgres_url)  # another host's writer, taking a's turn
    taken, b_done, released = threading.Event(), threading.Event(), threading.Event()
    b_done_in_turn: list[bool] = []

    def hold_the_turn() -> None:
        with holder.turn(["a"]):
            taken.set()
            b_done_in_turn.append(b_done.wait(GATE_SECONDS))
        released.set()

    def command_b() -> object:
        version = one.append("b", user("b goes ahead"))
        b_done.set()
        return version

    turn = threading.Thread(target=hold_the_turn)
    turn.start()
    try:
        assert taken.wait(GATE_SECONDS)
        calls = record_calls(one, monkeypatch)
        results = in_one_group(one, [lambda: one.append("a", user("a waits for the turn")), command_b])
    finally:
        b_done.set()
        turn.join()
        holder.close()
    assert results == [2, 2]
    assert b_done_in_turn == [True]  # b committed while a's turn was held
    assert sorted(calls[0]) == ["Committed", "WrongExpectedVersion"]  # a was refused at once, not waited for
    assert texts(one, "a") == ["a first", "a waits for the turn"]


def test_a_host_that_heard_of_another_hosts_commit_catches_up_before_deciding(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("mine", user("first"))
    listening(one)
    two.append("theirs", user("from two"))
    heard(one, two)
    replica = replica_of(one)
    settled: list[object] = []
    real_settle = replica._settle

    def settle(records: object, head: int | None) -> None:
        settled.append(records)
        real_settle(records, head)  # type: ignore[arg-type]

    monkeypatch.setattr(replica, "_settle", settle)
    calls = record_calls(one, monkeypatch)
    assert one.append("mine", user("second")) == 2
    assert calls == [["Committed"]]
    assert settled == []  # decided on the caught-up replica: kept as it was, not rolled back and fetched again
    assert texts(one, "theirs") == ["from two"]


def test_a_command_that_hears_of_another_hosts_commit_once_it_holds_the_replica_decides_after_it(
        open_host, monkeypatch):
    """As when the notification came while the command waited for the replica's write lock: it replicates the
    commit under that lock, in a transaction of its own, and decides after it, instead of being recorded elsewhere
    and rolled back."""
    one, two = open_host("one"), open_host("two")
    one.append("mine", user("first"))
    listening(one)
    replica = replica_of(one)
    two.append("theirs", user("from two"))
    heard(one, two)
    settled: list[object] = []
    monkeypatch.setattr(replica, "_settle", lambda records, head: settled.append(records))
    calls = record_calls(one, monkeypatch)
    assert one.append("mine", user("second")) == 2
    assert calls == [["Committed"]]
    assert settled == []  # kept as decided: the replica held two's commit before the command's events
    assert texts(one, "theirs") == ["from two"] and texts(one, "mine") == ["first", "second"]
    fresh = open_host("fresh")
    assert [texts(fresh, key) for key in ("mine", "theirs")] == [texts(one, key) for key in ("mine", "theirs")]
    assert one.verify().ok and fresh.verify().ok
