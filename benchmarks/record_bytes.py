"""The log's bytes and the appends' CPU time, two code trees side by side (issue 16, item 2: bytes on disk).

Each build is bench_scale's corpus (its seed and vocabulary; ``--sessions`` sessions of ``--messages`` messages, one
``append_many`` a session, ``durable=False``, no search index) written by one tree's ``eventstore`` in a child
process of its own, the trees alternating for ``--rounds`` rounds. Per tree it prints ``log.events``' entries,
value bytes and page bytes (``store.stats(databases=True)``, as ``eventstore stats`` counts them), the data file's
size, and the process CPU time of the appends a session: medians over the rounds with their range, each beside the
first tree's as a ratio, and the load average around each build.

    python -m benchmarks.record_bytes --tree main=/path/to/a/checkout/of/main --tree branch=. --sessions 10000

A tree needs ``eventstore`` and ``benchmarks/bench_scale.py`` (its ``Corpus`` and ``Settings``); the child imports
them from the tree (``PYTHONPATH``) and says which file it imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_DATABASE = "log.events"


def build(path: Path, sessions: int, messages: int) -> dict[str, Any]:
    """Build the corpus's first ``sessions`` sessions at ``path`` with the importable ``eventstore``; what it took."""
    import eventstore
    from benchmarks.bench_scale import Corpus, Settings
    from eventstore import SessionStore

    corpus = Corpus(Settings(sessions=sessions, messages=messages))
    written = [(corpus.key(number), corpus.session()) for number in range(sessions)]  # drawn before the clock runs
    load_before = os.getloadavg()[0]
    with SessionStore(path, durable=False) as store:
        start = time.process_time_ns()
        for key, session in written:
            store.append_many(key, session)
        cpu_ns = time.process_time_ns() - start
        usage = store.stats(databases=True).usage
    assert usage is not None
    log = next(space for space in usage.spaces if space.name == _DATABASE)
    data = path / "data.mdb"
    return {"eventstore": eventstore.__file__, "load": [load_before, os.getloadavg()[0]],
            "append_us_a_session": cpu_ns / sessions / 1000, "entries": log.entries, "value_bytes": log.value_bytes,
            "page_bytes": log.pages * usage.page_size, "file_bytes": data.stat().st_size,
            "file_allocated": data.stat().st_blocks * 512}


def run_child(tree: Path, sessions: int, messages: int, parent: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=parent) as directory:
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(Path(directory) / "store"),
             "--sessions", str(sessions), "--messages", str(messages)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(result.stdout)
    if not Path(found["eventstore"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the child imported {found['eventstore']}, not the tree's eventstore")
    return found


def summary(name: str, runs: list[dict[str, Any]], first: list[dict[str, Any]]) -> str:
    def median(rows: list[dict[str, Any]], field: str) -> float:
        return float(statistics.median(row[field] for row in rows))

    parts = []
    for field, unit in (("value_bytes", "B"), ("page_bytes", "B"), ("file_bytes", "B"), ("append_us_a_session", "µs")):
        values = [row[field] for row in runs]
        spread = f" ({min(values):,.1f}-{max(values):,.1f})" if field == "append_us_a_session" else ""
        ratio = median(runs, field) / median(first, field)
        parts.append(f"{field} {median(runs, field):,.1f} {unit}{spread}, x{ratio:.3f}")
    loads = ", ".join(f"{row['load'][0]:.1f}-{row['load'][1]:.1f}" for row in runs)
    return (f"{name}: {runs[0]['entries']:,} records, {median(runs, 'value_bytes') / runs[0]['entries']:.1f} B each; "
            + "; ".join(parts) + f"; load {loads}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="a code tree to build with (twice or more; the first is the baseline of the ratios)")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="parent directory for the stores (default: $TMPDIR)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(build(args.child, args.sessions, args.messages)))
        return 0
    trees = [(name, Path(directory)) for name, _, directory in (tree.partition("=") for tree in args.tree)]
    if len(trees) < 2:
        parser.error("give two trees or more")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    for round_number in range(args.rounds):
        order = trees if round_number % 2 == 0 else trees[::-1]
        for name, tree in order:
            runs[name].append(run_child(tree, args.sessions, args.messages, args.dir or Path(tempfile.gettempdir())))
            print(f"round {round_number + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
    print(f"{args.sessions:,} sessions x {args.messages} messages, {args.rounds} rounds, medians (range), "
          f"ratio to {trees[0][0]}:")
    for name, _ in trees:
        print(summary(name, runs[name], runs[trees[0][0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
