"""What a command's capturing transaction hands the shared log: the events as the log encoded them, tied to the
records the body appended."""

from __future__ import annotations

import pytest

from eventstore import ChatMessage, EventStoreError
from eventstore._codec import encode_event
from eventstore._log import EventLog
from eventstore._stored_dictionary import StoredDictionary
from eventstore.events import MessageAppended
from eventstore.services.write_capture import Capture, CapturingTransaction, appended
from eventstore.storage.memory import MemoryStorage

T0 = 1_767_225_600_000_000


def _capturing(storage: MemoryStorage, body):
    """Run ``body(log, capturing)`` in a write transaction; the capture's commit, or what it raised."""
    log = EventLog(storage, appended)
    dictionary = StoredDictionary(storage.space("log.meta"))

    def write(txn):
        capture = Capture(txn, dictionary, lambda _txn, _key: 0)
        body(log, CapturingTransaction(txn, capture))
        try:
            return capture.commit()
        except EventStoreError as refused:
            return refused

    return log, storage.write(write)


def test_the_commit_carries_what_the_log_stored():
    storage = MemoryStorage()
    messages = [encode_event(MessageAppended(ChatMessage.user(text))) for text in ("one", "two")]
    log, commit = _capturing(storage, lambda log, txn: log.append(txn, "a", messages, T0))
    with storage.read() as txn:
        stored = list(log.read_all(txn))
    (session,) = commit.appends
    assert (session.key, session.expected_version, session.recorded_at) == ("a", 0, T0)
    assert [(e.event_id, e.type_name, e.schema_version, e.payload, e.payload_digest, e.redacted)
            for e in session.events] == [
        (s.event_id, s.encoded.type_name, s.encoded.schema_version, s.encoded.payload, s.payload_digest, s.redacted)
        for s in stored]


def test_a_record_appended_without_the_log_is_refused():
    storage = MemoryStorage()
    events = storage.space("log.events")
    _, refused = _capturing(storage, lambda log, txn: txn.append(events, (1).to_bytes(8, "big"), b"a record"))
    assert isinstance(refused, EventStoreError)
    assert "without the log" in str(refused)


def test_records_appended_together_without_the_log_are_refused():
    storage = MemoryStorage()
    events = storage.space("log.events")
    pairs = [((1).to_bytes(8, "big"), b"a record"), ((2).to_bytes(8, "big"), b"another")]
    _, refused = _capturing(storage, lambda log, txn: txn.append_many(events, iter(pairs)))
    assert isinstance(refused, EventStoreError)
    assert "without the log" in str(refused)


def test_a_refused_batch_of_records_notes_no_position():
    storage = MemoryStorage()
    events = storage.space("log.events")
    noted = []

    def body(log, txn):
        log.append(txn, "a", [encode_event(MessageAppended(ChatMessage.user("one")))], T0)
        try:
            txn.append_many(events, [((3).to_bytes(8, "big"), b"x"), ((2).to_bytes(8, "big"), b"y")])
        except ValueError:
            noted.append("refused")

    _, commit = _capturing(storage, body)
    assert noted == ["refused"]
    assert [len(session.events) for session in commit.appends] == [1]


def test_a_batch_to_a_shared_record_space_is_still_refused():
    storage = MemoryStorage()
    records = storage.space("facade.idempotency")
    with pytest.raises(EventStoreError, match="append_many there is not supported"):
        _capturing(storage, lambda log, txn: txn.append_many(records, [(b"k", b"v")]))
