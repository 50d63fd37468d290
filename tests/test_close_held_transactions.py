"""Closing an LMDB store waits for every transaction of the process to end. A thread that holds one open (a
``progress`` callback of a catch-up, whose fold holds a read) must never wait for that close: its write, which would
wait for a writer waiting at the gate for the close, raises ``StoreClosed`` having written nothing, and its own close
raises ``StoreBusy``, leaving the store open.

Each thread that could hang is joined with a timeout, and a thread still alive fails the test."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreBusy, StoreClosed, StoreGrowthBlocked
from eventstore.storage import Durability
from eventstore.storage import lmdb as lmdb_storage
from eventstore.storage.lmdb import Environment
from eventstore.storage.lmdb_concurrency import GroupQueue, Member

from conftest import waited_for
from test_map_growth_held_transactions import (
    _HUNG_AFTER,
    _catch_up_calling,
    _finished,
    _in_thread,
    _put,
    _write_holding_a_read,
)


@pytest.mark.parametrize("queued", ["before the close", "while the close waits"])
def test_a_write_of_a_thread_holding_a_read_behind_a_leader_waiting_for_the_close_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queued: str) -> None:
    """A writer leads a group (it holds the writers' lock) and waits at the gate for another thread's close, which
    waits for the read of a third thread, whose write queues behind the leader: the three would wait on each other.
    The write is refused with ``StoreClosed`` (queued before the close began, or while it waits), the read ends, the
    close goes on, and the leader, let in once the store is closed, gets ``StoreClosed`` too."""
    storage = Environment.acquire(tmp_path, durability=Durability.OFF)
    space = storage.space("one")
    gate = storage._gate
    outcome: dict[str, object] = {}
    holding, go_on, at_gate, let_in = (threading.Event() for _ in range(4))
    enter_shared = gate.enter_shared

    def leader_held_before_the_gate() -> None:
        # The leader has taken the writers' lock and passed the check that the store is open: it stops here.
        if threading.current_thread().name == "leader" and not at_gate.is_set():
            at_gate.set()
            let_in.wait(_HUNG_AFTER)
        enter_shared()

    monkeypatch.setattr(gate, "enter_shared", leader_held_before_the_gate)

    threads: list[threading.Thread] = []
    try:
        threads.append(_in_thread("holder", _write_holding_a_read(storage, space, holding, go_on), outcome))
        holding.wait(_HUNG_AFTER)
        threads.append(_in_thread("leader", lambda: storage.write(_put(space, b"led")), outcome))
        at_gate.wait(_HUNG_AFTER)
        if queued == "before the close":
            go_on.set()
            waited_for(lambda: len(storage._group._queued) == 2, "the write of the thread holding a read never queued")
            threads.append(_in_thread("closer", storage.release, outcome))
            _finished(threads[-1])  # the leader waits before the gate until the store is closed
            let_in.set()
        else:
            threads.append(_in_thread("closer", storage.release, outcome))
            waited_for(lambda: gate._resizing, "the close never began to wait for the read")
            let_in.set()
            waiting = gate._condition._waiters  # type: ignore[attr-defined]  # the close's and the leader's
            waited_for(lambda: len(waiting) == 2, "the leader never waited at the gate")
            go_on.set()
        for thread in threads:
            _finished(thread)
        refused = outcome["holder"]
        assert isinstance(refused, StoreClosed)
        assert "being closed by another thread" in str(refused) and "grow" not in str(refused)
        assert isinstance(outcome["leader"], StoreClosed) and outcome["closer"] is None
    finally:
        go_on.set()
        let_in.set()
    if any(thread.is_alive() for thread in threads):
        return  # a hung thread's read would hang the store's next open too
    again = Environment.acquire(tmp_path, durability=Durability.OFF)
    try:
        reopened = again.space("one")
        with again.read() as txn:
            assert txn.get(reopened, b"held") is None and txn.get(reopened, b"led") is None
    finally:
        again.release()


def test_a_close_from_a_catch_up_callback_is_refused_and_the_store_stays_open(tmp_path: Path) -> None:
    """The close would wait for the catch-up's read, open in the callback's own thread: it raises ``StoreBusy`` saying
    so (not that the map must grow), and the store stays open until it is closed once the catch-up returned."""
    store = SessionStore(tmp_path / "store", durable=False)
    for number in range(50):
        store.append(f"k{number}", ChatMessage.user(f"alpha beta {number}"))
    outcome: dict[str, object] = {}

    def close() -> None:
        try:
            store.close()
        except StoreBusy as refused:
            outcome["close"] = refused

    _finished(_catch_up_calling(store, close, outcome))
    refused = outcome["close"]
    assert isinstance(refused, StoreBusy) and not isinstance(refused, StoreGrowthBlocked)
    assert "cannot close from this thread" in str(refused) and "grow" not in str(refused)
    assert outcome["catch-up"] == 50
    assert [message.content for message in store.load("k1")] == ["alpha beta 1"]
    store.close()
    with pytest.raises(StoreClosed):
        store.load("k1")
    assert (os.getpid(), str(store.path.resolve())) not in Environment._registry  # closed for good


def test_an_open_of_the_store_from_a_thread_holding_a_read_while_another_closes_it_is_refused_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close waits for the read the opening thread holds (a ``verify`` callback's), so the open, which waits for
    the close, is refused with ``StoreBusy`` at once rather than once its wait for the close runs out."""
    monkeypatch.setattr(lmdb_storage, "_CLOSE_WAIT", _HUNG_AFTER * 10)
    store = SessionStore(tmp_path / "store", durable=False)
    for number in range(5):
        store.append(f"k{number}", ChatMessage.user(f"alpha {number}"))
    environment = store._environment
    assert isinstance(environment, Environment)
    in_callback = threading.Event()
    outcome: dict[str, object] = {}

    def open_again(done: int, total: int) -> None:
        if in_callback.is_set():
            return
        in_callback.set()
        waited_for(lambda: environment._closing, "the close never began")
        try:
            SessionStore(tmp_path / "store", durable=False)
        except StoreBusy as refused:
            outcome["open"] = refused

    verifying = _in_thread("verify", lambda: store.verify(progress=open_again).ok, outcome)
    assert in_callback.wait(_HUNG_AFTER)
    closing = _in_thread("close", store.close, outcome)
    _finished(verifying)
    _finished(closing)
    assert isinstance(outcome["open"], StoreBusy) and "this thread holds open" in str(outcome["open"])
    assert outcome["verify"] is True
    assert outcome["close"] is None
    assert (os.getpid(), str(store.path.resolve())) not in Environment._registry


def _refused_while(queue: GroupQueue) -> BaseException:
    """What a write of a thread holding a transaction open, queued now, is refused with."""
    member = Member(lambda _txn: None, None, holds_open=True)
    queue._enqueue(member)
    assert member.done
    with pytest.raises(EventStoreError) as refused:
        member.outcome()
    return refused.value


@pytest.mark.parametrize("first", ["close", "growth"])
def test_a_write_refused_while_the_store_closes_and_its_map_grows_names_the_close(tmp_path: Path, first: str) -> None:
    """Whichever began first, and whichever ends first, a write refused while a close is under way says the store is
    being closed (``StoreClosed``), not to give it again once its call returns; once the close alone has ended, the
    growth's refusal says the map must grow."""
    queue = GroupQueue()
    closing = functools.partial(lmdb_storage._closed_while_held, tmp_path)
    growing = functools.partial(StoreGrowthBlocked.holding, tmp_path)
    refusals = {"close": queue.refusing_held(closing), "growth": queue.refusing_held(growing)}
    second = "growth" if first == "close" else "close"
    refusals[first].__enter__()
    refusals[second].__enter__()
    both = _refused_while(queue)
    refusals["growth"].__exit__(None, None, None)
    close_alone = _refused_while(queue)
    refusals["growth"] = queue.refusing_held(growing)
    refusals["growth"].__enter__()
    refusals["close"].__exit__(None, None, None)
    growth_alone = _refused_while(queue)
    refusals["growth"].__exit__(None, None, None)
    assert isinstance(both, StoreClosed) and "being closed" in str(both)
    assert isinstance(close_alone, StoreClosed)
    assert isinstance(growth_alone, StoreGrowthBlocked) and "must grow its map" in str(growth_alone)
    member = Member(lambda _txn: None, None, holds_open=True)
    queue._enqueue(member)
    assert not member.done  # nothing under way: queued


def _store_of_50(tmp_path: Path) -> SessionStore:
    store = SessionStore(tmp_path / "store", durable=False)
    for number in range(50):
        store.append(f"k{number}", ChatMessage.user(f"alpha beta {number}"))
    return store


def _closed_for_good(store: SessionStore) -> bool:
    with pytest.raises(StoreClosed):
        store.load("k1")
    return (os.getpid(), str(store.path.resolve())) not in Environment._registry


def test_a_close_given_while_a_refused_close_is_under_way_waits_for_it_then_closes_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-up's callback closes the store (refused: its thread holds the fold's read open), and another thread
    closes it while that refusal is under way: the second close does not return as if the store were closed (it
    stayed open); it waits for the first, then closes the store itself once the catch-up's read has ended."""
    store = _store_of_50(tmp_path)
    environment = store._environment
    release = environment.release
    refusing, second_close_arrived = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def release_held_in_the_callback() -> None:
        if threading.current_thread().name == "catch-up":
            refusing.set()
            second_close_arrived.wait(_HUNG_AFTER)
        release()

    def close_refused() -> None:
        try:
            store.close()
        except StoreBusy as refused:
            outcome["refused"] = refused

    monkeypatch.setattr(environment, "release", release_held_in_the_callback)
    catching_up = _catch_up_calling(store, close_refused, outcome)
    try:
        assert refusing.wait(_HUNG_AFTER)
        closing = _in_thread("close", store.close, outcome)
        close_changed = getattr(store, "_close_changed", None)
        waiters = getattr(close_changed, "_waiters", ())  # the second close's, once it waits
        waited_for(lambda: not closing.is_alive() or bool(waiters), "the second close neither returned nor waited")
        returned_before_the_refusal = not closing.is_alive()
    finally:
        second_close_arrived.set()
    _finished(catching_up)
    _finished(closing)
    assert isinstance(outcome["refused"], StoreBusy) and "cannot close from this thread" in str(outcome["refused"])
    assert not returned_before_the_refusal
    assert outcome["close"] is None
    # The catch-up's write, after the callback, came before the second close began, or was refused by it.
    assert outcome["catch-up"] == 50 or isinstance(outcome["catch-up"], StoreClosed)
    assert _closed_for_good(store)


