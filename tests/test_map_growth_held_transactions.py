"""Growing the LMDB map waits for every transaction of the process to end; a thread that holds one open and opens
another (a ``progress`` callback of a catch-up, whose fold holds a read) must never wait for that growth: its read
goes on, and its write, which the growth would wait for, raises ``StoreGrowthBlocked`` having written nothing.

Each thread that could hang is joined with a timeout, and a thread still alive fails the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreBusy, StoreGrowthBlocked
from eventstore.storage import Durability, Space, WriteTransaction
from eventstore.storage import lmdb as lmdb_engine
from eventstore.storage.lmdb import Environment

from conftest import waited_for

#: Seconds a thread gets to finish what takes milliseconds; one still running then is hung.
_HUNG_AFTER = 20
_BIG = "x " * 400_000  # 800 KB: more than a 256 KiB map holds


def _finished(thread: threading.Thread) -> None:
    thread.join(_HUNG_AFTER)
    assert not thread.is_alive(), f"{thread.name} hangs"


def _in_thread(name: str, call: Callable[[], object], outcome: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            outcome[name] = call()
        except Exception as exc:
            outcome[name] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)  # daemon: a hung one must not hang the run
    thread.start()
    return thread


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SessionStore:
    monkeypatch.setattr(lmdb_engine, "_INITIAL_MAP_SIZE", 256 << 10)
    store = SessionStore(tmp_path / "store", durable=False)
    for number in range(50):
        store.append(f"k{number}", ChatMessage.user(f"alpha beta {number}"))
    return store


def _catch_up_calling(store: SessionStore, callback: Callable[[], object], outcome: dict[str, object]
                      ) -> threading.Thread:
    """A catch-up of the search index in a thread of its own, calling ``callback`` from its first progress report
    (its fold's read transaction is open then)."""
    called = threading.Event()

    def progress(_done: int, _total: int) -> None:
        if not called.is_set():
            called.set()
            callback()

    return _in_thread("catch-up", lambda: store.catch_up(progress=progress), outcome)


def _growing_append(store: SessionStore, outcome: dict[str, object]) -> threading.Thread:
    """An append in a thread of its own that fills the map, once it waits for the open transactions to grow it."""
    environment = store._environment
    assert isinstance(environment, Environment)
    thread = _in_thread("growing append", lambda: store.append("big", ChatMessage.user(_BIG)), outcome)
    waited_for(lambda: environment._gate._resizing, "the append never began to grow the map")
    return thread


def test_a_read_from_a_catch_up_callback_goes_on_while_another_thread_grows_the_map(store: SessionStore) -> None:
    outcome: dict[str, object] = {}
    grower: list[threading.Thread] = []

    def read() -> None:
        grower.append(_growing_append(store, outcome))
        outcome["read"] = [message.content for message in store.load("k1")]

    catch_up = _catch_up_calling(store, read, outcome)
    _finished(catch_up)
    _finished(grower[0])
    with store:
        assert outcome["read"] == ["alpha beta 1"]
        assert outcome["catch-up"] == 50 and outcome["growing append"] is not None
        assert [message.content for message in store.load("big")] == [_BIG]


def test_a_write_from_a_catch_up_callback_while_another_thread_grows_the_map_is_refused(store: SessionStore) -> None:
    outcome: dict[str, object] = {}
    grower: list[threading.Thread] = []

    def write() -> None:
        grower.append(_growing_append(store, outcome))
        store.append("k1", ChatMessage.user("gamma"))

    catch_up = _catch_up_calling(store, write, outcome)
    _finished(catch_up)
    _finished(grower[0])
    with store:
        assert isinstance(outcome["catch-up"], StoreGrowthBlocked)
        assert isinstance(outcome["catch-up"], StoreBusy) and "nothing was written" in str(outcome["catch-up"])
        assert [message.content for message in store.load("k1")] == ["alpha beta 1"]
        assert [message.content for message in store.load("big")] == [_BIG]
        store.append("k1", ChatMessage.user("gamma"))  # once the catch-up returned
        assert store.catch_up() == 52 and store.verify().ok


def test_a_write_from_a_catch_up_callback_that_must_grow_the_map_is_refused(store: SessionStore) -> None:
    outcome: dict[str, object] = {}
    catch_up = _catch_up_calling(store, lambda: store.append("big", ChatMessage.user(_BIG)), outcome)
    _finished(catch_up)
    with store:
        assert isinstance(outcome["catch-up"], StoreGrowthBlocked)
        assert not store.session_exists("big")
        store.append("big", ChatMessage.user(_BIG))
        assert store.catch_up() == 51 and store.verify().ok


def test_a_queued_write_of_a_thread_holding_a_read_is_refused_by_the_group_that_grows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write of a thread that holds a read is queued behind another thread's, and committed by that one's group:
    the group fills the map, and its growth would wait for the read while the read's thread waits for the group."""
    monkeypatch.setattr(lmdb_engine, "_INITIAL_MAP_SIZE", 256 << 10)
    storage = Environment.acquire(tmp_path, durability=Durability.OFF)
    outcome: dict[str, object] = {}
    try:
        space = storage.space("one")
        holding, let_go = threading.Event(), threading.Event()

        def put(key: bytes, value: bytes) -> Callable[[WriteTransaction], None]:
            def body(txn: WriteTransaction) -> None:
                if key == b"first":
                    holding.set()
                    let_go.wait(_HUNG_AFTER)
                txn.put(space, key, value)
            return body

        def write_holding_a_read() -> object:
            with storage.read() as txn:
                assert txn.get(space, b"big") is None
                try:
                    return storage.write(put(b"small", b"value"))
                finally:
                    outcome["read ends"] = True

        first = _in_thread("first", lambda: storage.write(put(b"first", b"1")), outcome)
        holding.wait(_HUNG_AFTER)
        grower = _in_thread("grower", lambda: storage.write(put(b"big", b"y" * (1 << 20))), outcome)
        waited_for(lambda: len(storage._group._queued) == 1, "the growing write never queued")
        holder = _in_thread("holder", write_holding_a_read, outcome)
        waited_for(lambda: len(storage._group._queued) == 2, "the write of the thread holding a read never queued")
        let_go.set()
        for thread in (first, holder, grower):
            _finished(thread)
        assert isinstance(outcome["holder"], StoreGrowthBlocked)
        assert outcome["grower"] is None and outcome["first"] is None
        with storage.read() as txn:
            assert txn.get(space, b"small") is None
            assert txn.get(space, b"big") == b"y" * (1 << 20)
    finally:
        let_go.set()
        storage.release()


def _put(space: Space, key: bytes) -> Callable[[WriteTransaction], None]:
    return lambda txn: txn.put(space, key, b"value")


def _write_holding_a_read(storage: Environment, space: Space, holding: threading.Event, go_on: threading.Event
                          ) -> Callable[[], object]:
    """A call that opens a read, sets ``holding``, and once ``go_on`` is set writes the key ``held`` in ``space``
    with its read still open."""
    def write() -> object:
        with storage.read():
            holding.set()
            go_on.wait(_HUNG_AFTER)
            return storage.write(_put(space, b"held"))

    return write


def _grown_by_another_process(path: Path) -> None:
    """Another process appends more than this one's map holds: this one's next transaction finds the map grown."""
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from eventstore import ChatMessage, SessionStore
        with SessionStore(Path({str(path)!r}), durable=False) as store:
            store.append("other", ChatMessage.user("z" * (4 << 20)))
        """)], check=True, timeout=_HUNG_AFTER)


def test_a_read_from_a_catch_up_callback_after_another_process_grew_the_map_is_refused_as_a_read(
        store: SessionStore) -> None:
    """This process can take another's growth only once every transaction of it has ended, and the fold's read is
    open: the callback's read is refused, saying so (it reads nothing, and no write is involved); once the catch-up
    returns, the same read works."""
    path = store.path
    outcome: dict[str, object] = {}

    def read() -> None:
        _grown_by_another_process(path)
        store.load("k1")

    _finished(_catch_up_calling(store, read, outcome))
    with store:
        refused = outcome["catch-up"]
        assert isinstance(refused, StoreGrowthBlocked)
        assert "another process grew" in str(refused) and "write" not in str(refused)
        assert [message.content for message in store.load("k1")] == ["alpha beta 1"]
        assert store.catch_up() == 51 and store.verify().ok


def test_a_queued_write_of_a_thread_holding_a_read_is_refused_while_another_process_s_growth_is_adopted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process grew the map: a thread adopting its size waits for the read of a thread that then writes,
    queued behind a leader whose write transaction waits for the adoption. The write is refused as in a growth of
    this process's own; the others go on."""
    monkeypatch.setattr(lmdb_engine, "_INITIAL_MAP_SIZE", 256 << 10)
    storage = Environment.acquire(tmp_path, durability=Durability.OFF)
    outcome: dict[str, object] = {}
    holding, go_on = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        space = storage.space("one")

        def read() -> None:
            with storage.read():
                pass

        holder = _in_thread("holder", _write_holding_a_read(storage, space, holding, go_on), outcome)
        holding.wait(_HUNG_AFTER)
        _grown_by_another_process(tmp_path)
        adopter = _in_thread("adopter", read, outcome)
        waited_for(lambda: storage._gate._resizing, "the read never began to adopt the grown map")
        leader = _in_thread("leader", lambda: storage.write(_put(space, b"led")), outcome)
        waited_for(lambda: storage._write_lock._owner is not None, "the write never took the writers' lock")
        go_on.set()
        threads += (holder, adopter, leader)
        for thread in threads:
            _finished(thread)
        assert isinstance(outcome["holder"], StoreGrowthBlocked)
        assert outcome["adopter"] is None and outcome["leader"] is None
        with storage.read() as txn:
            assert txn.get(space, b"held") is None and txn.get(space, b"led") == b"value"
        assert storage._env.info()["map_size"] > 4 << 20  # the other process's size, adopted
    finally:
        go_on.set()
        if not any(thread.is_alive() for thread in threads):  # a hung thread's read would hang the close too
            storage.release()
