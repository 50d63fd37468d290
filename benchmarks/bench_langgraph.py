"""LangGraph's checkpointer on the store against LangGraph's own durable one, ``SqliteSaver``.

Run: python -m benchmarks.bench_langgraph [--quick] [--dir DIR] [--put-parts]

Both savers hold the same chat thread: a graph of one node that answers each user message (a fake model, no
network), run until the thread's state holds 200 messages (100 turns, 300 checkpoints). Then, taking turns call
by call, it times what a turn asks of the checkpointer:

* load: ``get_tuple`` of the thread's latest checkpoint (the state of 200 messages), the store and the saver
  opened before; and the same on a freshly opened store or connection (the open not timed);
* put: ``put`` of the next checkpoint (201 messages) after the latest;
* turn: a whole ``graph.invoke`` of one more turn (a load, three puts, the writes of two tasks);
* list: ``list`` of the thread's ten latest checkpoints (``get_state_history``'s first page).

Durable as each is by default: ``SqliteSaver`` on a connection set up as ``from_conn_string`` does (WAL,
``synchronous=FULL``: one flush per commit), ours ``SessionStore(path)`` (``Durability.FULL``: two flushes per
commit, LMDB's data then its meta page) and, as a third peer, ``Durability.NORMAL`` (one flush). It prints each
call's median and p99 with the ratio SQLite/peer (above 1: the peer is faster), and the median process CPU time
of the call (LangGraph's background threads included), with the same ratio.

With ``--put-parts`` it prints instead where a put's CPU time goes with no flush at all (``Durability.OFF``): the
read of the thread (cached after the first), the parent's list found for the tail, the message made (the list's
added items serialized: its other items are the objects the saver returned, their part of the new list's
fingerprint checked unchanged; the fingerprint is timed apart too), and the store's append; and, for comparison,
LangGraph's serializer making the whole new list's bytes, which ``SqliteSaver``'s put pays, and ``SqliteSaver``'s
whole put with no flush either (``synchronous=OFF``), on a thread of its own built alongside, the two puts taking
turns: what a put costs at equal durability, the disk left out.

A last row is the floor of a durable put: the bytes each peer's puts passed to write calls (median), as random
4 KB pages written and flushed by ``bench_core``'s probe, with no database: LMDB's protocol (the pages, one
``fdatasync``, then the meta page through ``O_DSYNC``) for ours at FULL, the pages and one ``fdatasync`` for ours
at NORMAL and for SQLite's WAL. A put slower than SQLite's by no more than its floor is slower by the disk.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint, get_checkpoint_metadata
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from eventstore import Durability, SessionStore
from eventstore.integrations._langgraph_fingerprint import Fingerprint
from eventstore.integrations._langgraph_messages import checkpoint_message, list_channels
from eventstore.integrations.langgraph import EventStoreSaver

from .bench_core import written_bytes
from .flush_floor import FlushProbe

THREAD: RunnableConfig = {"configurable": {"thread_id": "chat-1", "checkpoint_ns": ""}}
WORDS = "the quick brown fox jumps over the lazy dog while the model answers every question it is asked".split()


def reply(state: MessagesState) -> dict[str, list[AIMessage]]:
    """The fake model: answers the last message with its words reversed."""
    return {"messages": [AIMessage(" ".join(reversed(str(state["messages"][-1].content).split())))]}


def chat_graph(checkpointer: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=checkpointer)


def user_message(turn: int) -> dict[str, list[HumanMessage]]:
    return {"messages": [HumanMessage(f"question {turn}: " + " ".join(WORDS[(turn + i) % len(WORDS)]
                                                                       for i in range(16)))]}


class Peer:
    """One saver under test, reopened on demand."""

    def __init__(self, name: str, open_saver: Callable[[], tuple[BaseCheckpointSaver[Any], Callable[[], None]]]):
        self.name = name
        self._open = open_saver
        self.saver, self._close = open_saver()
        self.graph = chat_graph(self.saver)
        self.turns = 0

    def reopen(self) -> None:
        self._close()
        self.saver, self._close = self._open()
        self.graph = chat_graph(self.saver)

    def turn(self) -> None:
        self.graph.invoke(user_message(self.turns), THREAD)
        self.turns += 1

    def next_put(self) -> tuple[Any, ...]:
        """The arguments of a ``put`` of the next checkpoint: the latest one's messages and one more."""
        latest = self.saver.get_tuple(THREAD)
        assert latest is not None
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": [*latest.checkpoint["channel_values"]["messages"],
                                                     *user_message(self.turns)["messages"]]}
        checkpoint["channel_versions"] = {"messages": self.saver.get_next_version(
            latest.checkpoint["channel_versions"]["messages"], None)}
        return latest.config, checkpoint, {"source": "update", "step": self.turns}, checkpoint["channel_versions"]

    def close(self) -> None:
        self._close()


