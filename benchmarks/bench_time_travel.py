"""Point-in-time reads against plain loads: what a snapshot buys (issue: audit and time travel).

Run: python -m benchmarks.bench_time_travel [--quick]

On a session of N events (mostly appends, some removals and streaming
updates) it times, in one run and taking turns, medians of these calls, each
on a freshly opened store (nothing cached or mapped; the open is not timed):
  * a first, uncached ``load``;
  * ``session_at(version=N-10)``, which folds from the nearest snapshot;
  * ``session_at(version=5000)`` on histories of growing length, which must stay flat.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def interleaved_ms(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Median ms of each run (each returns the seconds it timed), taking turns so that a shared
    machine's noise lands on all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def fresh(path: Path, call: Callable[[SessionStore], object]) -> Callable[[], float]:
    """``call`` on a freshly opened store, so nothing is cached or mapped yet; opening it is not timed."""
    def run() -> float:
        with SessionStore(path) as store:
            start = time.perf_counter()
            call(store)
            return time.perf_counter() - start
    return run


def at_version(version: int) -> Callable[[SessionStore], object]:
    """``session_at(KEY, version=version)``, the version bound now: the runs are called after the loop."""
    return lambda store: store.session_at(KEY, version=version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter histories")
    args = parser.parse_args()
    repeat = 5 if args.quick else 25
    histories = [10_000, 20_000] if args.quick else [10_000, 20_000, 40_000]
    with tempfile.TemporaryDirectory() as scratch:
        runs: dict[str, Callable[[], float]] = {}
        for events in histories:
            path = Path(scratch) / f"s{events}"
            build(path, events)
            runs[f"load {events}"] = fresh(path, lambda store: store.load(KEY))
            runs[f"near_end {events}"] = fresh(path, at_version(events - 10))
            runs[f"middle {events}"] = fresh(path, at_version(5000))
        ms = interleaved_ms(runs, repeat)
    print(f"{'events':>8} {'first load ms':>14} {'at N-10 ms':>11} {'ratio':>6} {'at 5000 ms':>11}")
    for events in histories:
        load, near_end, middle = ms[f"load {events}"], ms[f"near_end {events}"], ms[f"middle {events}"]
        print(f"{events:>8} {load:>14.2f} {near_end:>11.2f} {near_end / load:>6.2f} {middle:>11.2f}")
    first, last = histories[0], histories[-1]
    print(f"\nat N-10 / first load (N={first:,}): {ms[f'near_end {first}'] / ms[f'load {first}']:.2f}x (target <= 2x)")
    flatness = ms[f"middle {last}"] / ms[f"middle {first}"]
    print(f"at 5000, longest / shortest history: {flatness:.2f}x (target: flat, ~1x)")


if __name__ == "__main__":
    main()
