"""A session's first chunk damaged, at a chunk's edge (63, 64 and 65 messages, the last two removed again from the
longest) and with the cache on or off: every read either gives the messages that were appended or raises
``StoreCorrupted``, never another error or other messages; ``verify`` reports the damage. A chunk whose times alone
are damaged is damage to every read of it too, cache on or off, whether the read returns times or not."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted

from _damage import change_value

_CHUNK_KEY = struct.Struct(">QI")
#: Where a chunk's first time begins: after its count and role table size (two u32).
_FIRST_TIME = 8
COUNTS = {"k63": 63, "k64": 64, "k65": 67}


def conversation(count: int) -> list[ChatMessage]:
    return [ChatMessage("user" if i % 2 else "assistant", f"message {i} é🙂", {"turn": i} if i % 5 == 0 else None)
            for i in range(count)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "store"
    with SessionStore(path, durable=False) as store:
        for key, count in COUNTS.items():
            store.append_many(key, conversation(count))
        store.remove_last("k65")
        assert store.pop_last("k65") is not None
    return path


def expected(key: str) -> list[ChatMessage]:
    return conversation(COUNTS[key])[:65 if key == "k65" else None]


def stream_of(path: Path, key: str) -> int:
    with SessionStore(path, readonly=True) as store, store._environment.read() as txn:
        found = store._queries._catalog.stream_of_key(txn, key)
        assert found is not None
        return found[0]


def time_out_of_range(value: bytes) -> bytes:
    return value[:_FIRST_TIME] + struct.pack(">q", 2**62) + value[_FIRST_TIME + 8:]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated by a byte": lambda value: value[:-1],
    "truncated to its header": lambda value: value[:8],
    "a byte more": lambda value: value + b"x",
    "a count one less": lambda value: struct.pack(">I", struct.unpack_from(">I", value)[0] - 1) + value[4:],
    "a count one more": lambda value: struct.pack(">I", struct.unpack_from(">I", value)[0] + 1) + value[4:],
    "a role outside its table": lambda value: _with_first_role(value, 0xFF),
    "a role table that is not UTF-8": lambda value: _once(value, b'"user"', b'"us\xffr"'),
    "a content that is not UTF-8": lambda value: _once(value, b"message 0 ", b"\xffessage 0 "),
}


def _once(value: bytes, found: bytes, changed: bytes) -> bytes:
    """``value`` with ``found``, which it holds once (the chunk is stored plain), replaced by ``changed``."""
    assert value.count(found) == 1
    return value.replace(found, changed)


def _with_first_role(value: bytes, role: int) -> bytes:
    """``value`` with its first message's role index replaced (the roles follow the times and the content sizes)."""
    at = 8 + 12 * struct.unpack_from(">I", value)[0]
    return value[:at] + bytes([role]) + value[at + 1:]


@pytest.mark.parametrize("cache_sessions", [0, 256])
@pytest.mark.parametrize("key", sorted(COUNTS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_first_chunk_is_corruption_on_every_read(written, tmp_path, damage, key, cache_sessions):
    path = tmp_path / "store"
    shutil.copytree(written, path)
    change_value(path, b"messages.chunks", _CHUNK_KEY.pack(stream_of(path, key), 0), DAMAGE[damage])
    with SessionStore(path, cache_sessions=cache_sessions) as store:
        for read in (store.load, store.load_with_timestamps, lambda k: store.load_last(k, 70),
                     lambda k: store.session_at(k).messages):
            with pytest.raises(StoreCorrupted, match="damaged"):
                read(key)
        assert not store.verify().ok


@pytest.mark.parametrize("cache_sessions", [0, 256])
@pytest.mark.parametrize("key", sorted(COUNTS))
def test_a_first_chunk_whose_times_alone_are_damaged(written, tmp_path, key, cache_sessions):
    path = tmp_path / "store"
    shutil.copytree(written, path)
    change_value(path, b"messages.chunks", _CHUNK_KEY.pack(stream_of(path, key), 0), time_out_of_range)
    with SessionStore(path, cache_sessions=cache_sessions) as store:
        for read in (store.load, store.load_with_timestamps, lambda k: store.load_last(k, 3)):
            with pytest.raises(StoreCorrupted, match="a time is outside"):
                read(key)
        assert store.load(key, version=len(store.history(key))) == expected(key)  # folded from the log
        report = store.verify()
        assert not report.ok and any("a time is outside" in problem for problem in report.problems)
