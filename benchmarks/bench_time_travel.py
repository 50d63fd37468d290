"""Point-in-time reads against plain loads: what a snapshot buys (issue: audit and time travel).

Run: python -m benchmarks.bench_time_travel [--quick]

On a session of N events (mostly appends, some removals and streaming
updates) it times, in one run, medians of:
  * a first, uncached ``load`` (a fresh SessionStore object each time);
  * ``session_at(version=N-10)``, which folds from the nearest snapshot;
  * ``session_at(version=5000)`` on histories of growing length, which must stay flat.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from eventstore import ChatMessage, SessionStore

KEY = "telegram_user123"


def build(path: Path, events: int, seed: int = 7) -> None:
    """Write a session of ``events`` events: 90% appends, 5% removals, 5% streaming updates."""
    rng = random.Random(seed)
    with SessionStore(path, durable=False) as store:
        written = 0
        batch: list[ChatMessage] = []
        while written < events:
            roll = rng.random()
            if roll < 0.9 or written == 0:
                role = "user" if rng.random() < 0.5 else "assistant"
                batch.append(ChatMessage(role, "word " * rng.randint(4, 80)))
                written += 1
                if len(batch) == 100:
                    store.append_many(KEY, batch)
                    batch = []
                continue
            if batch:
                store.append_many(KEY, batch)
                batch = []
            if roll < 0.95:
                store.remove_last(KEY)
            else:
                store.update_last(KEY, ChatMessage.assistant("revised " * rng.randint(4, 40)))
            written += 1
        if batch:
            store.append_many(KEY, batch)


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def first_load_ms(path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with SessionStore(path) as store:  # a fresh object: nothing cached
            start = time.perf_counter()
            store.load(KEY)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter histories")
    args = parser.parse_args()
    repeat = 5 if args.quick else 15
    histories = [10_000, 20_000] if args.quick else [10_000, 20_000, 40_000]
    with tempfile.TemporaryDirectory() as scratch:
        rows = []
        for events in histories:
            path = Path(scratch) / f"s{events}"
            build(path, events)
            with SessionStore(path) as store:
                near_end = median_ms(lambda: store.session_at(KEY, version=events - 10), repeat)
                middle = median_ms(lambda: store.session_at(KEY, version=5000), repeat)
            rows.append((events, first_load_ms(path, repeat), near_end, middle))
    print(f"{'events':>8} {'first load ms':>14} {'at N-10 ms':>11} {'ratio':>6} {'at 5000 ms':>11}")
    for events, load, near_end, middle in rows:
        print(f"{events:>8} {load:>14.2f} {near_end:>11.2f} {near_end / load:>6.2f} {middle:>11.2f}")
    first = rows[0]
    print(f"\nat N-10 / first load (N=10,000): {first[2] / first[1]:.2f}x (target <= 2x)")
    print(f"at 5000, longest / shortest history: {rows[-1][3] / first[3]:.2f}x (target: flat, ~1x)")


if __name__ == "__main__":
    main()
