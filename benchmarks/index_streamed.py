"""Rebuilding the search index of a log whose assistant messages are replaced as they stream, code against code.

A streamed reply is a run of ``update_last`` calls, each a removal and an append for the index's writer, inside one
batch; a log of appends alone takes none. Each session of the store is a user message of 12 words and an assistant
message replaced ``R`` times as it grows by 4 words (``R`` of ``--replacements``; 0 is a log of appends), one
session's events after another's, or ``--streams`` sessions' replies streaming at once (their replacements
alternate in the log, as a busy assistant's do). ``--late N`` then adds N edits of old sessions: a new session's
message, then a replacement of an earlier session's reply, which the batch appended long before (it groups the few
postings appended since the batch last grouped, rather than dropping its own). Each
measurement is a fresh process: it builds the store, brings its index up to date (``catch_up``), then times
``rebuild_projections(["search"])`` ``--rebuilds`` times in process CPU time and reports their median. With
``--against DIR`` (a source tree of another version, such as ``git archive`` of a commit), processes on that code
and on this one alternate, round by round, and the table gives each one's median over the rounds and their ratio.

``python -m benchmarks.index_streamed [--sessions N] [--replacements R ...] [--streams S] [--late N]
[--rounds K] [--against DIR ...]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The source tree this file belongs to (its processes import ``eventstore`` from here).
THIS_TREE = Path(__file__).resolve().parent.parent
USER_WORDS, STEP_WORDS = 12, 4


def texts(sessions: int, replacements: int, seed: int) -> list[tuple[str, list[str]]]:
    """Each session's key, its user message and its assistant message's versions as it streams (the first
    appended, each later one put in its place), of Zipf-like words."""
    rng = random.Random(seed)
    words = [f"w{rank}" for rank in range(5_000)]
    weights = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    found = []
    for number in range(sessions):
        said = rng.choices(words, cum_weights=weights, k=USER_WORDS)
        reply = rng.choices(words, cum_weights=weights, k=STEP_WORDS * (replacements + 1))
        versions = [" ".join(reply[:STEP_WORDS * step]) for step in range(1, replacements + 2)]
        found.append((f"session{number:06d}", [" ".join(said), *versions]))
    return found


def measure(sessions: int, replacements: int, streams: int, late: int, rebuilds: int,
            directory: str | None) -> dict[str, float]:
    """In this process: the store built and caught up, then the CPU seconds of each of ``rebuilds`` rebuilds.
    ``streams`` sessions at a time stream their replies at once: their replacements alternate in the log; ``late``
    edits of old sessions follow."""
    from eventstore import ChatMessage, SessionStore

    conversations = texts(sessions, replacements, seed=16)
    with tempfile.TemporaryDirectory(prefix="eventstore-streamed-", dir=directory) as scratch, \
            SessionStore(Path(scratch) / "store", durable=False) as store:
        for first in range(0, sessions, streams):
            together = conversations[first:first + streams]
            for key, (said, reply, *_) in together:
                store.append(key, ChatMessage.user(said))
                store.append(key, ChatMessage.assistant(reply))
            for step in range(2, replacements + 2):
                for key, versions in together:
                    store.update_last(key, ChatMessage.assistant(versions[step]))
        for number in range(late):  # a session seven on from the last one edited: far back in the log
            store.append(f"late{number:06d}", ChatMessage.user(conversations[number % sessions][1][0]))
            key, (said, *_) = conversations[7 * number % sessions]
            store.update_last(key, ChatMessage.assistant(said))
        start = time.process_time()
        store.catch_up()
        catch_up = time.process_time() - start
        seconds = []
        for _ in range(rebuilds):
            start = time.process_time()
            store.rebuild_projections(["search"])
            seconds.append(time.process_time() - start)
    return {"catch_up": catch_up, "rebuild": statistics.median(seconds)}


def in_process(tree: Path, arguments: list[str]) -> dict[str, float]:
    """``measure`` in a fresh process importing ``eventstore`` from ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, __file__, "--child", *arguments], env=environment, check=True,
                          capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.index_streamed", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=300, help="sessions (default 300)")
    parser.add_argument("--replacements", type=int, nargs="+", default=[0, 2, 10],
                        help="replacements of each session's assistant message (default 0 2 10)")
    parser.add_argument("--streams", type=int, default=1,
                        help="sessions streaming their replies at once, their replacements alternating (default 1)")
    parser.add_argument("--late", type=int, default=0,
                        help="edits of old sessions at the end: a new session's message, then an earlier session's "
                             "reply replaced (default 0)")
    parser.add_argument("--rebuilds", type=int, default=3, help="rebuilds a process, their median taken (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--against", metavar="DIR", type=Path, action="append", default=[],
                        help="a source tree of another version to measure beside this one (repeatable)")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the temporary stores (default: $TMPDIR)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.sessions, args.streams, args.rebuilds, args.rounds) < 1 or min(*args.replacements, args.late) < 0:
        parser.error("--sessions, --streams, --rebuilds and --rounds must be at least 1, --replacements and --late "
                     "at least 0")
    if args.child:
        [replacements] = args.replacements
        print(json.dumps(measure(args.sessions, replacements, args.streams, args.late, args.rebuilds, args.dir)))
        return 0
    trees = {**{tree.resolve().name: tree.resolve() for tree in args.against}, "this": THIS_TREE}
    samples: dict[tuple[int, str], list[float]] = {}
    loads = [os.getloadavg()[0]]
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}: {args.sessions:,} sessions, {args.streams} streaming at once, "
          f"{args.late} late edits, "
          f"{args.rebuilds} rebuilds a process (median), {args.rounds} alternating rounds; load {loads[0]:.1f}",
          file=sys.stderr)
    for round_number, replacements in itertools.product(range(args.rounds), args.replacements):
        names = list(trees) if round_number % 2 == 0 else list(trees)[::-1]
        for name in names:
            arguments = ["--sessions", str(args.sessions), "--replacements", str(replacements),
                         "--streams", str(args.streams), "--late", str(args.late), "--rebuilds", str(args.rebuilds),
                         *(["--dir", args.dir] if args.dir else [])]
            found = in_process(trees[name], arguments)
            samples.setdefault((replacements, name), []).append(found["rebuild"])
            loads.append(os.getloadavg()[0])
            print(f"round {round_number + 1}, {replacements} replacements, {name}: rebuild {found['rebuild']:.3f} s "
                  f"(catch-up {found['catch_up']:.3f} s), load {loads[-1]:.1f}", file=sys.stderr)
    print(f"rebuild_projections(['search']) of {args.sessions:,} sessions ({args.streams} streaming at once, "
          f"{args.late} late edits), process "
          f"CPU time, median of {args.rounds} processes (each the median of {args.rebuilds}); "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load average {min(loads):.1f}-{max(loads):.1f}")
    print()
    others = list(trees)[:-1]
    print(f"| replacements a session | {' | '.join(trees)} |{''.join(f' this / {name} |' for name in others)}")
    print(f"|---|{'---|' * (len(trees) + len(others))}")
    for replacements in args.replacements:
        medians = {name: statistics.median(samples[replacements, name]) for name in trees}
        cells = [f"{', '.join(f'{value:.3f}' for value in samples[replacements, name])} s ({medians[name]:.3f})"
                 for name in trees]
        ratios = [f"{medians['this'] / medians[name]:.2f}x" for name in others]
        print(f"| {replacements} | {' | '.join(cells + ratios)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
