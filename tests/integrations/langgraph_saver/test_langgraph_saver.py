"""``EventStoreSaver`` through the checkpointer API: against a plain in-memory model, and what only an event log
gives (every change an event, deletions and prunes undone by ``restore``), and its errors."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import ormsgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    writes_sort_key,
)
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from pydantic import BaseModel

from eventstore import (
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    SessionExists,
    SessionStore,
    WrongExpectedVersion,
)
from eventstore.events import MessageAppended, SessionForked
from eventstore.integrations import langgraph as langgraph_saver
from eventstore.integrations._langgraph_blobs import _stored_bytes, read_bytes
from eventstore.integrations._langgraph_messages import CHECKPOINT, WRITES, session_key
from eventstore.integrations._langgraph_records import PAYLOADS_KEPT, Records
from eventstore.integrations._langgraph_templates import loads
from eventstore.integrations.langgraph import EventStoreSaver, _advance, _Commit, _Done
from eventstore.storage import MemoryStorage

# Thread ids that a careless key scheme would mix up ("/" and its escape) or fail to store (a lone surrogate).
THREADS = ("a/b", "a%2Fb", "é", "\ud800x")
NAMESPACES = ("", "child:1")
CHANNELS = ("a", "b", "c")
RUNS = ("run-0", "run-1", "run-2")
DROP = "<dropped>"  # an update that takes the channel out of the checkpoint
EXTEND = "<extended>"  # an update (EXTEND, items): the parent's list and these items, stored as a tail


def config(thread_id: str, namespace: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": namespace}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint(checkpoint_id: str, values: dict[str, Any], versions: ChannelVersions) -> Checkpoint:
    return Checkpoint(v=1, id=checkpoint_id, ts="2026-12-03T00:00:00+00:00", channel_values=values,
                      channel_versions=versions, versions_seen={}, updated_channels=None)


# -- the model ---------------------------------------------------------------------------------------------------

@attrs.define
class Stored:
    """What a checkpoint must read back as: its whole values (not only the changed ones), and its writes."""

    values: dict[str, Any]
    versions: ChannelVersions
    metadata: dict[str, Any]
    parent_id: str | None
    writes: dict[tuple[str, int], tuple[str, str, Any]] = attrs.Factory(dict)

    def pending_writes(self) -> list[tuple[str, str, Any]]:
        ordered = sorted(self.writes.items(), key=lambda item: writes_sort_key(item[1][0], *item[0]))
        return [(task, channel, value) for (task, _), (_, channel, value) in ordered]


Model = dict[tuple[str, str], dict[str, Stored]]

values_ = st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                    st.binary(max_size=5), st.lists(st.integers(0, 9), max_size=3), st.none())
puts = st.tuples(st.just("put"), st.sampled_from(THREADS), st.sampled_from(NAMESPACES), st.integers(0, 9) | st.none(),
                 st.dictionaries(st.sampled_from(CHANNELS),
                                 values_ | st.just(DROP) | st.tuples(st.just(EXTEND), st.lists(st.integers(0, 9))),
                                 max_size=3),
                 st.sampled_from(RUNS))
writes_ = st.tuples(st.just("writes"), st.sampled_from(THREADS), st.sampled_from(NAMESPACES), st.integers(0, 9),
                    st.sampled_from(("task-0", "task-1")), st.sampled_from(("", "~1", "~0")),
                    st.lists(st.tuples(st.sampled_from((*CHANNELS, "__error__", "__interrupt__")), values_),
                             max_size=3))
rewrites = st.one_of(
    st.tuples(st.just("delete_thread"), st.sampled_from(THREADS)),
    st.tuples(st.just("prune"), st.lists(st.sampled_from(THREADS), max_size=2),
              st.sampled_from(("keep_latest", "delete"))),
    st.tuples(st.just("delete_for_runs"), st.lists(st.sampled_from(RUNS), max_size=2)),
)
operations = st.lists(st.one_of(puts, puts, writes_, writes_, rewrites), max_size=25)


def apply(saver: EventStoreSaver, model: Model, operation: tuple[Any, ...], serial: int) -> None:
    """Run one operation on the saver and on the model."""
    kind = operation[0]
    if kind == "put":
        _, thread_id, namespace, parent_pick, updates, run = operation
        checkpoints = model.setdefault((thread_id, namespace), {})
        parent_id = None
        if parent_pick is not None and checkpoints:
            parent_id = sorted(checkpoints)[parent_pick % len(checkpoints)]
        parent = checkpoints[parent_id] if parent_id is not None else Stored({}, {}, {}, None)
        values, versions = dict(parent.values), dict(parent.versions)
        new_versions: ChannelVersions = {}
        for channel, value in updates.items():
            if value == DROP:
                values.pop(channel, None)
                versions.pop(channel, None)
            else:
                if isinstance(value, tuple):
                    extended = parent.values.get(channel)
                    value = [*(extended if isinstance(extended, list) else []), *value[1]]
                # The parent's version plus one: a sibling branch writes the same version with another value.
                versions[channel] = new_versions[channel] = int(parent.versions.get(channel, 0)) + 1
                values[channel] = value
        checkpoint_id = f"1ef{serial:05d}"
        metadata: CheckpointMetadata = {"source": "loop", "step": serial, "parents": {}, "run_id": run}
        saver.put(config(thread_id, namespace, parent_id), checkpoint(checkpoint_id, values, versions), metadata,
                  new_versions)
        checkpoints[checkpoint_id] = Stored(values, versions, dict(metadata), parent_id)
    elif kind == "writes":
        _, thread_id, namespace, pick, task, path, writes = operation
        in_namespace = model.get((thread_id, namespace))
        if not in_namespace:
            return
        checkpoint_id = sorted(in_namespace)[pick % len(in_namespace)]
        stored = in_namespace[checkpoint_id]
        saver.put_writes(config(thread_id, namespace, checkpoint_id), writes, task, path)
        for idx, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, idx)
            if idx < 0 or (task, idx) not in stored.writes:
                stored.writes[(task, idx)] = (path, channel, value)
    elif kind == "delete_thread":
        saver.delete_thread(operation[1])
        for namespace in NAMESPACES:
            model.pop((operation[1], namespace), None)
    elif kind == "prune":
        _, thread_ids, strategy = operation
        saver.prune(thread_ids, strategy=strategy)
        for (thread_id, namespace), checkpoints in list(model.items()):
            if thread_id in thread_ids and checkpoints:
                latest = max(checkpoints)
                model[(thread_id, namespace)] = {} if strategy == "delete" else {latest: checkpoints[latest]}
    else:
        saver.delete_for_runs(operation[1])
        for checkpoints in model.values():
            for key in [key for key, stored in checkpoints.items() if stored.metadata["run_id"] in operation[1]]:
                del checkpoints[key]


def read(found: CheckpointTuple | None) -> tuple[Any, ...] | None:
    """What a checkpoint reads as, less its thread and namespace (a copied thread reads the same)."""
    if found is None:
        return None
    parent_id = None if found.parent_config is None else found.parent_config["configurable"]["checkpoint_id"]
    return (found.config["configurable"]["checkpoint_id"], found.checkpoint["channel_values"],
            found.checkpoint["channel_versions"], found.metadata, parent_id, found.pending_writes)


def expected(checkpoint_id: str, stored: Stored) -> tuple[Any, ...]:
    return (checkpoint_id, stored.values, stored.versions, stored.metadata, stored.parent_id,
            stored.pending_writes())


def check(saver: EventStoreSaver, model: Model) -> None:
    for thread_id in THREADS:
        everywhere: list[str] = []
        for namespace in NAMESPACES:
            checkpoints = model.get((thread_id, namespace), {})
            everywhere.extend(checkpoints)
            latest = max(checkpoints, default=None)
            # A saver that has not read the thread reads the latest checkpoint from the session's end.
            assert (None if latest is None else expected(latest, checkpoints[latest])) == read(
                EventStoreSaver(saver.store).get_tuple(config(thread_id, namespace)))
            for checkpoint_id, stored in checkpoints.items():
                assert expected(checkpoint_id, stored) == read(saver.get_tuple(config(thread_id, namespace,
                                                                                      checkpoint_id)))
            assert (None if latest is None else expected(latest, checkpoints[latest])) == read(
                saver.get_tuple(config(thread_id, namespace)))
            listed = [read(found) for found in saver.list(config(thread_id, namespace))]
            assert [expected(key, checkpoints[key]) for key in sorted(checkpoints, reverse=True)] == listed
        assert sorted(everywhere, reverse=True) == [found.checkpoint["id"]
                                                    for found in saver.list({"configurable": {"thread_id": thread_id}})]
    in_run = sorted((key for checkpoints in model.values() for key, stored in checkpoints.items()
                     if stored.metadata["run_id"] == "run-1"), reverse=True)
    assert in_run[:2] == [found.checkpoint["id"] for found in saver.list(None, filter={"run_id": "run-1"}, limit=2)]


@given(operations)
@example([("put", "a/b", "", None, {"a": 1, "b": 2}, "run-0"), ("put", "a/b", "", 0, {"a": 3}, "run-1"),
          ("put", "a/b", "", 0, {"a": 4}, "run-2"), ("put", "a/b", "", 1, {}, "run-0"),
          ("delete_for_runs", ["run-1"]), ("prune", ["a/b"], "keep_latest")])
@example([("put", "é", "", None, {"a": (EXTEND, [1])}, "run-0"), ("put", "é", "", 0, {"a": (EXTEND, [2])}, "run-1"),
          ("put", "é", "", 1, {"a": (EXTEND, [3]), "b": 1}, "run-0"),
          ("put", "é", "", 0, {"a": (EXTEND, [4])}, "run-2"),  # a sibling of the second: its version, another list
          ("put", "é", "", 2, {"b": 2}, "run-2"),  # reads "a" from the third, a tail on the second
          ("delete_for_runs", ["run-1"]), ("prune", ["é"], "keep_latest")])
def test_the_saver_reads_back_what_the_model_holds(operations: list[tuple[Any, ...]]):
    """Sibling branches write equal versions; rewrites drop the checkpoints that survivors read values (or the
    bases of their lists' tails) from."""
    # Reads from a session's end start with its last message: most of them must read further back.
    with SessionStore.on_storage(MemoryStorage(Path("model"))) as store, \
            mock.patch.object(langgraph_saver, "LAST_MESSAGES_READ", 1):
        saver, model = EventStoreSaver(store), Model()
        for serial, operation in enumerate(operations):
            apply(saver, model, operation, serial)
        check(saver, model)
        assert store.verify().ok


# -- what an event log adds --------------------------------------------------------------------------------------

def put_three(saver: EventStoreSaver, thread_id: str = "t") -> list[RunnableConfig]:
    """Three checkpoints in a row: the last reads "a" from the second and "b" from the first."""
    first = saver.put(config(thread_id, ""), checkpoint("1ef1", {"a": 1, "b": 1}, {"a": 1, "b": 1}),
                      {"source": "input", "step": -1, "run_id": "r1"}, {"a": 1, "b": 1})
    second = saver.put(first, checkpoint("1ef2", {"a": 2, "b": 1}, {"a": 2, "b": 1}),
                       {"source": "loop", "step": 0, "run_id": "r1"}, {"a": 2})
    third = saver.put(second, checkpoint("1ef3", {"a": 2, "b": 1}, {"a": 2, "b": 1}),
                      {"source": "loop", "step": 1, "run_id": "r2"}, {})
    return [first, second, third]


class TestEvents:
    def test_each_put_and_put_writes_is_one_event_with_its_metadata(self, saver: EventStoreSaver,
                                                                     store: SessionStore):
        _, _, third = put_three(saver)
        saver.put_writes(third, [("a", 5)], "task-1")
        [key] = store.list_sessions()
        events = [recorded.event for recorded in store.history(key)]
        assert all(isinstance(event, MessageAppended) for event in events)
        assert ["checkpoint", "checkpoint", "checkpoint", "writes"] == [event.message.role for event in events]
        assert {"metadata": {"source": "loop", "step": 1, "run_id": "r2"}}.items() <= (
            events[2].message.payload or {}).items()
        assert store.verify().ok

    def test_a_deleted_thread_comes_back_with_restore(self, saver: EventStoreSaver, store: SessionStore):
        put_three(saver)
        before = read(saver.get_tuple(config("t", "")))
        [key] = store.list_sessions()
        saver.delete_thread("t")
        assert saver.get_tuple(config("t", "")) is None
        store.restore(key, version=len(store.history(key)) - 1)
        assert before == read(saver.get_tuple(config("t", "")))

    def test_a_pruned_thread_reads_as_before_and_keeps_its_history(self, saver: EventStoreSaver,
                                                                    store: SessionStore):
        put_three(saver)
        before = read(saver.get_tuple(config("t", "")))
        saver.prune(["t"])
        assert ["1ef3"] == [found.checkpoint["id"] for found in saver.list(config("t", ""))]
        assert before == read(saver.get_tuple(config("t", "")))
        [key] = store.list_sessions()
        store.restore(key, version=3)
        assert ["1ef3", "1ef2", "1ef1"] == [found.checkpoint["id"] for found in saver.list(config("t", ""))]

    def test_deleting_a_run_keeps_what_later_runs_read_from_it(self, saver: EventStoreSaver):
        put_three(saver)
        saver.delete_for_runs(["r1"])
        assert [("1ef3", {"a": 2, "b": 1})] == [(found.checkpoint["id"], found.checkpoint["channel_values"])
                                                for found in saver.list(config("t", ""))]

    def test_a_copied_thread_is_a_fork_of_each_namespace(self, saver: EventStoreSaver, store: SessionStore):
        put_three(saver)
        saver.put(config("t", "child:1"), checkpoint("1ef9", {"c": 1}, {"c": 1}), {"step": 0}, {"c": 1})
        saver.copy_thread("t", "copy")
        for namespace in NAMESPACES:
            assert [read(found) for found in saver.list(config("t", namespace))] == [
                read(found) for found in saver.list(config("copy", namespace))]
        assert 4 == len(store.list_sessions())
        [fork] = [recorded.event for recorded in store.history("langgraph/copy/")]
        assert isinstance(fork, SessionForked)
        assert ("langgraph/t/", 3) == (fork.source_key, fork.source_version)

    def test_a_namespace_of_none_lists_every_namespace(self, saver: EventStoreSaver):
        """As ``InMemorySaver``: no namespace, or ``None``, means all of the thread's."""
        put_three(saver)
        saver.put(config("t", "child:1"), checkpoint("1ef9", {"c": 1}, {"c": 1}), {"step": 0}, {"c": 1})
        listed = [found.checkpoint["id"] for found in saver.list({"configurable": {"thread_id": "t",
                                                                                   "checkpoint_ns": None}})]
        assert ["1ef9", "1ef3", "1ef2", "1ef1"] == listed

    def test_an_empty_config_lists_every_thread(self, saver: EventStoreSaver):
        """As ``InMemorySaver``: an empty config is no config."""
        put_three(saver)
        put_three(saver, "other")
        assert [found.config for found in saver.list(None)] == [found.config for found in saver.list({})]
        assert 6 == len(list(saver.list({})))

    def test_copying_onto_a_thread_with_checkpoints_is_refused(self, saver: EventStoreSaver):
        put_three(saver)
        put_three(saver, "other")
        with pytest.raises(SessionExists):
            saver.copy_thread("t", "other")
        assert ["1ef3", "1ef2", "1ef1"] == [found.checkpoint["id"] for found in saver.list(config("other", ""))]


class TestErrors:
    def test_a_config_without_a_thread_id(self, saver: EventStoreSaver):
        with pytest.raises(InvalidArgument, match="thread_id"):
            saver.get_tuple({"configurable": {}})
        with pytest.raises(InvalidArgument, match="thread_id"):
            list(saver.list({"tags": ["a config without configurable"]}))

    def test_an_unknown_prune_strategy(self, saver: EventStoreSaver):
        with pytest.raises(InvalidArgument, match="strategy"):
            saver.prune(["t"], strategy="keep_some")

    def test_not_a_store(self):
        with pytest.raises(InvalidArgument, match="SessionStore"):
            EventStoreSaver("./store")  # type: ignore[arg-type]

    def test_the_sync_methods_on_an_async_store(self, store_path: Path):
        async_store = AsyncSessionStore(store_path, durable=False)
        try:
            with pytest.raises(InvalidArgument, match="async methods"):
                EventStoreSaver(async_store).get_tuple(config("t", ""))
        finally:
            asyncio.run(async_store.close())


class TestRaces:
    def test_a_rewrite_that_another_writer_overtook_reads_again(self, saver: EventStoreSaver, store: SessionStore):
        """A checkpoint put between the rewrite's read and its commit survives: the commit fails on its expected
        version, and the rewrite starts again from a fresh read."""
        put_three(saver)
        operation = saver._delete_for_runs(["r1"])
        commits = 0
        step = _advance(operation, None, None)
        while not isinstance(step, _Done):
            if isinstance(step, _Commit):
                commits += 1
                if commits == 1:
                    saver.put(config("t", "", "1ef3"), checkpoint("1ef4", {"a": 2, "b": 1}, {"a": 2, "b": 1}),
                              {"run_id": "r3"}, {})
            try:
                answer = saver._serve(store, step)
            except WrongExpectedVersion as exc:
                step = _advance(operation, None, exc)
            else:
                step = _advance(operation, answer, None)
        assert 2 == commits
        assert [("1ef4", {"a": 2, "b": 1}), ("1ef3", {"a": 2, "b": 1})] == [
            (found.checkpoint["id"], found.checkpoint["channel_values"]) for found in saver.list(config("t", ""))]


def test_what_a_read_returns_is_the_callers_to_change(saver: EventStoreSaver):
    """The saver keeps what it read of a session; changing a returned checkpoint changes nothing it reads later."""
    _, _, third = put_three(saver)
    saver.put_writes(third, [("a", [5])], "task-1")
    for found in (saver.get_tuple(third), *saver.list(config("t", ""))):
        assert found is not None
        found.metadata["step"] = 99
        found.checkpoint["channel_values"]["a"] = "changed"
        for _, _, value in found.pending_writes or ():
            value.append("changed")
    assert [("1ef3", 1, 2, [("task-1", "a", [5])]), ("1ef2", 0, 2, []), ("1ef1", -1, 1, [])] == [
        (found.checkpoint["id"], found.metadata["step"], found.checkpoint["channel_values"]["a"],
         found.pending_writes) for found in (saver.get_tuple(third), *list(saver.list(config("t", "")))[1:]) if found]


def test_messages_read_again_are_the_callers_to_change(saver: EventStoreSaver):
    """A message read a second time is copied from a template of it: what a caller changes in the messages of one
    read, in place, reaches no later read (of the checkpoint, its writes or a list)."""
    chat = [HumanMessage("hi", id="h1", additional_kwargs={"tags": ["a"]}),
            AIMessage([{"type": "text", "text": "hello"}], id="a1",
                      tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])]
    first = saver.put(config("t", ""), checkpoint("1ef1", {"messages": chat}, {"messages": 1}), {"step": 0},
                      {"messages": 1})
    saver.put_writes(first, [("messages", [AIMessage("late", id="a2", response_metadata={"n": [1]})])], "task-1")

    def reads() -> list[Any]:
        found = saver.get_tuple(first)
        listed = list(saver.list(config("t", "")))
        assert found is not None and found.pending_writes is not None and len(listed) == 1
        return [*found.checkpoint["channel_values"]["messages"], *found.pending_writes[0][2],
                *listed[0].checkpoint["channel_values"]["messages"]]

    expected = [*chat, AIMessage("late", id="a2", response_metadata={"n": [1]}), *chat]
    for _ in range(3):  # made, made again and kept as templates, copied
        read = reads()
        assert expected == read
        human, ai, late, *_ = read
        human.additional_kwargs["tags"].append("changed")
        human.content = "changed"
        ai.content[0]["text"] = "changed"
        ai.tool_calls[0]["args"]["q"] = "changed"
        late.response_metadata["n"].clear()
    assert expected == reads()
    assert sum(template is not None for template in saver._templates._seen.values()) == 3  # the copies were read


