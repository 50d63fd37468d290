"""Several processes writing to one store at once (real processes, ``spawn`` start method)."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

from eventstore import ChatMessage, SessionStore
from eventstore._folding import to_recorded
from eventstore._log import GENESIS_HASH, chain_hash

WRITERS = 2
ROUNDS = 150


def write(path: str, name: str, start: multiprocessing.synchronize.Barrier) -> None:
    """One writer process: single appends and batches to a shared session and to its own."""
    with SessionStore(path, durable=False) as store:
        start.wait(60)  # every writer has its store open: go together
        for n in range(ROUNDS):
            if n % 3:
                store.append("shared", ChatMessage.user(f"{name}:{n}"))
            else:
                store.append_many("shared", [ChatMessage.user(f"{name}:{n}"), ChatMessage.assistant(f"{name}:{n}b")])
            store.append(f"own-{name}", ChatMessage.user(str(n)))


class TestTwoProcesses:
    """Two processes appending to one store at the same time."""

    def test_concurrent_appends(self, store_path: Path):
        """Positions stay gap-free 1..N, each writer's order holds, and nothing is lost."""
        with SessionStore(store_path):  # create the store before the writers race to
            pass
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(WRITERS)
        names = [f"w{i}" for i in range(WRITERS)]
        processes = [context.Process(target=write, args=(str(store_path), name, start)) for name in names]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [0] * WRITERS == [process.exitcode for process in processes]

        expected_per_writer = {
            name: [text for n in range(ROUNDS) for text in
                   ([f"{name}:{n}"] if n % 3 else [f"{name}:{n}", f"{name}:{n}b"])]
            for name in names
        }
        with SessionStore(store_path) as store:
            shared = [m.content for m in store.load("shared")]
            for name in names:
                assert expected_per_writer[name] == [c for c in shared if c.split(":")[0] == name]
                assert [ChatMessage.user(str(n)) for n in range(ROUNDS)] == store.load(f"own-{name}")
            assert sum(len(texts) for texts in expected_per_writer.values()) == len(shared)
            with store._environment.read() as txn:
                stored = list(store._log.read_all(txn))
            total = len(shared) + WRITERS * ROUNDS
            assert list(range(1, total + 1)) == [event.position for event in stored]
            assert list(range(1, len(shared) + 1)) == [e.version for e in stored if e.session_key == "shared"]
            previous = GENESIS_HASH
            for event in stored:
                previous = chain_hash(previous, event.position, event.session_key, event.version,
                                      event.recorded_at, event.event_id, event.encoded,
                                      hashlib.sha256(event.encoded.payload).digest())
                assert previous == event.hash
            assert {"shared"} | {f"own-{name}" for name in names} == {to_recorded(e).session_key for e in stored}
            assert 1 + WRITERS == len(store.list_sessions())
