"""Processes and threads appending to and popping from the same sessions of a store with its compression
dictionary: long messages with payloads, so each command reads back a compressed chunk another process or thread
may have written since (the chunk and catalog row a store object last wrote are kept by their bytes), and group
commits hand several commands one transaction. Nothing is lost or doubled, each writer's messages keep their order,
``verify`` is green and the read models equal a rebuild, before and after a redaction and a vacuum."""

from __future__ import annotations

import json
import os
import random
import traceback
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, _log

from _reliability import run_threads
from test_compressed_model import WORDS, plain_read_models

KEYS = ("shared-1", "shared-2")
PROCESSES, THREADS, CALLS = 3, 2, 40


def _message(rng: random.Random, tag: str) -> ChatMessage:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))
    payload = {"tag": tag, "call": [rng.random()]} if rng.random() < 0.5 else None
    return ChatMessage("user", f"{tag} {text}", payload)


def _tag(message: ChatMessage) -> str:
    return message.content.split(" ", 1)[0]


def _writer(path: Path, process: int) -> None:
    """Two store objects on one path, a thread each; what each popped goes to a file of the process."""
    stores = [SessionStore(path, durable=False), SessionStore(path, durable=False)]
    popped: list[str] = []
    failures: list[str] = []

    def run(thread: int) -> None:
        rng = random.Random(f"{process}-{thread}")
        writer = f"w{process}.{thread}"
        try:
            for call in range(CALLS):
                store, key = stores[thread], rng.choice(KEYS)
                if rng.random() < 0.3:
                    message = store.pop_last(key)
                    if message is not None:
                        popped.append(_tag(message))
                else:
                    count = rng.randint(1, 3)
                    store.append_many(key, [_message(rng, f"{writer}:{call}:{n}") for n in range(count)])
        except Exception:
            failures.append(traceback.format_exc())

    run_threads(run, THREADS)
    for store in stores:
        store.close()
    (path.parent / f"popped-{process}.json").write_text(json.dumps({"popped": popped, "failures": failures}))


def _appended() -> list[str]:
    """Every tag the writers append, replaying their choices (each writer's random stream is its own)."""
    tags = []
    for process in range(PROCESSES):
        for thread in range(THREADS):
            rng = random.Random(f"{process}-{thread}")
            for call in range(CALLS):
                rng.choice(KEYS)
                if rng.random() < 0.3:
                    continue
                count = rng.randint(1, 3)
                for n in range(count):
                    _message(rng, "")
                    tags.append(f"w{process}.{thread}:{call}:{n}")
    return tags


def _check(store: SessionStore, appended: list[str], popped: list[str]) -> None:
    kept = [_tag(message) for key in KEYS for message in store.load(key)]
    assert sorted(kept + popped) == sorted(appended), "a message was lost or doubled"
    for key in KEYS:
        order = [tuple(map(int, tag[1:].replace(".", ":").split(":"))) for tag in map(_tag, store.load(key))]
        for writer in {(process, thread) for process, thread, *_ in order}:
            mine = [rest for process, thread, *rest in order if (process, thread) == writer]
            assert mine == sorted(mine), f"{key}: writer {writer}'s messages out of order"
    report = store.verify()
    assert report.ok, report.problems
    before = plain_read_models(store)
    store.rebuild_projections()
    assert before == plain_read_models(store)


@pytest.mark.slow
def test_processes_and_threads_share_sessions_of_a_compressed_store(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        rng = random.Random(0)
        store.append_many("trains the dictionary", [_message(rng, f"seed:{n}") for n in range(12)])
    children = []
    for process in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _writer(path, process)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        assert 0 == os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    popped: list[str] = []
    for process in range(PROCESSES):
        report = json.loads((tmp_path / f"popped-{process}.json").read_text())
        assert not report["failures"], report["failures"][0]
        popped += report["popped"]
    with SessionStore(path, durable=False) as store:
        with store._environment.read() as txn:
            assert store._log.dictionary.get(txn) is not None
        _check(store, _appended(), popped)
        store.redact(KEYS[0], "asked to forget")
        store.vacuum()
        assert all(message.content == "[redacted]" for message in store.load(KEYS[0]))
        report = store.verify()
        assert report.ok, report.problems
