"""The live change feed: every event committed after a position, in order, then each new one as it commits.

The feed reads the log in batches (each in its own short read transaction) and holds at most one batch, so
a slow consumer costs one batch of memory and never holds a writer up. When it has caught up it waits: a
commit of this process wakes it at once (``Storage.watch_commits``), and every ``POLL_SECONDS`` it checks
whether another process has committed (``Storage.last_commit``: a few µs).

The waiting is the caller's: the same steps serve a thread (``SessionStore.subscribe``) and an event
loop (``AsyncSessionStore.subscribe``).

A store whose log is on a server (PostgreSQL) raises ``StoreUnavailable`` from a read while the server cannot be
reached. The feed then waits and reads again from the same position every ``RETRY_SECONDS``: a server restart
costs a live subscription a pause, not its end, and it resumes with no gap and no duplicate (a failed read
delivered nothing). It raises only once the server stayed unreachable for the wait its caller allowed, or its
``timeout`` ran out meanwhile (it cannot tell that nothing was committed).

Such a log may also come back without the newest events a feed delivered (a failover to a standby that lacked them,
an older backup restored), and other events may take their positions. Each read after a delivery therefore checks, in
the same read, that the log still holds the last event delivered (its hash, one lookup): reading on from the position
alone would skip the events that took the lost ones' positions and go on as if they never came. A feed that finds it
gone raises ``FeedDiverged``. A feed resumed from a saved position and the hash its event had (a consumer that
restarted) makes the same check from its first read, so a log that lost what the consumer handled is found before
anything is delivered, not skipped over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from .._errors import FeedDiverged, StoreUnavailable
from ..events import RecordedEvent

__all__ = ["POLL_SECONDS", "BATCH", "RETRY_SECONDS", "Feed"]

#: How often a caught-up feed checks for other processes' commits (this process's wake it at once).
POLL_SECONDS = 0.025
#: Events read per read transaction, and the most a feed holds.
BATCH = 256
#: How often a feed whose server cannot be reached reads again: each try is a connection attempt, so not every
#: ``POLL_SECONDS``; the delay it adds to the first events after the server is back.
RETRY_SECONDS = 0.5


class Feed:
    """Steps of a subscription: the events after a position, and how long to wait when there are none.

    Args:
        read_batch: ``read_batch(after, limit, held)``: up to ``limit`` events after position ``after``; with
            ``held``, the hash the event at ``after`` had when it was delivered (or as the caller saved it), read
            with them (one read), and ``None`` instead of them if the log does not hold that event.
        last_commit: changes with every commit to the store, by any process.
    """

    def __init__(self, read_batch: Callable[[int, int, str | None], list[RecordedEvent] | None],
                 last_commit: Callable[[], int]) -> None:
        self._read_batch = read_batch
        self._last_commit = last_commit

    def steps(self, after: int, timeout: float | None, unavailable_timeout: float | None = None,
              after_hash: str | None = None) -> Iterator[RecordedEvent | float]:
        """Each event after ``after`` in order, and, when caught up, how many seconds to wait (a float)
        before looking again; the caller waits that long or until this process commits. Ends once
        ``timeout`` seconds pass without a new event (never, with ``None``). While the server cannot be
        reached it waits too, and raises ``StoreUnavailable`` once that lasted ``unavailable_timeout``
        seconds (never, with ``None``) or ``timeout`` ran out. With ``after_hash``, the hash the event at
        ``after`` had when the caller handled it, every read checks that event as it checks one delivered, and
        raises ``FeedDiverged`` if the log does not hold it."""
        position = after
        # The hash of the event at ``position``: the caller's while ``resumed``, until this feed delivered one.
        delivered = after_hash
        resumed = after_hash is not None
        idle_since = time.monotonic()
        unreachable_since: float | None = None
        while True:
            seen = self._last_commit()  # before reading: a commit after the read changes it; raises once closed
            try:
                batch = self._read_batch(position, BATCH, delivered)
            except StoreUnavailable:
                now = time.monotonic()
                if unreachable_since is None:
                    unreachable_since = now
                deadlines = []
                if unavailable_timeout is not None:
                    deadlines.append(unreachable_since + unavailable_timeout)
                if timeout is not None:
                    deadlines.append(idle_since + timeout)
                remaining = min(deadlines, default=math.inf) - now
                if remaining <= 0:
                    raise
                yield min(RETRY_SECONDS, remaining)
                continue
            unreachable_since = None
            if batch is None:
                raise FeedDiverged(_diverged(position, resumed))
            if batch:
                yield from batch
                position, delivered = batch[-1].position, batch[-1].hash
                resumed = False
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


def _diverged(position: int, resumed: bool) -> str:
    """What a feed that finds the log without the event at ``position`` says: what happened, and what to do."""
    if resumed:
        return (f"the log does not hold event {position} with the hash saved for it (it ends before it, or another "
                f"event took its position: a failover or a restore lost it, or the position comes from another "
                f"store): the events after it here do not follow those handled; rebuild what was derived from the "
                f"feed from a position both agree on (0, or an earlier one whose event still has its saved hash)")
    return (f"the log no longer holds event {position} as this subscription delivered it (a failover or a restore "
            f"lost it): subscribe again from a position both agree on")
