"""A command whose replica lacks commits it heard of, once it holds the replica's lock: on its first attempt it runs
nothing, catches up (reading the server without the lock, committing what it replicates in transactions of their
own, kept whatever becomes of the command), then decides on the caught-up replica; a replica a batch or more behind
on a later attempt commits each full batch apart. Replicated in the command's transaction, those commits were rolled
back with it when another host's commit during its call sent it elsewhere on the server, and replicated again by
the catch-up after it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import attrs
import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.events import RecordedEvent
from eventstore.services import replica as replica_module
from eventstore.storage import WriteTransaction

from test_postgres_group import record_calls
from test_postgres_store import heard, listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def replicated_positions(host: SessionStore) -> list[int]:
    """From now on, the position of each event the host's replica replicates, in order (rolled back ones too)."""
    replica = replica_of(host)
    binding = replica._binding
    assert binding is not None
    positions: list[int] = []

    def replicate(txn: WriteTransaction, events: Sequence[RecordedEvent]) -> int:
        positions.extend(event.position for event in events)
        return binding.replicate(txn, events)

    replica._binding = attrs.evolve(binding, replicate=replicate)
    return positions


def before_the_first_write(host: SessionStore, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None]) -> None:
    """Run ``then`` once, as the host's next write asks for the replica's lock (after whatever it did before)."""
    engine = replica_of(host).replica
    real_write = engine.write
    pending = [then]

    def write(*arguments: object, **options: object) -> object:
        if pending:
            pending.pop()()
        return real_write(*arguments, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "write", write)


def test_commits_replicated_under_the_lock_are_kept_when_the_command_then_goes_elsewhere(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("mine", ChatMessage.user("first"))
    two.append("theirs", ChatMessage.user("before"))
    heard(one, two)
    assert [m.content for m in one.load("theirs")] == ["before"]
    listening(one)

    def while_one_waits_for_its_lock() -> None:
        for text in ("while one waited", "and again"):
            two.append("theirs", ChatMessage.user(text))
        heard(one, two)

    before_the_first_write(one, monkeypatch, while_one_waits_for_its_lock)
    during = [lambda: two.append("theirs", ChatMessage.user("during one's call"))]
    calls = record_calls(one, monkeypatch, lambda: during.pop()() if during else None)
    positions = replicated_positions(one)
    assert one.append("mine", ChatMessage.user("second")) == 2
    assert calls == [["Committed"]]  # one call, accepted, at a position the replica had not given the command
    assert positions == [3, 4, 5, 6]  # the commits heard of once, then the one during the call and the command's own
    assert [m.content for m in one.load("mine")] == ["first", "second"]
    assert [m.content for m in one.load("theirs")] == ["before", "while one waited", "and again", "during one's call"]
    assert one.verify().ok


def test_a_replica_a_batch_or_more_behind_catches_up_apart_until_the_last_batch(open_host, monkeypatch):
    """Each batch is committed apart, by the catch-up before the command decides; it then goes where the replica
    put it."""
    monkeypatch.setattr(replica_module, "BATCH", 2)
    one, two = open_host("one"), open_host("two")
    one.append("mine", ChatMessage.user("first"))
    heard(one, two)
    listening(one)

    def while_one_waits_for_its_lock() -> None:
        for number in range(5):
            two.append("theirs", ChatMessage.user(f"theirs {number}"))
        heard(one, two)

    before_the_first_write(one, monkeypatch, while_one_waits_for_its_lock)
    calls = record_calls(one, monkeypatch)
    positions = replicated_positions(one)
    assert one.append("mine", ChatMessage.user("second")) == 2
    assert calls == [["Committed"]]
    assert positions == [2, 3, 4, 5, 6]  # each once: nothing was rolled back
    assert [m.content for m in one.load("theirs")] == [f"theirs {number}" for number in range(5)]
    assert [m.content for m in one.load("mine")] == ["first", "second"]
    assert one.verify().ok


def test_a_command_behind_the_head_it_heard_of_reads_the_server_without_the_replicas_write_lock(
        open_host, monkeypatch):
    """The host's other writers (its threads, and its processes, which share the replica's lock) go on meanwhile."""
    one, two = open_host("one"), open_host("two")
    one.append("mine", ChatMessage.user("first"))
    heard(one, two)
    listening(one)
    engine = replica_of(one).replica
    shared = replica_of(one)._shared
    under_the_lock: list[bool] = []
    real_read = shared.read

    def read(after: int, limit: int) -> object:
        under_the_lock.append(engine._writing_thread == threading.get_ident())  # type: ignore[attr-defined]
        return real_read(after, limit)

    def while_one_waits_for_its_lock() -> None:
        two.append("theirs", ChatMessage.user("while one waited"))
        heard(one, two)

    before_the_first_write(one, monkeypatch, while_one_waits_for_its_lock)
    monkeypatch.setattr(shared, "read", read)
    assert one.append("mine", ChatMessage.user("second")) == 2
    assert under_the_lock == [False]  # one read of the server, the catch-up's, outside the write transaction
    assert [m.content for m in one.load("theirs")] == ["while one waited"]
    assert one.verify().ok
