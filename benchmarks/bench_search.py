"""The search benchmark: our ranked search index against SQLite FTS5 with ZeroClaw's schema and query.

Usage (from the project root)::

    python -m benchmarks.bench_search            # 100,000 messages over 2,000 sessions (a few minutes)
    python -m benchmarks.bench_search --quick    # 10,000 messages over 200 sessions (under a minute)

The corpus is generated (fixed seed): a vocabulary of 50,000 made-up words
drawn with Zipf-like frequencies (exponent 1.07), short user messages and
longer assistant ones, sessions interleaved in time as concurrent chats are.

ZeroClaw's side is its SQLite session backend as written upstream: a
``sessions`` table (one row a message), ``session_metadata``, and an FTS5
table over ``(session_key, content)`` with ``content=sessions``, kept by
triggers; its search quotes each word, ORs them, selects ``DISTINCT
session_key ... LIMIT``, then reads each session's metadata (unranked). Ours
is ``SessionStore.search``: ranked (BM25, best message per session) and
limited to message contents. Both return ``SessionMetadata`` objects.

Measured, on the same data and the same queries, interleaved query by query
so that a shared machine's noise lands on both alike:

* query latency (median, p95) for 1-, 2- and 3-word queries whose words are
  drawn uniformly from the 5,000 most frequent words ("mix"), and per
  frequency band (the 100 most frequent words, ranks 100-1,000,
  1,000-5,000, rarer);
* bulk indexing: loading the corpus in one transaction into FTS5 (table,
  triggers and index) against our log load plus ``catch_up()`` (the index
  build), and our index build alone;
* durable appends of single messages: our store (the index is deferred, so
  an append does not touch it) against the same store with the search
  projection removed, ZeroClaw's SQLite (``synchronous=FULL``, as the core
  benchmark runs it), and, to show what the deferral saves, an append
  followed by a search that must first index it (read-your-writes);
* index size: our ``search.*`` databases against FTS5's shadow tables;
* hostile queries (many prefixes, a short prefix, 10 KB of common words),
  against FTS5 ranking the same query: each must stay bounded.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec

from eventstore import ChatMessage, SessionMetadata, SessionQuery, SessionStore
from eventstore.storage.lmdb import Environment

now_ns = time.perf_counter_ns
P = ParamSpec("P")


# -- settings and corpus --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    messages: int = 100_000
    sessions: int = 2_000
    vocabulary: int = 50_000
    queries: int = 200  # per word count for the mix
    band_queries: int = 60  # per word count and band
    appends: int = 300
    seed: int = 7


QUICK = Settings(messages=10_000, sessions=200, vocabulary=20_000, queries=60, band_queries=20, appends=60)
ZIPF_EXPONENT = 1.07
#: (name, first rank, last rank) of the query-word bands; ranks start at 0.
BANDS = (("top 100", 0, 100), ("100-1k", 100, 1_000), ("1k-5k", 1_000, 5_000), ("rare 5k+", 5_000, 40_000))
MIX = ("mix (top 5k)", 0, 5_000)


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < size:
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if rng.random() < 0.3:
            word += rng.choice(consonants)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


@dataclass
class Corpus:
    words: list[str]  # by frequency rank
    rows: list[tuple[str, ChatMessage]]  # (session key, message), in time order


def make_corpus(settings: Settings) -> Corpus:
    rng = random.Random(settings.seed)
    words = make_vocabulary(settings.vocabulary, rng)
    weights = list(itertools.accumulate(1 / rank ** ZIPF_EXPONENT for rank in range(1, len(words) + 1)))
    keys = [f"telegram_user{n}" for n in range(settings.sessions)]
    rows = []
    for _ in range(settings.messages):
        key = keys[rng.randrange(len(keys))]
        user = rng.random() < 0.5
        length = max(1, int(rng.lognormvariate(math.log(12 if user else 60), 0.6)))
        tokens = rng.choices(words, cum_weights=weights, k=length)
        tokens[0] = tokens[0].capitalize()
        text = " ".join(tokens)
        text = text.replace(" ", ", ", 1) if rng.random() < 0.3 else text
        rows.append((key, ChatMessage("user" if user else "assistant", text + rng.choice(".?!"))))
    return Corpus(words, rows)


def make_queries(corpus: Corpus, band: tuple[str, int, int], words: int, count: int, seed: int) -> list[str]:
    rng = random.Random(hash((band[0], words, seed)) & 0xFFFFFFFF)
    _, first, last = band
    last = min(last, len(corpus.words))
    return [" ".join(corpus.words[rng.randrange(first, last)] for _ in range(words)) for _ in range(count)]


# -- ZeroClaw's SQLite search, as upstream writes it ---------------------------------------------

ZEROCLAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    role        TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_sessions_key ON sessions(session_key);
CREATE INDEX IF NOT EXISTS idx_sessions_key_id ON sessions(session_key, id);
CREATE TABLE IF NOT EXISTS session_metadata (
    session_key   TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0,
    name          TEXT
);
CREATE VIRTUAL TABLE IF NOT EXISTS sessions_fts USING fts5(
    session_key, content, content=sessions, content_rowid=id
);
CREATE TRIGGER IF NOT EXISTS sessions_ai AFTER INSERT ON sessions BEGIN
    INSERT INTO sessions_fts(rowid, session_key, content) VALUES (new.id, new.session_key, new.content);
END;
CREATE TRIGGER IF NOT EXISTS sessions_ad AFTER DELETE ON sessions BEGIN
    INSERT INTO sessions_fts(sessions_fts, rowid, session_key, content)
    VALUES ('delete', old.id, old.session_key, old.content);
END;
"""
_INSERT = "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?1, ?2, ?3, ?4)"
_UPSERT = """INSERT INTO session_metadata (session_key, created_at, last_activity, message_count)
             VALUES (?1, ?2, ?3, 1)
             ON CONFLICT(session_key) DO UPDATE SET
                last_activity = excluded.last_activity, message_count = message_count + 1"""
