"""The codec: one shared table of (event, stored bytes) cases drives encoding and decoding.

The payloads are written out by hand from the schema (compact JSON, a message as
``[role, content]``, UTF-8 text unescaped), so a change of the stored form shows up here.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import (
    ChatMessage,
    IncompatibleStore,
    InvalidArgument,
    SessionQuery,
    SessionState,
    SessionStore,
    StoreCorrupted,
    TimestampedMessage,
    _codec,
    pause_gc_while_decoding,
)
from eventstore._codec import (
    EncodedEvent,
    appended_content,
    bulk_decoding,
    converted_event,
    decode_event,
    encode_event,
)
from eventstore._values import stored_payload_of
from eventstore.events import (
    EVENT_TYPES,
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    MessagesReplaced,
    SessionDeleted,
    SessionForked,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)
from eventstore.storage import WriteTransaction
from projections.search import writer as search_writer

from strategies import messages

#: 2026-01-01T00:00:00Z, and the integer microseconds since the epoch it is stored as.
NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
NEW_YEAR_MICROS = b"%d" % (1_767_225_600 * 1_000_000)

#: (event, type name, schema version, payload bytes)
CASES = [
    (MessageAppended(ChatMessage.user("hello")), "MessageAppended", 1, b'{"message":["user","hello"]}'),
    (MessageAppended(ChatMessage.system("")), "MessageAppended", 1, b'{"message":["system",""]}'),
    (MessageAppended(ChatMessage("assistant", 'say "hi"\n')), "MessageAppended", 1,
     b'{"message":["assistant","say \\"hi\\"\\n"]}'),
    (MessageAppended(ChatMessage.tool("h\u00e9llo \u2713 \U0001F600")), "MessageAppended", 1,
     b'{"message":["tool","h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"]}'),
    # A message with a payload: a third item, its stored JSON; such events are schema 2 (without one, 1).
    (MessageAppended(ChatMessage("assistant", "", {"type": "function_call", "args": {"n": 1.0, "big": 2**64}})),
     "MessageAppended", 2,
     b'{"message":["assistant","",{"type":"function_call","args":{"n":1.0,"big":{"$int":"18446744073709551616"}}}]}'),
    (MessageAppended(ChatMessage.user("x\x00", {"k": "\ud800!", "$str": 1})), "MessageAppended", 2,
     b'{"message":["user","x\\u0000",{"k":{"$str":[55296,"!"]},"$str":1}]}'),
    (MessageAppended(ChatMessage.user("", {"$obj": []})), "MessageAppended", 2,
     b'{"message":["user","",{"$obj":[["$obj",[]]]}]}'),
    (LastMessageReplaced(ChatMessage.assistant("done", {})), "LastMessageReplaced", 2,
     b'{"message":["assistant","done",{}]}'),
    (SessionRestored(3, True, (TimestampedMessage(ChatMessage("user", "hi", {"a": [None, True]}), NEW_YEAR),),
                     None, None, NEW_YEAR), "SessionRestored", 2,
     b'{"restored_version":3,"exists":true,"messages":[["user","hi",' + NEW_YEAR_MICROS + b',{"a":[null,true]}]],'
     b'"name":null,"state":null,"created_at":' + NEW_YEAR_MICROS + b'}'),
    (LastMessageRemoved(), "LastMessageRemoved", 1, b"{}"),
    (LastMessageReplaced(ChatMessage.assistant("partial")), "LastMessageReplaced", 1,
     b'{"message":["assistant","partial"]}'),
    (MessagesCleared(3), "MessagesCleared", 1, b'{"count":3}'),
    (MessagesReplaced((ChatMessage.system("summary"), ChatMessage.user("kept", {"id": 1})), (None, NEW_YEAR)),
     "MessagesReplaced", 1,
     b'{"messages":[["system","summary"],["user","kept",{"id":1}]],"appended":[null,' + NEW_YEAR_MICROS + b']}'),
    (MessagesReplaced((), ()), "MessagesReplaced", 1, b'{"messages":[],"appended":[]}'),
    (SessionRenamed("trip"), "SessionRenamed", 1, b'{"name":"trip"}'),
    (SessionRenamed(None), "SessionRenamed", 1, b'{"name":null}'),
    (SessionStateChanged("running", "turn-1"), "SessionStateChanged", 1, b'{"state":"running","turn_id":"turn-1"}'),
    (SessionStateChanged("idle"), "SessionStateChanged", 1, b'{"state":"idle","turn_id":null}'),
    (SessionDeleted(), "SessionDeleted", 1, b'{"reason":null}'),
    (SessionDeleted("stale"), "SessionDeleted", 1, b'{"reason":"stale"}'),
    (SessionRestored(3, True, (TimestampedMessage(ChatMessage.user("hi"), NEW_YEAR),), "trip",
                     SessionState("running", "t1", NEW_YEAR), NEW_YEAR), "SessionRestored", 1,
     b'{"restored_version":3,"exists":true,"messages":[["user","hi",' + NEW_YEAR_MICROS + b']],"name":"trip",'
     b'"state":{"state":"running","turn_id":"t1","turn_started_at":' + NEW_YEAR_MICROS + b'},'
     b'"created_at":' + NEW_YEAR_MICROS + b'}'),
    (SessionRestored(0, False, (), None, None, None), "SessionRestored", 1,
     b'{"restored_version":0,"exists":false,"messages":[],"name":null,"state":null,"created_at":null}'),
    (SessionForked("chat/1", 3, "ab" * 32, (TimestampedMessage(ChatMessage("user", "hi", {"k": [1]}), NEW_YEAR),),
                   "trip"), "SessionForked", 1,
     b'{"source_key":"chat/1","source_version":3,"source_hash":"' + b"ab" * 32 + b'","messages":[["user","hi",'
     + NEW_YEAR_MICROS + b',{"k":[1]}]],"name":"trip"}'),
    (SessionRedacted("gdpr request", ((3, "ab"),)), "SessionRedacted", 1,
     b'{"reason":"gdpr request","rewritten":[[3,"ab"]]}'),
]
IDS = [f"{name}-{index}" for index, (_, name, _, _) in enumerate(CASES)]


class TestCases:
    """The case table itself."""

    def test_every_event_type_has_a_case(self):
        """Each registered event type appears in the table."""
        assert set(EVENT_TYPES) == {name for _, name, _, _ in CASES}


class TestEncode:
    """``encode_event``."""

    @pytest.mark.parametrize("event, type_name, schema_version, payload", CASES, ids=IDS)
    def test_encode(self, event, type_name, schema_version, payload):
        """An event encodes to its type name, schema version and exact payload bytes."""
        assert EncodedEvent(type_name, schema_version, payload) == encode_event(event)


    @given(message=messages, replaced=st.booleans())
    def test_message_events_encode_as_the_schema_does(self, message, replaced):
        """The message events ``encode_event`` builds directly have the bytes and schema version of the cattrs
        schema's encoding, with and without a payload."""
        event = LastMessageReplaced(message) if replaced else MessageAppended(message)
        assert converted_event(event) == encode_event(event)
        assert (stored_payload_of(message) is None) == (encode_event(event).schema_version == 1)


