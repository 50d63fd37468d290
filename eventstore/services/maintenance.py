"""Keeping the store in order: compaction, rebuilds of the read models, redaction, vacuum, verify and stats.

Read models are rebuilt on open when they are behind the log or were built by
another code version (a deferred one only when of another code version: one
merely behind catches up on its next read).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence

import attrs

from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints, ReadModel, UpgradableReadModel

from .._audit import CheckedModel, Progress, verify
from .._bookkeeping import ImportReceipts
from .._codec import encode_event
from .._deferred import DeferredReadModels, Read
from .._errors import EventStoreError, IncompatibleStore, InvalidArgument, StoreCorrupted, StoreFull, StoreReadOnly
from .._folding import LogChange, RestoredCreationTimes, log_changes, read_snapshot_record, to_recorded
from .._log import EventLog, StreamTip, stream_runs
from .._snapshots import SnapshotStore
from .._values import VerifyReport
from ..events import SessionForked, redact_event
from ..storage import ReadTransaction, SpaceRewrite, Storage, StorageUsage, WriteTransaction
from . import commands
from .cache import DecodedSessions
from .writer import CommandWriter, Request, Step, Write

__all__ = ["Maintenance", "StoreStats", "ProjectionCheckpoint"]

#: How often a rebuild reports progress, in events.
_PROGRESS_EVERY = 1000
#: The checkpoint that records, by its version, that the snapshots a store holds are all this code would have
#: taken: a writable open of a store without it (or with an older one) derives the missing ones once. Not a read
#: model's: ``stats`` leaves it out. Bump it when snapshots taken by earlier code may be missing or unusable.
_SNAPSHOTS = "snapshots"
SNAPSHOTS_VERSION = 1
#: Where an unfinished derivation goes on: (``SNAPSHOTS_VERSION``, the next stream id). Each batch of about
#: ``_DERIVATION_BATCH`` events commits on its own, so a store at its size cap stops after one failed batch and the
#: next open goes on from there (in one transaction, every open of such a store retried a whole pass in vain).
_SNAPSHOTS_NEXT = "snapshots.next"
_DERIVATION_BATCH = 50_000


@attrs.frozen
class ProjectionCheckpoint:
    """How far a read model has applied the log, and the version of its code."""

    code_version: int
    position: int


@attrs.frozen
class StoreStats:
    """What ``SessionStore.stats`` counts.

    Attributes:
        events: events in the log.
        sessions: live sessions.
        deleted_sessions: keys with events whose session is deleted.
        messages: current messages of the live sessions.
        bytes: size of the data file.
        snapshots: stored snapshots.
        last_position: global position of the latest event (0 for none).
        import_receipts: sources imported so far.
        checkpoints: per read model, its code version and last applied position.
        usage: where the bytes go, per named database, and the file's free pages (only when asked for: it
            visits every key and value).
    """

    events: int
    sessions: int
    deleted_sessions: int
    messages: int
    bytes: int
    snapshots: int
    last_position: int
    import_receipts: int
    checkpoints: dict[str, ProjectionCheckpoint]
    usage: StorageUsage | None = None


class Maintenance:
    """The store's upkeep, over the log, the snapshots and every read model."""

    def __init__(self, storage: Storage, log: EventLog, snapshots: SnapshotStore, catalog: Catalog,
                 messages: MessageLists, checkpoints: Checkpoints, deferred: DeferredReadModels,
                 receipts: ImportReceipts, read: Read, write: Write, writer: CommandWriter,
                 decoded: DecodedSessions, release_freed_pages: Callable[[], None]) -> None:
        self._storage, self._log, self._snapshots = storage, log, snapshots
        self._catalog, self._messages, self._checkpoints = catalog, messages, checkpoints
        self._read_models: tuple[ReadModel, ...] = writer.read_models
        self._deferred, self._receipts = deferred, receipts
        self._read, self._write, self._writer, self._decoded = read, write, writer, decoded
        # ``Storage.release_freed_pages`` refused as ``write`` is: a read-only store object may share a writable
        # storage.
        self._release_freed_pages = release_freed_pages

    # -- read models ------------------------------------------------------------------

    def open_read_models(self, progress: Progress | None) -> None:
        """On open: rebuild the read models that need it, or refuse a read-only store whose models do."""
        if self._storage.readonly:
            with self._read() as txn:
                if self._outdated(txn):
                    raise StoreReadOnly(f"the read models of {self._storage.path} are out of date; "
                                        "open it writable once")
            return
        with self._read() as txn:
            rewrite = self._built_by_older_code(txn)
        if rewrite:  # it reuses the pages the last write freed only after a commit (``rebuild_projections``'s)
            self._storage.release_freed_pages()
        self._storage.write(lambda txn: self._rebuild_outdated(txn, progress))
        with self._read() as txn:
            due = self._snapshots_due(txn)
        # Snapshots are derived data, so a store at its size cap opens without them.
        counted: tuple[int, int] | None = None  # where the next batch starts, and the events folded before it
        with contextlib.suppress(StoreFull):
            while due:
                counted = self._storage.write(functools.partial(self._derive_missing_snapshots, progress=progress,
                                                                counted=counted))
                due = counted is not None
        built_by_other_code = self._deferred.built_by_other_code()
        if built_by_other_code:
            self._storage.release_freed_pages()
            self._deferred.rebuild(built_by_other_code, progress)

    def rebuild_projections(self, names: Iterable[str] | None, progress: Progress | None) -> None:
        """Drop the named read models (all by default) and rebuild them from the log."""
        models = {model.name: model for model in self._read_models}
        known = [*models, *self._deferred.names()]
        if names is None:
            chosen = known
        else:
            if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
                raise InvalidArgument(f"names must be a collection of projection names, not {names!r}")
            wanted = list(names)
            unknown = [name for name in wanted if not isinstance(name, str) or name not in known]
            if unknown:
                raise InvalidArgument(f"unknown projections {unknown}; known: {sorted(known)}")
            chosen = list(dict.fromkeys(wanted))
        inline = [models[name] for name in chosen if name in models]
        later = [name for name in chosen if name not in models]
        with self._read() as txn:
            events = self._log.head(txn)[0]
        # One pass over the log for the inline models together, one more for the snapshots when the message lists
        # are rebuilt, then one for each deferred model.
        passes = bool(inline) + (self._messages in inline)
        total = events * (passes + len(later))
        if inline:
            def body(txn: WriteTransaction) -> None:
                self._rebuild(txn, inline, None if progress is None else lambda done, _: progress(done, total))
                if self._messages in inline:
                    # Their blobs are copies of the chunks rebuilt: taken again, from the log.
                    self._snapshots.clear(txn)
                    self._derive_snapshots(txn, None if progress is None
                                           else lambda done, _: progress(events + done, total))

            self._release_freed_pages()
            self._write(body, holder="rebuild_projections")
        if later:
            self._release_freed_pages()
            offset = events * passes
            self._deferred.rebuild(later, None if progress is None
                                   else lambda done, _: progress(offset + done, total))
        if progress is not None:
            progress(total, total)
        self._decoded.clear()

    def _outdated(self, txn: ReadTransaction) -> list[ReadModel]:
        head_position = self._log.head(txn)[0]
        for model in self._read_models:
            checkpoint = self._checkpoints.get(txn, model.name)
            if checkpoint is not None and checkpoint[0] > model.code_version:
                raise IncompatibleStore(f"the {model.name} projection was built by a newer version of eventstore "
                                        f"({checkpoint[0]} > {model.code_version}); upgrade the package")
        return [model for model in self._read_models
                if self._checkpoints.get(txn, model.name) != (model.code_version, head_position)]

    def _built_by_older_code(self, txn: ReadTransaction) -> bool:
        """Whether an inline model was built by an older version of its code, which open rebuilds (or upgrades).
        Not one merely behind the log: the log may hold events this code cannot fold, and open then refuses the
        store having written nothing."""
        for model in self._read_models:
            checkpoint = self._checkpoints.get(txn, model.name)
            if checkpoint is not None and checkpoint[0] < model.code_version:
                return True
        return False

    def _rebuild_outdated(self, txn: WriteTransaction, progress: Progress | None) -> None:
        """Rebuild the inline models that are behind or of another code version."""
        outdated = [model for model in self._outdated(txn) if not self._upgraded(txn, model)]
        if outdated:
            self._rebuild(txn, outdated, progress)

    def _snapshots_due(self, txn: ReadTransaction) -> bool:
        """Whether the store's snapshots were never made complete by this code (``_SNAPSHOTS``)."""
        checkpoint = self._checkpoints.get(txn, _SNAPSHOTS)
        return checkpoint is None or checkpoint[0] < SNAPSHOTS_VERSION

    def _derive_missing_snapshots(self, txn: WriteTransaction, progress: Progress | None,
                                  counted: tuple[int, int] | None) -> tuple[int, int] | None:
        """Once per store, a batch at a time: take the snapshots that earlier code dropped (redactions, rebuilds) or
        stored in another layout, so that point-in-time reads cost what they cost in a store this code wrote.
        ``counted``: what the previous batch of this open returned. Returns, while batches remain, the stream id the
        next starts from and the events folded before it."""
        if not self._snapshots_due(txn):  # another process may have done it since
            if counted is not None and progress is not None:  # it took the batches left: the pass is done
                total = self._log.head(txn)[0]
                progress(total, total)
            return None
        resume = self._checkpoints.get(txn, _SNAPSHOTS_NEXT)
        start = resume[1] if resume is not None and resume[0] == SNAPSHOTS_VERSION else 0
        # Counted by the previous batch unless another process went on from there meanwhile.
        done = counted[1] if counted is not None and counted[0] == start else None
        try:
            following = self._derive_snapshots(txn, progress, start, _DERIVATION_BATCH, done)
        except StoreCorrupted:  # damaged stream keys: the next open tries again
            return None
        if following is not None:
            self._checkpoints.put(txn, _SNAPSHOTS_NEXT, SNAPSHOTS_VERSION, following[0])
        return following

    def _derive_snapshots(self, txn: WriteTransaction, progress: Progress | None, start: int = 0,
                          budget: int | None = None, done: int | None = None) -> tuple[int, int] | None:
        """Take the snapshots every session from stream id ``start`` on lacks, from the log, until ``budget``
        events are folded; ``progress(done, total)`` counts events (``done``: those before ``start``, counted here
        when not given). Returns the stream id to go on from and the events before it, or ``None`` once every
        session has them (recorded by the ``_SNAPSHOTS`` checkpoint)."""
        total, reported = self._log.head(txn)[0], 0
        if done is None:
            before = itertools.takewhile(lambda stream: stream[0] < start, self._log.stream_ids(txn))
            done = sum(self._log.stream_version(txn, stream_id) for stream_id, _ in before) \
                if start and progress is not None else 0
        folded = 0
        for stream_id, key in self._log.stream_ids(txn, start):  # read as it goes: a batch reads its own
            if budget is not None and folded >= budget:
                return stream_id, done
            # A session whose log or snapshots do not read is left as it is: verify names it.
            with contextlib.suppress(StoreCorrupted, IncompatibleStore):
                self._writer.derive_snapshots(txn, stream_id, key)
                events = self._log.stream_version(txn, stream_id)
                done, folded = done + events, folded + events
            if progress is not None and done - reported >= _PROGRESS_EVERY:
                progress(min(done, total), total)
                reported = done
        self._checkpoints.put(txn, _SNAPSHOTS, SNAPSHOTS_VERSION, total)
        self._checkpoints.delete(txn, _SNAPSHOTS_NEXT)
        if progress is not None:
            progress(total, total)
        return None

    def _upgraded(self, txn: WriteTransaction, model: ReadModel) -> bool:
        """Whether ``model``, current with the log but stored by an older code version, was converted in place
        (not when its rows are damaged: the rebuild that follows makes it again from the log)."""
        checkpoint = self._checkpoints.get(txn, model.name)
        position = self._log.head(txn)[0]
        if not isinstance(model, UpgradableReadModel) or checkpoint is None or checkpoint[1] != position:
            return False
        try:
            if not model.upgrade(txn, checkpoint[0]):
                return False
        except StoreCorrupted:
            return False
        self._checkpoints.put(txn, model.name, model.code_version, position)
        return True

    def _rebuild(self, txn: WriteTransaction, models: Sequence[ReadModel], progress: Progress | None = None) -> None:
        """Clear the inline ``models`` and fold the whole log into them, one pass for all.

        ``progress(done, total)`` counts events.
        """
        total = self._log.head(txn)[0]
        for model in models:
            model.clear(txn)
        last = 0
        creation_times = RestoredCreationTimes(txn, self._log, None)  # from the log alone: a rebuild repairs snapshots
        # Runs of one session's events go to the read models as one batch.
        for stream_id, run in stream_runs(self._log.read_all(txn)):
            entries = list(run)
            changes = list(log_changes(entries, creation_times))
            for model in models:
                model.apply(txn, stream_id, changes)
            if progress is not None and entries[-1].position // _PROGRESS_EVERY != last // _PROGRESS_EVERY:
                progress(entries[-1].position, total)
            last = entries[-1].position
        for model in models:
            self._checkpoints.put(txn, model.name, model.code_version, last)
        if progress is not None:
            progress(total, total)

    # -- sessions and the file ----------------------------------------------------------

    def compact(self, key: str) -> bool:
        """Snapshot the session at its current version, unless it has no events or that snapshot exists."""
        def body(txn: WriteTransaction) -> bool:
            stream_id = self._log.stream_id(txn, key)
            if stream_id is None:
                return False
            version = self._log.stream_version(txn, stream_id)
            if self._snapshots.has(txn, stream_id, version):
                return False
            latest = self._log.read_version(txn, stream_id, version)
            self._writer.take_snapshot(txn, stream_id, key, version, latest.hash)
            return True

        return self._write(body)

    def redact(self, key: str, reason: str, request: Request, expected_version: int | None,
               idempotency_key: str | None) -> int:
        """Blank the message content of every event of the session, and of every session forked from it
        (transitively: a fork holds copies of its source's messages); return how many events changed."""
        changed = self._writer.run(key, request, self.redaction(key, reason), expected_version, idempotency_key)[0]
        self.redactions_committed()
        return changed

    def redaction(self, key: str, reason: str) -> Step[int]:
        """The write step of ``redact`` (also what a transaction's ``redact`` runs): its result is how many events
        changed."""

        def step(txn: WriteTransaction, tip: StreamTip, now: int) -> tuple[int, list[LogChange]]:
            stream_id = tip.stream_id
            if stream_id is None:
                return 0, []
            changed, recorded = self._redact_stream(txn, key, stream_id, reason, now)
            for fork_key, fork_stream in self._forks_of(txn, key):
                changed += self._redact_stream(txn, fork_key, fork_stream,
                                               f"{reason} (forked from {key!r}, which was redacted)", now)[0]
            self._deferred.catch_up_in(txn)  # the redacted words leave the search index in the same commit
            return changed, recorded

        return step

    def redactions_committed(self) -> None:
        """After a commit that redacted: decoded sessions may hold what the redaction rewrote."""
        self._decoded.clear()

    def _redact_stream(self, txn: WriteTransaction, key: str, stream_id: int, reason: str, now: int
                       ) -> tuple[int, list[LogChange]]:
        rewritten = []
        for entry in list(self._log.read_stream(txn, stream_id)):
            event = to_recorded(entry).event
            blanked = redact_event(event)
            if blanked != event:
                payload = encode_event(blanked).payload
                self._log.redact(txn, entry.position, payload)
                rewritten.append((entry.position, hashlib.sha256(payload).hexdigest()))
        events, changed = commands.redact(reason, rewritten)
        if not events:
            return 0, []
        self._snapshots.delete_stream(txn, stream_id)
        recorded = self._writer.record(txn, key, events, now)
        self._writer.derive_snapshots(txn, stream_id, key)  # of the redacted log: reads of the past stay fast
        return changed, recorded

    def _forks_of(self, txn: ReadTransaction, key: str) -> list[tuple[str, int]]:
        """(key, stream id) of every session forked from ``key``, or from one of those, and so on.

        Reads the type of every event of the log from its header (and decodes the forks): a redaction is rare, and
        an index of forks would cost every fork and import its upkeep.
        """
        sources: dict[str, set[tuple[str, int]]] = {}
        for position in self._log.positions_of(txn, SessionForked.type_name):
            entry = self._log.read_position(txn, position)
            event = to_recorded(entry).event
            if isinstance(event, SessionForked):
                sources.setdefault(event.source_key, set()).add((entry.session_key, entry.stream_id))
        found: list[tuple[str, int]] = []
        seen, pending = {key}, [key]
        while pending:
            for fork in sorted(sources.get(pending.pop(), ())):
                if fork[0] not in seen:
                    seen.add(fork[0])
                    found.append(fork)
                    pending.append(fork[0])
        return found

    def vacuum(self, reopen: Callable[[], None]) -> tuple[int, int]:
        """Rewrite the file compactly; ``reopen`` wires the store again. Returns (bytes before, bytes after).

        A compression dictionary keeps pieces of the payloads it was trained on: when one of those was redacted
        since, the new file gets a dictionary trained on the current payloads instead, and every frame is
        compressed again with it (``_replace_dictionaries``), in the same rewrite.
        """
        before = self._storage.file_size()
        self._storage.vacuum(reopen=reopen, rewrite=self._replace_dictionaries)
        return before, self._storage.file_size()

    def _replace_dictionaries(self, txn: ReadTransaction) -> dict[str, SpaceRewrite]:
        """What ``vacuum`` rewrites to forget what the dictionaries learnt from redacted payloads: the log's
        records and meta and the message chunks; nothing when no dictionary learnt from one."""
        replacement = self._log.dictionary_replacement(txn)
        if replacement is None:
            return {}
        chunks, rewrite_chunks = self._messages.vacuum_rewrite(replacement)
        return {**self._log.vacuum_rewrites(replacement), chunks: rewrite_chunks}

    # -- checks and counts ----------------------------------------------------------------

    def verify(self, progress: Progress | None) -> VerifyReport:
        """Check the chain, the snapshots and every read model against a fresh fold, in one read transaction."""
        damaged_pages = self._storage.page_problems()  # before any read that such a page would crash
        if damaged_pages:
            return VerifyReport(False, 0, damaged_pages, frozenset({"file"}))
        with self._read() as txn:
            models: list[CheckedModel] = [*self._read_models, *self._deferred.checkers(txn)]
            report = verify(txn, self._log, self._snapshots, models, progress)
            problems = self._unreferenced_blobs(txn)
        if not problems:
            return report
        return VerifyReport(False, report.events_checked, [*report.problems, *problems],
                            report.damaged | {"messages"})

    def _unreferenced_blobs(self, txn: ReadTransaction) -> list[str]:
        """Snapshot blobs that no snapshot names: each holds message text, which nothing else would show.

        A snapshot that cannot be read is the audit's to report; its stream's blobs are left alone here.
        """
        named: set[tuple[int, bytes]] = set()
        unknown: set[int] = set()
        try:
            for stream_id, version in self._snapshots.versions(txn):
                try:
                    record = read_snapshot_record(stream_id, self._snapshots.get(txn, stream_id, version) or b"")
                    digests = None if record is None else [bytes.fromhex(digest) for digest in record.chunks]
                except (EventStoreError, ValueError):
                    digests = None
                if digests is None:
                    unknown.add(stream_id)
                else:
                    named.update((stream_id, digest) for digest in digests)
            unreferenced = sum(1 for stream_id, digest in self._snapshots.blob_keys(txn)
                               if stream_id not in unknown and (stream_id, digest) not in named)
        except EventStoreError as exc:
            return [f"snapshot blobs: {exc}"]
        if not unreferenced:
            return []
        return [f"{unreferenced} snapshot blobs belong to no snapshot; text that was removed or redacted may "
                "survive there (rebuild the messages projection, which takes every snapshot again from the log, "
                "then vacuum)"]

    def stats(self, databases: bool) -> StoreStats:
        """Counts of what the store holds, read in one read transaction; with ``databases``, where the bytes go
        (read in another)."""
        usage = self._storage.usage() if databases else None
        with self._read() as txn:
            events = self._log.count(txn)
            heads = [head for _, head in self._catalog.heads(txn)]
            streams = sum(1 for _ in self._log.stream_ids(txn))
            return StoreStats(
                events=events, sessions=len(heads), deleted_sessions=streams - len(heads),
                messages=sum(head.message_count for head in heads), bytes=self._storage.file_size(),
                snapshots=self._snapshots.count(txn), last_position=self._log.head(txn)[0],
                import_receipts=len(self._receipts.all(txn)),
                checkpoints={name: ProjectionCheckpoint(*checkpoint)
                             for name, checkpoint in self._checkpoints.all(txn).items()
                             if name not in (_SNAPSHOTS, _SNAPSHOTS_NEXT)},
                usage=usage)
