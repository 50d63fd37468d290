"""Concurrency: processes and threads writing and reading one store, py-lmdb's sharp edges, and
optimistic concurrency and idempotent retries.

Worker processes are ``tests/_reliability.py`` roles, started with ``subprocess``.
``EVENTSTORE_CONCURRENCY_OPS`` (default 120) sets the calls each writer thread makes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore import (
    ChatMessage,
    EventStoreError,
    SessionStore,
    StoreClosed,
    StoreFull,
    StoreReadOnly,
    StoreUsedAfterFork,
    WrongExpectedVersion,
)
from eventstore.storage import lmdb as _environment

from _reliability import Calls, Worker, check_log, consistency_problems, digest, snapshot_problems
from conftest import lmdb_storage

OPS = int(os.environ.get("EVENTSTORE_CONCURRENCY_OPS", "120"))


def _fork(child: Callable[[], int]) -> int:
    """Run ``child`` in a forked process; return its exit code (the child never returns here)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = child()
        except BaseException:  # reported through the exit code
            import traceback

            traceback.print_exc()
            code = 98
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _held_read(store: SessionStore) -> tuple[threading.Thread, threading.Event, threading.Event, list[Any]]:
    """Start a thread that holds one read transaction open (``verify`` calls its progress callback
    inside its read transaction) until the returned ``release`` event is set."""
    holding, release = threading.Event(), threading.Event()
    reports: list[Any] = []

    def progress(done: int, total: int) -> None:
        holding.set()
        release.wait(60)

    thread = threading.Thread(target=lambda: reports.append(store.verify(progress=progress)))
    thread.start()
    assert holding.wait(30), "the reader never started"
    return thread, holding, release, reports


# -- many writers and readers ---------------------------------------------------------


@pytest.mark.slow
def test_processes_and_threads_write_while_readers_check(tmp_path: Path) -> None:
    """3 processes x 3 threads (over two store objects each) append to private and shared sessions,
    while a reader process and two reader threads check consistency the whole time."""
    path = tmp_path / "store"
    SessionStore(path).close()
    logs, stop = tmp_path / "logs", tmp_path / "stop"
    reader = Worker("reader", {"path": str(path), "stop": str(stop)}, logs)
    writers = [Worker("threads", {"path": str(path), "wid": f"p{n}", "seed": n, "threads": 3, "ops": OPS}, logs)
               for n in range(3)]
    problems: list[str] = []
    passes = [0]

    def check_in_process() -> None:
        with SessionStore(path, durable=False) as store:
            previous: dict[str, int] = {}
            while not stop.exists():
                problems.extend(consistency_problems(store, previous))
                problems.extend(snapshot_problems(store))
                passes[0] += 1

    checkers = [threading.Thread(target=check_in_process) for _ in range(2)]
    for checker in checkers:
        checker.start()
    try:
        statuses = [writer.finish(120) for writer in writers]
    finally:
        stop.touch()
        for checker in checkers:
            checker.join(60)
    assert reader.finish(60) == 0, reader.stderr()
    assert statuses == [0, 0, 0], [writer.stderr() for writer in writers]
    calls = Calls()
    for writer in writers:
        calls.add(writer.records)
    assert calls.count() == 3 * 3 * OPS
    with SessionStore(path) as store:
        found = check_log(store, calls)
        report = store.verify()
    assert found["unacknowledged"] == 0 and found["calls"] == calls.count()
    assert found["events"] == calls.messages()
    assert report.ok, report.problems[:10]
    [(_, reader_passes, reader_problems, reader_problem_count)] = reader.of_kind("checked")
    assert reader_problem_count == 0, reader_problems
    assert problems == []
    assert reader_passes > 0 and passes[0] > 0
    print(f"concurrency: {found['events']} events from {calls.count()} calls; reader passes: "
          f"{reader_passes} in a process, {passes[0]} in threads")


