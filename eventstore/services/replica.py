"""A host's replica of a shared log: the store's storage when its log lives on a server (``sharedlog``).

``ReplicaStorage`` implements the storage protocol over a local engine (LMDB), so the store above it runs
unchanged: its commands decide against the replica, its queries read the replica. Two things differ:

* **A write that records events** (or bookkeeping that must be unique across hosts) runs its body in a
  local write transaction that captures what the body wrote to the log and the bookkeeping spaces
  (``write_capture``), and before the local commit hands that to the shared log, with each session's version
  as the body decided against it (having caught up first, without the replica's write lock, with the commits of
  other hosts it heard of as it came to decide, and in its own transaction with those heard of since). The engine
  commits the writes that threads give at once as one group (``GroupCommitting``):
  their commands go to the shared log in one call (``SharedLog.commit_many``: one transaction, one flush),
  each accepted or refused alone. When the shared log put every command's events where the replica did
  (nobody committed in between: same positions, same chain head), the local transaction commits as it is.
  Otherwise it is rolled back and the replica catches up from the shared log, which brings the accepted
  commands' events back with the positions they got there. A command alone commits the replica before the
  server's flush and is acknowledged after it (``SharedLog.unflushed``), so the replica's write lock is not held
  through the flush; after a flush that failed, the next command and read check the replica against the server
  first. A refusal (a session moved on, a record taken)
  catches up and runs that command's body again, a bounded number of times: the body then decides against
  the current session, and a caller's ``expected_version`` is checked against it.
* **A read** first catches the replica up to the shared log's head: a host reads its own writes, and
  everyone's after one round trip. Catching up replicates (``Replication.replicate_batch``): every hash is
  checked, so a replica that diverged from the shared log (a failover that lost commits) is detected, and
  rebuilt from the shared log with progress. While the watcher listens and the replica holds the head it last
  heard of, nothing can have changed but a commit whose notification is still in flight: the read skips the
  round trip. Without a listener (the server away, a connection that dropped) every read asks the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs

from .._audit import Progress
from .._codec import EncodedEvent
from .._errors import (
    EventStoreError,
    ReplicationMismatch,
    StoreBusy,
    StoreClosed,
    StoreUnavailable,
    StoreUsedAfterFork,
    WrongExpectedVersion,
)
from .._folding import to_recorded
from .._log import StoredEvent
from .._stored_dictionary import StoredDictionary
from ..events import RecordedEvent
from ..sharedlog import (
    Commit,
    Committed,
    HeadMoved,
    RecordTaken,
    SharedEvent,
    SharedLog,
    SharedRecord,
)
from ..storage import (
    BeforeCommit,
    GroupCommitting,
    Outcome,
    ReadTransaction,
    Space,
    StorageUsage,
    VacuumRewrite,
    WriteTransaction,
)
from .write_capture import COPIES_SESSIONS, Capture, CapturingTransaction

__all__ = ["ReplicaStorage", "ReplicaBinding", "ATTEMPTS", "BATCH"]

T = TypeVar("T")

#: How many times a write is decided again after the shared log refused it (a session moved on).
ATTEMPTS = 50
#: Events fetched per round trip while catching up.
BATCH = 1000
#: How long the watcher waits for a commit before it asks the server for the head (a lost notification, a dropped
#: connection); without a subscriber, how long it leaves the notifications to the reads and commands that drain them.
QUIET_SECONDS = 1.0
_LOG_META = "log.meta"  # where the replica's own compression dictionary lives (the shared log stores payloads plain)
#: In ``log.meta``, which a rebuild keeps: how many times the replica was emptied and filled again. Processes that
#: share the replica directory compare it with the count they last saw, to drop what they decoded before a rebuild.
_REBUILDS = b"replica.rebuilds"


@attrs.frozen
class ReplicaBinding:
    """What the replica needs of the store above it: the local log's head, the replication of a batch of
    events (hash-checked) in a write transaction, the reopening of the store's components (dropping
    what they cached) after the replica was emptied to be rebuilt, and a session's version in the local log."""

    head: Callable[[ReadTransaction], tuple[int, bytes, int]]
    #: ``head``, read in the transaction a command is about to append in (its append takes this read).
    head_before_append: Callable[[WriteTransaction], tuple[int, bytes, int]]
    replicate: Callable[[WriteTransaction, Sequence[RecordedEvent]], int]
    reopen: Callable[[], None]
    version: Callable[[ReadTransaction, str], int]


