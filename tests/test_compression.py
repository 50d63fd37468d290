"""Compressed storage: layout 2 records and compressed message chunks, once a store has its dictionary.

Round trips, stores of the previous format (layout 1 records, plain chunks, format marker 1), redaction,
salvage, and damage to every part of the new forms, which ``verify`` must report where it is.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
import zstandard

from eventstore import ChatMessage, SessionStore, StoreCorrupted, _log
from eventstore._compression import FRAME_MAGIC as ZSTD_MAGIC
from eventstore._compression import MAX_DICTIONARIES, TRAINING_SAMPLE_BYTES, Dictionary, train
from eventstore.services.salvage import salvage
from eventstore.storage import WriteTransaction

from conftest import FakeClock, raw_value
from test_tamper import editing, items, names_position, names_session, position_key

_U64 = struct.Struct(">Q")
#: Layout 2's header: format, flags, stream id, version, recorded µs, event id, schema version, hash,
#: type name length or (flag 4) type code (then the digest if flag 2, the type name unless coded, the payload's frame).
_HEADER_2 = _log._RECORD_2.size
_WORDS = ("river", "mountain", "lantern", "harbour", "meadow", "copper", "violet", "thunder", "orchard", "whisper",
          "granite", "saffron", "compass", "glacier", "ember", "willow", "beacon", "marble", "falcon", "cinder")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 40))).capitalize() + "."


def conversation(seed: int, count: int) -> list[ChatMessage]:
    rng = random.Random(seed)
    return [ChatMessage("assistant" if i % 2 else "user", sentence(rng)) for i in range(count)]


@pytest.fixture
def early_dictionary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store trains its dictionary at 8 events rather than thousands, so small stores compress."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)


def layouts(path: Path) -> list[int]:
    return [value[0] for _, value in items(path, b"log.events")]


def marker(path: Path) -> bytes:
    return dict(items(path, b"log.meta"))[b"format"]


def fill(store: SessionStore, clock: FakeClock) -> dict[str, list[ChatMessage]]:
    """Three sessions: one of single appends, one of a batch of 20, one short; what each holds."""
    sessions = {"alice": conversation(1, 30), "bob": conversation(2, 20), "carol": conversation(3, 2)}
    for message in sessions["alice"]:
        clock.advance(seconds=1)
        store.append("alice", message)
    store.append_many("bob", sessions["bob"])
    store.append_many("carol", sessions["carol"])
    return sessions


def test_records_after_training_are_compact_compressed_and_read_back(store_path: Path, clock: FakeClock,
                                                                     early_dictionary: None) -> None:
    with SessionStore(store_path, clock=clock) as store:
        sessions = fill(store, clock)
        for key, messages in sessions.items():
            assert store.load(key) == messages
        assert store.verify().ok
        history = store.history("alice")
    # Positions 1-7 were written before the dictionary; the append that reached 8 trained it first.
    assert layouts(store_path) == [1] * 7 + [2] * (len(layouts(store_path)) - 7)
    assert marker(store_path) == b"5"  # its layout 2 records name their types by code
    chunks = dict(items(store_path, b"messages.chunks"))
    assert {value[0] for value in chunks.values() if len(value) > 1000} == {1}  # big chunks compressed
    with SessionStore(store_path, clock=clock) as store:
        assert store.history("alice") == history
        store.rebuild_projections()
        for key, messages in sessions.items():
            assert store.load(key) == messages
        assert store.verify().ok


def test_compression_takes_fewer_bytes(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sessions, with and without a dictionary: the log and the chunks shrink."""
    value_bytes = {}
    for training_at in (8, 10**9):
        monkeypatch.setattr(_log, "TRAINING_EVENTS", training_at)
        with SessionStore(tmp_path / str(training_at), clock=clock) as store:
            fill(store, clock)
            usage = store.stats(databases=True).usage
            assert usage is not None
            value_bytes[training_at] = {space.name: space.value_bytes for space in usage.spaces}
    for name in ("log.events", "messages.chunks"):
        assert value_bytes[8][name] < 0.75 * value_bytes[10**9][name], name


