"""The bare I/O floor of a durable commit: the writes and flushes alone, with no database and no Python work.

LMDB commits durably by writing the pages the transaction changed, one ``fdatasync``, then its meta page through an
``O_DSYNC`` descriptor: two ordered flushes. SQLite's WAL writes its frames and flushes once. The probes here time
those protocols on a scratch file in the stores' directory, so a benchmark can show whether a write's time is the disk.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

now_ns = time.perf_counter_ns


def fsync_probe(path: Path) -> FlushProbe:
    """A bare 4 KB overwrite + fdatasync in the stores' directory: the floor of one durable flush."""
    return FlushProbe(path, pages=1, synchronous_page=False)


def commit_floor_probe(path: Path, pages: int) -> FlushProbe:
    """The floor of LMDB's durable commit: ``pages`` random 4 KB overwrites + fdatasync, then a 4 KB write
    through an ``O_DSYNC`` descriptor (LMDB's meta page); no B-tree, no Python."""
    return FlushProbe(path, pages=pages, synchronous_page=True)


class FlushProbe:
    """A timed op (``probe(i)`` returns ns): ``pages`` random 4 KB overwrites of a scratch file + fdatasync,
    then, with ``synchronous_page``, a 4 KB write through an ``O_DSYNC`` descriptor. ``close`` frees the file."""

    _SPAN = 4096 * 4096  # a 16 MiB file, written out first so that no write allocates blocks

    def __init__(self, path: Path, pages: int, synchronous_page: bool) -> None:
        self._pages, self._synchronous_page = pages, synchronous_page
        self._descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._descriptor, bytes(self._SPAN), 0)
        os.fsync(self._descriptor)
        self._meta = os.open(path, os.O_RDWR | os.O_DSYNC)
        self._page = os.urandom(4096)
        self._rng = random.Random(pages)

    def __call__(self, _i: int) -> int:
        descriptor, page, synchronous_page, meta = self._descriptor, self._page, self._synchronous_page, self._meta
        offsets = [self._rng.randrange(1, self._SPAN // 4096) * 4096 for _ in range(self._pages)]
        start = now_ns()
        for offset in offsets:
            os.pwrite(descriptor, page, offset)
        os.fdatasync(descriptor)
        if synchronous_page:
            os.pwrite(meta, page, 0)
        return now_ns() - start

    def close(self) -> None:
        os.close(self._descriptor)
        os.close(self._meta)