class TestDecode:
    """``decode_event``."""

    @pytest.mark.parametrize("event, type_name, schema_version, payload", CASES, ids=IDS)
    def test_decode(self, event, type_name, schema_version, payload):
        """The stored bytes decode to the event."""
        assert event == decode_event(EncodedEvent(type_name, schema_version, payload))

    @pytest.mark.parametrize("event, type_name, schema_version, payload", CASES, ids=IDS)
    def test_every_prefix_is_corrupted(self, event, type_name, schema_version, payload):
        """Every truncation of a valid payload raises StoreCorrupted and nothing else."""
        for end in range(len(payload)):
            with pytest.raises(StoreCorrupted):
                decode_event(EncodedEvent(type_name, schema_version, payload[:end]))

    @pytest.mark.parametrize("event, type_name, schema_version, payload", CASES, ids=IDS)
    def test_every_byte_flip_never_escapes(self, event, type_name, schema_version, payload):
        """Replacing any one byte with garbage decodes or raises StoreCorrupted, never another exception."""
        escaped = []
        for index in range(len(payload)):
            for garbage in (b"\xff", b"\x00", b"}", b'"', b"9", b"["):
                damaged = payload[:index] + garbage + payload[index + 1:]
                try:
                    decode_event(EncodedEvent(type_name, schema_version, damaged))
                except StoreCorrupted:
                    pass
                except Exception as exc:  # any other exception is the failure reported
                    escaped.append((damaged, type(exc).__name__))
        assert [] == escaped

    def test_unknown_type(self):
        """An unknown type name raises IncompatibleStore."""
        with pytest.raises(IncompatibleStore, match="SessionArchived"):
            decode_event(EncodedEvent("SessionArchived", 1, b"{}"))

    @pytest.mark.parametrize("event, type_name, schema_version, payload", CASES, ids=IDS)
    def test_newer_schema_version(self, event, type_name, schema_version, payload):
        """A schema version newer than the code's raises IncompatibleStore."""
        with pytest.raises(IncompatibleStore):
            decode_event(EncodedEvent(type_name, EVENT_TYPES[type_name].schema_version + 1, payload))

    def test_older_version_is_upcast(self, monkeypatch):
        """A payload of an older schema version goes through its upcaster."""
        monkeypatch.setitem(_codec.UPCASTERS, ("MessagesCleared", 0), lambda data: {"count": data["removed"]})
        assert MessagesCleared(4) == decode_event(EncodedEvent("MessagesCleared", 0, b'{"removed":4}'))

    @pytest.mark.parametrize("type_name, payload", [
        ("MessageAppended", b"[]"),
        ("MessageAppended", b"null"),
        ("MessageAppended", b"{}"),
        ("MessageAppended", b'{"message":"user"}'),
        ("MessageAppended", b'{"message":["user"]}'),
        ("MessageAppended", b'{"message":["user","a","b"]}'),
        ("MessageAppended", b'{"message":["","text"]}'),
        ("MessageAppended", b'{"message":[1,"text"]}'),
        ("MessageAppended", b'{"message":["user",null]}'),
        ("MessagesCleared", b'{"count":null}'),
        ("SessionStateChanged", b'{"turn_id":null}'),
        ("LastMessageReplaced", b'{"message":{"role":"user"}}'),
        ("MessageAppended", b"\xff\xfe"),
    ])
    def test_malformed_payload(self, type_name, payload):
        """A payload that does not match the schema raises StoreCorrupted."""
        with pytest.raises(StoreCorrupted):
            decode_event(EncodedEvent(type_name, 1, payload))

    @pytest.mark.parametrize("type_name, payload", [
        ("SessionRenamed", b'{"name":5}'),
        ("SessionStateChanged", b'{"state":7,"turn_id":null}'),
        ("SessionDeleted", b'{"reason":1.5}'),
        ("MessagesCleared", b'{"count":"3"}'),
        ("MessagesCleared", b'{"count":3.7}'),
        ("MessagesCleared", b'{"count":true}'),
        ("SessionRestored",
         b'{"restored_version":2,"exists":"no","messages":[],"name":null,"state":null,"created_at":null}'),
    ])
    def test_wrongly_typed_field(self, type_name, payload):
        """A field of the wrong JSON type raises StoreCorrupted instead of being coerced to a wrong answer."""
        with pytest.raises(StoreCorrupted):
            decode_event(EncodedEvent(type_name, 1, payload))


