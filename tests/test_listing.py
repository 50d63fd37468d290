"""Listing sessions: by key prefix, a page at a time while sessions change, and stores of the catalog before
its key index."""

from __future__ import annotations

import gc
import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import lmdb
import orjson
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

import projections.catalog as catalog_module
from eventstore import (
    ChatMessage,
    InvalidArgument,
    SessionMetadata,
    SessionPage,
    SessionStore,
    StoreCorrupted,
    StoreReadOnly,
    pause_gc_while_decoding,
)
from eventstore.storage import MemoryStorage
from projections.catalog import Catalog

from _damage import change_value
from _session_lives import DeletionsAndRestores
from conftest import FakeClock


def user(text: str) -> ChatMessage:
    return ChatMessage.user(text)


# -- prefixes and pages, by example ------------------------------------------------------------------


def test_prefix_lists_only_its_keys_most_recent_first(store: SessionStore, clock: FakeClock) -> None:
    for key in ("tg:1", "slack:1", "tg:2", "tg", "tgx"):
        clock.advance(seconds=1)
        store.append(key, user(key))
    assert ["tgx", "tg", "tg:2", "tg:1"] == store.list_sessions(prefix="tg")
    assert ["tg:2", "tg:1"] == store.list_sessions(prefix="tg:")
    assert ["tg:2", "tg:1"] == [m.key for m in store.list_sessions_with_metadata(prefix="tg:")]
    assert [] == store.list_sessions(prefix="discord:")
    assert [] == store.list_sessions_with_metadata(prefix="discord:")
    assert store.list_sessions() == store.list_sessions(prefix="") == store.list_sessions(prefix=None)


def test_long_keys_that_share_their_start_stay_apart(store: SessionStore) -> None:
    """Keys past the index's key size share their first bytes there; each is still its own session."""
    start = "é" * 300  # 600 bytes: the index keeps fewer, then a digest
    keys = [start + suffix for suffix in ("a", "b", "ab")] + ["é" * 512]
    for key in keys:
        store.append(key, user(key[-2:]))
    assert sorted(keys) == sorted(store.list_sessions(prefix=start))
    assert [start + "ab", start + "a"] == store.list_sessions(prefix=start + "a")
    assert ["é" * 512] == store.list_sessions(prefix="é" * 301)
    for key in keys:
        metadata = store.get_session_metadata(key)
        assert metadata is not None and (key, 1) == (metadata.key, metadata.message_count)
        assert store.session_exists(key)
    assert not store.session_exists(start + "c") and store.get_session_metadata(start) is None
    assert store.verify().ok


def test_a_long_prefix_never_matches_a_long_keys_digest(store: SessionStore) -> None:
    """Past the kept bytes a long key's index key is a digest: a prefix that reaches there is compared with the
    key itself, even when the digest's first byte happens to be the prefix's next one."""
    start = "a" * 448  # the index keeps this many bytes of a long key
    key = next(key for key in (f"{start}{'Y' * 40}{n}" for n in range(10_000))
               if hashlib.sha256(key.encode()).digest()[0] == ord("X"))
    store.append(key, user("hi"))
    assert [] == store.list_sessions(prefix=start + "X")
    assert [] == store.list_sessions_with_metadata(prefix=start + "X")
    assert 0 == store.list_sessions_page(prefix=start + "X").total
    assert [key] == store.list_sessions(prefix=start + "Y")


def test_a_long_keys_row_naming_another_key_is_damage(store_path: Path) -> None:
    """A key of 480 bytes or more is listed from its row, the index holding only its start: a row that names
    another key than the index entry's is damage, not a key listed that the index does not hold."""
    start = "a" * 448
    with SessionStore(store_path, durable=False) as store:
        for key in (start + "x" * 40, "short"):
            store.append(key, user("hi"))
        with store._environment.read() as txn:
            keyed = store._catalog._keyed_of(txn, start + "x" * 40)
    assert keyed is not None
    change_value(store_path, b"catalog.activity", keyed[0],
                 lambda row: row.replace(orjson.dumps(start + "x" * 40), orjson.dumps(start + "y" * 40)))
    with SessionStore(store_path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="key index"):
            store.list_sessions(prefix="a")
        assert ["short"] == store.list_sessions(prefix="s")


