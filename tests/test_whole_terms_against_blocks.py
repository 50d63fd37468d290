"""Terms stored whole (``formats.wholes``) answer every query as terms stored in blocks do: the same command
histories run on two stores, one with every term in blocks (``WHOLE_UP_TO`` 0), one with a small threshold that its
terms cross both ways, and every query of both (sessions and messages, phrases, prefixes, limits) compared, through
stores a few events behind (read through an overlay), caught up, rebuilt, reopened read-only and vacuumed."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, EventStoreError, SessionQuery, SessionStore, StoreCorrupted
from eventstore.storage import MemoryStorage, WriteTransaction
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats.keys import block_key, head_value, id_key
from projections.search.formats.keys import df_of_value as whole_df
from projections.search.formats.maps import JOINED_BLOCKS, map_value
from projections.search.formats.summaries import SUMMARY_HEAD
from projections.search.formats.wholes import Whole, whole_value

from conftest import FakeClock
from test_search import ReferenceSearch

WORDS = ("amber", "amberly", "basil", "cedar", "delta", "ember")
KEYWORDS = ("amber", "basil cedar", "amber-basil", "am*", "cedar delta ember", "ember amber", "basil-ce*", "b*",
            "delta", "nothing", "amber basil cedar delta ember", "cedar cedar")
LIMITS = (1, 2, 3, 10)
SESSIONS = 10


#: The thresholds a history runs under (``formats`` and ``queries``), beside ``WHOLE_UP_TO``: blocks of 2 to 8
#: sessions, maps from 1 to 3 sessions a block (and, for some, none past 3), level-ordered copies from 2 sessions, and
#: queries sent down their other paths (intersections, materialized terms, spread sessions, message by message)
#: at a session or two, or never.
FORM_CHOICES: dict[tuple[Any, str], list[int]] = {
    (formats, "BLOCK_BITS"): [1, 2, 3],
    (formats, "MAP_FROM"): [1, 2, 3],
    (formats, "MAP_UP_TO"): [formats.MAP_UP_TO, 3],
    (formats, "GROUPED_FROM"): [formats.GROUPED_FROM, 2],
    (search_queries, "INTERSECT_UP_TO"): [search_queries.INTERSECT_UP_TO, 1, 0],
    (search_queries, "MATERIALIZE_UP_TO"): [search_queries.MATERIALIZE_UP_TO, 2, 0],
    (search_queries, "SPREAD_UP_TO"): [search_queries.SPREAD_UP_TO, 2, -1],
    (search_queries, "BY_MESSAGES_UP_TO"): [search_queries.BY_MESSAGES_UP_TO, 0],
}
forms = st.fixed_dictionaries({form: st.sampled_from(values) for form, values in FORM_CHOICES.items()})


@pytest.fixture(autouse=True)
def restored_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every threshold a test sets is restored after it (the monkeypatch keeps its value)."""
    for module, name in [*FORM_CHOICES, (formats, "WHOLE_UP_TO")]:
        monkeypatch.setattr(module, name, getattr(module, name))


def set_forms(chosen: dict[tuple[Any, str], int]) -> None:
    for (module, name), value in chosen.items():
        setattr(module, name, value)


class Twin:
    """A store whose search terms are stored whole up to ``threshold`` messages: the threshold is set around each
    call, as the writer and ``verify`` read it when called."""

    def __init__(self, store: SessionStore, threshold: int, clock: FakeClock) -> None:
        self.store, self.threshold, self.clock = store, threshold, clock

    def __call__(self, call: Callable[[SessionStore], Any]) -> Any:
        formats.WHOLE_UP_TO = self.threshold
        try:
            return call(self.store)
        except EventStoreError as exc:  # the same command fails alike in both forms
            return type(exc).__name__


def answers(twin: Twin) -> list[Any]:
    """Every query's results: the sessions' keys, and each hit's session, index, score and snippet."""
    def ask(store: SessionStore, keyword: str, limit: int) -> list[Any]:
        return [[m.key for m in store.search(SessionQuery(keyword, limit))],
                [(hit.session_key, hit.index, hit.score, hit.snippet) for hit in store.search_messages(keyword, limit)]]

    return [twin(partial(ask, keyword=keyword, limit=limit)) for keyword in KEYWORDS for limit in LIMITS]