class TestAppendedContent:
    """``appended_content``, the indexer's read of an appended message: what ``decode_event`` reads, or nothing."""

    @staticmethod
    def decoded_content(type_name: str, schema_version: int, payload: bytes) -> str | None:
        """The content ``decode_event`` gives a plain appended message (``None``: anything else, or damage)."""
        try:
            event = decode_event(EncodedEvent(type_name, schema_version, payload))
        except StoreCorrupted:
            return None
        if not isinstance(event, MessageAppended) or stored_payload_of(event.message) is not None:
            return None
        return event.message.content

    def test_plain_messages_are_read_and_others_left_to_decode_event(self):
        """A message without a payload gives its content; one with a payload, or a payload of another shape,
        gives ``None``."""
        found = {IDS[index]: appended_content(payload, schema)
                 for index, (_, name, schema, payload) in enumerate(CASES)
                 if name in ("MessageAppended", "SessionRenamed")}
        assert "hello" in found.values() and None in found.values()
        for (event, _, _, _), case in zip(CASES, IDS):
            if case in found:
                plain = isinstance(event, MessageAppended) and event.message.payload is None
                assert found[case] == (event.message.content if isinstance(event, MessageAppended) and plain
                                       else None), case

    @pytest.mark.parametrize("event, type_name, schema_version, payload",
                             [case for case in CASES if case[1] == "MessageAppended"],
                             ids=[case for case, (_, name, _, _) in zip(IDS, CASES) if name == "MessageAppended"])
    def test_damage_is_never_read_as_another_content(self, event, type_name, schema_version, payload):
        """Every truncation and one-byte change of an appended message's payload: ``appended_content`` gives
        ``None`` (then ``decode_event`` decides) or exactly the content ``decode_event`` gives."""
        damaged = [payload[:end] for end in range(len(payload))] + [
            payload[:index] + garbage + payload[index + 1:]
            for index in range(len(payload)) for garbage in (b"\xff", b"\x00", b"}", b'"', b"9", b"[", b"1")]
        decoded = functools.partial(self.decoded_content, type_name, schema_version)
        wrong = [(variant, appended_content(variant, schema_version)) for variant in damaged
                 if appended_content(variant, schema_version) not in (None, decoded(variant))]
        assert [] == wrong


