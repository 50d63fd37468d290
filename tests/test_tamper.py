"""Tamper evidence (issue 3): damage a closed store directly through LMDB, reopen it, and check that
``verify()`` reports the damage, naming the position or session it is in."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted, VerifyReport
from eventstore._log import _RECORD

from conftest import FakeClock, raw_value

_U64 = struct.Struct(">Q")
_U64_PAIR = struct.Struct(">QQ")
SNAPSHOT_EVERY = 5


# -- building and damaging a store -----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A closed store and what its writer knew about it."""

    path: Path
    clock: FakeClock
    positions: dict[str, list[int]]  # session key -> global position of each version (index 0 = version 1)
    hashes: dict[int, str]  # position -> hash
    streams: dict[str, int]  # session key -> stream id
    total: int


def alice_text(i: int) -> str:
    return f"alice says {i:02d}"


def build(path: Path, clock: FakeClock) -> Built:
    """Write three interleaved sessions (snapshots, a rename, a running state, an update, a deletion), close.

    alice: 12 appends, a rename, a running state, an update (snapshots at 5, 10, 15);
    bob: 3 appends, then deleted; carol: 2 appends and a compact.
    """
    with SessionStore(path, clock=clock, snapshot_every=SNAPSHOT_EVERY) as store:
        for i in range(6):
            clock.advance(seconds=1)
            store.append("alice", ChatMessage.user(alice_text(i)))
        for i in range(3):
            clock.advance(seconds=1)
            store.append("bob", ChatMessage.user(f"bob says {i}"))
        for i in range(6, 12):
            clock.advance(seconds=1)
            store.append("alice", ChatMessage.assistant(alice_text(i)))
        store.append_many("carol", [ChatMessage.user("carol one"), ChatMessage.user("carol two")])
        clock.advance(seconds=1)
        store.delete_session("bob")
        store.set_session_name("alice", "wonderland")
        store.set_session_state("alice", "running", turn_id="t1")
        clock.advance(seconds=1)
        store.update_last("alice", ChatMessage.assistant("alice says 11, edited"))
        store.compact("carol")
        positions = {key: [e.position for e in store.history(key)] for key in ("alice", "bob", "carol")}
        events = list(store.events())
        assert store.verify().ok
    with raw(path) as env, env.begin(db=env.open_db(b"log.stream_keys")) as txn:
        streams = {bytes(v).decode(): _U64.unpack(k)[0] for k, v in txn.cursor()}
    return Built(path, clock, positions, {e.position: e.hash for e in events}, streams, len(events))


@contextmanager
def raw(path: Path) -> Iterator[lmdb.Environment]:
    """The store's LMDB environment, opened directly (the SessionStore must be closed)."""
    env = lmdb.open(str(path), max_dbs=32)
    try:
        yield env
    finally:
        env.close()


@contextmanager
def editing(path: Path, name: bytes) -> Iterator[lmdb.Transaction]:
    """A write transaction on one named database of the closed store, committed at the end."""
    with raw(path) as env:
        db = env.open_db(name)
        with env.begin(write=True, db=db) as txn:
            yield txn


def items(path: Path, name: bytes) -> list[tuple[bytes, bytes]]:
    with raw(path) as env, env.begin(db=env.open_db(name)) as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor()]


def replace_in(path: Path, names: tuple[bytes, ...], old: bytes, new: bytes) -> int:
    """Replace ``old`` by ``new`` in every value of the named databases; return how many values changed."""
    changed = 0
    for name in names:
        with editing(path, name) as txn:
            for key, value in [(bytes(k), bytes(v)) for k, v in txn.cursor()]:
                if old in value:
                    txn.put(key, value.replace(old, new))
                    changed += 1
    return changed


def reverify(built: Built) -> VerifyReport:
    """Reopen the damaged store and verify it."""
    with SessionStore(built.path, clock=built.clock, snapshot_every=SNAPSHOT_EVERY) as store:
        return store.verify()


def names_position(problems: list[str], position: int) -> bool:
    """Whether some problem names ``position`` ("position 7", or 7 in a "positions [...]" list)."""
    single = re.compile(rf"\bposition {position}\b")
    listed = re.compile(rf"\bpositions \[[^\]]*\b{position}\b")
    return any(single.search(p) or listed.search(p) for p in problems)


