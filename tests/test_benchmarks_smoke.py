"""Smoke run of the scale benchmark: a tiny corpus, every row and every target printed, exit status 0."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
import pytest

import projections.search.formats as formats
from benchmarks import search_cold, search_floor, small_catch_up
from benchmarks.bench_scale import BOUNDS, QUICK, TARGETS, Corpus, Linearity, Settings, batches, tenths
from benchmarks.search_parts import PARTS
from eventstore import SessionQuery, SessionStore
from projections.search.formats.wholes import Whole
from projections.search.reader import IndexReader

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "build: ours append_many (no index) / SQLite inserts with FTS5 triggers",
    "build: ours catch_up() of the search index",
    "build with the search index: appends + catch_up / inserts",
    "build: appends / inserts, cost a message, last tenth / first",
    "build: catch_up, cost a message, last tenth / first",
    "build: catch_up, cost a message, last batch / first",
    "bytes on disk (allocated; SQLite/ours)",
    "bytes on disk after vacuum (ours, a copy; SQLite as built)",
    "list_sessions_with_metadata() of 45, fresh process",
    "open the store, fresh process",
    "open + list, fresh process",
    "the whole process (interpreter, imports, open, list)",
    "load of a 20-message session, random key (first, cache off)",
    "get_session_metadata of a 20-message session, random key",
    "session_exists of a 20-message session, random key",
    "the same, process CPU time a call (timed a block of keys at a time)",
    "list_sessions_page(limit=50), the first page, with the total",
    "list_sessions_page(limit=50) from a cursor at a random depth",
    "list_sessions(prefix=...) of about 1 in 1,000 keys",
    "eventstore sessions (the first page), the whole process",
    "eventstore sessions --json (all 45), the whole process",
    "search, 2 words of ranks 100-2,000, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 2 words of ranks 100-2,000, SQLite: FTS5 bm25",
    "search, 3 words of ranks 100-2,000, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 3 words of ranks 100-2,000, SQLite: FTS5 bm25",
    "search, 2 words of the 100 most common, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 2 words of the 100 most common, SQLite: FTS5 bm25",
    "search, 3 words of the 100 most common, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 3 words of the 100 most common, SQLite: FTS5 bm25",
    "ours, pages per named database",
    "SQLite, pages per table and index",
)


@pytest.mark.slow  # builds two stores and spawns listing processes: tens of seconds on a busy machine
def test_bench_scale_quick_prints_every_row_and_target(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--quick", "--sessions", "45", "--dir", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "45 sessions of 20 messages (900)" in out
    missing = [row for row in ROWS if row not in out]
    assert not missing, out
    for database in ("log.events", "messages.chunks", "sessions_fts (all shadow tables)"):
        assert database in out
    # The mid-frequency queries by their terms' stored form: 45 sessions hold no term in blocks.
    assert out.count(f"by the stored form of its terms, medians: every term stored whole: {QUICK.queries} queries, "
                     ) == 2, out
    assert out.count("a term stored in blocks: no query") == 2, out
    verdicts = [line for line in out.splitlines() if line.lstrip().startswith(("[met   ]", "[missed]"))]
    assert len(verdicts) == len(TARGETS) + len(BOUNDS)
    for _key, text, *_ in TARGETS + BOUNDS:
        assert text in out
    assert list(tmp_path.iterdir()) == []  # the stores are removed


def run_scale(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--quick", "--sessions", "45", *arguments],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # builds two small stores, then measures them again from a second process
def test_bench_scale_keeps_its_stores_and_runs_only_the_parts_named(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    built = run_scale("--keep", str(kept), "--only", "space")
    assert built.returncode == 0, built.stderr
    assert "build with the search index: appends + catch_up / inserts" in built.stdout
    assert "bytes on disk (allocated; SQLite/ours)" in built.stdout
    assert "load of a 20-message session" not in built.stdout
    assert sorted(path.name for path in kept.iterdir()) == ["corpus.json", "ours", "sqlite"]

    reused = run_scale("--keep", str(kept), "--only", "short")
    assert reused.returncode == 0, reused.stderr
    assert "built by an earlier run and kept in" in reused.stdout
    assert "load of a 20-message session, random key (first, cache off)" in reused.stdout
    assert "build with the search index" not in reused.stdout
    assert "bytes on disk" not in reused.stdout
    short_targets = 6  # the three lookups, in wall and in CPU time
    assert f"(not measured in this run: {len(TARGETS) + len(BOUNDS) - short_targets} of " \
        f"{len(TARGETS) + len(BOUNDS)})" in reused.stdout

    # The rebuild compares with the inserts the build timed: kept beside the stores, it runs on a later run too.
    rebuilt = run_scale("--keep", str(kept), "--only", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "ours rebuild_projections(['search']) alone / SQLite inserts with FTS5 triggers" in rebuilt.stdout
    assert sorted(path.name for path in kept.iterdir()) == ["corpus.json", "ours", "sqlite"]  # the copy is gone

    other = run_scale("--keep", str(kept), "--messages", "3", "--only", "short")
    assert other.returncode == 2
    assert "holds another corpus" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.mark.slow  # builds a tiny store; a build cut short must never be taken for a finished one
def test_bench_scale_refuses_a_kept_directory_without_a_finished_corpus(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    refused = run_scale("--keep", str(tmp_path), "--only", "short")
    assert refused.returncode == 2
    assert "holds no finished corpus" in refused.stderr
    assert not (tmp_path / "corpus.json").exists()


def test_index_floor_prints_every_row_with_a_time_a_message(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.index_floor", "--sessions", "20", "--rounds", "1", "--dir", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    rows = [line.split(" | ") for line in completed.stdout.splitlines() if line.startswith("| ours: import")]
    assert [row[0] for row in rows] == ["| ours: import_sessions of every session (one transaction)",
                                       "| ours: import_sessions + catch_up"]
    assert all(float(row[1]) > 0 and row[2].endswith("x |") for row in rows), completed.stdout
    assert "| SQLite: inserts with FTS5's triggers | " in completed.stdout
    assert list(tmp_path.iterdir()) == []  # the stores are removed


@pytest.mark.slow  # builds two small stores, then times the searches of one from a second process
def test_search_parts_times_every_part_of_the_kept_stores_searches(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    assert run_scale("--keep", str(kept), "--only", "space").returncode == 0
    completed = subprocess.run([sys.executable, "-m", "benchmarks.search_parts", str(kept), "--queries", "20"],
                               check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    rows = {line[:34].strip(): line[34:].split() for line in completed.stdout.splitlines()[2:]}
    assert list(rows) == ["query", *PARTS], completed.stdout
    assert all(len(medians) == 2 for medians in rows.values()), completed.stdout
    for kind in (0, 1):  # 2 and 3 words: every query is planned and reads its results' rows, both part of it
        assert 0 < float(rows["plan"][kind]) <= float(rows["query"][kind]), completed.stdout
        assert 0 < float(rows["catalog reads"][kind]) <= float(rows["query"][kind]), completed.stdout


@pytest.mark.slow  # builds two small stores, then catches copies of one up twice from other processes
def test_small_catch_up_times_every_kind_and_stores_the_same_bytes_each_run(tmp_path: Path) -> None:
    kept, copies = tmp_path / "kept", tmp_path / "copies"
    assert run_scale("--keep", str(kept), "--only", "space").returncode == 0
    copies.mkdir()
    before = (kept / "ours" / "data.mdb").read_bytes()
    runs = [subprocess.run([sys.executable, "-m", "benchmarks.small_catch_up", str(kept), "--rounds", "3", "--dir",
                            str(copies), "--digest"], check=False, cwd=ROOT, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for completed in runs:
        assert completed.returncode == 0, completed.stderr
        lines = completed.stdout.splitlines()
        assert [line[:40].strip() for line in lines[1:4]] == [name for name, _, _ in small_catch_up.KINDS]
        assert all(float(line[40:].split()[0]) > 0 for line in lines[1:4]), completed.stdout
    digests = {completed.stdout.splitlines()[4] for completed in runs}
    assert len(digests) == 1 and digests.pop().startswith("search index SHA-256: ")  # the same bytes each run
    assert (kept / "ours" / "data.mdb").read_bytes() == before  # the kept store is copied, not changed
    assert list(copies.iterdir()) == []  # and the copy removed


@pytest.mark.slow  # builds two small stores, then catches a copy of one up twice from another process
def test_later_batch_reports_each_batch_and_leaves_the_kept_store_as_it_was(tmp_path: Path) -> None:
    kept, copies = tmp_path / "kept", tmp_path / "copies"
    assert run_scale("--keep", str(kept), "--only", "space").returncode == 0
    copies.mkdir()
    before = (kept / "ours" / "data.mdb").read_bytes()
    completed = subprocess.run([sys.executable, "-m", "benchmarks.later_batch", str(kept), "--dir", str(copies),
                                "--sessions", "20", "--batches", "2"], check=False, cwd=ROOT, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert len(found["catch_up_us"]) == len(found["appends_us"]) == len(found["allocated_after"]) == 2
    assert all(spent > 0 for spent in found["catch_up_us"] + found["appends_us"])
    assert found["allocated_before"] > 0 and found["search_bytes"]["search.summary"] > 0
    assert (kept / "ours" / "data.mdb").read_bytes() == before  # the kept store is copied, not changed
    assert list(copies.iterdir()) == []  # and the copy removed


def test_record_bytes_builds_with_each_tree_in_turn_and_compares_them(tmp_path: Path) -> None:
    """The same tree under two names: each child imports it, and the bytes match (the build is deterministic)."""
    completed = subprocess.run([sys.executable, "-m", "benchmarks.record_bytes", "--tree", f"one={ROOT}", "--tree",
                                f"two={ROOT}", "--sessions", "250", "--rounds", "2", "--dir", str(tmp_path)],
                               check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    rounds = [json.loads(line.split(": ", 1)[1]) for line in completed.stdout.splitlines() if line.startswith("round")]
    assert len(rounds) == 4 and all(Path(found["eventstore"]).is_relative_to(ROOT) for found in rounds)
    assert {found["entries"] for found in rounds} == {5_000} and len({found["value_bytes"] for found in rounds}) == 1
    summaries = completed.stdout.splitlines()[-2:]
    assert [line.split(":")[0] for line in summaries] == ["one", "two"] and "value_bytes" in summaries[1]
    assert "x1.000" in summaries[1].split(";")[1]  # two's value bytes against one's
    assert list(tmp_path.iterdir()) == []  # the stores removed


@contextmanager
def corpus_store(path: Path) -> Iterator[tuple[SessionStore, list[str]]]:
    """A store of 150 sessions of the scale benchmark's corpus, caught up, and 50 of its 2- and 3-word queries."""
    corpus = Corpus(Settings(sessions=150, vocabulary=2_000, seed=16))
    queries = [*corpus.queries((0, 300), 2, 25), *corpus.queries((0, 300), 3, 25)]
    with SessionStore(path, durable=False) as store:
        for number in range(150):
            store.append_many(corpus.key(number), corpus.session())
        store.catch_up()
        yield store, queries