@pytest.fixture
def gc_pause_opted_in() -> Iterator[None]:
    previous = pause_gc_while_decoding(True)
    try:
        yield
    finally:
        pause_gc_while_decoding(previous)


class TestBulkDecoding:
    """Opted in, ``bulk_decoding`` pauses the cyclic garbage collector and puts it back as it found it."""

    @pytest.mark.usefixtures("gc_pause_opted_in")
    def test_restores_an_enabled_collector(self):
        """Paused inside, enabled again after, even when the decode raises."""
        assert gc.isenabled()
        with pytest.raises(StoreCorrupted), bulk_decoding():
            assert not gc.isenabled()
            raise StoreCorrupted("damaged")
        assert gc.isenabled()

    @pytest.mark.usefixtures("gc_pause_opted_in")
    def test_leaves_a_disabled_collector_disabled(self):
        """A caller that turned the collector off keeps it off."""
        gc.disable()
        try:
            with bulk_decoding():
                assert not gc.isenabled()
            assert not gc.isenabled()
        finally:
            gc.enable()

    @pytest.mark.usefixtures("gc_pause_opted_in")
    def test_threads_share_one_pause(self):
        """Threads entering and leaving at will leave the collector on, as it was before the first came in."""
        def decode_often() -> None:
            for _ in range(3000):
                with bulk_decoding():
                    pass

        threads = [threading.Thread(target=decode_often) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert gc.isenabled()

    @pytest.mark.usefixtures("gc_pause_opted_in")
    def test_opting_out_inside_a_pause_still_ends_it(self):
        """A pause begun while opted in is undone when it ends, even if the host opted out meanwhile."""
        with bulk_decoding():
            assert pause_gc_while_decoding(False) is True
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_the_setting_is_a_bool(self):
        with pytest.raises(InvalidArgument):
            pause_gc_while_decoding(1)  # type: ignore[arg-type]

    @pytest.mark.usefixtures("gc_pause_opted_in")
    def test_covers_catch_ups_and_rebuilds(self, tmp_path, monkeypatch):
        """A catch-up and a rebuild of the search index fold and write their batch with the collector paused, and
        leave it on after."""
        seen = _collector_at_flush(monkeypatch)
        with SessionStore(tmp_path / "store", durable=False) as store:
            for key in ("a", "b"):
                store.append_many(key, [ChatMessage.user(f"garbage collection {i}") for i in range(30)])
            store.catch_up(progress=lambda done, total: seen.append(gc.isenabled()) if done < total else None)
            store.rebuild_projections(["search"])
            assert store.search(SessionQuery("garbage"))
        assert len(seen) >= 2 and not any(seen)
        assert gc.isenabled()


def _collector_at_flush(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector is on each time the search index writes a batch (inside its catch-up)."""
    seen: list[bool] = []
    flush = search_writer.IndexWriter.flush

    def recording(self: search_writer.IndexWriter, txn: WriteTransaction) -> None:
        seen.append(gc.isenabled())
        flush(self, txn)

    monkeypatch.setattr(search_writer.IndexWriter, "flush", recording)
    return seen


class TestCollectorUntouchedByDefault:
    """Not opted in, the library never changes the host's collector: not after a call, nor while one runs."""

    @pytest.mark.parametrize("host_enabled", [True, False], ids=["host-collector-on", "host-collector-off"])
    def test_decoding_leaves_the_collector_alone(self, host_enabled):
        if not host_enabled:
            gc.disable()
        try:
            with bulk_decoding():
                assert gc.isenabled() is host_enabled
            assert gc.isenabled() is host_enabled
        finally:
            gc.enable()

    @pytest.mark.parametrize("host_enabled", [True, False], ids=["host-collector-on", "host-collector-off"])
    def test_catch_ups_and_rebuilds_leave_the_collector_alone(self, tmp_path, monkeypatch, host_enabled):
        seen = _collector_at_flush(monkeypatch)
        with SessionStore(tmp_path / "store", durable=False) as store:
            store.append_many("a", [ChatMessage.user(f"garbage collection {i}") for i in range(30)])
            if not host_enabled:
                gc.disable()
            try:
                store.catch_up()
                store.rebuild_projections(["search"])
                seen.append(gc.isenabled())
            finally:
                gc.enable()
        assert len(seen) == 3 and set(seen) == {host_enabled}

    @pytest.mark.parametrize("host_enabled", [True, False], ids=["host-collector-on", "host-collector-off"])
    def test_loads_in_other_threads_never_change_it(self, tmp_path, host_enabled):
        """The host thread watches the collector while other threads load, list and time-travel long sessions."""
        messages = [ChatMessage.user(f"message {i} about lmdb and garbage collection") for i in range(3000)]
        with SessionStore(tmp_path / "store", durable=False, cache_sessions=0, snapshot_every=500) as store:
            for key in ("a", "b"):
                store.append_many(key, messages)
            seen: set[bool] = set()
            errors: list[BaseException] = []

            def load_repeatedly(key: str) -> None:
                try:
                    for version in range(1, 16):
                        assert store.load(key) == messages
                        store.list_sessions_with_metadata()
                        store.session_at(key, version=version)
                except BaseException as exc:  # reported to the host thread below
                    errors.append(exc)

            if not host_enabled:
                gc.disable()
            try:
                threads = [threading.Thread(target=load_repeatedly, args=(key,)) for key in ("a", "b", "a")]
                for thread in threads:
                    thread.start()
                while any(thread.is_alive() for thread in threads):
                    seen.add(gc.isenabled())
                for thread in threads:
                    thread.join()
                seen.add(gc.isenabled())
            finally:
                gc.enable()
        assert not errors
        assert seen == {host_enabled}