def ours(path: Path, durable: Durability) -> tuple[BaseCheckpointSaver[Any], Callable[[], None]]:
    store = SessionStore(path, durable=durable)
    return EventStoreSaver(store), store.close


def sqlite(path: Path, synchronous: str = "FULL") -> tuple[BaseCheckpointSaver[Any], Callable[[], None]]:
    connection = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(connection)
    saver.setup()  # WAL, as from_conn_string sets it up; SQLite's default synchronous is FULL
    connection.execute(f"PRAGMA synchronous={synchronous}")
    return saver, connection.close


def allocated(path: Path) -> int:
    """Bytes the file system allocated to a file, or to the files of a directory (their -wal and -shm too)."""
    files = list(path.iterdir()) if path.is_dir() else list(path.parent.glob(path.name + "*"))
    return sum(file.stat().st_blocks * 512 for file in files)


@attrs.frozen
class Sample:
    seconds: float
    cpu_seconds: float
    written: int  # bytes passed to write calls


def timed(call: Callable[[Peer, Any], Any], peer: Peer, prepared: Any) -> Sample:
    before = written_bytes() or 0
    started, started_cpu = time.perf_counter(), time.process_time()
    call(peer, prepared)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    return Sample(seconds, cpu_seconds, (written_bytes() or 0) - before)


def floor_of(scratch: Path, name: str, written: list[int], synchronous_page: bool) -> FlushProbe:
    """``bench_core``'s probe of the pages that ``written`` (bytes a put wrote, each) makes at the median."""
    pages = max(1, round(statistics.median(written) / 4096))
    return FlushProbe(scratch / f"floor-{name}", pages=pages, synchronous_page=synchronous_page)


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


PUT_PARTS = ("read the thread", "find the parent's list", "make the message", "the store's append")
#: Within making the message: the fingerprint of the new list, whose earlier items' part is checked unchanged.
FINGERPRINT = "(in it: the list's fingerprint)"
#: Not a part of our put: what LangGraph's serializer takes over the whole new list, as ``SqliteSaver``'s put does.
WHOLE_LIST = "(the serializer on the whole list)"
#: The peer at the same durability: ``SqliteSaver``'s whole put with no flush either (``synchronous=OFF``).
SQLITE_PUT = "SqliteSaver's put, synchronous=OFF"


