"""``load_last(key, count)``: a session's last messages, read from the chunks that hold them only, equal to the
end of a plain list kept beside the store through appends, removals, replacements, redaction and deletion."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import REDACTED, ChatMessage, InvalidArgument, SessionStore, StoreCorrupted
from eventstore.storage import MemoryStorage
from projections.chunk import CHUNK_MESSAGES

from strategies import messages

_CHUNK_KEY = struct.Struct(">QI")
_U64 = struct.Struct(">Q")


def numbered(count: int, size: int) -> list[ChatMessage]:
    """``count`` messages of about ``size`` characters each: large ones close chunks by bytes, not by count."""
    return [ChatMessage("user" if i % 3 else "assistant", f"{i} " + "x" * size, {"i": i} if i % 7 == 0 else None)
            for i in range(count)]


def redacted(message: ChatMessage) -> ChatMessage:
    return ChatMessage(message.role, REDACTED, None if message.payload is None else {})


operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(messages, min_size=1, max_size=3)),
    st.tuples(st.just("bulk"), st.integers(1, 2 * CHUNK_MESSAGES + 5), st.sampled_from([0, 40, 900])),
    st.tuples(st.just("pop")), st.tuples(st.just("clear")), st.tuples(st.just("redact")),
    st.tuples(st.just("delete")), st.tuples(st.just("update"), messages),
    st.tuples(st.just("replace"), st.integers(0, CHUNK_MESSAGES + 3), st.sampled_from([0, 900])),
), max_size=10)


def apply(store: SessionStore, model: list[ChatMessage], operation: tuple[Any, ...]) -> list[ChatMessage]:
    """Run ``operation`` on the session "s" and return the model's list after it."""
    match operation:
        case ("append", appended):
            store.append_many("s", appended)
            return [*model, *appended]
        case ("bulk", count, size):
            for message in numbered(count, size):
                store.append("s", message)
            return [*model, *numbered(count, size)]
        case ("pop",):
            assert store.pop_last("s") == (model[-1] if model else None)
            return model[:-1]
        case ("clear",):
            if store.session_exists("s"):
                store.clear_messages("s")
            return []
        case ("redact",):
            if model:
                store.redact("s", "test")
            return [redacted(message) for message in model]
        case ("delete",):
            store.delete_session("s")
            return []
        case ("update", message):
            store.update_last("s", message)
            return [*model[:-1], message] if model else model
        case ("replace", count, size):
            store.replace_messages("s", numbered(count, size))
            return numbered(count, size)
    raise AssertionError(f"no such operation: {operation!r}")


@pytest.mark.parametrize("cache_sessions", [0, 256])
@given(operations=operations, extra=st.integers(0, 2 * CHUNK_MESSAGES))
@example(operations=[("bulk", 2 * CHUNK_MESSAGES + 5, 0), ("pop",), ("pop",), ("pop",), ("pop",), ("pop",)],
         extra=CHUNK_MESSAGES)
@example(operations=[("bulk", 30, 900), ("redact",), ("bulk", 3, 0)], extra=31)
@example(operations=[("bulk", 70, 0), ("delete",)], extra=1)
def test_the_last_messages_are_the_end_of_the_list(cache_sessions: int, operations: list[tuple[Any, ...]],
                                                   extra: int) -> None:
    """After every operation, ``load_last`` of any count (none, one, across a chunk's edge, all, more than the
    session holds) is the end of the model's list, with the cache on (answered from it) or off (from chunks)."""
    store = SessionStore.on_storage(MemoryStorage(), cache_sessions=cache_sessions)
    model: list[ChatMessage] = []
    with store:
        for operation in operations:
            model = apply(store, model, operation)
            size = len(model)
            for count in {0, 1, 2, extra, CHUNK_MESSAGES - 1, CHUNK_MESSAGES, CHUNK_MESSAGES + 1, size - 1, size,
                          size + 1, 3 * CHUNK_MESSAGES}:
                if count >= 0:
                    assert store.load_last("s", count) == model[max(0, size - count):], (operation, count)


def test_an_unknown_or_deleted_session_has_no_last_messages(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("gone", ChatMessage.user("bye"))
        store.delete_session("gone")
        assert (store.load_last("gone", 5), store.load_last("never", 5)) == ([], [])


@pytest.mark.parametrize("count", [-1, 1.0, True, "3", None])
def test_a_count_that_is_not_a_non_negative_int_is_refused(tmp_path: Path, count: object) -> None:
    with SessionStore(tmp_path / "store", durable=False) as store, pytest.raises(InvalidArgument, match="count"):
        store.load_last("s", count)  # type: ignore[arg-type]


def _edit_chunk(path: Path, key: str, first: int, replacement: bytes | None) -> None:
    """Overwrite the chunk of ``key`` that begins at message ``first`` (delete it for ``None``)."""
    env = lmdb.open(str(path), max_dbs=32)
    try:
        with env.begin(db=env.open_db(b"log.stream_keys")) as txn:
            stream = next(_U64.unpack(k)[0] for k, v in txn.cursor() if bytes(v) == key.encode())
        with env.begin(write=True, db=env.open_db(b"messages.chunks")) as txn:
            chunk_key = _CHUNK_KEY.pack(stream, first)
            assert txn.delete(chunk_key) if replacement is None else txn.replace(chunk_key, replacement)
    finally:
        env.close()


def test_only_the_chunks_holding_the_last_messages_are_read(tmp_path: Path) -> None:
    """With the session's first chunk damaged, its last messages still read (that chunk is not read), while a
    whole load, and a read of the last messages that reaches into that chunk, find the damage."""
    written = numbered(3 * CHUNK_MESSAGES, 0)
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("s", written)
    _edit_chunk(tmp_path / "store", "s", 0, b"\x00\x00")
    with SessionStore(tmp_path / "store", cache_sessions=0) as store:
        assert store.load_last("s", 2 * CHUNK_MESSAGES) == written[CHUNK_MESSAGES:]
        with pytest.raises(StoreCorrupted, match="damaged"):
            store.load_last("s", 2 * CHUNK_MESSAGES + 1)
        with pytest.raises(StoreCorrupted, match="damaged"):
            store.load("s")


def test_a_missing_chunk_under_the_last_messages_is_corruption(tmp_path: Path) -> None:
    """The chunks from the one holding the first wanted message must hold every message the session counts."""
    written = numbered(3 * CHUNK_MESSAGES, 0)
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("s", written)
    _edit_chunk(tmp_path / "store", "s", CHUNK_MESSAGES, None)
    with SessionStore(tmp_path / "store", cache_sessions=0) as store:
        assert store.load_last("s", CHUNK_MESSAGES) == written[2 * CHUNK_MESSAGES:]
        with pytest.raises(StoreCorrupted, match="counted"):
            store.load_last("s", CHUNK_MESSAGES + 1)
