"""One long session read whole: ``replay`` step by step, and its history read at once or streamed.

Run: python -m benchmarks.bench_long_session build STORE [--events N]
     python -m benchmarks.bench_long_session replay STORE
     python -m benchmarks.bench_long_session history STORE [--streamed]

``build`` writes one session of N events (90% appends, 5% removals, 5% streaming updates: the mix of
``bench_time_travel``) into a new store. ``replay`` walks every step of ``replay``, reading each view's message
count, and prints the process CPU seconds it took. ``history`` reads the session's history whole (or, with
``--streamed``, through ``iter_history``) and prints the CPU seconds to the first event and to the last, and the
peak of the memory Python allocated meanwhile (tracemalloc, which slows both alike). Run each part in its own
process, the code before and after a change taking turns.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

from eventstore import RecordedEvent, SessionStore

from .bench_time_travel import KEY, build


def replay(path: Path) -> None:
    with SessionStore(path, readonly=True) as store:
        start = time.process_time()
        steps = sum(1 for _, view in store.replay(KEY) if view.message_count >= 0)
        print(f"replay: {steps} steps, {time.process_time() - start:.2f} s CPU")


def history(path: Path, streamed: bool) -> None:
    with SessionStore(path, readonly=True) as store:
        tracemalloc.start()
        start = time.process_time()
        events: Iterable[RecordedEvent] = store.iter_history(KEY) if streamed else store.history(KEY)
        first = None
        count = 0
        for _ in events:
            if first is None:
                first = time.process_time() - start
            count += 1
        total = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"history{' streamed' if streamed else ''}: {count} events, first after {first or 0:.3f} s CPU, "
              f"all after {total:.2f} s, peak {peak / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("build", "replay", "history"))
    parser.add_argument("store", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--streamed", action="store_true")
    arguments = parser.parse_args()
    if arguments.part == "build":
        build(arguments.store, arguments.events)
    elif arguments.part == "replay":
        replay(arguments.store)
    else:
        history(arguments.store, arguments.streamed)


if __name__ == "__main__":
    main()
