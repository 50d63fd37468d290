"""Faults of a store on PostgreSQL: writers killed mid-command, the server stopped and restarted under load or while
the stores were idle, a replica deleted, a replica that diverged from the log (a failover that lost commits)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from eventstore import ChatMessage, InvalidArgument, SessionStore, StoreUnavailable

from conftest import waited_for
from test_postgres_store import listening, lose_commits_after, open_host

__all__ = ["open_host"]  # the fixture, used by name


def contents(store: SessionStore) -> dict[str, list[ChatMessage]]:
    return {key: store.load(key) for key in store.list_sessions()}


def test_a_deleted_replica_is_filled_again_from_the_log_with_progress(postgres_url, tmp_path):
    with SessionStore(postgres_url, cache=tmp_path / "host") as store:
        for number in range(30):
            store.append(f"k{number % 3}", ChatMessage.user(f"message {number}"))
        before = contents(store)
    shutil.rmtree(tmp_path / "host")
    progress: list[tuple[int, int]] = []
    with SessionStore(postgres_url, cache=tmp_path / "host", rebuild_progress=lambda *p: progress.append(p)) as store:
        assert contents(store) == before
        assert store.verify().ok
    assert progress[-1] == (30, 30)


def test_a_replica_that_diverged_from_the_log_is_rebuilt(postgres_url, tmp_path):
    with SessionStore(postgres_url, cache=tmp_path / "one") as one:
        for number in range(5):
            one.append("k", ChatMessage.user(f"seen by one {number}"))
    lose_commits_after(postgres_url, 3)  # a failover lost the last two commits
    with SessionStore(postgres_url, cache=tmp_path / "two") as two:
        two.append("k", ChatMessage.user("after the failover"))
        two.append("other", ChatMessage.user("also after"))
        expected = contents(two)
    progress: list[tuple[int, int]] = []
    with SessionStore(postgres_url, cache=tmp_path / "one", rebuild_progress=lambda *p: progress.append(p)) as one:
        assert contents(one) == expected
        assert [m.content for m in one.load("k")][-2:] == ["seen by one 2", "after the failover"]
        assert one.verify().ok
        assert progress[-1] == (5, 5)



def test_a_listening_host_finds_commits_it_saw_lost_once_the_head_goes_back(postgres_url, tmp_path):
    """Its reads skip the server while the listener hears nothing new; a head behind the one it heard sends the
    next read to the server, which finds the replica diverged and rebuilds it."""
    with SessionStore(postgres_url, cache=tmp_path / "one") as one:
        for number in range(5):
            one.append("k", ChatMessage.user(f"seen by one {number}"))
        one.load("k")  # the first read starts the listener
        listening(one)  # from here its reads skip the server: only the head going back sends them to it
        with psycopg.connect(postgres_url, autocommit=True) as connection:  # a restore lost the last two commits
            connection.execute("DELETE FROM es_events WHERE position > 3")
            connection.execute("UPDATE es_head SET position = 3, hash = "
                               "(SELECT hash FROM es_events WHERE position = 3)")
            connection.execute("UPDATE es_sessions SET version = 3")
        with SessionStore(postgres_url, cache=tmp_path / "two") as two:
            two.append("k", ChatMessage.user("after the restore"))
            expected = two.load("k")
        deadline = time.monotonic() + 10  # until the notification of two's commit reaches one's listener
        while one.load("k") != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one.load("k") == expected
        assert one.verify().ok

WRITER = textwrap.dedent("""
    import sys
    from eventstore import ChatMessage, SessionStore
    url, cache, name = sys.argv[1:]
    with SessionStore(url, cache=cache) as store:
        number = 0
        while True:
            store.append_many("shared", [ChatMessage.user(f"{name} {number} {part}") for part in range(3)])
            print(number, flush=True)
            number += 1
