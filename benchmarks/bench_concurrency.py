"""Concurrent durable appends (group commit), the async store on its event loop, and subscription delay.

Run: python -m benchmarks.bench_concurrency [--quick] [--dir DIR]

* Durable appends per second with 1, 8, 32 and 128 concurrent writers, each to its own session: threads on
  one ``SessionStore``, tasks on one ``AsyncSessionStore``, 4 processes of writer threads, and SQLite with
  ZeroClaw's schema at ``synchronous=FULL`` (WAL, one connection per writer, a busy timeout); the median and
  p99 latency of a call. Each configuration writes into a fresh store.
* What a lone writer pays for the group commit: ``Storage.write`` against a commit without the queue.
* ``await store.load(key)`` on a cached 1,000-message session against the sync call.
* The event loop's longest stall while 32 tasks append durably (a 1 ms ticker's lateness).
* Subscription delay, commit to delivery, in this process and from another process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eventstore import AsyncSessionStore, ChatMessage, Durability, SessionStore
from eventstore.storage import WriteTransaction
from eventstore.storage.lmdb import Environment

from .baselines import SqliteSessions

WRITERS = (1, 8, 32, 128)
PROCESSES = 4
MODES = ("threads", "tasks", "processes", "sqlite")
MESSAGE = ChatMessage("user", "a message of ordinary length, about as long as a short chat turn " * 3)


class Run:
    """One configuration's latencies (seconds per call) and wall time."""

    def __init__(self, latencies: list[float], wall: float) -> None:
        self.latencies, self.wall = latencies, wall

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def calls_per_writer(writers: int, total: int) -> int:
    return max(3, total // writers)


def timed_loop(call: Callable[[int], object], count: int) -> list[float]:
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        call(index)
        latencies.append(time.perf_counter() - started)
    return latencies


def in_threads(writers: int, work: Callable[[int], list[float]]) -> Run:
    results: list[list[float]] = [[] for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return Run([latency for result in results for latency in result], time.perf_counter() - started)


def run_threads(path: Path, writers: int, calls: int) -> Run:
    with SessionStore(path) as store:
        store.append("warm-up", MESSAGE)
        return in_threads(writers, lambda index: timed_loop(
            lambda _: store.append(f"writer-{index}", MESSAGE), calls))


def run_tasks(path: Path, writers: int, calls: int) -> Run:
    async def main() -> Run:
        async with AsyncSessionStore(path) as store:
            await store.append("warm-up", MESSAGE)

            async def writer(index: int) -> list[float]:
                latencies = []
                for _ in range(calls):
                    started = time.perf_counter()
                    await store.append(f"writer-{index}", MESSAGE)
                    latencies.append(time.perf_counter() - started)
                return latencies

            started = time.perf_counter()
            results = await asyncio.gather(*(writer(index) for index in range(writers)))
            return Run([latency for result in results for latency in result], time.perf_counter() - started)

    return asyncio.run(main())


def run_sqlite(path: Path, writers: int, calls: int) -> Run:
    stores = [SqliteSessions(path) for _ in range(writers)]
    try:
        for store in stores:
            store._db.execute("PRAGMA busy_timeout=60000")
        return in_threads(writers, lambda index: timed_loop(
            lambda _: stores[index].append(f"writer-{index}", MESSAGE), calls))
    finally:
        for store in stores:
            store.close()


def child_writers(path: str, prefix: str, threads: int, calls: int, start_at: float) -> dict[str, Any]:
    """A writer process: ``threads`` threads appending from wall-clock time ``start_at``."""
    with SessionStore(path) as store:
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        run = in_threads(threads, lambda index: timed_loop(
            lambda _: store.append(f"{prefix}-{index}", MESSAGE), calls))
        return {"latencies": run.latencies, "began": began, "ended": time.time()}


def run_processes(path: Path, writers: int, calls: int) -> Run:
    SessionStore(path).close()
    threads = max(1, writers // PROCESSES)
    start_at = time.time() + 2.0  # every child has opened the store by then
    children = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_concurrency", "--child-writers", str(path),
                                  f"p{number}", str(threads), str(calls), repr(start_at)], stdout=subprocess.PIPE)
                for number in range(PROCESSES)]
    reports = [json.loads(child.communicate()[0]) for child in children]
    latencies = [latency for report in reports for latency in report["latencies"]]
    return Run(latencies, max(r["ended"] for r in reports) - min(r["began"] for r in reports))


RUNNERS: dict[str, Callable[[Path, int, int], Run]] = {
    "threads": run_threads, "tasks": run_tasks, "processes": run_processes, "sqlite": run_sqlite}


