"""Deferred read models: left behind by commands, brought up to the log by reads.

A deferred read model is one whose upkeep would cost a command too much (the
search index: indexing a message rewrites the summary of each of its terms, a
large share of a durable append; docs/benchmarks.md has the measurement).
Commands commit without touching it; every read of it first brings it up to
date. A few missing events are folded in memory for that one read (read-your-writes
without a write). More are folded in a read transaction and written in a
short write one, so the long part holds no writer up and is not redone when a
write must run again.

``DeferredReadModel`` says what such a model offers; ``Deferred`` keeps one
behind the log and catches it up; ``DeferredReadModels`` holds every registered
one, for what the facade does to all of them (catch up, rebuild, verify).
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from projections.messages import MessageLists
from projections.readmodel import Checkpoint, Checkpoints
from projections.session import Entry, SessionSnapshot

from ._codec import bulk_decoding
from ._errors import EventStoreError, StoreCorrupted, StoreReadOnly
from ._log import EventLog, LoggedEvent
from .storage import ReadTransaction, WriteTransaction

__all__ = ["Batch", "Deferred", "DeferredReadModel", "DeferredReadModels", "SessionTexts"]

R = TypeVar("R")
#: A model's batch of changes held in memory (it is also a view: reads through it see them).
BatchT = TypeVar("BatchT", bound="Batch")
#: What a model's queries read: its stored state through a transaction, or a batch.
ViewT = TypeVar("ViewT")

#: Events folded into a model per batch (a batch holds its changes in memory).
DEFERRED_BATCH = 200_000
#: A read applies up to this many missing events in memory rather than catch the model up on disk.
OVERLAY_UP_TO = 32
#: How often a long fold reports progress, in events.
_PROGRESS_EVERY = 1000
_STREAM_ID = attrgetter("stream_id")

Read = Callable[[], AbstractContextManager[ReadTransaction]]

#: What decoding a model's stored values raises when one is damaged in a way its own checks do not name (a value
#: or key of another size, bytes that are not text, a count that contradicts another, two ids given one term, so
#: that a term is both written and deleted): damage, not a bug to show.
_DAMAGE_RAISES = (struct.error, ValueError, LookupError, OverflowError, TypeError)


@contextmanager
def _damage_named(name: str) -> Iterator[None]:
    """Raise what reading model ``name``'s stored state met as ``StoreCorrupted`` naming the model."""
    try:
        yield
    except EventStoreError:
        raise
    except _DAMAGE_RAISES as exc:
        raise StoreCorrupted(f"the {name} read model is damaged: {exc}") from None


class Write(Protocol):
    """The facade's write: ``body`` in one write transaction, committed."""

    def __call__(self, body: Callable[[WriteTransaction], R]) -> R: ...


class Batch(Protocol):
    """Changes folded in memory, not yet written."""

    def written_bytes(self) -> int:
        """Finish the folding work and build what ``write`` stores (before the write transaction, where it would
        hold writers up, and through the transaction the batch was folded in, still open); return about how many
        bytes of keys and values that is, for which the store makes room first."""


