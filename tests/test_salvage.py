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

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.storage.lmdb_check import _Walker, leaf_nodes, read_metas

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
    assert "eventstore salvage --out FILE" in refused.stdout

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