# -- single measurements --------------------------------------------------------------------------------------

def lone_writer_overhead(path: Path, count: int) -> tuple[float, float]:
    """Median seconds of one write through the group commit and of the same commit without its queue
    (no flush, so that the difference is not lost in the disk's noise)."""
    path.mkdir()
    environment = Environment.acquire(path, durability=Durability.OFF, max_size=None)
    try:
        space = environment.space("bench")

        def body(txn: WriteTransaction) -> None:
            txn.put(space, b"key", b"value")

        def commit_directly() -> None:
            with environment._transaction(write=True) as txn:
                body(txn)

        grouped: list[float] = []
        direct: list[float] = []
        for _ in range(count // 100):  # taking turns, so that noise falls on both
            grouped += timed_loop(lambda _: environment.write(body), 100)
            direct += timed_loop(lambda _: commit_directly(), 100)
        return statistics.median(grouped), statistics.median(direct)
    finally:
        environment.release()


def load_on_the_loop(path: Path, count: int) -> tuple[float, float]:
    """Median seconds of the sync and the async ``load`` of a cached 1,000-message session."""
    async def main() -> tuple[float, float]:
        async with AsyncSessionStore(path, durable=False) as store:
            await store.append_many("long", [MESSAGE] * 1000)
            sync = store._store
            sync.load("long")
            sync_times: list[float] = []
            async_times: list[float] = []
            for _ in range(count // 50):
                sync_times += timed_loop(lambda _: sync.load("long"), 50)
                for _ in range(50):
                    started = time.perf_counter()
                    await store.load("long")
                    async_times.append(time.perf_counter() - started)
            return statistics.median(sync_times), statistics.median(async_times)

    return asyncio.run(main())


async def ticking(work: Callable[[], Awaitable[object]]) -> list[float]:
    """How late a 1 ms ticker on the loop wakes, each time, while ``work`` runs."""
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - started - 0.001)

    ticks = asyncio.create_task(ticker())
    await work()
    done.set()
    await ticks
    return lateness


def loop_stalls(path: Path, writers: int, calls: int) -> tuple[list[float], list[float]]:
    """The ticker's lateness while ``writers`` tasks append durably, and on the idle loop for as long."""
    async def main() -> tuple[list[float], list[float]]:
        async with AsyncSessionStore(path) as store:
            await store.append("warm-up", MESSAGE)

            async def writer(index: int) -> None:
                for _ in range(calls):
                    await store.append(f"writer-{index}", MESSAGE)

            started = time.perf_counter()
            loaded = await ticking(lambda: asyncio.gather(*(writer(index) for index in range(writers))))
            idle = await ticking(lambda: asyncio.sleep(time.perf_counter() - started))
            return loaded, idle

    return asyncio.run(main())


def child_appender(path: str, count: int, pause: float) -> dict[str, Any]:
    """Append ``count`` messages ``pause`` seconds apart; report when each append returned (wall clock)."""
    with SessionStore(path) as store:
        returned = {}
        for index in range(count):
            store.append("feed", ChatMessage("user", str(index)))
            returned[index] = time.time()
            time.sleep(pause)
    return {"returned": returned}


def subscription_delays(path: Path, count: int, other_process: bool) -> list[float]:
    """Seconds from an append's return to its delivery to a subscriber (0 when delivered first)."""
    pause = 0.02
    with SessionStore(path) as store:
        after = max((event.position for event in store.events()), default=0)
        delivered: dict[str, float] = {}

        def follow() -> None:
            for event in store.subscribe(after=after, timeout=5):
                delivered[event.event.message.content] = time.time()  # type: ignore[union-attr]
                if len(delivered) == count:
                    return

        follower = threading.Thread(target=follow)
        follower.start()
        if other_process:
            output = subprocess.run([sys.executable, "-m", "benchmarks.bench_concurrency", "--child-appender",
                                     str(path), str(count), repr(pause)], capture_output=True, check=True).stdout
            returned = {int(k): v for k, v in json.loads(output)["returned"].items()}
        else:
            returned = child_appender(str(path), count, pause)["returned"]
        follower.join()
    return [max(0.0, delivered[str(index)] - moment) for index, moment in returned.items()]


# -- the report -----------------------------------------------------------------------------------------------

def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * len(values))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_concurrency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small counts")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the temporary stores (default: $TMPDIR)")
    parser.add_argument("--child-writers", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--child-appender", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_writers:
        path, prefix, threads, calls, start_at = args.child_writers
        print(json.dumps(child_writers(path, prefix, int(threads), int(calls), float(start_at))))
        return 0
    if args.child_appender:
        path, count, pause = args.child_appender
        print(json.dumps(child_appender(path, int(count), float(pause))))
        return 0

    total = 160 if args.quick else 800  # calls per configuration, shared by its writers
    workdir = Path(tempfile.mkdtemp(prefix="eventstore-bench-", dir=args.dir))
    fresh = iter(range(1_000_000))

    def scratch() -> Path:
        return workdir / f"store-{next(fresh)}"

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        runs: dict[tuple[str, int], Run] = {}
        for writers in WRITERS:
            for mode in MODES:
                if mode == "processes" and writers < PROCESSES:
                    continue
                log(f"{mode}, {writers} writers")
                runs[mode, writers] = RUNNERS[mode](scratch(), writers, calls_per_writer(writers, total))
        grouped, direct = lone_writer_overhead(scratch(), 2000 if args.quick else 20000)
        sync_load, async_load = load_on_the_loop(scratch(), 500 if args.quick else 5000)
        stalls, idle = loop_stalls(scratch(), 32, calls_per_writer(32, total))
        feed_here = subscription_delays(scratch(), 30 if args.quick else 200, other_process=False)
        feed_there = subscription_delays(scratch(), 30 if args.quick else 200, other_process=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"eventstore concurrency benchmark, {time.strftime('%Y-%m-%d')}: Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run")
    print()
    print("Durable appends to distinct sessions: appends per second, median and p99 latency of a call")
    print(f"{'writers':>8} " + " ".join(f"{mode:>28}" for mode in MODES))
    for writers in WRITERS:
        cells = []
        for mode in MODES:
            run = runs.get((mode, writers))
            cells.append(f"{'':>28}" if run is None else
                         f"{run.throughput:>7.0f}/s {ms(run.quantile(0.5)):>9} {ms(run.quantile(0.99)):>10}")
        print(f"{writers:>8} " + " ".join(cells))
    print(f"(processes: {PROCESSES} processes of writers/{PROCESSES} threads each)")
    print()
    print(f"A lone writer's write, no flush: {grouped * 1e6:.1f} µs through the group commit, "
          f"{direct * 1e6:.1f} µs without the queue")
    print(f"load of a cached 1,000-message session: sync {sync_load * 1e6:.1f} µs, "
          f"awaited {async_load * 1e6:.1f} µs ({async_load / sync_load:.2f}x)")
    for title, lateness in (("while 32 tasks append durably", stalls), ("idle, for as long", idle)):
        print(f"event loop lateness (a 1 ms ticker) {title}: median {ms(statistics.median(lateness))}, "
              f"p99 {ms(p99(lateness))}, longest {ms(max(lateness))}")
    for title, delays in (("in this process", feed_here), ("from another process", feed_there)):
        print(f"subscription delay {title}: median {ms(statistics.median(delays))}, "
              f"p99 {ms(p99(delays))}")
    print()
    sqlite = runs["sqlite", 32]
    checks = [
        (f"32 threads: >= 3x SQLite's appends/s ({runs['threads', 32].throughput / sqlite.throughput:.1f}x)",
         runs["threads", 32].throughput >= 3 * sqlite.throughput),
        (f"32 tasks: >= 3x SQLite's appends/s ({runs['tasks', 32].throughput / sqlite.throughput:.1f}x)",
         runs["tasks", 32].throughput >= 3 * sqlite.throughput),
        ("32 threads: p99 no worse than SQLite's", runs["threads", 32].quantile(0.99) <= sqlite.quantile(0.99)),
        ("32 tasks: p99 no worse than SQLite's", runs["tasks", 32].quantile(0.99) <= sqlite.quantile(0.99)),
        (f"1 writer no slower than before: the queue costs {(grouped - direct) * 1e6:.1f} µs a write",
         grouped - direct <= 0.05 * runs["threads", 1].quantile(0.5)),
        ("awaited load within 1.5x of the sync call", async_load <= 1.5 * sync_load),
        ("event loop never stalls more than 2 ms", max(stalls) <= 0.002),
        ("the same at p99, over the idle loop's p99 (this machine's own jitter)",
         p99(stalls) - p99(idle) <= 0.002),
        ("subscription sees another process's commit within 100 ms (p99)",
         p99(feed_there) <= 0.1),
    ]
    print("Targets:")
    for text, met in checks:
        print(f"  {'met   ' if met else 'MISSED'} {text}")
    if args.quick:
        print("  (a smoke run: too few samples to judge the targets; run without --quick)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
