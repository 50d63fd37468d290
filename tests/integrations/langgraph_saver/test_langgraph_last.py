"""A saver that has not read a thread reads its latest checkpoint from the session's last messages: only as many as
it needs, and the same checkpoint, values and pending writes as a read of the whole thread, whatever the order in
which concurrent puts and writes (early ones too) landed."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import attrs
from hypothesis import example, given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from eventstore import ChatMessage, SessionStore
from eventstore.integrations import langgraph as langgraph_saver
from eventstore.integrations._langgraph_messages import header, session_key
from eventstore.integrations._langgraph_records import Records, Unreached
from eventstore.integrations.langgraph import EventStoreSaver, Operation, _advance, _Await, _Done, _Request
from eventstore.storage import MemoryStorage

from .test_langgraph_saver import checkpoint, config, read

THREAD = config("t", "")


class _CountedLoads(SessionStore):
    """A store that counts the messages a read of the last ones returned, and refuses whole loads."""

    whole_loads_allowed = True
    last_read: list[int]

    def load(self, key: str, *args: Any) -> list[ChatMessage]:
        assert self.whole_loads_allowed, "a read of the latest checkpoint loaded the whole thread"
        return super().load(key, *args)

    def load_last(self, key: str, count: int) -> list[ChatMessage]:
        found = super().load_last(key, count)
        self.last_read.append(len(found))
        return found


def reply(state: MessagesState) -> dict[str, list[AIMessage]]:
    return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}


def replying_graph() -> StateGraph[MessagesState]:
    """A graph whose one node answers every question."""
    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder


def test_a_long_chat_reopened_reads_its_latest_state_from_the_end(tmp_path: Path) -> None:
    """After 60 turns (180 checkpoints, 300 messages in the session), a fresh saver's ``get_state`` equals the
    warm one's, reading a small part of the thread; the next turn then goes on from it."""
    builder = replying_graph()
    store = _CountedLoads(tmp_path / "store", durable=False)
    with store:
        store.last_read = []
        graph = builder.compile(checkpointer=EventStoreSaver(store))
        for turn in range(60):
            graph.invoke({"messages": [HumanMessage(f"question {turn}")]}, THREAD)
        warm = graph.get_state(THREAD)
        store.whole_loads_allowed, store.last_read = False, []
        fresh = builder.compile(checkpointer=EventStoreSaver(store)).get_state(THREAD)
        assert (fresh.values, fresh.config, fresh.parent_config, fresh.metadata, fresh.tasks) == \
            (warm.values, warm.config, warm.parent_config, warm.metadata, warm.tasks)
        held = store.get_session_metadata(session_key("t", ""))
        assert held is not None and held.message_count == 300
        assert sum(store.last_read) < held.message_count / 2, store.last_read
        store.whole_loads_allowed = True
        graph = builder.compile(checkpointer=EventStoreSaver(store))
        graph.invoke({"messages": [HumanMessage("one more")]}, THREAD)
        assert len(graph.get_state(THREAD).values["messages"]) == 122


# -- concurrent savers, interleaved --------------------------------------------------------------------------------

@attrs.define
class Pending:
    """An operation under way: the request it waits on the answer to."""

    operation: Operation[Any]
    step: _Request | _Done[Any]


def serve(saver: EventStoreSaver, pending: Pending) -> bool:
    """Answer the operation's request; ``False`` when it waits on a put that has not committed."""
    step = pending.step
    assert not isinstance(step, _Done)
    if isinstance(step, _Await) and not step.done.is_set():
        return False
    store = saver.store
    assert isinstance(store, SessionStore)
    pending.step = _advance(pending.operation, saver._serve(store, step), None)
    return True


# (which saver, "put" and a parent pick, or "writes" and the checkpoint pick (a pick past the end: the next put's
# id, so the writes come before their checkpoint), and how many steps of the operations under way to serve.
steps = st.lists(st.tuples(st.integers(0, 1), st.sampled_from(("put", "writes")), st.integers(0, 12),
                           st.integers(0, 3)), max_size=24)


@given(steps, st.permutations(range(30)))
# Saver 0's writes at the first checkpoint land before saver 1 puts it, which cannot name their token: saver 0
# puts it instead (as LangGraph does).
@example([(0, "writes", 0, 0), (1, "put", 0, 0), (0, "put", 0, 0)], [1, 0, *range(2, 30)])
@example([(0, "writes", 12, 0), (0, "put", 0, 0), (0, "put", 0, 0), (0, "put", 0, 3)], list(range(30)))
@example([(0, "put", 0, 1), (1, "put", 0, 0), (0, "put", 0, 0), (1, "put", 0, 3)], list(range(29, -1, -1)))
# Early writes at the first checkpoint land before it, and writes by the other saver (which marks them early too)
# land last: only the tokens the checkpoint names count, not any early writes at it.
@example([(0, "put", 0, 0), (0, "writes", 0, 0), *[(0, "put", 0, 0)] * 13, (0, "put", 0, 2), (1, "writes", 0, 0)],
         [14, *range(1, 14), 0, *range(15, 30)])
