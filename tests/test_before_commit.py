"""The LMDB engine's step before a group's commit: it sees the outcomes of every body of its group, answers each
caller, and decides whether the group commits; a group holds the bodies of one such step only."""

from __future__ import annotations

from collections.abc import Callable

from eventstore.storage import Outcome, WriteTransaction
from eventstore.storage.lmdb import Environment

from conftest import while_a_write_holds_the_lock


class Step:
    """A ``before_commit`` that records the outcomes of each group it saw, answers ``answer(value)`` for each
    body that returned, and commits when ``commit`` says so."""

    def __init__(self, commit: bool = True) -> None:
        self.commit = commit
        self.groups: list[list[Outcome]] = []

    def __call__(self, outcomes: list[Outcome]) -> tuple[list[Outcome], bool]:
        self.groups.append(list(outcomes))
        return [(ok, ("answered", value) if ok else value) for ok, value in outcomes], self.commit


def writes_in_one_group(lmdb_environment: Environment, writes: list[tuple[bytes, Step | None]]) -> list[object]:
    """Each (key, step) written from a thread of its own while a first write holds the lock, so that they queue
    together; what each caller got (a result or the exception)."""
    space = lmdb_environment.space("test")

    def write(key: bytes, step: Step | None) -> Callable[[], object]:
        def body(txn: WriteTransaction) -> bytes:
            txn.put(space, key, b"value")
            return key

        return lambda: lmdb_environment.write(body, step)

    return while_a_write_holds_the_lock(lmdb_environment.write, [write(key, step) for key, step in writes],
                                        lambda: len(lmdb_environment._group._queued))


def stored(lmdb_environment: Environment) -> set[bytes]:
    space = lmdb_environment.space("test")
    with lmdb_environment.read() as txn:
        return set(txn.scan_keys(space))


def test_the_step_sees_its_group_once_and_answers_each_caller(lmdb_environment: Environment) -> None:
    step = Step()
    keys = [f"key-{index}".encode() for index in range(5)]
    results = writes_in_one_group(lmdb_environment, [(key, step) for key in keys])
    assert results == [("answered", key) for key in keys]
    assert [[value for _, value in group] for group in step.groups] == [keys]  # one call, in arrival order
    assert stored(lmdb_environment) == set(keys)


def test_a_group_holds_the_bodies_of_one_step_only(lmdb_environment: Environment) -> None:
    first, second = Step(), Step()
    writes: list[tuple[bytes, Step | None]] = [(b"a1", first), (b"b1", second), (b"n1", None), (b"a2", first),
                                               (b"b2", second), (b"n2", None)]
    results = writes_in_one_group(lmdb_environment, writes)
    assert results == [("answered", b"a1"), ("answered", b"b1"), b"n1", ("answered", b"a2"), ("answered", b"b2"), b"n2"]
    assert [[value for _, value in group] for group in first.groups] == [[b"a1", b"a2"]]
    assert [[value for _, value in group] for group in second.groups] == [[b"b1", b"b2"]]
    assert stored(lmdb_environment) == {b"a1", b"a2", b"b1", b"b2", b"n1", b"n2"}


def test_a_step_that_refuses_the_commit_writes_nothing_of_its_group_and_still_answers(lmdb_environment: Environment,
                                                                                      ) -> None:
    refusing = Step(commit=False)
    results = writes_in_one_group(lmdb_environment, [(b"r1", refusing), (b"kept", None), (b"r2", refusing)])
    assert results == [("answered", b"r1"), b"kept", ("answered", b"r2")]
    assert stored(lmdb_environment) == {b"kept"}
    alone: object = lmdb_environment.write(lambda txn: b"alone", refusing)
    assert alone == ("answered", b"alone")  # a lone body too
    assert refusing.groups[-1] == [(True, b"alone")]


def test_a_write_inside_a_write_of_the_same_thread_runs_its_step(lmdb_environment: Environment) -> None:
    step = Step(commit=False)
    space = lmdb_environment.space("test")
    def body(txn: WriteTransaction) -> bytes:
        txn.put(space, b"inner", b"v")
        return b"inner"

    with lmdb_environment._write_lock:  # as vacuum's reopening does: the thread holds the writers' lock
        inner: object = lmdb_environment.write(body, step)
    assert inner == ("answered", b"inner")
    assert step.groups == [[(True, b"inner")]]
    assert stored(lmdb_environment) == set()