def test_a_long_threads_records_keep_a_bounded_number_of_decoded_payloads(saver: EventStoreSaver):
    parent = config("t", "")
    for step in range(PAYLOADS_KEPT + 6):
        parent = saver.put(parent, checkpoint(f"1ef{step:03d}", {"a": step}, {"a": step + 1}), {"step": step},
                           {"a": step + 1})
    listed = list(saver.list(config("t", "")))
    assert list(range(PAYLOADS_KEPT + 5, -1, -1)) == [found.checkpoint["channel_values"]["a"] for found in listed]
    assert 0 < len(saver._records[session_key("t", "")]._payloads) <= PAYLOADS_KEPT


@given(st.binary(max_size=64))
@example(b"\x00\x01\x02\x1f\x00\x00")  # control characters: six bytes each as JSON text, base64 is shorter
@example('\x94\xa5hello\xa7content "quoted" é'.encode())  # a serializer's msgpack: mostly text
def test_a_blob_keeps_bytes_as_text_when_no_longer_than_base64(data: bytes):
    stored = _stored_bytes(data)
    assert data == read_bytes(stored)
    assert len(json.dumps(stored[0], ensure_ascii=False).encode()) <= len(base64.b64encode(data)) + 2
    if b"hello" in data:
        assert "latin-1" == stored[-1]
    elif data.startswith(b"\x00\x01"):
        assert [base64.b64encode(data).decode()] == stored


