"""The live change feed: every event committed after a position, in order, then each new one as it commits.

The feed reads the log in batches (each in its own short read transaction) and holds at most one batch, so
a slow consumer costs one batch of memory and never holds a writer up. When it has caught up it waits: a
commit of this process wakes it at once (``Storage.watch_commits``), and every ``POLL_SECONDS`` it checks
whether another process has committed (``Storage.last_commit``: a few µs).

The waiting is the caller's: the same steps serve a thread (``SessionStore.subscribe``) and an event
loop (``AsyncSessionStore.subscribe``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ..events import RecordedEvent

__all__ = ["POLL_SECONDS", "BATCH", "Feed"]

#: How often a caught-up feed checks for other processes' commits (this process's wake it at once).
POLL_SECONDS = 0.025
#: Events read per read transaction, and the most a feed holds.
BATCH = 256


class Feed:
    """Steps of a subscription: the events after a position, and how long to wait when there are none.

    Args:
        read_batch: ``read_batch(after, limit)``: up to ``limit`` events after position ``after``.
        last_commit: changes with every commit to the store, by any process.
    """

    def __init__(self, read_batch: Callable[[int, int], list[RecordedEvent]], last_commit: Callable[[], int]
                 ) -> None:
        self._read_batch = read_batch
        self._last_commit = last_commit

    def steps(self, after: int, timeout: float | None) -> Iterator[RecordedEvent | float]:
        """Each event after ``after`` in order, and, when caught up, how many seconds to wait (a float)
        before looking again; the caller waits that long or until this process commits. Ends once
        ``timeout`` seconds pass without a new event (never, with ``None``)."""
        position = after
        idle_since = time.monotonic()
        while True:
            seen = self._last_commit()  # before reading: a commit after the read changes it
            batch = self._read_batch(position, BATCH)
            if batch:
                yield from batch
                position = batch[-1].position
                idle_since = time.monotonic()
                continue
            while self._last_commit() == seen:
                wait = POLL_SECONDS
                if timeout is not None:
                    remaining = idle_since + timeout - time.monotonic()
                    if remaining <= 0:
                        return
                    wait = min(wait, remaining)
                yield wait
