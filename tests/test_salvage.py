"""``eventstore salvage``: the readable events of a damaged data file, as an events file that imports.

The salvage runs in a child process, so a crash (a signal) would fail the test rather than the run.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.storage.lmdb_check import _Walker, leaf_nodes, read_metas

from conftest import raw_value

PAGE = 4096
EVENTS = 300


def _populate(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        for index in range(EVENTS):
            # Every tenth message is larger than a page: its record lives on overflow pages.
            text = f"message {index} " + "x" * (5000 if index % 10 == 0 else 40)
            store.append(f"session-{index % 7}", ChatMessage.user(text))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("salvage") / "store"
    _populate(path)
    return path


def _event_leaves(data_file: Path) -> list[tuple[int, int]]:
    """The leaf pages of ``log.events``, in key order: (page number, first position on it)."""
    with open(data_file, "rb") as file:
        metas = read_metas(data_file, os.pread(file.fileno(), 2 * PAGE, 0))
        walker = _Walker(file, max(metas, key=lambda meta: meta.transaction))
        _, named = walker.named_databases()
        leaves = []
        for page, problem in walker.leaf_pages(named["log.events"]):
            assert problem is None
            first_key = next(leaf_nodes(page))[0]
            leaves.append((struct.unpack("=Q", page[:8])[0], struct.unpack(">Q", first_key)[0]))
    return sorted(leaves, key=lambda leaf: leaf[1])


def _eventstore(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "eventstore", *args], check=False, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-500:]}"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result


def _salvage(store: Path, out: Path) -> dict[str, object]:
    result = _eventstore("--store", str(store), "salvage", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _rebuilt(tmp_path: Path, events_file: Path) -> list[tuple[int, str]]:
    """Import the file into a fresh store, check that it verifies, and return its (position, hash) list."""
    fresh = tmp_path / "fresh"
    imported = _eventstore("--store", str(fresh), "import", "events", str(events_file))
    assert imported.returncode == 0, imported.stderr
    verified = _eventstore("--store", str(fresh), "verify")
    assert verified.returncode == 0, verified.stdout
    with SessionStore(fresh, readonly=True) as copy:
        return [(event.position, event.hash) for event in copy.events()]


def test_an_undamaged_store_salvages_completely(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.events.jsonl"
    report = _salvage(store, out)
    assert report["events"] == EVENTS
    assert report["first_missing"] is None
    assert report["later"] == []
    with SessionStore(store, readonly=True) as original:
        expected = [(event.position, event.hash) for event in original.events()]
    assert _rebuilt(tmp_path, out) == expected


def test_a_zeroed_page_of_the_log_keeps_the_events_before_it(store: Path, tmp_path: Path) -> None:
    leaves = _event_leaves(store / "data.mdb")
    assert len(leaves) > 3
    page, first_lost = leaves[len(leaves) // 2]
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = bytearray((store / "data.mdb").read_bytes())
    data[page * PAGE:(page + 1) * PAGE] = bytes(PAGE)
    (damaged / "data.mdb").write_bytes(data)
    refused = _eventstore("--store", str(damaged), "verify")
    assert refused.returncode == 1
    assert f"eventstore --store {damaged} salvage --out FILE" in refused.stdout

    out = tmp_path / "part.events.jsonl"
    report = _salvage(damaged, out)
    assert report["events"] == first_lost - 1
    assert report["first_missing"] == first_lost
    next_leaf_start = leaves[len(leaves) // 2 + 1][1]
    assert report["later"] == list(range(next_leaf_start, EVENTS + 1))
    with SessionStore(store, readonly=True) as original:
        expected = [(event.position, event.hash) for event in original.events() if event.position < first_lost]
    assert _rebuilt(tmp_path, out) == expected


def test_the_report_is_one_line_saying_nothing_is_missing(store: Path, tmp_path: Path) -> None:
    result = _eventstore("--store", str(store), "salvage", "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 0
    assert result.stdout.strip() == f"Wrote all {EVENTS} events to {tmp_path / 'x.jsonl'}; no damage was met."


def test_a_file_with_nothing_to_salvage_says_so_in_one_line_without_pointing_to_salvage(store: Path,
                                                                                         tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "data.mdb").write_bytes((store / "data.mdb").read_bytes()[:100])
    out = tmp_path / "x.jsonl"
    result = _eventstore("--store", str(damaged), "salvage", "--out", str(out))
    assert 1 == result.returncode and not out.exists()
    assert [f"Error: {damaged / 'data.mdb'}: neither meta page can be read, so nothing can be salvaged"
            ] == result.stderr.splitlines()


# -- a file cut short: the records on pages no tree reaches any more ---------------------------------------------


def _events_root(data_file: Path) -> int:
    with open(data_file, "rb") as file:
        metas = read_metas(data_file, os.pread(file.fileno(), 2 * PAGE, 0))
        walker = _Walker(file, max(metas, key=lambda meta: meta.transaction))
        return walker.named_databases()[1]["log.events"].root


def _cut_copy(store: Path, tmp_path: Path, size: int) -> Path:
    damaged = tmp_path / "cut"
    damaged.mkdir()
    (damaged / "data.mdb").write_bytes((store / "data.mdb").read_bytes()[:size])
    return damaged


def test_a_file_cut_before_the_logs_root_page_still_gives_its_records(store: Path, tmp_path: Path) -> None:
    """The cut takes the root of the log's tree (and the pages after it): the leaves before the cut are read by
    their framing, and what links from position 1 is written."""
    root = _events_root(store / "data.mdb")
    leaves = _event_leaves(store / "data.mdb")
    before_cut = [first for page, first in leaves if page < root]
    assert before_cut and 1 in before_cut, "the test needs leaves before the root, the first among them"
    damaged = _cut_copy(store, tmp_path, root * PAGE)
    out = tmp_path / "cut.events.jsonl"
    report = _salvage(damaged, out)
    with SessionStore(store, readonly=True) as original:
        expected = [(event.position, event.hash) for event in original.events()]
    first_missing = report["first_missing"]
    assert isinstance(first_missing, int) and report["events"] == first_missing - 1 > 0
    assert _rebuilt(tmp_path, out) == expected[:first_missing - 1]
    # Every run is a stretch of the original log, and together they hold every record on a page before the cut.
    runs = report["runs"]
    assert isinstance(runs, list) and runs[0] == [1, first_missing - 1]
    read = [position for first, last in runs for position in range(first, last + 1)]
    assert read == sorted(read) and set(read) <= set(range(1, EVENTS + 1))
    on_leaves_before_cut: set[int] = set()
    for page, first in leaves:
        if page < root:
            next_first = min((other for _, other in leaves if other > first), default=EVENTS + 1)
            on_leaves_before_cut.update(range(first, next_first))
    assert on_leaves_before_cut - set(read) <= _on_overflow_pages_past(store, root * PAGE)
    assert report["later"] == [position for position in read if position > first_missing]


def _on_overflow_pages_past(store: Path, cut: int) -> set[int]:
    """Positions of records stored on overflow pages (every tenth is longer than a page) that the cut took."""
    with SessionStore(store, readonly=True) as original:
        large = {event.position for event in original.events() if event.position % 10 == 1}
    data = (store / "data.mdb").read_bytes()
    return {position for position in large if data.find(f"message {position - 1} ".encode()) >= cut}


def test_the_human_report_of_a_cut_file_names_the_runs_read(store: Path, tmp_path: Path) -> None:
    damaged = _cut_copy(store, tmp_path, _events_root(store / "data.mdb") * PAGE)
    result = _eventstore("--store", str(damaged), "salvage", "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "cannot be read" in line and "in runs whose hash chain links: 1-" in line, line


def test_a_record_whose_header_was_changed_breaks_the_chain_there(store: Path, tmp_path: Path) -> None:
    """A record read by its framing is kept only where its hash links: one whose recorded time was changed (its
    payload intact, so it decodes) is not, and the run stops before it; the next starts after it."""
    root = _events_root(store / "data.mdb")
    damaged = _cut_copy(store, tmp_path, root * PAGE)
    environment = lmdb.open(str(store), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        record = raw_value(txn, struct.pack(">Q", 5), environment.open_db(b"log.events", txn=txn, create=False))
    environment.close()
    data = bytearray((damaged / "data.mdb").read_bytes())
    at = data.find(record)
    assert at > 0 and data.find(record, at + 1) == -1, "the record is on one page before the cut"
    data[at + 25] ^= 0x01  # the last byte of its recorded time (layout 1)
    (damaged / "data.mdb").write_bytes(data)
    report = _salvage(damaged, tmp_path / "x.jsonl")
    assert report["first_missing"] == 5 and report["events"] == 4
    runs = report["runs"]
    assert isinstance(runs, list) and runs[0] == [1, 4] and runs[1][0] == 6


def test_a_copy_from_before_a_redaction_on_a_freed_page_does_not_bring_the_content_back(tmp_path: Path) -> None:
    """The live page of redacted records is zeroed, and the file still holds their copies from before the
    redaction on freed pages: salvage finds them (they link: a redaction keeps each hash) and redacts them again,
    as the redaction read with them says."""
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("secret", [ChatMessage.user(f"the code is SWORDFISH-{n}") for n in range(3)])
        for index in range(40):
            store.append(f"session-{index % 3}", ChatMessage.user(f"message {index} " + "x" * 40))
        store.redact("secret", "a password")
        expected = [(event.position, event.hash, event.event) for event in store.events()]
    data = bytearray((path / "data.mdb").read_bytes())
    assert data.count(b"SWORDFISH") > 0, "the test needs the copies from before the redaction on freed pages"
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        live = raw_value(txn, struct.pack(">Q", 2), environment.open_db(b"log.events", txn=txn, create=False))
    environment.close()
    page = data.find(live) // PAGE
    assert b"SWORDFISH" not in data[page * PAGE:(page + 1) * PAGE]
    data[page * PAGE:(page + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(data)
    out = tmp_path / "x.jsonl"
    report = _salvage(path, out)
    assert b"SWORDFISH" not in out.read_bytes()
    assert report["events"] == len(expected)
    assert _rebuilt(tmp_path, out) == [(position, event_hash) for position, event_hash, _ in expected]


def test_an_empty_store_salvages_to_an_empty_log(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "empty", durable=False):
        pass
    report = _salvage(tmp_path / "empty", tmp_path / "x.jsonl")
    assert (report["events"], report["first_missing"], report["runs"]) == (0, None, [])