def test_search_floor_answers_what_search_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The most common terms stored in blocks, the others whole; blocks with and without message maps.
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 60)
    with corpus_store(tmp_path / "ours") as (store, queries):
        floor = search_floor.Floor(store)
        with floor.env.begin(buffers=False) as txn:
            answers = [search_floor.floor_answer(floor, txn, query) for query in queries]
            heads = [head for query in queries for head in floor.read(txn, search_floor.words_of(query))[1]]
        forms = {bool(blocks) for _, _, blocks, _ in heads}
        assert forms == {True, False}  # both stored forms are read
        assert any(answer.opened for answer in answers)  # and some sessions are scored from their postings
        for limit in (5, 50):
            assert [query for query in queries if not search_floor.checked(store, query, limit)] == []


def test_search_cold_values_answer_what_the_blocks_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks, so that the terms stored in blocks have several below the last and a cold value, and the last
    # block a message map.
    monkeypatch.setattr(formats, "WHOLE_UP_TO", 60)
    monkeypatch.setattr(formats, "BLOCK_BITS", 5)
    monkeypatch.setattr(formats, "MAP_FROM", 8)
    with corpus_store(tmp_path / "ours") as (store, queries):
        values, size = search_cold.write_scratch(tmp_path / "scratch", search_cold.cold_values(store))
        today = [[row.key for row in store.search(SessionQuery(query))] for query in queries]
    assert values > 0 and size > 0
    scratch = lmdb.open(str(tmp_path / "scratch"), readonly=True, lock=False)
    plain, composed = search_cold.composed, []

    def counted(reader: IndexReader, tid: int, head: bytes, cold: bytes) -> Whole:
        composed.append(tid)
        return plain(reader, tid, head, cold)

    monkeypatch.setattr(search_cold, "composed", counted)
    with SessionStore(tmp_path / "ours", readonly=True) as store:
        floor = search_cold.ColdFloor(store, scratch)
        with floor.env.begin(buffers=False) as txn:
            chunks = functools.partial(floor.chunks, txn)
            read = [floor.read_cold(txn, search_floor.words_of(query)) for query in queries]
            # Some term is read as a cold value and the blocks past it.
            assert any(blocks and blocks[0] is not None for _, heads in read for _, _, blocks, _ in heads)
            for query, cold_reads in zip(queries, read, strict=True):
                expected = search_floor.floor_answer(floor, txn, query)
                answer = search_floor.ranked(search_cold.decoded_cold(cold_reads), chunks)
                assert (answer.above, answer.tied, len(answer.best)) == (
                    expected.above, expected.tied, len(expected.best)), query
        with search_cold.cold_reader(scratch):
            cold = [[row.key for row in store.search(SessionQuery(query))] for query in queries]
    scratch.close()
    assert composed  # search() read terms through their cold values
    assert cold == today


