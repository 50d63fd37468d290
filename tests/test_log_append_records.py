"""``EventLog.append`` builds an append's records in passes over all its events; each record must be the bytes the
general builder (``_log._record``) makes of that event alone, whatever the run holds: coded and spelled-out type
names (one too long for layout 2), schema versions past layout 2's byte, stream ids and versions past its u32
fields, imported times, replicated events (redacted, with a digest of their own), before and after the store has its
dictionary."""

from __future__ import annotations

import hashlib
import os
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import _log
from eventstore._codec import EncodedEvent
from eventstore._log import GENESIS_HASH, EventLog, Original, chain_hash
from eventstore.storage import MemoryStorage, WriteTransaction

T0 = 1_767_225_600_000_000

TYPE_NAMES = ["MessageAppended", "SessionRenamed", "SomethingNew", "N" * 256]

events = st.builds(EncodedEvent, st.sampled_from(TYPE_NAMES), st.sampled_from([1, 2, 255, 256]),
                   st.binary(min_size=0, max_size=60).map(lambda tail: b'{"text":"hello there ' + tail + b'"}'))


@st.composite
def appends(draw: st.DrawFn) -> tuple[str, list[EncodedEvent], list[int] | None, list[Original] | None]:
    run = draw(st.lists(events, min_size=1, max_size=6))
    times = draw(st.none() | st.lists(st.integers(T0 - 10, T0 + 10), min_size=len(run), max_size=len(run)))
    originals = None
    if draw(st.booleans()):
        originals = []
        for event in run:
            # A redacted event keeps the digest of the payload it had (stored beside the record); another's is its own.
            redacted = draw(st.booleans())
            digest = bytes(32) if redacted and draw(st.booleans()) else hashlib.sha256(event.payload).digest()
            originals.append(Original(draw(st.binary(min_size=16, max_size=16)), digest, redacted))
    return draw(st.sampled_from(["a", "b", "c" * 300])), run, times, originals


@given(st.lists(appends(), min_size=1, max_size=12))
def test_each_record_is_the_general_builders(script: list[tuple[str, list[EncodedEvent], list[int] | None,
                                                                list[Original] | None]]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)  # the dictionary comes within the script
        storage = MemoryStorage()
        log = EventLog(storage)
        latest: dict[str, int] = {}  # each session's latest recorded time
        chain = [GENESIS_HASH]
        for key, run, times, originals in script:
            def append_and_compare(txn: WriteTransaction, key: str = key, run: list[EncodedEvent] = run,
                                   times: list[int] | None = times, originals: list[Original] | None = originals
                                   ) -> None:
                stored = log.append(txn, key, run, T0, originals=originals, times=times)
                dictionary = log.dictionary.get(txn)  # the one this append compressed with
                stamp = max(T0, latest.get(key, T0))
                for index, (event, encoded) in enumerate(zip(stored, run, strict=True)):
                    stamp = stamp if times is None else max(stamp, times[index])
                    if originals is None:
                        flags, digest, kept = 0, hashlib.sha256(encoded.payload).digest(), None
                    else:
                        original = originals[index]
                        flags = _log._REDACTED_FLAG if original.redacted else 0
                        digest, kept = original.payload_digest, _log._digest_to_store(original.payload_digest,
                                                                                       encoded.payload)
                    link = chain_hash(chain[-1], event.position, key, event.version, stamp, event.event_id, encoded,
                                      digest)
                    assert (event.recorded_at, event.payload_digest, event.hash, event.redacted) == \
                        (stamp, digest, link, bool(flags))
                    chain.append(link)
                    expected = _log._record(flags, event.stream_id, event.version, stamp, event.event_id, encoded,
                                            digest, kept, link, dictionary)
                    raw = txn.get(log._events, _log._U64.pack(event.position))
                    assert raw is not None and bytes(raw) == expected
                latest[key] = stamp
            storage.write(append_and_compare)
        with storage.read() as txn:
            assert [event.hash for event in log.read_all(txn)] == chain[1:]


U32 = 2 ** 32


@pytest.mark.parametrize("names", [TYPE_NAMES[:3], TYPE_NAMES], ids=["all-fit-layout-2", "one-name-too-long"])
@pytest.mark.parametrize(("stream_id", "version"), [(U32 - 1, U32 - 3), (U32, 0), (7, U32 - 2), (2 ** 63, U32)])
def test_records_at_the_u32_borders(monkeypatch: pytest.MonkeyPatch, names: list[str], stream_id: int,
                                    version: int) -> None:
    """A stream id or versions at and past layout 2's u32 fields (a run crossing the border holds records of both
    layouts), in a run whose type names all fit layout 2 or not: each record is the general builder's."""
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)
    # The tip names a version no record of the log holds: the check that it leads to its stream's record is not
    # what this test is about.
    monkeypatch.setattr(_log, "_check_led", lambda *_: None)
    storage = MemoryStorage()
    log = EventLog(storage)
    run = [EncodedEvent(name, 1, b'{"text":"hello there %d"}' % at) for at, name in enumerate(names)]
    asked = [EncodedEvent("MessageAppended", 2, b'{"message":["user","%d: what is LMDB, and why?"]}' % number)
             for number in range(18)]
    for start in range(0, 18, 3):  # the dictionary comes with these
        storage.write(partial(log.append, key="a", events=asked[start:start + 3], recorded_at=T0))

    def append_and_compare(txn: WriteTransaction) -> None:
        position, previous, _ = log.head(txn)
        dictionary = log.dictionary.get(txn)
        assert dictionary is not None
        tip = _log.StreamTip(stream_id, version, position if version else 0)
        stored = log.append(txn, "b", run, T0, tip=tip)
        assert [event.version for event in stored] == list(range(version + 1, version + len(run) + 1))
        for event, encoded in zip(stored, run, strict=True):
            digest = hashlib.sha256(encoded.payload).digest()
            previous = chain_hash(previous, event.position, "b", event.version, T0, event.event_id, encoded, digest)
            expected = _log._record(0, stream_id, event.version, T0, event.event_id, encoded, digest, None,
                                    previous, dictionary)
            raw = txn.get(log._events, _log._U64.pack(event.position))
            assert raw is not None and bytes(raw) == expected
            assert event.hash == previous

    storage.write(append_and_compare)


@pytest.mark.parametrize("count", [1, _log._SPLIT_BY_STRUCT, _log._SPLIT_BY_STRUCT + 1, 1000])
def test_a_commands_ids_are_the_bytes_drawn_in_order(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Each event's id is its 16 bytes of the one draw, in order, at any size; only a command of at most
    ``_SPLIT_BY_STRUCT`` events keeps a ``struct`` for its size (an import's would keep megabytes)."""
    drawn = bytes(range(256)) * (count // 16 + 1)
    monkeypatch.setattr(os, "urandom", lambda size: drawn[:size])
    _log._split_ids.cache_clear()
    storage = MemoryStorage()
    log = EventLog(storage)
    run = [EncodedEvent("MessageAppended", 2, b'{"n":%d}' % number) for number in range(count)]
    stored = storage.write(partial(log.append, key="a", events=run, recorded_at=T0))
    assert [event.event_id for event in stored] == [drawn[start:start + 16] for start in range(0, 16 * count, 16)]
    assert _log._split_ids.cache_info().currsize == (1 if count <= _log._SPLIT_BY_STRUCT else 0)