def test_the_latest_checkpoint_from_the_end_is_the_whole_threads(steps: list[tuple[int, str, int, int]],
                                                                   ids: list[int]) -> None:
    """Two savers (as two processes) put checkpoints whose ids do not follow the order of their puts, and writes
    (some at the checkpoint one of them puts next); their operations' steps interleave. A third saver's read of
    the latest checkpoint, starting from the last message, equals the whole thread's.

    Writes at a checkpoint not put yet come from the saver that puts it, as in LangGraph, where a run's writes
    and checkpoints go through one saver (docs/integrations-langgraph.md, "Early writes are tracked per saver")."""
    with SessionStore.on_storage(MemoryStorage(Path("last"))) as store, \
            mock.patch.object(langgraph_saver, "LAST_MESSAGES_READ", 1):
        savers = [EventStoreSaver(store), EventStoreSaver(store)]
        under_way: list[tuple[EventStoreSaver, Pending]] = []
        put_ids: list[str] = []
        lists: dict[str | None, list[int]] = {None: []}
        next_put_by: int | None = None  # the saver whose writes came before the next checkpoint: it puts it
        for serial, (which, kind, pick, served) in enumerate(steps):
            if kind == "put" or pick >= len(put_ids):
                which = next_put_by = which if next_put_by is None else next_put_by
            saver = savers[which]
            operation: Operation[Any]
            if kind == "put":
                next_put_by = None
                checkpoint_id = f"{ids[len(put_ids)]:03d}"
                parent = None if not put_ids else put_ids[pick % len(put_ids)]
                lists[checkpoint_id] = [*lists[parent], serial]  # the parent's list extended: a tail
                operation = saver._put(config("t", "", parent), checkpoint(
                    checkpoint_id, {"m": lists[checkpoint_id]}, {"m": serial + 1}), {"step": serial}, {"m": serial + 1})
                put_ids.append(checkpoint_id)
            else:
                target = put_ids[pick] if pick < len(put_ids) else f"{ids[len(put_ids)]:03d}"
                operation = saver._put_writes(config("t", "", target), [("m", serial)], f"task-{serial}", "")
            under_way.append((saver, Pending(operation, _advance(operation, None, None))))
            for step in range(served):  # from the pick's operation on: any of them may go first
                for at in range(len(under_way)):
                    owner, pending = under_way[(pick + step + at) % len(under_way)]
                    if serve(owner, pending):
                        break
                under_way = [(owner, pending) for owner, pending in under_way if not isinstance(pending.step, _Done)]
        while under_way:
            assert any(serve(owner, pending) for owner, pending in under_way)
            under_way = [(owner, pending) for owner, pending in under_way if not isinstance(pending.step, _Done)]
        whole = Records.of(store.load(session_key("t", "")))
        latest = whole.latest()
        assert latest == max(put_ids, default=None)
        expected = None if latest is None else whole.checkpoint_tuple(savers[0].serde, latest, "t", "")
        assert read(expected) == read(EventStoreSaver(store).get_tuple(THREAD))


def test_a_list_stored_as_tails_reads_back_to_its_base(tmp_path: Path) -> None:
    """A list's base lies tens of messages back (a put stores its whole list every 33rd time): the read goes back
    to it, and the latest checkpoint's writes come with it."""
    with SessionStore.on_storage(MemoryStorage(tmp_path)) as store, \
            mock.patch.object(langgraph_saver, "LAST_MESSAGES_READ", 1):
        saver = EventStoreSaver(store)
        parent = None
        items: list[int] = []
        for serial in range(40):
            items = [*items, serial]
            version = serial + 1
            saver.put(config("t", "", parent), checkpoint(f"{serial:03d}", {"m": items}, {"m": version}),
                      {"step": serial}, {"m": version})
            parent = f"{serial:03d}"
            saver.put_writes(config("t", "", parent), [("x", serial)], "task", "")
        found = EventStoreSaver(store).get_tuple(THREAD)
        assert found is not None
        assert (found.checkpoint["channel_values"]["m"], found.pending_writes) == (items, [("task", "x", 39)])