def test_a_prefix_lists_the_keys_up_to_its_successor_and_no_further(store: SessionStore, clock: FakeClock) -> None:
    """A prefix reads the key index from the prefix up to the prefix with its last byte one higher: the keys at
    that successor and past it are not listed, nor those just before the prefix, whether the prefix is ASCII or
    ends inside a letter of two or four bytes; a prefix past the last key lists nothing."""
    keys = ["`", "a", "a\x01", "ab", "a\U0010ffff", "b", "b\x01", "è", "é", "éz", "é\U0010ffff", "ê", "\x7f",
            "\x7fa", "\x80", "😀", "😀x", "😁", "\U0010ffff"]
    for key in keys:
        clock.advance(seconds=1)
        store.append(key, user(key))
    for prefix in ("a", "ab", "b", "é", "\x7f", "😀", "\U0010ffff", "\U0010ffffx", "zzz"):
        expected = [key for key in reversed(keys) if key.startswith(prefix)]
        assert expected == store.list_sessions(prefix=prefix), prefix
        assert expected == [metadata.key for metadata in store.list_sessions_with_metadata(prefix=prefix)]
        page = store.list_sessions_page(limit=len(keys), prefix=prefix)
        assert (expected, len(expected)) == ([metadata.key for metadata in page.sessions], page.total)


def test_pages_walk_every_session_once_newest_first(store: SessionStore, clock: FakeClock) -> None:
    for number in range(7):
        clock.advance(seconds=number % 2)  # pairs of sessions share a time: the walk orders them all the same
        store.append(f"s{number}", user("hi"))
    walked: list[SessionMetadata] = []
    cursor, pages = None, 0
    while True:
        page = store.list_sessions_page(limit=3, cursor=cursor)
        assert 7 == page.total and len(page.sessions) <= 3
        walked += page.sessions
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert (3, store.list_sessions_with_metadata()) == (pages, walked)
    assert SessionPage((), None, 0) == store.list_sessions_page(prefix="nobody")
    assert SessionPage(tuple(walked), None, 7) == store.list_sessions_page(limit=7)


@pytest.mark.parametrize("cursor", ["", "x", "AQ", "AQAGYcCcZ7sUAAAAAAAATh4x", "AgAGYcCcZ7sUAAAAAAAATh4",
                                    "AQAGYcCcZ7sUAAAAAAAAT!4", "AQAGYcCcZ7sUAAAAAAAATh4="])
def test_a_cursor_no_page_returned_is_refused(store: SessionStore, cursor: str) -> None:
    store.append("a", user("hi"))
    with pytest.raises(InvalidArgument, match="cursor"):
        store.list_sessions_page(cursor=cursor)