def command(twin: Twin, name: str, number: int, words: list[str], version: int) -> Any:
    """One command of a history on ``twin`` (a second later than the one before, so that ties order alike)."""
    twin.clock.advance(seconds=1)
    key, other = f"s{number}", f"s{(number + 3) % SESSIONS}"
    text = " ".join(words)
    calls: dict[str, Callable[[SessionStore], Any]] = {
        "append": lambda store: store.append(key, ChatMessage.user(text)),
        "append_many": lambda store: store.append_many(key, [ChatMessage.user(text), ChatMessage.assistant(words[0])]),
        "remove": lambda store: store.remove_last(key),
        "update": lambda store: store.update_last(key, ChatMessage.user(text)),
        "replace": lambda store: store.replace_messages(key, [ChatMessage.user(word) for word in words]),
        "clear": lambda store: store.clear_messages(key),
        "delete": lambda store: store.delete_session(key),
        "restore": lambda store: store.restore(key, version=version),
        "redact": lambda store: store.redact(key, "a test"),
        "fork": lambda store: store.fork(key, other),
        "catch_up": lambda store: store.catch_up(),
        "rebuild": lambda store: store.rebuild_projections(["search"]),
    }
    return twin(calls[name])


_STEPS = ["append"] * 6 + ["append_many"] * 3 + ["remove"] * 2 + ["catch_up"] * 3 + [
    "update", "replace", "clear", "delete", "restore", "redact", "fork", "rebuild", "query"]
_steps = st.lists(st.tuples(st.sampled_from(_STEPS), st.integers(0, SESSIONS - 1),
                            st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), st.integers(1, 6)),
                  min_size=1, max_size=40)


@contextmanager
def twins(threshold: int) -> Iterator[tuple[Twin, Twin]]:
    """Two stores in memory on clocks that move alike: every term in blocks, and terms whole up to ``threshold``."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for whole_up_to, name in ((0, "blocks"), (threshold, "wholes")):
        clock = FakeClock(start)
        made.append(Twin(SessionStore.on_storage(MemoryStorage(Path(name)), clock=clock), whole_up_to, clock))
    try:
        yield made[0], made[1]
    finally:
        for twin in made:
            twin.store.close()


def seed(twin: Twin) -> None:
    """Ten sessions, each word in several, caught up: the terms' first forms are stored before the history runs."""
    for number in range(SESSIONS):
        command(twin, "append_many", number, [WORDS[number % 6], WORDS[(number * 5 + 1) % 6]], 1)
    twin(lambda store: store.catch_up())


@settings(max_examples=80, deadline=None)
@given(steps=_steps, threshold=st.sampled_from([1, 2, 3, 5, 8, 13]), chosen=forms)
def test_every_query_ranks_as_with_every_term_in_blocks(steps: list[tuple[str, int, list[str], int]],
                                                        threshold: int, chosen: dict[tuple[Any, str], int]) -> None:
    """Commands of every kind, catch-ups now and then (queries between them read a store a few events behind
    through an overlay) and rebuilds: after each query step, and at the end, both stores answer every query
    alike, and both verify."""
    set_forms(chosen)
    with twins(threshold) as (blocks, wholes):
        seed(blocks)
        seed(wholes)
        for name, number, words, version in steps:
            if name == "query":
                assert answers(wholes) == answers(blocks)
                continue
            assert command(wholes, name, number, words, version) == command(blocks, name, number, words, version)
        assert answers(wholes) == answers(blocks)
        for twin in (blocks, wholes):
            twin(lambda store: store.catch_up())
            assert twin(lambda store: store.verify().problems) == []
        assert answers(wholes) == answers(blocks)
        keyword = "amber basil cedar"
        assert wholes(lambda store: ReferenceSearch(store).search(keyword, 10)) == \
            wholes(lambda store: [m.key for m in store.search(SessionQuery(keyword, 10))])



class _Undone(Exception):
    """Thrown from a write body that has run, so that its transaction rolls back."""


def _write_twice(write: Callable[[Callable[[WriteTransaction], Any]], Any]) -> Callable[..., Any]:
    """``write`` that first runs each body in a transaction rolled back, then again for good: as a group commit runs
    a body again when a batchmate fails."""

    def twice(body: Callable[[WriteTransaction], Any]) -> Any:
        def undone(txn: WriteTransaction) -> None:
            body(txn)
            raise _Undone

        with pytest.raises(_Undone):
            write(undone)
        return write(body)

    return twice