class _Refused(Exception):
    """The shared log refused the write: the local transaction rolls back; catch up and decide again."""

    def __init__(self, cause: EventStoreError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Again(Exception):
    """The write's group was not committed (a batchmate's command went elsewhere), and its command shared nothing or
    was not sent (``_sendable``): run it again, in a group of its own."""


class _Behind(Exception):
    """The write's first attempt found its replica behind the head heard of once it held the replica's lock: the body
    did not run; catch up, whose read of the server needs no lock and whose commits are kept whatever becomes of the
    command, then decide. (Decided in the command's transaction, a command that another host's commit during its call
    sent elsewhere would roll them back, and the catch-up after it would replicate them again.)"""


class _ReplicatedApart(Exception):
    """A later attempt's body, finding its replica a batch or more behind the head heard of, replicated a batch in
    its transaction and ran nothing else: returned, not raised, so that its transaction commits them whatever
    becomes of the command (``_durably`` raises it then)."""


class _Unrecorded(Exception):
    """The body refused the command (``error``) after it found no record for it here (``missed``: the shared records
    it read that the replica lacks). Another host may hold one: a retry with an idempotency key another host
    answered, refused on the replica alone (a stale ``expected_version``), would never reach the server to meet it.
    Ask the server for them before refusing."""

    def __init__(self, error: EventStoreError, missed: list[tuple[str, bytes]]) -> None:
        super().__init__(str(error))
        self.error = error
        self.missed = missed


class _Unbound(Exception):
    """Another thread unbound the store to open its components again (a rebuild found, a vacuum): the body did not
    run; wait for the store to bind again, then decide."""


class _Rebuilt(Exception):
    """Another process sharing the replica directory rebuilt it since this store bound to it (emptied, maybe not yet
    refilled): the body did not run; catch up, which opens the store's components again, then decide."""


class _Diverged(Exception):
    """The replica, caught up in a write's transaction, does not match the shared log: the body did not run; catch up
    (which rebuilds the replica), then decide."""


class _Shipment:
    """What became of one write's command on the shared log, across the engine's runs of its body (it runs it
    again after growing its map): once accepted, the command must not be sent again."""

    def __init__(self) -> None:
        self.accepted = False
        self.result: object = None
        self.in_doubt = False  # its call was under way when the group's leader stopped
        self.flushed: Callable[[], None] = _nothing  # waits for its call's flush (``SharedLog.unflushed``)


@attrs.frozen
class _Pending:
    """A body's outcome waiting for the shared log: its result, its commit, and where the replica put its events
    (first and last position, the last one's hash; ``None`` for bookkeeping alone)."""

    result: object
    commit: Commit
    decided: tuple[int, int, bytes] | None
    shipment: _Shipment
    #: A pinned commit whose payloads name no position of its own (a redaction's): it may be pinned again further on.
    movable: bool = False


class _Elsewhere(Exception):
    """The shared log recorded the write at other positions than the replica's: roll back, then catch up."""

    def __init__(self, result: object, records: tuple[SharedRecord, ...], head: int | None) -> None:
        super().__init__("recorded elsewhere")
        self.result = result
        self.records = records
        self.head = head  # the shared log's head right after the write (``None``: not known)


class _HeldRead:
    """A read transaction already begun (``ReplicaStorage._read_held``), as the context manager a read returns."""

    __slots__ = ("_reading", "_txn")

    def __init__(self, reading: AbstractContextManager[ReadTransaction], txn: ReadTransaction) -> None:
        self._reading = reading
        self._txn = txn

    def __enter__(self) -> ReadTransaction:
        return self._txn

    def __exit__(self, *exc_info: Any) -> None:
        self._reading.__exit__(*exc_info)


class ReplicaStorage:
    """The storage of a store whose log is shared: a local replica engine plus the shared log.

    Args:
        replica: the local engine; released with this storage.
        shared: the shared log; released with this storage.
        progress: called as ``progress(events_done, events_total)`` while the replica is filled or rebuilt.
    """

    def __init__(self, replica: GroupCommitting, shared: SharedLog, progress: Progress | None = None,
                 readonly: bool = False) -> None:
        self._inner = replica
        self._spaces: dict[str, Space] = {}  # every space the store opened: a rebuild empties them all
        self._shared = shared
        self._progress = self.reporting(progress)
        self.path: Path = self._inner.path
        self.readonly = readonly
        self.durability = self._inner.durability
        self._binding: ReplicaBinding | None = None
        # A rebuild binds again, catching up. Lock order: this lock before the replica's write lock, never after
        # (a vacuum holds it throughout, as a catch-up does before it writes): the other order deadlocks.
        self._catching_up = threading.RLock()
        self._begun = self._finished = 0  # catch-ups begun, and the number of the latest one finished
        self._local = threading.local()  # .reporting: this thread runs the progress callback
        # The threads that write the replica themselves (catching up): their reads and writes go to it directly. A
        # set rather than a thread-local flag, which every read would look up (a fifth of a read's own cost).
        self._appliers: set[int] = set()
        self._head = 0  # the shared log's head: the latest this host heard of, committed or caught up to
        # A flush failed after the replica committed its command: until a catch-up checks the replica against the
        # server (which may have lost the command, crashing before the flush), reads and commands ask the server.
        self._unsure = False
        self._heard = threading.Lock()  # raising ``_head`` from several threads
        self._listening = False  # the watcher listens: every commit past ``_head`` is heard of (``_heard_head``)
        self._went_back = False  # the watcher saw the server's head behind one it saw before: catch up to check
        self._watcher: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        # Wakes a quiet watcher: a subscriber came (it wakes at every commit again), the store closes, or a read found
        # its listening connection closed by the server (it connects again now, not at its next look).
        self._wake = threading.Event()
        self._released = False
        self._rebuilds: bytes | None = None  # the replica's rebuild count when this process bound to it
        # ``_holds``' answer for the latest state read: (binding, snapshot id, head position, rebuild count unchanged).
        self._known: tuple[ReplicaBinding | None, int, int, bool] = (None, -1, 0, False)
        self._bound = threading.Condition()  # a thread reopening the store unbound it: other threads' writes wait
        self._rebinding: int | None = None  # that thread (its components' own writes stay on the replica)
        self._turn_file = _turn_file(self.path)  # the catch-ups' turns among the processes sharing the directory
        self._turn_file_closing = threading.Lock()  # a turn takes its own descriptor of it, never one being closed
        self._pid = os.getpid()  # a forked child's calls are refused before they wait for a lock of this storage

    def reporting(self, progress: Progress | None) -> Progress | None:
        """``progress`` as the store should call it: a command it gives while this thread opens the store's
        components again (a rebuild, a vacuum) raises ``StoreBusy``. The thread binds them, and catches the replica
        up, only once the callback returns, so the command cannot wait for that; decided before, it would commit to
        the replica alone (never reaching the shared log) or against a replica still being refilled."""
        if progress is None:
            return None

        def report(done: int, total: int) -> None:
            reporting, self._local.reporting = getattr(self._local, "reporting", False), True
            try:
                progress(done, total)
            finally:
                self._local.reporting = reporting

        return report

    @property
    def replica(self) -> GroupCommitting:
        """The local engine that holds the replica."""
        return self._inner

    def bind(self, binding: ReplicaBinding) -> None:
        """Connect the store above; then fill the replica up to the shared log's head."""
        self._binding = binding
        self._meta = self.space(_LOG_META)
        self._dictionary = StoredDictionary(self._meta)
        with self._inner.read() as txn:
            self._rebuilds = txn.get(self._meta, _REBUILDS)
        self.catch_up()

    # -- the storage protocol -------------------------------------------------------------

    def space(self, name: str) -> Space:
        self._spaces[name] = self._inner.space(name)
        return self._spaces[name]

    def read(self) -> AbstractContextManager[ReadTransaction]:
        if self._appliers and threading.get_ident() in self._appliers:
            return self._inner.read()
        binding = self._binding
        held = None if binding is None else self._read_held(binding)
        return self._current_read() if held is None else held

    def _read_held(self, binding: ReplicaBinding) -> _HeldRead | None:
        """A read of the replica if it holds the latest head the listening watcher heard of (most reads: no round
        trip, and no generator frame around it); ``None``: catch up first."""
        heard = self._heard_head()
        if heard is None:
            return None
        reading = self._inner.read()
        txn = reading.__enter__()
        try:
            known = self._known  # ``_holds``, without its call for the state it last read
            if ((known[1] == txn.snapshot_id() and known[0] is binding and known[3] and known[2] >= heard)
                    or self._holds(txn, binding, heard)):
                return _HeldRead(reading, txn)
        except BaseException:
            reading.__exit__(*sys.exc_info())
            raise
        reading.__exit__(None, None, None)
        return None

    @contextlib.contextmanager
    def _current_read(self) -> Iterator[ReadTransaction]:
        """A read of the replica, caught up first unless it holds the latest head the listening watcher heard of.

        While another thread opens the store's components again, the read waits for them to bind: the replica may
        be emptied for a rebuild, or refilled by another process, and nothing catches it up before they bind."""
        if self._binding is None and self._unbound_here():  # this thread opens them: it reads what is there
            self._watch()  # a store that reads listens from its first read on (its opening's)
            with self._inner.read() as txn:
                yield txn
                return
        binding = self._binding
        held = None if binding is None else self._read_held(binding)  # bound by another thread meanwhile
        if held is not None:
            with held as txn:
                yield txn
                return
        self._watch()  # a store that reads listens from its first read on
        self.catch_up(self._heard_head())
        with self._inner.read() as txn:
            yield txn

    @property
    def listening(self) -> bool:
        """Whether reads skip the server: the watcher listens for commits, with the head it last saw."""
        return self._listening

    def _heard_head(self) -> int | None:
        """The latest head this host heard of, with the commits whose notifications came since the watcher last
        looked (``None``: not listening, or a head gone back or a flush failed since: ask the server)."""
        if not self._listening or self._went_back or self._unsure:
            return None
        position = self._shared.heard(self._head)
        if position is None:  # the listener is gone (the server restarted, say), or stuck: have the watcher look
            self._wake.set()
            return None
        if position > self._head:  # most reads heard nothing new: no call for it, since every read passes here
            self._raise_head(position)
        return self._head

    def _raise_head(self, position: int) -> None:
        """The shared log's head is at least ``position``."""
        if position <= self._head:  # nothing new: the lock is not taken (reads check this before the call)
            return
        with self._heard:
            self._head = max(self._head, position)

    def write(self, body: Callable[[WriteTransaction], T]) -> T:
        if self._appliers and threading.get_ident() in self._appliers:
            return self._inner.write(body)
        last: EventStoreError | None = None
        contended: list[str] = []  # sessions whose turn to take: the race to them was lost twice
        alone = False  # whether it runs in a group of its own, which no batchmate's command can roll back
        replicated_apart = False  # whether it caught up apart from the command once (``_Behind``, ``_ReplicatedApart``)
        attempt = 0  # the times this write was refused, or failed on a replica that then moved
        if getattr(self._local, "reporting", False) and self._rebinding == threading.get_ident():
            raise StoreBusy("a command given from rebuild_progress while the store opens again on a rebuilt or "
                            "vacuumed replica cannot reach the server before the store is bound, after the callback "
                            "returns; nothing was recorded: give it once the call that rebuilt or vacuumed returns")
        while attempt < ATTEMPTS:
            if self._binding is None and self._unbound_here():
                return self._inner.write(body)
            shipment = _Shipment()
            decided_at: list[tuple[int, bytes]] = []  # the replica's head the body decided against
            attempted = functools.partial(self._attempt, body=body, shipment=shipment, decided_at=decided_at,
                                          apart=not replicated_apart)
            try:
                if not contended:
                    if self._unsure:  # a retry must not be answered from a record the server may have lost
                        self.catch_up()
                    return self._durably(shipment, attempted, self._own_group() if alone else self._ship)
                with self._shared.turn(contended):
                    self.catch_up()  # nobody else can move these sessions now: decide on their latest
                    # A group of its own, led by this thread: its call goes through the turn's connection.
                    return self._durably(shipment, attempted, self._own_group())
            except _Behind:
                replicated_apart = True  # once: under a stream of commits, the replica is always a little behind
                self.catch_up(self._heard_by_commands())
                continue
            except _ReplicatedApart:
                replicated_apart = True  # kept whatever becomes of the command: decide again on the caught-up replica
                continue
            except _Again:
                # Rolled back for a batchmate's sake, not refused: it spends no attempt. Under a stream of
                # commands that go elsewhere (another host's writes), every group it joins may be rolled back.
                alone = True
                continue
            except _Unbound:
                continue  # nothing ran: wait for the binding (above), then decide
            except (_Rebuilt, _Diverged):
                self.catch_up()  # nothing ran: bind to the refilled replica (or rebuild it), then decide
                continue
            except _Elsewhere as elsewhere:
                self._settle(elsewhere.records, elsewhere.head)
                return cast(T, elsewhere.result)
            except _Unrecorded as unrecorded:
                found = self._shared.records(unrecorded.missed)
                if found:  # another host's first call recorded it: kept here, the body answers from it
                    self._settle(found, None)
                    last = unrecorded.error
                    attempt += 1
                    continue
                last = self._refused_here(unrecorded.error, decided_at)
            except _Refused as refused:
                last = refused.cause
                if isinstance(last, RecordTaken):  # another host's retry recorded it: answer as it did
                    self._settle((attrs.evolve(last.record, value=last.value),), None)
                elif isinstance(last, WrongExpectedVersion) and attempt >= 1:
                    contended = [last.key]
                elif not self._moved(decided_at):
                    time.sleep(0.001)  # the session moved on at a commit the server does not show yet
            except WrongExpectedVersion as wrong:
                last = self._refused_here(wrong, decided_at)
            attempt += 1
        assert last is not None  # the loop ends after a refusal or a failure only
        raise last

    def _refused_here(self, error: EventStoreError, decided_at: list[tuple[int, bytes]]) -> WrongExpectedVersion:
        """A command the body refused on the replica: raised, unless it is a caller's ``expected_version`` that a
        replica that has moved since may answer otherwise (returned: decide again)."""
        if isinstance(error, WrongExpectedVersion) and self._moved(decided_at):
            return error
        raise error from None  # the caller's error, not the loop's exception it came with

    def _own_group(self) -> BeforeCommit:
        """The step of a write that commits in a group of its own: a step no other write names."""
        return lambda outcomes: self._ship(outcomes)

    def _durably(self, shipment: _Shipment, attempted: Callable[[WriteTransaction], T | _Pending | _ReplicatedApart],
                 step: BeforeCommit) -> T:
        """The write's result once its command is durable on the shared log: its call returned before the flush
        (so that the replica's write lock is not held through it), and is waited for here, even when the write
        raises (a refusal, a command recorded elsewhere), after the replica committed."""
        try:
            result = self._inner.write(attempted, step)
            if isinstance(result, _ReplicatedApart):
                raise result
            return cast(T, result)
        finally:
            try:
                shipment.flushed()
            except EventStoreError:
                self._unsure = True  # the replica may hold a commit the server lost: ask it before trusting one
                raise

    def _unbound_here(self) -> bool:
        """Whether a write or a read stays on the replica: the store's components open on this thread, before they
        bind. Another thread waits for them: its write, decided without a binding, would never reach the shared
        log, and its read would find the replica as it was left, not caught up (emptied, if it is rebuilt)."""
        return self._waited_binding() is None

    def _waited_binding(self) -> ReplicaBinding | None:
        """The store's binding, once another thread that opens its components again bound them (``None``: the
        components open on this thread, or have not bound yet)."""
        self._refuse_if_forked()
        with self._bound:
            while self._binding is None and self._rebinding not in (None, threading.get_ident()):
                self._bound.wait()
            return self._binding

    @contextlib.contextmanager
    def _unbound(self) -> Iterator[None]:
        """The store unbound while this thread opens its components again (a vacuum, a rebuild).

        If they did not bind again (a vacuum refused, a reopening that failed), the binding is put back: the old
        components' handles live on, and unbound, the store would keep its commands on the replica."""
        with self._bound:
            binding, self._binding = self._binding, None
            rebinding, self._rebinding = self._rebinding, threading.get_ident()
        try:
            yield
        finally:
            with self._bound:
                if self._binding is None:
                    self._binding = binding
                self._rebinding = rebinding
                self._bound.notify_all()

    def _heard_by_commands(self) -> int:
        """The latest head a command knows the shared log reached: heard of, or (not listening) this host's own."""
        heard = self._heard_head()
        return self._head if heard is None else heard

    def _moved(self, decided_at: list[tuple[int, bytes]]) -> bool:
        """Catch up; whether the replica's head is now another than the one a refused body decided against: its
        position, or its hash (the group that body decided in was rolled back, and the position its batchmates'
        events had may now hold another host's)."""
        self.catch_up()
        binding = self._binding
        if binding is None or not decided_at:  # another thread reopens the store: decide again once it is bound
            return True
        with self._inner.read() as txn:
            return binding.head(txn)[:2] != decided_at[0]

    def _attempt(self, txn: WriteTransaction, *, body: Callable[[WriteTransaction], T], shipment: _Shipment,
                 decided_at: list[tuple[int, bytes]], apart: bool) -> T | _Pending | _ReplicatedApart:
        if shipment.accepted:  # the engine runs the body again (it grew its map) after the shared log took it
            raise _Elsewhere(shipment.result, (), None)
        if shipment.in_doubt:
            raise StoreUnavailable("the call to the shared log was cut short; the command may or may not have been "
                                   "recorded: retry it with the same idempotency_key")
        binding = self._binding
        if binding is None:  # another thread reopens the store since this write checked its binding
            raise _Unbound
        if txn.get(self._meta, _REBUILDS) != self._rebuilds:
            raise _Rebuilt
        capture = Capture(txn, self._dictionary, binding.version)
        capturing = CapturingTransaction(txn, capture)
        # Read through the body's transaction: the log's append takes this read rather than reading the head again.
        # Kept before the body: it tells whether the replica lacks commits heard of, and a refusal compares it with
        # the head after a catch-up (``_moved``).
        decided_at[:] = [binding.head_before_append(capturing)[:2]]
        if self._heard_by_commands() > decided_at[0][0]:  # the replica lacks commits heard of (other hosts')
            if apart:
                raise _Behind
            if self._catch_up_within(txn, binding, *decided_at[0]) == BATCH:
                return _ReplicatedApart()
            decided_at[:] = [binding.head_before_append(capturing)[:2]]
        try:
            result = body(capturing)
        except EventStoreError as refused:
            if capture.missed:
                raise _Unrecorded(refused, capture.missed) from None
            raise
        commit = capture.commit()
        if commit is None:
            return result
        decided = None
        if capture.events:
            first, last = capture.events[0], capture.events[-1]
            decided = (first.position, last.position, last.hash)
        return _Pending(result, commit, decided, shipment,
                        commit.first_position is not None and not capture.names_own_positions)

    def _catch_up_within(self, txn: WriteTransaction, binding: ReplicaBinding, position: int, last_hash: bytes
                         ) -> int:
        """Replicate, in the write's own transaction, the events after the replica's ``position`` that the server
        holds (up to ``BATCH``; how many): decided on them, the command goes where the replica puts it unless another
        host commits during its call, instead of being rolled back and fetched again. A replica that does not match
        the server is left to the catch-up (which rebuilds it)."""
        head = self._shared.read(position, BATCH)
        self._raise_head(head.position)
        if head.position < position or (head.position == position and head.hash != last_hash):
            raise _Diverged
        try:
            return binding.replicate(txn, _after(head.events, position))
        except ReplicationMismatch:
            raise _Diverged from None

    def _ship(self, outcomes: list[Outcome]) -> tuple[list[Outcome], bool]:
        """The step before a group's local commit: the group's commands to the shared log in one call.

        The local transaction commits when the shared log put every command's events where the replica did;
        otherwise nothing of it is kept, and each caller learns what became of its command: recorded elsewhere
        (catch up), refused (decide again), or the call's failure, which reaches every command of the call.
        """
        pending = [value for ok, value in outcomes if ok and isinstance(value, _Pending)]
        if not pending:
            return outcomes, True
        sent = _sendable(pending)
        for waiting in sent:
            waiting.shipment.in_doubt = True
        try:
            with self._shared.unflushed() as flushed:
                for waiting in sent:
                    waiting.shipment.flushed = flushed
                answers: list[Committed | EventStoreError] = self._shared.commit_many(
                    [self._pinned_again(p) for p in sent])
        except EventStoreError as failed:
            answers = [failed] * len(sent)
            kept = False
        else:
            kept = len(sent) == len(pending) and all(isinstance(answer, Committed) and waiting.decided in (
                None, (answer.first_position, answer.head_position, answer.head_hash))
                for waiting, answer in zip(sent, answers, strict=True))
        answered = {id(waiting): answer for waiting, answer in zip(sent, answers, strict=True)}
        settled: list[Outcome] = []
        for ok, value in outcomes:
            answer = answered.get(id(value)) if ok else None
            if answer is None:
                settled.append((ok, value) if kept or not ok else (False, _Again()))
                continue
            assert isinstance(value, _Pending)
            if isinstance(answer, Committed):
                value.shipment.accepted, value.shipment.result, value.shipment.in_doubt = True, value.result, False
                elsewhere = _Elsewhere(value.result, value.commit.records, answer.head_position)
                settled.append((True, value.result) if kept else (False, elsewhere))
            elif isinstance(answer, (WrongExpectedVersion, RecordTaken, HeadMoved)):
                value.shipment.in_doubt = False
                settled.append((False, _Refused(answer)))
            else:  # the call failed (its outcome unknown) or the server found a command damaged
                settled.append((False, answer))
        if kept:
            self._raise_head(max((waiting.decided[1] for waiting in pending if waiting.decided), default=0))
        return settled, kept

    def _pinned_again(self, waiting: _Pending) -> Commit:
        """A movable pinned commit (a redaction's) pinned at the shared log's head, when the commits since the head
        it decided at fork no session: there it names the same events (it names none of its own), and it misses no
        fork it would have had to redact. Decided on a busy log (a redaction reads every event's type), it would
        otherwise find the head moved at nearly every try. (Landing elsewhere than the replica put it, it is rolled
        back and fetched again, as a command another host's commit sent elsewhere is.)"""
        commit = waiting.commit
        if not waiting.movable or commit.first_position is None:
            return commit
        decided_after = commit.first_position - 1
        head = self._shared.read(decided_after, BATCH)
        if (head.position <= decided_after or len(head.events) != head.position - decided_after
                or any(event.type_name in COPIES_SESSIONS for event in head.events)):
            return commit  # as it was: the server refuses it if the head moved, and it is decided again
        return attrs.evolve(commit, first_position=head.position + 1)

    def _settle(self, records: Sequence[SharedRecord], head: int | None) -> None:
        """After the shared log recorded a write elsewhere: catch up (to ``head``, the log's head right after the
        write, where known), and keep its records here too."""
        self.catch_up(head)
        if records:
            spaces = {record.space: self._inner.space(record.space) for record in records}

            def keep(txn: WriteTransaction) -> None:
                for record in records:
                    txn.put(spaces[record.space], record.key, record.value)

            self._applying(keep)

    def last_commit(self) -> int:
        self._watch()
        self._heard_head()
        return self._head

    def watch_commits(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._watch()
        self._listeners.append(listener)
        self._wake.set()
        stop_local = self._inner.watch_commits(listener)

        def stop() -> None:
            stop_local()
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def make_room(self, size: int) -> None:
        self._inner.make_room(size)

    def release_freed_pages(self) -> None:
        self._inner.release_freed_pages()

    def file_size(self) -> int:
        return self._inner.file_size()

    def usage(self) -> StorageUsage:
        return self._inner.usage()

    def page_problems(self) -> list[str]:
        return self._inner.page_problems()

    def vacuum(self, reopen: Callable[[], None], rewrite: VacuumRewrite | None = None) -> None:
        self._refuse_if_forked()
        # Held throughout: a catch-up of another thread would wait for the vacuum's write lock while holding what
        # the reopening's catch-up takes (a deadlock); the catch-ups wait for the vacuum instead.
        with self._catching_up:
            self.catch_up()  # redactions other hosts made reach the replica's records (and dictionary) first
            with self._unbound():  # its handles die with the vacuum; ``reopen`` binds the store again
                self._inner.vacuum(functools.partial(self._reopen_vacuumed, reopen), rewrite)

    def _reopen_vacuumed(self, reopen: Callable[[], None]) -> None:
        """``reopen`` once the vacuum swapped the new file in: the vacuum is done, whatever the server does. The
        reopening binds the store, then catches it up; when the server cannot be reached for that, the store stays
        bound to its new components and its next call catches up (the vacuum caught up just before it copied)."""
        try:
            reopen()
        except StoreUnavailable:
            if self._binding is None:  # not bound: the components did not open, which is not the server's doing
                raise

    def release_waits_for_this_thread(self) -> bool:
        return self._inner.release_waits_for_this_thread()

    def release(self) -> None:
        # First: a close refused there (``StoreBusy``, from a thread holding a transaction open) leaves the store
        # open, so its watcher must go on.
        self._inner.release()
        self._released = True
        self._wake.set()  # a quiet watcher ends now
        self._shared.close()
        with self._turn_file_closing:
            turn_file, self._turn_file = self._turn_file, None
        if turn_file is not None:
            os.close(turn_file)  # a turn under way keeps the lock on its own descriptor until it ends

    # -- catching up --------------------------------------------------------------------

    def catch_up(self, heard: int | None = None) -> int:
        """Replicate the shared log's events the replica lacks; how many it applied. Rebuilds a replica that
        diverged from the shared log.

        Threads share the work: a call that finds a catch-up under way waits for it, and returns at once if a
        catch-up that began after the call arrived has finished (it saw every commit acknowledged before).
        ``heard``: a head the caller heard the shared log reach (a command deciding, a read while the watcher
        listens). Such catch-ups of the processes sharing the replica directory take turns, and one that finds the
        replica there (filled by the turn before) asks the server nothing: a host's processes replicate each
        commit once, rather than each reading it from the server and finding it replicated.
        """
        self._refuse_if_forked()
        binding = self._binding
        if binding is None:  # another thread opens the store's components again: its reopening catches up
            binding = self._waited_binding()  # a read that catches up then finds the replica refilled, not emptied
            if binding is None:
                return 0
        arrived = self._begun
        with self._catching_up:
            if self._finished > arrived:
                return 0
            if heard is None:
                return self._checked(binding)
            with self._host_turn():
                if self._reached(binding, heard):
                    return 0
                return self._checked(binding)

    def _refuse_if_forked(self) -> None:
        """Refuse a forked child's call before it waits for a lock of this storage (a catch-up's, the binding's): a
        thread of the parent may have held it at the fork, and no thread of the child would release it."""
        if os.getpid() != self._pid:
            raise StoreUsedAfterFork(
                "this store was opened before fork(); open a new SessionStore in the child process")

    def _checked(self, binding: ReplicaBinding) -> int:
        """A catch-up that asks the server (``catch_up``'s lock held)."""
        self._begun += 1
        number = self._begun
        self._went_back = False  # this catch-up checks the replica's head against the server's
        unsure = self._unsure
        applied = self._fill(binding)
        self._unsure = self._unsure and not unsure  # checked against the server (a flush failed since, maybe)
        self._finished = max(self._finished, number)
        return applied

    def _reached(self, binding: ReplicaBinding, heard: int) -> bool:
        """Whether the replica holds ``heard`` already, and was not rebuilt since this store bound to it."""
        with self._inner.read() as txn:
            return self._holds(txn, binding, heard)

    def _holds(self, txn: ReadTransaction, binding: ReplicaBinding, heard: int) -> bool:
        """Whether the replica, as ``txn`` reads it, holds ``heard`` and was not rebuilt since ``binding`` bound.
        Known once per committed state of the replica (its snapshot id, under one binding: a vacuum's new file may
        number its states anew, and binds again), since every read asks it."""
        snapshot = txn.snapshot_id()
        known = self._known
        if known[0] is not binding or known[1] != snapshot:
            known = (binding, snapshot, binding.head(txn)[0], txn.get(self._meta, _REBUILDS) == self._rebuilds)
            self._known = known
        return known[3] and known[2] >= heard

    @contextlib.contextmanager
    def _host_turn(self) -> Iterator[None]:
        """The turn of a catch-up among the processes sharing the replica directory (an exclusive ``flock``; the
        thread waits for it without the GIL). The lock is taken after ``catch_up``'s and before the replica's
        write lock, by catch-ups that no thread holding those gives (commands and reads): no cycle. The turn locks
        and unlocks a descriptor of its own: the store's may be closed under it, and its number given to another
        file, whose lock an unlock of that number would drop."""
        with self._turn_file_closing:
            own = None if self._turn_file is None else os.dup(self._turn_file)
        if own is None:
            yield
            return
        try:
            fcntl.flock(own, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(own, fcntl.LOCK_UN)  # the file's one lock, which the store's descriptor shares
            os.close(own)

    def _fill(self, binding: ReplicaBinding) -> int:
        applied, filling = 0, False
        while True:
            with self._inner.read() as txn:
                position, last_hash, _ = binding.head(txn)
                rebuilt = txn.get(self._meta, _REBUILDS) != self._rebuilds
            if rebuilt:  # another process sharing the directory rebuilt it: what this one decoded before may be gone
                self._reopen(binding)
                return applied
            head = self._shared.read(position, BATCH)
            self._raise_head(head.position)
            diverged = head.position < position or (head.position == position and head.hash != last_hash)
            filling = filling or position == 0 < head.position or head.position - position > BATCH
            if not diverged and not head.events:
                self._raise_head(position)
                return applied
            try:
                if diverged:
                    raise ReplicationMismatch(f"the replica holds {position} events, the shared log "
                                              f"{head.position}, and their heads differ")
                # Decoded once the write lock is held: another process sharing the replica may have applied some.
                applied += self._applying(lambda txn: binding.replicate(
                    txn, _after(head.events, binding.head(txn)[0])))  # noqa: B023
            except ReplicationMismatch:
                self._rebuild(binding, head.position)
                return applied
            last = head.events[-1].position
            if filling and self._progress is not None:
                self._progress(last, head.position)
            if last == head.position:  # the batch reached the head: no round trip to confirm it
                self._raise_head(last)
                return applied

    def _applying(self, body: Callable[[WriteTransaction], T]) -> T:
        thread = threading.get_ident()
        self._appliers.add(thread)
        try:
            return self._inner.write(body)
        finally:
            self._appliers.discard(thread)

    def _rebuild(self, binding: ReplicaBinding, server_head: int) -> None:
        """The replica diverged from the shared log (a failover lost commits it had seen): empty it, in place
        (every handle stays valid for calls under way), and fill it again."""
        spaces = [space for name, space in self._spaces.items() if name != _LOG_META]

        def empty(txn: WriteTransaction) -> None:
            for space in spaces:
                txn.clear(space)
            count = int.from_bytes(txn.get(self._meta, _REBUILDS) or b"", "big") + 1
            txn.put(self._meta, _REBUILDS, count.to_bytes(8, "big"))

        with self._unbound():  # before it empties: a command of another thread would decide against the emptied one
            self._applying(empty)
            with self._heard:
                self._head = server_head  # lower than the replica's was, maybe: reads wait for the refill
            binding.reopen()

    def _reopen(self, binding: ReplicaBinding) -> None:
        """The store opens its components again, dropping their caches; it binds again, catching up."""
        with self._unbound():
            binding.reopen()

    # -- the watcher: LISTEN, with a poll of the head as the fallback ------------------------

    def _watch(self) -> None:
        with self._heard:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_head, name="eventstore-shared-log", daemon=True)
                self._watcher.start()

    def _watch_head(self) -> None:
        try:
            self._watch_until_released()
        finally:  # however the watcher ends (an error nobody foresaw too), reads ask the server again
            self._listening = False

    def _watch_until_released(self) -> None:
        while not self._released:
            seen = self._head
            try:
                if self._listening and not self._listeners:
                    # Nobody follows the feed: reads and commands drain the notifications themselves
                    # (``_heard_head``), and the watcher looks once a second (a lost notification, a dropped
                    # connection, a head gone back) instead of waking at every commit of every host.
                    self._wake.wait(QUIET_SECONDS)
                    self._wake.clear()
                    position = self._shared.wait(seen, 0.0, self._listen)
                else:
                    position = self._shared.wait(seen, QUIET_SECONDS, self._listen)
            except StoreClosed:
                return
            except EventStoreError:
                self._listening = False  # reads ask the server until the watcher listens again
                time.sleep(0.5)  # the server is away: try again
                continue
            if position < seen:
                self._went_back = True  # commits this host saw are gone (a failover, a restore): reads check
                with self._heard:
                    if self._head == seen:  # wait from the server's head, not for it to pass one that is gone
                        self._head = position
            if position != seen:
                self._raise_head(position)
                for listener in list(self._listeners):
                    listener()

    def _listen(self) -> None:
        self._listening = True


def _sendable(pending: list[_Pending]) -> list[_Pending]:
    """The group's commands to send in its call: all but a movable pinned one (a redaction's) behind commands that
    wrote events. Should the server refuse one of those, other hosts' commits take their positions there, which the
    redaction was decided without and its pin (or ``_pinned_again``) never looks at: a fork of its session among them
    would keep what it removed. Left out, it runs again in a group of its own (``_Again``)."""
    sendable, behind_events = [], False
    for waiting in pending:
        if not (waiting.movable and behind_events):
            sendable.append(waiting)
        behind_events = behind_events or waiting.decided is not None
    return sendable


def _turn_file(directory: Path) -> int | None:
    """The descriptor of the replica directory's lock file for catch-ups (``None`` where it cannot be opened: those
    catch-ups then ask the server each, as they would without it)."""
    path = directory / "catch-up.lock"
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
    return None


def _nothing() -> None:
    """A write that sent nothing has no flush to wait for."""


def _after(events: Sequence[SharedEvent], position: int) -> list[RecordedEvent]:
    """The events after ``position``, decoded."""
    return [_recorded(event) for event in events if event.position > position]


def _recorded(event: SharedEvent) -> RecordedEvent:
    return to_recorded(StoredEvent(event.position, 0, event.session_key, event.version, event.recorded_at,
                                   event.event_id, EncodedEvent(event.type_name, event.schema_version, event.payload),
                                   event.payload_digest, event.hash, event.redacted))
