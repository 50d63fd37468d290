"""The core benchmark: our ``SessionStore`` against ZeroClaw's SQLite store and JSONL layout, side by side.

Usage (from the project root)::

    python -m benchmarks.bench_core            # the full run, a table on stdout (about a minute)
    python -m benchmarks.bench_core --quick    # a smoke run (seconds)
    python -m benchmarks.bench_core --out results.json
    python -m benchmarks.bench_core --append-cpu   # our append's own CPU time alone (seconds; no peers)

Every workload runs the same calls with the same messages on the three stores,
interleaved in small blocks so that the noise of a shared machine lands on all
three alike, and reports medians (p95 where there are enough samples) and the
ratio peer/ours (above 1: ours is faster or smaller). ``--append-cpu`` instead
times our append of one message to an existing session, with no flush, in process
CPU time: the store's own work, which every adapter pays, for comparing two versions
of the code run in alternating processes (the peers are left out: they do not change).
Our store is driven
through its public API only, durable by default; the one exception is the
breakdown of a load into its phases, which reaches into private modules to
show where the time goes. Stores live in a temporary directory that is removed
afterwards; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import orjson

from eventstore import ChatMessage, SessionMetadata, SessionStore

from .baselines import JsonlSessions, SqliteSessions
from .flush_floor import commit_floor_probe, fsync_probe

BACKENDS = ("ours", "sqlite", "jsonl")
PEERS = ("sqlite", "jsonl")
ROOT = Path(__file__).resolve().parent.parent
now_ns = time.perf_counter_ns
#: A store of any backend: ours, SQLite or JSONL.
S = TypeVar("S")


# -- settings -----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    single_appends: int = 500
    batches: int = 60
    batch_size: int = 100
    load_size: int = 1000
    first_load_runs: int = 15
    repeated_loads: int = 300
    turns: int = 60
    list_sessions: int = 10_000
    list_runs: int = 15
    removals: int = 200
    bytes_messages: int = 2000
    bytes_sessions: int = 20
    breakdown_loads: int = 200
    block: int = 20


QUICK = Settings(single_appends=40, batches=6, first_load_runs=3, repeated_loads=40, turns=10,
                 list_sessions=1000, list_runs=3, removals=20, bytes_messages=300, breakdown_loads=30, block=10)


# -- realistic messages ----------------------------------------------------------------

_WORDS = (
    "the a to of and in is it that for you this with on be are as can not or what store session message event "
    "log read write commit transaction index key value page file disk cache memory python rust sqlite lmdb json "
    "function return error result config deploy server client request response user assistant tool call test "
    "build release version update delete list load append remove name state running idle turn history search "
    "please could would should maybe because however therefore first second then finally here there"
).split()
# Chats are mostly ASCII; about one word in a hundred is not (accents, other scripts, emoji).
_UNICODE_WORDS = "café naïve résumé straße über 日本語 テスト 中文 한국어 Ωμέγα привет 🙂 🚀 ✓ → ≤ “quoted”".split()
_TOOLS = ("shell", "file_read", "file_write", "web_fetch", "memory_recall", "git_status", "http_request")


def _text(rng: random.Random, length: int) -> str:
    parts: list[str] = []
    size = 0
    while size < length:
        roll = rng.random()
        if roll < 0.02:
            word = "\n\n"
        elif roll < 0.03:
            word = "\n```python\ndef f(x):\n    return x * 2\n```\n"
        elif roll < 0.04:
            word = rng.choice(_UNICODE_WORDS)
        elif roll < 0.07:
            word = rng.choice(_WORDS).capitalize() + "."
        else:
            word = rng.choice(_WORDS)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:length]


def _length(rng: random.Random) -> int:
    """20 to 2000 characters, log-uniform: many short turns, some long ones."""
    return int(math.exp(rng.uniform(math.log(20), math.log(2000))))


def make_messages(count: int, seed: int = 2024) -> list[ChatMessage]:
    """A deterministic mix of user and assistant text, tool calls and tool results (JSON in ``content``)."""
    rng = random.Random(seed)
    messages = [ChatMessage.system("You are a helpful assistant. Answer briefly and use tools when needed.")]
    while len(messages) < count:
        roll = rng.random()
        length = _length(rng)
        if roll < 0.38:
            messages.append(ChatMessage.user(_text(rng, length)))
        elif roll < 0.70:
            messages.append(ChatMessage.assistant(_text(rng, length)))
        elif roll < 0.85:
            call = {
                "content": _text(rng, min(length, 80)),
                "tool_calls": [{
                    "id": f"call_{rng.getrandbits(48):012x}",
                    "name": rng.choice(_TOOLS),
                    "arguments": json.dumps({"command": _text(rng, max(length - 120, 10)), "timeout_secs": 30},
                                            ensure_ascii=False),
                }],
            }
            messages.append(ChatMessage.assistant(json.dumps(call, ensure_ascii=False)))
        else:
            result = {"tool_call_id": f"call_{rng.getrandbits(48):012x}", "content": _text(rng, length)}
            messages.append(ChatMessage.tool(json.dumps(result, ensure_ascii=False)))
    return messages[:count]


# -- timing helpers -------------------------------------------------------------------


@dataclass
class Stats:
    n: int
    median: float
    p95: float | None
    minimum: float
    mean: float

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)] if len(ordered) >= 20 else None
        return cls(len(ordered), statistics.median(ordered), p95, ordered[0], statistics.fmean(ordered))


def timed(call: Callable[[S, int], object], store: S) -> Callable[[int], int]:
    """An op that returns the ns ``call(store, i)`` takes; ``store`` is bound now, as ops run later."""
    def op(i: int) -> int:
        start = now_ns()
        call(store, i)
        return now_ns() - start
    return op


def load_bench(store: Any, _i: int) -> object:
    return store.load("load-bench")


def list_all(store: Any, _i: int) -> object:
    return store.list_sessions_with_metadata()


def interleaved(ops: Mapping[str, Callable[[int], int]], count: int, block: int) -> dict[str, list[float]]:
    """Run ``count`` timed operations per backend, in rotating blocks; each op returns its own ns."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    names = list(ops)
    done = turn = 0
    while done < count:
        size = min(block, count - done)
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            op, out = ops[name], samples[name]
            for i in range(done, done + size):
                out.append(op(i))
        done += size
        turn += 1
    return samples