def names_session(problems: list[str], key: str, stream_id: int) -> bool:
    """Whether some problem names the session, by its key or its stream id."""
    by_stream = re.compile(rf"\bstream {stream_id}\b")
    return any(repr(key) in p or by_stream.search(p) for p in problems)


def position_key(position: int) -> bytes:
    return _U64.pack(position)


@pytest.fixture
def built(store_path: Path, clock: FakeClock) -> Built:
    return build(store_path, clock)


@pytest.fixture
def redacted(store_path: Path, clock: FakeClock) -> tuple[Built, dict[int, bytes]]:
    """A store whose alice was redacted, and alice's original records by position (read before redaction)."""
    plain = build(store_path, clock)
    records = dict(items(store_path, b"log.events"))
    originals = {position: records[position_key(position)] for position in plain.positions["alice"]}
    with SessionStore(store_path, clock=clock, snapshot_every=SNAPSHOT_EVERY) as store:
        clock.advance(seconds=1)
        store.redact("alice", "user request")
        hashes = {e.position: e.hash for e in store.events()}
        assert store.verify().ok
    return Built(store_path, clock, plain.positions, hashes, plain.streams, plain.total + 1), originals


# -- a clean store ---------------------------------------------------------------------------------


class TestCleanStore:
    """Stores nobody damaged verify ok."""

    def test_clean_store_verifies(self, built):
        """A store written only through the API has no problems and every event checked."""
        report = reverify(built)
        assert (True, built.total, []) == (report.ok, report.events_checked, report.problems)

    def test_opening_through_lmdb_changes_nothing(self, built):
        """A direct LMDB write transaction that rewrites every record with its own bytes is harmless."""
        with editing(built.path, b"log.events") as txn:
            for key, value in [(bytes(k), bytes(v)) for k, v in txn.cursor()]:
                txn.put(key, value)
        report = reverify(built)
        assert (True, []) == (report.ok, report.problems)

    def test_redacted_store_verifies(self, redacted):
        """A store with a redacted session verifies ok."""
        built, _ = redacted
        report = reverify(built)
        assert (True, built.total, []) == (report.ok, report.events_checked, report.problems)


# -- a changed byte --------------------------------------------------------------------------------

_HEADER = _RECORD.size


def _type_end(record: bytes) -> int:
    type_name_length: int = _RECORD.unpack_from(record)[-1]
    return _HEADER + type_name_length