def test_a_close_from_a_thread_holding_a_read_while_another_thread_closes_the_store_is_refused_at_once(
        tmp_path: Path) -> None:
    """The other thread's close waits for the catch-up's read, so a close from the catch-up's callback, which would
    hang waiting for that close, raises ``StoreBusy`` at once instead of returning as if the store were closed; the
    first close ends once the catch-up's read has."""
    store = _store_of_50(tmp_path)
    environment = store._environment
    assert isinstance(environment, Environment)
    outcome: dict[str, object] = {}
    closing: list[threading.Thread] = []

    def close_while_another_thread_closes() -> None:
        closing.append(_in_thread("close", store.close, outcome))
        waited_for(lambda: environment._closing, "the other thread's close never began")
        try:
            store.close()
        except StoreBusy as refused:
            outcome["refused"] = refused

    _finished(_catch_up_calling(store, close_while_another_thread_closes, outcome))
    _finished(closing[0])
    refused = outcome.get("refused")
    assert isinstance(refused, StoreBusy) and "another thread is closing the store" in str(refused)
    assert outcome["close"] is None
    assert _closed_for_good(store)


def _closing_twice(monkeypatch: pytest.MonkeyPatch, target: SessionStore, held_until: threading.Event,
                   outcome: dict[str, object]) -> tuple[Callable[[], None], list[threading.Thread]]:
    """A callback that starts ``target``'s close in a thread named "close", whose release of the environment waits
    for ``held_until``, then closes ``target`` again itself (``outcome["second close"]``: "returned", or the
    ``StoreBusy``); and the list that gets the "close" thread."""
    release = target._environment.release
    releasing = threading.Event()
    closing: list[threading.Thread] = []

    def release_held() -> None:
        if threading.current_thread().name == "close":
            releasing.set()
            held_until.wait(_HUNG_AFTER)
        release()

    def close_while_another_thread_closes() -> None:
        closing.append(_in_thread("close", target.close, outcome))
        assert releasing.wait(_HUNG_AFTER)
        try:
            target.close()
            outcome["second close"] = "returned"
        except StoreBusy as refused:
            outcome["second close"] = refused

    monkeypatch.setattr(target._environment, "release", release_held)
    return close_while_another_thread_closes, closing