def _stored(twin: Twin) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every stored value of the search index but its generation (a clear draws a new one), by space."""
    spaces = twin.store._search_index._spaces
    with twin.store._read() as txn:
        return {name: [(bytes(key), bytes(value)) for key, value in txn.scan(getattr(spaces, name))]
                for name in ("terms", "names", "summary", "blocks", "maps", "repeats", "levels", "docs", "sessions")}


@settings(max_examples=30, deadline=None)
@given(steps=_steps, threshold=st.sampled_from([2, 3, 5]))
def test_catch_ups_whose_writes_run_twice_store_what_one_write_stores(steps: list[tuple[str, int, list[str], int]],
                                                                      threshold: int) -> None:
    """Each write of the search index (a catch-up's batch, a query's catch-up in its transaction) run first in a
    transaction rolled back, then again: the index stores the same values as with each run once, terms crossing the
    threshold both ways."""
    formats.BLOCK_BITS, formats.MAP_FROM = 2, 2
    with twins(threshold) as (once, again):
        once.threshold = threshold  # both store terms whole up to it
        again.store._search._write = _write_twice(again.store._search._write)
        for twin in (once, again):
            seed(twin)
        for name, number, words, version in steps:
            if name == "query":
                assert answers(again) == answers(once)
            else:
                assert command(again, name, number, words, version) == command(once, name, number, words, version)
        for twin in (once, again):
            twin(lambda store: store.catch_up())
        assert _stored(again) == _stored(once)
        assert again(lambda store: store.verify().problems) == []

def _history(twin: Twin) -> None:
    """Sessions whose words cross a threshold of 3 messages both ways, over three blocks of 4 sessions."""
    for number in range(SESSIONS):
        command(twin, "append_many", number, [WORDS[number % 6], WORDS[(number * 5 + 1) % 6]], 1)
    twin(lambda store: store.catch_up())
    for number, name in enumerate(["append", "remove", "append", "clear", "append", "redact", "update", "delete"]):
        command(twin, name, (number * 7) % SESSIONS, [WORDS[number % 6], "amber", "cedar"], 1)
        if number % 3 == 2:
            twin(lambda store: store.catch_up())


def _forms(twin: Twin) -> tuple[int, int]:
    """How many terms are stored whole, and how many in blocks."""
    index = twin.store._search_index
    with twin.store._read() as txn:
        reader = index.reader(txn)
        whole = [not reader.blocks_apart(tid) for _, tid in reader.stored_terms()]
    return whole.count(True), whole.count(False)


def test_read_only_reopened_and_vacuumed_stores_rank_as_with_every_term_in_blocks(tmp_path: Path) -> None:
    """On LMDB: a store left a few events behind and opened read-only (an overlay over terms stored whole), then
    opened writable, caught up and vacuumed, answers every query as the store with every term in blocks."""
    formats.BLOCK_BITS, formats.MAP_FROM = 2, 2
    paths = {0: tmp_path / "blocks", 3: tmp_path / "wholes"}
    twins = []
    for threshold, path in paths.items():
        clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
        twins.append(Twin(SessionStore(path, clock=clock), threshold, clock))
    for twin in twins:
        _history(twin)
        twin.store.close()
    for twin in twins:  # a few events behind: read through an overlay
        twin.store = SessionStore(paths[twin.threshold], readonly=True)
    blocks, wholes = twins
    assert _forms(blocks)[0] == 0 and all(_forms(wholes))
    assert answers(wholes) == answers(blocks)
    for twin in twins:
        twin.store.close()
        twin.store = SessionStore(paths[twin.threshold])
        twin(lambda store: store.catch_up())
        twin(lambda store: store.vacuum())
        assert twin(lambda store: store.verify().problems) == []
    assert answers(wholes) == answers(blocks)
    for twin in twins:
        twin.store.close()


def _damaged_heads(head: bytes) -> Iterator[bytes]:
    """The head with each of its bytes changed by a bit in turn, cut short at every fifth byte, and with each block
    left out (its sessions and keys with it)."""
    for at in range(len(head)):
        yield head[:at] + bytes([head[at] ^ 1 << at % 8]) + head[at + 1:]
        if at % 5 == 0:
            yield head[:at]
    whole = Whole(head)
    for left_out in range(len(whole.block_numbers())):
        kept = [at for at in range(len(whole.block_numbers())) if at != left_out]
        numbers = [whole.block_numbers()[at] for at in kept]
        yield whole_value(whole_df(head), numbers, [whole.counts(at, at + 1)[0] for at in kept],
                          [whole.span(at, at + 1) for at in kept],
                          whole.keys_outside([whole.block_numbers()[left_out]]))


class Damaged:
    """A store on LMDB whose term ``amber`` is stored whole over three blocks with maps, to damage: ``head`` as
    written, ``put`` writes values (``None``: deletes)."""

    def __init__(self, path: Path) -> None:
        formats.BLOCK_BITS, formats.MAP_FROM, formats.WHOLE_UP_TO = 2, 2, 64
        self.store = SessionStore(path)
        for number in range(SESSIONS):
            self.store.append_many(f"s{number}", [ChatMessage.user(f"amber {WORDS[number % 6]}"),
                                                  ChatMessage.user("basil")])
        self.store.catch_up()
        self.spaces = self.store._search_index._spaces
        with self.store._read() as txn:
            reader = self.store._search_index.reader(txn)
            tid = reader.tid("amber")
            assert tid is not None and not reader.blocks_apart(tid)
            self.tid, self.head = tid, bytes(reader.head(tid) or b"")
        assert len(Whole(self.head).block_numbers()) == 3 and Whole(self.head).keys()

    def put(self, *values: tuple[Any, bytes, bytes | None]) -> None:
        def write(txn: WriteTransaction) -> None:
            for space, key, value in values:
                if value is None:
                    txn.delete(space, key)
                else:
                    txn.put(space, key, value)

        self.store._environment.write(write)

    def put_head(self, head: bytes) -> None:
        self.put((self.spaces.summary, id_key(self.tid), head))


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[Damaged]:
    made = Damaged(tmp_path / "store")
    with made.store:
        yield made


def test_verify_reports_every_damaged_head_of_a_term_stored_whole(damaged: Damaged) -> None:
    """A head stored whole with a bit of any byte flipped, cut short, or missing a block is reported by ``verify``
    (which never raises for it); so is the term written in blocks where its count calls for a head stored whole, and
    a block left in ``search.blocks`` beside its head."""
    store, spaces, tid, head = damaged.store, damaged.spaces, damaged.tid, damaged.head
    for value in _damaged_heads(head):
        damaged.put_head(value)
        assert not store.verify().ok, value.hex()
    damaged.put_head(head)
    assert store.verify().ok
    whole = Whole(head)
    apart = [(spaces.blocks, block_key(number, tid), whole.block(number)) for number in whole.block_numbers()]
    maps = [(spaces.maps, block_key(number, tid), map_value(found)) for number in whole.block_numbers()
            if (found := whole.block_map(number)) is not None]
    damaged.put((spaces.summary, id_key(tid), head_value(whole_df(head), whole.block_numbers())), *apart, *maps)
    assert [problem for problem in store.verify().problems if "against its count" in problem]
    damaged.put((spaces.summary, id_key(tid), head), *maps, *[(space, key, None) for space, key, _ in apart[1:]])
    assert not store.verify().ok


def test_a_head_naming_a_block_past_the_joined_keys_is_reported_not_crashed(damaged: Damaged) -> None:
    """A head stored whole whose last block number is damaged past ``JOINED_BLOCKS`` (its keys would not fit 32
    bits) is reported by ``verify``, and a query of its term raises ``StoreCorrupted``; neither crashes the process
    (pyroaring does, on a range past 32 bits)."""
    count = len(Whole(damaged.head).block_numbers())
    at = 20 + 2 * (count - 1)  # the last block's number (``wholes._HEAD``, then the numbers, u16 each)
    damaged.put_head(damaged.head[:at] + struct.pack("<H", JOINED_BLOCKS + 2) + damaged.head[at + 2:])
    assert not damaged.store.verify().ok
    with pytest.raises(StoreCorrupted):
        damaged.store.search(SessionQuery("amber basil", 3))


def test_a_session_offset_past_its_block_is_reported_in_either_form(damaged: Damaged) -> None:
    """A session's offset with a bit set past ``BLOCK_BITS`` reads as the same session (a block's first OR its
    offset), so its entries match the log: ``verify`` reports it from the offsets themselves, whole or in blocks."""
    spaces, tid, whole = damaged.spaces, damaged.tid, Whole(damaged.head)
    number = whole.block_numbers()[1]
    first = 20 + 4 * len(whole.block_numbers()) + 2 * whole.counts(0, 1)[0]  # block 1's first offset
    damaged.put_head(damaged.head[:first] + bytes([damaged.head[first] | 1 << formats.BLOCK_BITS])
                     + damaged.head[first + 1:])
    assert [problem for problem in damaged.store.verify().problems if "out of order" in problem]
    raw = whole.block(number)
    assert raw is not None
    at = SUMMARY_HEAD.size
    damaged.put((spaces.summary, id_key(tid), head_value(whole_df(damaged.head), whole.block_numbers())),
                *[(spaces.blocks, block_key(held, tid), whole.block(held)) for held in whole.block_numbers()],
                *[(spaces.maps, block_key(held, tid), map_value(found)) for held in whole.block_numbers()
                  if (found := whole.block_map(held)) is not None],
                (spaces.blocks, block_key(number, tid), raw[:at] + bytes([raw[at] | 1 << formats.BLOCK_BITS])
                 + raw[at + 1:]))
    assert [problem for problem in damaged.store.verify().problems if "out of order" in problem]
