"""The shared log on PostgreSQL: with the modules beside it, the only ones that import a PostgreSQL driver (psycopg 3).

Tables (in the connection's ``search_path``): ``es_meta`` (the format marker), ``es_head`` (one row: the
last position and its hash), ``es_sessions`` (each session's version and latest recorded time),
``es_events`` (the log) and ``es_records`` (idempotency results and import receipts, first writer wins).

Every commit is one call, one round trip: of the ``es_append_alone`` procedure for a command alone, of
``es_append_many`` for the commands a host's threads gave at once (``commit_many``: each accepted or refused
alone). ``es_commit`` locks the head row (which serialises every write of the sessions' rows), checks each
session's version, and only then advances the head: positions are assigned while the head row is locked, so they
are gap-free, a rejected commit takes none, and commits become visible in position order (a reader tailing the log
never skips one that commits late, as readers of sequences do). It computes each chain link from the previous one,
exactly as ``eventstore._log.chain_hash`` does. A group's procedure commits that and a ``NOTIFY`` without waiting
for the flush, then flushes in a transaction of its own; a command alone (``es_append_alone``) leaves the flush to
a second transaction the client sends right behind it: no lock is held through a flush. The schema's SQL, format by
format, and its upgrades are in ``postgres_schema``; the listening connection, which tells a store of the commits
(``wait``, ``heard``), in ``postgres_listener``; opening a connection and reading an idle one's socket, which both
do, in ``postgres_connection``.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.abc import Buffer
from psycopg.adapt import Dumper

from .._errors import (
    EventStoreError,
    IncompatibleStore,
    StoreBusy,
    StoreClosed,
    StoreCorrupted,
    StoreInaccessible,
    StoreNotFound,
    StoreUnavailable,
    StoreUsedAfterFork,
    WrongExpectedVersion,
)
from .._log import GENESIS_HASH
from . import Commit, Committed, HeadMoved, RecordTaken, SharedEvent, SharedHead, SharedRecord
from .postgres_connection import connect, read_waiting, ready, reason, unavailable
from .postgres_listener import NO_HEAD, Listener
from .postgres_schema import CREATE, SCHEMA_FORMAT, UPGRADES

__all__ = ["PostgresLog", "SCHEMA_FORMAT", "TURN_WAIT"]

T = TypeVar("T")

#: How long a writer waits for a session's turn, in seconds, before it gives up with ``StoreBusy``: far longer than a
#: turn is held (a catch-up and one commit), so only a holder that stopped runs it out (a host paused, or cut off
#: with its connection still open), which would otherwise hold up every writer of that session until its connection
#: died.
TURN_WAIT = 30.0

# Binary parameters: payloads and digests go as they are, not spelled out in hex (about a tenth of a commit's
# client CPU time, docs/postgres.md); every statement is prepared (``prepare_threshold=0``).
_COMMIT = "CALL es_append_many(" + ", ".join(["%b"] * 20) + ")"
#: A command alone: the call (prepared on each connection by name, sent through libpq's pipeline), then the flush.
_CALL_ONE = b"es_call_one"
_CALL_ONE_SQL = b"CALL es_append_alone(" + b", ".join(b"$%d" % n for n in range(1, 18)) + b")"
_FLUSH, _FLUSH_SQL = b"es_flush", b"SELECT pg_logical_emit_message(true, 'eventstore', '')"
_TAKEN = "SELECT value FROM es_records WHERE space = %s AND key = %s"
_RECORDS = ("SELECT space, key, value FROM es_records WHERE (space, key) IN "
            "(SELECT * FROM unnest(%s::text[], %s::bytea[]))")
#: The codes of ``es_commit``'s refusals (``_answer``): a refused command alone raises one of them.
_REFUSALS = frozenset({"EV409", "EV410", "EV412", "EV400"})
_READ = """
SELECT h.position, h.hash, e.position, e.key, e.version, e.recorded_at, e.event_id, e.type, e.schema_version,
       e.payload, e.digest, e.hash, e.redacted
