"""The event log, driven directly on every storage engine: one named test per numbered invariant of
``eventstore._log``."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import pytest

from eventstore import ChatMessage, IncompatibleStore, StoreCorrupted, WrongExpectedVersion, _log
from eventstore._codec import EncodedEvent, decode_event, encode_event
from eventstore._log import _RECORD, GENESIS_HASH, EventLog, StoredEvent, chain_hash
from eventstore.events import MessageAppended, SessionDeleted, SessionEvent, SessionRenamed
from eventstore.storage import Storage

from conftest import stream_id_of

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
_POSITION = struct.Struct(">Q")


@pytest.fixture
def log(environment: Storage) -> EventLog:
    return EventLog(environment)


def said(text: str) -> MessageAppended:
    return MessageAppended(ChatMessage.user(text))


def append(environment: Storage, log: EventLog, key: str, events: Sequence[SessionEvent], at: int = T0,
           expected_version: int | None = None) -> list[StoredEvent]:
    encoded = [encode_event(event) for event in events]
    return environment.write(lambda txn: log.append(txn, key, encoded, at, expected_version))


def everything(environment: Storage, log: EventLog) -> list[StoredEvent]:
    with environment.read() as txn:
        return list(log.read_all(txn))


def head(environment: Storage, log: EventLog) -> tuple[int, bytes, int]:
    with environment.read() as txn:
        return log.head(txn)


def recompute_chain(stored: Sequence[StoredEvent]) -> list[bytes]:
    """The hash of each event, recomputed from GENESIS_HASH and the events' own fields."""
    hashes, previous = [], GENESIS_HASH
    for event in stored:
        previous = chain_hash(previous, event.position, event.session_key, event.version, event.recorded_at,
                              event.event_id, event.encoded, hashlib.sha256(event.encoded.payload).digest())
        hashes.append(previous)
    return hashes


def overwrite(environment: Storage, log: EventLog, position: int, raw: bytes) -> None:
    environment.write(lambda txn: txn.put(log._events, _POSITION.pack(position), raw))


def raw_record(environment: Storage, log: EventLog, position: int) -> bytes:
    with environment.read() as txn:
        raw = txn.get(log._events, _POSITION.pack(position))
        assert raw is not None, f"no record at position {position}"
        return bytes(raw)