#: (name, offset in the record, xor mask). The header is
#: format(0) flags(1) stream id(2-9) version(10-17) recorded µs(18-25) event id(26-41) schema(42-43)
#: payload digest(44-75) hash(76-107) type name length(108-109), then the type name, then the payload.
BYTE_CHANGES: list[tuple[str, Callable[[bytes], int], int]] = [
    ("format", lambda r: 0, 0x01),
    ("flags-redacted-bit", lambda r: 1, 0x01),
    ("flags-unused-bit", lambda r: 1, 0x80),
    ("stream-id-high-byte", lambda r: 2, 0x01),
    ("stream-id-low-byte", lambda r: 9, 0x02),
    ("version", lambda r: 17, 0x01),
    ("recorded-at", lambda r: 25, 0x01),
    ("event-id", lambda r: 30, 0xFF),
    ("schema-version", lambda r: 43, 0x01),
    ("payload-digest", lambda r: 44, 0x01),
    ("hash-first-byte", lambda r: 76, 0x01),
    ("hash-last-byte", lambda r: 107, 0x80),
    ("type-name-length", lambda r: 109, 0x01),
    ("type-name", lambda r: _HEADER, 0x20),
    ("payload-first-byte", lambda r: _type_end(r), 0x01),
    ("payload-middle-byte", lambda r: (_type_end(r) + len(r)) // 2, 0x01),
    ("payload-content-letter", lambda r: r.index(b"alice says") + 1, 0x20),
    ("payload-last-byte", lambda r: len(r) - 1, 0x01),
]


class TestChangedByte:
    """Any changed byte of a recorded event is reported at that event's position."""

    @pytest.mark.parametrize("change", BYTE_CHANGES, ids=[c[0] for c in BYTE_CHANGES])
    def test_changed_byte(self, built, change):
        """Flipping bits of one byte of a message event in the middle of the log is reported at its position."""
        _name, where, mask = change
        position = built.positions["alice"][3]  # alice's 4th append, in the middle of the log
        with editing(built.path, b"log.events") as txn:
            record = bytearray(raw_value(txn, position_key(position)))
            record[where(bytes(record))] ^= mask
            txn.put(position_key(position), bytes(record))
        report = reverify(built)
        assert False is report.ok
        assert names_position(report.problems, position), report.problems

    @pytest.mark.parametrize("key, version", [("bob", 4), ("alice", 13), ("alice", 14)])
    def test_changed_payload_of_other_event_types(self, built, key, version):
        """A changed payload byte of a deletion, a rename or a state change is reported at its position."""
        position = built.positions[key][version - 1]
        with editing(built.path, b"log.events") as txn:
            record = bytearray(raw_value(txn, position_key(position)))
            record[-2] ^= 0x01
            txn.put(position_key(position), bytes(record))
        report = reverify(built)
        assert False is report.ok
        assert names_position(report.problems, position), report.problems

    def test_appended_byte(self, built):
        """A byte added at the end of a record is reported at its position."""
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            txn.put(position_key(position), raw_value(txn, position_key(position)) + b" ")
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems


# -- removed and reordered events ------------------------------------------------------------------


class TestRemovedEvent:
    """An event removed from the log is reported where it is missing."""

    def test_record_removed(self, built):
        """Deleting one record from log.events is reported at its position."""
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            assert txn.delete(position_key(position))
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_record_and_stream_entry_removed(self, built):
        """Deleting a record and its stream index entry is reported at its position."""
        position = built.positions["alice"][3]
        with raw(built.path) as env:
            events, streams = env.open_db(b"log.events"), env.open_db(b"log.streams")
            with env.begin(write=True) as txn:
                assert txn.delete(position_key(position), db=events)
                assert txn.delete(_U64_PAIR.pack(built.streams["alice"], 4), db=streams)
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_record_removed_and_later_ones_renumbered(self, built):
        """Removing a record and closing the gap (positions and stream index moved down) breaks the chain there."""
        position = built.positions["alice"][3]
        with raw(built.path) as env:
            events, streams = env.open_db(b"log.events"), env.open_db(b"log.streams")
            with env.begin(write=True) as txn:
                later = [(_U64.unpack(bytes(k))[0], bytes(v)) for k, v in txn.cursor(db=events)
                         if _U64.unpack(bytes(k))[0] >= position]
                for moved, _ in later:
                    txn.delete(position_key(moved), db=events)
                for moved, value in later[1:]:
                    txn.put(position_key(moved - 1), value, db=events)
                index = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=streams)]
                for key, value in index:
                    # An entry begins with its (first) event's position; a run's count follows it.
                    target = _U64.unpack(value[:_U64.size])[0]
                    if target == position:
                        txn.delete(key, db=streams)
                    elif target > position:
                        txn.put(key, position_key(target - 1) + value[_U64.size:], db=streams)
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems


class TestSwappedEvents:
    """Two events swapped in the log are reported at their positions."""

    @pytest.mark.parametrize("first, second", [(("alice", 6), ("bob", 1)), (("alice", 2), ("alice", 3)),
                                               (("alice", 1), ("alice", 12))])
    def test_records_swapped(self, built, first, second):
        """Swapping two records of log.events is reported at one of their positions."""
        a = built.positions[first[0]][first[1] - 1]
        b = built.positions[second[0]][second[1] - 1]
        with editing(built.path, b"log.events") as txn:
            record_a, record_b = raw_value(txn, position_key(a)), raw_value(txn, position_key(b))
            txn.put(position_key(a), record_b)
            txn.put(position_key(b), record_a)
        report = reverify(built)
        assert False is report.ok
        assert names_position(report.problems, a) or names_position(report.problems, b), report.problems

    def test_swapped_with_stream_index_fixed(self, built):
        """Swapping two events of one session and repointing the stream index still breaks the chain."""
        a, b = built.positions["alice"][1], built.positions["alice"][2]
        stream = built.streams["alice"]
        with raw(built.path) as env:
            events, streams = env.open_db(b"log.events"), env.open_db(b"log.streams")
            with env.begin(write=True) as txn:
                record_a, record_b = raw_value(txn, position_key(a), events), raw_value(txn, position_key(b), events)
                txn.put(position_key(a), record_b, db=events)
                txn.put(position_key(b), record_a, db=events)
                txn.put(_U64_PAIR.pack(stream, 2), position_key(b), db=streams)
                txn.put(_U64_PAIR.pack(stream, 3), position_key(a), db=streams)
        report = reverify(built)
        assert False is report.ok
        assert names_position(report.problems, a) or names_position(report.problems, b), report.problems


