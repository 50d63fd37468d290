"""Bad input and damaged stores.

* Garbage for every public argument of every ``SessionStore`` method (found by
  introspection, so new methods are covered) and of the constructor: wrong
  types, huge and negative ints, NaN and infinities, None, bytes, lone
  surrogates, NUL, naive datetimes, nested junk. Nothing but an
  ``EventStoreError`` may escape, and a call that raised wrote nothing (every
  named database is byte-for-byte as before).
* Damaged stores: random bytes flipped in the values of every named database
  (the log's, the snapshots', the read models'; through lmdb directly), and a
  list of known kinds of damage that random flips rarely produce. Every read
  either returns exactly what it returned before the damage, or raises
  ``StoreCorrupted`` / ``IncompatibleStore``, or ``verify()`` reports the
  damage: never wrong data that nothing flags, never another exception.
* A store written by a newer version (log format, event schema version, event
  type) is refused with ``IncompatibleStore`` and a message that says so.

Examples per test follow the Hypothesis profile of ``conftest.py``; for a long
run set ``EVENTSTORE_GARBAGE_EXAMPLES``; ``-rP`` prints how many inputs were tried::

    EVENTSTORE_GARBAGE_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_garbage.py -rP
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import lmdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eventstore import (
    ChatMessage,
    EventStoreError,
    IncompatibleStore,
    SessionQuery,
    SessionStore,
    StoreCorrupted,
)
from eventstore._codec import EncodedEvent
from eventstore._errors import shown
from eventstore._log import LOG_FORMAT
from eventstore._time import to_micros
from eventstore.events import MessageAppended, SessionRestored

from _damage import damaged_copy, flips
from _reliability import digest

EXAMPLES = os.environ.get("EVENTSTORE_GARBAGE_EXAMPLES")


def examples(**options: Any) -> settings:
    """The profile's settings (plus ``options``), unless a long run asks for more examples."""
    if EXAMPLES:
        options["max_examples"] = int(EXAMPLES)
    return settings(**options)

# -- garbage ------------------------------------------------------------------------------

HUGE_INTS = [2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**100, -(10**100), -1]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 1e18]
SPECIAL_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\U0010ffff", "x" * 5000, "é" * 600, "\n", "None"]


class Opaque:
    """An object of no type the store knows."""


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(), st.sampled_from(HUGE_INTS),
        st.floats(), st.sampled_from(SPECIAL_FLOATS),
        st.text(max_size=8), st.sampled_from(SPECIAL_TEXT),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
        st.binary(max_size=8), st.just(bytearray(b"abc")), st.just(memoryview(b"abc")),
        st.datetimes(), st.datetimes(timezones=st.just(UTC)),
        st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])),
        st.sampled_from([datetime.min, datetime.max, datetime.min.replace(tzinfo=UTC),
                         datetime.max.replace(tzinfo=UTC)]),
        st.dates(), st.timedeltas(), st.complex_numbers(), st.fractions(), st.decimals(),
        st.sampled_from([Opaque(), object(), Ellipsis, NotImplemented, int, print, lambda *a: None,
                         ChatMessage.user("a real message"), SessionQuery(), SessionQuery("x", 1),
                         Fraction(1, 3), date(2020, 1, 1), Path("/"), type]),
        st.builds(ChatMessage, st.sampled_from(["user", "assistant", "x"]), st.text(max_size=5)),
        st.builds(SessionQuery, st.none() | st.text(max_size=3), st.none() | st.integers(-3, 3)),
    )


def junk() -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.tuples(children, children),
            st.dictionaries(st.text(max_size=3), children, max_size=3),
            st.lists(children, max_size=3).map(iter),
            st.lists(children, max_size=3).map(lambda items: (item for item in items)),
            st.builds(lambda value: (lambda *args: value), children),  # a callable returning junk
        ),
        max_leaves=6,
    )


class CallbackRaised(Exception):
    """What a callable drawn as garbage raised when the store called it (a progress callback given ``int``): the
    caller's own error, which the store lets through (raising is how a caller stops a long rebuild)."""


def _traced(value: Any) -> Any:
    """``value``, or for a callable one that raises ``CallbackRaised`` for whatever ``value`` raises."""
    if not callable(value):
        return value

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return value(*args, **kwargs)
        except Exception as error:
            raise CallbackRaised(repr(value)) from error

    return call