class TestInvariants:
    """The numbered invariants of the log's module docstring."""

    def test_invariant_1_positions_gap_free(self, environment, log):
        """Positions start at 1 and grow by one per event, gap-free, in commit order."""
        append(environment, log, "a", [said("1")])
        append(environment, log, "b", [said("2"), said("3"), said("4")])
        append(environment, log, "a", [said("5")])
        append(environment, log, "c", [])
        append(environment, log, "b", [said("6")])
        stored = everything(environment, log)
        assert [1, 2, 3, 4, 5, 6] == [event.position for event in stored]
        assert ["1", "2", "3", "4", "5", "6"] == [decode_event(event.encoded).message.content for event in stored]
        assert 6 == head(environment, log)[0]

    def test_invariant_1_positions_returned_by_append(self, environment, log):
        """``append`` returns the positions it assigned, continuing from the head."""
        append(environment, log, "a", [said("1"), said("2")])
        assert [3, 4] == [event.position for event in append(environment, log, "b", [said("3"), said("4")])]

    def test_invariant_2_versions_per_session(self, environment, log):
        """Each session's versions start at 1 and grow by one per event of that session."""
        append(environment, log, "a", [said("1")])
        append(environment, log, "b", [said("1")])
        append(environment, log, "a", [said("2"), SessionRenamed("x")])
        append(environment, log, "b", [said("2")])
        stored = everything(environment, log)
        assert [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)] == [(e.session_key, e.version) for e in stored]
        with environment.read() as txn:
            assert 3 == log.stream_version(txn, log.stream_id(txn, "a"))
            assert 2 == log.stream_version(txn, log.stream_id(txn, "b"))
            assert [1, 2, 3] == [e.version for e in log.read_stream(txn, log.stream_id(txn, "a"))]

    def test_invariant_2_versions_continue_across_deletion(self, environment, log):
        """Deleting a session and reusing its key continues its versions."""
        append(environment, log, "a", [said("1"), said("2")])
        append(environment, log, "a", [SessionDeleted()])
        reused = append(environment, log, "a", [said("again")])
        assert [4] == [event.version for event in reused]
        with environment.read() as txn:
            assert 4 == log.stream_version(txn, log.stream_id(txn, "a"))

    def test_invariant_3_all_or_nothing(self, environment, log):
        """An append whose transaction fails leaves no event, stream entry, key or chain link behind."""
        append(environment, log, "a", [said("kept")])
        before = head(environment, log)
        seen_inside = []

        def body(txn):
            log.append(txn, "b", [encode_event(said("1")), encode_event(said("2"))], T0 + 5)
            stream_id = log.stream_id(txn, "b")
            seen_inside.append((log.head(txn)[0], [e.position for e in log.read_stream(txn, stream_id)]))
            raise RuntimeError("the caller's transaction fails")

        with pytest.raises(RuntimeError):
            environment.write(body)
        assert [(3, [2, 3])] == seen_inside
        assert before == head(environment, log)
        assert [1] == [event.position for event in everything(environment, log)]
        with environment.read() as txn:
            assert None is log.stream_id(txn, "b")
        assert [2] == [event.position for event in append(environment, log, "b", [said("1")])]

    def test_invariant_3_caller_transaction(self, environment, log):
        """Events appended in one caller transaction for two sessions commit together."""
        def body(txn):
            log.append(txn, "a", [encode_event(said("1"))], T0)
            log.append(txn, "b", [encode_event(said("2"))], T0)

        environment.write(body)
        assert [("a", 1, 1), ("b", 1, 2)] == [(e.session_key, e.version, e.position)
                                              for e in everything(environment, log)]

    def test_invariant_4_hash_chain(self, environment, log):
        """Each hash is SHA-256 over the previous hash and the event; the first links to GENESIS_HASH."""
        append(environment, log, "a", [said("1"), said("2")])
        append(environment, log, "b", [SessionRenamed("n")], T0 + 10)
        append(environment, log, "a", [SessionDeleted("why")], T0 + 20)
        stored = everything(environment, log)
        assert recompute_chain(stored) == [event.hash for event in stored]
        assert [hashlib.sha256(e.encoded.payload).digest() for e in stored] == [e.payload_digest for e in stored]
        assert stored[-1].hash == head(environment, log)[1]

    def test_invariant_4_first_event_links_to_genesis(self, environment, log):
        """The first event's hash is computed from GENESIS_HASH, and an empty log's head is GENESIS_HASH."""
        assert (0, GENESIS_HASH, 0) == head(environment, log)
        first = append(environment, log, "a", [said("1")])[0]
        expected = chain_hash(GENESIS_HASH, 1, "a", 1, T0, first.event_id, encode_event(said("1")),
                              hashlib.sha256(encode_event(said("1")).payload).digest())
        assert expected == first.hash

    def test_invariant_4_every_field_is_covered(self, environment, log):
        """Changing the previous hash, position, key, version, time, id, event or payload changes the hash."""
        event = append(environment, log, "a", [said("1")])[0]
        fields = (GENESIS_HASH, 1, "a", 1, T0, event.event_id, event.encoded, event.payload_digest)
        variants = [
            (b"\x00" * 32, *fields[1:]),
            (fields[0], 2, *fields[2:]),
            (*fields[:2], "b", *fields[3:]),
            (*fields[:3], 2, *fields[4:]),
            (*fields[:4], T0 + 1, *fields[5:]),
            (*fields[:5], b"\x00" * 16, *fields[6:]),
            (*fields[:6], encode_event(SessionRenamed(None)), fields[7]),
            (*fields[:7], hashlib.sha256(b"other").digest()),
        ]
        assert event.hash == chain_hash(*fields)
        assert len(variants) == len({chain_hash(*variant) for variant in variants} - {event.hash})

    def test_invariant_5_times_never_decrease(self, environment, log):
        """An append with a time earlier than its session's latest is recorded at that latest time."""
        for key, at in (("a", T0 + 10), ("a", T0 + 5), ("b", T0 + 7), ("a", T0 + 20), ("b", T0 + 3), ("a", T0 + 1)):
            append(environment, log, key, [said(str(at))], at)
        stored = everything(environment, log)
        assert [T0 + 10, T0 + 10, T0 + 20, T0 + 20] == [e.recorded_at for e in stored if e.session_key == "a"]
        assert [T0 + 7, T0 + 7] == [e.recorded_at for e in stored if e.session_key == "b"]

    def test_invariant_5_within_a_batch(self, environment, log):
        """Every event of one batch gets the same time, raised to the session's latest."""
        append(environment, log, "a", [said("1")], T0 + 50)
        assert [T0 + 50, T0 + 50] == [e.recorded_at for e in append(environment, log, "a", [said("2"), said("3")], T0)]

    def test_invariant_6_wrong_expected_version_writes_nothing(self, environment, log):
        """An append that expects another version raises WrongExpectedVersion and writes nothing."""
        append(environment, log, "a", [said("1"), said("2")])
        before = head(environment, log)
        for expected in (0, 1, 3):
            with pytest.raises(WrongExpectedVersion) as caught:
                append(environment, log, "a", [said("late")], expected_version=expected)
            assert ("a", expected, 2) == (caught.value.key, caught.value.expected, caught.value.actual)
        with pytest.raises(WrongExpectedVersion):
            append(environment, log, "new", [said("x")], expected_version=1)
        assert before == head(environment, log)
        with environment.read() as txn:
            assert None is log.stream_id(txn, "new")
        assert [3] == [e.version for e in append(environment, log, "a", [said("3")], expected_version=2)]
        assert [1] == [e.version for e in append(environment, log, "new", [said("x")], expected_version=0)]

    def test_invariant_6_inside_a_transaction(self, environment, log):
        """A rejected append caught inside the caller's transaction has written nothing there either."""
        append(environment, log, "a", [said("1")])

        def body(txn):
            with pytest.raises(WrongExpectedVersion):
                log.append(txn, "a", [encode_event(said("2"))], T0, expected_version=0)
            return log.head(txn)[0], log.stream_version(txn, log.stream_id(txn, "a"))

        assert (1, 1) == environment.write(body)

    def test_invariant_7_one_stream_id_per_key(self, tmp_path, open_storage):
        """A key keeps its stream id across appends, deletion and reopening."""
        path = tmp_path / "own"
        path.mkdir()
        first = open_storage(path)
        try:
            log = EventLog(first)
            append(first, log, "a", [said("1")])
            append(first, log, "b", [said("1")])
            with first.read() as txn:
                ids = {key: stream_id_of(log, txn, key) for key in ("a", "b")}
            append(first, log, "a", [SessionDeleted(), said("2")])
        finally:
            first.release()
        reopened = open_storage(path)
        try:
            relog = EventLog(reopened)
            with reopened.read() as txn:
                assert ids == {key: relog.stream_id(txn, key) for key in ("a", "b")}
                assert {"a", "b"} == {relog.stream_key(txn, stream_id) for stream_id in ids.values()}
                assert [ids["a"]] * 3 == [e.stream_id for e in relog.read_stream(txn, ids["a"])]
        finally:
            reopened.release()

    def test_invariant_7_long_keys(self, environment, log):
        """Keys up to 1 KiB work, and keys differing only after 600 bytes get distinct stream ids."""
        keys = ["é" * 512, "x" * 600 + "1", "x" * 600 + "2", "😀" * 256]
        for key in keys:
            append(environment, log, key, [said(key[-1])])
        with environment.read() as txn:
            ids = [log.stream_id(txn, key) for key in keys]
            assert len(keys) == len(set(ids))
            assert keys == [log.stream_key(txn, stream_id) for stream_id in ids]
        assert keys == [event.session_key for event in everything(environment, log)]

    def test_invariant_8_records_never_change(self, environment, log):
        """Later appends, to the same session or others, leave every earlier record byte for byte as it was."""
        append(environment, log, "a", [said("1"), SessionRenamed("n")])
        before = [raw_record(environment, log, position) for position in (1, 2)]
        append(environment, log, "a", [SessionDeleted(), said("2")], T0 + 1)
        append(environment, log, "b", [said("3")], T0 - 1)
        assert before == [raw_record(environment, log, position) for position in (1, 2)]

    def test_invariant_8_redaction_keeps_digest_and_chain(self, environment, log):
        """Redaction replaces only the payload; digest, hash and envelope stay, and the chain verifies."""
        append(environment, log, "a", [said("secret"), said("public")])
        before = everything(environment, log)
        blank = encode_event(MessageAppended(ChatMessage.user("[redacted]"))).payload
        environment.write(lambda txn: log.redact(txn, 1, blank))
        after = everything(environment, log)
        assert blank == after[0].encoded.payload
        assert after[0].redacted and not after[1].redacted
        unchanged = ("position", "stream_id", "session_key", "version", "recorded_at", "event_id",
                     "payload_digest", "hash")
        assert [[getattr(e, f) for f in unchanged] for e in before] == [[getattr(e, f) for f in unchanged]
                                                                         for e in after]
        assert before[1] == after[1]
        assert (before[0].encoded.type_name, before[0].encoded.schema_version) == (
            after[0].encoded.type_name, after[0].encoded.schema_version)
        previous = GENESIS_HASH
        for event in after:
            previous = chain_hash(previous, event.position, event.session_key, event.version, event.recorded_at,
                                  event.event_id, event.encoded, event.payload_digest)
            assert event.hash == previous