# -- projections that drifted from the log ---------------------------------------------------------


class TestProjectionDrift:
    """A read model that differs from a fresh fold of the log is reported, naming the session."""

    def check(self, built: Built, key: str) -> None:
        report = reverify(built)
        assert False is report.ok
        assert names_session(report.problems, key, built.streams[key]), report.problems

    def test_catalog_position_changed(self, built):
        """Alice's catalog.sessions entry naming another time than her last activity is reported for alice."""
        stream = _U64.pack(built.streams["alice"])
        with editing(built.path, b"catalog.sessions") as txn:
            position = raw_value(txn, stream)
            assert stream == position[8:]  # the time, then the stream id
            txn.put(stream, _U64.pack(_U64.unpack(position[:8])[0] - 1) + stream)
        self.check(built, "alice")

    def test_catalog_count_changed(self, built):
        """A wrong message count in alice's catalog row is reported for alice."""
        with editing(built.path, b"catalog.sessions") as txn:
            position = raw_value(txn, _U64.pack(built.streams["alice"]))
        with editing(built.path, b"catalog.activity") as txn:
            row = raw_value(txn, position)
            assert 1 == row.count(b'",12,')  # the count follows the last-activity time
            txn.put(position, row.replace(b'",12,', b'",13,'))
        self.check(built, "alice")

    def test_catalog_entry_removed(self, built):
        """A live session missing from catalog.sessions is reported."""
        with editing(built.path, b"catalog.sessions") as txn:
            assert txn.delete(_U64.pack(built.streams["carol"]))
        self.check(built, "carol")

    def test_deleted_session_back_in_catalog(self, built):
        """A catalog entry for the deleted bob is reported for bob."""
        bob = _U64.pack(built.streams["bob"])
        with editing(built.path, b"catalog.sessions") as txn:
            txn.put(bob, raw_value(txn, _U64.pack(built.streams["carol"]))[:8] + bob)
        self.check(built, "bob")

    def test_orphan_catalog_entry(self, built):
        """A catalog entry for a stream that has no events is reported, naming that stream."""
        with editing(built.path, b"catalog.sessions") as txn:
            txn.put(_U64.pack(999), raw_value(txn, _U64.pack(built.streams["carol"])))
        report = reverify(built)
        assert (False, True) == (report.ok, any(re.search(r"\bstream 999\b", p) for p in report.problems)), \
            report.problems

    def test_activity_entry_changed(self, built):
        """A changed row in catalog.activity is reported for its session."""
        with editing(built.path, b"catalog.activity") as txn:
            entries = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
            key, row = next((k, v) for k, v in entries if b'"alice"' in v)
            txn.put(key, row.replace(b'"wonderland"', b'"elsewhere"'))
        self.check(built, "alice")

    def test_running_entry_for_idle_session(self, built):
        """A catalog.running entry for carol, who never ran, is reported for carol."""
        with editing(built.path, b"catalog.running") as txn:
            txn.put(_U64_PAIR.pack(1, built.streams["carol"]), b"")
        self.check(built, "carol")

    def test_message_chunk_changed(self, built):
        """A changed message text in messages.chunks is reported for its session."""
        assert 1 == replace_in(built.path, (b"messages.chunks",), b"alice says 03", b"alice sayz 03")
        self.check(built, "alice")

    def test_message_chunk_removed(self, built):
        """A missing message chunk is reported for its session."""
        with editing(built.path, b"messages.chunks") as txn:
            key = next(bytes(k) for k in txn.cursor().iternext(values=False)
                       if _U64.unpack(bytes(k)[:8])[0] == built.streams["carol"])
            assert txn.delete(key)
        self.check(built, "carol")

    def test_messages_for_deleted_session(self, built):
        """A message chunk for the deleted bob is reported for bob."""
        with editing(built.path, b"messages.chunks") as txn:
            carol = next((bytes(k), bytes(v)) for k, v in txn.cursor()
                         if _U64.unpack(bytes(k)[:8])[0] == built.streams["carol"])
            txn.put(_U64.pack(built.streams["bob"]) + carol[0][8:], carol[1])
        self.check(built, "bob")

    def test_stray_message_chunk_after_the_start(self, built):
        """A message chunk of the deleted bob that begins at message 3 (none at 0) is reported for bob."""
        with editing(built.path, b"messages.chunks") as txn:
            carol = next(bytes(v) for k, v in txn.cursor()
                         if _U64.unpack(bytes(k)[:8])[0] == built.streams["carol"])
            txn.put(_U64.pack(built.streams["bob"]) + struct.pack(">I", 3), carol)
        self.check(built, "bob")

    def test_orphan_message_chunk(self, built):
        """A message chunk of a stream that has no events is reported, naming that stream."""
        with editing(built.path, b"messages.chunks") as txn:
            carol = next((bytes(k), bytes(v)) for k, v in txn.cursor()
                         if _U64.unpack(bytes(k)[:8])[0] == built.streams["carol"])
            txn.put(_U64.pack(999) + carol[0][8:], carol[1])
        report = reverify(built)
        assert (False, True) == (report.ok, any(re.search(r"\bstream 999\b", p) for p in report.problems)), \
            report.problems


    def test_damaged_last_chunk_refuses_edits(self, built):
        """A last chunk whose role table was emptied: reads and edits of the session raise ``StoreCorrupted``
        naming its stream, and write nothing."""
        stream = built.streams["alice"]
        with editing(built.path, b"messages.chunks") as txn:
            key, value = [(bytes(k), bytes(v)) for k, v in txn.cursor() if _U64.unpack(bytes(k)[:8])[0] == stream][-1]
            table = re.search(rb'\["[^\]]*"\]', value)  # the role table comes before any content
            assert table is not None
            txn.put(key, value.replace(table.group(), b"[" + b" " * (len(table.group()) - 2) + b"]"))
        with SessionStore(built.path, clock=built.clock, snapshot_every=SNAPSHOT_EVERY) as store:
            before = store.stats().events
            for act in (lambda: store.load("alice"), lambda: store.remove_last("alice"),
                        lambda: store.update_last("alice", ChatMessage.user("x")),
                        lambda: store.append("alice", ChatMessage.user("y"))):
                with pytest.raises(StoreCorrupted, match=rf"\bstream {stream}\b"):
                    act()
            assert before == store.stats().events