class Answer(BaseModel):
    """A pydantic model of the caller's (not one of LangGraph's safe types)."""

    text: str


def mixed_values() -> list[Any]:
    return [HumanMessage("hi", id="q1", additional_kwargs={"at": datetime.datetime(2026, 12, 4)}),
            AIMessage([{"type": "text", "text": "hello"}], id="a1", response_metadata={"model": "m"},
                      tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}]),
            ToolMessage("found", tool_call_id="c1"), SystemMessage("be brief"), RemoveMessage(id="q1"),
            Answer(text="yes"), {"plain": [1, 2.5, None, "text"]}, uuid.UUID(int=7)]


def test_a_list_decodes_to_what_the_serializer_makes_of_it():
    """The saver makes LangGraph's safe types itself (``loads``): the same objects, of the same classes, as the
    serializer's ``loads_typed``; others (a caller's model) and what fails (fields a message's class rejects,
    which the serializer then makes without validation) are the serializer's own."""
    serde = JsonPlusSerializer(allowed_msgpack_modules=[(Answer.__module__, "Answer")])
    kind, data = serde.dumps_typed(mixed_values())
    rejected = ormsgpack.packb([ormsgpack.Ext(EXT_PYDANTIC_V2, ormsgpack.packb(
        ["langchain_core.messages.human", "HumanMessage", {"content": 5}]))])
    for blob in (data, rejected):
        theirs, ours = serde.loads_typed((kind, blob)), loads(serde, kind, blob)
        assert [type(value) for value in theirs] == [type(value) for value in ours]
        assert [vars(value) if hasattr(value, "__dict__") else value for value in theirs] == [
            vars(value) if hasattr(value, "__dict__") else value for value in ours]
    assert mixed_values() == loads(serde, kind, data)
    assert 5 == loads(serde, kind, rejected)[0].content


