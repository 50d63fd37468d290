"""A command of a PostgreSQL host that shares nothing with the server (its body wrote no event, no record) but was
decided in a group whose batchmates went elsewhere on the server: the group is rolled back, and the command runs
again. Its re-runs for its batchmates' sake are bounded: the next one runs in a group of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from eventstore.services import replica as replica_module
from eventstore.storage import Outcome

from test_postgres_batch import same_everywhere
from test_postgres_group import GATE_SECONDS, record_calls, user
from test_postgres_store import listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

BATCHMATES = 5  # how many times in a row the command is given a batchmate that goes elsewhere


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GATE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.001)


def test_a_command_rolled_back_for_its_batchmates_again_and_again_runs_again_in_a_group_of_its_own(
        open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append("b", user("b first"))
    one.set_session_name("b", "named")
    listening(one)
    replica = replica_of(one)
    engine = replica.replica
    queue = engine._group  # type: ignore[attr-defined]
    calls = record_calls(one, monkeypatch, lambda: two.append("x", user("elsewhere")))  # every call goes elsewhere
    rollbacks: list[int] = []  # for each group, how many of its commands were run again for a batchmate's sake
    real_ship = replica._ship

    def ship(outcomes: list[Outcome]) -> tuple[list[Outcome], bool]:
        settled, kept = real_ship(outcomes)
        rollbacks.append(sum(isinstance(value, replica_module._Again) for ok, value in settled if not ok))
        return settled, kept

    monkeypatch.setattr(replica, "_ship", ship)
    batchmates: list[threading.Thread] = []
    results: dict[str, object] = {}

    def with_a_batchmate() -> None:
        """Before each attempt of the command: a batchmate queued in its group, which goes elsewhere."""
        if threading.current_thread() is not command or len(batchmates) == BATCHMATES:
            return
        if batchmates:  # the last one has caught up, after its command went elsewhere
            batchmates[-1].join(GATE_SECONDS)
        holding, release = threading.Event(), threading.Event()

        def blocker(_txn: object) -> None:  # holds the writers' lock: the next two writes queue
            holding.set()
            assert release.wait(GATE_SECONDS)

        def release_once_the_command_queued() -> None:
            wait_for(lambda: len(queue._queued) == 2, "queued the command")
            release.set()

        def batchmate(name: str) -> None:
            results[name] = one.append("a", user(name))

        threading.Thread(target=engine.write, args=(blocker,)).start()
        assert holding.wait(GATE_SECONDS)
        batchmates.append(threading.Thread(target=batchmate, args=(f"a{len(batchmates)}",)))
        batchmates[-1].start()
        wait_for(lambda: len(queue._queued) == 1, "queued the batchmate")
        threading.Thread(target=release_once_the_command_queued).start()

    real_durably = replica._durably

    def durably(*arguments):
        with_a_batchmate()
        return real_durably(*arguments)

    monkeypatch.setattr(replica, "_durably", durably)

    def give_the_command() -> None:
        results["command"] = one.set_session_name("b", "named")

    command = threading.Thread(target=give_the_command)
    command.start()
    command.join(GATE_SECONDS)
    for batchmate in batchmates:
        batchmate.join(GATE_SECONDS)
    assert results.pop("command") is None  # it committed: the name was already b's
    assert sum(rollbacks) == 1  # once run again for a batchmate's sake, it ran in a group of its own
    assert sorted(results.values()) == list(range(1, len(batchmates) + 1))  # type: ignore[type-var]
    assert all(kinds == ["Committed"] for kinds in calls)
    assert one.get_session_name("b") == "named"
    same_everywhere(one, open_host("fresh"), "abx")