# -- damaged snapshots -----------------------------------------------------------------------------


SNAPSHOT_DATABASES = (b"snapshots", b"snapshots.blobs")


class TestDamagedSnapshot:
    """A snapshot that no longer matches the log is reported, naming its session."""

    def check(self, built: Built, key: str) -> None:
        report = reverify(built)
        assert False is report.ok
        assert names_session(report.problems, key, built.streams[key]), report.problems

    def test_garbage_snapshot(self, built):
        """Snapshot bytes that do not decode are reported for their session."""
        with editing(built.path, b"snapshots") as txn:
            key = _U64_PAIR.pack(built.streams["alice"], 10)
            assert txn.get(key) is not None
            txn.put(key, b"\x00 not a snapshot")
        self.check(built, "alice")

    def test_truncated_snapshot(self, built):
        """A truncated snapshot is reported for its session."""
        with editing(built.path, b"snapshots") as txn:
            key = _U64_PAIR.pack(built.streams["alice"], 10)
            txn.put(key, raw_value(txn, key)[:-7])
        self.check(built, "alice")

    def test_message_text_changed(self, built):
        """A snapshot whose stored message text was changed is reported for its session."""
        changed = replace_in(built.path, SNAPSHOT_DATABASES, b"alice says 03", b"alice sayz 03")
        assert changed > 0
        self.check(built, "alice")

    def test_head_changed(self, built):
        """A snapshot whose session name was changed is reported for its session."""
        assert replace_in(built.path, SNAPSHOT_DATABASES, b'"wonderland"', b'"wonderlanD"') > 0
        self.check(built, "alice")

    def test_hash_of_another_event(self, built):
        """A snapshot that records the hash of another event is reported for its session."""
        at_ten = built.hashes[built.positions["alice"][9]]
        other = built.hashes[built.positions["alice"][8]]
        assert replace_in(built.path, (b"snapshots",), at_ten.encode(), other.encode()) == 1
        self.check(built, "alice")

    def test_snapshot_without_event(self, built):
        """A snapshot at a version the session never reached is reported for its stream."""
        stream = built.streams["carol"]
        with editing(built.path, b"snapshots") as txn:
            txn.put(_U64_PAIR.pack(stream, 99), raw_value(txn, _U64_PAIR.pack(stream, 2)))
        self.check(built, "carol")

    def test_rebuilding_the_messages_repairs_it(self, built):
        """Rebuilding the message read model drops the snapshots (copies of its chunks) and takes them again from
        the log: verify is green again, and the snapshots hold the log's messages."""
        assert replace_in(built.path, SNAPSHOT_DATABASES, b"alice says 03", b"alice sayz 03") > 0
        with SessionStore(built.path, clock=built.clock, snapshot_every=SNAPSHOT_EVERY) as store:
            store.rebuild_projections(["catalog"])
            assert False is store.verify().ok  # the catalog alone does not touch the snapshots
            store.rebuild_projections(["messages"])
            # alice at 5, 10 and 15; carol's snapshot by compact, at version 2, is not taken again.
            assert (True, 3) == (store.verify().ok, store.stats().snapshots)
            assert "alice says 03" in [m.content for m in store.session_at("alice").messages]

    def test_missing_blob(self, built):
        """A snapshot whose message blobs are gone is reported for its session."""
        prefix = _U64.pack(built.streams["alice"])
        with editing(built.path, b"snapshots.blobs") as txn:
            keys = [bytes(k) for k in txn.cursor().iternext(values=False) if bytes(k).startswith(prefix)]
            assert keys
            for key in keys:
                txn.delete(key)
        self.check(built, "alice")


