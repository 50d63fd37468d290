"""Point-in-time reads on a store an older version wrote and used, against the same log imported fresh.

Run: python -m benchmarks.bench_old_store --old-code DIR [--before-code DIR] [--quick]

``DIR`` is a checkout of an older version (``git worktree add DIR 4841960``). That version writes the store, in
a child process: 2,000 sessions of two messages and three of 10,000 events (appends in batches of 20, removals,
streaming updates), then redacts one of the long sessions and rebuilds its read models, as a long-lived store
has done; that leaves it no snapshot. Then, in child processes taking turns, each opening the store (not timed)
and timing ``session_at`` at a quarter, half and the end of each long session, in CPU time:

  * ``after``: the store as this code opens it (its first writable open, timed once apart, takes the missing
    snapshots);
  * ``before`` (with ``--before-code``): a copy of the store opened by that code, say a checkout of the version
    before this one;
  * ``fresh``: the same log exported and imported into a new store by this code.

Prints the median of each read and of the runs' totals, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG_KEYS = ("long/0", "long/1", "long/2")

WRITE = """
import random, sys
from eventstore import ChatMessage, SessionStore
rng = random.Random(11)
with SessionStore(sys.argv[1], durable=False) as store:
    for n in range(int(sys.argv[2])):
        store.append_many(f"short/{n}", [ChatMessage.user(f"hello {n} " * 5), ChatMessage.assistant("ok " * 20)])
    for key in ("long/0", "long/1", "long/2"):
        batch = []
        for i in range(int(sys.argv[3])):
            roll = rng.random()
            if roll < 0.9 or i == 0:
                batch.append(ChatMessage("user" if i % 2 else "assistant", "word " * rng.randint(4, 60)))
                if len(batch) == 20:
                    store.append_many(key, batch)
                    batch = []
                continue
            if batch:
                store.append_many(key, batch)
                batch = []
            if roll < 0.95:
                store.remove_last(key)
            else:
                store.update_last(key, ChatMessage.assistant("revised " * 10))
        if batch:
            store.append_many(key, batch)
    store.redact("long/2", "asked to forget")
    store.rebuild_projections()
    print(store.stats().snapshots)
"""

FIRST_OPEN = """
import sys, time
from eventstore import SessionStore
start = time.process_time()
with SessionStore(sys.argv[1]) as store:
    print(time.process_time() - start, store.stats().snapshots)
"""

COPY = """
import sys
from pathlib import Path
from eventstore import SessionStore
from eventstore.interchange import export_events, import_events
with SessionStore(sys.argv[1], readonly=True) as store, open(sys.argv[3], "wb") as out:
    export_events(store, out)
with SessionStore(sys.argv[2], durable=False) as store:
    import_events(store, Path(sys.argv[3]))
"""

READS = """
import json, sys, time
from eventstore import SessionStore
times = {}
with SessionStore(sys.argv[1]) as store:
    for key in ("long/0", "long/1", "long/2"):
        versions = len(store.history(key))
        for version in (versions // 4, versions // 2, versions - 10):
            start = time.process_time()
            store.session_at(key, version=version)
            times[f"{key} at {version}"] = time.process_time() - start
print(json.dumps(times))
"""


def run(code: Path, script: str, *args: str) -> str:
    """``script`` in a child process that imports eventstore from ``code``; its output."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-code", type=Path, required=True, help="a checkout of the version that writes the store")
    parser.add_argument("--before-code", type=Path, help="a checkout whose reads to compare with this code's")
    parser.add_argument("--quick", action="store_true", help="shorter sessions and fewer turns")
    args = parser.parse_args()
    shorts, events, turns = (200, 2000, 2) if args.quick else (2000, 10_000, 7)
    with tempfile.TemporaryDirectory() as scratch:
        stores = {name: Path(scratch) / name for name in ("old", "after", "before", "fresh")}
        left = run(args.old_code, WRITE, str(stores["old"]), str(shorts), str(events))
        print(f"the older version's store: {left.strip()} snapshots")
        for name in ("after", "before"):
            shutil.copytree(stores["old"], stores[name])
        seconds, snapshots = run(ROOT, FIRST_OPEN, str(stores["after"])).split()
        print(f"this code's first writable open: {float(seconds):.2f} s CPU, {snapshots} snapshots taken")
        run(ROOT, COPY, str(stores["old"]), str(stores["fresh"]), str(Path(scratch) / "log.jsonl"))
        peers = {"after": ROOT, "fresh": ROOT}
        if args.before_code is not None:
            peers = {"before": args.before_code, **peers}
        times: dict[str, list[dict[str, float]]] = {name: [] for name in peers}
        for _ in range(turns):
            for name, code in peers.items():
                times[name].append(json.loads(run(code, READS, str(stores[name]))))
    reads = list(times["after"][0])
    print(f"\n{'read':>18} " + " ".join(f"{name + ' ms':>10}" for name in peers))
    for read in reads:
        print(f"{read:>18} " + " ".join(f"{statistics.median(t[read] for t in times[name]) * 1000:>10.1f}"
                                        for name in peers))
    totals = {name: statistics.median(sum(t.values()) for t in runs) for name, runs in times.items()}
    print("\nall reads, median of the runs' totals: "
          + ", ".join(f"{name} {total * 1000:.0f} ms" for name, total in totals.items()))
    print(f"after / fresh: {totals['after'] / totals['fresh']:.2f}x (target: ~1x)")
    if "before" in totals:
        print(f"before / after: {totals['before'] / totals['after']:.1f}x")


if __name__ == "__main__":
    main()