class TestHeadHandedToTheAppend:
    """A head read before an append in a transaction is taken by the append that follows in it, once; ``appended``
    is handed what the log stored."""

    def test_appends_after_a_head_read_chain_on_each_other(self, environment, log):
        blank = encode_event(MessageAppended(ChatMessage.user("[redacted]"))).payload

        def body(txn):
            heads = [log.head_before_append(txn)]
            log.append(txn, "a", [encode_event(said("1"))], T0)
            log.append(txn, "b", [encode_event(said("2"))], T0)  # no head read since the first append
            heads.append(log.head_before_append(txn))
            log.redact(txn, 4, blank)
            log.append(txn, "a", [encode_event(said("3"))], T0)
            heads.append(log.head(txn))
            return heads

        append(environment, log, "a", [said("0")])
        # Another transaction's read, by a command that appended nothing; then another process's log appends: a
        # later append here must not take that read (it would write over position 2).
        stale = environment.write(log.head_before_append)
        append(environment, EventLog(environment), "c", [said("c")])
        append(environment, log, "d", [said("d")])
        heads = environment.write(body)
        stored, previous = everything(environment, log), GENESIS_HASH
        assert stored[3].redacted
        for event in stored:
            previous = chain_hash(previous, event.position, event.session_key, event.version, event.recorded_at,
                                  event.event_id, event.encoded, event.payload_digest)
            assert event.hash == previous
        assert [event.position for event in stored] == [1, 2, 3, 4, 5, 6]
        assert stale[0] == 1 and heads == [(position, stored[position - 1].hash, T0) for position in (3, 5, 6)]

    def test_a_position_taken_since_the_head_read_refuses_the_whole_append(self, environment, log):
        """A record put at the next position after the head was read (not by the log: damage, or a bug) makes the
        append that takes that read raise StoreCorrupted naming the position, with none of its events written, and
        the transaction may go on."""
        append(environment, log, "a", [said("0")])
        foreign = raw_record(environment, log, 1)

        def body(txn):
            log.head_before_append(txn)
            assert txn.append(log._events, _POSITION.pack(2), foreign)
            with pytest.raises(StoreCorrupted, match="position 2 is already taken"):
                log.append(txn, "a", [encode_event(said("1")), encode_event(said("2")), encode_event(said("3"))],
                           T0)
            return [bytes(value) for _, value in txn.scan(log._events)], log.stream_version(txn, 1)

        records, version = environment.write(body)
        assert records == [foreign, foreign] and version == 1

    def test_appended_gets_the_events_as_read_back(self, environment):
        handed: list[StoredEvent] = []
        log = EventLog(environment, appended=lambda txn, events: handed.extend(events))
        append(environment, log, "a", [said("1"), SessionRenamed("n")])
        append(environment, log, "b", [said("2")], T0 - 1)
        with pytest.raises(WrongExpectedVersion):  # refused: nothing appended, nothing handed
            append(environment, log, "a", [said("3")], expected_version=1)
        assert handed == everything(environment, log)