def du(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, apparent bytes) of everything under ``path``."""
    allocated = apparent = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def written_bytes() -> int | None:
    """Bytes this process has passed to write calls so far (Linux ``/proc/self/io`` wchar), or ``None``."""
    try:
        with open("/proc/self/io", "rb") as handle:
            for line in handle:
                if line.startswith(b"wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def metered(ops: dict[str, Callable[[int], int]], tally: dict[str, list[int]]) -> dict[str, Callable[[int], int]]:
    """Wrap timed ops so that the bytes each one writes are tallied too (outside the timed region)."""
    def wrap(name: str, op: Callable[[int], int]) -> Callable[[int], int]:
        def run(i: int) -> int:
            before = written_bytes()
            elapsed = op(i)
            after = written_bytes()
            if before is not None and after is not None:
                tally.setdefault(name, []).append(after - before)
            return elapsed
        return run
    return {name: wrap(name, op) for name, op in ops.items()}


# -- results --------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    title: str
    unit: str  # "ns" or "bytes"
    stats: dict[str, Stats]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def ratio(self, peer: str, ours: str = "ours") -> float | None:
        if peer not in self.stats or ours not in self.stats or not self.stats[ours].median:
            return None
        return self.stats[peer].median / self.stats[ours].median


def _fmt_ns(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e9:
        return f"{value / 1e9:.2f} s"
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    return f"{value / 1e3:.0f} µs" if value >= 1e4 else f"{value / 1e3:.1f} µs"


def _fmt(row: Row, value: float | None) -> str:
    if row.unit == "bytes":
        return "-" if value is None else f"{value:,.0f} B"
    return _fmt_ns(value)


def _cell(row: Row, name: str) -> str:
    stats = row.stats.get(name)
    if stats is None:
        return "-"
    text = _fmt(row, stats.median)
    if stats.p95 is not None:
        text += f" ({_fmt(row, stats.p95)})"
    return text


def render_table(rows: list[Row], columns: tuple[str, ...] = BACKENDS) -> str:
    header = ["workload", "n"] + [f"{c} median (p95)" for c in columns] + [f"{p}/ours" for p in PEERS]
    body = []
    for row in rows:
        n = max(s.n for s in row.stats.values())
        ratios = [row.ratio(p) for p in PEERS]
        body.append([row.title, str(n)] + [_cell(row, c) for c in columns]
                    + ["-" if r is None else f"{r:.2f}x" for r in ratios])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for line, row in zip(body, rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if row.note:
            lines.append("    " + row.note)
    return "\n".join(lines)


# -- opening stores -----------------------------------------------------------------------


def open_store(backend: str, path: Path, *, durable: bool | str = True, **options: Any) -> Any:
    if backend == "ours":
        return SessionStore(path, durable=durable, **options)
    if backend == "sqlite":
        return SqliteSessions(path, durable=durable)
    if backend == "jsonl":
        if not isinstance(durable, bool):
            raise ValueError(f"JSONL has no durability level {durable!r}: only on or off")
        return JsonlSessions(path, durable=durable)
    raise ValueError(backend)


def fill(store: Any, key: str, messages: list[ChatMessage], batch: int = 100) -> None:
    for start in range(0, len(messages), batch):
        store.append_many(key, messages[start:start + batch])


# -- child processes: the first load in a fresh process --------------------------------------


def child_first_load(backend: str, path: str, key: str) -> dict[str, Any]:
    start = now_ns()
    store = open_store(backend, Path(path))
    opened = now_ns()
    messages = store.load(key)
    loaded = now_ns()
    store.close()
    return {"open_ns": opened - start, "load_ns": loaded - opened, "count": len(messages)}


LOAD_PHASES = (
    "validate key, begin read txn",
    "key -> stream id + head (LMDB gets, orjson head)",
    "LMDB cursor walk over chunks",
    "decode chunk by chunk (struct columns, UTF-8 contents)",
    "message construction (C-level maps) + entries",
    "end read txn",
    "cache store + list of messages",
)


def load_phases(store: SessionStore, key: str) -> tuple[list[int], dict[str, int]]:
    """Our ``load`` of an uncached session, phase by phase, mirroring ``SessionStore.load`` (private API).

    Returns the phase times in ns (in ``LOAD_PHASES`` order) and the sizes seen.
    """
    from eventstore._codec import bulk_decoding
    from eventstore._values import trusted_messages, validate_key
    from projections.chunk import _contents, _payloads, _sections

    environment, model = store._environment, store._messages
    t0 = now_ns()
    validate_key(key)
    with environment.read() as txn:
        t1 = now_ns()
        found = store._queries.live(txn, key)
        t2 = now_ns()
        if found is None:
            raise LookupError(f"no session {key!r} to load")
        stream_id = found[0]
        values = [value for _, value in model._items(txn, stream_id)]
        t3 = now_ns()
        decode_ns = construct_ns = 0
        entries: list[Any] = []
        with bulk_decoding():
            for value in values:  # chunk by chunk, as the store does (projections.chunk.decode_entries)
                before = now_ns()
                micros, sizes, roles, text_at, payload_sizes = _sections(value)
                contents = _contents(value, sizes, text_at)
                decoded = now_ns()
                entries += zip(trusted_messages(roles, contents, _payloads(value, payload_sizes)), micros)
                construct_ns += now_ns() - decoded
                decode_ns += decoded - before
        t5 = now_ns()
    t6 = now_ns()
    messages = [message for message, _ in entries]
    t7 = now_ns()
    times = [t1 - t0, t2 - t1, t3 - t2, decode_ns, construct_ns, t6 - t5, t7 - t6]
    return times, {"chunks": len(values), "bytes": sum(map(len, values)), "count": len(messages)}


def child_breakdown(path: str, key: str) -> dict[str, Any]:
    """Our first load in a fresh process, phase by phase."""
    store = SessionStore(Path(path))
    try:
        times, sizes = load_phases(store, key)
    finally:
        store.close()
    return {"phases": dict(zip(LOAD_PHASES, times)), **sizes}


def spawn(args: list[str]) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_core", *args], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    if completed.returncode:
        raise RuntimeError(f"child {args} failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# -- the benchmark ----------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, workdir: Path, log: Callable[[str], None]) -> None:
        self.s = settings
        self.dir = workdir
        self.log = log
        self.rows: list[Row] = []
        self.diagnostics: list[Row] = []
        self.breakdown: dict[str, Any] = {}
        self.pool = make_messages(4096)
        self.stack = ExitStack()
        self.profile = False
        self.profiled: dict[str, str] = {}
        self.listed: dict[str, Any] = {}
        self.pages_per_append = 0

    def open(self, backend: str, name: str, **options: Any) -> Any:
        store = open_store(backend, self.dir / name / backend, **options)
        self.stack.callback(store.close)
        return store

    def msg(self, i: int) -> ChatMessage:
        return self.pool[i % len(self.pool)]

    def append_one(self, store: Any, i: int) -> None:
        """The single-append workload: message ``i`` to one session."""
        store.append("append-bench", self.msg(i))

    def run(self) -> None:
        with self.stack:
            main = {b: self.open(b, "main") for b in BACKENDS}
            self.single_appends(main)
            self.durability_levels()
            self.batched_appends(main)
            self.loads(main)
            self.removals(main)
            self.listing()
            self.bytes_on_disk()
            self.no_fsync()
            if self.profile:
                try:
                    self.profiles(main["ours"], self.listed["ours"])
                except Exception as exc:  # it reaches into private attributes, which move
                    self.profiled["unavailable"] = f"    {type(exc).__name__}: {exc}"

    # Each workload gets its own session keys, so one does not change another's data.

    def single_appends(self, stores: dict[str, Any]) -> None:
        self.log("durable single appends")
        written: dict[str, list[int]] = {}
        ops = metered({b: timed(self.append_one, s) for b, s in stores.items()}, written)
        probe = fsync_probe(self.dir / "fsync-probe")
        self.stack.callback(probe.close)
        ops["fsync probe"] = probe
        samples = interleaved(ops, self.s.single_appends, self.s.block)
        floor = Stats.of(samples.pop("fsync probe"))
        self.rows.append(Row("append", "append (durable, single)", "ns",
                             {b: Stats.of(v) for b, v in samples.items()},
                             note=f"bare 4 KB pwrite + fdatasync here, interleaved: {_fmt_ns(floor.median)} "
                                  f"({_fmt_ns(floor.p95)}); LMDB flushes twice per commit, SQLite's WAL once",
                             extra={"fdatasync_probe": floor.__dict__}))
        self._written("append", "bytes written per append (write calls)", written)
        self.pages_per_append = round(statistics.median(written["ours"]) / 4096) if written.get("ours") else 0

    def durability_levels(self) -> None:
        """Single appends at one flush a commit, and the flush floors of both commit protocols."""
        self.log("single appends with one flush a commit; flush floors")
        stores = {"ours": self.open("ours", "normal", durable="normal"), "sqlite": self.open("sqlite", "normal"),
                  "sqlite, synchronous=NORMAL": self.open("sqlite", "sqlite-normal", durable="normal")}
        samples = interleaved({b: timed(self.append_one, s) for b, s in stores.items()}, self.s.single_appends,
                              self.s.block)
        unflushed = Stats.of(samples.pop("sqlite, synchronous=NORMAL"))
        self.rows.append(Row(
            "append_normal", "append (single; ours Durability.NORMAL: one flush)", "ns",
            {b: Stats.of(v) for b, v in samples.items()},
            note="a power loss may roll back our latest commit; SQLite here is synchronous=FULL as above (its "
                 f"NORMAL does not flush at commit at all: {_fmt_ns(unflushed.median)})"))
        pages = max(1, self.pages_per_append)
        probes = {"ours": commit_floor_probe(self.dir / "floor-lmdb", pages),
                  "sqlite": fsync_probe(self.dir / "floor-sqlite"),
                  "one page": commit_floor_probe(self.dir / "floor-lmdb-1", 1)}
        for probe in probes.values():
            self.stack.callback(probe.close)
        samples = interleaved(probes, self.s.single_appends, self.s.block)
        least = Stats.of(samples.pop("one page"))
        self.diagnostics.append(Row(
            "flush_floor", "floor of one durable commit (bare writes and flushes, no database)", "ns",
            {b: Stats.of(v) for b, v in samples.items()},
            note=f"ours: LMDB's protocol, {pages} random 4 KB pages (what an append writes here) + fdatasync, "
                 f"then the meta page through O_DSYNC; sqlite: 1 page + fdatasync (its WAL flushes once); "
                 f"LMDB's protocol with 1 page, the least any commit writes: {_fmt_ns(least.median)}",
            extra={"one_page_floor": least.__dict__}))

    def batched_appends(self, stores: dict[str, Any]) -> None:
        self.log("durable batched appends")
        size = self.s.batch_size

        def op(store: Any) -> Callable[[int], int]:
            def run(i: int) -> int:
                batch = [self.msg(i * size + j) for j in range(size)]
                start = now_ns()
                store.append_many(f"batch-{i % 8}", batch)
                return now_ns() - start
            return run

        written: dict[str, list[int]] = {}
        samples = interleaved(metered({b: op(s) for b, s in stores.items()}, written), self.s.batches,
                              max(1, self.s.block // 4))
        self.rows.append(Row("append_many", f"append_many {size} (durable, one commit)", "ns",
                             {b: Stats.of(v) for b, v in samples.items()},
                             note="JSONL: the 100 lines in one write + one fsync"))
        self._written("append_many", f"bytes written per append_many {size} (write calls)", written)

    def _written(self, key: str, title: str, tally: dict[str, list[int]]) -> None:
        if tally:
            self.diagnostics.append(Row(f"written_{key}", title, "bytes",
                                        {b: Stats.of([float(v) for v in values]) for b, values in tally.items()},
                                        note="from /proc/self/io wchar: what each call hands to the kernel to flush"))

    def loads(self, stores: dict[str, Any]) -> None:
        s = self.s
        self.log(f"preparing {s.load_size}-message sessions")
        expected = [self.msg(i) for i in range(s.load_size)]
        for store in stores.values():
            fill(store, "load-bench", expected)
            fill(store, "turn-bench", expected)
        for backend, store in stores.items():
            if store.load("load-bench") != expected:
                raise AssertionError(f"{backend} does not load what was written")

        self.log(f"first load in a fresh process ({s.first_load_runs} runs x 3 stores + breakdown)")
        first: dict[str, list[float]] = {b: [] for b in BACKENDS}
        opened: dict[str, list[float]] = {b: [] for b in BACKENDS}
        phases: list[dict[str, Any]] = []
        breakdown_error = None
        jobs = [*BACKENDS, "breakdown"]
        for run in range(s.first_load_runs):
            shift = run % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                if job == "breakdown":
                    if breakdown_error is None:
                        try:
                            phases.append(spawn(["--child-breakdown", str(self.dir / "main" / "ours"),
                                                 "load-bench"]))
                        except Exception as exc:  # private internals move; the benchmark still runs
                            breakdown_error = str(exc).strip().splitlines()[-1]
                    continue
                result = spawn(["--child-first-load", job, str(self.dir / "main" / job), "load-bench"])
                assert result["count"] == s.load_size, result
                first[job].append(result["load_ns"])
                opened[job].append(result["open_ns"])
        self.rows.append(Row("first_load", f"load {s.load_size}: first in a fresh process", "ns",
                             {b: Stats.of(v) for b, v in first.items()},
                             note="a new interpreter per run opens the store (untimed), then times its first load"))
        self.diagnostics.append(Row("open", "open the store in a fresh process", "ns",
                                    {b: Stats.of(v) for b, v in opened.items()}))
        self.breakdown["first_load"] = self._phase_summary(phases, first["ours"]) if phases else None
        self.breakdown["first_load_error"] = breakdown_error

        self.log(f"repeated loads ({s.repeated_loads} per store)")
        uncached = SessionStore(self.dir / "main" / "ours", cache_sessions=0)
        self.stack.callback(uncached.close)
        ops = {b: timed(load_bench, st) for b, st in stores.items()}
        ops["ours, cache off"] = timed(load_bench, uncached)
        samples = interleaved(ops, s.repeated_loads, s.block)
        peer_stats = {b: Stats.of(samples[b]) for b in PEERS}
        self.rows.append(Row("repeated_load", f"load {s.load_size}: repeated, same process", "ns",
                             {"ours": Stats.of(samples["ours"]), **peer_stats},
                             note="ours answers from its cache of decoded lists (valid while the version holds)"))
        self.rows.append(Row("repeated_load_uncached", f"load {s.load_size}: repeated, ours with cache_sessions=0",
                             "ns", {"ours": Stats.of(samples["ours, cache off"]), **peer_stats},
                             note="same peer samples as the row above"))

        self.log(f"load after an append, every turn ({s.turns} turns)")

        def turn(store: Any) -> Callable[[int], int]:
            def run(i: int) -> int:
                store.append("turn-bench", self.msg(s.load_size + i))  # untimed: a new turn
                start = now_ns()
                store.load("turn-bench")
                return now_ns() - start
            return run

        samples = interleaved({b: turn(st) for b, st in stores.items()}, s.turns, max(1, s.block // 2))
        self.rows.append(Row("turn_load", f"load ~{s.load_size} right after an append (each turn)", "ns",
                             {b: Stats.of(v) for b, v in samples.items()},
                             note="the append (untimed) changes the version, so ours cannot answer from its cache"))

        self._in_process_breakdown(stores, uncached)

    def _phase_summary(self, runs: list[dict[str, Any]], public: list[float]) -> dict[str, Any]:
        names = list(runs[0]["phases"])
        phases = {name: statistics.median(r["phases"][name] for r in runs) for name in names}
        return {"phases_ns": phases, "sum_of_phase_medians_ns": sum(phases.values()),
                "public_load_median_ns": statistics.median(public) if public else None,
                "chunks": runs[0]["chunks"], "bytes": runs[0]["bytes"], "runs": len(runs)}

    def _in_process_breakdown(self, stores: dict[str, Any], ours: SessionStore) -> None:
        """Warm, uncached: the same phases repeated in this process; and the peers' own phases."""
        self.log("load breakdown, in process")
        n = self.s.breakdown_loads
        key = "load-bench"
        try:
            runs = [load_phases(ours, key)[0] for _ in range(n)]
            ours_phases = {name: statistics.median(r[i] for r in runs) for i, name in enumerate(LOAD_PHASES)}
            self.breakdown["warm_load"] = {"phases_ns": ours_phases,
                                           "sum_of_phase_medians_ns": sum(ours_phases.values())}
        except Exception as exc:  # private internals move; the benchmark still runs
            self.breakdown["warm_load"] = None
            self.breakdown["warm_load_error"] = f"{type(exc).__name__}: {exc}"

        # Where the peers' time goes, for comparison (their own code, no private API of ours).
        try:
            from eventstore._values import trusted_message as unvalidated  # only to size the validators' cost
        except ImportError:
            unvalidated = ChatMessage
        sqlite_db: sqlite3.Connection = stores["sqlite"]._db
        jsonl_file: Path = stores["jsonl"]._file(key)
        peer: dict[str, list[float]] = {}
        for _ in range(n):
            t0 = now_ns()
            fetched = sqlite_db.execute("SELECT role, content FROM sessions WHERE session_key = ? ORDER BY id",
                                        (key,)).fetchall()
            t1 = now_ns()
            [ChatMessage(role, content) for role, content in fetched]
            t2 = now_ns()
            data = jsonl_file.read_bytes()
            t3 = now_ns()
            parsed = [orjson.loads(line) for line in data.split(b"\n") if line.strip()]
            t4 = now_ns()
            [ChatMessage(entry["role"], entry["content"]) for entry in parsed]
            t5 = now_ns()
            [unvalidated(role, content) for role, content in fetched]
            t6 = now_ns()
            for name, value in (("sqlite: SELECT + fetchall (C)", t1 - t0),
                                ("sqlite: ChatMessage(...) with validators", t2 - t1),
                                ("sqlite: same rows, unvalidated construction", t6 - t5),
                                ("jsonl: read file", t3 - t2), ("jsonl: split + orjson per line", t4 - t3),
                                ("jsonl: ChatMessage(...) with validators", t5 - t4)):
                peer.setdefault(name, []).append(value)
        self.breakdown["peers_warm_load_ns"] = {name: statistics.median(v) for name, v in peer.items()}

    def removals(self, stores: dict[str, Any]) -> None:
        s = self.s
        self.log(f"remove_last ({s.removals} per store)")
        for store in stores.values():
            fill(store, "remove-bench", [self.msg(i) for i in range(s.load_size + s.removals)])

        def op(store: Any) -> Callable[[int], int]:
            def run(_i: int) -> int:
                start = now_ns()
                removed = store.remove_last("remove-bench")
                elapsed = now_ns() - start
                assert removed
                return elapsed
            return run

        written: dict[str, list[int]] = {}
        samples = interleaved(metered({b: op(st) for b, st in stores.items()}, written), s.removals, s.block)
        self.rows.append(Row("remove_last", f"remove_last (durable, ~{s.load_size}-message session)", "ns",
                             {b: Stats.of(v) for b, v in samples.items()},
                             note="JSONL rewrites the whole file: temporary file + fsync + rename"))
        self._written("remove_last", "bytes written per remove_last (write calls)", written)

    def listing(self) -> None:
        s = self.s
        self.log(f"building {s.list_sessions} sessions per store (not durable)")
        stores: dict[str, Any] = {}
        build: dict[str, float] = {}
        for backend in BACKENDS:
            start = time.perf_counter()
            store = stores[backend] = self.open(backend, "listing", durable=False)
            for i in range(s.list_sessions):
                store.append_many(f"user-{i:05d}@telegram", [self.msg(2 * i), self.msg(2 * i + 1)])
            build[backend] = time.perf_counter() - start
            listed = store.list_sessions_with_metadata()
            if len(listed) != s.list_sessions or listed[0].message_count != 2:
                raise AssertionError(f"{backend} lists {len(listed)} sessions")
        self.listed = stores
        self.log(f"listing ({s.list_runs} runs per store)")
        samples = interleaved({b: timed(list_all, st) for b, st in stores.items()}, s.list_runs, 1)
        self.rows.append(Row("list", f"list_sessions_with_metadata, {s.list_sessions:,} sessions", "ns",
                             {b: Stats.of(v) for b, v in samples.items()},
                             note="setup (append_many of 2 per session, no fsync): "
                                  + ", ".join(f"{b} {t:.1f} s" for b, t in build.items())
                                  + "; ours answers a repeat from its cache (keyed by LMDB's transaction id)",
                             extra={"build_seconds": build}))

        def list_uncached(store: SessionStore, i: int) -> list[SessionMetadata]:
            store._queries._listing = None  # private: forget the cached listing, to time the decode itself
            return store.list_sessions_with_metadata()

        peers = {b: timed(list_all, stores[b]) for b in PEERS}
        samples = interleaved({"ours": timed(list_uncached, stores["ours"]), **peers}, s.list_runs, 1)
        self.rows.append(Row("list_uncached", f"list_sessions_with_metadata, {s.list_sessions:,} sessions, "
                             "ours uncached", "ns", {b: Stats.of(v) for b, v in samples.items()}))

    def bytes_on_disk(self) -> None:
        s = self.s
        self.log(f"bytes on disk ({s.bytes_messages} messages per store)")
        messages = [self.msg(i) for i in range(s.bytes_messages)]
        payload = sum(len(m.role.encode()) + len(m.content.encode()) for m in messages)
        stats: dict[str, Stats] = {}
        apparent: dict[str, float] = {}
        for backend in BACKENDS:
            path = self.dir / "bytes" / backend
            with open_store(backend, path, durable=False) as store:
                for i, message in enumerate(messages):
                    store.append(f"session-{i % s.bytes_sessions}", message)
            allocated, size = du(path)
            per = allocated / s.bytes_messages
            stats[backend] = Stats(1, per, None, per, per)
            apparent[backend] = size / s.bytes_messages
        self.rows.append(Row("bytes", f"bytes on disk per message (du, {s.bytes_messages} appends)", "bytes",
                             stats,
                             note=f"payload (role + content, UTF-8) {payload / s.bytes_messages:,.0f} B/message; "
                                  "apparent size " + ", ".join(f"{b} {v:,.0f} B" for b, v in apparent.items())
                                  + "; measured after close (SQLite has checkpointed its WAL)",
                             extra={"apparent_bytes_per_message": apparent,
                                    "payload_bytes_per_message": payload / s.bytes_messages}))

    def no_fsync(self) -> None:
        """The CPU part of a write: the same appends with durability off."""
        s = self.s
        self.log("appends without fsync (diagnostic)")
        stores = {b: self.open(b, "nosync", durable=False) for b in BACKENDS}
        samples = interleaved({b: timed(self.append_one, st) for b, st in stores.items()}, s.single_appends, s.block)
        self.diagnostics.append(Row("append_nosync", "append, durability off (CPU cost)", "ns",
                                    {b: Stats.of(v) for b, v in samples.items()}))
        size = s.batch_size
        samples = interleaved(
            {b: timed(lambda store, i: store.append_many(f"batch-{i % 8}", [self.msg(i * size + j)
                                                                            for j in range(size)]), st)
             for b, st in stores.items()}, s.batches, max(1, s.block // 4))
        self.diagnostics.append(Row("append_many_nosync", f"append_many {size}, durability off (CPU cost)", "ns",
                                    {b: Stats.of(v) for b, v in samples.items()},
                                    note="includes building the batch list (same for all)"))


    def profiles(self, ours: SessionStore, listed: SessionStore) -> None:
        """cProfile our store on each workload (the hot functions, per call)."""
        s = self.s
        self.log("profiling our store (cProfile)")
        size = s.batch_size
        jobs: list[tuple[str, int, Callable[[int], object]]] = [
            ("append (durable)", s.single_appends // 3, lambda i: ours.append("profile-append", self.msg(i))),
            (f"append_many {size} (durable)", max(2, s.batches // 4),
             lambda i: ours.append_many("profile-batch", [self.msg(i * size + j) for j in range(size)])),
            ("remove_last (durable)", s.removals // 3, lambda i: ours.remove_last("remove-bench")),
            (f"load {s.load_size}, cache off", s.repeated_loads // 3, lambda i: ours.load("load-bench")),
            (f"list_sessions_with_metadata, {s.list_sessions:,} sessions", max(2, s.list_runs // 3),
             lambda i: listed.list_sessions_with_metadata()),
        ]
        cache_size = ours._decoded.capacity
        for title, count, fn in jobs:
            ours._decoded.capacity = 0 if "cache off" in title else cache_size
            ours._decoded.clear()
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(count):
                fn(i)
            profiler.disable()
            self.profiled[title] = render_profile(profiler, count)
        ours._decoded.capacity = cache_size


def render_profile(profiler: cProfile.Profile, calls: int, top: int = 12) -> str:
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # pstats's table: undocumented, unstubbed
    total = sum(entry[2] for entry in stats.values()) or 1.0
    lines = [f"    {'own µs/op':>10} {'cum µs/op':>10} {'own %':>6} {'calls/op':>9}  function"]
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (filename, line, name), (_cc, ncalls, own, cumulative, _callers) in ranked:
        where = name if filename == "~" else f"{Path(filename).parent.name}/{Path(filename).name}:{line} {name}"
        lines.append(f"    {own / calls * 1e6:>10.1f} {cumulative / calls * 1e6:>10.1f} {own / total:>6.1%} "
                     f"{ncalls / calls:>9.1f}  {where}")
    return "\n".join(lines)


# -- our append's own CPU time (--append-cpu) ----------------------------------------------------------

#: A framework's item as a message payload: about the size of a LangGraph checkpoint's (600 bytes stored).
_ITEM = {"type": "message", "id": "msg_0123456789abcdef", "status": "completed",
         "content": [{"type": "output_text", "text": "The store keeps every change as an event. " * 8,
                      "annotations": [], "logprobs": []}],
         "metadata": {"run_id": "run-42", "step": 7, "source": "loop", "parents": {}}}


def append_cpu(workdir: Path, appends: int, block: int) -> dict[str, list[float]]:
    """Process CPU seconds of each of ``appends`` single appends to an existing session (300 messages), with no
    flush: a plain message, and one with a payload; the two kinds taking turns in blocks."""
    pool = make_messages(4096)
    with SessionStore(workdir / "append-cpu", durable=False) as store:
        for key in ("plain", "payload"):
            fill(store, key, pool[:300])
        with_payload = [ChatMessage.assistant(message.content[:230], _ITEM) for message in pool[:64]]

        def plain(i: int) -> object:
            return store.append("plain", pool[i % len(pool)])

        def payload(i: int) -> object:
            return store.append("payload", with_payload[i % len(with_payload)])

        calls = {"append, no flush (CPU)": plain, "append with a 600-byte payload, no flush (CPU)": payload}
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for start in range(0, appends, block):
            for name, call in calls.items():
                for i in range(start, min(start + block, appends)):
                    started = time.process_time()
                    call(i)
                    samples[name].append(time.process_time() - started)
    return samples


def render_append_cpu(samples: dict[str, list[float]]) -> str:
    lines = [f"  {'call':<52}{'median':>10}{'p99':>10}{'mean':>10}"]
    for name, values in samples.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        lines.append(f"  {name:<52}{_fmt_ns(statistics.median(ordered) * 1e9):>10}{_fmt_ns(p99 * 1e9):>10}"
                     f"{_fmt_ns(statistics.fmean(ordered) * 1e9):>10}")
    return "\n".join(lines)


# -- targets and reporting ---------------------------------------------------------------------

TARGETS = (
    # (row key, description, minimum of sqlite/ours)
    ("repeated_load", "repeated load of 1,000 >= 3x faster than SQLite", 3.0),
    ("first_load", "first load in a fresh process >= 1.5x faster than SQLite", 1.5),
    ("append_many", "batched appends (100 in one commit) >= 2x faster than SQLite", 2.0),
    ("list_uncached", "list_sessions_with_metadata (uncached) ahead of SQLite", 1.0),
    ("append", "single durable appends within 1.2x of SQLite", 1 / 1.2),
)


def check_targets(rows: list[Row], diagnostics: list[Row]) -> list[dict[str, Any]]:
    by_key = {row.key: row for row in rows + diagnostics}
    checks = []
    for key, text, minimum in TARGETS:
        ratio = by_key[key].ratio("sqlite") if key in by_key else None
        met = ratio is not None and (ratio >= minimum if key != "list" else ratio > minimum)
        checks.append({"target": text, "row": key, "sqlite_over_ours": ratio, "needed": minimum, "met": met,
                       "bound": _durable_bound(by_key) if key == "append" else None})
    return checks


def _durable_bound(by_key: dict[str, Row]) -> str | None:
    """What the durable-append target leaves for anything but LMDB's bare commit I/O, measured in this run."""
    append, floor, cpu = by_key.get("append"), by_key.get("flush_floor"), by_key.get("append_nosync")
    least = None if floor is None else floor.extra.get("one_page_floor")
    if append is None or floor is None or cpu is None or least is None or "sqlite" not in append.stats:
        return None
    sqlite, ours_floor = append.stats["sqlite"].median, floor.stats["ours"].median
    return (f"SQLite's whole append {_fmt_ns(sqlite)}; 1.2x of it is {_fmt_ns(sqlite * 1.2)}. Bare I/O of LMDB's "
            f"commit (two ordered flushes, no database work): {_fmt_ns(ours_floor)} for the pages an append "
            f"writes, {_fmt_ns(least['median'])} for a single page; our append without flushes: "
            f"{_fmt_ns(cpu.stats['ours'].median)}")


def render_breakdown(breakdown: dict[str, Any]) -> str:
    lines = []
    first = breakdown.get("first_load")
    warm = breakdown.get("warm_load")
    either = first or warm
    if either:
        lines.append("Where our load of 1,000 messages goes (private API, mirrors SessionStore.load):")
        names = list(either["phases_ns"])
        lines.append(f"  {'phase':<52}{'first, fresh process':>22}{'warm, cache off':>18}")
        for name in names:
            a = first["phases_ns"].get(name) if first else None
            b = warm["phases_ns"].get(name) if warm else None
            lines.append(f"  {name:<52}{_fmt_ns(a):>22}{_fmt_ns(b):>18}")
        lines.append(f"  {'sum of phase medians':<52}"
                     f"{_fmt_ns(first['sum_of_phase_medians_ns'] if first else None):>22}"
                     f"{_fmt_ns(warm['sum_of_phase_medians_ns'] if warm else None):>18}")
        if first:
            lines.append(f"  (public first load, median {_fmt_ns(first['public_load_median_ns'])}; "
                         f"{first['chunks']} chunks, {first['bytes']:,} bytes of chunks)")
    for name in ("first_load_error", "warm_load_error"):
        if breakdown.get(name):
            lines.append(f"  breakdown unavailable ({name}): {breakdown[name]}")
    peers = breakdown.get("peers_warm_load_ns")
    if peers:
        lines.append("Where the peers' load goes (warm, same process):")
        for name, value in peers.items():
            lines.append(f"  {name:<52}{_fmt_ns(value):>22}")
    return "\n".join(lines)


def render_targets(checks: list[dict[str, Any]]) -> str:
    lines = ["Targets (ratio = SQLite median / ours; higher is better for us):"]
    for check in checks:
        ratio = check["sqlite_over_ours"]
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"  [{'met ' if check['met'] else 'MISS'}] {check['target']}: {shown} "
                     f"(needs {'>' if check['row'] == 'list' else '>='} {check['needed']:.2f}x)")
        if check.get("bound"):
            lines.append(f"         {check['bound']}")
    return "\n".join(lines)


def environment_info(workdir: Path, quick: bool) -> dict[str, Any]:
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "lmdb": lmdb.__version__, "lmdb_c": ".".join(map(str, lmdb.version())), "sqlite": sqlite3.sqlite_version,
        "orjson": orjson.__version__, "workdir": str(workdir), "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_core", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small counts")
    parser.add_argument("--out", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile our store on each workload and print its hot functions")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the temporary stores (default: $TMPDIR)")
    parser.add_argument("--append-cpu", action="store_true",
                        help="only our single append's process CPU time, with no flush (to compare code versions)")
    parser.add_argument("--child-first-load", nargs=3, metavar=("BACKEND", "PATH", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--child-breakdown", nargs=2, metavar=("PATH", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_first_load:
        print(json.dumps(child_first_load(*args.child_first_load)))
        return 0
    if args.child_breakdown:
        print(json.dumps(child_breakdown(*args.child_breakdown)))
        return 0

    settings = QUICK if args.quick else Settings()
    workdir = Path(tempfile.mkdtemp(prefix="eventstore-bench-", dir=args.dir))
    if args.append_cpu:
        try:
            samples = append_cpu(workdir, 200 if args.quick else 3000, settings.block)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"our append's process CPU time, no flush ({len(next(iter(samples.values())))} each; load average "
              f"{os.getloadavg()[0]:.1f}):")
        print(render_append_cpu(samples))
        return 0
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    info = environment_info(workdir, args.quick)
    bench = Bench(settings, workdir, log)
    bench.profile = args.profile
    try:
        gc.collect()
        bench.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    checks = check_targets(bench.rows, bench.diagnostics)

    print(f"eventstore core benchmark: Python {info['python']}, LMDB {info['lmdb_c']} (py-lmdb {info['lmdb']}), "
          f"SQLite {info['sqlite']}, orjson {info['orjson']}, {info['cpus']} CPUs, "
          f"{'quick' if args.quick else 'full'} run in {elapsed:.0f} s")
    print("Times are per call, medians (p95 in brackets when n >= 20); ratio = peer / ours (above 1: ours faster"
          " or smaller).")
    print()
    print(render_table(bench.rows))
    print()
    print("Diagnostics:")
    order = ["open", "flush_floor", "append_nosync", "append_many_nosync", "written_append", "written_append_many",
             "written_remove_last"]
    bench.diagnostics.sort(key=lambda row: order.index(row.key) if row.key in order else len(order))
    print(render_table(bench.diagnostics))
    print()
    print(render_breakdown(bench.breakdown))
    print()
    print(render_targets(checks))
    if args.quick:
        print("  (a smoke run: too few samples, and stores too young, to judge the targets; run without --quick)")
    for title, text in bench.profiled.items():
        print()
        print(f"Profile of ours (cProfile, inflates Python-level costs): {title}")
        print(text)

    if args.out:
        result = {
            "environment": info, "settings": settings.__dict__, "elapsed_seconds": elapsed,
            "rows": [_row_json(row) for row in bench.rows],
            "diagnostics": [_row_json(row) for row in bench.diagnostics],
            "breakdown": bench.breakdown, "targets": checks, "profiles": bench.profiled,
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _row_json(row: Row) -> dict[str, Any]:
    return {"key": row.key, "title": row.title, "unit": row.unit, "note": row.note,
            "stats": {b: s.__dict__ for b, s in row.stats.items()},
            "ratios": {p: row.ratio(p) for p in PEERS}, **row.extra}


if __name__ == "__main__":
    sys.exit(main())