def test_writes_are_early_only_at_a_checkpoint_the_saver_has_neither_put_nor_read(tmp_path: Path) -> None:
    """Writes at a checkpoint the saver put, or read (latest or by id), carry no token; at another, one."""
    with SessionStore.on_storage(MemoryStorage(tmp_path)) as store:
        putter = EventStoreSaver(store)
        for serial, parent in enumerate((None, "000")):
            versions: dict[str, str | int | float] = {"a": serial + 1}
            putter.put(config("t", "", parent), checkpoint(f"{serial:03d}", {"a": serial}, versions), {}, versions)
        by_id, by_latest, stranger = EventStoreSaver(store), EventStoreSaver(store), EventStoreSaver(store)
        assert by_id.get_tuple(config("t", "", "000")) is not None
        assert by_latest.get_tuple(THREAD) is not None
        for saver, checkpoint_id in ((putter, "001"), (by_id, "000"), (by_latest, "001"), (stranger, "000")):
            saver.put_writes(config("t", "", checkpoint_id), [("a", 1)], "task", "")
        headers = [header(message.role, message.content) for message in store.load(session_key("t", ""))[2:]]
        assert [head is not None and bool(head.early) for head in headers] == [False, False, False, True]


# -- how many messages a read from the end reads -------------------------------------------------------------------

def _fewest_needed(store: SessionStore, saver: EventStoreSaver) -> int:
    """The fewest of the thread's last messages from which its latest checkpoint reads whole."""
    key = session_key("t", "")
    for count in range(1, 10_000):
        messages = store.load_last(key, count)
        records = Records.of(messages) if len(messages) < count else Records.last(messages)
        try:
            latest = records.latest()
            assert latest is not None
            records.read(saver.serde, latest, "t", "")
            return count
        except Unreached:
            continue
    raise AssertionError("the whole thread does not read")


def test_a_read_from_the_end_reads_what_the_checkpoint_needs_at_its_second_read(tmp_path: Path) -> None:
    """At each state of a chat (its list stored whole every 32 tails, so its base lies up to 80 messages back), a
    fresh saver reads its first few messages, then, when they fall short, the count its last checkpoint's header
    names (``Header.back``) with a little slack: never more than the fewest that reach what it needs and that
    slack, rather than twice as many each time; and reads the same state as the warm saver."""
    builder = replying_graph()
    store = _CountedLoads(tmp_path / "store", durable=False)
    with store:
        store.last_read = []
        graph = builder.compile(checkpointer=EventStoreSaver(store))
        further = 0
        for turn in range(40):
            graph.invoke({"messages": [HumanMessage(f"question {turn}")]}, THREAD)
            warm = graph.get_state(THREAD)
            needed = _fewest_needed(store, EventStoreSaver(store))
            store.last_read = []
            fresh = builder.compile(checkpointer=EventStoreSaver(store)).get_state(THREAD)
            assert (fresh.values, fresh.config, fresh.metadata) == (warm.values, warm.config, warm.metadata)
            first = langgraph_saver.LAST_MESSAGES_READ
            assert store.last_read[0] == min(first, store.get_session_metadata(session_key("t", "")).message_count)
            slack = langgraph_saver.LAST_MESSAGES_SLACK
            assert len(store.last_read) <= 2 and store.last_read[-1] <= max(first, needed + slack), \
                (turn, needed, store.last_read)
            further += needed > first
        assert further > 10  # the second read was exercised


def test_a_wrong_hint_of_how_far_back_a_read_needs_still_reads_the_latest_checkpoint(tmp_path: Path) -> None:
    """``Header.back`` is a hint: a count that falls short (a damaged header, messages appended between a put's
    read and its append) or goes past the session's start still reads the same state, by doubling from there."""
    builder = replying_graph()
    with SessionStore(tmp_path / "store", durable=False) as store:
        graph = builder.compile(checkpointer=EventStoreSaver(store))
        for turn in range(14):
            graph.invoke({"messages": [HumanMessage(f"question {turn}")]}, THREAD)
        warm = graph.get_state(THREAD)
        for wanted in (1, 17, 10_000):
            with mock.patch.object(Records, "wanted", lambda self, wanted=wanted: wanted):
                fresh = builder.compile(checkpointer=EventStoreSaver(store)).get_state(THREAD)
            assert (fresh.values, fresh.config, fresh.metadata) == (warm.values, warm.config, warm.metadata)


def test_a_header_keeps_a_hint_of_how_far_back_only_when_it_is_a_count() -> None:
    base = '{"checkpoint":"1","parent":"0","stored":{},"latest":"1","seen":"0"'
    assert header("checkpoint", base + ',"back":7}').back == 7
    for damaged in ('"7"', '-1', '1.5', 'null', '[7]'):
        assert header("checkpoint", base + f',"back":{damaged}}}').back is None
    assert header("checkpoint", base + '}').back is None
