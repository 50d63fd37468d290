"""Processes of one host sharing a replica directory, when one of them rebuilds it after a failover: the others
drop what they decoded before the rebuild, whether or not their watcher saw the server's head go back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eventstore import ChatMessage, SessionStore

from test_postgres_store import listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

#: Another process of the host: loads a session when asked, printing its messages' contents.
READER = textwrap.dedent("""
    import json, sys, time
    from eventstore import SessionStore
    url, cache = sys.argv[1:]
    with SessionStore(url, cache=cache) as store:
        shared, waits = store._environment._shared, []
        real_wait = shared.wait
        def wait(seen, *args):
            waits.append(seen)
            return real_wait(seen, *args)
        shared.wait = wait
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "load":
                print(json.dumps([message.content for message in store.load(argument)]), flush=True)
            elif command == "listening":
                while not store._environment.listening:
                    time.sleep(0.001)
                print(json.dumps("listening"), flush=True)
            elif command == "waiting":
                deadline = time.monotonic() + 30
                while int(argument) not in waits and time.monotonic() < deadline:
                    time.sleep(0.001)
                print(json.dumps(int(argument) in waits), flush=True)
""")

SEEN = [f"seen {number}" for number in range(5)]


class Reader:
    """The other process, driven line by line."""

    def __init__(self, url: str, cache: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", READER, url, str(cache)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> object:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the reader process ended"
        return json.loads(answer)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture
def reader(postgres_url: str, tmp_path: Path) -> Iterator[Reader]:
    with SessionStore(postgres_url, cache=tmp_path / "host") as writer:
        for text in SEEN:
            writer.append("k", ChatMessage.user(text))
    started = Reader(postgres_url, tmp_path / "host")
    try:
        yield started
    finally:
        started.close()


def roll_back_to(postgres_url: str, position: int) -> None:
    """What a failover to a standby that lacked the commits after ``position`` leaves on the server."""
    with psycopg.connect(postgres_url, autocommit=True) as connection, connection.transaction():
        connection.execute("DELETE FROM es_events WHERE position > %s", (position,))
        connection.execute("UPDATE es_head SET position = %s, hash = (SELECT hash FROM es_events WHERE position = %s)",
                           (position, position))
        connection.execute("UPDATE es_sessions SET version = %s WHERE key = 'k'", (position,))


def rewrite_as_many(postgres_url: str, tmp_path: Path) -> list[str]:
    """Another host writes the lost commits' as many events anew, in one command: the session comes back at the
    same version with other messages. Its contents as that host reads it."""
    with SessionStore(postgres_url, cache=tmp_path / "elsewhere") as elsewhere:
        elsewhere.append_many("k", [ChatMessage.user("new 3"), ChatMessage.user("new 4")])
        return [message.content for message in elsewhere.load("k")]


def rebuild_on_the_host(postgres_url: str, tmp_path: Path) -> None:
    """A process of the host opens the shared replica directory, finds it diverged and rebuilds it."""
    progress: list[tuple[int, int]] = []
    with SessionStore(postgres_url, cache=tmp_path / "host", rebuild_progress=lambda *p: progress.append(p)) as one:
        assert progress[-1] == (5, 5)  # it did rebuild
        assert one.verify().ok


def test_a_process_whose_watcher_never_saw_the_head_go_back_drops_what_it_decoded_before_a_rebuild(
        reader, postgres_url, tmp_path):
    assert reader.ask("load k") == SEEN  # decoded and kept by the reader
    assert reader.ask("listening") == "listening"  # from here its reads skip the server while nothing changes
    reader.pause()  # it hears nothing while the server's head goes from 5 back to 3 and on to 5 again
    try:
        roll_back_to(postgres_url, 3)
        expected = rewrite_as_many(postgres_url, tmp_path)
        rebuild_on_the_host(postgres_url, tmp_path)
    finally:
        reader.resume()
    assert expected == [*SEEN[:3], "new 3", "new 4"]
    assert reader.ask("load k") == expected


def test_a_process_whose_watcher_saw_the_head_go_back_drops_what_it_decoded_before_a_rebuild(
        reader, postgres_url, tmp_path):
    assert reader.ask("load k") == SEEN
    assert reader.ask("listening") == "listening"
    roll_back_to(postgres_url, 3)
    # The reader's watcher polls the head every second: it sees it behind the one it heard of, and waits from it.
    assert reader.ask("waiting 3") is True
    expected = rewrite_as_many(postgres_url, tmp_path)
    rebuild_on_the_host(postgres_url, tmp_path)
    assert reader.ask("load k") == expected


def test_a_watcher_that_sees_the_head_go_back_waits_for_the_next_commit_again(open_host, postgres_url, monkeypatch):
    """The head it heard of is gone: it waits from the server's head, rather than asking again and again."""
    host = open_host("host")
    for text in SEEN:
        host.append("k", ChatMessage.user(text))
    host.load("k")
    listening(host)
    shared = replica_of(host)._shared
    real_wait = shared.wait
    waits: list[int] = []

    def wait(seen: int, *args: object) -> int:
        waits.append(seen)
        return real_wait(seen, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shared, "wait", wait)
    roll_back_to(postgres_url, 3)
    deadline = time.monotonic() + 30
    while 3 not in waits:  # it saw the head go back at its next poll (every second), and waits from there
        assert time.monotonic() < deadline, f"the watcher never waited from the server's head: {waits[-5:]}"
        time.sleep(0.01)
    time.sleep(1.5)
    assert len(waits) < 20
    assert host.load("k") == [ChatMessage.user(text) for text in SEEN[:3]]
    assert host.verify().ok


def test_a_read_under_way_when_its_process_drops_what_it_decoded_keeps_nothing_for_later_reads(
        open_host, postgres_url, tmp_path, monkeypatch):
    """A read that began before the rebuild decodes the lost messages; what it keeps must not outlive the drop."""
    writer = open_host("host")
    for text in SEEN:
        writer.append("k", ChatMessage.user(text))
    reader = open_host("host")  # another store on the directory, with a decoded-session cache of its own
    decoded = reader._decoded
    real_remember = decoded.remember
    in_remember, go = threading.Event(), threading.Event()

    def remember(key: str, version: int, entries: object) -> None:
        if key == "k" and not in_remember.is_set():
            in_remember.set()
            assert go.wait(30)
        real_remember(key, version, entries)

    monkeypatch.setattr(decoded, "remember", remember)
    early = threading.Thread(target=reader.load, args=("k",))
    early.start()
    try:
        assert in_remember.wait(30)  # it has decoded the five messages and is about to keep them
        roll_back_to(postgres_url, 3)
        expected = rewrite_as_many(postgres_url, tmp_path)
        replica_of(writer).catch_up()  # finds the replica diverged and rebuilds it
        assert reader.load("other") == []  # the reader's next read sees the rebuild and drops what it decoded
    finally:
        go.set()
        early.join()
    assert [message.content for message in reader.load("k")] == expected
