"""A later batch of a bulk catch-up: new sessions appended to a copy of a kept store, then one ``catch_up()``.

bench_scale's build catches its index up in batches of ``DEFERRED_BATCH`` events, and every batch after the first
meets terms already stored. This copies bench_scale's kept store (``KEPT_DIR/ours``, which stays as it is) into
``--dir``, appends ``--sessions`` new sessions of bench_scale's corpus (seeded, so every run appends the same ones;
``append_many``, ``durable=False``), then times ``catch_up()`` in process CPU time; ``--batches`` times over. It
prints one JSON line: the CPU time a message of each batch's appends and catch-up, the bytes allocated to
``data.mdb`` (``st_blocks``) before the first appends and after each catch-up, the bytes of each ``search.*``
database's pages at the end, and those on LMDB's free list. The copy is deleted.
``python -m benchmarks.later_batch KEPT_DIR --dir DIR [--sessions N] [--batches N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from eventstore import SessionStore

from .bench_scale import Corpus, copy_of_kept, lmdb_pages


def allocated(path: Path) -> int:
    """The bytes the file system gives ``path``'s ``data.mdb``."""
    return (path / "data.mdb").stat().st_blocks * 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kept", type=Path, help="bench_scale's --keep directory (its store is copied, not changed)")
    parser.add_argument("--dir", type=Path, required=True, help="parent directory of the copy")
    parser.add_argument("--sessions", type=int, default=10_000, help="new sessions a batch (default 10,000)")
    parser.add_argument("--batches", type=int, default=1, help="batches, each appended then caught up (default 1)")
    args = parser.parse_args()
    with copy_of_kept(args.kept, args.dir, 1016) as (settings, corpus, copy):
        before = allocated(copy)
        appends, catch_ups, sizes = [], [], []
        with SessionStore(copy, durable=False) as store:
            first = settings.sessions
            for _ in range(args.batches):
                start = time.process_time()
                for number in range(first, first + args.sessions):
                    store.append_many(Corpus.key(number), corpus.session())
                appends.append(time.process_time() - start)
                start = time.process_time()
                store.catch_up()
                catch_ups.append(time.process_time() - start)
                sizes.append(allocated(copy))
                first += args.sessions
        pages, free = lmdb_pages(copy)
        messages = args.sessions * settings.messages
        print(json.dumps({
            "time": time.strftime("%H:%M:%S", time.gmtime()), "load": round(os.getloadavg()[0], 2),
            "appends_us": [round(spent / messages * 1e6, 2) for spent in appends],
            "catch_up_us": [round(spent / messages * 1e6, 2) for spent in catch_ups],
            "allocated_before": before, "allocated_after": sizes, "free": free,
            "search_bytes": {name: size for name, size in pages.items() if name.startswith("search.")},
        }))


if __name__ == "__main__":
    main()
