"""A PostgreSQL store forked while another of its threads catches its replica up: the child's calls on the inherited
store raise ``StoreUsedAfterFork`` rather than wait for ever on the catch-up's lock, which the parent's thread held at
the fork and no thread of the child will release."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore._errors import StoreUnavailable, StoreUsedAfterFork
from eventstore.sharedlog import SharedHead

from test_postgres_settled_reads import arrived, log_of, settled, unhurried_looks
from test_postgres_store import listening, open_host, replica_of
from test_postgres_subscribe_outage import listening_is

__all__ = ["open_host"]  # the fixture, used by name

#: How long the child may take before its alarm kills it (a call that hangs).
CHILD_SECONDS = 20
#: How long the parent waits for something that should happen at once.
PATIENCE_SECONDS = 10.0


def child_status(call: Callable[[], object]) -> int:
    """Run ``call`` in a forked child: 0 when it raised ``StoreUsedAfterFork``, 1 when it returned, 2 for another
    error, ``-SIGALRM`` when it hung."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(CHILD_SECONDS)
        status = 1
        try:
            call()
        except StoreUsedAfterFork:
            status = 0
        except BaseException:
            status = 2
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def catching_up(host: SessionStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While it lasts, a thread of ``host`` reads ``k``, catching its replica up: it holds the catch-up's lock,
    waiting for the server's answer. That read then gets it, and returns the messages the test expects."""
    shared = log_of(host)
    real_read = shared.read
    reading, release = threading.Event(), threading.Event()

    def held_read(after: int, limit: int) -> SharedHead:
        reading.set()
        release.wait(PATIENCE_SECONDS)
        return real_read(after, limit)

    monkeypatch.setattr(shared, "read", held_read)
    loaded: list[list[str]] = []
    reader = threading.Thread(target=lambda: loaded.append([m.content for m in host.load("k")]))
    reader.start()
    try:
        assert reading.wait(PATIENCE_SECONDS)
        yield
    finally:
        release.set()
        reader.join(PATIENCE_SECONDS)
    monkeypatch.setattr(shared, "read", real_read)
    assert loaded == [["mine", "theirs"]]


#: What a child calls on the store it inherited.
CALLS: list[Callable[[SessionStore], object]] = [
    lambda store: store.load("k"),
    lambda store: store.append("k", ChatMessage.user("child")),
    lambda store: store.vacuum(),
]


def test_a_child_s_calls_while_a_parent_s_thread_catches_up_to_another_host_s_commit_raise(open_host, monkeypatch):
    unhurried_looks(monkeypatch)
    reader, writer = open_host("reader"), open_host("writer")
    listening(reader)
    reader.append("k", ChatMessage.user("mine"))
    listener = settled(reader)
    writer.append("k", ChatMessage.assistant("theirs"))
    arrived(listener)
    with catching_up(reader, monkeypatch):
        assert [child_status(functools.partial(call, reader)) for call in CALLS] == [0] * len(CALLS)
        assert child_status(reader.close) in (0, 1)  # it returns
    assert reader.append("k", ChatMessage.user("again")) == 3


def test_a_child_s_calls_while_a_parent_s_thread_catches_up_unheard_raise(open_host, monkeypatch):
    reader, writer = open_host("reader"), open_host("writer")
    reader.append("k", ChatMessage.user("mine"))
    replica, shared = replica_of(reader), log_of(reader)
    real_wait = shared.wait

    def away(seen: int, timeout: float, listening: Callable[[], None]) -> int:
        raise StoreUnavailable("the listening connection cannot connect")

    monkeypatch.setattr(shared, "wait", away)  # the watcher does not listen: every read catches up first
    replica._wake.set()
    listening_is(replica, False)
    writer.append("k", ChatMessage.assistant("theirs"))
    with catching_up(reader, monkeypatch):
        assert [child_status(functools.partial(call, reader)) for call in CALLS] == [0] * len(CALLS)
        assert child_status(reader.close) in (0, 1)
    monkeypatch.setattr(shared, "wait", real_wait)
    assert reader.append("k", ChatMessage.user("again")) == 3