FROM es_head h LEFT JOIN LATERAL (SELECT * FROM es_events WHERE position > %s ORDER BY position LIMIT %s) e ON true
"""


#: What a caller learns of a command whose call failed: the server may have committed it before the failure.
_IN_DOUBT = "the command may or may not have been recorded: retry it with the same idempotency_key"
#: Whether the role may call what ``es_append_many`` calls after its first transaction committed.
_MAY_FLUSH = "SELECT has_function_privilege('pg_logical_emit_message(boolean, text, text)', 'EXECUTE')"


def _answer(commit: Commit, first: int | None, head: int | None, head_hash: bytes | None, refusal: str | None,
            hint: int | None, detail: str | None, taken: bytes | None) -> Committed | EventStoreError:
    """Where ``es_append_many`` (or ``es_append_alone``) put one command, or what its refusal means for the store."""
    if refusal is None:
        assert first is not None and head is not None and head_hash is not None
        return Committed(first, head, bytes(head_hash))
    item = 1 if hint is None else hint  # of EV409 and EV410: the append or record refused, counted from 1
    if refusal in ("EV409", "EV410"):
        named: Sequence[object] = commit.appends if refusal == "EV409" else commit.records
        if not 1 <= item <= len(named):  # the server's answer, checked like stored bytes
            return StoreCorrupted(f"the server's answer is damaged: it refused item {hint} of the command's "
                                  f"{len(named)} ({refusal})")
    if refusal == "EV409":
        append = commit.appends[item - 1]
        if detail and not (detail.isascii() and detail.isdigit()):
            return StoreCorrupted(f"the server's answer is damaged: it gives {detail!r:.30} as session "
                                  f"{append.key!r:.60}'s version ({refusal})")
        return WrongExpectedVersion(append.key, append.expected_version, int(detail or 0))
    if refusal == "EV410":
        return RecordTaken(commit.records[item - 1], bytes(taken or b""))
    if refusal == "EV412":
        return HeadMoved(f"the log's head is no longer at position {commit.first_position} - 1")
    return StoreCorrupted("an event's payload does not match its digest; nothing was written")


class _Array(bytes):
    """A parameter array in PostgreSQL's binary form, sent untyped: the procedure's signature types it."""


class _ArrayDumper(Dumper):
    """Sends an ``_Array`` as it is. psycopg would find each list's element type by looking at its items, for every
    call (about half of a commit's client CPU time, docs/postgres.md), and would pick the narrowest integer type."""

    format = pq.Format.BINARY
    oid = 0  # unknown: the server takes the parameter's type from the procedure

    def dump(self, obj: Any) -> Buffer:
        array: Buffer = obj
        return array


_ARRAY = struct.Struct(">iiiii")  # one dimension, no nulls, the element type, the length, lower bound 1
_EMPTY = struct.Struct(">iii")  # no dimensions, no nulls, the element type
_LENGTH, _INT4, _INT8 = struct.Struct(">i"), struct.Struct(">ii"), struct.Struct(">iq")  # an item: its length, then it
_TRUE, _FALSE = _LENGTH.pack(1) + b"\x01", _LENGTH.pack(1) + b"\x00"
_BOOL, _BYTEA, _INT4_OID, _INT8_OID, _TEXT = 16, 17, 23, 20, 25  # the element types' oids


#: Each element type's empty array: a command alone has no rewrites, records nor turns, most of the time.
_EMPTY_ARRAYS = {oid: _Array(_EMPTY.pack(0, 0, oid)) for oid in (_BOOL, _BYTEA, _INT4_OID, _INT8_OID, _TEXT)}


def _array(element_type: int, items: list[bytes]) -> _Array:
    """Items already in their binary form, each preceded by its length, as an array of ``element_type``."""
    if not items:
        return _EMPTY_ARRAYS[element_type]
    return _Array(_ARRAY.pack(1, 0, element_type, len(items), 1) + b"".join(items))


def _bytes(items: list[bytes], element_type: int = _BYTEA) -> _Array:
    return _array(element_type, [_LENGTH.pack(len(item)) + item for item in items])


def _texts(items: list[str]) -> _Array:
    return _bytes([item.encode() for item in items], _TEXT)


def _int4s(items: list[int]) -> _Array:
    return _array(_INT4_OID, [_INT4.pack(4, item) for item in items])


def _int8s(items: list[int]) -> _Array:
    return _array(_INT8_OID, [_INT8.pack(8, item) for item in items])


def _bools(items: list[bool]) -> _Array:
    return _array(_BOOL, [_TRUE if item else _FALSE for item in items])


def _columns(commits: Sequence[Commit]) -> tuple[_Array, ...]:
    """The commands' sessions, events, rewrites and records as the parameter arrays of ``es_commit``, in order."""
    appends = [append for commit in commits for append in commit.appends]
    events = [event for append in appends for event in append.events]
    rewrites = [rewrite for commit in commits for rewrite in commit.rewrites]
    records = [record for commit in commits for record in commit.records]
    return (_texts([a.key for a in appends]), _int8s([a.expected_version for a in appends]),
            _int8s([a.recorded_at for a in appends]), _int4s([len(a.events) for a in appends]),
            _bytes([e.event_id for e in events]), _texts([e.type_name for e in events]),
            _int4s([e.schema_version for e in events]), _bytes([e.payload for e in events]),
            _bytes([e.payload_digest for e in events]), _bools([e.redacted for e in events]),
            _int8s([w.position for w in rewrites]), _bytes([w.payload for w in rewrites]),
            _texts([r.space for r in records]), _bytes([r.key for r in records]), _bytes([r.value for r in records]))


def _connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    """A connection to ``url`` that sends the calls' arrays as they are (``_Array``)."""
    connection = connect(url, **options)
    connection.adapters.register_dumper(_Array, _ArrayDumper)
    return connection


def _take_turns(connection: psycopg.Connection[Any], keys: list[str]) -> None:
    """Take the turn (an exclusive advisory lock, held by the connection) of each session, in key order, waiting at
    most ``TURN_WAIT`` seconds for each.

    Raises:
        StoreBusy: another connection held a turn that long (a closed connection gives back the turns it took).
    """
    with connection.transaction():  # ``lock_timeout`` bounds the waits of this transaction; the locks outlast it
        connection.execute("SELECT set_config('lock_timeout', %s, true)", (f"{round(TURN_WAIT * 1000)}ms",))
        for key in keys:
            try:
                connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            except psycopg.errors.LockNotAvailable:
                raise StoreBusy(f"another writer has held the turn of session {key!r:.80} for more than "
                                f"{TURN_WAIT:g} s (a host stopped while it wrote there?); the command recorded "
                                "nothing: retry it") from None


_INT8_VALUE = struct.Struct(">q")
#: The connections on which the lone command's statements are prepared (``_prepare_lone``).
_PREPARED: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def _prepare_lone(connection: psycopg.Connection[Any]) -> None:
    """Prepare the lone command's call and flush on ``connection``, once: libpq's pipeline sends them by name,
    without psycopg's cursor (about a tenth of a command's client CPU time)."""
    if connection in _PREPARED:
        return
    for name, statement in ((_CALL_ONE, _CALL_ONE_SQL), (_FLUSH, _FLUSH_SQL)):
        prepared = connection.pgconn.prepare(name, statement)
        if prepared.status != pq.ExecStatus.COMMAND_OK:
            raise _failure(connection, prepared)
    _PREPARED.add(connection)


def _failure(connection: psycopg.Connection[Any], result: pq.abc.PGresult) -> psycopg.Error:
    """The error of a failed result read through libpq, of the class psycopg gives its code: ``OperationalError`` for
    a connection the server closed (a terminated backend, a restart; a connection lost gives no code at all), so
    that the caller learns that the server is away, not that it refused the statement."""
    message = (result.error_message or b"").decode(errors="replace")
    code = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    if not code or connection.pgconn.status == pq.ConnStatus.BAD:
        return psycopg.OperationalError(message)
    try:
        return psycopg.errors.lookup(code)(message)
    except KeyError:
        return psycopg.DatabaseError(message)


def _call_alone(connection: psycopg.Connection[Any], parameters: Sequence[bytes | None]) -> pq.abc.PGresult:
    """Send ``es_append_alone`` with ``parameters`` (binary) and the flush after it, each in a transaction of its own
    (a pipeline); the call's result, as soon as its transaction committed. The flush's results are left to read
    (``_Flush``)."""
    pgconn = connection.pgconn
    _prepare_lone(connection)
    pgconn.enter_pipeline_mode()
    pgconn.send_query_prepared(_CALL_ONE, parameters, [1] * len(parameters), 1)
    pgconn.pipeline_sync()
    pgconn.send_query_prepared(_FLUSH, None, None, 1)
    pgconn.pipeline_sync()
    _send(pgconn)
    result = _result(pgconn)
    assert result is not None and _result(pgconn) is None  # each statement's results end with a None
    return result


def _send(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq buffered, waiting for the socket (the GIL released) while it is full."""
    while pgconn.flush():
        ready(pgconn.socket, select.POLLOUT, None)


def _result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result, waiting for it on the socket (the GIL released, so other threads run meanwhile)."""
    while pgconn.is_busy():
        ready(pgconn.socket, select.POLLIN, None)
        pgconn.consume_input()
    return pgconn.get_result()


class _Flush:
    """A lone command's flush under way on its connection (in a pipeline): ``wait`` reads its results, once, then
    ends the pipeline and gives the connection back (``give_back``; ``None``: the caller keeps it)."""

    def __init__(self, connection: psycopg.Connection[Any],
                 give_back: Callable[[psycopg.Connection[Any]], None] | None) -> None:
        self._connection = connection
        self._give_back = give_back
        self._lock = threading.Lock()
        self._failure: EventStoreError | None = None
        self._done = False

    def wait(self) -> None:
        with self._lock:
            if not self._done:
                self._done = True
                self._failure = self._read()
            if self._failure is not None:
                raise self._failure

    def _read(self) -> EventStoreError | None:
        pgconn = self._connection.pgconn
        failed: psycopg.Error | None = None
        try:
            syncs = 2  # the call's, then the flush's
            while syncs:
                result = _result(pgconn)
                if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
                    failed = _failure(self._connection, result)
                syncs -= result is not None and result.status == pq.ExecStatus.PIPELINE_SYNC
            pgconn.exit_pipeline_mode()
        except psycopg.Error as exc:
            failed = exc
        if pgconn.pipeline_status != pq.PipelineStatus.OFF:  # broken mid-pipeline
            self._connection.close()
        elif self._give_back is not None:
            self._give_back(self._connection)
        if failed is None:
            return None
        if isinstance(failed, psycopg.OperationalError):
            return StoreUnavailable(f"PostgreSQL cannot be reached ({reason(failed)}); {_IN_DOUBT}")
        return EventStoreError(f"PostgreSQL failed while flushing ({reason(failed)}); {_IN_DOUBT}")


def _wait_all(flushes: list[_Flush]) -> None:
    """Wait for every flush; the first failure is raised, after the others were read."""
    failures: list[EventStoreError] = []
    for flush in flushes:
        try:
            flush.wait()
        except EventStoreError as failure:
            failures.append(failure)
    if failures:
        raise failures[0]


class PostgresLog:
    """The shared log in one PostgreSQL database (schema: the connection's ``search_path``).

    Connections are pooled (one per concurrent caller); one the server closed while it was idle (a restart) is
    dropped before a call would use it, and one that breaks during a call is dropped, the call failing with it.
    ``create``: a writable store's open, which makes the tables in an empty schema and
    upgrades an older format (else an empty schema raises ``StoreNotFound``, and an older format, whose tables
    are the same, is read as it is: a read-only host changes nothing on the server).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._turns = threading.local()  # .connection, .keys: the connection and sessions of this thread's turn
        self._deferred = threading.local()  # .flushes: this thread's flushes under way, within ``unflushed``
        self._closed = False
        # A forked child shares every socket of the parent's connections: it must neither read from them (it would
        # take the parent's notifications) nor send on them, nor wait for a lock a parent's thread held at the fork.
        self._pid = os.getpid()
        self._listener = Listener(lambda: _connect(url), self._refuse_if_forked)
        # The protocol's calls on the listening connection are the listener's, bound as they are: every read calls
        # ``heard``, whose cost is kept to one poll, and a method handing it on would add a call to it.
        self.wait = self._listener.wait
        self.heard = self._listener.heard
        self._call(lambda connection: self._prepare(connection, create), "opening the store")

    # -- connections ------------------------------------------------------------------

    def _refuse_if_forked(self) -> None:
        if os.getpid() != self._pid:
            raise StoreUsedAfterFork(
                "this store was opened before fork(); open a new SessionStore in the child process")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        self._refuse_if_forked()
        held: psycopg.Connection[Any] | None = getattr(self._turns, "connection", None)
        if held is not None:  # this thread holds a turn: its commits go through the turn's connection
            yield held
            return
        connection = self._idle_connection()
        if connection is None:
            connection = _connect(self.url, prepare_threshold=0)
        try:
            yield connection
        except BaseException:
            connection.close()  # its state is unknown: a broken connection, or a call cut short
            raise
        if connection.closed:  # a lone command's flush found it broken
            return
        if connection.pgconn.pipeline_status == pq.PipelineStatus.OFF:  # else its ``_Flush`` gives it back
            self._give_back(connection)

    def _idle_connection(self) -> psycopg.Connection[Any] | None:
        """A pooled connection the server has not closed (``None``: none left). One it closed (a restart, a
        terminated backend) is dropped here, before anything is sent on it, so that the call goes on a fresh
        connection rather than failing: nothing of the call went on the closed one, so even a command, which must
        never be sent twice (it may have committed), is sent once."""
        while True:
            with self._lock:
                if self._closed:
                    raise StoreClosed("the store is closed")
                if not self._idle:
                    return None
                connection = self._idle.pop()
            try:
                read_waiting(connection)
                return connection
            except psycopg.Error:
                connection.close()

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def _call(self, body: Callable[[psycopg.Connection[Any]], T], doing: str) -> T:
        try:
            with self._connection() as connection:
                return body(connection)
        except psycopg.Error as exc:
            raise unavailable(exc, doing) from None

    def _prepare(self, connection: psycopg.Connection[Any], create: bool) -> None:
        """Create the tables in an empty schema and upgrade an older format (``create``), refuse a newer one, and a
        role that could write but not commit (``es_append_many`` would fail each call after it committed:
        ``_IN_DOUBT``)."""
        if create and connection.execute(_MAY_FLUSH).fetchone() != (True,):
            raise StoreInaccessible("the PostgreSQL role may not call pg_logical_emit_message, which every commit "
                                    "calls (docs/postgres.md, schema and upgrades): grant it EXECUTE on it")
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            if connection.execute("SELECT to_regclass('es_meta')").fetchone() == (None,):
                if not create:
                    raise StoreNotFound("the database schema holds no eventstore log (es_meta is missing)")
                connection.execute(CREATE, prepare=False)
                connection.execute("INSERT INTO es_head (position, hash) VALUES (0, %s)", (GENESIS_HASH,))
            row = connection.execute("SELECT format FROM es_meta").fetchone()
            stored = row[0] if row else None
            if not isinstance(stored, int):
                raise StoreCorrupted(f"the log's format marker is damaged ({stored!r:.20})")
            if stored > SCHEMA_FORMAT:
                raise IncompatibleStore(f"the PostgreSQL log has format {stored}, newer than this code's "
                                        f"{SCHEMA_FORMAT}; upgrade the eventstore package")
            while create and stored < SCHEMA_FORMAT:  # a read-only store reads an older format as it is
                connection.execute(UPGRADES[stored], prepare=False)
                stored += 1
                connection.execute("UPDATE es_meta SET format = %s", (stored,))

    # -- the protocol -----------------------------------------------------------------

    @contextmanager
    def turn(self, keys: Sequence[str]) -> Iterator[None]:
        held = sorted(set(keys))
        try:
            with self._connection() as connection:
                _take_turns(connection, held)
                self._turns.connection, self._turns.keys = connection, held
                try:
                    yield
                finally:
                    self._turns.connection, self._turns.keys = None, []
                    with suppress(psycopg.Error):  # a broken connection loses its locks as it closes
                        connection.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error as exc:
            raise unavailable(exc, "taking a session's turn") from None

    def commit(self, commit: Commit) -> Committed:
        answer = self.commit_many((commit,))[0]
        if isinstance(answer, EventStoreError):
            raise answer
        return answer

    def commit_many(self, commits: Sequence[Commit]) -> list[Committed | EventStoreError]:
        turns: list[str] = getattr(self._turns, "keys", [])
        if len(commits) == 1:  # a command alone: no subtransaction, its refusal aborts the call
            return [self._committing(lambda connection: self._alone(connection, commits[0], turns))]
        arguments = (
            _int4s([len(c.appends) for c in commits]), _int4s([len(c.rewrites) for c in commits]),
            _int4s([len(c.records) for c in commits]), _int8s([c.first_position or 0 for c in commits]),
            *_columns(commits), _texts(turns))
        row = self._committing(lambda connection: connection.execute(_COMMIT, arguments).fetchone())
        assert row is not None
        return [_answer(commit, *answer) for commit, *answer in zip(commits, *row, strict=True)]

    @contextmanager
    def unflushed(self) -> Iterator[Callable[[], None]]:
        flushes: list[_Flush] = []
        self._deferred.flushes = flushes
        try:
            yield lambda: _wait_all(flushes)
        finally:
            self._deferred.flushes = None

    def _alone(self, connection: psycopg.Connection[Any], commit: Commit, turns: list[str]
               ) -> Committed | EventStoreError:
        """A command alone, its flush under way: waited for here, or by the caller within ``unflushed``."""
        answer = self._commit_one(connection, commit, turns)
        if connection.pgconn.pipeline_status != pq.PipelineStatus.OFF:  # accepted: the flush is under way
            flush = _Flush(connection, None if connection is getattr(self._turns, "connection", None)
                           else self._give_back)
            deferred: list[_Flush] | None = getattr(self._deferred, "flushes", None)
            if deferred is None:
                flush.wait()
            else:
                deferred.append(flush)
        return answer

    @staticmethod
    def _commit_one(connection: psycopg.Connection[Any], commit: Commit, turns: list[str]
                    ) -> Committed | EventStoreError:
        """Send the command and its flush in a pipeline; its answer, as soon as the call's transaction committed.
        An accepted command leaves the pipeline open, its flush under way (``_Flush``); a refused one reads it."""
        pinned = None if commit.first_position is None else _INT8_VALUE.pack(commit.first_position)
        result = _call_alone(connection, [*_columns((commit,)), pinned, _texts(turns)])
        if result.status == pq.ExecStatus.TUPLES_OK:
            first, head, head_hash = (result.get_value(0, column) for column in range(3))
            assert first is not None and head is not None and head_hash is not None
            return _answer(commit, _INT8_VALUE.unpack(first)[0], _INT8_VALUE.unpack(head)[0], bytes(head_hash),
                           None, None, None, None)
        with suppress(EventStoreError):  # refused or failed: nothing to flush, but the pipeline's results to read
            _Flush(connection, None).wait()
        code = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        if code not in _REFUSALS:
            raise _failure(connection, result)
        hint_text = result.error_field(pq.DiagnosticField.MESSAGE_HINT) or b"1"
        if not hint_text.isdigit():  # the server's answer, checked like stored bytes
            return StoreCorrupted(f"the server's answer is damaged: its hint {hint_text!r:.30} is no number ({code})")
        hint = int(hint_text)
        # Bytes that are not UTF-8 come through as text that ``_answer`` refuses as no version.
        detail = (result.error_field(pq.DiagnosticField.MESSAGE_DETAIL) or b"").decode(errors="replace")
        taken = None
        # The first writer's record stays (records are never removed); a record the command lacks is ``_answer``'s
        # damage.
        if code == "EV410" and 1 <= hint <= len(commit.records):
            record = commit.records[hint - 1]
            found = connection.execute(_TAKEN, (record.space, record.key)).fetchone()
            taken = found[0] if found else None
        return _answer(commit, None, None, None, code, hint, detail, taken)

    def _committing(self, body: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            with self._connection() as connection:
                return body(connection)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL cannot be reached ({reason(exc)}); {_IN_DOUBT}") from None
        except psycopg.Error as exc:  # maybe after the call's first transaction committed (docs/postgres.md)
            raise EventStoreError(f"PostgreSQL failed while committing ({reason(exc)}); {_IN_DOUBT}") from None

    def records(self, wanted: Sequence[tuple[str, bytes]]) -> list[SharedRecord]:
        def body(connection: psycopg.Connection[Any]) -> list[SharedRecord]:
            rows = connection.execute(_RECORDS, ([space for space, _ in wanted], [key for _, key in wanted])).fetchall()
            return [SharedRecord(space, bytes(key), bytes(value)) for space, key, value in rows]

        return self._call(body, "reading a record")

    def read(self, after: int, limit: int) -> SharedHead:
        def body(connection: psycopg.Connection[Any]) -> SharedHead:
            rows = connection.execute(_READ, (after, limit)).fetchall()
            if not rows:
                raise StoreCorrupted(NO_HEAD)
            events = tuple(SharedEvent(row[2], row[3], row[4], row[5], bytes(row[6]), row[7], row[8], bytes(row[9]),
                                       bytes(row[10]), bytes(row[11]), row[12]) for row in rows if row[2] is not None)
            return SharedHead(rows[0][0], bytes(rows[0][1]), events)

        return self._call(body, "reading the log")

    def close(self) -> None:
        self._listener.stop()
        if os.getpid() != self._pid:  # a forked child lets go of the parent's connections, touching none of them
            self._closed = True
            return
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if idle:  # wake the listener's waiter now rather than at its timeout
            self._listener.wake(idle[0])
        for connection in idle:
            connection.close()
        self._listener.close()