@pytest.mark.slow
def test_compare_and_set_appends_race_without_loss(tmp_path: Path) -> None:
    """Processes and threads append with expected_version read just before: each append that returned
    owns the version it returned, no append is lost and nothing is appended twice."""
    path = tmp_path / "store"
    SessionStore(path).close()
    workers = [Worker("cas", {"path": str(path), "wid": f"c{n}", "seed": n, "key": "counter", "ops": OPS // 2},
                      tmp_path / "logs") for n in range(2)]
    thread_calls: list[list[Any]] = []
    conflicts = [0]

    def run(wid: str) -> None:
        with SessionStore(path, durable=False) as store:
            for seq in range(OPS // 2):
                while True:
                    version = store.session_at("counter").version
                    try:
                        new = store.append("counter", ChatMessage.user(f"{wid}|{seq}|0|1|"), expected_version=version)
                    except WrongExpectedVersion:
                        conflicts[0] += 1
                        continue
                    assert new == version + 1
                    thread_calls.append(["ack", wid, seq, "counter", new, 1])
                    break

    threads = [threading.Thread(target=run, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [worker.finish(120) for worker in workers] == [0, 0]
    calls = Calls()
    calls.add(thread_calls)
    for worker in workers:
        calls.add(worker.records)
    assert calls.count() == 5 * (OPS // 2)
    with SessionStore(path) as store:
        found = check_log(store, calls)
        assert store.session_at("counter").version == calls.count() == found["events"]
    versions = sorted(version for acked in calls.acked.values() for _, version, _ in acked.values())
    assert versions == list(range(1, calls.count() + 1))
    print(f"compare-and-set: {calls.count()} appends, {conflicts[0]} conflicts in threads, "
          f"{sum(w.of_kind('conflicts')[0][1] for w in workers)} in processes")


# -- long readers and file growth -----------------------------------------------------


def test_long_read_does_not_block_writers(tmp_path: Path) -> None:
    """While one thread holds a read transaction, a writer process and a writer thread both finish;
    the reader keeps the snapshot it started with."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user(str(n)) for n in range(50)])
        thread, _, release, reports = _held_read(store)
        try:
            writer = Worker("writer", {"path": str(path), "wid": "w", "seed": 1, "keys": ["a"], "ops": 200,
                                       "durable": True}, tmp_path / "logs")
            assert writer.finish(60) == 0, writer.stderr()
            done = threading.Event()

            def write_then_signal() -> None:
                for n in range(200):
                    store.append("b", ChatMessage.user(str(n)))
                done.set()
            writing = threading.Thread(target=write_then_signal)
            writing.start()
            assert done.wait(60), "a writer thread was blocked by the reader"
            assert thread.is_alive(), "the read ended before the writers did"
        finally:
            release.set()
            thread.join(60)
        assert reports[0].ok and reports[0].events_checked == 50
        assert len(store.load("b")) == 200 and store.verify().ok


def _write_while_a_read_is_held(store: SessionStore, wait: float) -> tuple[bool, list[BaseException], bool]:
    """Append 8 large messages in one thread while another holds a read open for ``wait`` seconds.

    Returns whether the writer finished within ``wait``, its failures, and whether it finished at all.
    """
    thread, _, release, _ = _held_read(store)
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(8):
                store.append("big", ChatMessage.user(str(n) * 500_000))
            done.set()
        except BaseException as exc:
            failures.append(exc)

    writing = threading.Thread(target=write)
    writing.start()
    try:
        in_time = done.wait(wait)
    finally:
        release.set()
        thread.join(60)
        writing.join(60)
    return in_time, failures, done.is_set()


def test_long_read_does_not_block_a_writer(tmp_path: Path) -> None:
    """A long read in another thread does not hold up writers (within the map, nothing waits)."""
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("a", ChatMessage.user("x"))
        assert (True, [], True) == _write_while_a_read_is_held(store, 5)
        assert len(store.load("big")) == 8


@pytest.mark.slow
def test_map_growth_waits_for_a_long_read_then_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Growing the map needs a moment with no transaction open in the process (LMDB remaps the file):
    a writer that must grow waits for a long read in another thread to end, then commits, losing nothing."""
    monkeypatch.setattr(_environment, "_INITIAL_MAP_SIZE", 1 << 20)
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("a", ChatMessage.user("x"))
        initial = lmdb_storage(store)._env.info()["map_size"]
        assert (False, [], True) == _write_while_a_read_is_held(store, 1)
        assert lmdb_storage(store)._env.info()["map_size"] > initial
        assert [m.content for m in store.load("big")] == [str(n) * 500_000 for n in range(8)]
        assert store.verify().ok


@pytest.mark.slow
def test_file_growth_is_bounded_with_brief_readers(tmp_path: Path) -> None:
    """Pages a brief reader pinned are reused once it lets go: over many hold-and-release cycles the
    file grows no faster than the log itself does."""
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("churn", [ChatMessage.user("m" * 4000) for _ in range(15)])

        def updates(count: int) -> None:
            for n in range(count):
                store.update_last("churn", ChatMessage.user(str(n) * 4000))

        updates(150)
        size = store._environment.file_size()
        updates(150)
        baseline = store._environment.file_size() - size  # growth of 150 updates with no reader
        sizes = []
        for _ in range(10):
            thread, _, release, _ = _held_read(store)
            updates(30)  # these pin what they free until the reader lets go
            release.set()
            thread.join(60)
            updates(120)
            sizes.append(store._environment.file_size())
        pinned_growth = sizes[2] - size
        steady = sizes[-1] - sizes[2]
        print(f"file growth: {baseline} bytes per 150 updates without a reader, {steady} over the last 7 cycles")
        assert steady <= 7 * baseline * 1.5 + (1 << 20), (baseline, pinned_growth, sizes)


# -- py-lmdb's sharp edges ------------------------------------------------------------


def test_same_store_opened_twice_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several store objects on one path (spelled in different ways) share one environment: all work,
    and closing any of them leaves the others usable."""
    path = tmp_path / "store"
    first = SessionStore(path)
    (tmp_path / "x").mkdir()
    (tmp_path / "link").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    others = [SessionStore(str(path)), SessionStore("store"), SessionStore(tmp_path / "x" / ".." / "store"),
              SessionStore(tmp_path / "link")]
    stores = [first, *others]
    for n, store in enumerate(stores):
        store.append("s", ChatMessage.user(str(n)))
    expected = [ChatMessage.user(str(n)) for n in range(len(stores))]
    for store in stores:
        assert store.load("s") == expected
    for closing in range(len(stores) - 1):
        stores[closing].close()
        for store in stores[closing + 1:]:
            assert store.load("s")[:len(stores)] == expected
            store.append("t", ChatMessage.user("after close"))
        with pytest.raises(StoreClosed):
            stores[closing].load("s")
    stores[-1].close()
    with SessionStore(path) as store:
        assert store.load("s") == expected and len(store.load("t")) == 10
        assert store.verify().ok


def test_second_open_with_a_size_cap_is_honoured_or_refused(tmp_path: Path) -> None:
    """A second store object on an open path asks for a size cap: it gets it, or a clear error."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as first:
        first.append("a", ChatMessage.user("x"))
        try:
            capped = SessionStore(path, durable=False, max_size=1 << 20)
        except EventStoreError:
            return  # refused clearly: fine
        with capped, pytest.raises(StoreFull):
            for n in range(40):
                capped.append("b", ChatMessage.user(str(n) * 100_000))


def test_second_open_read_only_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with SessionStore(path) as writable, SessionStore(path, readonly=True) as readonly:
        writable.append("a", ChatMessage.user("x"))
        assert readonly.load("a") == [ChatMessage.user("x")]
        before = digest(writable)
        with pytest.raises(StoreReadOnly):
            readonly.append("a", ChatMessage.user("y"))
        assert digest(writable) == before
        writable.append("a", ChatMessage.user("z"))
        assert len(readonly.load("a")) == 2


def test_forked_child_cannot_use_its_parents_store(tmp_path: Path) -> None:
    """A child forked from a process with the store open gets StoreUsedAfterFork from every call, and
    the parent's store carries on unharmed."""
    with SessionStore(tmp_path / "store") as store:
        store.append("a", ChatMessage.user("x"))
        before = digest(store)

        def child() -> int:
            calls: list[Callable[[], object]] = [
                lambda: store.load("a"), lambda: store.list_sessions(), lambda: store.verify(),
                lambda: store.append("a", ChatMessage.user("from the child")),
                lambda: store.append_many("b", [ChatMessage.user("y")]), lambda: store.rebuild_projections(),
                lambda: store.vacuum()]
            refused = 0
            for call in calls:
                try:
                    call()
                except StoreUsedAfterFork:
                    refused += 1
            store.close()  # closing in the child must not close the parent's environment
            return 0 if refused == len(calls) else 10 + refused

        assert _fork(child) == 0
        assert digest(store) == before
        store.append("a", ChatMessage.user("parent goes on"))
        assert [m.content for m in store.load("a")] == ["x", "parent goes on"]
        assert store.verify().ok


def _lmdb(store: SessionStore) -> _environment.Environment:
    """The store's LMDB environment, whose reader table and locks the fork tests look at."""
    assert isinstance(store._environment, _environment.Environment)
    return store._environment


def _child_writes_its_own(path: Path, inherited: SessionStore, start: Any, count: int) -> int:
    """What a forked child does: the inherited store refuses, a store of its own reads and writes.

    Returns the exit code: 0 if everything held, else which check failed.
    """
    try:
        inherited.load("parent")
        return 11
    except StoreUsedAfterFork:
        pass
    with SessionStore(path) as own:
        if [m.content for m in own.load("parent")][:1] != ["before fork"]:
            return 12
        start.wait()
        for n in range(count):
            own.append("child", ChatMessage.user(f"child {n}"))
        own.append_many("child", [ChatMessage.user("batch 1"), ChatMessage.user("batch 2")])
        if len(own.load("child")) != count + 2 or not own.verify().ok:
            return 13
    try:
        inherited.append("parent", ChatMessage.user("through the inherited store"))
        return 14
    except StoreUsedAfterFork:
        pass
    inherited.close()  # lets go of it without closing the parent's environment
    return 0


def _parent_writes_alongside(store: SessionStore, start: Any, child_done: Callable[[], int], count: int) -> None:
    """Append while the child does; then check that everyone's writes are there and the store is sound."""
    start.set()
    for n in range(count):
        store.append("parent", ChatMessage.user(f"parent {n}"))
    assert child_done() == 0
    assert [m.content for m in store.load("child")] == [f"child {n}" for n in range(count)] + ["batch 1", "batch 2"]
    assert [m.content for m in store.load("parent")] == ["before fork"] + [f"parent {n}" for n in range(count)]
    store.append("parent", ChatMessage.user("after the child"))
    assert store.load("parent")[-1].content == "after the child"
    assert store.verify().ok


def test_a_forked_child_opens_the_store_itself_and_writes_alongside_its_parent(tmp_path: Path) -> None:
    """os.fork() with the store open (and a read held in another thread): the child's own SessionStore reads
    and writes while the parent writes too, the inherited one keeps refusing, and the parent carries on."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("parent", ChatMessage.user("before fork"))
        thread, _, release, reports = _held_read(store)
        start_read, start_write = os.pipe()

        class Start:
            @staticmethod
            def set() -> None:
                os.write(start_write, b"x")

            @staticmethod
            def wait() -> None:
                os.read(start_read, 1)

        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                code = _child_writes_its_own(path, store, Start, 50)
            finally:
                os._exit(code)

        def child_done() -> int:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        _parent_writes_alongside(store, Start, child_done, 50)
        release.set()
        thread.join(60)
        assert reports[0].ok


def _multiprocessing_child(path: Path, inherited: SessionStore, start: Any) -> None:
    sys.exit(_child_writes_its_own(path, inherited, start, 30))


def test_a_multiprocessing_fork_child_opens_the_store_itself(tmp_path: Path) -> None:
    """The same with multiprocessing's 'fork' start method (Linux's default before Python 3.14)."""
    context = multiprocessing.get_context("fork")
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("parent", ChatMessage.user("before fork"))
        start = context.Event()
        child = context.Process(target=_multiprocessing_child, args=(path, store, start))
        child.start()

        def child_done() -> int:
            child.join(120)
            return child.exitcode if child.exitcode is not None else 97

        _parent_writes_alongside(store, start, child_done, 30)


def test_a_forked_child_closing_the_inherited_store_keeps_its_own_reads_registered(tmp_path: Path) -> None:
    """Freeing the inherited store in the child must not close the parent's environment there: LMDB would
    then clear the reader slots of this process, those of the child's own store among them, and a writer
    could reuse pages under a read in progress."""
    path = tmp_path / "store"
    store = SessionStore(path)
    store.append("a", ChatMessage.user("x"))

    def child() -> int:
        nonlocal store
        with SessionStore(path) as own, own._environment.read():
            mine = f" {os.getpid()} "
            if mine not in _lmdb(own)._env.readers():
                return 11
            store.close()
            del store
            gc.collect()
            return 0 if mine in _lmdb(own)._env.readers() else 12

    assert _fork(child) == 0
    assert store.load("a") == [ChatMessage.user("x")] and store.verify().ok
    store.close()


def test_the_inherited_store_refuses_even_when_the_parent_was_writing_at_the_fork(tmp_path: Path) -> None:
    """A thread of the parent held the store's write lock when it forked: in the child, the inherited store
    raises StoreUsedAfterFork instead of waiting for a thread that does not exist there."""
    with SessionStore(tmp_path / "store") as store:
        holding, release = threading.Event(), threading.Event()

        def write_slowly() -> None:
            with _lmdb(store)._write_lock:
                holding.set()
                release.wait(60)

        writer = threading.Thread(target=write_slowly)
        writer.start()
        holding.wait(60)

        def child() -> int:
            signal.alarm(20)  # a hang ends the child instead of the test run
            try:
                store.append("a", ChatMessage.user("x"))
            except StoreUsedAfterFork:
                return 0
            return 11

        try:
            assert _fork(child) == 0
        finally:
            release.set()
            writer.join(60)


def test_a_forked_grandchild_opens_the_store_too(tmp_path: Path) -> None:
    """Parent, child and grandchild each hold a store of their own on one path."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("a", ChatMessage.user("parent"))

        def grandchild() -> int:
            with SessionStore(path) as own:
                own.append("a", ChatMessage.user("grandchild"))
            return 0

        def child() -> int:
            with SessionStore(path) as own:
                own.append("a", ChatMessage.user("child"))
                return _fork(grandchild)

        assert _fork(child) == 0
        assert [m.content for m in store.load("a")] == ["parent", "child", "grandchild"]
        assert store.verify().ok


@pytest.mark.parametrize("inside_read", [False, True], ids=["read-in-other-thread", "fork-inside-a-read"])
def test_forked_child_exiting_normally_leaves_the_parent_intact(tmp_path: Path, inside_read: bool) -> None:
    """A forked child that exits normally (unwinding its stack, running finalizers) takes neither the
    parent's reader slot nor its share of the users lock with it, whether the parent was reading in
    another thread or (forking from a ``verify`` progress callback) in the forking thread itself."""
    path = tmp_path / "store"
    worker = Worker("fork_exit", {"path": str(path), "inside_read": inside_read}, tmp_path / "logs")
    assert worker.finish(120) == 0, worker.stderr()
    [(_, child, status, readers_intact, contents, verified)] = worker.of_kind("result")
    assert child == [["load", "StoreUsedAfterFork"], ["append", "StoreUsedAfterFork"], ["close", "ok"]]
    assert status == 0
    assert readers_intact, f"the child's exit released the parent's read transaction:\n{worker.stderr()}"
    assert contents == ["before fork", "after fork"] and verified
    assert worker.of_kind("users_lock_held") == [["users_lock_held", True]]


def test_reader_slots_are_not_leaked_by_stores_and_threads(tmp_path: Path) -> None:
    """Opening and closing stores and reading from hundreds of short-lived threads (more than the
    reader table holds) never runs out of reader slots."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("a", ChatMessage.user("x"))
    for _ in range(300):
        with SessionStore(path) as store:
            assert store.load("a") == [ChatMessage.user("x")]
    with SessionStore(path) as store:
        failures: list[BaseException] = []

        def read() -> None:
            try:
                assert store.load_with_timestamps("a")[0].message == ChatMessage.user("x")
            except BaseException as exc:
                failures.append(exc)

        for _ in range(10):
            threads = [threading.Thread(target=read) for _ in range(40)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        assert failures == []
        readers = str(lmdb_storage(store)._env.readers()).splitlines()
        assert len([line for line in readers if str(os.getpid()) in line]) <= 2, readers


@pytest.mark.slow
def test_readers_killed_mid_read_neither_exhaust_the_reader_table_nor_pin_pages(tmp_path: Path) -> None:
    """More processes than LMDB's reader table has slots die of SIGKILL inside a read, while this process
    keeps the store open (so nobody reopens it from scratch): writes here do not keep growing the file
    (dead readers pin no pages), and new threads and processes still read and write."""
    path = tmp_path / "store"
    problems = []
    with SessionStore(path, durable=False) as store:
        store.append("a", ChatMessage.user("x"))
        count = lmdb_storage(store)._env.max_readers() + 50
        killer = Worker("killed_readers", {"path": str(path), "count": count}, tmp_path / "logs")
        assert killer.finish(120) == 0, killer.stderr()
        [(_, died, could_not_open)] = killer.of_kind("killed")
        assert died + could_not_open == count
        if could_not_open:
            problems.append(f"{could_not_open} of {count} processes could not open the store after earlier ones "
                            f"died mid-read; last errors:\n{killer.stderr()[-600:]}")
        size = store._environment.file_size()
        for n in range(300):
            store.update_last("a", ChatMessage.user(str(n) * 2000))
        growth = store._environment.file_size() - size
        if growth > 4 << 20:
            problems.append(f"the file grew {growth} bytes for 300 updates of 2 kB: dead readers pin pages")
        outcome: list[Any] = []

        def read() -> None:
            try:
                outcome.append(store.load("a"))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(30)
        if outcome != [[ChatMessage.user("299" * 2000)]]:
            problems.append(f"a new thread could not read: {outcome!r:.300}")
        writer = Worker("writer", {"path": str(path), "wid": "w", "seed": 1, "keys": ["a"], "ops": 5},
                        tmp_path / "logs")
        if writer.finish(60) != 0:
            problems.append(f"a new process could not write: {writer.stderr()[-600:]}")
    assert problems == []


# -- optimistic concurrency and idempotency -------------------------------------------

MESSAGE = ChatMessage.user("m")

#: Every command that takes expected_version and idempotency_key, as a call on one session key.
COMMANDS: dict[str, Callable[..., Any]] = {
    "append": lambda store, key, **kw: store.append(key, MESSAGE, **kw),
    "append_many": lambda store, key, **kw: store.append_many(key, [MESSAGE, MESSAGE], **kw),
    "remove_last": lambda store, key, **kw: store.remove_last(key, **kw),
    "update_last": lambda store, key, **kw: store.update_last(key, ChatMessage.user("new"), **kw),
    "clear_messages": lambda store, key, **kw: store.clear_messages(key, **kw),
    "set_session_name": lambda store, key, **kw: store.set_session_name(key, "a new name", **kw),
    "set_session_state": lambda store, key, **kw: store.set_session_state(key, "running", "t9", **kw),
    "delete_session": lambda store, key, **kw: store.delete_session(key, reason="done", **kw),
    "restore": lambda store, key, **kw: store.restore(key, version=0, **kw),
    "redact": lambda store, key, **kw: store.redact(key, "a data subject asked", **kw),
}


def _session_with_history(store: SessionStore, key: str) -> int:
    store.append_many(key, [ChatMessage.user(str(n)) for n in range(3)])
    store.set_session_name(key, "old name")
    return store.session_at(key).version


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_wrong_expected_version_writes_nothing(store: SessionStore, command: str) -> None:
    version = _session_with_history(store, "s")
    before = digest(store)
    for stale in (version - 1, version + 1, 0):
        with pytest.raises(WrongExpectedVersion) as raised:
            COMMANDS[command](store, "s", expected_version=stale)
        assert (raised.value.expected, raised.value.actual) == (stale, version)
        assert digest(store) == before
    COMMANDS[command](store, "s", expected_version=version)
    assert store.session_at("s").version > version


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_expected_version_zero_means_the_session_is_new(store: SessionStore, command: str) -> None:
    COMMANDS[command](store, "fresh", expected_version=0)  # creates it, or does nothing to a missing session
    _session_with_history(store, "used")
    before = digest(store)
    with pytest.raises(WrongExpectedVersion):
        COMMANDS[command](store, "used", expected_version=0)
    assert digest(store) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_retry_with_the_same_idempotency_key_is_a_no_op(store: SessionStore, command: str) -> None:
    version = _session_with_history(store, "s")
    first = COMMANDS[command](store, "s", idempotency_key="request-1")
    after_first = digest(store)
    events = len(store.history("s"))
    assert store.session_at("s").version >= version
    # The retry returns what the first call returned, even with an expectation that is stale by now.
    assert COMMANDS[command](store, "s", idempotency_key="request-1") == first
    assert COMMANDS[command](store, "s", idempotency_key="request-1", expected_version=version) == first
    assert digest(store) == after_first and len(store.history("s")) == events
    # The same idempotency key on another session is another request.
    _session_with_history(store, "other")
    before_other = len(store.history("other"))
    COMMANDS[command](store, "other", idempotency_key="request-1")
    assert len(store.history("other")) > before_other


def test_retry_after_a_lost_reply(tmp_path: Path) -> None:
    """A process appends with an idempotency key and dies before it can reply; the retry returns the
    original version and writes nothing, also after other writes, a reopen and a vacuum."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("chat", ChatMessage.user("earlier"))
    lost = Worker("lost_reply", {"path": str(path), "key": "chat", "content": "hello",
                                 "idempotency_key": "req-42", "durable": True}, tmp_path / "logs")
    assert lost.finish(60) == -signal.SIGKILL and lost.records == []
    retry = lambda store: store.append("chat", ChatMessage.user("hello"), idempotency_key="req-42")  # noqa: E731
    with SessionStore(path) as store:
        assert [m.content for m in store.load("chat")] == ["earlier", "hello"]  # the call did happen
        assert retry(store) == 2
        store.append("chat", ChatMessage.user("later"))
        assert retry(store) == 2
        assert retry(store) == 2
        assert store.append("chat", ChatMessage.user("hello"), idempotency_key="req-42", expected_version=0) == 2
    with SessionStore(path) as store:
        assert retry(store) == 2
        store.vacuum()
        assert retry(store) == 2
        assert [m.content for m in store.load("chat")] == ["earlier", "hello", "later"]
        assert store.verify().ok


def test_concurrent_retries_of_one_request_write_once(tmp_path: Path) -> None:
    """Eight threads and two processes send the same request (same idempotency key) at once: one event."""
    path = tmp_path / "store"
    SessionStore(path).close()
    results: list[int] = []
    start = threading.Barrier(8)

    def send() -> None:
        with SessionStore(path, durable=False) as store:
            start.wait(30)
            results.append(store.append("chat", ChatMessage.user("once"), idempotency_key="req"))

    workers = [Worker("lost_reply", {"path": str(path), "key": "chat", "content": "once", "idempotency_key": "req"},
                      tmp_path / "logs") for _ in range(2)]
    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        worker.finish(60)
    assert results == [1] * 8
    with SessionStore(path) as store:
        assert store.load("chat") == [ChatMessage.user("once")]
        assert len(list(store.events())) == 1


def test_a_command_queued_behind_a_vacuum_commits_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command of another thread that queues while ``vacuum`` holds the writers' lock leads the next commit,
    through the spaces its components had before the file was replaced (it hung, then failed on a stale
    database handle)."""
    outcomes: list[object] = []

    def queued_append() -> None:
        try:
            outcomes.append(store.append("a", ChatMessage.user("queued")))
        except Exception as exc:  # the outcome is what the test checks
            outcomes.append(exc)

    other = threading.Thread(target=queued_append, daemon=True)
    copy = _environment.Environment._write_live_data

    def copy_once_the_command_waits(self: Any, directory: Path, rewrite: Any) -> None:
        other.start()
        for _ in range(3000):
            if self._group._queued:
                break
            threading.Event().wait(0.01)
        assert self._group._queued, "the command never queued"  # what the test is about
        copy(self, directory, rewrite)

    with SessionStore(tmp_path, durable=False) as store:
        store.append("a", ChatMessage.user("before"))
        monkeypatch.setattr(_environment.Environment, "_write_live_data", copy_once_the_command_waits)
        store.vacuum()
        other.join(30)
        assert (False, [2]) == (other.is_alive(), outcomes)
        assert ["before", "queued"] == [message.content for message in store.load("a")]
        assert store.verify().ok
