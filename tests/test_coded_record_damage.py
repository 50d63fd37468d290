"""Damage to a layout 2 record that names its type by code, beyond ``test_compression``'s byte changes: the coded
flag itself flipped (either way), and the record cut short at each place its fields end. ``verify`` names the
position every time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eventstore import _log

from conftest import FakeClock
from test_compression import compressed_store, early_dictionary, reverify
from test_tamper import editing, items, names_position, position_key

__all__ = ["early_dictionary"]  # a fixture, used by name


@pytest.mark.parametrize("coded", [True, False], ids=["coded", "spelled-out"])
def test_the_coded_flag_flipped_is_reported_at_its_position(store_path: Path, clock: FakeClock,
                                                            early_dictionary: None, monkeypatch: pytest.MonkeyPatch,
                                                            coded: bool) -> None:
    with monkeypatch.context() as patch:
        if not coded:
            patch.setattr(_log, "TYPE_CODES", {})
        position = compressed_store(store_path, clock)
    with editing(store_path, b"log.events") as txn:
        stored = txn.get(position_key(position))
        assert stored is not None
        record = bytearray(stored)
        assert bool(record[1] & _log._CODED_FLAG) == coded
        record[1] ^= _log._CODED_FLAG
        txn.put(position_key(position), bytes(record))
    problems = reverify(store_path, clock)
    assert names_position(problems, position), problems


@pytest.mark.parametrize("coded", [True, False], ids=["coded", "spelled-out"])
def test_a_record_cut_short_is_reported_at_its_position(tmp_path: Path, clock: FakeClock, early_dictionary: None,
                                                        monkeypatch: pytest.MonkeyPatch, coded: bool) -> None:
    base = tmp_path / "base"
    with monkeypatch.context() as patch:
        if not coded:
            patch.setattr(_log, "TYPE_CODES", {})
        position = compressed_store(base, clock)
    record = dict(items(base, b"log.events"))[position_key(position)]
    header = _log._RECORD_2.size
    for cut in sorted({0, 1, 2, header - 1, header, header + 1, header + 32, len(record) - 1}):
        path = tmp_path / f"cut{cut}"
        shutil.copytree(base, path)
        with editing(path, b"log.events") as txn:
            txn.put(position_key(position), record[:cut])
        problems = reverify(path, clock)
        assert names_position(problems, position), (cut, problems)
