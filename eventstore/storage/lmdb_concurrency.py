"""How the threads of one process share an LMDB environment: the resize gate, the writers' lock, group commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .._errors import StoreClosed, StoreGrowthBlocked
from .protocol import BeforeCommit, WriteTransaction


class Gate:
    """Many transactions at once, or one map resize alone."""

    def __init__(self) -> None:
        # Every read enters and leaves: it takes the lock itself (a C call) and the condition only to wait.
        self._lock = threading.Lock()  # never taken twice by one thread: no RLock
        self._condition = threading.Condition(self._lock)
        self._active = 0
        self._resizing = False
        self._owner: int | None = None
        self._held = threading.local()

    def enter_shared(self) -> None:
        held = self._held
        count = getattr(held, "count", 0)
        with self._lock:
            # The thread that holds the gate alone may still open transactions (vacuum reopens databases), and so
            # may one that holds a transaction already: a resize waits for that one to end, so waiting here for
            # the resize would never end.
            while self._resizing and not count and self._owner != threading.get_ident():
                self._condition.wait()
            self._active += 1
        held.count = count + 1

    def held_here(self) -> bool:
        """Whether the calling thread holds the gate shared: a transaction of its own is open."""
        return bool(getattr(self._held, "count", 0))

    def leave_shared(self) -> None:
        self._held.count -= 1
        with self._lock:
            self._active -= 1
            if not self._active and self._resizing:  # only a resize waits for the last one out
                self._condition.notify_all()

    @contextmanager
    def exclusive(self, path: object) -> Iterator[None]:
        """The gate alone, once every transaction has ended (``path`` names the store in the error).

        Raises:
            StoreGrowthBlocked: the calling thread holds a transaction open: waiting for it would never end.
        """
        if self.held_here():
            raise StoreGrowthBlocked.holding(path)
        with self._condition:
            while self._resizing:
                self._condition.wait()
            self._resizing = True
            while self._active:
                self._condition.wait()
            self._owner = threading.get_ident()
        try:
            yield
        finally:
            with self._condition:
                self._resizing = False
                self._owner = None
                self._condition.notify_all()


class WriteLock:
    """The writers' lock, re-entrant, that can tell whether the calling thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True) -> bool:
        if not self._lock.acquire(blocking):
            return False
        self._owner = threading.get_ident()
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        return self._owner == threading.get_ident()

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Member:
    """One body waiting for its group commit, then its outcome."""

    __slots__ = ("body", "before_commit", "holds_open", "done", "_ok", "_value", "wake")

    def __init__(self, body: Callable[[WriteTransaction], object], before_commit: BeforeCommit | None,
                 holds_open: bool = False) -> None:
        self.body = body
        self.before_commit = before_commit
        #: Its thread holds a transaction of the store open (see ``GroupQueue.refusing_held``).
        self.holds_open = holds_open
        self.done = False
        self._ok = False
        self._value: object = None
        #: Set when the member is committed, or its thread should take the lead; made only by a thread that waits.
        self.wake: threading.Event | None = None

    def settle(self, ok: bool, value: object) -> None:
        self._ok, self._value = ok, value
        self.done = True

    def refuse(self, error: BaseException) -> None:
        """Settle it with ``error`` uncommitted, and wake its thread."""
        self.settle(False, error)
        if self.wake is not None:
            self.wake.set()

    def outcome(self) -> object:
        if not self._ok:
            assert isinstance(self._value, BaseException)
            raise self._value
        return self._value


class GroupQueue:
    """Group commit, as RocksDB's WriteThread: the bodies waiting for the writers' lock, and the hand-over.

    The thread holding the writers' lock leads: it takes every queued body (its own among them) and
    commits them in one transaction with one flush, then wakes the followers it committed, and, once the
    lock is free, the first body still queued, whose thread leads the next group. A lone writer finds
    the lock free and waits for nobody.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[Member] = []
        #: The errors of the growths and the close under way (``refusing_held``), in the order they began.
        self._refusals: list[Callable[[], BaseException]] = []

    def join(self, member: Member, write_lock: WriteLock) -> bool:
        """Queue ``member``; True once this thread holds ``write_lock`` (it leads), False once a leader
        has committed the member."""
        if write_lock.acquire(blocking=False):
            self._enqueue(member)  # no leader can take it before this thread does: it holds the lock
            return True
        wake = member.wake = threading.Event()
        self._enqueue(member)
        while not write_lock.acquire(blocking=False):
            wake.wait()
            wake.clear()
            if member.done:
                return False
        return True

    def _enqueue(self, member: Member) -> None:
        with self._lock:
            if member.holds_open and self._refusals:
                member.refuse(self._refusal())
                return
            self._queued.append(member)

    @contextmanager
    def refusing_held(self, error: Callable[[], BaseException]) -> Iterator[None]:
        """While the map grows or the store closes: the members whose threads hold a transaction open, queued or
        queuing meanwhile, are refused with ``error()``. The growth (or close) waits for their transactions to end,
        and they wait for the writers' lock, whose holder grows the map or waits for the growth (or close) to begin
        its write: neither would ever go on. These may overlap (a growth adopting another process's growth, a close
        waiting for a growth): refused until the last ends, with the error ``_refusal`` chooses."""
        with self._lock:
            self._refusals.append(error)
            for member in self._queued:
                if member.holds_open:
                    member.refuse(self._refusal())
            self._queued = [member for member in self._queued if not member.done]
        try:
            yield
        finally:
            with self._lock:
                self._refusals.remove(error)

    def _refusal(self) -> BaseException:
        """The error of a member refused while growths or a close are under way: the close's whenever one is (the
        store closes whatever ends first, so the caller must not give the write again), else the latest growth's."""
        errors = [error() for error in self._refusals]
        return next((error for error in errors if isinstance(error, StoreClosed)), errors[-1])

    def take(self, kind: BeforeCommit | None) -> list[Member]:
        """Every queued member of ``kind`` (its ``before_commit``), in arrival order (their commit order)."""
        with self._lock:
            queued = self._queued
            group = [member for member in queued if member.before_commit == kind]
            # Most often all of them (a lone writer's own): the rest is then none, without a second pass.
            self._queued = [] if len(group) == len(queued) else [member for member in queued
                                                                  if member.before_commit != kind]
        return group

    def requeue(self, members: list[Member]) -> None:
        """Put members of a failed group back at the front, to be committed by the next leader."""
        with self._lock:
            self._queued[:0] = members

    def wake_next(self) -> None:
        """Wake the first queued member's thread to take the lead (call after releasing the lock)."""
        with self._lock:
            head = self._queued[0] if self._queued else None
        if head is not None and head.wake is not None:
            head.wake.set()


class CommitListeners:
    """What to call after each commit of this process (subscriptions waiting for new events)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add(self, listener: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def stop() -> None:
            with self._lock:
                self._listeners = [other for other in self._listeners if other is not listener]

        return stop

    def notify(self) -> None:
        for listener in self._listeners:  # a copy: add and stop replace the list
            listener()
