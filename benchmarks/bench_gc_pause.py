"""What ``pause_gc_while_decoding(True)`` buys: uncached loads with the collector paused or not.

Run: python -m benchmarks.bench_gc_pause [--quick]

For sessions of growing length it times, taking turns, the median of
uncached ``load`` calls in fresh processes (the first load, and the median of
the repeated ones), with the pause opted in ("paused") and not ("running").
``--host-objects N`` first gives each process N long-lived objects, as a host
application's heap: the full collections a load triggers then cost more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eventstore import ChatMessage, SessionStore, pause_gc_while_decoding

MODES = ("paused", "running")


def build(path: Path, sizes: list[int]) -> None:
    with SessionStore(path, durable=False) as store:
        for size in sizes:
            messages = [ChatMessage("user" if i % 2 else "assistant", f"message {i} " + "lorem ipsum dolor " * 8)
                        for i in range(size)]
            for start in range(0, size, 1000):
                store.append_many(f"s{size}", messages[start:start + 1000])


def child(path: str, mode: str, key: str, loads: int, host_objects: int) -> None:
    """One process: ``loads`` uncached loads of ``key``; prints the first and the median of the rest in ns."""
    pause_gc_while_decoding(mode == "paused")
    heap = [[i, str(i)] for i in range(host_objects)]
    with SessionStore(path, durable=False, cache_sessions=0) as store:
        times = []
        for _ in range(loads):
            start = time.perf_counter_ns()
            store.load(key)
            times.append(time.perf_counter_ns() - start)
    print(json.dumps({"first": times[0], "repeated": statistics.median(times[1:]), "heap": len(heap)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes and shorter sessions")
    parser.add_argument("--host-objects", type=int, default=0, help="long-lived objects in each process")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, mode, key, loads = args.child
        child(path, mode, key, int(loads), args.host_objects)
        return
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 50_000]
    rounds, loads = (3, 5) if args.quick else (9, 15)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "store"
        build(path, sizes)
        print(f"{'messages':>9} {'mode':>8} {'first ms':>9} {'repeated ms':>12}")
        for size in sizes:
            runs: dict[str, dict[str, list[int]]] = {mode: {"first": [], "repeated": []} for mode in MODES}
            for _ in range(rounds):
                for mode in MODES:  # taking turns, so that a shared machine's noise lands on both alike
                    command = [sys.executable, "-m", "benchmarks.bench_gc_pause", "--host-objects",
                               str(args.host_objects), "--child", str(path), mode, f"s{size}", str(loads)]
                    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    for name, value in json.loads(out).items():
                        if name in runs[mode]:
                            runs[mode][name].append(value)
            for mode in MODES:
                first, repeated = (statistics.median(runs[mode][name]) / 1e6 for name in ("first", "repeated"))
                print(f"{size:>9} {mode:>8} {first:>9.2f} {repeated:>12.2f}")


if __name__ == "__main__":
    main()