def test_a_hook_the_caller_gave_the_serializer_decodes_every_object():
    made: list[int] = []

    def hook(code: int, data: bytes) -> Any:
        made.append(code)
        return JsonPlusSerializer()._unpack_ext_hook(code, data)

    serde = JsonPlusSerializer(__unpack_ext_hook__=hook)
    kind, data = serde.dumps_typed([HumanMessage("hi", id="q1"), AIMessage("hello", id="a1")])
    assert [HumanMessage("hi", id="q1"), AIMessage("hello", id="a1")] == loads(serde, kind, data)
    assert [EXT_PYDANTIC_V2, EXT_PYDANTIC_V2] == made


class CountingSerializer(JsonPlusSerializer):
    """LangGraph's serializer, noting the length of each list it serializes."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: list[int] = []

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if type(obj) is list:
            self.lists.append(len(obj))
        return super().dumps_typed(obj)


class TestSerializedOnce:
    """A list that extends the one the saver last returned or put (the same item objects, as LangGraph's reducers
    hand them on) has only its new items serialized; anything else is serialized whole, as before."""

    @staticmethod
    def chat(count: int, prefix: str = "m") -> list[BaseMessage]:
        return [HumanMessage(f"{prefix}{index}", id=f"{prefix}{index}") for index in range(count)]

    def put_chat(self, saver: EventStoreSaver, parent: RunnableConfig, checkpoint_id: str, messages: list[Any],
                 version: int) -> RunnableConfig:
        return saver.put(parent, checkpoint(checkpoint_id, {"m": messages}, {"m": version}), {"step": version},
                         {"m": version})

    def latest_messages(self, saver: EventStoreSaver, checkpoint_id: str | None = None) -> list[Any]:
        found = saver.get_tuple(config("t", "", checkpoint_id))
        assert found is not None
        messages: list[Any] = found.checkpoint["channel_values"]["m"]
        return messages

    def test_a_put_after_a_load_serializes_the_added_items_only(self, store: SessionStore):
        serde = CountingSerializer()
        saver = EventStoreSaver(store, serde=serde)
        first = self.put_chat(saver, config("t", ""), "1ef1", self.chat(50), 1)
        extended = [*self.latest_messages(saver), HumanMessage("new", id="new")]
        serde.lists.clear()
        second = self.put_chat(saver, first, "1ef2", extended, 2)
        assert [1] == serde.lists
        again = [*extended, HumanMessage("newer", id="newer")]  # from the put's own objects, no load between
        self.put_chat(saver, second, "1ef3", again, 3)
        assert [1, 1] == serde.lists
        assert again == self.latest_messages(EventStoreSaver(store))
        assert extended == self.latest_messages(EventStoreSaver(store), "1ef2")

    def test_a_replaced_item_or_another_base_serializes_the_whole_list(self, store: SessionStore):
        serde = CountingSerializer()
        saver = EventStoreSaver(store, serde=serde)
        first = self.put_chat(saver, config("t", ""), "1ef1", self.chat(3), 1)
        second = self.put_chat(saver, first, "1ef2", [*self.latest_messages(saver), *self.chat(1, "x")], 2)
        loaded = self.latest_messages(saver)
        serde.lists.clear()
        # An item replaced by an equal-looking new object with other content: not the objects last returned.
        changed = [HumanMessage("changed", id="m0"), *loaded[1:], *self.chat(1, "y")]
        self.put_chat(saver, second, "1ef3", changed, 3)
        # A branch from the first checkpoint with the latest list's objects: its base is the first's list.
        branch = [*loaded, *self.chat(1, "z")]
        self.put_chat(saver, first, "1ef4", branch, 2)
        assert [5, 5] == serde.lists
        fresh = EventStoreSaver(store)
        assert changed == self.latest_messages(fresh, "1ef3")
        assert branch == self.latest_messages(fresh, "1ef4")
        assert [*self.chat(3), *self.chat(1, "x")] == self.latest_messages(fresh, "1ef2")


def saver_message(kind: str) -> ChatMessage:
    """A checkpoint ("c" and its id), writes ("w" and the id of their checkpoint), or another role's message."""
    if kind == "other":
        return ChatMessage("user", "not the saver's")
    return ChatMessage(CHECKPOINT if kind[0] == "c" else WRITES, f'{{"checkpoint":"{kind[1:]}"}}', {})


kinds = st.lists(st.sampled_from(("c1", "c2", "w1", "w2", "other")), max_size=10)


@given(kinds, kinds, st.integers(0, 10))
@example(["c1", "w1", "w1"], [], 2)
@example(["c1", "c2", "w2"], ["c1"], 2)  # the earlier records share the first message only
def test_records_read_on_from_earlier_records_as_afresh(kinds: list[str], others: list[str], kept: int):
    """Earlier records of the session's first messages (the same objects) are extended; of others (wholly, or
    after a shared start), ignored."""
    messages = [saver_message(kind) for kind in kinds]
    for earlier in (Records.of(messages[:kept]), Records.of([saver_message(kind) for kind in others]),
                    Records.of(messages[:kept // 2] + [saver_message(kind) for kind in others])):
        assert Records.of(messages) == Records.of(messages, earlier)
