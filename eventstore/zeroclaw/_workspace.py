"""A ZeroClaw workspace: where its sessions are, and its sources read in order (``read_workspace``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._time import Clock, system_clock
from ._jsonl import read_jsonl
from ._source import NotAWorkspace, RefusedSource, SourceBatch, SourceBusy, SourceResult
from ._sqlite import read_sqlite

__all__ = ["sessions_dir", "read_workspace", "read_source", "workspace_sources"]


def sessions_dir(workspace: str | os.PathLike[str]) -> Path:
    """The directory holding the workspace's sessions: ``WORKSPACE/sessions``, or WORKSPACE itself
    when it directly holds ``*.jsonl`` files or ``sessions.db``.

    Raises:
        NotAWorkspace: neither holds ZeroClaw sessions.
    """
    root = Path(workspace)
    if not root.is_dir():
        raise NotAWorkspace(f"{root} is not a directory; give the ZeroClaw workspace directory")
    for candidate in (root / "sessions", root):
        if candidate.is_dir() and ((candidate / "sessions.db").is_file() or any(candidate.glob("*.jsonl"))):
            return candidate
    raise NotAWorkspace(f"no ZeroClaw sessions in {root} (looked for sessions/*.jsonl and sessions/sessions.db)")


def _sources(directory: Path) -> list[tuple[Path, str]]:
    """The workspace's sources in import order: ``sessions.db`` first (it has names, states and times), then
    each ``*.jsonl`` entry by name (whatever it is: what is not a regular file is reported when read)."""
    database = directory / "sessions.db"
    found = [(database, "sqlite")] if os.path.lexists(database) else []
    return found + [(path, "jsonl") for path in sorted(directory.glob("*.jsonl"))]


def read_source(path: Path, kind: str, roots: Sequence[Path], clock: Clock) -> SourceBatch | SourceResult:
    """One source read into a batch (its times in the future by ``clock`` are bad times), or the result saying
    why it was not read."""
    try:
        read = read_sqlite if kind == "sqlite" else read_jsonl
        return read(path, roots=roots, clock=clock)
    except RefusedSource as exc:
        return SourceResult(None, path, kind, "refused", detail=str(exc))
    except (NotAWorkspace, SourceBusy) as exc:
        return SourceResult(None, path, kind, "unreadable", detail=str(exc))
    except OSError as exc:
        return SourceResult(None, path, kind, "unreadable", detail=f"cannot read it: {exc.strerror or exc}")


def workspace_sources(workspace: str | os.PathLike[str]) -> tuple[list[tuple[Path, str]], tuple[Path, ...]]:
    """The sources to read, and the directories a symbolic link among them may point into."""
    directory = sessions_dir(workspace)
    roots = tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in (workspace, directory)))
    return _sources(directory), roots


def read_workspace(workspace: str | os.PathLike[str], clock: Clock = system_clock) -> list[SourceBatch | SourceResult]:
    """Read every source of a workspace (see ``_sources`` for the order). A source that is not read comes
    back as a result: ``"refused"`` (not a regular file inside the workspace, or too large) or
    ``"unreadable"``. A time past ``clock`` (the store's that will import them) plus ``CLOCK_SKEW`` is a bad
    time.

    Raises:
        NotAWorkspace: the path holds no ZeroClaw sessions.
    """
    sources, roots = workspace_sources(workspace)
    return [read_source(path, kind, roots, clock) for path, kind in sources]
