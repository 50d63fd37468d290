"""The key-value operations a command's commit makes: each read once, and no write undone or redone."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from eventstore import ChatMessage, SessionStore, _log
from eventstore._compression import Dictionary
from eventstore.services.writer import Request
from eventstore.storage import MemoryStorage, Space, WriteTransaction

Operations = Counter[tuple[str, str]]


class _Counting:
    """A write transaction that counts each call by operation and key space, and passes it on."""

    def __init__(self, txn: WriteTransaction, counted: Operations) -> None:
        self._txn, self._counted = txn, counted

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        call = getattr(self._txn, operation)

        def counted(space: Space, *args: Any, **options: Any) -> Any:
            self._counted[operation, space.name] += 1
            return call(space, *args, **options)

        return counted


class _CountingStorage(MemoryStorage):
    """A store in memory whose write transactions count their operations in ``operations`` (the latest write's)."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: Operations = Counter()

    def write(self, body: Callable[[WriteTransaction], Any]) -> Any:
        def counting(txn: WriteTransaction) -> Any:
            self.operations = Counter()
            return body(_Counting(txn, self.operations))

        return super().write(counting)


@pytest.fixture
def counted() -> tuple[SessionStore, _CountingStorage]:
    storage = _CountingStorage()
    store = SessionStore.on_storage(storage, cache_sessions=0)
    for index in range(3):
        store.append_many(f"s{index}", [ChatMessage.user(f"message {n}") for n in range(200)])
    return store, storage


def test_an_append_reads_the_stream_once_and_rewrites_nothing(counted: tuple[SessionStore, _CountingStorage]
                                                              ) -> None:
    """Appending to a session (not the newest) finds its stream by one key lookup and one read of the stream
    index; the catalog replaces its rows in place (only the activity entry, whose key moves, is deleted), and the
    last chunk is put, not first tried as an append that cannot succeed."""
    store, storage = counted
    store.append("s0", ChatMessage.user("one more"))
    ops = storage.operations
    assert ops["get", "log.keys"] == 1
    assert ops["before", "log.streams"] == 1
    assert ops["delete", "catalog.sessions"] == ops["delete", "catalog.keys"] == 0
    assert ops["delete", "catalog.activity"] == 1
    assert ops["append", "messages.chunks"] == 0
    assert ops["put", "messages.chunks"] == 1
    assert [m.content for m in store.load("s0")[-2:]] == ["message 199", "one more"]


def test_a_new_session_reads_no_state_of_its_own(counted: tuple[SessionStore, _CountingStorage]) -> None:
    """A new session's commit reads no catalog row and no chunk (it has none), and appends its chunk."""
    store, storage = counted
    store.append_many("fresh", [ChatMessage.user(f"m {n}") for n in range(20)])
    ops = storage.operations
    assert ops["get", "catalog.sessions"] == ops["before", "messages.chunks"] == 0
    assert ops["append", "messages.chunks"] == 1
    assert ops["get", "log.keys"] == 1
    assert len(store.load("fresh")) == 20
    assert store.get_session_metadata("fresh").message_count == 20


def test_a_running_turn_keeps_one_entry_in_the_running_index(counted: tuple[SessionStore, _CountingStorage]
                                                             ) -> None:
    """While a turn runs, appends leave its entry in the running index as it is; a new turn moves it."""
    store, storage = counted
    store.set_session_state("s1", "running", "turn-1")
    store.append("s1", ChatMessage.user("during the turn"))
    assert storage.operations["delete", "catalog.running"] == storage.operations["put", "catalog.running"] == 0
    assert [meta.key for meta in store.list_running_sessions()] == ["s1"]
    store.set_session_state("s1", "running", "turn-2")
    assert storage.operations["delete", "catalog.running"] == storage.operations["put", "catalog.running"] == 1
    store.set_session_state("s1", "idle")
    assert storage.operations["delete", "catalog.running"] == 1
    assert store.list_running_sessions() == []
    assert store.verify().ok


@pytest.mark.parametrize("between", [lambda store: store.set_session_name("s", "named"),
                                     lambda store: store.pop_last("s")])
def test_a_rebuild_reads_the_chunks_a_batch_wrote_before(between: Callable[[SessionStore], object]) -> None:
    """A rebuild applies a session's first events together: an append after another edit finds the chunk the
    first append stored (a new stream has none to read only until then)."""
    store = SessionStore.on_storage(MemoryStorage(), cache_sessions=0)
    store.append("s", ChatMessage.user("first"))
    between(store)
    store.append_many("s", [ChatMessage.user("second"), ChatMessage.user("third")])
    expected = store.load("s")
    store.rebuild_projections(["catalog", "messages"])
    assert store.load("s") == expected
    assert store.verify().ok


def test_a_request_digest_is_the_one_stored_idempotency_records_hold() -> None:
    """A command's messages join its arguments only for the digest, which stays what records written before
    hold: the SHA-256 of [name, [arguments..., [role, content(, payload)]...]]."""
    messages = (ChatMessage.user("hello"), ChatMessage("tool", "", payload={"call": 1, "args": [1.5, None]}))
    expected = hashlib.sha256(
        orjson.dumps(["append_many", [["user", "hello"], ["tool", "", {"call": 1, "args": [1.5, None]}]]])).hexdigest()
    assert Request("append_many", messages=messages).digest() == expected
    assert Request("other", ("x",), messages[:1]).digest() == hashlib.sha256(
        orjson.dumps(["other", ["x", ["user", "hello"]]])).hexdigest()


def test_the_next_command_on_a_session_reads_its_compressed_chunk_without_decompressing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk a command compressed and wrote is read back by the next command on that session without
    decompressing it, and a load of another session's compressed chunk still decompresses its own."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)  # a dictionary after 8 events, so small stores compress
    store = SessionStore.on_storage(MemoryStorage(), cache_sessions=0)
    for key in ("trains the dictionary", "a", "b"):
        store.append_many(key, [ChatMessage.user(f"{key} message {n} " * 8) for n in range(30)])
    expanded: list[int] = []
    expand = Dictionary.expand

    def counting(self: Dictionary, frame: bytes, what: str) -> bytes:
        expanded.append(len(frame))
        return expand(self, frame, what)

    monkeypatch.setattr(Dictionary, "expand", counting)
    store.append("b", ChatMessage.user("one more to b"))
    store.append("b", ChatMessage.user("and another"))
    assert expanded == []
    assert store.load("b")[-2:] == [ChatMessage.user("one more to b"), ChatMessage.user("and another")]
    assert expanded == []
    assert len(store.load("a")) == 30
    assert len(expanded) == 1
    assert store.verify().ok