class _TwoObjects(NamedTuple):
    """Two store objects on one path, the first catching up, and ``_closing_twice``'s closes in its callback."""

    catching: SessionStore
    other: SessionStore
    held_until: threading.Event  # set: the first close's release goes on
    outcome: dict[str, object]
    catching_up: threading.Thread
    closing: list[threading.Thread]


def _closing_twice_beside_another_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         closing_the_catching_one: bool) -> _TwoObjects:
    """Two store objects share the path's environment; the catch-up of the first holds its read open, and its
    callback closes one of them (``closing_the_catching_one``: the first, else the other) while another thread's
    close of that object is under way (``_closing_twice``)."""
    catching = _store_of_50(tmp_path)
    other = SessionStore(tmp_path / "store", durable=False)
    assert catching._environment is other._environment
    held_until = threading.Event()
    outcome: dict[str, object] = {}
    close_twice, closing = _closing_twice(monkeypatch, catching if closing_the_catching_one else other, held_until,
                                          outcome)
    return _TwoObjects(catching, other, held_until, outcome, _catch_up_calling(catching, close_twice, outcome),
                       closing)


def _second_close_waits_or_ends(target: SessionStore, catching_up: threading.Thread) -> None:
    """Wait until ``_closing_twice``'s second close of ``target`` waits for the first, or the catch-up has ended."""
    waiters = getattr(target._close_changed, "_waiters", ())
    waited_for(lambda: bool(waiters) or not catching_up.is_alive(), "the second close neither waited nor ended")