class DeferredReadModel(Protocol[BatchT, ViewT]):
    """What a deferred read model offers. Its checkpoint may lag the log; ``Deferred`` catches it up."""

    #: Stable name, used for its checkpoint and ``rebuild_projections(names=...)``.
    name: str
    #: Bumped whenever its stored form or fold changes: it is then rebuilt on open.
    code_version: int
    #: The event types whose payloads ``fold`` reads; the others reach it with their header alone (not decoded).
    payload_types: frozenset[str]

    def prepare(self, txn: ReadTransaction, fresh: bool = False) -> BatchT:
        """A batch to ``fold`` into through ``txn`` (a read one will do) and ``write`` in another transaction;
        ``fresh``: build from nothing, ignoring what is stored."""

    def fold(self, batch: BatchT, stream_id: int, events: Sequence[LoggedEvent]) -> None:
        """Apply one session's logged events, in order, to a batch."""

    def write(self, batch: BatchT, txn: WriteTransaction) -> None:
        """Write a prepared batch (clearing the stored state first for a fresh one); may run again."""

    def batch(self, txn: WriteTransaction) -> AbstractContextManager[BatchT]:
        """A batch folded and written in ``txn``, written when the block ends."""

    def overlay(self, txn: ReadTransaction, pending: Iterable[tuple[int, Sequence[LoggedEvent]]],
                read_only: bool = False) -> ViewT:
        """The stored state with ``pending`` events applied in memory only (read-your-writes)."""

    def reader(self, txn: ReadTransaction, read_only: bool = False) -> ViewT:
        """The stored state through ``txn``."""

    def clear(self, txn: WriteTransaction) -> None:
        """Drop all stored state."""

    def check_view(self, view: ViewT, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Where the state seen through ``view`` differs from ``sessions`` (stream id → session folded from the log)."""


class Deferred(Generic[BatchT, ViewT]):
    """One deferred read model, kept behind the log and caught up before it is read.

    ``read`` and ``write`` are the facade's transactions (they refuse a closed or
    read-only store as the facade does), ``make_room`` its storage's ``make_room``
    (a batch's write would otherwise fill the map, fail, and run again once it grew),
    and ``release_freed_pages`` its storage's (refused as ``write`` is).
    """

    def __init__(self, model: DeferredReadModel[BatchT, ViewT], log: EventLog, checkpoints: Checkpoints, read: Read,
                 write: Write, make_room: Callable[[int], None], release_freed_pages: Callable[[], None],
                 readonly: bool, path: Path) -> None:
        self.model = model
        self._log, self._checkpoints = log, checkpoints
        self._read, self._write, self._make_room = read, write, make_room
        self._release_freed_pages = release_freed_pages
        self._readonly, self._path = readonly, path

    def log_head(self) -> int:
        """The log's last position."""
        with self._read() as txn:
            return self._log.head(txn)[0]

    def lag(self, txn: ReadTransaction) -> int | None:
        """How far the model is behind the log (0: current); ``None``: another code version built it.

        A model never built (no checkpoint) is empty: it is behind by the whole log.
        """
        checkpoint = self._checkpoints.get(txn, self.model.name)
        if checkpoint is not None and checkpoint[0] != self.model.code_version:
            return None
        return self._log.head(txn)[0] - (0 if checkpoint is None else checkpoint[1])

    def span(self) -> tuple[int, int]:
        """The log positions the next catch-up folds: after its checkpoint (0 when it must be rebuilt), up to the
        log's last position."""
        with self._read() as txn:
            checkpoint = self._checkpoints.get(txn, self.model.name)
            current = checkpoint is not None and checkpoint[0] == self.model.code_version
            return checkpoint[1] if checkpoint is not None and current else 0, self._log.head(txn)[0]

    def built_by_other_code(self) -> bool:
        with self._read() as txn:
            return self.lag(txn) is None

    def pending(self, txn: ReadTransaction) -> Iterator[tuple[int, list[LoggedEvent]]]:
        """The events the model has not applied, in runs of one session's."""
        checkpoint = self._checkpoints.get(txn, self.model.name)
        for stream_id, run in self._runs(txn, 0 if checkpoint is None else checkpoint[1]):
            yield stream_id, list(run)

    def _runs(self, txn: ReadTransaction, after: int) -> Iterator[tuple[int, Iterator[LoggedEvent]]]:
        """The logged events after position ``after`` in runs of one session's, with the payloads the model reads."""
        return itertools.groupby(self._log.read_logged(txn, after, self.model.payload_types), _STREAM_ID)

    def query(self, run: Callable[[ViewT, ReadTransaction], R]) -> R:
        """``run(view, txn)`` on the model as of every committed event (read-your-writes).

        A current model is read as it is. One that lacks a few events (at most
        ``OVERLAY_UP_TO``) is read with them applied in memory, which costs less
        than a durable commit; one further behind is caught up first, then read
        (a read-only store always applies the missing events in memory).
        """
        with _damage_named(self.model.name):
            return self._query(run)

    def _query(self, run: Callable[[ViewT, ReadTransaction], R]) -> R:
        model = self.model
        with self._read() as txn:
            lag = self.lag(txn)
            if lag == 0:
                return run(model.reader(txn, read_only=True), txn)
            if lag is not None and (lag <= OVERLAY_UP_TO or self._readonly):
                return run(model.overlay(txn, self.pending(txn), read_only=True), txn)
            if self._readonly:
                raise StoreReadOnly(f"the {model.name} read model of {self._path} must be rebuilt; "
                                    "open the store writable once")
        self.catch_up()
        with self._read() as txn:
            if self.lag(txn) == 0:
                return run(model.reader(txn, read_only=True), txn)

        def body(txn: WriteTransaction) -> R:  # writers keep the model behind: catch up and read in one transaction
            self.catch_up_in(txn)
            return run(model.reader(txn), txn)

        return self._write(body)

    def catch_up(self, rebuild: bool = False, progress: Callable[[int], None] | None = None) -> int:
        """Bring the model up to the log: fold in a read transaction, write in a short write one.

        ``DEFERRED_BATCH`` events at a time; ``rebuild`` starts from nothing.
        ``progress(position)`` reports the fold; what it raises stops the catch-up and comes through unchanged.
        Returns how many events were applied. Pauses the cyclic collector throughout if the host opted in
        (``pause_gc_while_decoding``): a batch's objects hold no cycles, and its collections free nothing.
        """
        try:
            with bulk_decoding():
                return self._catch_up(rebuild, None if progress is None else _reporting(progress))
        except _ProgressRaised as raised:
            error = raised.__cause__
        assert error is not None
        raise error  # outside the handler, so that the caller's exception keeps its own context

    def _catch_up(self, rebuild: bool, progress: Callable[[int], None] | None) -> int:
        model, applied = self.model, 0
        while True:
            with self._read() as txn, _damage_named(model.name):
                checkpoint = self._checkpoints.get(txn, model.name)
                # A model never built folds the whole log as a rebuild does, reading nothing of its stored state.
                fresh = rebuild or checkpoint is None or checkpoint[0] != model.code_version
                after = 0 if fresh or checkpoint is None else checkpoint[1]
                head = self._log.head(txn)[0]
                if not fresh and after >= head:
                    return applied
                writer = model.prepare(txn, fresh=fresh)
                last = _fold_runs(model, writer, self._runs(txn, after), progress)[0] or after
                size = writer.written_bytes()
            self._make_room(size)
            if self._write(functools.partial(self._write_batch, writer, checkpoint, last)):
                if progress is not None:
                    progress(last)  # again once written: settling and writing a batch take about as long as its fold
                applied += last - after
                rebuild = False
                if last >= head:
                    return applied
                # The next batch rewrites much of what this one did (the heads of the terms both hold): let it reuse
                # the pages this one freed, which LMDB hands out only after a later commit, rather than grow the file.
                self._release_freed_pages()

    def _write_batch(self, batch: BatchT, folded_from: Checkpoint | None, last: int, txn: WriteTransaction) -> bool:
        """Write ``batch``, folded from checkpoint ``folded_from`` up to ``last``, and move the checkpoint.

        ``False``: another catch-up or rebuild got there first; nothing is written (start again from it).
        """
        if self._checkpoints.get(txn, self.model.name) != folded_from:
            return False
        with _damage_named(self.model.name):
            self.model.write(batch, txn)
        self._checkpoints.put(txn, self.model.name, self.model.code_version, last)
        return True

    def catch_up_in(self, txn: WriteTransaction) -> int:
        """Apply every event after the model's checkpoint inside ``txn`` (a write the caller owns)."""
        model = self.model
        checkpoint = self._checkpoints.get(txn, model.name)
        fresh = checkpoint is not None and checkpoint[0] != model.code_version
        if fresh:
            model.clear(txn)
        after = 0 if fresh or checkpoint is None else checkpoint[1]
        with _damage_named(model.name):
            last = self._fold(txn, self._runs(txn, after))
        if fresh or last > after or checkpoint is None:
            self._checkpoints.put(txn, model.name, model.code_version, max(last, after))
        return max(last - after, 0)

    def _fold(self, txn: WriteTransaction, runs: Iterator[tuple[int, Iterator[LoggedEvent]]]) -> int:
        """Fold runs of logged events into the model, ``DEFERRED_BATCH`` at a time; return the last position."""
        last, full = 0, True
        while full:
            with self.model.batch(txn) as writer:
                reached, full = _fold_runs(self.model, writer, runs)
            last = reached or last
        return last

    def checker(self, txn: ReadTransaction) -> _DeferredCheck[BatchT, ViewT]:
        """The model as ``verify`` checks it (a read model's ``check``)."""
        return _DeferredCheck(self, self.lag(txn))


class DeferredReadModels:
    """Every registered deferred read model, for what the facade does to all of them."""

    def __init__(self, registered: Iterable[Deferred[Any, Any]]) -> None:
        self._registered = {deferred.model.name: deferred for deferred in registered}

    def names(self) -> list[str]:
        return list(self._registered)

    def rebuild(self, names: Iterable[str], progress: Callable[[int, int], None] | None = None) -> None:
        """Rebuild the named models from the log, one after the other; ``progress(done, total)`` over all."""
        chosen = [self._registered[name] for name in names]
        if not chosen:
            return
        events = chosen[0].log_head()
        for done, deferred in enumerate(chosen):
            report = None if progress is None else _offset(progress, done * events, len(chosen) * events)
            deferred.catch_up(rebuild=True, progress=report)

    def rebuild_outdated(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Rebuild those built by another code version (on open)."""
        self.rebuild([name for name, deferred in self._registered.items() if deferred.built_by_other_code()],
                     progress)

    def lag(self) -> int:
        """The events the models have yet to fold, all told (one built by another code version: the whole log)."""
        return sum(head - after for after, head in (deferred.span() for deferred in self._registered.values()))

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Bring every model up to the log; how many events they applied, all told.

        ``progress(done, total)``: events folded so far and to fold, over all models.
        """
        if progress is None:
            return sum(deferred.catch_up() for deferred in self._registered.values())
        spans = [deferred.span() for deferred in self._registered.values()]
        total = sum(head - after for after, head in spans)
        applied = done = 0
        for deferred, (after, head) in zip(self._registered.values(), spans):
            applied += deferred.catch_up(progress=_offset(progress, done - after, total))
            done += head - after
        progress(total, total)
        return applied

    def catch_up_in(self, txn: WriteTransaction) -> int:
        """``Deferred.catch_up_in`` of every model."""
        return sum(deferred.catch_up_in(txn) for deferred in self._registered.values())

    def checkers(self, txn: ReadTransaction) -> list[_DeferredCheck[Any, Any]]:
        return [deferred.checker(txn) for deferred in self._registered.values()]


class _ProgressRaised(Exception):
    """What the caller's progress callback raised (its ``__cause__``), carried past ``_damage_named``: a
    ``TypeError`` of the caller's is not damage of the model."""


def _reporting(progress: Callable[[int], None]) -> Callable[[int], None]:
    def report(position: int) -> None:
        try:
            progress(position)
        except Exception as exc:
            raise _ProgressRaised from exc

    return report


def _offset(progress: Callable[[int, int], None], offset: int, total: int) -> Callable[[int], None]:
    return lambda at: progress(offset + at, total)


def _fold_runs(model: DeferredReadModel[BatchT, Any], writer: BatchT,
               runs: Iterator[tuple[int, Iterator[LoggedEvent]]],
               progress: Callable[[int], None] | None = None) -> tuple[int, bool]:
    """Fold runs of one session's logged events into a batch, ``DEFERRED_BATCH`` events at most.

    Returns the last position folded (0: none) and whether the batch filled up
    (then more may follow: ``runs`` goes on where this call stopped).
    """
    last = folded = 0
    for stream_id, run in runs:
        entries = list(run)
        model.fold(writer, stream_id, entries)
        last = entries[-1].position
        folded += len(entries)
        if progress is not None and folded % _PROGRESS_EVERY < len(entries):
            progress(last)
        if folded >= DEFERRED_BATCH:
            break
    if progress is not None and last:
        progress(last)
    return last, folded >= DEFERRED_BATCH


class _DeferredCheck(Generic[BatchT, ViewT]):
    """A model as ``verify`` checks it: as stored when current, else with the missing events in memory."""

    def __init__(self, deferred: Deferred[BatchT, ViewT], lag: int | None) -> None:
        self._deferred, self._lag = deferred, lag
        self.name = deferred.model.name

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        model = self._deferred.model
        if self._lag is None:
            return [f"{model.name}: the read model was built by another code version and must be rebuilt"]
        try:
            with _damage_named(model.name):
                if not self._lag:
                    view = model.reader(txn, read_only=True)
                else:
                    try:
                        view = model.overlay(txn, self._deferred.pending(txn), read_only=True)
                    except EventStoreError as exc:
                        return [f"{model.name}: cannot fold the log into the read model: {exc}"]
                return model.check_view(view, sessions)
        except StoreCorrupted as exc:  # a stored value no check of the model names, met on the way
            return [f"{model.name}: {exc}"]


class SessionTexts:
    """Messages of sessions, read once per query through one transaction (for phrase checks and hits)."""

    def __init__(self, messages: MessageLists, txn: ReadTransaction) -> None:
        self._messages, self._txn = messages, txn
        self._contents: dict[int, list[str]] = {}
        self._entries: dict[int, list[Entry]] = {}

    def entries(self, stream_id: int) -> list[Entry]:
        found = self._entries.get(stream_id)
        if found is None:
            found = self._entries[stream_id] = self._messages.entries(self._txn, stream_id)
        return found

    def __call__(self, stream_id: int) -> list[str]:
        """The contents alone: phrase checks read many sessions and need nothing else."""
        found = self._contents.get(stream_id)
        if found is None:
            found = self._contents[stream_id] = self._messages.contents(self._txn, stream_id)
        return found