@pytest.mark.slow  # builds two small stores, then times the floor beside the searches from a second process
def test_search_floor_prints_every_row_and_agrees_with_search(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    assert run_scale("--keep", str(kept), "--only", "space").returncode == 0
    completed = subprocess.run([sys.executable, "-m", "benchmarks.search_floor", str(kept), "--queries", "20"],
                               check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    table = next(part for part in completed.stdout.split("\n\n") if part.startswith("| process CPU time a query"))
    rows = [line.strip("| ").split(" | ") for line in table.splitlines()[2:]]
    assert [row[0] for row in rows] == list(search_floor.ROWS), completed.stdout
    assert all(cell.endswith("x") for row in rows for cell in (row[2], row[4])), completed.stdout
    assert "differs from search()'s sessions at top scores for 0 of 20 queries" in completed.stdout


def test_tenths_count_the_time_up_to_the_last_report_of_a_position_with_that_position() -> None:
    """A catch-up reports a batch's end once folded and again once written: the time between belongs to the tenth
    that ends there, and the last tenth takes the time up to the final point."""
    points = [(0, 0), *((10 * n, n) for n in range(1, 11)), (100, 10), (190, 10)]  # 90 ns after the last fold
    costs = tenths(points)
    assert costs[:9] == [10.0] * 9
    assert costs[9] == 100.0


def catch_up_points(batch_sizes: list[int], fold_ns: int, write_ns: list[int],
                    report_every: int) -> list[tuple[int, int]]:
    """The ``progress`` points of a catch-up whose batches hold ``batch_sizes`` items, folded at ``fold_ns`` an item
    and written in ``write_ns`` each: a report every ``report_every`` items folded, the batch's end once folded and
    again once written, and the caller's final point."""
    points, ns, done = [(0, 0)], 0, 0
    for size, write in zip(batch_sizes, write_ns):
        for folded in range(report_every, size + 1, report_every):
            points.append((ns + fold_ns * folded, done + folded))
        ns, done = ns + fold_ns * size, done + size
        points += [(ns, done), (ns + write, done)]
        ns += write
    return [*points, (ns, done)]


def test_batches_take_the_time_from_one_written_batch_to_the_next() -> None:
    """A batch's cost runs from the report of the previous batch written to its own (its fold, settling, writing)."""
    points = catch_up_points([200, 200, 100], fold_ns=1, write_ns=[100, 300, 50], report_every=50)
    assert batches(points) == [(200, 1.5), (200, 2.5), (100, 1.5)]


def test_where_a_batch_spans_two_tenths_the_verdict_takes_the_batches_alone() -> None:
    """Five batches of 200 over 1,000 items: the tenths alternate (a fold alone, then a fold and a write), though
    every batch costs the same; the verdict says flat."""
    linearity = Linearity.of(catch_up_points([200] * 5, fold_ns=1, write_ns=[100] * 5, report_every=100))
    assert linearity.tenths == [1.0, 2.0] * 5
    assert linearity.tenth_growth == 2.0 and linearity.batch_growth == 1.0 and not linearity.tenths_comparable
    assert linearity.verdict == 1.0 and "batches alone" in linearity.basis()


def test_where_each_tenth_holds_whole_batches_the_verdict_is_the_larger_growth() -> None:
    """Ten batches, one a tenth: the tenths compare, and a later batch's higher cost shows in both."""
    growing = Linearity.of(catch_up_points([100] * 10, fold_ns=1, write_ns=[100] * 9 + [200], report_every=50))
    assert growing.tenths_comparable and growing.tenths == [2.0] * 9 + [3.0]
    assert growing.tenth_growth == growing.batch_growth == 1.5 == growing.verdict


def test_one_batch_is_judged_by_its_tenths_and_a_short_last_batch_is_not_compared() -> None:
    one = Linearity.of(catch_up_points([1000], fold_ns=1, write_ns=[100], report_every=100))
    assert one.batch_growth is None and one.tenths_comparable
    assert one.verdict == one.tenth_growth == 2.0 and "one batch" in one.basis()
    # What was left of the log: its settling over 20 items costs more a message, not more as the index grows.
    short_last = Linearity.of(catch_up_points([200, 200, 20], fold_ns=1, write_ns=[100, 100, 100], report_every=20))
    assert [cost for _items, cost in short_last.batches] == [1.5, 1.5, 6.0]
    assert short_last.batch_growth == 1.0


def test_one_whole_batch_and_a_short_one_across_tenths_give_no_verdict() -> None:
    """A log of a batch and a bit (10,001 sessions of 20 events: 200,000 and 20): the short batch is not compared,
    and the tenths alternate, so neither line judges the cost, and the verdict says so rather than failing."""
    linearity = Linearity.of(catch_up_points([200, 20], fold_ns=1, write_ns=[100, 100], report_every=20))
    assert len(linearity.batches) == 2 and linearity.batch_growth is None and not linearity.tenths_comparable
    assert linearity.verdict is None
    assert linearity.basis().startswith("neither") and "one batch)" not in linearity.basis()


@pytest.mark.slow  # builds two small stores, then times the floor rows and the searches from further processes
def test_search_cold_prints_every_row_and_answers_as_search(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    assert run_scale("--keep", str(kept), "--only", "space").returncode == 0
    completed = subprocess.run([sys.executable, "-m", "benchmarks.search_cold", str(kept), "--queries", "20",
                                "--rounds", "2", "--pairs", "1"],
                               check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    tables = [part for part in completed.stdout.split("\n\n") if part.startswith("| ")]
    floor_rows = [line.strip("| ").split(" | ")[0] for line in tables[0].splitlines()[2:]]
    assert floor_rows == list(search_cold.ROWS), completed.stdout
    processes = [line.strip("| ").split(" | ")[:2] for line in tables[1].splitlines()[2:]]
    assert [(mode.split()[0], words) for mode, words in processes] == [
        ("today", "2"), ("cold", "2"), ("today", "3"), ("cold", "3")], completed.stdout
    assert "answers otherwise than today's for 0 queries" in completed.stdout