class TestReading:
    """Reading ranges of the log."""

    def test_read_stream_range(self, environment, log):
        """``read_stream`` yields versions after ``after_version`` up to ``up_to_version``."""
        append(environment, log, "a", [said(str(n)) for n in range(1, 6)])
        append(environment, log, "b", [said("other")])
        with environment.read() as txn:
            stream_id = log.stream_id(txn, "a")
            assert [3, 4] == [e.version for e in log.read_stream(txn, stream_id, 2, 4)]
            assert [5] == [e.version for e in log.read_stream(txn, stream_id, 4)]
            assert [] == list(log.read_stream(txn, stream_id, 5))

    def test_read_all_after_and_limit(self, environment, log):
        """``read_all`` starts after a position and stops at a limit."""
        append(environment, log, "a", [said(str(n)) for n in range(1, 8)])
        with environment.read() as txn:
            assert [3, 4] == [e.position for e in log.read_all(txn, 2, 2)]
            assert [7] == [e.position for e in log.read_all(txn, 6)]
            assert [] == list(log.read_all(txn, 7))


def mixed_sessions(environment: Storage, log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """18 events of two sessions, messages and renames; those after the 9th compressed (layout 2)."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)
    for number in range(6):
        append(environment, log, f"s{number % 2}", [said(f"{number} one"), SessionRenamed(f"n{number}"),
                                                     said(f"{number} two")], T0 + number)


class TestLoggedRead:
    """``read_logged``, the read of a deferred read model: every header, and only the payloads asked for."""

    def test_headers_of_all_and_payloads_of_the_types_asked(self, environment, log, monkeypatch):
        """Plain and compressed records alike: each event's header as ``read_all`` reads it, the payload of a type
        asked for, ``None`` for the others."""
        mixed_sessions(environment, log, monkeypatch)
        with environment.read() as txn:
            stored = list(log.read_all(txn, 2))
            logged = list(log.read_logged(txn, 2, {"MessageAppended"}))
        assert {1, 2} <= {raw_record(environment, log, event.position)[0] for event in stored}
        assert [(e.position, e.stream_id, e.version, e.recorded_at, e.encoded.type_name, e.encoded.schema_version,
                 e.encoded.payload if e.encoded.type_name == "MessageAppended" else None) for e in stored] \
            == [tuple(event) for event in logged]

    def test_redacted_records_of_either_layout(self, environment, log, monkeypatch):
        """A redacted record keeps its original payload's digest (a compressed one stores it): its payload is read
        as ``read_all`` reads it, beside the records without a digest stored."""
        mixed_sessions(environment, log, monkeypatch)
        blank = encode_event(MessageAppended(ChatMessage.user("[redacted]"))).payload
        environment.write(lambda txn: (log.redact(txn, 1, blank), log.redact(txn, 16, blank)))
        assert [1, 2] == [raw_record(environment, log, position)[0] for position in (1, 16)]
        with environment.read() as txn:
            stored = list(log.read_all(txn))
            logged = list(log.read_logged(txn, 0, {"MessageAppended"}))
        assert [stored[0].redacted, stored[15].redacted] == [True, True]
        assert [e.encoded.payload if e.encoded.type_name == "MessageAppended" else None for e in stored] \
            == [event.payload for event in logged]
        assert blank == logged[0].payload == logged[15].payload

    def test_only_payloads_read_are_checked(self, environment, log):
        """A payload changed in place raises StoreCorrupted naming its position when its type is asked for; a read
        that asks for no payload reads past it."""
        append(environment, log, "a", [said("pay 10 euros"), SessionRenamed("ok")])
        overwrite(environment, log, 1, raw_record(environment, log, 1).replace(b"10", b"99"))
        with environment.read() as txn:
            with pytest.raises(StoreCorrupted, match=r"\bposition 1\b"):
                list(log.read_logged(txn, 0, {"MessageAppended"}))
            assert [(1, None), (2, b'{"name":"ok"}')] == \
                [(event.position, event.payload) for event in log.read_logged(txn, 0, {"SessionRenamed"})]

    def test_damaged_frame_of_a_type_asked(self, environment, log, monkeypatch):
        """A compressed payload whose frame is damaged raises StoreCorrupted naming its position."""
        mixed_sessions(environment, log, monkeypatch)
        raw = raw_record(environment, log, 18)
        assert raw[0] == 2
        overwrite(environment, log, 18, raw[:-6] + bytes(byte ^ 0x55 for byte in raw[-6:]))
        with environment.read() as txn:
            with pytest.raises(StoreCorrupted, match=r"\bposition 18\b"):
                list(log.read_logged(txn, 0, {"MessageAppended"}))
            assert 18 == len(list(log.read_logged(txn, 0, ())))


class TestDamage:
    """Damaged records raise StoreCorrupted naming the position."""

    @pytest.mark.parametrize("damage", [
        pytest.param(lambda raw: raw[:10], id="truncated-envelope"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: b"\x09" + raw[1:], id="unknown-layout"),
        pytest.param(lambda raw: raw[:_RECORD.size] + b"\xff\xfe" + raw[_RECORD.size + 2:], id="type-name-not-utf8"),
        pytest.param(lambda raw: raw[:1] + b"\x80" + raw[2:], id="unknown-flags"),
        pytest.param(lambda raw: raw[:_RECORD.size + 4], id="ends-inside-type-name"),
    ])
    def test_damaged_record(self, environment, log, damage):
        """A record that does not unpack raises StoreCorrupted naming its position."""
        append(environment, log, "a", [said("1"), said("2"), said("3")])
        overwrite(environment, log, 2, damage(raw_record(environment, log, 2)))
        with environment.read() as txn:
            with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
                log.read_position(txn, 2)
            with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
                list(log.read_all(txn))
            with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
                list(log.read_stream(txn, log.stream_id(txn, "a")))
            for asked in ((), {"MessageAppended"}):  # the header alone is read, or the payload too
                with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
                    list(log.read_logged(txn, 0, asked))
            assert "1" == decode_event(log.read_position(txn, 1).encoded).message.content

    def test_a_record_ending_inside_a_type_name_that_begins_with_another(self, environment, log):
        """``read_logged`` knows type names it met by their bytes: a record cut inside its type name, where what is
        left is another type's name, is damage, not an event of that type."""
        encoded = [EncodedEvent("Message", 1, b"{}"), EncodedEvent("MessageAppended", 1, b"{}")]
        environment.write(lambda txn: log.append(txn, "a", encoded, T0, None))
        overwrite(environment, log, 2, raw_record(environment, log, 2)[:_RECORD.size + len("Message")])
        with environment.read() as txn, pytest.raises(StoreCorrupted, match=r"position 2: .*inside its type name"):
            list(log.read_logged(txn, 0, ()))

    def test_missing_record(self, environment, log):
        """A stream entry pointing at a missing record raises StoreCorrupted naming the position."""
        append(environment, log, "a", [said("1"), said("2")])
        environment.write(lambda txn: txn.delete(log._events, _POSITION.pack(2)))
        with environment.read() as txn, pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
            list(log.read_stream(txn, log.stream_id(txn, "a")))

    def test_damaged_head(self, environment, log):
        """A damaged latest record makes ``head`` (so every append) raise StoreCorrupted naming it."""
        append(environment, log, "a", [said("1"), said("2")])
        overwrite(environment, log, 2, raw_record(environment, log, 2)[:20])
        with pytest.raises(StoreCorrupted, match=r"\bposition 2\b"):
            append(environment, log, "a", [said("3")])

    def test_altered_payload_is_detected(self, environment, log):
        """A payload changed in place (not by redaction) no longer matches its digest: StoreCorrupted."""
        append(environment, log, "a", [said("pay 10 euros"), said("ok")])
        raw = raw_record(environment, log, 1)
        assert b"10" in raw
        overwrite(environment, log, 1, raw.replace(b"10", b"99"))
        with environment.read() as txn, pytest.raises(StoreCorrupted, match=r"\bposition 1\b"):
            log.read_position(txn, 1)


class TestFormat:
    """The log's format marker."""

    def test_newer_format_refused(self, tmp_path, environment, log):
        """A store written with a newer log format raises IncompatibleStore on open."""
        environment.write(lambda txn: txn.put(log._meta, b"format", b"99"))
        with pytest.raises(IncompatibleStore):
            EventLog(environment)