#: Built once: building a recursive strategy costs more than drawing from it.
JUNK = junk()


# -- valid values, so that one garbage argument is tested at a time -----------------------

KEYS = ["a", "b", "c", "running", "gone"]
messages = st.builds(ChatMessage, st.sampled_from(["user", "assistant"]), st.text(max_size=6))
VALID: dict[str, st.SearchStrategy[Any]] = {
    "key": st.sampled_from(KEYS),
    "message": messages,
    "messages": st.lists(messages, max_size=3),
    "expected_version": st.none(),
    "idempotency_key": st.none() | st.text("abc", max_size=3),
    "name": st.text(max_size=6),
    "state": st.sampled_from(["idle", "running"]),
    "turn_id": st.none() | st.text("t12", max_size=2),
    "reason": st.text("why", min_size=1, max_size=3),
    "ttl_hours": st.floats(1e4, 1e5),
    "threshold_secs": st.floats(0, 1e4),
    "query": st.builds(SessionQuery, st.none() | st.text("ab ", max_size=3), st.none() | st.integers(0, 5)),
    "version": st.none() | st.integers(0, 2),
    "as_of": st.none(),
    "after": st.integers(0, 5),
    "limit": st.none() | st.integers(0, 5),
    "from_version": st.integers(0, 3),
    "to_version": st.none(),
    "progress": st.none() | st.just(lambda done, total: None),
    "sessions": st.just({}),
    "source": st.none() | st.text("src", min_size=1, max_size=3),
    "size": st.just(0),
    "sha256": st.just(""),
    "events": st.just([]),
    "total": st.just(0),
}
#: Methods not fuzzed: they take no argument that could be garbage, or end the store's life.
NOT_FUZZED = {"close", "vacuum"}


def _public_methods() -> list[str]:
    return sorted(name for name, value in inspect.getmembers(SessionStore, inspect.isfunction)
                  if not name.startswith("_") and name not in NOT_FUZZED
                  and len(inspect.signature(value).parameters) > 1)


def _parameters(name: str) -> list[inspect.Parameter]:
    return list(inspect.signature(getattr(SessionStore, name)).parameters.values())[1:]


def _valid(parameter: inspect.Parameter) -> st.SearchStrategy[Any]:
    if parameter.name in VALID:
        return VALID[parameter.name]
    if parameter.default is not inspect.Parameter.empty:
        return st.just(parameter.default)
    return JUNK  # a parameter this suite does not know yet: garbage only


def _call(store: SessionStore, name: str, arguments: dict[str, Any], parameters: list[inspect.Parameter]) -> Any:
    positional = [arguments[p.name] for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name in arguments]
    keywords = {p.name: arguments[p.name] for p in parameters if p.kind == p.KEYWORD_ONLY and p.name in arguments}
    result = getattr(store, name)(*positional, **keywords)
    if name == "subscribe":
        # A subscription checks its arguments when called, then waits for new events (for ever, by default):
        # what it yields is tested in test_subscribe.py.
        result.close()
        return None
    if isinstance(result, Iterator):
        result = list(result)
    return result


def _populate(store: SessionStore) -> None:
    store.append_many("a", [ChatMessage.user("hello world"), ChatMessage.assistant("hi")])
    store.set_session_name("a", "first")
    store.append("b", ChatMessage.user("second session"))
    store.set_session_state("running", "running", "t1")
    store.append("gone", ChatMessage.user("bye"))
    store.delete_session("gone", reason="test")


@pytest.fixture(scope="module")
def garbage_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionStore]:
    with SessionStore(tmp_path_factory.mktemp("garbage") / "store", durable=False, snapshot_every=3) as store:
        _populate(store)
        yield store
        report = store.verify()
        assert report.ok, report.problems


#: Garbage calls and damaged stores tried, by method; printed after the module (``-rP`` or ``-s`` shows it).
tried: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    print(f"\ngarbage inputs tried: {sum(tried.values())} ({dict(sorted(tried.items()))})")


