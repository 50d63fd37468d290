"""``SearchIndex``, the read model: folds message edits into the index's stored forms and answers queries.

It folds ``message_edit`` of every event, so only current messages match
(``remove_last``, ``update_last``, clears, deletions, redactions remove; a
restore adds back). It is a deferred read model (see ``DeferredReadModel`` in
``eventstore/_deferred.py``, and ``docs/search.md`` for why): commands leave it
behind the log, and reads bring it up to date first, applying a few missing
events in memory (``overlay``) or catching it up (``prepare`` then ``write``). Queries of a current index read it
through a ``CachedReader``, which keeps the terms it decodes for the other queries of the same committed state.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from pyroaring import BitMap

from eventstore._codec import EncodedEvent, appended_content, decode_event
from eventstore._errors import EventStoreError, IncompatibleStore, StoreCorrupted
from eventstore._log import LoggedEvent
from eventstore._time import from_micros
from eventstore.events import EVENT_TYPES, REDACTED, MessageAppended, SessionEvent
from eventstore.storage import ReadTransaction, WriteTransaction

from ..readmodel import OpenSpace
from ..session import (
    EDIT_KINDS,
    AppendMessage,
    ClearMessages,
    MessageEdit,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    SessionSnapshot,
    message_edit,
)
from . import queries
from .formats import MAX_ID, META_GENERATION, Summary
from .planning import MAX_QUERY_TERMS
from .queries import Texts
from .reader import IndexReader, SearchSpaces, TermIds
from .tokenizer import QueryWord
from .verification import check_index, dump_index
from .writer import IndexWriter

__all__ = ["QUERY_CACHE_BYTES", "CachedReader", "SearchIndex"]

#: Bytes (roughly: the stored values they were decoded from) of decoded summaries and message maps that queries of
#: one committed state share.
QUERY_CACHE_BYTES = 32 << 20


class SearchIndex:
    """Ranked keyword search over the current messages of every live session (a deferred read model)."""

    name = "search"
    #: 2: terms no message holds leave the dictionary, ``search.names`` maps ids back to terms, and the
    #: redaction placeholder is not indexed. 3: summaries in blocks of sessions (``search.blocks``). 4: chunks of
    #: postings with 2-byte term ids below 65,536 and one level a message (the others stored apart). 5: message
    #: maps of the terms' blocks of ``MAP_FROM`` to ``MAP_UP_TO`` sessions (``search.maps``). 6: message maps in
    #: every block of ``MAP_FROM`` sessions or more, their repeated messages (``search.repeats``) and the blocks'
    #: messages by level (``search.levels``).
    code_version = 6
    #: The events whose payloads ``fold`` reads: those that edit the message list (the others are not decoded).
    payload_types = frozenset(kind.type_name for kind, edit in EDIT_KINDS.items() if edit is not None)

    def __init__(self, open_space: OpenSpace) -> None:
        self._spaces = SearchSpaces.open(open_space)
        self._term_ids = TermIds()
        self._decoded = _DecodedStates()

    # -- folding events ------------------------------------------------------------

    @contextmanager
    def batch(self, txn: WriteTransaction) -> Iterator[IndexWriter]:
        """A batch for ``fold``: changes stay in memory and are written when the block ends."""
        writer = IndexWriter(self._spaces, self._term_ids, txn)
        yield writer
        writer.flush(txn)

    def prepare(self, txn: ReadTransaction, fresh: bool = False) -> IndexWriter:
        """A batch to fold in one transaction (a read one will do) and ``write`` in another.

        ``fresh``: build from nothing (a rebuild), ignoring what is stored.
        The stored index must not change between the two transactions.
        """
        return IndexWriter(self._spaces, self._term_ids, txn, fresh=fresh)

    def write(self, writer: IndexWriter, txn: WriteTransaction) -> None:
        """Write a prepared batch through ``txn`` (clearing the index first for a fresh one). May run again."""
        if writer.fresh:
            self.clear(txn)
        writer.flush(txn)

    def overlay(self, txn: ReadTransaction, pending: Iterable[tuple[int, Sequence[LoggedEvent]]],
                read_only: bool = False) -> IndexWriter:
        """A view of the index with ``pending`` events applied in memory only, never written.

        ``read_only``: ``txn`` is a read transaction (the term-id cache may learn from it).
        """
        writer = IndexWriter(self._spaces, self._term_ids, txn, learn=read_only)
        for stream_id, events in pending:
            self.fold(writer, stream_id, events)
        return writer  # what a query reads settles then, term by term

    @staticmethod
    def fold(writer: IndexWriter, stream_id: int, events: Sequence[LoggedEvent]) -> None:
        """Apply the message edits of ``events`` (one session's, in order; the payloads of ``payload_types``
        read) to a batch: consecutive appends go to the batch together (it indexes them a run at a time)."""
        if stream_id > MAX_ID:  # ids count up from 1: no store creates 2**32 sessions, a damaged record names it
            raise StoreCorrupted(f"stream id {stream_id} is past the search index's ids: the log is damaged")
        appended: list[str] = []
        micros = 0
        for logged in events:
            edit = _edit(logged)
            if appended and not isinstance(edit, (str, AppendMessage)):
                writer.append(stream_id, appended, micros)
                appended = []
            micros = logged.recorded_at
            if isinstance(edit, str):
                appended.append(edit)
            elif isinstance(edit, AppendMessage):
                appended.append(edit.message[0].content)
            elif isinstance(edit, RemoveLastMessage):
                writer.remove_last(stream_id)
            elif isinstance(edit, ReplaceLastMessage):
                writer.remove_last(stream_id)
                writer.append(stream_id, [edit.message.content], micros)
            elif isinstance(edit, ClearMessages):
                writer.clear(stream_id)
            elif isinstance(edit, ReplaceMessages):
                writer.clear(stream_id)
                writer.append(stream_id, [message.content for message, _ in edit.messages], micros)
            elif isinstance(edit, RedactMessages):
                count = writer.message_count(stream_id)
                writer.clear(stream_id)
                writer.append(stream_id, [REDACTED] * count, micros)
        if appended:
            writer.append(stream_id, appended, micros)
        if events:
            writer.touch(stream_id, micros)

    def clear(self, txn: WriteTransaction) -> None:
        for space in self._spaces.all():
            txn.clear(space)
        txn.put(self._spaces.meta, META_GENERATION, os.urandom(16))  # term ids change: caches must forget them

    # -- queries -------------------------------------------------------------------

    def reader(self, txn: ReadTransaction, read_only: bool = False) -> IndexReader:
        """The index as stored, through ``txn`` (``read_only``: a read transaction, the caches may learn: the term
        ids, and the summaries and maps the queries of its committed state decode)."""
        if read_only:
            return CachedReader(self._spaces, self._term_ids, txn, self._decoded.of(txn.snapshot_id()))
        return IndexReader(self._spaces, self._term_ids, txn)

    @staticmethod
    def search_sessions(view: IndexReader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None) -> list[tuple[int, float]]:
        """The ``limit`` best sessions as ``(stream id, score)`` (see ``queries.search_sessions``)."""
        return queries.search_sessions(view, words, limit, texts)

    @staticmethod
    def search_messages(view: IndexReader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None) -> list[tuple[int, int, float]]:
        """The ``limit`` best messages as ``(stream id, message index, score)`` (see ``queries.search_messages``)."""
        return queries.search_messages(view, words, limit, texts)

    # -- audit ---------------------------------------------------------------------

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored index differs from one built afresh from ``sessions``."""
        return check_index(self.reader(txn), sessions)

    @staticmethod
    def check_view(view: IndexReader, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """``check`` through a view: a reader, or the overlay of a read-only store."""
        return check_index(view, sessions)

    def dump(self, txn: ReadTransaction) -> dict[str, Any]:
        """The index's content, independent of term ids, for comparing two builds."""
        return dump_index(self.reader(txn))


class _Term:
    """A term's summary and the message maps queries read of it, decoded from one committed state."""

    __slots__ = ("summary", "maps", "repeats")

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.maps: dict[int, BitMap | None] = {}  # by block, filled as queries read them
        self.repeats: dict[int, tuple[BitMap, bytes] | None] = {}  # likewise


class _Decoded:
    """Terms and the blocks' messages by level decoded from one committed state of the store, within a budget of
    bytes (the oldest go first).

    A term is one entry, its maps within it, so that a query pays the cache's upkeep once a term, not once a block.
    The blocks' messages at each level, joined, are entries of their own: every query of the most common words
    reads them, whatever its terms.
    """

    def __init__(self, snapshot: int, budget: int) -> None:
        self.snapshot, self._budget = snapshot, budget
        self._entries: dict[Hashable, Any] = {}  # a term by its id; _LEVEL_BLOCKS; ("level", level)
        self._costs: dict[Hashable, int] = {}
        self._size = 0
        self._lock = threading.Lock()  # queries in several threads may share a state

    def term(self, tid: int, decode: Callable[[], Summary | None]) -> _Term | None:
        """Term ``tid``, decoded (and kept) when not held; ``None`` when no message holds it."""
        found = self._entries.get(tid, _ABSENT)
        if found is not _ABSENT:
            return found  # type: ignore[no-any-return]
        summary = decode()  # a damaged value raises, and nothing is kept
        term = None if summary is None else _Term(summary)
        self._keep(tid, term, _term_bytes(summary))
        return term

    def level_blocks(self, decode: Callable[[], dict[int, list[int]]]) -> dict[int, list[int]]:
        """Level → the blocks with messages at it, read (and kept) when not held."""
        found = self._entries.get(_LEVEL_BLOCKS)
        if found is None:
            found = decode()
            self._keep(_LEVEL_BLOCKS, found, _LEVELS_OBJECTS + 8 * sum(map(len, found.values())))
        return found

    def joined_level(self, level: int, decode: Callable[[], BitMap]) -> BitMap:
        """The messages at ``level`` of the joined blocks, read (and kept) when not held."""
        key = ("level", level)
        found = self._entries.get(key)
        if found is None:
            found = decode()
            self._keep(key, found, _LEVELS_OBJECTS + 2 * len(found))
        return found

    def _keep(self, key: Hashable, value: object, cost: int) -> None:
        with self._lock:
            if key not in self._entries and cost <= self._budget:
                self._entries[key], self._costs[key] = value, cost
                self._size += cost
                while self._size > self._budget:
                    oldest = next(iter(self._entries))
                    del self._entries[oldest]
                    self._size -= self._costs.pop(oldest)


#: Terms a ``CachedReader`` keeps of its own: twice what a query may resolve to.
_READER_TERMS = 2 * MAX_QUERY_TERMS
#: What ``_Decoded.term`` holds for a term not yet decoded (``None`` is a term no message holds).
_ABSENT = object()
#: The key of the levels' blocks in a ``_Decoded``.
_LEVEL_BLOCKS = ("levels",)


def _term_bytes(summary: Summary | None) -> int:
    """A generous count of a term's bytes: its blocks' stored values, its sessions joined (levels, tags, ids: 6
    bytes each), and its message maps (at most 2 bytes a key: a few keys a session, in blocks of at most
    ``MAP_UP_TO`` of its sessions); and the Python objects holding them, which outweigh a rare term's values."""
    if summary is None:
        return _TERM_OBJECTS
    return _TERM_OBJECTS + sum(_BLOCK_OBJECTS + len(block.raw) for _, block in summary.blocks) + 12 * summary.sessions


#: Bytes of the objects of a decoded term (its entries in the cache, its summary, its maps' dict) and of each of its
#: blocks (the block, its pair, its bytes' header), as ``tracemalloc`` counts them, rounded up; and of the levels'
#: blocks or the messages at one level (the entry, the dict or bitmap), plus 2 bytes a message (a roaring array
#: container's) or 8 a block.
_TERM_OBJECTS = 400
_BLOCK_OBJECTS = 200
_LEVELS_OBJECTS = 600


class _DecodedStates:
    """The ``_Decoded`` of the committed state the latest query read (a commit since starts a new one)."""

    def __init__(self, budget: int = QUERY_CACHE_BYTES) -> None:
        self._budget = budget
        self._latest: _Decoded | None = None

    def of(self, snapshot: int) -> _Decoded:
        latest = self._latest
        if latest is None or latest.snapshot != snapshot:
            # A reader keeps the state it was given: one of an older snapshot in another thread never mixes in.
            latest = self._latest = _Decoded(snapshot, self._budget)
        return latest


class CachedReader(IndexReader):
    """An ``IndexReader`` of a read transaction whose terms' summaries and message maps are decoded once for all
    the queries that read the same committed state (``ReadTransaction.snapshot_id``): any commit, a catch-up, a
    redaction or a rebuild among them, and another process's, names another state, so nothing stale is served.

    The values it returns are shared: callers may not change them (as ``IndexReader`` asks of its maps).
    """

    def __init__(self, spaces: SearchSpaces, term_ids: TermIds, txn: ReadTransaction, decoded: _Decoded) -> None:
        super().__init__(spaces, term_ids, txn, learn=True)
        self._decoded = decoded
        self._read: dict[int, _Term | None] = {}  # this reader's terms, also those the budget did not keep

    def _term(self, tid: int) -> _Term | None:
        found = self._read.get(tid, _ABSENT)  # a query reads a term's maps block by block: most calls find it
        if found is _ABSENT:
            if len(self._read) >= _READER_TERMS:  # more terms than a query has: a check reading every summary
                self._read.clear()
            found = self._read[tid] = self._decoded.term(tid, lambda: IndexReader.summary(self, tid))
        return found  # type: ignore[return-value]

    def summary(self, tid: int) -> Summary | None:
        term = self._term(tid)
        return None if term is None else term.summary

    def term_map(self, tid: int, block: int) -> BitMap | None:
        term = self._term(tid)
        if term is None:  # no message holds it: it has no maps either
            return None
        maps = term.maps
        if block not in maps:
            maps[block] = IndexReader.term_map(self, tid, block)
        return maps[block]

    def level_blocks(self) -> dict[int, list[int]]:
        return self._decoded.level_blocks(lambda: IndexReader.level_blocks(self))

    def joined_level(self, level: int) -> BitMap:
        return self._decoded.joined_level(level, lambda: IndexReader.joined_level(self, level))

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        term = self._term(tid)
        if term is None:
            return None
        repeats = term.repeats
        if block not in repeats:
            repeats[block] = IndexReader.term_repeats(self, tid, block)
        return repeats[block]


class _Change(NamedTuple):
    """A logged event decoded, as ``message_edit`` reads it."""

    session_key: str
    version: int
    recorded_at: datetime
    event: SessionEvent


def _edit(logged: LoggedEvent) -> str | MessageEdit | None:
    """What ``logged`` does to the message list: an appended message's content alone (most events: read from the
    payload without building the event), another edit, or ``None`` (an event of a known type whose payload was not
    read)."""
    payload = logged.payload
    if payload is None:
        if logged.type_name not in EVENT_TYPES:  # a newer version's, which may edit the messages
            raise IncompatibleStore(f"position {logged.position}: unknown event type {logged.type_name!r}")
        return None
    if logged.type_name == MessageAppended.type_name:
        content = appended_content(payload, logged.schema_version)
        if content is not None:
            return content
    try:
        event = decode_event(EncodedEvent(logged.type_name, logged.schema_version, payload))
        recorded_at = from_micros(logged.recorded_at)
    except EventStoreError as exc:
        raise type(exc)(f"position {logged.position}: {exc}") from None
    except OverflowError:
        raise StoreCorrupted(f"position {logged.position}: the recorded time is damaged") from None
    return message_edit(_Change("", logged.version, recorded_at, event))
