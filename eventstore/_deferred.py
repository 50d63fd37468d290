"""The search index as a deferred read model: left behind by commands, brought up to the log by reads.

Indexing a message inline would add 70-90% to a durable append (``bench_search``
measures it), so a command commits without touching the index and every search
first brings it up to date. A few missing events are folded in memory for that
one read (read-your-writes without a write). More are folded in a read
transaction and written in a short write one, so the long part holds no writer
up and is not redone when a write must run again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, TypeVar

from projections.messages import MessageLists
from projections.readmodel import Checkpoints
from projections.search import SearchIndex
from projections.session import Entry, SessionSnapshot

from .storage import ReadTransaction, WriteTransaction
from ._errors import EventStoreError, StoreReadOnly
from ._folding import LogChange, log_changes
from ._log import EventLog, StoredEvent, stream_runs

__all__ = ["DeferredSearch", "SessionTexts"]

R = TypeVar("R")

#: Events folded into the index per batch (a batch holds its changes in memory).
DEFERRED_BATCH = 200_000
#: A search applies up to this many missing events in memory rather than catch the index up on disk.
OVERLAY_UP_TO = 32
#: How often a long fold reports progress, in events.
_PROGRESS_EVERY = 1000

Read = Callable[[], ContextManager[ReadTransaction]]
Write = Callable[[Callable[[WriteTransaction], R]], R]


class DeferredSearch:
    """The search index, kept behind the log and caught up before it is read.

    ``read`` and ``write`` are the facade's transactions (they refuse a closed or
    read-only store as the facade does).
    """

    def __init__(self, index: SearchIndex, log: EventLog, checkpoints: Checkpoints, read: Read,
                 write: Write, readonly: bool, path: Path) -> None:
        self.index = index
        self._log, self._checkpoints = log, checkpoints
        self._read, self._write = read, write
        self._readonly, self._path = readonly, path

    def lag(self, txn: ReadTransaction) -> int | None:
        """How far the index is behind the log (0: current); ``None``: another code version built it.

        An index never built (no checkpoint) is empty: it is behind by the whole log.
        """
        checkpoint = self._checkpoints.get(txn, self.index.name)
        if checkpoint is not None and checkpoint[0] != self.index.code_version:
            return None
        return self._log.head(txn)[0] - (0 if checkpoint is None else checkpoint[1])

    def built_by_other_code(self) -> bool:
        with self._read() as txn:
            return self.lag(txn) is None

    def pending(self, txn: ReadTransaction) -> Iterator[tuple[int, list[LogChange]]]:
        """The events the index has not applied, in runs of one session's."""
        checkpoint = self._checkpoints.get(txn, self.index.name)
        after = 0 if checkpoint is None else checkpoint[1]
        for stream_id, run in stream_runs(self._log.read_all(txn, after)):
            yield stream_id, list(log_changes(run))

    def query(self, run: Callable[[object, ReadTransaction], R]) -> R:
        """``run(view, txn)`` on the index as of every committed event (read-your-writes).

        A current index is read as it is. One that lacks a few events (at most
        ``OVERLAY_UP_TO``) is read with them applied in memory, which costs less
        than a durable commit; one further behind is caught up first, then read
        (a read-only store always applies the missing events in memory).
        """
        index = self.index
        with self._read() as txn:
            lag = self.lag(txn)
            if lag == 0:
                return run(index.reader(txn, read_only=True), txn)
            if lag is not None and (lag <= OVERLAY_UP_TO or self._readonly):
                return run(index.overlay(txn, self.pending(txn), read_only=True), txn)
            if self._readonly:
                raise StoreReadOnly(f"the search index of {self._path} must be rebuilt; open the store writable once")
        self.catch_up()
        with self._read() as txn:
            if self.lag(txn) == 0:
                return run(index.reader(txn, read_only=True), txn)

        def body(txn: WriteTransaction) -> R:  # writers keep the index behind: catch up and read in one transaction
            self.catch_up_in(txn)
            return run(index.reader(txn), txn)

        return self._write(body)

    def catch_up(self, rebuild: bool = False, progress: Callable[[int], None] | None = None) -> int:
        """Bring the index up to the log: fold in a read transaction, write in a short write one.

        ``DEFERRED_BATCH`` events at a time; ``rebuild`` starts from nothing.
        ``progress(position)`` reports the fold. Returns how many events were applied.
        """
        index, applied = self.index, 0
        while True:
            with self._read() as txn:
                checkpoint = self._checkpoints.get(txn, index.name)
                fresh = rebuild or (checkpoint is not None and checkpoint[0] != index.code_version)
                after = 0 if fresh or checkpoint is None else checkpoint[1]
                head = self._log.head(txn)[0]
                if not fresh and checkpoint is not None and after >= head:
                    return applied
                writer = index.prepare(txn, fresh=fresh)
                last = _fold_runs(index, writer, stream_runs(self._log.read_all(txn, after)), progress)[0] or after
                writer.settle()

            def body(txn: WriteTransaction) -> int | None:
                if self._checkpoints.get(txn, index.name) != checkpoint:
                    return None  # another catch-up or rebuild got there first: start again from it
                index.write(writer, txn)
                self._checkpoints.put(txn, index.name, index.code_version, last)
                return last - after

            done = self._write(body)
            if done is not None:
                applied += done
                rebuild = False
                if last >= head:
                    return applied

    def catch_up_in(self, txn: WriteTransaction) -> int:
        """Apply every event after the index's checkpoint inside ``txn`` (a write the caller owns)."""
        index = self.index
        checkpoint = self._checkpoints.get(txn, index.name)
        fresh = checkpoint is not None and checkpoint[0] != index.code_version
        if fresh:
            index.clear(txn)
        after = 0 if fresh or checkpoint is None else checkpoint[1]
        last = self._fold(txn, self._log.read_all(txn, after))
        if fresh or last > after or checkpoint is None:
            self._checkpoints.put(txn, index.name, index.code_version, max(last, after))
        return max(last - after, 0)

    def _fold(self, txn: WriteTransaction, entries: Iterable[StoredEvent]) -> int:
        """Fold stored events into the index, ``DEFERRED_BATCH`` at a time; return the last position."""
        runs, last, full = stream_runs(entries), 0, True
        while full:
            with self.index.batch(txn) as writer:
                reached, full = _fold_runs(self.index, writer, runs)
            last = reached or last
        return last

    def checker(self, txn: ReadTransaction) -> _IndexCheck:
        """The index as ``verify`` checks it (a read model's ``check``)."""
        return _IndexCheck(self, self.lag(txn))


