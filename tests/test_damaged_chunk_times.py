"""A message chunk whose stored times alone are damaged gives the same answer with the decoded-list cache on and
off: every read of it raises ``StoreCorrupted`` saying a time is outside what a datetime can hold, whether it
returns times (``load_with_timestamps``, ``session_at``) or not (``load``, ``load_last``: without the cache these
decoded no time, and returned the messages). Times at the very ends of a datetime's range are not damage: both give
them back."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventstore import SessionStore, StoreCorrupted
from eventstore._time import MAX_MICROS, MIN_MICROS
from projections.chunk import DamagedChunk, decode_contents, decode_entries, decode_messages

from _damage import change_value
from test_short_load_damaged_chunks import conversation

_CHUNK_KEY = struct.Struct(">QI")
_TIME = struct.Struct(">q")
#: Messages in the session: a full first chunk (64) and a second one.
COUNT = 70
KEY = "chat"

Read = Callable[[SessionStore], object]
READS: dict[str, Read] = {
    "load": lambda store: store.load(KEY),
    "load_with_timestamps": lambda store: store.load_with_timestamps(KEY),
    "load_last of the damaged chunk": lambda store: store.load_last(KEY, COUNT),
    "session_at": lambda store: store.session_at(KEY).messages,
    "get_session_metadata, then load": lambda store: (store.get_session_metadata(KEY), store.load(KEY)),
}

#: Stored times no datetime holds: far out, and one microsecond past either end (whose top byte valid times share).
OUT_OF_RANGE = {"2**62": 2**62, "-2**62": -(2**62), "one past the latest": MAX_MICROS + 1,
                "one before the earliest": MIN_MICROS - 1, "the largest": 2**63 - 1, "the smallest": -(2**63)}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("times") / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many(KEY, conversation(COUNT))
    return path


def with_time(value: bytes, index: int, micros: int) -> bytes:
    """A stored chunk with the time of its ``index``-th message replaced (the times follow the 8-byte header)."""
    at = 8 + _TIME.size * index
    return value[:at] + _TIME.pack(micros) + value[at + _TIME.size:]


def damaged_copy(written: Path, tmp_path: Path, first: int, index: int, micros: int) -> Path:
    """A copy of the store whose chunk beginning at message ``first`` has message ``index``'s time replaced."""
    path = tmp_path / "store"
    shutil.copytree(written, path)
    with SessionStore(path, readonly=True) as store, store._environment.read() as txn:
        found = store._queries._catalog.stream_of_key(txn, KEY)
        assert found is not None
    change_value(path, b"messages.chunks", _CHUNK_KEY.pack(found[0], first),
                 lambda value: with_time(value, index, micros))
    return path


def outcome(path: Path, cache_sessions: int, read: Read) -> str:
    """What a read gives on a fresh store object: its answer, or the error it raises."""
    with SessionStore(path, cache_sessions=cache_sessions) as store:
        try:
            return repr(read(store))
        except StoreCorrupted as exc:
            return f"StoreCorrupted: {exc}"


@pytest.mark.parametrize("first, index", [(0, 0), (0, 63), (64, 5)])
@pytest.mark.parametrize("micros", sorted(OUT_OF_RANGE), ids=str)
@pytest.mark.parametrize("read", sorted(READS))
def test_every_read_of_a_chunk_with_a_damaged_time_is_corruption(written, tmp_path, read, micros, first, index):
    path = damaged_copy(written, tmp_path, first, index, OUT_OF_RANGE[micros])
    with_cache, without = (outcome(path, cache, READS[read]) for cache in (256, 0))
    assert with_cache == without
    assert without.startswith("StoreCorrupted: the messages of stream ") and \
        without.endswith("are damaged: a time is outside what a datetime can hold")


def test_the_other_chunk_still_loads_alone(written, tmp_path):
    """``load_last`` reads only the chunks holding what it returns: an undamaged last chunk still answers."""
    path = damaged_copy(written, tmp_path, 0, 3, 2**62)
    for cache_sessions in (256, 0):
        with SessionStore(path, cache_sessions=cache_sessions) as store:
            assert store.load_last(KEY, 6) == conversation(COUNT)[-6:]


@pytest.mark.parametrize("micros", [MAX_MICROS, MIN_MICROS])
def test_times_at_the_ends_of_the_range_are_kept(written, tmp_path, micros):
    """Not damage: the cache on and off give the same messages and times."""
    path = damaged_copy(written, tmp_path, 0, 2, micros)
    answers = {read: {outcome(path, cache, READS[read]) for cache in (256, 0)} for read in READS}
    assert all(len(given) == 1 for given in answers.values()), answers
    with SessionStore(path) as store:
        assert store.load(KEY) == conversation(COUNT)
        assert store.load_with_timestamps(KEY)[2].created_at == (datetime.max if micros == MAX_MICROS
                                                                else datetime.min).replace(tzinfo=UTC)


@pytest.mark.parametrize("micros", sorted(OUT_OF_RANGE), ids=str)
def test_every_decoder_refuses_a_damaged_time(written, tmp_path, micros):
    """The chunk decoders agree: with times, messages alone, contents alone (search's read)."""
    with SessionStore(written, readonly=True) as store, store._environment.read() as txn:
        found = store._queries._catalog.stream_of_key(txn, KEY)
        assert found is not None
        stored = txn.get(store._queries._messages._chunks, _CHUNK_KEY.pack(found[0], 0))
        assert stored is not None
        value = with_time(bytes(stored), 9, OUT_OF_RANGE[micros])  # copied while the transaction holds the page
    for decode in (decode_entries, decode_messages, decode_contents):
        with pytest.raises(DamagedChunk, match="a time is outside what a datetime can hold"):
            decode(value)