@pytest.mark.parametrize("method", _public_methods())
@examples()
@given(data=st.data())
def test_garbage_arguments(garbage_store: SessionStore, method: str, data: st.DataObject) -> None:
    """Garbage in one or more arguments: only an EventStoreError escapes (or what a callable given as garbage
    raised when the store called it), and a refused call writes nothing."""
    parameters = _parameters(method)
    spoiled = data.draw(st.sets(st.sampled_from([p.name for p in parameters]), min_size=1), label="garbage in")
    arguments = {}
    for parameter in parameters:
        if parameter.name in spoiled:
            arguments[parameter.name] = _traced(data.draw(JUNK, label=parameter.name))
        elif parameter.default is inspect.Parameter.empty or data.draw(st.booleans(), label=f"pass {parameter.name}"):
            arguments[parameter.name] = data.draw(_valid(parameter), label=parameter.name)
    tried[method] = tried.get(method, 0) + 1
    before = digest(garbage_store)
    try:
        _call(garbage_store, method, arguments, parameters)
    except (EventStoreError, CallbackRaised):
        assert digest(garbage_store) == before, f"{method} raised, but wrote"
    # Anything else propagates and fails the test: an undocumented exception escaped.


def test_store_is_healthy_after_the_garbage(garbage_store: SessionStore) -> None:
    """Runs after the garbage calls: what was accepted did not poison the store. Every query still
    answers, and verify is green."""
    store = garbage_store
    assert store.import_receipts() is not None
    assert store.list_sessions_with_metadata() is not None and store.list_running_sessions() is not None
    events = list(store.events())
    assert [event.position for event in events] == list(range(1, len(events) + 1))
    for key in store.list_sessions():
        assert len(store.load(key)) == len(store.load_with_timestamps(key))
        history = store.history(key)
        assert store.session_at(key, version=len(history)).messages == store.load(key)
    report = store.verify()
    assert report.ok, report.problems[:10]


# -- the extremes of every numeric and time argument -------------------------------------------

EXTREME_NUMBERS: list[Any] = [0, -1, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**1024, -(2**1024), 10**400, 10**5000,
                              -(10**5000), math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, -0.0]
_OFFSETS = [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14)),
            timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59))]
_MOMENTS = (datetime.min, datetime.max, datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(1970, 1, 1))
EXTREME_TIMES: list[Any] = [moment.replace(tzinfo=offset) for offset in _OFFSETS for moment in _MOMENTS]
#: A plain valid value for each required argument, so that one argument at a time is at its extreme.
PLAIN: dict[str, Any] = {
    "key": "a", "message": ChatMessage.user("extreme"), "messages": [ChatMessage.user("extreme")], "name": "n",
    "state": "running", "reason": "why", "query": SessionQuery("hello"), "ttl_hours": 1e6, "threshold_secs": 0,
    "sessions": {}, "events": [], "keyword": "hello", "source_key": "a", "new_key": "forked", "count": 3,
}


def _extremes_of(annotation: str) -> list[Any]:
    if "datetime" in annotation and "Mapping" not in annotation:
        return EXTREME_TIMES
    return EXTREME_NUMBERS if re.search(r"\b(int|float)\b", annotation) else []


def _shown(value: Any) -> str:
    return shown(value) if isinstance(value, int) else repr(value)


EXTREME_CALLS = [pytest.param(method, parameter.name, value, id=f"{method}-{parameter.name}-{_shown(value)}")
                 for method in _public_methods() for parameter in _parameters(method)
                 for value in _extremes_of(str(parameter.annotation))]


def _expect_answer_or_refusal(store: SessionStore, call: Callable[[], Any]) -> None:
    """``call`` returns (a generator is drained) or raises an EventStoreError, having written nothing."""
    before = digest(store)
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except EventStoreError:
        assert digest(store) == before, "refused, but wrote"


def test_every_numeric_and_time_argument_is_found() -> None:
    """The sweep below finds the arguments by their annotations: check that it finds the ones we know of."""
    found = {(method, name) for method, name, _ in (param.values for param in EXTREME_CALLS)}
    assert {("events", "after"), ("list_stuck_sessions", "threshold_secs"), ("cleanup_stale", "ttl_hours"),
            ("session_at", "as_of"), ("restore", "as_of"), ("replay", "to_version"), ("search_messages", "limit"),
            ("append", "expected_version"), ("import_sessions", "size"), ("replicate", "total")} <= found


