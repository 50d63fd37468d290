"""Importing a ZeroClaw workspace into a store, source by source (``import_workspace``)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import attrs

from .._errors import InvalidArgument, SourceChanged
from .._files import path_text
from .._store import SessionStore
from .._time import Clock, system_clock
from .._values import ImportOutcome
from ..events import MessageAppended
from ._source import Progress, SourceBatch, SourceResult
from ._workspace import read_source, workspace_sources

__all__ = ["WorkspaceImport", "ImportInterrupted", "import_workspace"]


@attrs.frozen
class WorkspaceImport:
    """What ``import_workspace`` did, source by source."""

    workspace: Path
    sources: tuple[SourceResult, ...]

    @property
    def sessions(self) -> int:
        return sum(r.sessions for r in self.sources)

    @property
    def messages(self) -> int:
        return sum(r.messages for r in self.sources)

    @property
    def skipped_lines(self) -> int:
        return sum(len(r.batch.skipped) for r in self.sources if r.batch is not None)


class ImportInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) stopped ``import_workspace``: ``done`` holds the sources imported before it
    (each was committed whole), not the one under way (nothing of it was written). Importing the workspace again
    imports the rest: what was imported is not imported twice."""

    def __init__(self, done: WorkspaceImport) -> None:
        super().__init__()
        self.done = done


def _import_batch(store: Callable[[], SessionStore], batch: SourceBatch, progress: Progress) -> SourceResult:
    if not batch.sessions:
        return SourceResult(batch, batch.path, batch.kind, "empty")
    try:
        outcome: ImportOutcome = store().import_sessions(batch.sessions, source=path_text(batch.path.resolve()),
                                                       size=batch.size, sha256=batch.sha256, progress=progress)
    except SourceChanged:
        return SourceResult(batch, batch.path, batch.kind, "changed",
                            detail="changed since it was imported; not merged")
    except InvalidArgument as exc:  # data the store cannot hold; the next source may be fine
        return SourceResult(batch, batch.path, batch.kind, "failed", detail=f"not imported: {exc}")
    if outcome.already_imported:
        return SourceResult(batch, batch.path, batch.kind, "unchanged")
    imported = {k: v for k, v in batch.sessions.items() if k not in outcome.skipped}
    return SourceResult(batch, batch.path, batch.kind, "imported", outcome.receipt.sessions,
                        sum(isinstance(e, MessageAppended) for timed in imported.values() for _, e in timed),
                        outcome.receipt.events, outcome.skipped)


def import_workspace(store: SessionStore | Callable[[], SessionStore], workspace: str | os.PathLike[str],
                     progress: Progress | None = None, *, clock: Clock | None = None) -> WorkspaceImport:
    """Import every session of a ZeroClaw workspace into ``store``, one transaction per source file.

    ``store`` is a store, or a callable that opens one, called once, when the first source with sessions to
    import has been read: a workspace with nothing to import then creates no store. A time in the future is
    judged by the clock the import records with: the store's (``SessionStore.clock``); for a callable, the
    ``clock`` it will open its store with (the real clock by default).

    Idempotent: each source's receipt (name, size, SHA-256) is committed with
    its events, so a second import adds nothing; a source changed since its
    import is reported (``"changed"``), not merged; a key that already has
    events in the store is reported in ``existing_keys``, not merged. A source
    that is not read or that the store refuses is reported, and the import goes
    on with the next. Sources are read one at a time, each just before its import.

    ``progress(done, total)`` counts sessions, reported as they are recorded: a JSONL file is one session, and
    ``sessions.db`` (read first) counts as one until it is read, then as the sessions it holds.

    Raises:
        NotAWorkspace: the path holds no ZeroClaw sessions.
        InvalidArgument: ``clock`` given with a store (not a callable).
        ImportInterrupted: Ctrl-C; it says which sources were imported before it.
    """
    if isinstance(store, SessionStore) and clock is not None:
        raise InvalidArgument("give clock= only with a callable that opens the store: a store brings its own")
    judge = store.clock if isinstance(store, SessionStore) else clock or system_clock
    target: Callable[[], SessionStore] = (lambda: store) if isinstance(store, SessionStore) else functools.cache(store)
    sources, roots = workspace_sources(workspace)
    results = []
    done, total = 0, len(sources)
    reported = (0, 0)

    def report(within: int, _sessions: int) -> None:
        nonlocal reported
        if progress is not None and (done + within, total) != reported:
            reported = (done + within, total)
            progress(*reported)

    try:
        for path, kind in sources:
            source = read_source(path, kind, roots, judge)
            sessions = 1 if isinstance(source, SourceResult) else max(1, len(source.sessions))
            total += sessions - 1
            results.append(source if isinstance(source, SourceResult) else _import_batch(target, source, report))
            done += sessions
            report(0, 0)
    except KeyboardInterrupt:
        raise ImportInterrupted(WorkspaceImport(Path(workspace), tuple(results))) from None
    return WorkspaceImport(Path(workspace), tuple(results))
