"""Small catch-ups of a large search index: a few exchanges appended to a copy of a kept store, then ``catch_up()``.

A busy assistant appends a few messages at a time and a search catches the index up first, so what a catch-up of a
few messages costs on a large index matters as much as bulk indexing's rate. This copies bench_scale's kept store
(``KEPT_DIR/ours``, which stays as it is) into a temporary directory, then, after one catch-up not counted, times
the process CPU time of ``catch_up()`` after each round of these appends (each exchange two messages of
bench_scale's corpus, ``append_many``, ``durable=False``):

* 10 exchanges, each to a new session or to a random old one, one chance in two;
* 1 exchange to a new session;
* 1 exchange to a random old session.

It prints each kind's median and quartiles (ms). ``--digest`` prints the SHA-256 of every key and value of the
index's databases afterwards (but the generation, which a rebuild draws anew): the appends' times come from a clock
that starts at a fixed time and steps a millisecond a call, so the same code version gives the same digest for the
same kept store and rounds, and two builds of the writer can be checked to store the same bytes.
``python -m benchmarks.small_catch_up KEPT_DIR [--rounds N] [--dir DIR] [--digest]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

from eventstore import SessionStore
from projections.search.formats.keys import META_GENERATION

from .bench_scale import Corpus, copy_of_kept

#: Each kind of round: its name, exchanges a round, the chance that an exchange goes to an old session.
KINDS = (
    ("10 exchanges, half to old sessions", 10, 0.5),
    ("1 exchange to a new session", 1, 0.0),
    ("1 exchange to an old session", 1, 1.0),
)


def rounds_of(
    store: SessionStore, corpus: Corpus, sessions: int, kinds: tuple[tuple[str, int, float], ...], rounds: int
) -> dict[str, list[float]]:
    """The CPU time (s) of each round's ``catch_up()``, by kind; new sessions are numbered past the kept ones."""
    rng = random.Random(5)
    new = iter(range(sessions, 1 << 31))
    spent: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    for name, exchanges, old in [("warm-up", 10, 0.5), *kinds]:
        for _ in range(1 if name == "warm-up" else rounds):
            for _ in range(exchanges):
                number = rng.randrange(sessions) if rng.random() < old else next(new)
                store.append_many(Corpus.key(number), corpus.session()[:2])
            start = time.process_time()
            store.catch_up()
            if name in spent:
                spent[name].append(time.process_time() - start)
    return spent


def stepping_clock() -> Callable[[], datetime]:
    """A clock from a fixed time after any kept store's, a millisecond a call."""
    start, steps = datetime(2030, 1, 1, tzinfo=UTC), count()
    return lambda: start + timedelta(milliseconds=next(steps))


def index_digest(store: SessionStore) -> str:
    """SHA-256 of every key and value of the search index's databases, in key order, but its generation."""
    digest = hashlib.sha256()
    spaces = store._search_index._spaces
    with store._environment.read() as txn:
        for space in spaces.all():
            digest.update(space.name.encode())
            for key, value in txn.scan(space):
                if not (space is spaces.meta and bytes(key) == META_GENERATION):
                    digest.update(len(key).to_bytes(4, "big") + bytes(key) + len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kept", type=Path, help="bench_scale's --keep directory (its store is copied, not changed)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of each kind (default 15)")
    parser.add_argument("--dir", type=Path, help="parent directory of the copy (default: $TMPDIR)")
    parser.add_argument("--digest", action="store_true", help="print the SHA-256 of the index's databases at the end")
    args = parser.parse_args()
    with copy_of_kept(args.kept, args.dir, 777) as (settings, corpus, copy), \
            SessionStore(copy, durable=False, clock=stepping_clock()) as store:
        spent = rounds_of(store, corpus, settings.sessions, KINDS, args.rounds)
        digest = index_digest(store) if args.digest else None
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}; "
        f"{settings.sessions:,} sessions; catch_up() CPU time, ms: median (quartiles) of {args.rounds} rounds"
    )
    for name, times in spent.items():
        low, _, high = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
        print(f"{name:40}{statistics.median(times) * 1e3:9.2f} ({low * 1e3:.2f}-{high * 1e3:.2f})")
    if digest is not None:
        print(f"search index SHA-256: {digest}")


if __name__ == "__main__":
    main()