@pytest.mark.parametrize(("method", "name", "value"), EXTREME_CALLS)
def test_extreme_arguments(garbage_store: SessionStore, method: str, name: str, value: Any) -> None:
    """0, -1, 2**63-1, 2**64, 2**1024, 10**5000, infinities, NaN, 1e308 and datetime.min/max, naive and at the
    extreme offsets, for each numeric and time argument of each method: a result or an EventStoreError."""
    parameters = _parameters(method)
    arguments = {p.name: PLAIN[p.name] for p in parameters if p.default is inspect.Parameter.empty}
    arguments[name] = value
    _expect_answer_or_refusal(garbage_store, lambda: _call(garbage_store, method, arguments, parameters))


@pytest.mark.parametrize("value", EXTREME_NUMBERS, ids=_shown)
def test_extreme_search_limits(garbage_store: SessionStore, value: Any) -> None:
    for query in (SessionQuery("hello", value), SessionQuery(None, value)):
        _expect_answer_or_refusal(garbage_store, functools.partial(garbage_store.search, query))


@pytest.mark.parametrize("moment", EXTREME_TIMES, ids=repr)
def test_extreme_times_of_imported_and_replicated_events(garbage_store: SessionStore, moment: datetime) -> None:
    """Times inside the arguments: an imported event's, a replicated event's, a restored session's creation."""
    def imported() -> Any:
        return garbage_store.import_sessions({"imported": [(moment, MessageAppended(ChatMessage.user("old")))]})

    def replicated() -> Any:
        last = list(garbage_store.events())[-1]
        return garbage_store.replicate([attrs.evolve(last, position=last.position + 1, recorded_at=moment)])

    def restored() -> Any:
        event = SessionRestored(restored_version=0, exists=True, messages=(), name=None, state=None,
                                created_at=moment)
        return garbage_store.import_sessions({"restored": [(datetime(2026, 1, 1, tzinfo=UTC), event)]})

    for call in (imported, replicated, restored):
        _expect_answer_or_refusal(garbage_store, call)


@pytest.mark.parametrize("value", EXTREME_NUMBERS, ids=_shown)
def test_extreme_numbers_in_replicated_events(garbage_store: SessionStore, value: Any) -> None:
    last = list(garbage_store.events())[-1]
    for changed in (attrs.evolve(last, position=value), attrs.evolve(last, version=value)):
        _expect_answer_or_refusal(garbage_store, functools.partial(garbage_store.replicate, [changed]))


@pytest.mark.parametrize("moment", EXTREME_TIMES, ids=repr)
def test_a_clock_at_the_extremes(tmp_path: Path, moment: datetime) -> None:
    """A clock (a constructor argument) that returns an extreme time: a result or an EventStoreError."""
    with SessionStore(tmp_path / "store", durable=False, clock=lambda: moment) as store:
        for call in (lambda: store.append("a", ChatMessage.user("x")), lambda: store.list_stuck_sessions(1),
                     lambda: store.cleanup_stale(1), lambda: store.load("a")):
            _expect_answer_or_refusal(store, call)


@pytest.mark.parametrize("name", ["snapshot_every", "max_size", "cache_sessions", "search_cache_bytes"])
@pytest.mark.parametrize("value", EXTREME_NUMBERS, ids=_shown)
def test_extreme_constructor_numbers(tmp_path: Path, name: str, value: Any) -> None:
    try:
        store = SessionStore(tmp_path / "store", durable=False, **{name: value})
    except EventStoreError:
        return
    with store:
        _expect_answer_or_refusal(store, lambda: store.append("a", ChatMessage.user("x")))
        assert store.load("a") in ([], [ChatMessage.user("x")])


# -- the constructor ------------------------------------------------------------------------

CONSTRUCTOR_VALID: dict[str, st.SearchStrategy[Any]] = {
    "clock": st.none(),
    "durable": st.just(False),
    "snapshot_every": st.integers(1, 5),
    "max_size": st.none() | st.just(64 << 20),
    "cache_sessions": st.integers(0, 3),
    "search_cache_bytes": st.integers(0, 1 << 20),
    "readonly": st.just(False),
}


@pytest.fixture(scope="module")
def scratch_dir() -> Iterator[Path]:
    """A working directory for stores made from garbage paths (relative ones land here)."""
    base = Path(tempfile.mkdtemp(prefix="eventstore-garbage-"))
    here = os.getcwd()
    os.chdir(base)
    try:
        yield base
    finally:
        os.chdir(here)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("spoil", [p.name for p in _parameters("__init__")])
