"""Layout 2 records name the event types of ``eventstore._log.TYPE_CODES`` by a one-byte code (flag 4).

The codes are part of the stored format; no hash depends on how a record names its type; every reader (load,
history, replay, export, verify, catch-up, salvage) reads coded records, records that spell their type out (as
versions before format 5 wrote every one) and layout 1 records alike; a store gets format 5 with its first coded
record; a changed code is damage named by its position.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import ChatMessage, IncompatibleStore, SessionStore, StoreCorrupted, _log
from eventstore._codec import EncodedEvent, encode_event
from eventstore._compression import Dictionary, train
from eventstore._log import EventLog, LoggedEvent, Original, StoredEvent
from eventstore.events import EVENT_TYPES, MessageAppended, SessionDeleted, SessionRenamed, SessionStateChanged
from eventstore.interchange import export_events
from eventstore.services.salvage import salvage
from eventstore.storage import Storage, WriteTransaction

from conftest import FakeClock, raw_value
from test_compression import _HEADER_2, conversation, early_dictionary, fill, layouts, marker, sentence
from test_salvage import PAGE, _event_leaves
from test_tamper import editing, items, names_position, position_key

__all__ = ["early_dictionary"]  # a fixture, used by name

#: The codes as first given, written out again here: a code that changed meaning would misread every stored
#: record of its type, so changing one must fail this test.
GIVEN_CODES = {
    "MessageAppended": 1, "LastMessageRemoved": 2, "LastMessageReplaced": 3, "MessagesCleared": 4,
    "MessagesReplaced": 5, "SessionRenamed": 6, "SessionStateChanged": 7, "SessionDeleted": 8, "SessionRestored": 9,
    "SessionRedacted": 10, "SessionForked": 11,
}
_CODED = 4
_DIGEST = 2
T0 = 1_767_225_600_000_000


def test_codes_never_change_meaning_nor_are_given_twice() -> None:
    assert {name: _log.TYPE_CODES[name] for name in GIVEN_CODES} == GIVEN_CODES
    assert len(set(_log.TYPE_CODES.values())) == len(_log.TYPE_CODES)
    assert all(0 < code <= 0xFF for code in _log.TYPE_CODES.values())
    assert set(GIVEN_CODES) <= set(EVENT_TYPES)  # the names are the package's own types'


def is_coded(record: bytes) -> bool:
    return record[0] == 2 and bool(record[1] & _CODED)


def spelled_out(record: bytes) -> bytes:
    """A coded layout 2 record as versions before format 5 wrote it (built here, from the codes as given, not by the
    package): flag 4 clear, the type name's length where the code was, the name after the digest; others as they
    are."""
    if not is_coded(record):
        return record
    name = next(name for name, code in GIVEN_CODES.items() if code == record[_HEADER_2 - 1]).encode()
    name_at = _HEADER_2 + (32 if record[1] & _DIGEST else 0)
    return (bytes([2, record[1] & ~_CODED]) + record[2:_HEADER_2 - 1] + bytes([len(name)])
            + record[_HEADER_2:name_at] + name + record[name_at:])


def as_an_older_version_wrote_it(path: Path) -> None:
    """Rewrite a closed store's coded records with their types spelled out, and mark it format 4: the store the
    previous version writes (layout 1 records before the dictionary, layout 2 after, runs in the stream index)."""
    with editing(path, b"log.events") as txn:
        for key, record in [(bytes(k), bytes(v)) for k, v in txn.cursor()]:
            txn.put(key, spelled_out(record))
    with editing(path, b"log.meta") as txn:
        txn.put(b"format", b"4")


def exported(store: SessionStore) -> bytes:
    out = io.BytesIO()
    export_events(store, out)
    return out.getvalue()


# -- the hash chain ----------------------------------------------------------------------------------------------


def some_events() -> list[tuple[str, EncodedEvent]]:
    """Events of several coded types, and one of a type no code is given to, enough to train a dictionary."""
    rng = random.Random(5)
    events = [(f"chat-{n % 3}", encode_event(MessageAppended(ChatMessage.user(sentence(rng))))) for n in range(12)]
    events += [("chat-0", encode_event(SessionRenamed("planning"))),
               ("chat-1", encode_event(SessionStateChanged("running", "turn-1"))),
               ("chat-2", EncodedEvent("ATypeGivenNoCode", 1, b'{"note": "spelled out"}')),
               ("chat-2", encode_event(SessionDeleted()))]
    return events


def written(storage: Storage, events: list[tuple[str, EncodedEvent]]) -> tuple[list[bytes], list[StoredEvent],
                                                                                 list[LoggedEvent], list[bytes]]:
    """Append ``events`` one at a time with fixed ids and times; the links the appends returned, and the events,
    headers and raw records read back."""
    log = EventLog(storage)
    links = []
    for index, (key, encoded) in enumerate(events):
        original = Original(bytes([index + 1]) * 16, hashlib.sha256(encoded.payload).digest(), False)

        def append(txn: WriteTransaction, key: str = key, encoded: EncodedEvent = encoded,
                   original: Original = original, at: int = T0 + index) -> list[StoredEvent]:
            return log.append(txn, key, [encoded], at, originals=[original])

        links += [stored.hash for stored in storage.write(append)]
    with storage.read() as txn:
        read = list(log.read_all(txn))
        logged = list(log.read_logged(txn, 0, {encoded.type_name for _, encoded in events}))
        raw = [bytes(txn.get(log._events, position_key(position)) or b"") for position in range(1, len(events) + 1)]
    return links, read, logged, raw


def test_every_layout_gives_the_same_links(tmp_path: Path, open_storage: Callable[[Path], Storage],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same events written as layout 1, as layout 2 with names spelled out, and as layout 2 with codes: the same
    links, returned and stored, and the same events read back."""
    events = some_events()
    results = {}
    for name, training_at, codes in [("layout 1", 10**9, _log.TYPE_CODES), ("named", 8, {}),
                                     ("coded", 8, _log.TYPE_CODES)]:
        with monkeypatch.context() as patch:
            patch.setattr(_log, "TRAINING_EVENTS", training_at)
            patch.setattr(_log, "TYPE_CODES", codes)
            (tmp_path / name).mkdir()
            storage = open_storage(tmp_path / name)
            results[name] = written(storage, events)
            storage.release()
    links, read, logged, raw = results["coded"]
    assert [_log.record_hash(record) for record in raw] == links
    for other in ("layout 1", "named"):
        assert results[other][:3] == (links, read, logged), other
    assert {record[0] for record in results["layout 1"][3]} == {1}
    assert not any(is_coded(record) for record in results["named"][3])
    assert [record[0] for record in raw] == [1] * 7 + [2] * (len(events) - 7)
    # Past the training, every record is coded but the one whose type has no code, which is spelled out.
    assert [is_coded(record) for record in raw[7:]] == [encoded.type_name != "ATypeGivenNoCode"
                                                        for _, encoded in events[7:]]
    uncoded = raw[events.index(next(e for e in events if e[1].type_name == "ATypeGivenNoCode"))]
    assert uncoded[_HEADER_2 - 1] == len("ATypeGivenNoCode") and b"ATypeGivenNoCode" in uncoded
    # 15 bytes fewer for a MessageAppended: its name's.
    assert len(results["named"][3][-5]) - len(raw[-5]) == len("MessageAppended")


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    rng = random.Random(11)
    return Dictionary(train([sentence(rng).encode() for _ in range(300)]) or b"")