def test_a_store_of_the_previous_format_opens_reads_and_gets_its_dictionary(
        store_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a dictionary, records, chunks and databases are those the previous version wrote; with its format
    marker put back to 1, the store is one that version made."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 10**9)
    with SessionStore(store_path, clock=clock) as store:
        sessions = fill(store, clock)
        before = list(store.events())
    with editing(store_path, b"log.meta") as txn:
        txn.put(b"format", b"1")
    assert set(layouts(store_path)) == {1}
    assert {value[0] for _, value in items(store_path, b"messages.chunks")} == {0}

    monkeypatch.setattr(_log, "TRAINING_EVENTS", 64)
    with SessionStore(store_path, clock=clock) as store:
        for key, messages in sessions.items():
            assert store.load(key) == messages
        assert store.verify().ok
    assert marker(store_path) == b"1"  # nothing compressed yet: the previous version may still open it
    with SessionStore(store_path, clock=clock) as store:
        more = conversation(4, 40)
        store.append_many("dave", more[:20])
        for message in more[20:]:
            store.append("dave", message)
        assert store.load("dave") == more
        assert list(store.events())[:len(before)] == before
        assert store.verify().ok
    assert marker(store_path) == b"5"  # compressed, runs of the stream index, and types coded
    assert layouts(store_path)[:len(before)] == [1] * len(before)
    assert layouts(store_path)[-1] == 2


def test_redacting_compressed_records_keeps_the_chain(store_path: Path, clock: FakeClock,
                                                      early_dictionary: None) -> None:
    with SessionStore(store_path, clock=clock) as store:
        sessions = fill(store, clock)
        positions = [event.position for event in store.history("alice")]
        store.redact("alice", "user request")
        assert store.verify().ok
        assert all(message.content == "[redacted]" for message in store.load("alice"))
        assert store.load("bob") == sessions["bob"]
    records = dict(items(store_path, b"log.events"))
    compact = [records[position_key(p)] for p in positions if records[position_key(p)][0] == 2]
    assert compact and all(record[1] == 7 for record in compact)  # redacted, the original digest kept, coded
    with SessionStore(store_path, clock=clock) as store:
        assert store.verify().ok


def test_salvage_reads_compressed_records(store_path: Path, clock: FakeClock, early_dictionary: None) -> None:
    with SessionStore(store_path, clock=clock) as store:
        fill(store, clock)
        events = list(store.events())
    found = salvage(store_path / "data.mdb")
    assert found.first_missing is None and not found.problems
    assert list(found.prefix) == events


# -- damage ------------------------------------------------------------------------------------------------


def compressed_store(path: Path, clock: FakeClock) -> int:
    """Fill a store with compressed records and close it; the position of a compressed message event in its
    middle."""
    with SessionStore(path, clock=clock) as store:
        fill(store, clock)
        position = store.history("alice")[20].position
        assert store.verify().ok
    assert dict(items(path, b"log.events"))[position_key(position)][0] == 2
    return position


@pytest.fixture
def compressed(store_path: Path, clock: FakeClock, early_dictionary: None) -> tuple[Path, int]:
    """A closed store with compressed records; the position of a compressed message event in its middle."""
    return store_path, compressed_store(store_path, clock)


def reverify(path: Path, clock: FakeClock) -> list[str]:
    with SessionStore(path, clock=clock) as store:
        report = store.verify()
    assert not report.ok
    return report.problems


def payload_start(record: bytes) -> int:
    """Where a layout 2 record's frame begins: after its header, its digest if stored, its type name unless coded."""
    return _HEADER_2 + (32 if record[1] & 2 else 0) + (0 if record[1] & 4 else record[_HEADER_2 - 1])


#: (name, offset in a layout 2 record, xor mask): in any layout 2 record.
_ANY_RECORD_CHANGES = [
    ("format", lambda r: 0, 0x03),
    ("flags-redacted-bit", lambda r: 1, 0x01),
    ("flags-digest-bit", lambda r: 1, 0x02),
    ("flags-unused-bit", lambda r: 1, 0x80),
    ("stream-id", lambda r: 5, 0x02),
    ("version", lambda r: 9, 0x01),
    ("recorded-at", lambda r: 17, 0x01),
    ("event-id", lambda r: 20, 0xFF),
    ("schema-version", lambda r: 34, 0x01),
    ("hash-first-byte", lambda r: 35, 0x01),
    ("hash-last-byte", lambda r: 66, 0x80),
    ("frame-first-byte", lambda r: payload_start(r), 0x01),
    ("frame-middle-byte", lambda r: (payload_start(r) + len(r)) // 2, 0x01),
    ("frame-last-byte", lambda r: len(r) - 1, 0x01),
]
#: (name, offset in a layout 2 record, xor mask, whether the record names its type by code).
BYTE_CHANGES = [(*change, coded) for change in _ANY_RECORD_CHANGES for coded in (True, False)] + [
    ("type-code-none", lambda r: 67, 0x01, True),  # MessageAppended's 1 to 0, which no type has
    ("type-code-another-type", lambda r: 67, 0x02, True),  # to 3, LastMessageReplaced
    ("type-code-unknown", lambda r: 67, 0x80, True),
    ("type-name-length", lambda r: 67, 0x01, False),
    ("type-name", lambda r: _HEADER_2, 0x20, False),
]


@pytest.mark.parametrize("change", BYTE_CHANGES,
                         ids=[f"{change[0]}-{'coded' if change[3] else 'spelled-out'}" for change in BYTE_CHANGES])
def test_a_changed_byte_of_a_compact_record_is_reported_at_its_position(store_path: Path, clock: FakeClock,
                                                                        early_dictionary: None,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        change) -> None:
    """In a record that names its type by code, and in one that spells it out as versions before format 5 did."""
    _, where, mask, coded = change
    with monkeypatch.context() as patch:
        if not coded:
            patch.setattr(_log, "TYPE_CODES", {})
        path, position = store_path, compressed_store(store_path, clock)
    assert bool(dict(items(path, b"log.events"))[position_key(position)][1] & 4) == coded
    with editing(path, b"log.events") as txn:
        record = bytearray(raw_value(txn, position_key(position)))
        record[where(bytes(record))] ^= mask
        txn.put(position_key(position), bytes(record))
    problems = reverify(path, clock)
    assert names_position(problems, position), problems


def test_a_damaged_frame_is_refused_on_read(compressed: tuple[Path, int], clock: FakeClock) -> None:
    path, position = compressed
    with editing(path, b"log.events") as txn:
        record = bytearray(raw_value(txn, position_key(position)))
        record[-3] ^= 0x10
        txn.put(position_key(position), bytes(record))
    with SessionStore(path, clock=clock) as store, pytest.raises(StoreCorrupted, match=f"position {position}"):
        store.history("alice")


def test_a_changed_byte_of_a_compressed_chunk_is_reported(compressed: tuple[Path, int], clock: FakeClock) -> None:
    path, _ = compressed
    stream_keys = {bytes(v).decode(): _U64.unpack(k)[0] for k, v in items(path, b"log.stream_keys")}
    with editing(path, b"messages.chunks") as txn:
        key, value = next((bytes(k), bytearray(v)) for k, v in txn.cursor()
                          if _U64.unpack(bytes(k)[:8])[0] == stream_keys["bob"])
        assert value[0] == 1
        value[len(value) // 2] ^= 0x04
        txn.put(key, bytes(value))
    problems = reverify(path, clock)
    assert names_session(problems, "bob", stream_keys["bob"]), problems
    with SessionStore(path, clock=clock) as store, pytest.raises(StoreCorrupted, match="damaged"):
        store.load("bob")


def test_a_training_rolled_back_leaves_no_dictionary(store_path: Path, clock: FakeClock, early_dictionary: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The append that trains the dictionary fails after training it: the next appends train their own."""
    original = _log.EventLog._train
    failed: list[int] = []

    def train_then_fail_once(self: _log.EventLog, txn: WriteTransaction, head_position: int) -> Dictionary | None:
        trained = original(self, txn, head_position)
        if not failed:
            failed.append(head_position)
            raise OSError("the disk went away")
        return trained

    monkeypatch.setattr(_log.EventLog, "_train", train_then_fail_once)
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("alice", conversation(1, 7))
        with pytest.raises(OSError):
            store.append("alice", ChatMessage.user("the eighth"))
    assert failed == [7]
    assert b"dictionary" not in dict(items(store_path, b"log.meta"))
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("alice", conversation(2, 9))
        assert store.load("alice") == conversation(1, 7) + conversation(2, 9)
        assert store.verify().ok
    assert 2 in layouts(store_path)


def test_lmdb_values_of_the_new_forms_stay_within_a_page(store_path: Path, clock: FakeClock,
                                                         early_dictionary: None) -> None:
    """A 20-message chunk of a few KB, compressed, no longer needs overflow pages of its own."""
    with SessionStore(store_path, clock=clock) as store:
        for message in conversation(1, 8):  # the eighth append trains the dictionary on the seven before it
            store.append("alice", message)
        store.append_many("bob", conversation(2, 20))
        store.append_many("carol", conversation(5, 20))
        usage = store.stats(databases=True).usage
    assert usage is not None
    chunks = next(space for space in usage.spaces if space.name == "messages.chunks")
    assert (chunks.entries, chunks.overflow_pages) == (3, 0), chunks


def test_messages_with_payloads_round_trip_compressed(store_path: Path, clock: FakeClock,
                                                      early_dictionary: None) -> None:
    """Payloads trail a chunk's contents; the compressed chunk holds them as the plain one does."""
    rng = random.Random(7)
    messages = [ChatMessage("tool", sentence(rng), {"call": i, "args": [sentence(rng)], "ok": i % 2 == 0})
                for i in range(20)]
    with SessionStore(store_path, clock=clock) as store:
        for message in conversation(1, 8):
            store.append("alice", message)
        store.append_many("tools", messages)
        assert store.load("tools") == messages
        assert store.pop_last("tools") == messages[-1]
        assert store.load("tools") == messages[:-1]
        assert store.verify().ok
    chunks = [value for _, value in items(store_path, b"messages.chunks")]
    assert [value[0] for value in chunks] == [0, 1]  # alice's 8 short messages plain, the tools' compressed


def test_training_reads_the_start_of_each_payload(store_path: Path, clock: FakeClock, early_dictionary: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Long sessions' events (each replacement carries every message) train on their first bytes only, so the
    commit that trains holds and trains on at most ``TRAINING_SAMPLE_BYTES`` an event, and still trains."""
    sample_sizes: list[int] = []

    def recording_train(samples: Sequence[bytes], dictionary_id: int | None = None) -> bytes | None:
        sample_sizes.extend(map(len, samples))
        return train(samples, dictionary_id)

    monkeypatch.setattr(_log, "train", recording_train)
    messages = conversation(4, 300)
    with SessionStore(store_path, clock=clock) as store:
        for count in range(100, 108):
            store.replace_messages("alice", messages[:count])
        assert store.load("alice") == messages[:107]
        assert store.verify().ok
    assert len(sample_sizes) == 7 and max(sample_sizes) == TRAINING_SAMPLE_BYTES
    assert marker(store_path) == b"5"  # the eighth replacement's record names its type by code


def test_a_redaction_decompresses_only_its_sessions_and_the_forks(store_path: Path, clock: FakeClock,
                                                                   early_dictionary: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding the forks reads every record's type from its header: the rest of the log stays compressed."""
    with SessionStore(store_path, clock=clock) as store:
        fill(store, clock)
        store.fork("carol", "dave")
        store.search_messages("river")  # the search index caught up: the redaction has no backlog of its own to fold
        expanded: list[str] = []
        original = Dictionary.expand

        def counting_expand(self: Dictionary, frame: bytes, what: str) -> bytes:
            expanded.append(what)
            return original(self, frame, what)

        monkeypatch.setattr(Dictionary, "expand", counting_expand)
        assert store.redact("carol", "asked to") == 3  # carol's two appends, dave's fork
        monkeypatch.undo()
        assert store.load("dave") == [ChatMessage.user("[redacted]"), ChatMessage("assistant", "[redacted]")]
        assert store.verify().ok
    # Carol's two events and dave's fork, each read twice to be redacted, the fork once more to find it, and the two
    # SessionRedacted events folded into the search index: not the other 50 events of the log.
    assert expanded.count("the payload") <= 9, expanded


def frame_dictionaries(path: Path) -> list[int]:
    """The dictionary id each layout 2 record's frame carries (0: none, the store's first dictionary)."""
    found = []
    for _, record in items(path, b"log.events"):
        if record[0] == 2:
            found.append(zstandard.get_frame_parameters(b"\x28\xb5\x2f\xfd" + record[payload_start(record):]).dict_id)
    return found


def test_a_dictionary_trained_on_alike_payloads_is_trained_again(store_path: Path, clock: FakeClock,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose first payloads were all alike trains a dictionary that helps nothing; once the log has
    doubled it trains another from its latest payloads. Records and chunks of both stay readable (each frame names
    its dictionary), verify stays green, and the marker never goes back: format 5 here (its records are coded)."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 256)
    ping = ChatMessage.user("ping")
    sessions = {"varied": conversation(7, 300), "later": conversation(8, 40)}
    with SessionStore(store_path, clock=clock) as store:
        store.append_many("bot", [ping] * 255)
        store.append("bot", ping)  # the 256th event trains on 255 copies of one payload
    first = dict(items(store_path, b"log.meta"))[b"dictionary"]
    assert len(first) < 256 and marker(store_path) == b"5"  # the 256th record names its type by code
    with SessionStore(store_path, clock=clock) as store:
        for message in sessions["varied"][:256]:  # the 512th event trains again
            store.append("varied", message)
        store.append_many("varied", sessions["varied"][256:])
        store.append_many("later", sessions["later"])
        assert store.load("bot") == [ping] * 256
        for key, messages in sessions.items():
            assert store.load(key) == messages
        assert store.verify().ok
    meta = dict(items(store_path, b"log.meta"))
    assert meta[b"format"] == b"5" and len(meta[b"dictionary"]) > len(first) + 4096
    assert set(frame_dictionaries(store_path)) == {0, 1}
    with SessionStore(store_path, clock=clock) as store:
        store.rebuild_projections()
        for key, messages in sessions.items():
            assert store.load(key) == messages
        assert store.verify().ok
        events = list(store.events())
    found = salvage(store_path / "data.mdb")
    assert found.first_missing is None and not found.problems and list(found.prefix) == events


def test_dictionaries_bundle_round_trips_and_name_their_frames() -> None:
    """Pure: a second dictionary's frames carry its id; frames of either read back from the stored bundle; a frame
    naming a dictionary the store lacks, or a bundle cut short, is refused."""
    rng = random.Random(3)
    samples = [sentence(rng).encode() for _ in range(300)]
    first = Dictionary(train(samples) or b"")
    both = Dictionary(first.with_another(train(samples, first.next_id) or b""))
    old_frame, new_frame = first.compress(b"a river of copper"), both.compress(b"a meadow of glacier")
    assert (first.log_format, both.log_format) == (2, 3)
    assert both.expand(old_frame, "old") == b"a river of copper" and both.expand(new_frame, "new") == \
        b"a meadow of glacier"
    with pytest.raises(StoreCorrupted, match="Dictionary mismatch"):
        first.expand(new_frame, "a frame")
    with pytest.raises(StoreCorrupted, match="names a compression dictionary"):
        both.expand(Dictionary(both.with_another(train(samples, both.next_id) or b"")).compress(b"x"), "a frame")
    with pytest.raises(StoreCorrupted, match="dictionary is damaged"):
        Dictionary(both.data[:-10])


def test_expanders_read_what_expand_reads_and_refuse_what_it_refuses() -> None:
    """Pure: a dictionary's ``expander`` (zstd's call with one dictionary, ``expand`` with several) reads each frame
    with the magic number joined back as ``expand`` reads it; a frame of another dictionary or a damaged one raises
    (zstd's error with one dictionary, ``StoreCorrupted`` with several), where ``expand`` names it."""
    rng = random.Random(4)
    samples = [sentence(rng).encode() for _ in range(300)]
    first = Dictionary(train(samples) or b"")
    both = Dictionary(first.with_another(train(samples, first.next_id) or b""))
    frames = [first.compress(b"a river of copper"), both.compress(b"a meadow of glacier")]
    assert first.expander()(ZSTD_MAGIC + frames[0]) == first.expand(frames[0], "a frame") == b"a river of copper"
    for frame in frames:
        assert both.expander()(ZSTD_MAGIC + frame) == both.expand(frame, "a frame")
    damaged = frames[0][:-1] + bytes([frames[0][-1] ^ 1])
    with pytest.raises(zstandard.ZstdError):
        first.expander()(ZSTD_MAGIC + frames[1])
    with pytest.raises(zstandard.ZstdError):
        first.expander()(ZSTD_MAGIC + damaged)
    with pytest.raises(StoreCorrupted):
        both.expander()(ZSTD_MAGIC + damaged)


def test_retraining_waits_for_the_log_to_double_and_stops() -> None:
    """A poor dictionary is trained again at a multiple of the training interval once the log has doubled for each
    dictionary; a good one never; at most ``MAX_DICTIONARIES``."""
    poor = Dictionary(train([b"ping " * 40] * 300) or b"")
    assert not poor.retrain_due(600, 700, 256) and poor.retrain_due(511, 512, 256)
    assert not poor.retrain_due(512, 600, 256) and poor.retrain_due(700, 800, 256)
    rng = random.Random(4)
    good = Dictionary(train([sentence(rng).encode() for _ in range(300)]) or b"")
    assert not good.retrain_due(511, 512, 256)
    data = poor.data
    for _ in range(MAX_DICTIONARIES - 1):
        dictionary = Dictionary(data)
        data = dictionary.with_another(train([b"ping " * 40] * 300, dictionary.next_id) or b"")
    assert not Dictionary(data).retrain_due(10**9 - 1, 10**9, 256)


def claiming(frame: bytes, size: int) -> bytes:
    """A zstd frame stored without its magic, its header made to claim ``size`` bytes of content (an 8-byte field)."""
    descriptor = frame[0]
    single_segment = descriptor >> 5 & 1
    size_field = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    dictionary_field = (0, 1, 2, 4)[descriptor & 3]
    fixed = 1 + (0 if single_segment else 1) + dictionary_field  # the descriptor, window and dictionary id
    return bytes([descriptor | 0xC0]) + frame[1:fixed] + struct.pack("<Q", size) + frame[fixed + size_field:]


#: (claimed size, what the load's error says): 4 EiB is more than any machine has; 3 GiB is reserved where memory
#: is overcommitted (the frame is then found damaged), else refused as well.
CLAIMS = [(3 << 30, "damaged"), (1 << 62, "claims an impossible size")]


@pytest.mark.parametrize("claim", CLAIMS, ids=["3 GiB", "4 EiB"])
def test_a_compressed_chunk_claiming_an_impossible_size_is_refused(compressed: tuple[Path, int], clock: FakeClock,
                                                                   claim: tuple[int, str]) -> None:
    """The decompressor reserves the size a frame claims before it reads the frame: one more than the machine has
    is ``MemoryError``, a smaller one is reserved and never filled; either is ``StoreCorrupted`` to a load and
    reported by ``verify``."""
    size, said = claim
    path, _ = compressed
    stream_keys = {bytes(v).decode(): _U64.unpack(k)[0] for k, v in items(path, b"log.stream_keys")}
    with editing(path, b"messages.chunks") as txn:
        key, value = next((bytes(k), bytes(v)) for k, v in txn.cursor()
                          if _U64.unpack(bytes(k)[:8])[0] == stream_keys["bob"] and bytes(v)[:1] == b"\x01")
        claimed = value[:1] + claiming(value[1:], size)
        assert zstandard.get_frame_parameters(ZSTD_MAGIC + claimed[1:]).content_size == size
        txn.put(key, claimed)
    with SessionStore(path, clock=clock) as store, pytest.raises(StoreCorrupted, match=said):
        store.load("bob")
    problems = reverify(path, clock)
    assert names_session(problems, "bob", stream_keys["bob"]), problems
