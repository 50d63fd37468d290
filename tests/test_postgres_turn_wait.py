"""A host stopped while it holds a session's turn holds up the other hosts' writers of that session for a bounded
time only: each gives up with ``StoreBusy``, having recorded nothing, and writes again once the turn is free."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from eventstore import ChatMessage, EventStoreError, StoreBusy
from eventstore.sharedlog import postgres

from test_postgres_store import open_host  # noqa: F401 - the fixture, by name
from test_postgres_vacuum import on_server

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

#: Another host's writer that takes the turn of session "s" and stops (as a paused or frozen host would) holding it.
HOLDER = textwrap.dedent("""
    import os, signal, sys
    from eventstore.sharedlog.postgres import PostgresLog
    log = PostgresLog(sys.argv[1])
    with log.turn(["s"]):
        print("holding", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    print("released", flush=True)
    log.close()
""")


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_writer_gives_up_on_a_turn_a_stopped_host_holds(open_host, postgres_url, monkeypatch):
    monkeypatch.setattr(postgres, "TURN_WAIT", 1.0)
    host = open_host()
    assert host.append("s", ChatMessage.user("before")) == 1
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        deadline = time.monotonic() + 10
        while not _stopped(holder.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stopped(holder.pid)
        outcome: list[int | EventStoreError] = []

        def command() -> None:
            try:
                outcome.append(host.append("s", ChatMessage.user("while the turn is held")))
            except EventStoreError as error:
                outcome.append(error)

        writer = threading.Thread(target=command, daemon=True)
        writer.start()
        writer.join(20)  # without a bound it waits as long as the holder's connection lives: for ever here
        assert not writer.is_alive(), "the writer still waits for the stopped host's turn"
        assert len(outcome) == 1 and isinstance(outcome[0], StoreBusy), outcome
        assert "turn of session 's'" in str(outcome[0]) and "recorded nothing" in str(outcome[0])
        assert host.append("other", ChatMessage.user("another session")) == 1  # only that session waits
        assert on_server(postgres_url) == [("s", 1), ("other", 1)]
        holder.send_signal(signal.SIGCONT)
        assert holder.stdout.readline() == "released\n"
        assert host.append("s", ChatMessage.user("after")) == 2
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
        holder.wait(10)
    assert [m.content for m in host.load("s")] == ["before", "after"]


@pytest.mark.parametrize("keys", [["s"], ["a", "s", "z"]])
def test_a_turn_taken_waits_no_longer_than_that(postgres_url, monkeypatch, keys):
    """Each session's turn is waited for under the bound, and the turns taken before the one that ran out are
    given back (another writer takes them at once)."""
    monkeypatch.setattr(postgres, "TURN_WAIT", 0.2)
    holder, waiter, other = (postgres.PostgresLog(postgres_url) for _ in range(3))
    try:
        with holder.turn(["s"]):
            with pytest.raises(StoreBusy, match="turn of session 's'"), waiter.turn(keys):
                pytest.fail("the turn was taken while another writer held it")
            with other.turn([key for key in keys if key != "s"]):
                pass
        with waiter.turn(keys):
            pass
    finally:
        for log in (holder, waiter, other):
            log.close()
