"""A command whose replica is still behind the head it heard of once it holds the replica's lock again (commits came
while it caught up and waited for the lock): it decides on the replica as it stands and sends its call without the
lock, then the catch-up brings its events and those before them, each once. Reading the server under the lock to
decide after those commits held the host's other writers up through a round trip, and the host behind the other took
it most: it fell further behind (docs/postgres.md, limits)."""

from __future__ import annotations

import threading

import pytest

from eventstore import ChatMessage, SessionStore, WrongExpectedVersion
from eventstore.sharedlog import Commit

from test_postgres_catch_up_apart import before_the_first_write, replicated_positions
from test_postgres_store import heard, listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def after_the_catch_up_apart(host: SessionStore, monkeypatch: pytest.MonkeyPatch, then: object) -> None:
    """Run ``then`` once, right after the host's first catch-up to a head it heard of (a command's, behind)."""
    replica = replica_of(host)
    real = replica.catch_up
    pending = [then]

    def catch_up(heard: int | None = None) -> int:
        applied = real(heard)
        if heard is not None and pending:
            pending.pop()()  # type: ignore[operator]
        return applied

    monkeypatch.setattr(replica, "catch_up", catch_up)


def calls_under_the_lock(host: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, for each call of the host's shared log to commit, whether it held the replica's write lock."""
    replica = replica_of(host)
    engine, shared = replica.replica, replica._shared
    real = shared.commit_many
    held: list[bool] = []

    def commit_many(commits: list[Commit]) -> object:
        held.append(engine._writing_thread == threading.get_ident())  # type: ignore[attr-defined]
        return real(commits)

    monkeypatch.setattr(shared, "commit_many", commit_many)
    return held


def two_hosts_behind(open_host, monkeypatch, catching_up: object) -> tuple[SessionStore, SessionStore]:
    """Two hosts; the next write of the first finds commits of the second it lacks, and ``catching_up`` runs once it
    caught up with them (as the command waits for the replica's lock again)."""
    one, two = open_host("one"), open_host("two")
    one.append("mine", ChatMessage.user("first"))
    two.append("theirs", ChatMessage.user("before"))
    heard(one, two)
    listening(one)

    def while_one_waits_for_its_lock() -> None:
        two.append("theirs", ChatMessage.user("while one waited"))
        heard(one, two)

    before_the_first_write(one, monkeypatch, while_one_waits_for_its_lock)
    after_the_catch_up_apart(one, monkeypatch, catching_up)
    return one, two


def test_a_command_still_behind_after_its_catch_up_sends_its_call_without_the_replica_s_lock(open_host, monkeypatch):
    hosts: list[SessionStore] = []

    def while_one_catches_up() -> None:
        hosts[1].append("theirs", ChatMessage.user("while one caught up"))
        heard(*hosts)

    one, two = two_hosts_behind(open_host, monkeypatch, while_one_catches_up)
    hosts += [one, two]
    held = calls_under_the_lock(one, monkeypatch)
    positions = replicated_positions(one)
    assert one.append("mine", ChatMessage.user("second")) == 2
    assert held == [False]  # one call, made without the replica's write lock
    assert positions == [2, 3, 4, 5]  # each once: the catch-up apart, then the commit during it and its own
    assert [m.content for m in one.load("mine")] == ["first", "second"]
    assert [m.content for m in one.load("theirs")] == ["before", "while one waited", "while one caught up"]
    assert one.verify().ok and two.verify().ok


def test_a_stale_command_the_server_refuses_is_decided_again_on_the_caught_up_replica(open_host, monkeypatch):
    hosts: list[SessionStore] = []

    def while_one_catches_up() -> None:  # the session the command writes moves on meanwhile
        hosts[1].append("mine", ChatMessage.assistant("theirs, in my session"))
        heard(*hosts)

    one, two = two_hosts_behind(open_host, monkeypatch, while_one_catches_up)
    hosts += [one, two]
    held = calls_under_the_lock(one, monkeypatch)
    assert one.append("mine", ChatMessage.user("second")) == 3  # refused at version 1, decided again after version 2
    assert held == [False, True]  # the stale call without the lock; the one decided on the caught-up replica with it
    assert [m.content for m in one.load("mine")] == ["first", "theirs, in my session", "second"]
    with pytest.raises(WrongExpectedVersion):  # a caller's expected version is still checked against the current one
        one.append("mine", ChatMessage.user("late"), expected_version=2)
    assert one.verify().ok