def put_parts(scratch: Path, turns: int, samples: int) -> None:
    """Print the median process CPU time of each part of a put, with no flush (``Durability.OFF``), and of
    ``SqliteSaver``'s put with none either, taking turns with ours."""
    peer = Peer("ours", lambda: ours(scratch / "parts", Durability.OFF))
    their = Peer("SqliteSaver", lambda: sqlite(scratch / "parts.sqlite", synchronous="OFF"))
    for _ in range(turns):
        peer.turn()
        their.turn()
    saver, key = peer.saver, "langgraph/chat-1/"
    assert isinstance(saver, EventStoreSaver) and isinstance(saver.store, SessionStore)
    store = saver.store
    parts: dict[str, list[float]] = {name: [] for name in ("a whole put", *PUT_PARTS, FINGERPRINT, WHOLE_LIST,
                                                           SQLITE_PUT)}
    for _ in range(samples):
        config, checkpoint, metadata, versions = peer.next_put()
        started = time.process_time()
        saver.put(config, checkpoint, metadata, versions)
        parts["a whole put"].append(time.process_time() - started)
        arguments = their.next_put()
        started = time.process_time()
        their.saver.put(*arguments)
        parts[SQLITE_PUT].append(time.process_time() - started)
        their.turns += 1
        config, checkpoint, metadata, versions = peer.next_put()
        parent_id = config["configurable"]["checkpoint_id"]
        moments = [time.process_time()]
        records = saver._records_of(key, store.load(key))
        moments.append(time.process_time())
        bases = records.bases(saver.serde, parent_id, list_channels(checkpoint, versions), saver._lists.get(key))
        moments.append(time.process_time())
        message, encoded = checkpoint_message(saver.serde, checkpoint, get_checkpoint_metadata(config, metadata),
                                              parent_id, versions, bases, records.known())
        moments.append(time.process_time())
        store.append(key, message)
        moments.append(time.process_time())
        saver._keep_lists(key, encoded)
        for name, seconds in zip(PUT_PARTS, [after - before for before, after in itertools.pairwise(moments)]):
            parts[name].append(seconds)
        started = time.process_time()
        Fingerprint.of(checkpoint["channel_values"]["messages"])
        parts[FINGERPRINT].append(time.process_time() - started)
        started = time.process_time()
        saver.serde.dumps_typed(checkpoint["channel_values"]["messages"])
        parts[WHOLE_LIST].append(time.process_time() - started)
        peer.turns += 1
    peer.close()
    their.close()
    print(f"a put's CPU time, no flush (Durability.OFF), medians of {samples}; thread of {turns} turns")
    for name, samples_of_part in parts.items():
        print(f"{name:40} {statistics.median(samples_of_part) * 1e3:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 turns, few samples")
    parser.add_argument("--dir", help="where the temporary stores go")
    parser.add_argument("--put-parts", action="store_true", help="where a put's CPU time goes, instead")
    arguments = parser.parse_args()
    turns, samples = (5, 5) if arguments.quick else (100, 60)
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    if arguments.put_parts:
        with tempfile.TemporaryDirectory(dir=arguments.dir) as directory:
            put_parts(Path(directory), turns, samples)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return
    with tempfile.TemporaryDirectory(dir=arguments.dir) as directory:
        scratch = Path(directory)
        peers = [Peer("ours", lambda: ours(scratch / "full", Durability.FULL)),
                 Peer("ours, normal", lambda: ours(scratch / "normal", Durability.NORMAL)),
                 Peer("SqliteSaver", lambda: sqlite(scratch / "checkpoints.sqlite"))]
        started = time.perf_counter()
        for _ in range(turns):
            for peer in peers:
                peer.turn()
        built = time.perf_counter() - started
        messages = len(peers[0].graph.get_state(THREAD).values["messages"])
        print(f"a thread of {messages} messages ({turns} turns) on each, built in {built:.1f} s; bytes on disk "
              f"(allocated): ours {allocated(scratch / 'full') / 1e6:.1f} MB, "
              f"SQLite {allocated(scratch / 'checkpoints.sqlite') / 1e6:.1f} MB\n")
        results: dict[str, dict[str, list[Sample]]] = {peer.name: {} for peer in peers}

        def measure(name: str, call: Callable[[Peer, Any], Any], prepare: Callable[[Peer], Any] = lambda _: None
                    ) -> None:
            for sample in range(samples):
                for peer in peers[sample % len(peers):] + peers[:sample % len(peers)]:  # each goes first in turn
                    results[peer.name].setdefault(name, []).append(timed(call, peer, prepare(peer)))

        measure("load: get_tuple(latest)", lambda peer, _: peer.saver.get_tuple(THREAD))
        measure("load, freshly opened", lambda peer, _: peer.saver.get_tuple(THREAD), Peer.reopen)
        measure("list: 10 latest checkpoints", lambda peer, _: list(peer.saver.list(THREAD, limit=10)))
        measure("put: the next checkpoint", lambda peer, arguments: peer.saver.put(*arguments), Peer.next_put)
        measure("turn: graph.invoke", lambda peer, _: peer.turn())
        for peer in peers:
            peer.close()
        put_written = {name: [sample.written for sample in by_call["put: the next checkpoint"]]
                       for name, by_call in results.items()}
        probes = {"ours": floor_of(scratch, "full", put_written["ours"], synchronous_page=True),
                  "ours, normal": floor_of(scratch, "normal", put_written["ours, normal"], synchronous_page=False),
                  "SqliteSaver": floor_of(scratch, "sqlite", put_written["SqliteSaver"], synchronous_page=False)}
        floors: dict[str, list[float]] = {name: [] for name in probes}
        for sample in range(samples):
            for name, probe in probes.items():
                floors[name].append(probe(sample) / 1e9)
        for probe in probes.values():
            probe.close()
    print(f"{'call':30} {'peer':13} {'median':>10} {'p99':>10} {'SQLite/peer':>12} {'CPU':>10} {'SQLite/peer':>12}")
    for name, samples_of_sqlite in results["SqliteSaver"].items():
        their_median, _ = summary([sample.seconds for sample in samples_of_sqlite])
        their_cpu = statistics.median(sample.cpu_seconds for sample in samples_of_sqlite)
        for peer_name, by_call in results.items():
            median, p99 = summary([sample.seconds for sample in by_call[name]])
            cpu = statistics.median(sample.cpu_seconds for sample in by_call[name])
            print(f"{name:30} {peer_name:13} {median * 1e3:7.2f} ms {p99 * 1e3:7.2f} ms {their_median / median:11.2f}x"
                  f" {cpu * 1e3:7.2f} ms {their_cpu / cpu if cpu else float('nan'):11.2f}x")
    their_floor, _ = summary(floors["SqliteSaver"])
    for peer_name, samples_of_floor in floors.items():
        median, p99 = summary(samples_of_floor)
        written = statistics.median(put_written[peer_name])
        print(f"{'floor: a put, bare I/O':30} {peer_name:13} {median * 1e3:7.2f} ms {p99 * 1e3:7.2f} ms "
              f"{their_floor / median:11.2f}x ({written / 1e3:.1f} KB written a put)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
