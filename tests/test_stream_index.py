"""The log's stream index holds a run of versions per append: one entry for a batch, not one per event; stores
whose index has an entry per event (written before format 4) read, verify and take new runs alike."""

from __future__ import annotations

import struct
from pathlib import Path

import lmdb
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from eventstore._codec import encode_event
from eventstore._log import EventLog
from eventstore.events import MessageAppended
from eventstore.storage import MemoryStorage, Storage

from conftest import FakeClock, stream_id_of

T0 = 1_767_225_600_000_000
_ENTRY_KEY = struct.Struct(">QQ")
_POSITION = struct.Struct(">Q")


def append(environment: Storage, log: EventLog, key: str, count: int) -> None:
    encoded = [encode_event(MessageAppended(ChatMessage.user(f"{key} {n}"))) for n in range(count)]
    environment.write(lambda txn: log.append(txn, key, encoded, T0))


def index_entries(environment: Storage, log: EventLog) -> int:
    with environment.read() as txn:
        return txn.count(log._streams)


def test_a_batch_takes_one_stream_index_entry(environment: Storage) -> None:
    log = EventLog(environment)
    append(environment, log, "a", 20)
    assert index_entries(environment, log) == 1
    append(environment, log, "a", 1)
    append(environment, log, "b", 3)
    assert index_entries(environment, log) == 3
    with environment.read() as txn:
        assert log.stream_version(txn, stream_id_of(log, txn, "a")) == 21
        assert log.indexed_events(txn) == log.count(txn) == 24


# Batches of sessions "a" and "b" in the order they are appended: (which session, how many events).
batches = st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 6)), min_size=1, max_size=8)


@given(batches)
@example([("a", 3), ("b", 2), ("a", 1), ("a", 4)])
def test_every_range_of_a_stream_reads_as_a_list_of_its_positions(appended: list[tuple[str, int]]) -> None:
    """``read_stream``, ``stream_position`` and ``stream_version`` against a plain list of each session's
    positions, for every range of versions (runs and single entries mixed, two sessions interleaved)."""
    storage = MemoryStorage(Path("model"))
    log = EventLog(storage)
    positions: dict[str, list[int]] = {"a": [], "b": []}
    for key, count in appended:
        append(storage, log, key, count)
        first = sum(len(found) for found in positions.values()) + 1
        positions[key] += range(first, first + count)
    with storage.read() as txn:
        for key, expected in positions.items():
            stream_id = log.stream_id(txn, key)
            if stream_id is None:
                assert not expected
                continue
            assert log.stream_version(txn, stream_id) == len(expected)
            assert [log.stream_position(txn, stream_id, version) for version in range(len(expected) + 2)] \
                == [None, *expected, None]
            for after in range(len(expected) + 1):
                for up_to in range(after, len(expected) + 2):
                    read = [event.position for event in log.read_stream(txn, stream_id, after, up_to)]
                    assert read == expected[after:up_to]
    storage.release()


def one_entry_an_event(path: Path) -> None:
    """Rewrite the store's stream index as versions before format 4 wrote it, and mark it format 3."""
    environment = lmdb.open(str(path), max_dbs=64)
    with environment.begin(write=True) as txn:
        streams = environment.open_db(b"log.streams", txn=txn)
        entries = [(bytes(key), bytes(value)) for key, value in txn.cursor(db=streams)]
        for key, value in entries:
            stream_id, first = _ENTRY_KEY.unpack(key)
            position = _POSITION.unpack(value[:_POSITION.size])[0]
            count = 1 if len(value) == _POSITION.size else struct.unpack(">I", value[_POSITION.size:])[0]
            for offset in range(count):
                txn.put(_ENTRY_KEY.pack(stream_id, first + offset), _POSITION.pack(position + offset), db=streams)
        txn.put(b"format", b"3", db=environment.open_db(b"log.meta", txn=txn))
    environment.close()


def marker(path: Path) -> bytes:
    environment = lmdb.open(str(path), readonly=True, max_dbs=64)
    with environment.begin() as txn:
        found = txn.get(b"format", db=environment.open_db(b"log.meta", txn=txn, create=False)) or b""
    environment.close()
    return bytes(found)


def test_a_store_with_an_entry_an_event_reads_verifies_and_takes_runs(store_path: Path, clock: FakeClock) -> None:
    first = [ChatMessage.user(f"hello {n}") for n in range(12)]
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("alice", first)
        store.append("alice", ChatMessage.assistant("single"))
        store.append_many("bob", first[:3])
        history = store.history("alice")
    one_entry_an_event(store_path)
    with SessionStore(store_path, clock=clock) as store:
        assert store.history("alice") == history
        assert store.load("bob") == first[:3]
        assert store.verify().ok
        store.append("bob", ChatMessage.assistant("one more"))
    assert marker(store_path) == b"3"  # single events still write the old entries: older versions may open it
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("alice", first[:2])
        assert store.load("alice") == [*first, ChatMessage.assistant("single"), *first[:2]]
        assert store.session_at("alice", 13).messages == [*first, ChatMessage.assistant("single")]
        assert store.verify().ok
    assert marker(store_path) == b"4"