# Up to 63 characters: at most 252 bytes of UTF-8, within the one byte of a name's length.
@given(type_name=st.one_of(st.sampled_from(sorted(GIVEN_CODES)), st.text(min_size=1, max_size=63)),
       digest_stored=st.booleans(), redacted=st.booleans(), payload=st.binary(max_size=300))
@example(type_name="MessageAppended", digest_stored=True, redacted=True, payload=b"")
@example(type_name="\x00", digest_stored=False, redacted=False, payload=b"x")
@example(type_name="\U0010ffff" * 63, digest_stored=True, redacted=False, payload=b"x")
def test_a_compact_record_reads_back_its_type_and_payload(dictionary: Dictionary, type_name: str,
                                                          digest_stored: bool, redacted: bool, payload: bytes
                                                          ) -> None:
    """Pure: whatever the type, coded or spelled out, the envelope gives back the name and where the payload is."""
    encoded = EncodedEvent(type_name, 1, payload)
    digest = hashlib.sha256(b"another payload").digest() if digest_stored else None
    record = _log._compact_record(int(redacted), 7, 3, T0, b"i" * 16, encoded, digest, b"h" * 32, dictionary)
    assert record is not None
    envelope = _log._envelope(record)
    assert (envelope.type_name, envelope.digest, envelope.hash, bool(envelope.flags & 1)) == \
        (type_name, digest, b"h" * 32, redacted)
    assert is_coded(record) == (type_name in GIVEN_CODES)
    assert dictionary.expand(record[envelope.payload_at:], "the payload") == payload


