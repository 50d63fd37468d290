"""Group commit: bodies that arrive while a commit is in flight are committed together, each in its own
nested transaction, so one that fails is rolled back alone and its caller gets its own error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from eventstore import ChatMessage, Durability, SessionStore, StoreFull, WrongExpectedVersion
from eventstore.storage import Space, WriteTransaction
from eventstore.storage.lmdb import Environment

from conftest import while_a_write_holds_the_lock

Body = Callable[[WriteTransaction], object]


class Refused(Exception):
    """What an injected failure raises."""


def queued(lmdb_environment: Environment) -> int:
    """How many bodies wait for the writers' lock (a look inside, so that a test can form a group for sure)."""
    return len(lmdb_environment._group._queued)


def in_one_group(lmdb_environment: Environment, bodies: list[Body]) -> list[tuple[bool, object]]:
    """Run ``bodies`` from one thread each while a first write holds the lock, so that the next leader
    commits them as one group; each caller's (ok, result or exception)."""
    def write(body: Body) -> Callable[[], object]:
        return lambda: (True, lmdb_environment.write(body))

    results = while_a_write_holds_the_lock(lmdb_environment.write, [write(body) for body in bodies],
                                           lambda: queued(lmdb_environment))
    return [result if isinstance(result, tuple) else (False, result) for result in results]


def put_and_report(space: Space, key: bytes, fail: bool = False) -> Body:
    def body(txn: WriteTransaction) -> int:
        txn.put(space, key, b"value")
        if fail:
            raise Refused(key.decode())
        return txn.snapshot_id()

    return body


def test_a_failing_body_is_rolled_back_alone_and_its_caller_gets_its_error(lmdb_environment: Environment) -> None:
    space = lmdb_environment.space("test")
    keys = [f"key-{index:02}".encode() for index in range(12)]
    failing = {key for index, key in enumerate(keys) if index % 3 == 1}
    outcomes = in_one_group(lmdb_environment, [put_and_report(space, key, key in failing) for key in keys])

    with lmdb_environment.read() as txn:
        stored = {key for key, _ in txn.scan(space)}
    assert stored == set(keys) - failing
    for key, (ok, value) in zip(keys, outcomes):
        if key in failing:
            assert not ok and isinstance(value, Refused) and str(value) == key.decode()
        else:
            assert ok
    # One transaction for the whole group: nested transactions share their parent's id.
    assert len({value for ok, value in outcomes if ok}) == 1


def test_a_group_that_fills_the_map_grows_it_and_commits_everyone(lmdb_environment: Environment) -> None:
    space = lmdb_environment.space("big")
    size_before = lmdb_environment._env.info()["map_size"]
    chunk = b"x" * (12 << 20)

    def big(key: bytes) -> Body:
        def body(txn: WriteTransaction) -> int:
            txn.put(space, key, chunk)
            return len(chunk)
        return body

    keys = [f"big-{index}".encode() for index in range(8)]  # 96 MiB: more than the first map
    outcomes = in_one_group(lmdb_environment, [big(key) for key in keys])

    assert outcomes == [(True, len(chunk))] * len(keys)
    assert lmdb_environment._env.info()["map_size"] > size_before
    with lmdb_environment.read() as txn:
        assert sorted(txn.scan_keys(space)) == keys


def test_at_the_size_cap_the_bodies_that_fit_still_commit(tmp_path: Path) -> None:
    (tmp_path / "capped").mkdir()
    capped = Environment.acquire(tmp_path / "capped", durability=Durability.OFF, max_size=8 << 20)
    try:
        space = capped.space("big")
        chunk = b"y" * (3 << 20)

        def big(key: bytes) -> Body:
            def body(txn: WriteTransaction) -> bytes:
                txn.put(space, key, chunk)
                return key
            return body

        keys = [f"big-{index}".encode() for index in range(4)]  # 12 MiB for a cap of 8
        outcomes = in_one_group(capped, [big(key) for key in keys])

        committed = [value for ok, value in outcomes if ok]
        refused = [value for ok, value in outcomes if not ok]
        assert committed and refused
        assert all(isinstance(error, StoreFull) for error in refused)
        with capped.read() as txn:
            assert sorted(txn.scan_keys(space)) == sorted(committed)  # type: ignore[type-var]
    finally:
        capped.release()


def test_an_interrupt_in_a_group_reaches_the_leader_and_the_others_commit_on_retry(
        lmdb_environment: Environment) -> None:
    space = lmdb_environment.space("test")
    runs: list[bytes] = []
    interrupted: list[BaseException] = []

    def interrupt_once(txn: WriteTransaction) -> str:
        runs.append(b"interrupting")
        txn.put(space, b"interrupting", b"1")
        if runs.count(b"interrupting") == 1:
            raise KeyboardInterrupt
        return "ran again"

    def leader_body(txn: WriteTransaction) -> None:
        txn.put(space, b"leader", b"1")

    holding, release = threading.Event(), threading.Event()

    def blocker(txn: WriteTransaction) -> None:
        holding.set()
        release.wait()

    results: dict[str, object] = {}

    def call(name: str, body: Body) -> None:
        try:
            results[name] = lmdb_environment.write(body)
        except BaseException as exc:  # the interrupt lands in the thread that led the group
            interrupted.append(exc)

    first = threading.Thread(target=lmdb_environment.write, args=(blocker,))
    first.start()
    holding.wait()
    others = [threading.Thread(target=call, args=(name, body)) for name, body in
              [("leader", leader_body), ("interrupting", interrupt_once),
               ("plain", put_and_report(space, b"plain"))]]
    for thread in others:
        thread.start()
        while queued(lmdb_environment) < others.index(thread) + 1:
            time.sleep(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join()

    assert len(interrupted) == 1 and isinstance(interrupted[0], KeyboardInterrupt)
    assert "leader" not in results  # the first queued thread led the group, and got the interrupt
    assert results["interrupting"] == "ran again"
    assert "plain" in results
    with lmdb_environment.read() as txn:
        assert sorted(txn.scan_keys(space)) == [b"interrupting", b"plain"]


def test_threads_appending_with_conflicts_commit_the_others_gap_free(store_path: Path) -> None:
    threads, calls = 16, 25
    acknowledged: dict[str, list[int]] = {}
    conflicts: list[str] = []
    with SessionStore(store_path, durable=False) as store:

        def writer(index: int) -> None:
            key = f"writer-{index}"
            versions = acknowledged.setdefault(key, [])
            for call in range(calls):
                # Every third writer claims a version it cannot have half of the time.
                expected = call + 1000 if index % 3 == 0 and call % 2 else len(versions)
                try:
                    versions.append(store.append(key, ChatMessage("user", f"{index}:{call}"),
                                                 expected_version=expected))
                except WrongExpectedVersion:
                    conflicts.append(key)

        workers = [threading.Thread(target=writer, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        events = list(store.events())
        assert [event.position for event in events] == list(range(1, len(events) + 1))
        assert len(events) == sum(map(len, acknowledged.values()))
        assert len(conflicts) == sum(calls // 2 for index in range(threads) if index % 3 == 0)
        for key, versions in acknowledged.items():
            assert versions == list(range(1, len(versions) + 1))
            assert [message.content for message in store.load(key)] == [
                event.event.message.content for event in events if event.session_key == key]
        assert store.verify().ok
