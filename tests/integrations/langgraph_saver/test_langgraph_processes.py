"""Two processes writing checkpoints to one LangGraph thread at once (real processes, ``spawn`` start method).

A graph turn reads the thread's latest checkpoint and puts the next ones after it; with two writers the latest
moves under each of them, so the thread's history branches. No checkpoint may be lost, and none may read values
that another branch wrote (each checkpoint's log extends its parent's).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from collections.abc import Callable
from pathlib import Path

from langchain_core.runnables import RunnableConfig

from eventstore import SessionStore
from eventstore.integrations.langgraph import EventStoreSaver

from .test_langgraph_graphs import steps_graph
from .test_langgraph_saver import checkpoint, config

WRITERS = 2
TURNS = 10
THREAD: RunnableConfig = {"configurable": {"thread_id": "shared"}}


def take_turns(path: str, name: str, start: multiprocessing.synchronize.Barrier) -> None:
    """One writer: ``TURNS`` turns of the steps graph on the shared thread."""
    with SessionStore(path, durable=False) as store:
        graph = steps_graph(EventStoreSaver(store))
        start.wait(60)
        for turn in range(TURNS):
            graph.invoke({"log": [f"{name}:{turn}"]}, THREAD)


def put_and_delete_runs(path: str, name: str, start: multiprocessing.synchronize.Barrier) -> None:
    """Either a writer of checkpoints that must all survive, or one that puts and deletes its own runs."""
    with SessionStore(path, durable=False) as store:
        saver = EventStoreSaver(store)
        start.wait(60)
        parent = config("shared", "")
        for turn in range(TURNS * 3):
            run = "kept" if name == "w0" else "dropped"
            values = {"turn": f"{name}:{turn}"}
            parent = saver.put(parent, checkpoint(f"1ef-{name}-{turn:03d}", values, {"turn": turn + 1}),
                               {"run_id": run, "step": turn}, {"turn": turn + 1})
            if name != "w0":
                saver.delete_for_runs(["dropped"])


def race(path: Path, writer: Callable[[str, str, multiprocessing.synchronize.Barrier], None]) -> None:
    with SessionStore(path):  # create the store before the writers race to
        pass
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    processes = [context.Process(target=writer, args=(str(path), f"w{n}", start)) for n in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
    assert [0] * WRITERS == [process.exitcode for process in processes]


class TestTwoProcesses:
    def test_graph_turns_on_one_thread(self, store_path: Path):
        race(store_path, take_turns)
        with SessionStore(store_path) as store:
            history = list(steps_graph(EventStoreSaver(store)).get_state_history(THREAD))
            assert store.verify().ok
        assert WRITERS * TURNS * 4 == len(history)  # input, start, plan, act: four checkpoints a turn
        by_id = {snapshot.config["configurable"]["checkpoint_id"]: snapshot for snapshot in history}
        for snapshot in history:
            if snapshot.parent_config is not None:
                parent = by_id[snapshot.parent_config["configurable"]["checkpoint_id"]]
                assert snapshot.values["log"][:len(parent.values["log"])] == parent.values["log"]
        finished = sorted(snapshot.values["log"][-3] for snapshot in history if not snapshot.next)
        assert sorted(f"w{n}:{turn}" for n in range(WRITERS) for turn in range(TURNS)) == finished

    def test_deleting_runs_never_loses_another_writers_checkpoints(self, store_path: Path):
        race(store_path, put_and_delete_runs)
        with SessionStore(store_path) as store:
            saver = EventStoreSaver(store)
            saver.delete_for_runs(["dropped"])
            listed = [(found.checkpoint["id"], found.checkpoint["channel_values"]) for found in saver.list(THREAD)]
            assert store.verify().ok
        assert [(f"1ef-w0-{turn:03d}", {"turn": f"w0:{turn}"}) for turn in reversed(range(TURNS * 3))] == listed
