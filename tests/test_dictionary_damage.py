"""The compression dictionary, which every compressed record needs, is stored twice: damage to one form is named
and the other is read; damage to both is named once, not once per record it makes unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventstore import DictionaryDamaged, SessionStore
from eventstore._compression import COPY_MAGIC, choose, copy_of, digest_of, from_copy
from eventstore.services.salvage import salvage
from eventstore.storage.lmdb_check import _Walker, read_metas

from conftest import FakeClock, raw_value
from test_compression import compressed, early_dictionary, fill  # noqa: F401  (fixtures)
from test_tamper import editing, items

FORMS = (b"dictionary", b"dictionary.copy")
PAGE = 4096


def _damage(path: Path, key: bytes, how: str) -> None:
    with editing(path, b"log.meta") as txn:
        if how == "removed":
            txn.delete(key)
            return
        data = bytearray(raw_value(txn, key))
        for at in range(len(data) // 2, len(data), 7):  # its content, past the entropy tables
            data[at] ^= 0x55
        txn.put(key, bytes(data))


def _verify_read_only(path: Path) -> tuple[list[str], frozenset[str]]:
    with SessionStore(path, readonly=True) as store:
        report = store.verify()
    assert not report.ok
    return report.problems, report.damaged


def _meta(path: Path) -> dict[bytes, bytes]:
    return dict(items(path, b"log.meta"))


def test_a_trained_dictionary_is_stored_with_its_digest_and_a_self_checking_copy(
        compressed: tuple[Path, int]) -> None:  # noqa: F811
    meta = _meta(compressed[0])
    assert meta[b"dictionary.sha256"] == digest_of(meta[b"dictionary"])
    assert meta[b"dictionary.copy"] == copy_of(meta[b"dictionary"])
    assert meta[b"dictionary.copy"].startswith(COPY_MAGIC)


@pytest.mark.parametrize("how", ["changed", "removed"])
def test_a_damaged_dictionary_is_named_and_its_copy_read_instead(compressed: tuple[Path, int],  # noqa: F811
                                                                  clock: FakeClock, how: str) -> None:
    path, _ = compressed
    with SessionStore(path, readonly=True) as store:
        expected = store.history("alice")
    _damage(path, b"dictionary", how)
    problems, damaged = _verify_read_only(path)
    assert problems == ["the compression dictionary is damaged or missing (it does not match its digest); "
                        "its copy is intact and is read instead"]
    assert damaged == {"dictionary"}
    with SessionStore(path, readonly=True) as store:
        assert store.history("alice") == expected
        assert store.load("bob")
    with SessionStore(path, clock=clock) as store:  # a writable open rewrites it from the copy
        assert store.verify().ok
    meta = _meta(path)
    assert meta[b"dictionary"] == from_copy(meta[b"dictionary.copy"])


@pytest.mark.parametrize("how", ["changed", "removed"])
def test_a_damaged_copy_is_named_and_the_dictionary_still_read(compressed: tuple[Path, int],  # noqa: F811
                                                                clock: FakeClock, how: str) -> None:
    path, _ = compressed
    _damage(path, b"dictionary.copy", how)
    problems, damaged = _verify_read_only(path)
    assert problems == ["the compression dictionary's copy is damaged (the dictionary itself is intact)"]
    assert damaged == {"dictionary"}
    with SessionStore(path, clock=clock) as store:
        assert store.verify().ok


def test_both_forms_damaged_is_one_problem_naming_the_dictionary_not_one_per_record(
        compressed: tuple[Path, int], clock: FakeClock) -> None:  # noqa: F811
    path, _ = compressed
    for form in FORMS:
        _damage(path, form, "changed")
    with SessionStore(path, clock=clock) as store:  # a writable open has nothing intact to rewrite from
        report = store.verify()
        with pytest.raises(DictionaryDamaged, match="and so is its copy"):
            store.history("alice")
    assert report.damaged == {"log"}
    assert report.problems[0] == ("the compression dictionary is damaged and so is its copy: no compressed record "
                                  "or message chunk can be read")
    assert len(report.problems) == 2, report.problems
    assert "cannot be read without the compression dictionary" in report.problems[1]
    assert "(it was changed)" not in "".join(report.problems)


def test_salvage_reads_the_copy_when_the_dictionary_is_damaged(compressed: tuple[Path, int]) -> None:  # noqa: F811
    path, _ = compressed
    with SessionStore(path, readonly=True) as store:
        events = list(store.events())
    _damage(path, b"dictionary", "changed")
    found = salvage(path / "data.mdb")
    assert found.first_missing is None
    assert list(found.prefix) == events
    assert found.problems == ("the compression dictionary is damaged or missing (it does not match its digest); "
                              "its copy is intact and is read instead",)


def test_a_store_from_before_the_copy_opens_unchanged_and_gains_it_on_a_writable_open(
        compressed: tuple[Path, int], clock: FakeClock) -> None:  # noqa: F811
    path, _ = compressed
    with editing(path, b"log.meta") as txn:
        txn.delete(b"dictionary.sha256")
        txn.delete(b"dictionary.copy")
    with SessionStore(path, readonly=True) as store:
        assert store.verify().ok
    assert b"dictionary.copy" not in _meta(path)
    with SessionStore(path, clock=clock):
        pass
    meta = _meta(path)
    assert meta[b"dictionary.sha256"] == digest_of(meta[b"dictionary"])
    assert meta[b"dictionary.copy"] == copy_of(meta[b"dictionary"])


def test_choose_takes_the_intact_form() -> None:
    data = b"a dictionary's stored form"
    copy = copy_of(data)
    assert choose(data, digest_of(data), copy).secured
    assert choose(data, None, None).data == data  # a store from before the copy: read unchecked
    assert choose(b"changed", digest_of(data), copy).data == data
    assert choose(None, digest_of(data), copy).data == data
    assert choose(data, digest_of(data), copy[:-1] + b"!").data == data
    assert choose(data, b"changed digest", copy).problem == (
        "the compression dictionary's digest is damaged (the dictionary itself is intact)")
    assert choose(b"changed", digest_of(data), copy[:-1] + b"!").data is None


def test_salvage_finds_the_copy_in_the_files_pages_when_nothing_points_at_it(
        compressed: tuple[Path, int]) -> None:  # noqa: F811
    """The page of ``log.meta`` (which points at both forms) is zeroed: the copy is found by its magic."""
    path, _ = compressed
    with SessionStore(path, readonly=True) as store:
        events = list(store.events())
    data = bytearray((path / "data.mdb").read_bytes())
    [copy_at] = [at for at in range(0, len(data), PAGE) if data[at + 16:].startswith(COPY_MAGIC)]
    meta_leaf = _meta_leaf(path)
    assert meta_leaf * PAGE != copy_at
    data[meta_leaf * PAGE:(meta_leaf + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(data)
    found = salvage(path / "data.mdb")
    assert list(found.prefix) == events
    assert "the compression dictionary was read from its copy, found in the file's pages" in found.problems


def _meta_leaf(path: Path) -> int:
    """The page of ``log.meta``'s one leaf, which holds its small values and points at its large ones."""
    with open(path / "data.mdb", "rb") as file:
        metas = read_metas(path / "data.mdb", os.pread(file.fileno(), 2 * PAGE, 0))
        walker = _Walker(file, max(metas, key=lambda meta: meta.transaction))
        database = walker.named_databases()[1]["log.meta"]
    assert database.depth == 1
    return database.root