@examples(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_garbage_constructor_arguments(scratch_dir: Path, spoil: str, data: st.DataObject) -> None:
    """Garbage for one argument of SessionStore(...): only EventStoreError escapes, at once or from the
    first calls of a store that accepted it, and an existing store is left as it was."""
    existing = scratch_dir / "existing"
    if not existing.exists():
        with SessionStore(existing, durable=False) as store:
            _populate(store)
    with SessionStore(existing, durable=False) as store:
        before = digest(store)
    parameters = _parameters("__init__")
    spoiled = {spoil}
    arguments: dict[str, Any] = {}
    for parameter in parameters[1:]:
        if parameter.name in spoiled:
            arguments[parameter.name] = _traced(data.draw(JUNK, label=parameter.name))
        elif data.draw(st.booleans(), label=f"pass {parameter.name}"):
            arguments[parameter.name] = data.draw(CONSTRUCTOR_VALID.get(parameter.name, st.just(parameter.default)),
                                                  label=parameter.name)
    path: Any = data.draw(JUNK, label="path") if "path" in spoiled else existing
    if isinstance(path, (str, os.PathLike)) and path is not existing:
        # A garbage path that is a real path: keep it inside the scratch directory, away from the store.
        spelled = os.fspath(path)
        assume(not os.path.isabs(spelled) and ".." not in spelled)
        assume(os.path.normpath(spelled).split(os.sep)[0] not in ("existing", "."))
    tried[f"__init__ {spoil}"] = tried.get(f"__init__ {spoil}", 0) + 1
    try:
        store = SessionStore(path, **arguments)
    except EventStoreError:
        with SessionStore(existing, durable=False) as witness:
            assert digest(witness) == before, "a refused SessionStore(...) wrote to the store"
    else:
        try:
            for call in (lambda: store.append("a", ChatMessage.user("more")), lambda: store.load("a"),
                         lambda: store.load("a"), lambda: store.load("b"), lambda: store.list_sessions_with_metadata(),
                         lambda: store.set_session_state("b", "running"), lambda: store.list_stuck_sessions(1)):
                # A clock drawn as a callable that raises (``type``) stops the command with its own error.
                with contextlib.suppress(EventStoreError, CallbackRaised):
                    call()
        finally:
            store.close()


# -- damaged stores ---------------------------------------------------------------------------


def _reads(store: SessionStore) -> dict[str, Callable[[], Any]]:
    """Every query, as a name and a thunk, over the sessions of the damaged store."""
    reads: dict[str, Callable[[], Any]] = {
        "list_sessions": store.list_sessions,
        "list_sessions_with_metadata": store.list_sessions_with_metadata,
        "list_running_sessions": store.list_running_sessions,
        "events": lambda: list(store.events()),
        "search": lambda: store.search(SessionQuery("hello second")),
        "list_stuck_sessions": lambda: store.list_stuck_sessions(0),
    }
    for key in KEYS:
        reads[f"load {key}"] = partial(store.load, key)
        reads[f"load_with_timestamps {key}"] = partial(store.load_with_timestamps, key)
        reads[f"metadata {key}"] = partial(store.get_session_metadata, key)
        reads[f"name {key}"] = partial(store.get_session_name, key)
        reads[f"state {key}"] = partial(store.get_session_state, key)
        reads[f"exists {key}"] = partial(store.session_exists, key)
        reads[f"history {key}"] = partial(store.history, key)
        for version in range(1, 8):
            reads[f"session_at {key} {version}"] = partial(_session_at, store, key, version)
    return reads


def _session_at(store: SessionStore, key: str, version: int) -> Any:
    try:
        return store.session_at(key, version=version)
    except EventStoreError as exc:
        if type(exc).__name__ == "InvalidVersion":
            return "no such version"
        raise


def _damage_source() -> Path:
    """A store with every kind of record in it, snapshots included (snapshot_every=3)."""
    source = Path(tempfile.mkdtemp(prefix="eventstore-damage-")) / "store"
    with SessionStore(source, durable=False, snapshot_every=3) as store:
        _populate(store)
        store.append_many("c", [ChatMessage.user(f"message {n} " + "c" * n * 40) for n in range(8)])
        store.update_last("c", ChatMessage.assistant("replaced"))
        store.remove_last("c")
        store.set_session_state("c", "running", "t2")
        store.set_session_state("c", "idle")
        store.append("b", ChatMessage.assistant("second reply"))
    return source


@pytest.fixture(scope="module")
def pristine() -> Iterator[tuple[Path, dict[str, Any], dict[bytes, int]]]:
    source = _damage_source()
    with SessionStore(source, durable=False) as store:
        expected = {name: _outcome(read) for name, read in _reads(store).items()}
        assert store.verify().ok
    environment = lmdb.open(str(source), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        names = [bytes(name) for name, _ in txn.cursor()]  # every named database, new read models included
        sizes = {name: txn.stat(environment.open_db(name, txn=txn, create=False))["entries"] for name in names}
    environment.close()
    sizes = {name: size for name, size in sizes.items() if size}
    yield source, expected, sizes
    shutil.rmtree(source.parent, ignore_errors=True)


def _outcome(read: Callable[[], Any]) -> Any:
    try:
        return ("value", read())
    except (StoreCorrupted, IncompatibleStore) as exc:
        return ("refused", type(exc).__name__)


# One failure is enough here (shrinking several is slow): test_known_damage lists the kinds one by one.
@examples(suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False)
@given(damage=flips)
def test_flipped_bytes_are_reported_or_refused_never_silently_wrong(
        pristine: tuple[Path, dict[str, Any], dict[bytes, int]], damage: list[tuple[int, int, int, int]]) -> None:
    source, expected, sizes = pristine
    copy = source.parent / "damaged"
    changed = damaged_copy(source, copy, sizes, damage)
    tried["damage"] = tried.get("damage", 0) + 1
    _check_damaged(copy, expected, changed)


def _check_damaged(copy: Path, expected: dict[str, Any], changed: object) -> None:
    """The damaged store is refused at open, or every read returns what it did before or raises
    StoreCorrupted/IncompatibleStore, or verify reports a problem. Any other exception fails."""
    try:
        store = SessionStore(copy, durable=False)
    except (StoreCorrupted, IncompatibleStore):
        return  # refused at open: detected
    with store:
        outcomes = {name: _outcome(read) for name, read in _reads(store).items()}
        try:
            report = store.verify()
            flagged = not report.ok
        except (StoreCorrupted, IncompatibleStore):
            flagged = True
    wrong = {name: (expected[name], outcome) for name, outcome in outcomes.items()
             if outcome[0] == "value" and outcome != expected[name]}
    assert flagged or not wrong, f"damage {changed} went unnoticed; wrong answers: {_short(wrong)}"


def _stream_id(txn: Any, environment: Any, key: str) -> bytes:
    return bytes(txn.get(hashlib.sha256(key.encode()).digest(), db=environment.open_db(b"log.keys", txn=txn)))


def _put(txn: Any, environment: Any, name: bytes, key: bytes, value: bytes) -> None:
    txn.put(key, value, db=environment.open_db(name, txn=txn))


def _first_event_with(txn: Any, environment: Any, field: slice, value: bytes) -> None:
    database = environment.open_db(b"log.events", txn=txn)
    raw = bytearray(txn.get(struct.pack(">Q", 1), db=database))
    raw[field] = value
    txn.put(struct.pack(">Q", 1), bytes(raw), db=database)


#: Damage that random flips rarely produce, each a way to go wrong that must be caught.
KNOWN_DAMAGE: dict[str, Callable[[Any, Any], None]] = {
    "key index points at another session": lambda txn, env: _put(
        txn, env, b"log.keys", hashlib.sha256(b"a").digest(), _stream_id(txn, env, "b")),
    "key index loses a session": lambda txn, env: txn.delete(
        hashlib.sha256(b"b").digest(), db=env.open_db(b"log.keys", txn=txn)),
    "session key not UTF-8":
        lambda txn, env: _put(txn, env, b"log.stream_keys", _stream_id(txn, env, "a"), b"\xff\xfe"),
    "session key changed": lambda txn, env: _put(txn, env, b"log.stream_keys", _stream_id(txn, env, "a"), b"z"),
    # Record layout: format, flags, stream id, version, recorded µs (bytes 18..26), ...
    "recording time out of range":
        lambda txn, env: _first_event_with(txn, env, slice(18, 26), struct.pack(">q", 2**62)),
    "recording time negative": lambda txn, env: _first_event_with(txn, env, slice(18, 26), struct.pack(">q", -(2**62))),
    "stream id of a missing stream": lambda txn, env: _first_event_with(txn, env, slice(2, 10), struct.pack(">Q", 999)),
    "catalog row not JSON": lambda txn, env: _put(txn, env, b"catalog.sessions", _stream_id(txn, env, "a"), b"{["),
    "log format not a number": lambda txn, env: _put(txn, env, b"log.meta", b"format", b"one"),
    # Keys of the wrong length, each where a read of session "a" (or a scan) meets it.
    "event table key of nine bytes": lambda txn, env: _put(txn, env, b"log.events", struct.pack(">Q", 1) + b"\0",
                                                           b"x" * 100),
    "stream index key of seventeen bytes": lambda txn, env: _put(
        txn, env, b"log.streams", _stream_id(txn, env, "a") + struct.pack(">Q", 1) + b"\0", struct.pack(">Q", 1)),
    "stream index entry of four bytes": lambda txn, env: _put(
        txn, env, b"log.streams", _stream_id(txn, env, "a") + struct.pack(">Q", 1), b"\0\0\0\1"),
    "stream index run of no events": lambda txn, env: _put(
        txn, env, b"log.streams", _stream_id(txn, env, "a") + struct.pack(">Q", 1), struct.pack(">QI", 1, 0)),
    "message chunk key of thirteen bytes": lambda txn, env: _put(
        txn, env, b"messages.chunks", _stream_id(txn, env, "a") + b"\0" * 5, b"x"),
    "snapshot key of nine bytes": lambda txn, env: _put(txn, env, b"snapshots", _stream_id(txn, env, "c") + b"\1",
                                                        b"x"),
    "catalog key of four bytes": lambda txn, env: _put(txn, env, b"catalog.sessions", b"\0\0\0\1", b"{}"),
    "running index key of nine bytes": lambda txn, env: _put(txn, env, b"catalog.running", b"\0" * 9, b""),
    "activity index key of nine bytes": lambda txn, env: _put(txn, env, b"catalog.activity", b"\0" * 9, b"{}"),
}


@pytest.mark.parametrize("damage", sorted(KNOWN_DAMAGE))
def test_known_damage_is_reported_or_refused(pristine: tuple[Path, dict[str, Any], dict[bytes, int]],
                                             damage: str) -> None:
    source, expected, _ = pristine
    copy = source.parent / f"known-{damage.replace(' ', '-')}"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    shutil.copy2(source / "data.mdb", copy / "data.mdb")
    environment = lmdb.open(str(copy), max_dbs=64)
    with environment.begin(write=True) as txn:
        KNOWN_DAMAGE[damage](txn, environment)
    environment.close()
    _check_damaged(copy, expected, damage)


def _short(wrong: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {str(before)[:150]} -> {str(after)[:150]}" for name, (before, after) in
                     list(wrong.items())[:4])


# -- stores from a newer version ------------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with SessionStore(path) as store:
        _populate(store)
    return path


def _set_meta(path: Path, value: bytes) -> None:
    environment = lmdb.open(str(path), max_dbs=64)
    with environment.begin(write=True) as txn:
        txn.put(b"format", value, db=environment.open_db(b"log.meta", txn=txn))
    environment.close()


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("value", [str(LOG_FORMAT + 1).encode(), b"99", b"18446744073709551616"])
def test_newer_log_format_is_refused_clearly(written: Path, value: bytes, readonly: bool) -> None:
    _set_meta(written, value)
    data = (written / "data.mdb").read_bytes()
    with pytest.raises(IncompatibleStore) as raised:
        SessionStore(written, readonly=readonly)
    message = str(raised.value)
    assert value.decode() in message and "newer" in message and "upgrade" in message
    assert (written / "data.mdb").read_bytes() == data, "a refused open wrote to the store"
    with pytest.raises(IncompatibleStore):  # and again: the refusal left nothing half-open
        SessionStore(written, readonly=readonly)


@pytest.mark.parametrize("value", [b"", b"x", b"-1", b"1.5", b"\xff", b"0x2", b"1" * 5000])
def test_garbled_log_format_is_refused_clearly(written: Path, value: bytes) -> None:
    _set_meta(written, value)
    with pytest.raises((IncompatibleStore, StoreCorrupted)):
        SessionStore(written)


def _append_raw(path: Path, encoded: EncodedEvent, projections_too: bool) -> None:
    """Append an event as a newer version of the package would have written it (through the log,
    which knows no event class); with ``projections_too``, move the read models' checkpoints past it
    as that newer version would have."""
    with SessionStore(path) as store:
        def body(txn: Any) -> None:
            store._log.append(txn, "a", [encoded], to_micros(datetime.now(UTC)))
            if projections_too:
                head = store._log.head(txn)[0]
                for model in store._read_models:
                    store._checkpoints.put(txn, model.name, model.code_version, head)

        store._environment.write(body)


NEWER_EVENTS = {
    "newer schema version": (EncodedEvent("MessageAppended", 99, b'{"message":["user","from the future"]}'),
                             ["schema version 99", "newer"]),
    "unknown event type": (EncodedEvent("SessionArchived", 1, b'{"into":"z"}'), ["SessionArchived"]),
}


@pytest.mark.parametrize("event", sorted(NEWER_EVENTS))
def test_event_from_a_newer_version_refused_at_open(written: Path, event: str) -> None:
    """The read models must be brought up to date on open, which needs the newer event: refused."""
    encoded, words = NEWER_EVENTS[event]
    _append_raw(written, encoded, projections_too=False)
    data = (written / "data.mdb").read_bytes()
    with pytest.raises(IncompatibleStore) as raised:
        SessionStore(written)
    assert all(word in str(raised.value) for word in words), str(raised.value)
    assert (written / "data.mdb").read_bytes() == data


@pytest.mark.parametrize("event", sorted(NEWER_EVENTS))
def test_event_from_a_newer_version_refused_when_read(written: Path, event: str) -> None:
    """The newer version kept the read models up to date: the store opens, but every read of the
    newer event, and verify, says IncompatibleStore clearly; other sessions read as before."""
    encoded, words = NEWER_EVENTS[event]
    _append_raw(written, encoded, projections_too=True)
    with SessionStore(written) as store:
        for read in (lambda: store.history("a"), lambda: list(store.events()),
                     lambda: store.session_at("a", version=4), lambda: store.rebuild_projections()):
            with pytest.raises(IncompatibleStore) as raised:
                read()
            assert all(word in str(raised.value) for word in words), str(raised.value)
        assert store.load("b") == [ChatMessage.user("second session")]
        assert len(store.history("b")) == 1
        report = store.verify()
        assert not report.ok
        assert any(all(word in problem for word in words) for problem in report.problems), report.problems


@pytest.mark.parametrize("callback", [int, type, lambda done, total: 1 / 0], ids=["int", "type", "raising"])
@pytest.mark.parametrize("method", ["verify", "rebuild_projections"])
def test_a_progress_callback_that_raises_stops_the_call_with_its_own_error(
        garbage_store: SessionStore, method: str, callback: Callable[..., Any]) -> None:
    """Found drawing garbage: ``verify(progress=type)``. The callback's error comes through unchanged (how a caller
    stops a long rebuild), and the call writes nothing."""
    before = digest(garbage_store)
    with pytest.raises((TypeError, ValueError, ZeroDivisionError)):
        getattr(garbage_store, method)(progress=callback)
    assert digest(garbage_store) == before


@pytest.mark.parametrize("clock", [type, lambda: 1 / 0], ids=["type", "raising"])
def test_a_clock_that_raises_stops_the_command_with_its_own_error(tmp_path: Path, clock: Callable[[], Any]) -> None:
    """An injected clock's own error passes unchanged (as a progress callback's does) and nothing is written."""
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("a", ChatMessage.user("kept"))
    with SessionStore(tmp_path / "store", durable=False, clock=clock) as store:
        with pytest.raises((TypeError, ZeroDivisionError)):
            store.append("a", ChatMessage.user("never"))
        assert [message.content for message in store.load("a")] == ["kept"]
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("a", ChatMessage.user("next"))
        assert [message.content for message in store.load("a")] == ["kept", "next"]
