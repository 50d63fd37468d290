"""The message chunks against a plain model of each session's list, under every command that rewrites a session's
last chunk: an append edits the chunk the previous append wrote only while that chunk is the one stored, so
commands are mixed with rolled-back writes, a second store object taking turns, chunks filling up exactly (by
count and by bytes), messages of several KB with payloads, and identical chunks in several sessions."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstore import ChatMessage, SessionStore
from eventstore.events import redacted_message
from eventstore.storage import MemoryStorage
from projections.chunk import CHUNK_BYTES, CHUNK_MESSAGES

from conftest import FakeClock

KEYS = ("a", "b", "c")


class Discarded(Exception):
    """Raised inside a transaction to roll its writes back."""


@st.composite
def chat_messages(draw: st.DrawFn) -> ChatMessage:
    # Few distinct messages, so that sessions (and rolled-back writes) often hold byte-identical chunks; a few
    # large ones, so that a chunk fills up by its bytes as well as by its count.
    size = draw(st.sampled_from((1, 1, 1, 300, CHUNK_BYTES // 4, CHUNK_BYTES // 2)))
    text = draw(st.sampled_from("xyé")) * size
    role = draw(st.sampled_from(("user", "assistant", "tool")))
    payloads = st.fixed_dictionaries({"n": st.integers(0, 2), "blob": st.sampled_from(("", "p" * 900))})
    payload = draw(st.none() | payloads)
    return ChatMessage(role, text, payload)


batches = st.lists(chat_messages(), max_size=CHUNK_MESSAGES + 2) | st.lists(chat_messages(), max_size=3)


class ChunkMachine(RuleBasedStateMachine):
    """Commands on two store objects of one store (or one in memory) and on a dict of lists."""

    engine = "lmdb"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp())
        self.path = self.directory / "store"
        self.clock = FakeClock()
        self.stores = [self._open()]
        if self.engine == "lmdb":
            self.stores.append(self._open())
        self.model: dict[str, list[ChatMessage]] = {}
        #: Each key's lists at the versions seen, for restores and forks.
        self.past: dict[str, dict[int, list[ChatMessage]]] = {}
        self.forked: set[str] = set()  # keys in a fork (a redaction reaches its forks too: left out of the model)
        self.imports = 0

    def _open(self) -> SessionStore:
        if self.engine == "memory":
            self.storage = MemoryStorage(self.path)
            return SessionStore.on_storage(self.storage, clock=self.clock)
        return SessionStore(self.path, clock=self.clock)

    def _store(self, which: int) -> SessionStore:
        return self.stores[which % len(self.stores)]

    def _remember(self) -> None:
        store = self.stores[0]
        for key, messages in self.model.items():
            self.past.setdefault(key, {})[store.session_at(key).version] = list(messages)

    @rule(tick=st.booleans())
    def time_passes(self, tick: bool) -> None:
        if tick:
            self.clock.advance(microseconds=1)

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), batch=batches)
    def append_many(self, which: int, key: str, batch: list[ChatMessage]) -> None:
        self._store(which).append_many(key, batch)
        if batch:
            self.model.setdefault(key, []).extend(batch)

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), message=chat_messages())
    def append(self, which: int, key: str, message: ChatMessage) -> None:
        self._store(which).append(key, message)
        self.model.setdefault(key, []).append(message)

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), batch=batches, then=st.sampled_from(KEYS))
    def rolled_back(self, which: int, key: str, batch: list[ChatMessage], then: str) -> None:
        with pytest.raises(Discarded), self._store(which).transaction() as tx:
            tx.append_many(key, batch)
            if batch:
                tx.append(then, batch[-1])
            raise Discarded

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS))
    def pop_last(self, which: int, key: str) -> None:
        messages = self.model.get(key, [])
        assert self._store(which).pop_last(key) == (messages.pop() if messages else None)

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), message=chat_messages())
    def update_last(self, which: int, key: str, message: ChatMessage) -> None:
        messages = self.model.get(key, [])
        assert self._store(which).update_last(key, message) == bool(messages)
        if messages:
            messages[-1] = message

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), keep=st.integers(0, 80), batch=batches)
    def replace_messages(self, which: int, key: str, keep: int, batch: list[ChatMessage]) -> None:
        wanted = self.model.get(key, [])[:keep] + batch
        self._store(which).replace_messages(key, wanted)
        self.model[key] = wanted  # a replacement creates the session, even with no messages

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS))
    def clear(self, which: int, key: str) -> None:
        self._store(which).clear_messages(key)
        if key in self.model:
            self.model[key] = []

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS))
    def delete(self, which: int, key: str) -> None:
        assert self._store(which).delete_session(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS), data=st.data())
    def restore(self, which: int, key: str, data: st.DataObject) -> None:
        if not self.past.get(key):
            return
        version = data.draw(st.sampled_from(sorted(self.past[key])))
        self._store(which).restore(key, version)
        self.model[key] = list(self.past[key][version])

    @rule(which=st.integers(0, 1), source=st.sampled_from(KEYS), new=st.sampled_from(KEYS))
    def fork(self, which: int, source: str, new: str) -> None:
        if source not in self.model or new in self.model:
            return
        self._store(which).fork(source, new)
        self.model[new] = list(self.model[source])
        self.forked |= {source, new}

    @rule(which=st.integers(0, 1), key=st.sampled_from(KEYS))
    def redact(self, which: int, key: str) -> None:
        if key not in self.model or key in self.forked:
            return
        self._store(which).redact(key, "test")
        self.model[key] = [redacted_message(message) for message in self.model[key]]
        self.past[key] = {version: [redacted_message(message) for message in messages]
                          for version, messages in self.past.get(key, {}).items()}

    @rule(which=st.integers(0, 1), source=st.sampled_from(KEYS))
    def import_copy(self, which: int, source: str) -> None:
        if source not in self.model or source in self.forked:
            return
        new = f"imported {self.imports}"
        self.imports += 1
        store = self._store(which)
        assert store.import_sessions({new: store.history(source)}).skipped == ()
        self.model[new] = list(self.model[source])

    @rule(which=st.integers(0, 1))
    def rebuild(self, which: int) -> None:
        self._store(which).rebuild_projections()

    @precondition(lambda self: self.engine == "lmdb")
    @rule()
    def vacuum(self) -> None:
        for store in self.stores[1:]:
            store.close()
        self.stores[0].vacuum()
        self.stores[1:] = [self._open()]

    @invariant()
    def lists_agree(self) -> None:
        self._remember()
        for store in self.stores:
            for key in {*KEYS, *self.model}:
                expected = self.model.get(key, [])
                assert store.load(key) == expected
                assert store.load_last(key, 3) == expected[-3:]
                view = store.session_at(key)
                # Folded from the log at that version: the history, not the read model.
                assert store.session_at(key, view.version).messages == expected
                assert [entry.message for entry in store.load_with_timestamps(key)] == expected

    def teardown(self) -> None:
        try:
            assert self.stores[0].verify().ok
            if self.engine == "lmdb":
                for store in self.stores:
                    store.close()
                with SessionStore(self.path, cache_sessions=0) as fresh:
                    for key, expected in self.model.items():
                        assert fresh.load(key) == expected
        finally:
            for store in self.stores:
                store.close()
            shutil.rmtree(self.directory, ignore_errors=True)


class MemoryChunkMachine(ChunkMachine):
    engine = "memory"


TestChunksOnLmdb = ChunkMachine.TestCase
TestChunksInMemory = MemoryChunkMachine.TestCase
TestChunksOnLmdb.settings = settings(TestChunksOnLmdb.settings, stateful_step_count=25)
TestChunksInMemory.settings = settings(TestChunksInMemory.settings, stateful_step_count=25)