def test_a_close_from_a_thread_holding_a_read_while_another_thread_closes_one_of_two_store_objects_waits_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two store objects share the path's environment; the catch-up of one holds its read open, and its callback
    closes the other while another thread's close of that object is under way. That release drops a reference and
    closes nothing, so it waits for no transaction: the callback's close waits for it and returns, rather than
    raising ``StoreBusy``, and the catch-up goes on."""
    kept, closed, second_close_waits, outcome, catching_up, closing = _closing_twice_beside_another_object(
        tmp_path, monkeypatch, closing_the_catching_one=False)
    try:
        _second_close_waits_or_ends(closed, catching_up)
    finally:
        second_close_waits.set()
    _finished(catching_up)
    _finished(closing[0])
    assert outcome["second close"] == "returned" and outcome["close"] is None
    assert outcome["catch-up"] == 50
    with pytest.raises(StoreClosed):
        closed.load("k1")
    assert [message.content for message in kept.load("k1")] == ["alpha beta 1"]
    kept.close()
    assert _closed_for_good(kept)


def test_a_release_waits_for_the_calling_thread_only_when_it_closes_the_environment_of_this_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a transaction, a release waits for it only where ``release`` would close the environment: at its last
    reference, in the process that opened it."""
    first = Environment.acquire(tmp_path, durability=Durability.OFF)
    second = Environment.acquire(tmp_path, durability=Durability.OFF)
    assert first is second
    with first.read():
        with_two_references = first.release_waits_for_this_thread()
        second.release()
        with_one = first.release_waits_for_this_thread()
        monkeypatch.setattr(first, "_pid", os.getpid() + 1)  # as a forked child sees its inherited environment
        in_another_process = first.release_waits_for_this_thread()
        monkeypatch.undo()
    first.release()
    assert (with_two_references, with_one, in_another_process) == (False, True, False)


def test_a_close_waiting_in_a_thread_holding_a_read_is_refused_once_the_close_it_waits_for_closes_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two store objects share the path's environment; the catch-up of one holds its read open, and its callback
    closes that object while another thread's close of it is under way. That release would close nothing, so the
    callback's close waits for it; then the other object is closed, and the release under way becomes the last one,
    which closes the environment and waits for the catch-up's read. The callback's close must not go on waiting for
    it (the two would wait for each other for ever): it raises ``StoreBusy``, the catch-up ends, and the close under
    way closes the store."""
    store, other, other_closed, outcome, catching_up, closing = _closing_twice_beside_another_object(
        tmp_path, monkeypatch, closing_the_catching_one=True)
    try:
        _second_close_waits_or_ends(store, catching_up)
        other.close()  # the release under way is now the last one: it closes the environment
    finally:
        other_closed.set()
    _finished(catching_up)
    _finished(closing[0])
    refused = outcome["second close"]
    assert isinstance(refused, StoreBusy) and "another thread is closing the store" in str(refused)
    assert outcome["close"] is None
    # The catch-up's write, after the callback, came before the close closed the store, or was refused by it.
    assert outcome["catch-up"] == 50 or isinstance(outcome["catch-up"], StoreClosed)
    assert _closed_for_good(store)


def test_a_child_forked_while_another_thread_closes_a_store_object_closes_it_and_opens_the_store_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread of the parent is closing a store object (its release held up) when the process forks. The child has
    no such thread: its close of that object must not wait for that close to end (it never would), but return, the
    object being closed; the child then closes the other object and opens the store afresh."""
    store = _store_of_50(tmp_path)
    other = SessionStore(tmp_path / "store", durable=False)
    environment = store._environment
    release = environment.release
    releasing, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def release_held() -> None:
        if threading.current_thread().name == "close":
            releasing.set()
            go_on.wait(_HUNG_AFTER)
        release()

    monkeypatch.setattr(environment, "release", release_held)
    closing = _in_thread("close", store.close, outcome)
    try:
        assert releasing.wait(_HUNG_AFTER)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(10)  # a close that waits for the parent's thread is cut short: the child exits non-zero
            code = 99
            try:
                store.close()
                other.close()
                with SessionStore(tmp_path / "store", durable=False) as again:
                    code = 0 if again.load("k1") == [ChatMessage.user("alpha beta 1")] else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        go_on.set()
    _finished(closing)
    assert os.waitstatus_to_exitcode(status) == 0
    assert outcome["close"] is None
    other.close()
    assert _closed_for_good(store)