_SEARCH = "SELECT DISTINCT f.session_key FROM sessions_fts f WHERE sessions_fts MATCH ?1 LIMIT ?2"
_RANKED = ("SELECT session_key, min(rank) AS best FROM sessions_fts WHERE sessions_fts MATCH ?1 "
           "GROUP BY session_key ORDER BY best LIMIT ?2")
_METADATA = "SELECT created_at, last_activity, message_count, name FROM session_metadata WHERE session_key = ?1"


class ZeroClawSqlite:
    """ZeroClaw's SQLite session backend: its schema, its append, its search."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(ZEROCLAW_SCHEMA)

    def bulk(self, rows: list[tuple[str, ChatMessage]], start: datetime) -> None:
        self.db.execute("BEGIN")
        for n, (key, message) in enumerate(rows):
            now = (start + timedelta(milliseconds=n)).isoformat()
            self.db.execute(_INSERT, (key, message.role, message.content, now))
            self.db.execute(_UPSERT, (key, now, now))
        self.db.execute("COMMIT")

    def append(self, key: str, message: ChatMessage) -> None:
        now = datetime.now(UTC).isoformat()
        self.db.execute(_INSERT, (key, message.role, message.content, now))
        self.db.execute(_UPSERT, (key, now, now))

    def search(self, keyword: str, limit: int = 50) -> list[SessionMetadata]:
        query = " OR ".join(f'"{word}"' for word in keyword.split())
        found = []
        for (key,) in self.db.execute(_SEARCH, (query, limit)).fetchall():
            row = self.db.execute(_METADATA, (key,)).fetchone()
            if row is not None:
                created, last, count, name = row
                found.append(SessionMetadata(key, name, datetime.fromisoformat(created),
                                             datetime.fromisoformat(last), count))
        return found

    def ranked_search(self, keyword: str, limit: int = 50) -> list[str]:
        """Sessions ranked by their best message's FTS5 rank (BM25), with FTS5's prefix syntax for ``word*``."""
        query = " OR ".join(f'"{word.rstrip("*")}" *' if word.endswith("*") else f'"{word}"'
                            for word in keyword.split())
        return [key for key, _ in self.db.execute(_RANKED, (query, limit)).fetchall()]

    def index_bytes(self) -> int:
        size: int = self.db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'sessions_fts%'").fetchone()[0]
        return size

    def close(self) -> None:
        self.db.close()


def our_index_bytes(store: SessionStore) -> dict[str, int]:
    environment = store._environment
    assert isinstance(environment, Environment), "page sizes are LMDB's"
    env = environment._env  # sizes only: the pages each search.* database holds
    sizes = {}
    with env.begin() as txn:
        for name in ("search.terms", "search.summary", "search.docs", "search.sessions", "search.meta"):
            stat = txn.stat(env.open_db(name.encode(), txn=txn))
            sizes[name] = (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * stat["psize"]
    return sizes


# -- measuring ----------------------------------------------------------------------------------------


def timed(fn: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> int:
    """The ns ``fn(*args, **kwargs)`` takes."""
    start = now_ns()
    fn(*args, **kwargs)
    return now_ns() - start


def search_ours(store: SessionStore, keyword: str, limit: int | None = None) -> list[SessionMetadata]:
    """Our session search, its query built inside the timed call, as a caller builds it."""
    return store.search(SessionQuery(keyword, limit))


@dataclass
class Stats:
    median: float
    p95: float
    count: int

    @classmethod
    def of(cls, samples: list[int]) -> Stats:
        ordered = sorted(samples)
        return cls(statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], len(ordered))


def fmt_us(ns: float) -> str:
    micros = ns / 1000
    return f"{micros:,.0f} µs" if micros < 10_000 else f"{micros / 1000:,.1f} ms"


def fmt_bytes(size: float) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


class Bench:
    def __init__(self, settings: Settings, workdir: Path, log: Callable[[str], None]) -> None:
        self.settings, self.workdir, self.log = settings, workdir, log
        self.lines: list[str] = []

    def out(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def run(self) -> None:
        settings = self.settings
        self.log(f"generating {settings.messages:,} messages over {settings.sessions:,} sessions")
        corpus = make_corpus(settings)
        tokens = sum(len(message.content.split()) for _, message in corpus.rows)
        self.out(f"corpus: {settings.messages:,} messages, {settings.sessions:,} sessions, "
                 f"{settings.vocabulary:,}-word Zipf vocabulary, {tokens:,} words ({tokens / settings.messages:.0f} "
                 "a message)")
        start = datetime(2026, 1, 1, tzinfo=UTC)

        self.log("bulk load: SQLite FTS5")
        sqlite_store = ZeroClawSqlite(self.workdir / "zeroclaw.db")
        sqlite_bulk = timed(lambda: sqlite_store.bulk(corpus.rows, start))
        sqlite_store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self.log("bulk load: ours (log and inline read models), then catch_up (the search index)")
        moments = iter(start + timedelta(milliseconds=n) for n in range(10 * settings.messages))
        ours = SessionStore(self.workdir / "ours", clock=lambda: next(moments), durable=True)
        by_session: dict[str, list[ChatMessage]] = {}
        for key, message in corpus.rows:
            by_session.setdefault(key, []).append(message)
        load = timed(lambda: [ours.append_many(key, messages) for key, messages in by_session.items()])
        gc.collect()
        build = timed(ours.catch_up)
        index = our_index_bytes(ours)
        fts_bytes = sqlite_store.index_bytes()

        self.out()
        self.out("== bulk indexing ==")
        per = settings.messages
        self.out(f"  SQLite FTS5, one transaction (table + triggers + index): {sqlite_bulk / 1e9:6.1f} s "
                 f"({per / (sqlite_bulk / 1e9):,.0f} messages/s)")
        self.out(f"  ours, log load ({len(by_session):,} durable append_many) + catch_up: "
                 f"{(load + build) / 1e9:6.1f} s ({per / ((load + build) / 1e9):,.0f} messages/s)")
        self.out(f"  ours, the index build alone (catch_up):             {build / 1e9:6.1f} s "
                 f"({per / (build / 1e9):,.0f} messages/s, {build / per / 1000:.0f} µs a message)")

        self.out()
        self.out("== index size ==")
        ours_total = sum(index.values())
        self.out(f"  SQLite FTS5 shadow tables: {fmt_bytes(fts_bytes)}")
        self.out(f"  ours, search.* databases:  {fmt_bytes(ours_total)}  "
                 f"({', '.join(f'{name[7:]} {fmt_bytes(size)}' for name, size in index.items())})")
        self.out(f"  ratio ours/FTS5: {ours_total / fts_bytes:.2f}x  (target: at most 2x)")

        self.queries(corpus, ours, sqlite_store)
        self.hostile(corpus, ours, sqlite_store)
        self.appends(corpus, ours, sqlite_store)
        ours.close()
        sqlite_store.close()

    def queries(self, corpus: Corpus, ours: SessionStore, sqlite_store: ZeroClawSqlite) -> None:
        settings = self.settings
        self.out()
        self.out("== query latency (limit 50, interleaved query by query; median / p95) ==")
        self.out(f"  {'words':<14}{'n':>4}  {'FTS5 median':>12} {'ours median':>12} {'ratio':>7}   "
                 f"{'FTS5 p95':>10} {'ours p95':>10}  {'hits FTS5/ours':>15}")
        summary = []
        for band, count in [(MIX, settings.queries)] + [(band, settings.band_queries) for band in BANDS]:
            for words in (1, 2, 3):
                queries = make_queries(corpus, band, words, count, settings.seed)
                theirs_ns: list[int] = []
                ours_ns: list[int] = []
                hits = [0, 0]
                for n, keyword in enumerate(queries):
                    runs: list[tuple[str, Callable[[str], Sized]]] = [
                        ("fts", sqlite_store.search), ("ours", lambda query: ours.search(SessionQuery(query)))]
                    if n % 2:
                        runs.reverse()
                    for name, run in runs:
                        start = now_ns()
                        found = run(keyword)
                        elapsed = now_ns() - start
                        (theirs_ns if name == "fts" else ours_ns).append(elapsed)
                        hits[name == "ours"] += len(found)
                theirs, mine = Stats.of(theirs_ns), Stats.of(ours_ns)
                label = f"{band[0]} {words}w"
                self.out(f"  {label:<14}{count:>4}  {fmt_us(theirs.median):>12} {fmt_us(mine.median):>12} "
                         f"{ratio(mine.median, theirs.median):>7}   {fmt_us(theirs.p95):>10} {fmt_us(mine.p95):>10}"
                         f"  {hits[0] / count:>7.1f}/{hits[1] / count:<7.1f}")
                if band is MIX:
                    summary.append((words, mine.median / theirs.median))
        self.out("  ratio = ours/FTS5 (below 1: ours is faster). FTS5's query is unranked and stops at 50 "
                 "distinct sessions; ours ranks every match.")
        self.out("  median ratio on the mix: " + ", ".join(f"{w}-word {r:.2f}x" for w, r in summary)
                 + "  (target: at most 1x)")
        messages = make_queries(corpus, MIX, 2, settings.band_queries, settings.seed + 1)
        samples = [timed(ours.search_messages, keyword) for keyword in messages]
        self.out(f"  ours, search_messages (2 words, limit 20): median {fmt_us(Stats.of(samples).median)}")

    def hostile(self, corpus: Corpus, ours: SessionStore, sqlite_store: ZeroClawSqlite) -> None:
        """Queries written to cost the most: many prefixes, a short prefix, 10 KB of common words."""
        rng = random.Random(self.settings.seed + 3)
        common: list[str] = []
        while sum(len(word) + 1 for word in common) < 10_000:
            common.append(corpus.words[rng.randrange(min(5_000, len(corpus.words)))])
        cases = [("26 prefixes a* .. z*", " ".join(f"{letter}* " for letter in string.ascii_lowercase)),
                 ("one prefix b*", "b*"), ("10 KB of common words", " ".join(common))]
        self.out()
        self.out("== hostile queries (limit 50, ranked on both sides; median of 5) ==")
        self.out(f"  {'query':<24}{'FTS5 ranked':>12} {'ours search':>12} {'ours messages':>14}")
        for label, keyword in cases:
            theirs = [timed(sqlite_store.ranked_search, keyword) for _ in range(5)]
            mine = [timed(search_ours, ours, keyword, 50) for _ in range(5)]
            hits = [timed(ours.search_messages, keyword, 20) for _ in range(5)]
            self.out(f"  {label:<24}{fmt_us(statistics.median(theirs)):>12} {fmt_us(statistics.median(mine)):>12} "
                     f"{fmt_us(statistics.median(hits)):>14}")
        self.out("  target: each under 500 ms at 30,000 messages (bounded: 64 query tokens, prefixes expanded to "
                 "their most frequent terms, a budget of exact scoring; see docs/search.md)")

    def appends(self, corpus: Corpus, ours: SessionStore, sqlite_store: ZeroClawSqlite) -> None:
        settings = self.settings
        rng = random.Random(settings.seed + 2)
        keys = sorted({key for key, _ in corpus.rows})
        messages = [corpus.rows[rng.randrange(len(corpus.rows))][1] for _ in range(settings.appends)]
        targets = [keys[rng.randrange(len(keys))] for _ in range(settings.appends)]
        # A second handle on the same store, never searched: its appends are what appends cost without search.
        bare = SessionStore(self.workdir / "ours", durable=True)
        ours.catch_up()
        kinds: dict[str, Callable[[int], Any]] = {
            "ours (search deferred)": lambda n: ours.append(targets[n], messages[n]),
            "ours without search": lambda n: bare.append(targets[n], messages[n]),
            "SQLite FTS5 (ZeroClaw)": lambda n: sqlite_store.append(targets[n], messages[n]),
            "ours, append + search": lambda n: (ours.append(targets[n], messages[n]),
                                                ours.search(SessionQuery(corpus.words[n % 500]))),
        }
        samples: dict[str, list[int]] = {name: [] for name in kinds}
        order = list(kinds)
        for n in range(settings.appends):
            rng.shuffle(order)
            for name in order:
                samples[name].append(timed(kinds[name], n))
        bare.close()
        self.out()
        self.out(f"== durable appends of one message ({settings.appends} each, interleaved; median / p95) ==")
        stats = {name: Stats.of(values) for name, values in samples.items()}
        for name, value in stats.items():
            self.out(f"  {name:<26} {fmt_us(value.median):>10} {fmt_us(value.p95):>10}")
        deferred, bare_stats = stats["ours (search deferred)"], stats["ours without search"]
        self.out(f"  ratio with/without search: {deferred.median / bare_stats.median:.2f}x  (target: at most 1.2x)")
        single = []
        for n in range(min(60, settings.appends)):
            ours.append(targets[n], messages[n])
            # The work of indexing one message inside a write transaction, without its commit: what an
            # inline index would add to each append (private API, to time the fold alone).
            single.append(ours._write(lambda txn: timed(lambda: ours._search.catch_up_in(txn))))
        inline = statistics.median(single)
        self.out(f"  indexing one message in its own transaction (what an inline index would add to an "
                 f"append): median {fmt_us(inline)}, that is {(bare_stats.median + inline) / bare_stats.median:.2f}x "
                 "the append")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus, for a smoke run")
    parser.add_argument("--messages", type=int, help="override the number of messages")
    parser.add_argument("--sessions", type=int, help="override the number of sessions")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.messages or args.sessions:
        settings = Settings(**{**settings.__dict__, **{k: v for k, v in
                                                       (("messages", args.messages), ("sessions", args.sessions))
                                                       if v}})
    with tempfile.TemporaryDirectory(prefix="bench-search-") as directory:
        bench = Bench(settings, Path(directory), lambda line: print(f"# {line}", file=sys.stderr, flush=True))
        bench.run()


if __name__ == "__main__":
    main()