""")


def test_writers_killed_mid_command_lose_nothing_acknowledged_and_leave_no_partial_command(postgres_url, tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, postgres_url, str(tmp_path / f"host{n}"), f"w{n}"],
                                stdout=subprocess.PIPE, text=True) for n in range(3)]
    acknowledged: dict[str, list[int]] = {f"w{n}": [] for n in range(3)}
    readers = [threading.Thread(target=lambda out, into: into.extend(int(line) for line in out),
                                args=(writer.stdout, acknowledged[f"w{n}"])) for n, writer in enumerate(writers)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 60
    while min(map(len, acknowledged.values())) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    for writer in writers:  # mid-command: each is writing its next command
        writer.send_signal(signal.SIGKILL)
    for writer, reader in zip(writers, readers):
        writer.wait()
        reader.join()
    assert min(map(len, acknowledged.values())) >= 5, acknowledged
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        texts = [message.content.rsplit(" ", 1) for message in fresh.load("shared")]
        commands = [texts[start][0] for start in range(0, len(texts), 3)]
        assert texts == [[command, str(part)] for command in commands for part in range(3)]  # whole commands only
        for name, numbers in acknowledged.items():
            recorded = [int(command.split()[1]) for command in commands if command.split()[0] == name]
            assert recorded[:len(numbers)] == numbers and len(recorded) <= len(numbers) + 1
        assert fresh.verify().ok
    for n in range(3):  # each killed host's replica opens, catches up and verifies
        with SessionStore(postgres_url, cache=tmp_path / f"host{n}") as host:
            assert len(host.load("shared")) == len(texts)
            assert host.verify().ok


def test_the_server_stopped_and_restarted_under_load(postgres_server, postgres_url, tmp_path):
    acknowledged: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        with SessionStore(postgres_url, cache=tmp_path / "host") as store:
            number = 0
            while not stop.is_set() or number < 40:
                try:  # a retry with the request's idempotency key is never recorded twice
                    store.append("k", ChatMessage.user(f"{number}"), idempotency_key=f"request {number}")
                except StoreUnavailable as unavailable:
                    failures.append(unavailable)
                    time.sleep(0.05)
                    continue
                acknowledged.append(number)
                number += 1

    writer = threading.Thread(target=write)
    writer.start()
    # Each step waits for what the next needs: a loaded machine can take longer than any fixed pause to open the
    # writer's store (which fails while the server is away) or to try again while it is.
    waited_for(lambda: len(acknowledged) >= 5, "the writer never wrote")
    postgres_server.stop()
    waited_for(lambda: bool(failures), "the writer never saw the server down")
    postgres_server.start()
    stop.set()
    writer.join(60)
    assert all("cannot be reached" in str(failure) for failure in failures)
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        assert [int(m.content) for m in fresh.load("k")] == acknowledged == list(range(len(acknowledged)))
        assert fresh.verify().ok


@pytest.fixture(autouse=True)
def _server_up(postgres_server):
    """A test that stops the server leaves it running for the next one, whatever happened."""
    yield
    if not postgres_server.running():
        postgres_server.start()


def restart(postgres_server) -> None:
    """Stop the server at once (every connection to it closed) and start it again."""
    postgres_server.stop()
    postgres_server.start()


def test_after_a_server_restart_an_idle_store_s_first_calls_go_on_fresh_connections(
        open_host, postgres_server, postgres_url, tmp_path):
    """Its pooled connections, which the restart closed, are dropped before anything is sent on them: neither a
    read nor a command fails for them (and a command sent on none of them cannot have been recorded twice)."""
    host = open_host("host")
    host.append("k", ChatMessage.user("before"))
    host.append_many("j", [ChatMessage.user("a group"), ChatMessage.user("of two")])
    restart(postgres_server)
    assert host.append("k", ChatMessage.user("after")) == 2
    restart(postgres_server)
    assert host.append_many("j", [ChatMessage.user("and after")]) == 3
    assert host.load("k") == [ChatMessage.user("before"), ChatMessage.user("after")]
    with SessionStore(postgres_url, cache=tmp_path / "fresh") as fresh:
        assert fresh.load("k") == host.load("k") and len(fresh.load("j")) == 3
        assert fresh.verify().ok


def test_after_a_server_restart_a_host_without_a_subscriber_reads_other_hosts_commits_at_once(
        open_host, postgres_server):
    """Its listening connection, closed by the restart, is found closed by its next read, which asks the server
    instead of trusting the notifications that connection can no longer bring."""
    one, two = open_host("one"), open_host("two")
    one.append("k", ChatMessage.user("before"))
    listening(one)
    restart(postgres_server)
    two.append("k", ChatMessage.assistant("after the restart"))
    assert [m.content for m in one.load("k")] == ["before", "after the restart"]


HAMMER = textwrap.dedent("""
    import sys, time
    from eventstore import ChatMessage, SessionStore
    url, cache, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with SessionStore(url, cache=cache) as store:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            store.append("busy", ChatMessage.user("hammer"))
""")


def test_a_writer_that_keeps_losing_the_race_to_a_busy_session_takes_its_turn(postgres_url, tmp_path):
    """Two processes append to one session in tight loops; a third host's appends (no expected version) must all
    succeed, not run out of optimistic retries."""
    with SessionStore(postgres_url, cache=tmp_path / "mine") as mine:
        mine.append("busy", ChatMessage.user("first"))
        hammers = [subprocess.Popen([sys.executable, "-c", HAMMER, postgres_url, str(tmp_path / f"h{n}"), "8"])
                   for n in range(2)]
        try:
            time.sleep(1.5)  # both hammering
            versions = [mine.append("busy", ChatMessage.assistant(f"mine {n}")) for n in range(40)]
        finally:
            for hammer in hammers:
                hammer.wait(timeout=60)
        assert versions == sorted(versions) and len(set(versions)) == 40
        mine_only = [m.content for m in mine.load("busy") if m.content.startswith("mine")]
        assert mine_only == [f"mine {n}" for n in range(40)]
        assert all(hammer.returncode == 0 for hammer in hammers)
        assert mine.verify().ok


@pytest.mark.parametrize("url", [
    "postgresql://app:s3cret@[::1/chat",  # libpq quotes the whole URI
    "postgresql://app:s3%zzcret@db.invalid/chat",  # libpq quotes the token it cannot decode
    "postgresql://app:s3cret@db.invalid/chat?bogus=1",
])
def test_a_malformed_url_is_an_invalid_argument_that_never_shows_the_password(url, tmp_path):
    with pytest.raises(InvalidArgument) as raised:
        SessionStore(url, cache=tmp_path)
    assert "s3" not in str(raised.value) and "cret" not in str(raised.value)
    assert "PostgreSQL URL" in str(raised.value)
