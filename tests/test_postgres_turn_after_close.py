"""A store closed while one of its catch-ups holds the replica directory's turn (``catch-up.lock``): the catch-up's
end leaves alone whatever file then has the descriptor number the store closed (it unlocked it: another store's
turn, taken since, was lost, and two processes caught up at once)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from eventstore import ChatMessage
from eventstore.sharedlog import SharedHead

from test_postgres_store import heard, listening, open_host, replica_of

__all__ = ["open_host"]  # the fixture, used by name


def test_a_catch_up_ending_after_its_store_closed_releases_no_other_files_lock(open_host, tmp_path: Path):
    first, other = open_host("host"), open_host("other")
    first.append("k", ChatMessage.user("mine"))
    listening(first)
    other.append("k", ChatMessage.assistant("theirs"))
    heard(first, other)
    reading, go_on = threading.Event(), threading.Event()
    shared = replica_of(first)._shared
    real_read = shared.read

    def held_read(after: int, limit: int) -> SharedHead:
        reading.set()
        go_on.wait(10)
        return real_read(after, limit)

    shared.read = held_read  # type: ignore[method-assign]
    number = replica_of(first)._turn_file
    assert number is not None

    def load() -> None:
        with contextlib.suppress(Exception):  # the store closed under it: what it raises is not this test's
            first.load("k")

    reader = threading.Thread(target=load)
    reader.start()
    assert reading.wait(10)  # the catch-up holds the directory's turn
    first.close()
    # Another file gets the descriptor number the store closed, and a lock of this process (another store's turn).
    opened: list[int] = []
    while (descriptor := os.open(tmp_path / f"file-{len(opened)}", os.O_RDWR | os.O_CREAT)) != number:
        opened.append(descriptor)
        assert len(opened) < 256, "the closed descriptor's number was never given again"
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        go_on.set()
        reader.join(10)
        assert not reader.is_alive()
        rival = os.open(tmp_path / f"file-{len(opened)}", os.O_RDWR)
        try:
            try:
                fcntl.flock(rival, fcntl.LOCK_EX | fcntl.LOCK_NB)
                kept = False
            except BlockingIOError:
                kept = True
            assert kept, "the closed store's catch-up unlocked a file it never locked"
        finally:
            os.close(rival)
    finally:
        os.close(descriptor)
        for other_descriptor in opened:
            os.close(other_descriptor)
