"""Opening a store whose log is shared: ``SessionStore("postgresql://...", cache=DIR)``.

The log lives on the server (``sharedlog.postgres``); ``DIR`` holds this host's replica, an LMDB store
that reads come from (``services.replica``). The driver is imported only here, when such a store opens,
so the package needs it only with the ``postgres`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._audit import Progress
from ._errors import EventStoreError, InvalidArgument
from .services.replica import ReplicaStorage
from .storage import Durability
from .storage.lmdb import Environment

__all__ = ["SHARED_LOG_SCHEMES", "open_shared"]

#: The URL schemes of a shared log.
SHARED_LOG_SCHEMES = ("postgresql://", "postgres://")


def open_shared(url: str, cache: str | os.PathLike[str] | None, max_size: int | None, readonly: bool,
                progress: Progress | None) -> ReplicaStorage:
    """The storage of a store on the shared log at ``url``, with its replica in ``cache``."""
    if cache is None or not isinstance(cache, (str, os.PathLike)) or not str(cache):
        raise InvalidArgument(f"a store at {url.split('@')[-1]!r:.60} needs cache=DIR, the directory of this "
                              "host's replica")
    try:
        from .sharedlog.postgres import PostgresLog
    except ImportError:
        raise InvalidArgument("a postgresql:// store needs the postgres extra: pip install 'eventstore[postgres]'"
                              ) from None
    directory = Path(cache)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EventStoreError(f"cannot create the replica directory {directory}: {exc}") from None
    shared = PostgresLog(url, create=not readonly)
    try:
        # No flush: the shared log is the durable copy, and a replica is rebuilt from it (docs/postgres.md).
        replica = Environment.acquire(directory, durability=Durability.OFF, max_size=max_size)
    except BaseException:
        shared.close()
        raise
    return ReplicaStorage(replica, shared, progress, readonly)