def _fold_runs(index: SearchIndex, writer: object, runs: Iterator[tuple[int, Iterator[StoredEvent]]],
               progress: Callable[[int], None] | None = None) -> tuple[int, bool]:
    """Fold runs of one session's stored events into a batch, ``DEFERRED_BATCH`` events at most.

    Returns the last position folded (0: none) and whether the batch filled up
    (then more may follow: ``runs`` goes on where this call stopped).
    """
    last = folded = 0
    for stream_id, run in runs:
        entries = list(run)
        index.fold(writer, stream_id, list(log_changes(entries)))  # type: ignore[arg-type]
        last = entries[-1].position
        folded += len(entries)
        if progress is not None and folded % _PROGRESS_EVERY < len(entries):
            progress(last)
        if folded >= DEFERRED_BATCH:
            break
    if progress is not None and last:
        progress(last)
    return last, folded >= DEFERRED_BATCH


class _IndexCheck:
    """The index as ``verify`` checks it: as stored when current, else with the missing events in memory."""

    name = SearchIndex.name

    def __init__(self, search: DeferredSearch, lag: int | None) -> None:
        self._search, self._lag = search, lag

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        index = self._search.index
        if self._lag is None:
            return ["search: the index was built by another code version and must be rebuilt"]
        if not self._lag:
            return index.check_view(index.reader(txn, read_only=True), sessions)
        try:
            view = index.overlay(txn, self._search.pending(txn), read_only=True)
        except EventStoreError as exc:
            return [f"search: cannot fold the log into the index: {exc}"]
        return index.check_view(view, sessions)


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