# -- redacted content put back ---------------------------------------------------------------------


class TestRedactedContentPutBack:
    """Once redacted, an event's original content cannot come back unnoticed."""

    def test_payload_put_back_flag_kept(self, redacted):
        """The original payload under the redacted record's header is reported at its position."""
        built, originals = redacted
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            record = raw_value(txn, position_key(position))
            original = originals[position]
            txn.put(position_key(position), record[:_type_end(record)] + original[_type_end(original):])
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_whole_record_put_back(self, redacted):
        """The original record, unredacted flag and all, put back in place is reported at its position."""
        built, originals = redacted
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            txn.put(position_key(position), originals[position])
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_flag_cleared(self, redacted):
        """Clearing the redacted flag of a redacted record is reported at its position."""
        built, _ = redacted
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            record = bytearray(raw_value(txn, position_key(position)))
            record[1] &= 0xFE
            txn.put(position_key(position), bytes(record))
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_other_content_in_redacted_record(self, redacted):
        """A redacted record given some other message text is reported at its position."""
        built, _ = redacted
        position = built.positions["alice"][3]
        with editing(built.path, b"log.events") as txn:
            record = raw_value(txn, position_key(position))
            assert b"[redacted]" in record
            txn.put(position_key(position), record.replace(b"[redacted]", b"new words!"))
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_redaction_event_removed(self, redacted):
        """Removing the SessionRedacted event is reported."""
        built, _ = redacted
        position = built.total  # the redaction is the last event
        with editing(built.path, b"log.events") as txn:
            assert txn.delete(position_key(position))
        report = reverify(built)
        assert False is report.ok
        assert names_session(report.problems, "alice", built.streams["alice"]) or any(
            names_position(report.problems, p) for p in built.positions["alice"]), report.problems

    def test_rename_flagged_and_forged(self, redacted):
        """A non-message event marked redacted and given another name is reported at its position."""
        built, _ = redacted
        position = built.positions["alice"][12]  # the rename to "wonderland"
        with editing(built.path, b"log.events") as txn:
            record = bytearray(raw_value(txn, position_key(position)))
            assert b"wonderland" in record
            record[1] |= 0x01
            txn.put(position_key(position), bytes(record).replace(b"wonderland", b"FORGEDNAME"))
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems

    def test_role_of_redacted_message_forged(self, redacted):
        """A redacted message given another role is reported at its position."""
        built, _ = redacted
        position = built.positions["alice"][2]
        with editing(built.path, b"log.events") as txn:
            record = raw_value(txn, position_key(position))
            assert b'["user","[redacted]"]' in record
            txn.put(position_key(position), record.replace(b'["user",', b'["tool",'))
        report = reverify(built)
        assert (False, True) == (report.ok, names_position(report.problems, position)), report.problems
