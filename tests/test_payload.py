"""Message payloads: checked when a message is made, immutable, and kept exactly through every path a message
takes (append, load, history, time travel, snapshots, export/import, replication, the async store, the CLI)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import AsyncSessionStore, ChatMessage, InvalidMessage, SessionStore, StoreCorrupted
from eventstore._codec import _read_payload as _codec_reader
from eventstore._codec import decode_event, encode_event
from eventstore._payload import (
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    freeze_payload,
    read_payloads_with,
    stored_payload,
    thaw_payload,
)
from eventstore._values import stored_payload_of
from eventstore.events import MessageAppended
from eventstore.interchange import export_events, import_events
from eventstore.storage import MemoryStorage

from strategies import json_payloads, roles, texts


def same_json(one: Any, other: Any) -> bool:
    """Equal as JSON is exactly: same types (int is not float, bool is not int), same key order, -0.0 is not 0.0."""
    if type(one) is not type(other):
        return False
    if isinstance(one, dict):
        return list(one) == list(other) and all(same_json(one[key], other[key]) for key in one)
    if isinstance(one, list):
        return len(one) == len(other) and all(map(same_json, one, other))
    if isinstance(one, float):
        return math.copysign(1, one) == math.copysign(1, other) and one == other
    return bool(one == other)


#: Payloads that once needed care: every tag as a key, a lone surrogate in a key and a value, NUL, 64-bit edges.
AWKWARD = {"$str": ["\ud800", "a\x00b"], "\udfff": {"$int": "1"}, "n": [2**63 - 1, -(2**63), 2**64 - 1, 2**64,
                                                                    -(2**63) - 1, 10**40, 1.0, -0.0, 5e-324]}


class TestValidation:
    @pytest.mark.parametrize("payload, words", [
        (["a"], "must be a JSON object"),
        ("{}", "must be a JSON object"),
        (b"{}", "must be a JSON object"),
        ({1: "a"}, "keys are str"),
        ({"a": {None: 1}}, "keys are str"),
        ({"a": (1, 2)}, "not tuple"),
        ({"a": {1, 2}}, "not set"),
        ({"a": b"x"}, "not bytes"),
        ({"a": object()}, "not object"),
        ({"a": math.nan}, "nan"),
        ({"a": [math.inf]}, "inf"),
        ({"a": -math.inf}, "inf"),
        ({"a": 10**5000}, "too large"),
    ])
    def test_not_json(self, payload, words):
        with pytest.raises(InvalidMessage, match=words):
            ChatMessage("user", "x", payload)

    def test_cycles(self):
        looped: dict[str, Any] = {"a": []}
        looped["a"].append(looped)
        with pytest.raises(InvalidMessage, match="cycle"):
            ChatMessage("user", "x", looped)
        shared = [1]
        assert ChatMessage("user", "x", {"a": shared, "b": shared}).payload == {"a": [1], "b": [1]}  # no cycle

    def test_depth(self):
        def nested(levels: int) -> dict[str, Any]:
            payload: dict[str, Any] = {}
            for _ in range(levels - 1):
                payload = {"a": payload}
            return payload

        assert ChatMessage("user", "x", nested(MAX_PAYLOAD_DEPTH)).payload == nested(MAX_PAYLOAD_DEPTH)
        with pytest.raises(InvalidMessage, match="deeper"):
            ChatMessage("user", "x", nested(MAX_PAYLOAD_DEPTH + 1))

    def test_size(self):
        text = "x" * (MAX_PAYLOAD_BYTES - len(b'{"a":""}'))
        assert {"a": text} == ChatMessage("user", "", {"a": text}).payload
        with pytest.raises(InvalidMessage, match="limit"):
            ChatMessage("user", "", {"a": text + "x"})

    def test_content_keeps_its_validation(self):
        with pytest.raises(InvalidMessage):
            ChatMessage("user", "\ud800", {"a": 1})


class TestValue:
    def test_immutable(self):
        given_payload: dict[str, Any] = {"a": [1, {"b": 2}]}
        message = ChatMessage("user", "x", given_payload)
        given_payload["a"][1]["b"] = 3
        given_payload["c"] = 4
        read = message.payload
        assert read is not None
        read["a"].append(5)
        assert {"a": [1, {"b": 2}]} == message.payload
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            message.payload = {}  # type: ignore[misc]

    def test_equality_is_exact(self):
        assert ChatMessage("user", "x", {"a": 1}) == ChatMessage("user", "x", {"a": 1})
        assert hash(ChatMessage("user", "x", {"a": 1})) == hash(ChatMessage("user", "x", {"a": 1}))
        assert ChatMessage("user", "x", {"a": 1}) != ChatMessage("user", "x", {"a": 1.0})
        assert ChatMessage("user", "x", {"a": 1}) != ChatMessage("user", "x", {"a": True})
        assert ChatMessage("user", "x", {"a": 1, "b": 2}) != ChatMessage("user", "x", {"b": 2, "a": 1})
        assert ChatMessage("user", "x", {}) != ChatMessage("user", "x")
        assert ChatMessage("user", "x") == ChatMessage("user", "x", None)

    def test_factories_and_evolve(self):
        message = ChatMessage.assistant("x", {"a": 1})
        assert ChatMessage("assistant", "x", {"a": 1}) == message
        assert {"a": 1} == attrs.evolve(message, content="y").payload
        assert {"b": 2} == attrs.evolve(message, payload={"b": 2}).payload
        assert "payload={'a': 1}" in repr(message) and "payload" not in repr(ChatMessage.user("x"))

    @given(json_payloads)
    @example(AWKWARD)
    @example({"$obj": [["$str", 1]], "$int": "2"})
    @example({"": {"$str": {"$str": "\ud83d\ude00"}}})
    @example({"small": [1e-07, 2.5e-05, -6.9522870820729175e-06, 1e16, 1e22, 5e-324, 0.1]})
    def test_stored_form_round_trips(self, payload):
        """Any JSON object comes back exactly; its stored form read back by orjson (as an event's is) and stored
        again is the same bytes, and so is an event's JSON that orjson reads and writes again."""
        stored = freeze_payload(payload)
        assert stored is not None
        assert same_json(payload, thaw_payload(stored))
        assert stored == stored_payload(orjson.loads(bytes(stored)))
        event = encode_event(MessageAppended(ChatMessage("user", "", payload)))
        assert event.payload == orjson.dumps(orjson.loads(event.payload))
        assert stored == stored_payload_of(decode_event(event).message)

    @given(json_payloads)
    @example(AWKWARD)
    @example({"floats": [1e-07, 1e16, 1e22, 5e-324, 1.7976931348623157e308, 0.30000000000000004, -0.0, 2.0**64]})
    def test_the_standard_library_reads_stored_forms_as_the_codec_does(self, payload):
        """The codec reads payloads with orjson; a message made before the codec was loaded reads them with the
        standard library: both give the payload back exactly."""
        stored = freeze_payload(payload)
        assert stored is not None
        by_codec = thaw_payload(stored)
        read_payloads_with(json.loads)
        try:
            by_standard_library = thaw_payload(stored)
        finally:
            read_payloads_with(_codec_reader)
        assert same_json(payload, by_codec) and same_json(payload, by_standard_library)

    @pytest.mark.parametrize("damaged", [b"[1]", b'{"a":', b'{"a":{"$str":["x",99999999]}}', b'{"a":{"$int":"x"}}',
                                         b'{"a":{"$obj":[[1,2]]}}', b'{"a":{"$obj":[1]}}'])
    def test_damaged_stored_form(self, damaged):
        with pytest.raises(StoreCorrupted):
            thaw_payload(damaged)


def _store(path: Path, **options: Any) -> SessionStore:
    return SessionStore(path, durable=False, **options)


def _messages(draw_payloads: list[dict[str, Any] | None]) -> list[ChatMessage]:
    return [ChatMessage("tool" if i % 2 else "user", f"m{i}", payload) for i, payload in enumerate(draw_payloads)]


class TestThroughTheStore:
    @given(st.lists(st.none() | json_payloads, min_size=1, max_size=6), st.integers(1, 4))
    @example([AWKWARD, None, {}], 1)
    def test_every_read_path(self, payloads, snapshot_every):
        """Load, history, session_at (from a snapshot and from the log), restore, update_last and remove_last."""
        messages = _messages(payloads)
        with tempfile.TemporaryDirectory() as directory, _store(Path(directory), snapshot_every=snapshot_every,
                                                                 cache_sessions=0) as store:
            for message in messages:
                store.append("k", message)
            assert messages == store.load("k")
            assert all(same_json(m.payload, loaded.payload) for m, loaded in zip(messages, store.load("k")))
            assert messages == [event.event.message for event in store.history("k")]
            for version in range(len(messages) + 1):
                assert messages[:version] == store.session_at("k", version=version).messages
            store.update_last("k", ChatMessage("user", "last", payloads[0]))
            assert ChatMessage("user", "last", payloads[0]) == store.load("k")[-1]
            store.remove_last("k")
            store.restore("k", version=len(messages))
            assert messages == store.load("k")
            store.rebuild_projections()
            assert messages == store.load("k")
            assert store.verify().ok

    @given(st.lists(st.tuples(roles, texts, st.none() | json_payloads), min_size=1, max_size=8))
    def test_export_import_and_replicate(self, rows):
        messages = [ChatMessage(*row) for row in rows]
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            with _store(root / "a") as source:
                source.append_many("k", messages[:-1])
                source.update_last("k", messages[-1]) if len(messages) > 1 else source.append("k", messages[-1])
                expected = source.load("k")
                buffer = io.BytesIO()
                export_events(source, buffer)
                (root / "events.jsonl").write_bytes(buffer.getvalue())
                with _store(root / "b") as replica:
                    replica.replicate(source.events())
                    assert expected == replica.load("k")
                    assert replica.verify().ok
            with _store(root / "c") as imported:
                import_events(imported, root / "events.jsonl")
                assert expected == imported.load("k")
                assert imported.verify().ok

    def test_async_store(self, tmp_path):
        async def run() -> list[ChatMessage]:
            async with AsyncSessionStore(tmp_path / "s", durable=False) as store:
                await store.append("k", ChatMessage("user", "x", AWKWARD))
                return await store.load("k")

        assert [ChatMessage("user", "x", AWKWARD)] == asyncio.run(run())

    def test_cached_messages_cannot_change(self, tmp_path):
        with _store(tmp_path / "s") as store:
            store.append("k", ChatMessage("user", "x", {"a": [1]}))
            store.load("k")[0].payload["a"].append(2)  # type: ignore[index]
            assert {"a": [1]} == store.load("k")[0].payload

    def test_chunks_hold_payloads_only_where_given(self, tmp_path):
        """A chunk carries the payload trailer only while one of its messages has a payload."""
        with SessionStore.on_storage(MemoryStorage(tmp_path / "m")) as store:
            store.append("k", ChatMessage.user("a"))
            with store._read() as txn:
                before = store._messages.dump(txn)
            store.append("k", ChatMessage.user("b", {"x": 1}))
            store.remove_last("k")
            with store._read() as txn:
                assert before == store._messages.dump(txn)

    def test_redaction_blanks_payloads(self, tmp_path):
        with _store(tmp_path / "s", snapshot_every=2) as store:
            store.append_many("k", [ChatMessage.user("secret", {"card": "1234"}), ChatMessage.user("plain")])
            store.redact("k", "gdpr")
            assert [ChatMessage.user("[redacted]", {}), ChatMessage.user("[redacted]")] == store.load("k")
            with store._read() as txn:
                assert not [entry for entry in store._log.read_all(txn) if b"1234" in entry.encoded.payload]
            assert store.verify().ok


class FixedClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


#: The digest of what ``payload_free_workload`` stores (every event's stored form, every message chunk), as the
#: store wrote it before messages had payloads: messages without one are stored byte for byte as then.
PAYLOAD_FREE_DIGEST = "c8ffd192ad5549fe1d260f949f2670a48e1d53b891ef1cdf5260e25ec066194c"


def test_payload_free_sessions_are_stored_as_before(tmp_path):
    with SessionStore(tmp_path / "s", clock=FixedClock(), durable=False) as store:
        for i in range(150):
            store.append("long", ChatMessage("user" if i % 2 else "assistant", f"message {i} " + "é✓" * (i * 7)))
        store.update_last("long", ChatMessage.tool("streamed"))
        store.remove_last("long")
        store.set_session_name("long", "trip")
        store.set_session_state("long", "running", "t1")
        store.restore("long", version=40)
        store.append_many("other", [ChatMessage.system("s"), ChatMessage.user("")])
        store.clear_messages("other")
        store.delete_session("other", reason="done")
        store.append("secret", ChatMessage.user("password 1234"))
        store.redact("secret", "gdpr")
        digest = hashlib.sha256()
        with store._read() as txn:
            for entry in store._log.read_all(txn):
                encoded = entry.encoded
                digest.update(repr((entry.session_key, entry.version, entry.recorded_at, encoded.type_name,
                                    encoded.schema_version, encoded.payload)).encode())
            for key, value in store._messages.dump(txn):
                digest.update(key + value)
    assert PAYLOAD_FREE_DIGEST == digest.hexdigest()


class TestCommandLine:
    def test_show_and_history_show_payloads(self, tmp_path):
        from click.testing import CliRunner

        from eventstore.cli import cli

        path = tmp_path / "s"
        with SessionStore(path) as store:
            store.append_many("k", [ChatMessage.user("plain"), ChatMessage.assistant("call", {"tool": "\ud800x"})])

        def run(*args: str) -> str:
            result = CliRunner().invoke(cli, ["--store", str(path), *args], catch_exceptions=False)
            assert 0 == result.exit_code, result.output
            return result.output

        shown = json.loads(run("show", "k", "--json"))
        assert ["payload" in m for m in shown["messages"]] == [False, True]
        assert {"tool": {"$str": [55296, "x"]}} == shown["messages"][1]["payload"]
        assert "PAYLOAD" in run("show", "k") and '{"tool":' in run("show", "k")
        lines = [json.loads(line) for line in run("history", "k", "--json").splitlines()]
        assert {"tool": {"$str": [55296, "x"]}} == lines[1]["payload"]["message"][2]
        assert '{"tool":' in run("history", "k")


def test_search_does_not_index_payloads(tmp_path):
    with SessionStore(tmp_path / "s", durable=False) as store:
        store.append("k", ChatMessage("user", "visible words", {"hidden": "zanzibar"}))
        assert [] == store.search_messages("zanzibar")
        assert ["k"] == [hit.session_key for hit in store.search_messages("visible")]