@pytest.mark.parametrize(("arguments", "words"), [
    ({"limit": 0}, "limit"), ({"limit": -1}, "limit"), ({"limit": 1.5}, "limit"), ({"limit": True}, "limit"),
    ({"cursor": 5}, "cursor"), ({"prefix": b"a"}, "prefix"), ({"prefix": "\ud800"}, "prefix"),
])
def test_page_arguments_are_checked(store: SessionStore, arguments: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        store.list_sessions_page(**arguments)  # type: ignore[arg-type]


def test_prefix_arguments_are_checked(store: SessionStore) -> None:
    for call in (store.list_sessions, store.list_sessions_with_metadata):
        with pytest.raises(InvalidArgument, match="prefix"):
            call(prefix=3)  # type: ignore[arg-type]


# -- stores written by earlier catalogs ---------------------------------------------------------------


def _as_version_3_row(row: bytes) -> bytes:
    """A head row as code versions 2 and 3 stored it: a JSON array, the version second and the times last."""
    key, name, created, last, count, version, state, turn_id, started = orjson.loads(b"[" + row + b"]")
    return orjson.dumps([key, version, name, state, turn_id, started, created, last, count])


def put_first_catalog_row(path: Path, row: bytes) -> None:
    """Write ``row`` over the first row of the catalog of the store at ``path``, beneath the store (closed)."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        rows = environment.open_db(b"catalog.sessions")
        with environment.begin(write=True, db=rows) as txn:
            txn.put(next(txn.cursor().iternext(values=False)), row)
    finally:
        environment.close()


def _as_catalog_version(path: Path, version: int) -> None:
    """Make the store at ``path`` what the catalog of code ``version`` left: a copy of each row in
    ``catalog.sessions`` and, after its position, in ``catalog.keys`` (4), rows as JSON arrays (3), and no
    ``catalog.keys`` before that (2); its checkpoint says ``version``."""
    with SessionStore(path) as store:
        catalog = store._catalog

        def body(txn: Any) -> None:
            rows = dict(txn.scan(catalog._activity))
            old_row = (lambda row: row) if version == 4 else _as_version_3_row
            for key, position in list(txn.scan(catalog._sessions)):
                txn.put(catalog._sessions, key, old_row(rows[position]))
            for key, value in list(txn.scan(catalog._keys)):
                position = value[:16]
                txn.put(catalog._keys, key, position + old_row(rows[position]))
            for position, row in rows.items():
                txn.put(catalog._activity, position, old_row(row))
            if version < 3:
                txn.clear(catalog._keys)
            store._checkpoints.put(txn, "catalog", version, store._log.head(txn)[0])

        store._environment.write(body)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_a_store_of_an_earlier_catalog_converts_and_lists(store_path: Path, version: int) -> None:
    """Rows kept three times (before version 4 as JSON arrays, before version 3 with no key index) are rewritten
    from the catalog's rows when the store opens writable; read-only, it asks for that open first."""
    with SessionStore(store_path) as store:
        for key in ("tg:1", "tg:2", "slack:1"):
            store.append(key, user(key))
        store.set_session_name("tg:1", "first")
        store.set_session_state("tg:2", "running", "turn 1")
        store.delete_session("slack:1")
        expected = store.list_sessions_with_metadata()
        expected_state = store.get_session_state("tg:2")
        with store._environment.read() as txn:
            expected_rows = store._catalog.dump(txn)
    _as_catalog_version(store_path, version)
    with pytest.raises(StoreReadOnly, match="writable"):
        SessionStore(store_path, readonly=True)
    folded: list[tuple[int, int]] = []
    with SessionStore(store_path, rebuild_progress=lambda done, total: folded.append((done, total))) as store:
        assert [] == folded  # converted in place, without reading the log
        with store._environment.read() as txn:
            assert Catalog.code_version == store._checkpoints.get(txn, "catalog")[0]  # type: ignore[index]
            assert expected_rows == store._catalog.dump(txn)
        assert expected == store.list_sessions_with_metadata() != store.list_sessions_with_metadata(prefix="tg:2")
        assert expected[-1:] == store.list_sessions_with_metadata(prefix="tg:1")
        assert expected[0] == store.get_session_metadata(expected[0].key) and not store.session_exists("slack:1")
        assert expected_state == store.get_session_state("tg:2")
        assert store.verify().ok


def test_an_earlier_catalog_with_a_damaged_row_is_rebuilt_from_the_log(store_path: Path) -> None:
    """A row the conversion cannot read does not keep the store from opening (the catalog of the version before
    opened and ``rebuild`` repaired it): the catalog is rebuilt from the log instead."""
    with SessionStore(store_path) as store:
        for key in ("tg:1", "tg:2"):
            store.append(key, user(key))
        expected = store.list_sessions_with_metadata()
    _as_catalog_version(store_path, 3)
    put_first_catalog_row(store_path, b'["tg:1", 1')  # beneath the store: its writable open converts
    folded: list[tuple[int, int]] = []
    with SessionStore(store_path, rebuild_progress=lambda done, total: folded.append((done, total))) as store:
        assert folded  # rebuilt from the log
        assert expected == store.list_sessions_with_metadata()
        assert store.verify().ok


# -- pages while sessions change, against a model ---------------------------------------------------------

KEYS = ("u1:a", "u1:b", "u1:c", "u1:d", "u2:a", "u2:b", "u3", "x")
PREFIXES = ("", "u1:", "u2", "x", "nobody")


@attrs.define
class Life:
    """A live session as the model knows it."""

    created_at: datetime
    last_activity: datetime
    name: str | None = None
    count: int = 0


@attrs.define
class Walk:
    """A walk through the pages in progress: where it is, what it listed, what changed meanwhile."""

    prefix: str
    live_at_start: set[str]
    cursor: str | None = None
    listed: list[SessionMetadata] = attrs.Factory(list)
    moved: set[str] = attrs.Factory(set)


class PagingMachine(DeletionsAndRestores[Life]):
    """Walks through the pages with random changes between pages: a session that does not change during the walk
    is listed exactly once, none is listed twice, each page is what the model says, the total is right."""

    KEYS = KEYS

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.live: dict[str, Life] = {}
        self.versions = dict.fromkeys(KEYS, 0)
        self.latest: dict[str, datetime] = {}
        self.buried = {}
        self.names = 0
        self.walk: Walk | None = None
        self.store = self._open()

    def _open(self) -> SessionStore:
        self.directory = tempfile.mkdtemp(prefix="eventstore-pages-")
        return SessionStore(self.directory, clock=self.clock, durable=False)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _event(self, key: str) -> datetime:
        """Count an event of ``key``; return its time (never before the key's latest)."""
        at = max(self.clock.now, self.latest.get(key, self.clock.now))
        self.latest[key] = at
        self.versions[key] += 1
        if self.walk is not None:
            self.walk.moved.add(key)
        return at

    @rule(seconds=st.sampled_from((0, 0, 1, 5)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule(seconds=st.sampled_from((1, 10)))
    def clock_goes_back(self, seconds: int) -> None:
        self.clock.advance(seconds=-seconds)

    @rule(key=st.sampled_from(KEYS))
    def append(self, key: str) -> None:
        self.store.append(key, user("hi"))
        at = self._event(key)
        life = self.live.setdefault(key, Life(at, at))
        life.last_activity, life.count = at, life.count + 1

    @rule(key=st.sampled_from(KEYS))
    def rename(self, key: str) -> None:
        self.names += 1
        self.store.set_session_name(key, f"name {self.names}")
        at = self._event(key)
        life = self.live.setdefault(key, Life(at, at))
        life.last_activity, life.name = at, f"name {self.names}"

    @rule(prefix=st.sampled_from(PREFIXES), limit=st.integers(1, 3))
    def page(self, prefix: str, limit: int) -> None:
        """The next page of the walk in progress, or the first of a new one; check a walk when it ends."""
        if self.walk is None:
            self.walk = Walk(prefix, {key for key in self.live if key.startswith(prefix)})
        walk = self.walk
        page = self.store.list_sessions_page(limit=limit, cursor=walk.cursor, prefix=walk.prefix)
        matching = {key: life for key, life in self.live.items() if key.startswith(walk.prefix)}
        assert len(matching) == page.total
        assert len(page.sessions) <= limit and (page.next_cursor is None or len(page.sessions) == limit)
        for metadata in page.sessions:
            life = matching[metadata.key]
            assert SessionMetadata(metadata.key, life.name, life.created_at, life.last_activity,
                                   life.count) == metadata
        walk.listed += page.sessions
        walk.cursor = page.next_cursor
        if walk.cursor is None:
            keys = [metadata.key for metadata in walk.listed]
            assert len(keys) == len(set(keys)), f"listed twice: {keys}"
            skipped = walk.live_at_start - walk.moved - set(keys)
            assert not skipped, f"skipped: {skipped}"
            times = [metadata.last_activity for metadata in walk.listed]
            assert sorted(times, reverse=True) == times
            self.walk = None

    @invariant()
    def one_page_is_the_listing(self) -> None:
        listing = self.store.list_sessions_with_metadata()
        assert (tuple(listing), None, len(self.live)) == attrs.astuple(
            self.store.list_sessions_page(limit=len(KEYS)), recurse=False)


PagingMachine.TestCase.__doc__ = "Pages stay right while sessions change between them."
TestPaging = PagingMachine.TestCase


class MemoryPagingMachine(PagingMachine):
    """The same walks on the in-memory engine."""

    def _open(self) -> SessionStore:
        self.directory = tempfile.mkdtemp(prefix="eventstore-pages-")
        return SessionStore.on_storage(MemoryStorage(), clock=self.clock)


TestPagingInMemory = MemoryPagingMachine.TestCase


def test_a_catalog_older_than_version_2_is_rebuilt_from_the_log(store_path: Path) -> None:
    with SessionStore(store_path) as store:
        store.append("tg:1", user("hi"))
        expected = store.list_sessions_with_metadata()
    _as_catalog_version(store_path, 1)
    folded: list[tuple[int, int]] = []
    with SessionStore(store_path, rebuild_progress=lambda done, total: folded.append((done, total))) as store:
        assert folded and expected == store.list_sessions_with_metadata(prefix="tg")
        assert store.verify().ok


def test_opted_in_listing_decodes_its_rows_with_the_collector_paused(
        store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows' decode makes most of a listing's objects, so the opt-in pause covers it, not only the metadata."""
    store.append("one", user("hello"))
    decode_rows = catalog_module._decode_rows
    collector_on: list[bool] = []

    def recording(values: Iterable[bytes]) -> list[list[Any]]:
        collector_on.append(gc.isenabled())
        return decode_rows(values)

    monkeypatch.setattr(catalog_module, "_decode_rows", recording)
    previous = pause_gc_while_decoding(True)
    try:
        listed = store.list_sessions_with_metadata()
    finally:
        pause_gc_while_decoding(previous)
    assert [metadata.key for metadata in listed] == ["one"]
    assert collector_on == [False]
    assert gc.isenabled()


# -- what a listing builds ---------------------------------------------------------------------------------


def test_a_listing_makes_one_object_a_session_for_the_collector(store_path: Path) -> None:
    """No container a row: the metadata are the only objects the cyclic collector tracks (young collections
    come one per ``threshold`` of them), so listing every session sets it off half as often as a list a row did."""
    sessions, threshold = 2_000, 100
    with SessionStore(store_path, durable=False) as store:
        for number in range(sessions):
            store.append(f"s{number}", user("hi"))
        collections: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        before = gc.get_threshold()
        gc.collect()
        gc.set_threshold(threshold, *before[1:])
        gc.callbacks.append(count)
        try:
            listed = store.list_sessions_with_metadata()
        finally:
            gc.callbacks.remove(count)
            gc.set_threshold(*before)
    assert sessions == len(listed)
    assert len(collections) <= sessions // threshold + 3, collections


def test_metadata_built_a_column_at_a_time_are_those_the_class_builds(store: SessionStore,
                                                                       clock: FakeClock) -> None:
    """The listing fills each field of ``SessionMetadata`` without its ``__init__``, which holds nothing more."""
    assert all(field.validator is None and field.converter is None for field in attrs.fields(SessionMetadata))
    assert "__attrs_post_init__" not in vars(SessionMetadata)
    store.append("a", user("hi"))
    clock.advance(seconds=1)
    store.set_session_name("b", "named")
    store.append("b", user("hello"))
    listed = store.list_sessions_with_metadata()
    assert [SessionMetadata(m.key, m.name, m.created_at, m.last_activity, m.message_count) for m in listed] == listed
    assert [("b", "named", 1), ("a", None, 1)] == [(m.key, m.name, m.message_count) for m in listed]
    assert [hash(m) for m in listed] == [hash(attrs.evolve(m)) for m in listed]


@pytest.mark.parametrize(("row", "words", "keys_too"), [
    (b'"a",null', "fields", True),
    (b'"a",null,"2026-01-01T00:00:00+00:00","2026-01-01T00:00:00+00:00",1,1,null,null,null,7', "fields", True),
    (b'7,null,"2026-01-01T00:00:00+00:00","2026-01-01T00:00:00+00:00",1,1,null,null,null', "not text", True),
    (b'"a",null,"2026-01-01', "damaged", True),
    (b'"a",null,"2026-01-01T00:00:00+00:00","2026-01-01T00:00:00+00:00","1",1,null,null,null', "not a number", False),
    (b'"a",null,"yesterday","2026-01-01T00:00:00+00:00",1,1,null,null,null', "yesterday", False),
    (b'"a",null,"2026-01-01T00:00:00+00:00",5,1,1,null,null,null', "damaged", False),
])
def test_a_damaged_row_fails_the_listing_as_corruption(store_path: Path, row: bytes, words: str,
                                                       keys_too: bool) -> None:
    """A catalog row of the wrong number of fields, or of a field of the wrong type, is ``StoreCorrupted``, not a
    shifted column or a third-party exception; a listing of keys alone reads the key and the number of fields."""
    with SessionStore(store_path) as store:
        store.append("a", user("hi"))
        store.append("b", user("hi"))
        catalog = store._catalog

        def damage(txn: Any) -> None:
            key = next(key for key, value in txn.scan(catalog._activity) if value.startswith(b'"a"'))
            txn.put(catalog._activity, key, row)

        store._environment.write(damage)
        with pytest.raises(StoreCorrupted, match=words):
            store.list_sessions_with_metadata()
        if keys_too:
            with pytest.raises(StoreCorrupted, match=words):
                store.list_sessions()
        else:
            assert ["b", "a"] == store.list_sessions()


def test_a_converted_catalog_takes_the_pages_of_one_built_anew(store_path: Path) -> None:
    """Converting a catalog of version 4 writes its spaces anew in key order: as few pages as the commands that
    built them left, where rows shrunk in place would leave ``catalog.sessions`` holding its old pages."""
    with SessionStore(store_path, durable=False) as store:
        for number in range(3000):
            store.append(f"user{number:05}", user("hello"))

    def catalog_pages() -> dict[str, int]:
        environment = lmdb.open(str(store_path), max_dbs=64, readonly=True)
        try:
            with environment.begin() as txn:
                return {name: sum(stats[kind] for kind in ("branch_pages", "leaf_pages", "overflow_pages"))
                        for name in ("sessions", "activity", "keys", "running")
                        if (stats := txn.stat(environment.open_db(f"catalog.{name}".encode(), txn=txn)))}
        finally:
            environment.close()

    built = catalog_pages()
    _as_catalog_version(store_path, 4)
    assert catalog_pages()["sessions"] > 2 * built["sessions"]  # each row in it again
    SessionStore(store_path, durable=False).close()  # the writable open converts
    converted = catalog_pages()
    assert all(converted[name] <= pages for name, pages in built.items()), (built, converted)