# -- the format marker -------------------------------------------------------------------------------------------


def test_the_first_coded_record_marks_the_store_and_older_code_refuses_it(store_path: Path, clock: FakeClock,
                                                                         early_dictionary: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("alice", conversation(1, 7))  # layout 1: no dictionary yet
    assert marker(store_path) == b"4"
    with SessionStore(store_path, clock=clock) as store, pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("alice", ChatMessage.user("the eighth trains the dictionary"))
        raise RuntimeError("the block fails: nothing is written")
    assert marker(store_path) == b"4" and len(layouts(store_path)) == 7
    with SessionStore(store_path, clock=clock) as store:
        store.append("alice", ChatMessage.user("the eighth trains the dictionary"))
    assert layouts(store_path)[-1] == 2 and is_coded(items(store_path, b"log.events")[-1][1])
    assert marker(store_path) == b"5"
    monkeypatch.setattr(_log, "LOG_FORMAT", 4)  # the previous version
    with pytest.raises(IncompatibleStore, match="log format 5, newer than this code's 4; upgrade"):
        SessionStore(store_path, clock=clock)


# -- a store an older version wrote -------------------------------------------------------------------------------


@pytest.fixture
def older_store(store_path: Path, clock: FakeClock, early_dictionary: None
                ) -> Iterator[tuple[Path, dict[str, list[ChatMessage]], bytes]]:
    """A closed store as the previous version wrote it, layout 1 and layout 2 records with their types spelled
    out; its sessions and its events file as exported before."""
    with SessionStore(store_path, clock=clock) as store:
        sessions = fill(store, clock)
        store.set_session_name("bob", "bob's chat")
        events_file = exported(store)
    as_an_older_version_wrote_it(store_path)
    records = [record for _, record in items(store_path, b"log.events")]
    assert {record[0] for record in records} == {1, 2} and not any(map(is_coded, records))
    yield store_path, sessions, events_file


def test_a_store_an_older_version_wrote_reads_and_appends(older_store, clock: FakeClock) -> None:
    path, sessions, events_file = older_store
    before = items(path, b"log.events")
    with SessionStore(path, clock=clock) as store:
        assert exported(store) == events_file
        assert store.verify().ok
        store.rebuild_projections()  # every read model folded again, from the records' headers and payloads
        for key, messages in sessions.items():
            assert store.load(key) == messages
            assert [view.messages for _, view in store.replay(key)][-1] == messages
        assert store.session_at("alice", 10).messages == sessions["alice"][:10]
        assert store.get_session_name("bob") == "bob's chat"
        assert {hit.session_key for hit in store.search_messages(sessions["carol"][0].content.split()[0])}
        store.append_many("dave", conversation(9, 3))
        store.append("alice", ChatMessage.assistant("one more"))
        assert store.load("alice") == [*sessions["alice"], ChatMessage.assistant("one more")]
        assert store.verify().ok
    after = items(path, b"log.events")
    assert after[:len(before)] == before  # nothing rewritten
    assert all(map(is_coded, [record for _, record in after[len(before):]]))
    assert marker(path) == b"5"
    found = salvage(path / "data.mdb")
    assert found.first_missing is None and not found.problems
    with SessionStore(path, clock=clock) as store:
        assert list(found.prefix) == list(store.events())


def test_redacting_a_record_an_older_version_wrote_codes_it_and_marks_the_store(older_store,
                                                                                clock: FakeClock) -> None:
    path, sessions, _ = older_store
    with SessionStore(path, clock=clock) as store:
        positions = [event.position for event in store.history("bob") if isinstance(event.event, MessageAppended)]
        hashes = [event.hash for event in store.history("bob")]
        store.redact("bob", "asked to")
        assert store.load("bob") == [ChatMessage(m.role, "[redacted]") for m in sessions["bob"]]
        assert [event.hash for event in store.history("bob")][:len(hashes)] == hashes
        assert store.verify().ok
    records = dict(items(path, b"log.events"))
    compact = [records[position_key(p)] for p in positions if records[position_key(p)][0] == 2]
    assert len(compact) == len(sessions["bob"]) and all(record[1] == 1 | _DIGEST | _CODED for record in compact)
    assert marker(path) == b"5"


# -- vacuum and salvage --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retrained", [True, False], ids=["new-dictionary", "no-dictionary"])
def test_vacuum_replacing_the_dictionary_keeps_codes_or_spells_out_plain_records(
        store_path: Path, clock: FakeClock, early_dictionary: None, monkeypatch: pytest.MonkeyPatch,
        retrained: bool) -> None:
    """A redaction of payloads the dictionary learnt from has ``vacuum`` compress every record again: with a new
    dictionary each coded record keeps its code; with none (the payloads train none) it is stored in layout 1,
    its type spelled out."""
    with SessionStore(store_path, clock=clock) as store:
        sessions = fill(store, clock)
        store.redact("alice", "asked to")  # alice's first seven messages trained the dictionary
        hashes = [event.hash for event in store.events()]
    coded_before = [key for key, record in items(store_path, b"log.events") if is_coded(record)]
    if not retrained:
        monkeypatch.setattr(_log, "train", lambda *_: None)
    with SessionStore(store_path, clock=clock) as store:
        store.vacuum()
        assert [event.hash for event in store.events()] == hashes
        assert store.load("bob") == sessions["bob"] and store.verify().ok
    records = dict(items(store_path, b"log.events"))
    if retrained:
        assert coded_before and all(is_coded(records[key]) for key in coded_before)
    else:
        assert {record[0] for record in records.values()} == {1}
        assert all(_log._envelope(records[key]).type_name.encode() in records[key] for key in coded_before)


def test_salvage_reads_coded_records_around_a_zeroed_page(tmp_path: Path, clock: FakeClock,
                                                          early_dictionary: None) -> None:
    """A leaf of the log zeroed: the coded records before it are the prefix, and those after it, found by reading
    every page, are reported."""
    path = tmp_path / "store"
    with SessionStore(path, clock=clock, durable=False) as store:
        for index in range(400):
            store.append(f"session-{index % 7}", ChatMessage.user(f"message {index} " + "words " * 10))
        events = list(store.events())
    records = dict(items(path, b"log.events"))  # before the damage: LMDB may abort on a zeroed page
    leaves = _event_leaves(path / "data.mdb")
    page, first_lost = leaves[len(leaves) // 2]
    data = bytearray((path / "data.mdb").read_bytes())
    data[page * PAGE:(page + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(data)
    found = salvage(path / "data.mdb")
    assert found.first_missing == first_lost > 8 and list(found.prefix) == events[:first_lost - 1]
    assert found.later == tuple(range(leaves[len(leaves) // 2 + 1][1], len(events) + 1))
    assert all(is_coded(records[position_key(position)]) for position in [first_lost - 1, *found.later])


# -- damage --------------------------------------------------------------------------------------------------------


def test_an_unknown_type_code_is_damage_named_by_its_position(store_path: Path, clock: FakeClock,
                                                             early_dictionary: None) -> None:
    with SessionStore(store_path, clock=clock) as store:
        fill(store, clock)
        position = store.history("alice")[20].position
    with editing(store_path, b"log.events") as txn:
        record = bytearray(raw_value(txn, position_key(position)))
        assert is_coded(bytes(record))
        record[_HEADER_2 - 1] = 200
        txn.put(position_key(position), bytes(record))
    with SessionStore(store_path, clock=clock) as store:
        expected = f"position {position}: the event record is damaged \\(unknown event type code 200\\)"
        with pytest.raises(StoreCorrupted, match=expected):
            store.history("alice")
        with pytest.raises(StoreCorrupted, match=expected):
            list(store.events())
        with pytest.raises(StoreCorrupted, match=expected):
            store.rebuild_projections()  # the read models' catch-up reads the records' headers
        report = store.verify()
    assert not report.ok and names_position(report.problems, position), report.problems
