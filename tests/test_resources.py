"""Resources: a map that fills grows; a size cap gives StoreFull with nothing lost; very large messages,
very long sessions; a store on a path this process cannot write.

Long versions::

    EVENTSTORE_SESSION_MESSAGES=300000 EVENTSTORE_SESSION_SNAPSHOT_EVERY=1000 \\
        .venv/bin/python -m pytest tests/test_resources.py -rP

(``EVENTSTORE_SESSION_SNAPSHOT_EVERY`` defaults to 25,000 here; 250 is the store's own default.)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import (
    ChatMessage,
    EventStoreError,
    SessionQuery,
    SessionStore,
    StoreBusy,
    StoreFull,
    StoreNotFound,
    StoreReadOnly,
)
from eventstore.storage import ReadTransaction, WriteTransaction
from eventstore.storage import lmdb as _environment
from projections.search.writer import IndexWriter

from _reliability import Calls, Worker, check_log, digest, run_threads
from conftest import FakeClock, lmdb_storage, stream_id_of
from test_search_bulk_writer import stored_index

MIB = 1 << 20
SESSION_MESSAGES = int(os.environ.get("EVENTSTORE_SESSION_MESSAGES", "100000"))
SESSION_SNAPSHOT_EVERY = int(os.environ.get("EVENTSTORE_SESSION_SNAPSHOT_EVERY", "25000"))


def _map_size(store: SessionStore) -> int:
    return lmdb_storage(store)._env.info()["map_size"]


# -- a map that fills grows -------------------------------------------------------------


def test_map_grows_past_its_initial_size(tmp_path: Path) -> None:
    """Writing well past the initial 64 MiB map: the store grows it and goes on, losing nothing."""
    path = tmp_path / "store"
    contents = [f"{n}:" + chr(0x41 + n % 26) * MIB for n in range(40)]
    with SessionStore(path, durable=False) as store:
        initial = _map_size(store)
        for content in contents:
            store.append("big", ChatMessage.user(content))
        assert _map_size(store) > initial
        assert store._environment.file_size() > initial
        assert [m.content for m in store.load("big")] == contents
    with SessionStore(path, durable=False) as store:
        assert [m.content for m in store.load("big")] == contents
        assert store.verify().ok


def test_map_grows_while_threads_write_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a 256 KiB map, writer threads force many resizes while reader threads keep reading."""
    monkeypatch.setattr(_environment, "_INITIAL_MAP_SIZE", 256 << 10)
    stop = threading.Event()
    failures: list[BaseException] = []
    with SessionStore(tmp_path / "store", durable=False) as store:
        initial = _map_size(store)

        def write(n: int) -> None:
            try:
                for i in range(30):
                    store.append_many(f"w{n}", [ChatMessage.user(f"{n}-{i}-{j}" + "x" * 20_000) for j in range(2)])
            except BaseException as exc:
                failures.append(exc)

        def read() -> None:
            try:
                # Not a busy loop: py-lmdb drops the GIL around every call, and two threads reading
                # flat out starve the writer threads of the GIL (appends ~1000x slower).
                while not stop.wait(0.002):
                    for n in range(4):
                        messages = store.load(f"w{n}")
                        assert [m.content.partition("x")[0] for m in messages] == [
                            f"{n}-{i}-{j}" for i in range(len(messages) // 2) for j in range(2)]
            except BaseException as exc:
                failures.append(exc)

        writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        readers = [threading.Thread(target=read) for _ in range(2)]
        for thread in writers + readers:
            thread.start()
        for thread in writers:
            thread.join(120)
        stop.set()
        for thread in readers:
            thread.join(60)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in writers + readers), "a thread hung"
        assert _map_size(store) >= 32 * initial
        for n in range(4):
            assert len(store.load(f"w{n}")) == 60
        assert store.verify().ok


def _caught_up_index(path: Path, room_ahead: bool) -> tuple[int, int, dict[str, list[tuple[bytes, bytes]]]]:
    """A catch-up of the search index after 300 sessions' appends to a store from a 256 KiB map: how many times the
    batch's writes were built and its flush ran, and every ``search.*`` entry but the generation. ``room_ahead``
    false: no room is made before the write (as before ``make_room``)."""
    built, flushed = 0, 0
    build, flush = IndexWriter._built_changes, IndexWriter.flush

    def counted_build(writer: IndexWriter, txn: ReadTransaction) -> Any:
        nonlocal built
        built += 1
        return build(writer, txn)

    def counted_flush(writer: IndexWriter, txn: WriteTransaction) -> None:
        nonlocal flushed
        flushed += 1
        flush(writer, txn)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(_environment, "_INITIAL_MAP_SIZE", 256 << 10)
        patched.setattr(IndexWriter, "_built_changes", counted_build)
        patched.setattr(IndexWriter, "flush", counted_flush)
        if not room_ahead:
            patched.setattr(_environment.Environment, "make_room", lambda _environment, _size: None)
        with SessionStore(path, durable=False, clock=FakeClock()) as store:
            for n in range(300):
                store.append_many(f"s{n}", [ChatMessage.user(f"note {n} word{n * 7 + m} about topic{m % 13}")
                                            for m in range(20)])
            store.catch_up()
            assert store.verify().ok
            assert {found.key for found in store.search(SessionQuery("word36"))} == {"s3", "s4", "s5"}  # n * 7 + m
            return built, flushed, stored_index(store)


def test_a_large_catch_up_makes_room_before_it_writes(tmp_path: Path) -> None:
    """The index's catch-up of a large batch grows the map before its write transaction: the batch's writes are
    built once and flushed once, where without it the write fills the map and runs again; the index is the same."""
    assert _caught_up_index(tmp_path / "before", room_ahead=False)[:2] == (1, 2)  # the map fills without it
    built, flushed, stored = _caught_up_index(tmp_path / "ahead", room_ahead=True)
    assert (built, flushed) == (1, 1)
    assert stored == _caught_up_index(tmp_path / "before_again", room_ahead=False)[2]


def test_map_grows_in_several_processes_at_once(tmp_path: Path) -> None:
    """Two processes starting from a 512 KiB map, and this one, grow the map past each other: each
    adopts the size another chose, and every acknowledged append is there."""
    path = tmp_path / "store"
    SessionStore(path).close()
    workers = [Worker("writer", {"path": str(path), "wid": f"g{n}", "seed": n, "keys": ["shared"], "ops": 60,
                                 "pad": 60_000, "batch_max": 3, "initial_map": 512 << 10}, tmp_path / "logs")
               for n in range(2)]
    with SessionStore(path, durable=False) as store:
        for _n in range(40):
            store.append("local", ChatMessage.user("y" * 50_000))
    assert [worker.finish(120) for worker in workers] == [0, 0], [worker.stderr() for worker in workers]
    calls = Calls()
    for worker in workers:
        calls.add(worker.records)
    with SessionStore(path) as store:
        found = check_log(store, calls, other_events=40)
        assert found["calls"] == calls.count() == 120
        assert store.verify().ok


def test_store_opens_while_another_process_grows_the_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the store, writable and read-only, while another process keeps growing its map: LMDB sizes
    a new map from the pages in use when it opens the file, and another's growth before the open's first
    transaction must not fail it (it did for about one open in twelve)."""
    path = tmp_path / "store"
    SessionStore(path).close()
    monkeypatch.setattr(_environment, "_INITIAL_MAP_SIZE", 256 << 10)
    grower = Worker("writer", {"path": str(path), "wid": "g", "seed": 0, "keys": ["shared"], "pad": 30_000,
                               "batch_max": 2, "initial_map": 256 << 10, "seconds": 120}, tmp_path / "logs")
    assert grower.wait_ready(), grower.stderr()
    opened, counts = 0, list[int]()
    deadline = time.monotonic() + 60
    try:
        # Enough opens that the old failure rate could not miss, and while the other wrote plenty.
        while opened < 300 or counts[-1] - counts[0] < 50:
            assert time.monotonic() < deadline, f"{opened} opens, messages seen {counts[0]} to {counts[-1]}"
            with SessionStore(path, durable=False, readonly=opened % 2 == 1) as store:
                counts.append(sum(session.message_count for session in store.list_sessions_with_metadata()))
            opened += 1
    finally:
        grower.check_died_as_expected(grower.kill())
    assert counts == sorted(counts)


def test_an_open_tries_again_when_the_map_grew_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry on its own: a few opens stopped by another's growth, then one that succeeds; never forever."""
    import lmdb

    attempts: list[int] = []
    environment: Any = object()  # what the open returns, when one succeeds

    def stopped_by_growth(times: int) -> Callable[[], Any]:
        def open_environment() -> Any:
            attempts.append(1)
            if len(attempts) <= times:
                raise lmdb.MapResizedError("mdb_txn_begin", 0)
            return environment
        return open_environment

    assert _environment.Environment._opened_while_others_grow(stopped_by_growth(3)) is environment
    assert len(attempts) == 4
    attempts.clear()
    with pytest.raises(lmdb.MapResizedError):
        _environment.Environment._opened_while_others_grow(stopped_by_growth(1000))
    assert len(attempts) == _environment._OPEN_ATTEMPTS


@pytest.mark.slow
def test_threads_open_and_close_one_store_over_and_over(tmp_path: Path) -> None:
    """Threads of one process open and close one store over and over: every open succeeds. The last
    holder's close and another thread's open met now and then (a few opens in a thousand, not in every run),
    and the open found the files still open in this process: py-lmdb refuses a second environment on them.
    The next test makes that meeting certain."""
    path = tmp_path / "store"
    SessionStore(path).close()
    failures: list[EventStoreError] = []
    opened = [0]

    def open_and_close(_thread: int) -> None:
        for _ in range(1000):
            try:
                with SessionStore(path, durable=False) as store:
                    store.session_exists("a")
                opened[0] += 1
            except EventStoreError as exc:
                failures.append(exc)

    run_threads(open_and_close, 4)
    assert not failures, f"{len(failures)} of {opened[0] + len(failures)} opens failed, the first: {failures[0]}"
    assert opened[0] == 4 * 1000


class HeldClose:
    """An LMDB environment whose close sets ``closing``, then waits for ``go`` (at most ``seconds``) before it
    closes: what a close waiting for another thread's transaction does."""

    def __init__(self, env: Any, closing: threading.Event, go: threading.Event, seconds: float) -> None:
        self.env, self.closing, self.go, self.seconds = env, closing, go, seconds

    def close(self) -> None:
        self.closing.set()
        self.go.wait(self.seconds)
        self.env.close()


def store_held_at_close(path: Path, seconds: float) -> tuple[SessionStore, _environment.Environment, threading.Event,
                                                             threading.Event]:
    """A store holding one message ("kept"), whose environment's close is held (``HeldClose``): the store, its
    environment, the event its close sets and the one that lets it go on."""
    store = SessionStore(path)
    store.append("a", ChatMessage.user("kept"))
    environment = store._environment
    assert isinstance(environment, _environment.Environment)
    closing, go = threading.Event(), threading.Event()
    environment._env = HeldClose(environment._env, closing, go, seconds)  # type: ignore[assignment]
    return store, environment, closing, go


def test_an_open_waits_for_the_close_under_way_of_the_same_store(tmp_path: Path) -> None:
    """The race above made certain: while the last holder closes the environment, another thread opens the
    store; the open waits for the close and then opens the files afresh."""
    path = tmp_path / "store"
    # An open meanwhile fails at once or waits for the close: a second is time for either.
    first, environment, closing, reopened = store_held_at_close(path, 1)
    outcome: list[object] = []

    def reopen() -> None:
        closing.wait(60)
        try:
            with SessionStore(path) as store:
                outcome.append([message.content for message in store.load("a")])
        except EventStoreError as exc:
            outcome.append(exc)
        finally:
            reopened.set()

    thread = threading.Thread(target=reopen)
    thread.start()
    first.close()
    thread.join(60)
    assert outcome == [["kept"]]
    with SessionStore(path) as store:
        assert store._environment is not environment


# -- a size cap -------------------------------------------------------------------------


def test_size_cap_gives_store_full_with_nothing_lost(tmp_path: Path) -> None:
    """Appending under a 4 MiB cap until StoreFull: the refused call wrote nothing, everything before
    it is there, reads go on, and once space is freed (redaction) writes go on under the same cap."""
    path = tmp_path / "store"
    chunk = "z" * 100_000
    with SessionStore(path, durable=False, max_size=4 * MIB) as store:
        store.append("small", ChatMessage.user("keep me"))
        written = 0
        with pytest.raises(StoreFull):
            for _ in range(1000):
                store.append("big", ChatMessage.user(chunk))
                written += 1
        assert written > 10
        before = digest(store)
        with pytest.raises(StoreFull):
            store.append_many("big", [ChatMessage.user(chunk)] * 3)  # a batch that cannot fit: none of it
        with pytest.raises(StoreFull):
            store.append("big", ChatMessage.user(chunk))
        assert digest(store) == before
        assert len(store.load("big")) == written
        assert store.load("small") == [ChatMessage.user("keep me")]
        assert store.get_session_metadata("big").message_count == written
        assert store.verify().ok
        assert _map_size(store) <= 4 * MIB

        # Space freed: the redaction replaces every payload, and the pages they held are reused.
        assert store.redact("big", "make room") == written
        again = 0
        for _ in range(written // 2):
            store.append("after", ChatMessage.user(chunk))
            again += 1
        assert again == written // 2
        assert store.verify().ok
        before_vacuum, after_vacuum = store.vacuum()
        assert after_vacuum < before_vacuum
        assert len(store.load("after")) == again and store.load("small") == [ChatMessage.user("keep me")]
    # A bigger cap, or none, takes the store on from there.
    with SessionStore(path, durable=False, max_size=16 * MIB) as store:
        for _ in range(30):
            store.append("after", ChatMessage.user(chunk))
        assert len(store.load("after")) == again + 30 and store.verify().ok


def test_size_cap_below_the_current_size_still_serves_reads(tmp_path: Path) -> None:
    """Reopening a store with a cap smaller than what it holds: reads work, and a write that needs
    more room is StoreFull, not a crash."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        for n in range(60):
            store.append("big", ChatMessage.user(str(n) * 100_000))
    with SessionStore(path, durable=False, max_size=2 * MIB) as store:
        assert len(store.load("big")) == 60
        with pytest.raises(StoreFull):
            for n in range(100):
                store.append("big", ChatMessage.user(str(n) * 100_000))
        assert store.verify().ok


# -- very large messages, very long sessions --------------------------------------------


def _ten_megabytes() -> str:
    # Random ASCII, a needle in the middle, and multi-byte, combining, quote and control characters.
    ascii_part = base64.b64encode(os.urandom(2_700_000)).decode()
    tricky = "€😀中\u0301\"\\\n\t" * 360_000
    return ascii_part + " needle " + tricky + ascii_part[::-1]


@pytest.mark.slow
def test_ten_megabyte_message_round_trips(tmp_path: Path) -> None:
    content = _ten_megabytes()
    assert len(content.encode()) > 10_000_000
    path = tmp_path / "store"
    with SessionStore(path) as store:
        assert store.append("big", ChatMessage.assistant(content)) == 1
        assert store.load("big") == [ChatMessage.assistant(content)]
        assert store.load_with_timestamps("big")[0].message.content == content
        assert store.history("big")[0].event.message.content == content
        assert store.session_at("big", version=1).messages[0].content == content
        assert [m.key for m in store.search(SessionQuery("needle"))] == ["big"]
        replacement = content[::-1]
        assert store.update_last("big", ChatMessage.assistant(replacement))
        assert store.load("big") == [ChatMessage.assistant(replacement)]
        assert store.verify().ok
    with SessionStore(path) as store:
        assert store.load("big") == [ChatMessage.assistant(replacement)]
        assert [event.event.message.content for event in store.events()] == [content, replacement]


@pytest.mark.slow
def test_very_long_session(tmp_path: Path) -> None:
    """A session of 100,000 messages written in batches: everything reads back, in order."""
    count = SESSION_MESSAGES
    path = tmp_path / "store"
    expected = [f"m{n}" for n in range(count)]
    started = time.monotonic()
    with SessionStore(path, durable=False, snapshot_every=SESSION_SNAPSHOT_EVERY) as store:
        for start in range(0, count, 1000):
            store.append_many("long", [ChatMessage.user(text) for text in expected[start:start + 1000]])
        written = time.monotonic()
        assert [m.content for m in store.load("long")] == expected
        timestamped = store.load_with_timestamps("long")
        assert len(timestamped) == count
        assert [entry.created_at for entry in timestamped] == sorted(entry.created_at for entry in timestamped)
        assert store.get_session_metadata("long").message_count == count
        middle = count // 2 + 1
        assert store.session_at("long", version=middle).messages[-1].content == expected[middle - 1]
        assert [e.event.message.content for e in store.events(after=count - 3)] == expected[-3:]
        store.append("long", ChatMessage.user("one more"))
        assert store.update_last("long", ChatMessage.user("edited"))
        assert store.remove_last("long")
        assert store.search(SessionQuery(f"m{count - 1}"))[0].key == "long"
    with SessionStore(path, durable=False, snapshot_every=SESSION_SNAPSHOT_EVERY) as store:
        assert [m.content for m in store.load("long")] == expected
        report = store.verify()
        assert report.ok and report.events_checked == count + 3
    print(f"long session: {count} messages written in {written - started:.1f}s, "
          f"checked in {time.monotonic() - written:.1f}s")


# -- a path this process cannot write ------------------------------------------------------


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory everyone can reach (pytest's own tmp dirs are private to their owner)."""
    base = Path(tempfile.mkdtemp(prefix="eventstore-ro-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for root, _dirs, files in os.walk(base):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        shutil.rmtree(base)


def _make_read_only(path: Path) -> None:
    for entry in path.iterdir():
        entry.chmod(0o444)
    path.chmod(0o555)


def _run_without_write_access(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child that cannot write the files made read-only (root drops to nobody,
    since root writes whatever the mode bits say); return what it returned (JSON), or raise."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            result = {"ok": body()}
        except BaseException as exc:
            import traceback

            result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        result = json.loads(reader.read() or '{"error": "the child died"}')
    os.waitpid(pid, 0)
    assert "error" not in result, result.get("trace") or result["error"]
    return result["ok"]


@pytest.mark.parametrize("files", ["all-files", "data-file-only"])
def test_read_only_path_serves_reads_and_refuses_writes(shared_tmp: Path, files: str) -> None:
    """A store whose directory and files this process cannot write (a copy of only data.mdb, too):
    it opens read-only by itself, answers every query, and every write raises StoreReadOnly."""
    path = shared_tmp / "store"
    with SessionStore(path) as store:
        store.append_many("a", [ChatMessage.user("one"), ChatMessage.assistant("two")])
        store.set_session_state("a", "running", "t1")
        store.append("b", ChatMessage.user("three"))
        expected = {"a": store.load("a"), "b": store.load("b"), "sessions": store.list_sessions()}
        before = digest(store)
    if files == "data-file-only":
        for entry in path.iterdir():
            if entry.name != "data.mdb":
                entry.unlink()
    data_before = (path / "data.mdb").read_bytes()
    _make_read_only(path)

    def body() -> dict[str, Any]:
        assert not os.access(path, os.W_OK) and not os.access(path / "data.mdb", os.W_OK), "still writable"
        store = SessionStore(path)
        seen = {"a": store.load("a"), "b": store.load("b"), "sessions": store.list_sessions()}
        assert seen == expected, seen
        assert store.get_session_state("a").state == "running"
        assert len(store.history("a")) == 3 and len(list(store.events())) == 4
        assert store.session_at("a", version=1).messages == [ChatMessage.user("one")]
        assert store.verify().ok
        writes: dict[str, Callable[[], object]] = {
            "append": lambda: store.append("a", ChatMessage.user("x")),
            "append_many": lambda: store.append_many("c", [ChatMessage.user("x")]),
            "update_last": lambda: store.update_last("a", ChatMessage.user("x")),
            "remove_last": lambda: store.remove_last("a"),
            "clear_messages": lambda: store.clear_messages("a"),
            "set_session_name": lambda: store.set_session_name("a", "x"),
            "set_session_state": lambda: store.set_session_state("a", "idle"),
            "delete_session": lambda: store.delete_session("a"),
            "cleanup_stale": lambda: store.cleanup_stale(0),
            "compact": lambda: store.compact("a"),
            "rebuild_projections": store.rebuild_projections,
            "redact": lambda: store.redact("a", "x"),
            "restore": lambda: store.restore("a", version=1),
            "vacuum": store.vacuum,
        }
        outcome = {}
        for name, write in writes.items():
            try:
                write()
                outcome[name] = "written!"
            except StoreReadOnly as exc:
                outcome[name] = "read-only" if "read-only" in str(exc) else f"unclear message: {exc}"
            except EventStoreError as exc:
                outcome[name] = f"{type(exc).__name__}: {exc}"
        assert store.load("a") == expected["a"]
        store.close()
        try:
            SessionStore(path / "missing")
            missing = "created!"
        except StoreNotFound:
            missing = "StoreNotFound"
        except EventStoreError as exc:
            missing = f"{type(exc).__name__}: {exc}"
        return {"writes": outcome, "missing": missing}

    result = _run_without_write_access(body)
    assert result["writes"] == {name: "read-only" for name in result["writes"]}
    assert result["missing"] in ("StoreNotFound", ) or result["missing"].startswith("EventStoreError: cannot")
    assert (path / "data.mdb").read_bytes() == data_before
    path.chmod(0o755)
    for entry in path.iterdir():
        entry.chmod(0o644)
    with SessionStore(path) as store:
        assert digest(store) == before


@pytest.mark.slow
def test_read_only_reader_keeps_its_snapshot_while_the_owner_writes(shared_tmp: Path) -> None:
    """A process that may only read the store (it cannot write lock.mdb, so it cannot register in
    LMDB's reader table) holds a read while the store's owner rewrites the same session many times.
    The reader must see one consistent moment, or be refused when it opens the store, or the owner must
    wait for the reader. Never a mix of old and new pages, never an error in the middle of the read."""
    path = shared_tmp / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user(f"old {n} " + "o" * 3000) for n in range(40)])
    (path / "lock.mdb").chmod(0o644)
    (path / "users.lock").chmod(0o644)
    path.chmod(0o755)
    go, done = os.pipe(), os.pipe()

    def body() -> Any:
        assert not os.access(path / "lock.mdb", os.W_OK)
        try:
            reader = SessionStore(path)
        except EventStoreError as exc:
            os.write(go[1], b"x")
            return {"refused": f"{type(exc).__name__}: {exc}"}
        try:
            with reader._environment.read() as txn:
                stream_id = stream_id_of(reader._log, txn, "a")
                head = reader._catalog.head(txn, stream_id)
                os.write(go[1], b"x")
                os.read(done[0], 1)  # the owner rewrites the session meanwhile
                entries = reader._messages.entries(txn, stream_id)
                events = [entry.encoded.payload for entry in reader._log.read_stream(txn, stream_id)]
        except EventStoreError as exc:
            return {"torn": f"{type(exc).__name__}: {exc}"}  # its snapshot was pulled from under it
        finally:
            reader.close()
        return {"count": head.message_count, "rows": [message.content[:12] for message, _ in entries],
                "events": len(events)}

    result: list[Any] = []

    def run_reader() -> None:
        try:
            result.append(_run_without_write_access(body))
        except AssertionError as exc:
            result.append({"crashed": str(exc)})

    reader = threading.Thread(target=run_reader)
    reader.start()
    assert os.read(go[0], 1) == b"x"
    written = threading.Event()

    def write() -> None:
        with SessionStore(path, durable=False) as store:
            for n in range(400):
                store.update_last("a", ChatMessage.user(f"new {n} " + "n" * 3000))
        written.set()

    owner = threading.Thread(target=write)
    owner.start()
    written.wait(5)  # the owner may be made to wait for the reader instead
    os.write(done[1], b"x")
    reader.join(60)
    owner.join(60)
    assert written.is_set(), "the owner never got to write"
    seen = result[0]
    assert "crashed" not in seen, seen.get("crashed")
    assert "torn" not in seen, f"the reader's snapshot was overwritten while it read: {seen.get('torn')}"
    if "refused" not in seen:
        assert seen["count"] == 40 and seen["events"] == 40
        assert seen["rows"] == [(f"old {n} " + "o" * 3000)[:12] for n in range(40)], seen["rows"]


def test_an_open_does_not_wait_for_a_close_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A close waits for the transactions under way, so a thread whose own transaction holds it up would wait
    for itself: past ``_CLOSE_WAIT`` the open is refused, and the store opens once the close is done."""
    monkeypatch.setattr(_environment, "_CLOSE_WAIT", 0.2)
    path = tmp_path / "store"
    first, _, closing, go = store_held_at_close(path, 60)
    closer = threading.Thread(target=first.close)
    closer.start()
    try:
        assert closing.wait(60)
        with pytest.raises(StoreBusy, match="being closed by another thread"):
            SessionStore(path)
    finally:
        go.set()
        closer.join(60)
    with SessionStore(path) as store:
        assert [message.content for message in store.load("a")] == ["kept"]
