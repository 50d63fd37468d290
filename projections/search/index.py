"""``SearchIndex``, the read model: folds message edits into the index's stored forms and answers queries.

It folds ``message_edit`` of every event, so only current messages match
(``remove_last``, ``update_last``, clears, deletions, redactions remove; a
restore adds back). It is a deferred read model (see ``DeferredReadModel`` in
``eventstore/_deferred.py``, and ``docs/search.md`` for why): commands leave it
behind the log, and reads bring it up to date first, applying a few missing
events in memory (``overlay``) or catching it up (``prepare`` then ``write``). Queries of a current index read it
through a ``CachedReader``, which keeps the terms it decodes for the other queries of the same stored state (its
generation and checkpoint), and queries of an index a few events behind read the blocks those events change
through their batch and the rest from the same decoded state (``_Overlaid``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from eventstore._codec import EncodedEvent, appended_content, decode_event
from eventstore._errors import EventStoreError, IncompatibleStore, StoreCorrupted
from eventstore._log import LoggedEvent
from eventstore._time import from_micros
from eventstore.events import EVENT_TYPES, REDACTED, MessageAppended, SessionEvent
from eventstore.storage import ReadTransaction, WriteTransaction

from ..readmodel import Checkpoint, Checkpoints, OpenSpace
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
from . import reader as stored_forms
from .formats import MAX_ID
from .formats.chunks import CHUNK_MESSAGES, chunk_levels
from .formats.keys import META_GENERATION, block_of, offset_of
from .formats.maps import JOINED_BLOCKS, JOINED_SHIFT, MAP_SHIFT, keyed_levels, repeated_at, repeated_levels
from .formats.summaries import LAST_TAG, Block, Summary
from .formats.wholes import Whole
from .planning import MAX_QUERY_TERMS
from .queries import Activities, Texts
from .reader import IndexReader, SearchSpaces, TermIds
from .tokenizer import QueryWord
from .verification import check_index, dump_index
from .writer import IndexWriter

__all__ = ["LARGE_CACHE_BYTES", "LARGE_ENTRY_FROM", "QUERY_CACHE_BYTES", "SEARCH_CACHE_BYTES", "CachedReader",
           "SearchIndex", "cache_budgets", "in_blocks"]

#: Bytes (roughly: the stored values they were decoded from) of decoded summaries and message maps that queries of
#: one committed state share, but the large entries' and the terms stored in blocks'.
QUERY_CACHE_BYTES = 32 << 20
#: Bytes of the large entries (each counted at ``LARGE_ENTRY_FROM`` or more when kept: the most common words' terms)
#: and of the terms stored in blocks (``in_blocks``), apart: every query of common words reads a few of them, and
#: decoding them again was most of such a query, while the many rarer terms a stream of queries reads, each once,
#: would push them out of a shared budget. Enough for the 100 most common words at 100,000 sessions (about 110 MiB as
#: counted, less in memory); a store whose terms are all stored whole and smaller never fills any of it.
LARGE_CACHE_BYTES = 128 << 20
LARGE_ENTRY_FROM = 512 << 10
#: Both budgets: what a store keeps of decoded search data unless told otherwise (``search_cache_bytes``).
SEARCH_CACHE_BYTES = QUERY_CACHE_BYTES + LARGE_CACHE_BYTES


def cache_budgets(total: int) -> tuple[int, int]:
    """The budgets (the terms stored whole; those in blocks and the large entries) of ``total`` bytes, shared as the
    default's are."""
    budget = total * QUERY_CACHE_BYTES // SEARCH_CACHE_BYTES
    return budget, total - budget


class SearchIndex:
    """Ranked keyword search over the current messages of every live session (a deferred read model)."""

    name = "search"
    #: 2: terms no message holds leave the dictionary, ``search.names`` maps ids back to terms, and the
    #: redaction placeholder is not indexed. 3: summaries in blocks of sessions (``search.blocks``). 4: chunks of
    #: postings with 2-byte term ids below 65,536 and one level a message (the others stored apart). 5: message
    #: maps of the terms' blocks of ``MAP_FROM`` to ``MAP_UP_TO`` sessions (``search.maps``). 6: message maps in
    #: every block of ``MAP_FROM`` sessions or more, their repeated messages (``search.repeats``) and the blocks'
    #: messages by level (``search.levels``). 7: a term in at most ``WHOLE_UP_TO`` messages stored whole, its blocks'
    #: summaries and message maps in its head (``formats.wholes``). 8: a head stored whole keeps its block numbers and
    #: their session counts in two bytes each.
    code_version = 8
    #: The events whose payloads ``fold`` reads: those that edit the message list (the others are not decoded).
    payload_types = frozenset(kind.type_name for kind, edit in EDIT_KINDS.items() if edit is not None)

    def __init__(self, open_space: OpenSpace, cache_bytes: int = SEARCH_CACHE_BYTES) -> None:
        """``cache_bytes``: what the queries keep of the terms they decoded, for the queries after them
        (``cache_budgets``); 0 keeps nothing, and each query decodes its terms anew."""
        self._spaces = SearchSpaces.open(open_space)
        self._checkpoints = Checkpoints(open_space)
        self._term_ids = TermIds()
        self._decoded = _DecodedStates(*cache_budgets(cache_bytes))
        # The blocks of the sessions each batch of a catch-up or an overlay folded, and its last position: they say
        # what the batch changes, so that the queries' decoded state is kept for the rest.
        self._folded: weakref.WeakKeyDictionary[IndexWriter, _Folded] = weakref.WeakKeyDictionary()
        self._overlays: weakref.WeakSet[IndexWriter] = weakref.WeakSet()  # the read-only ones, which queries read
        self._kept_overlay = threading.local()  # ``of``: the stored state and overlay the thread's latest read

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
        writer = IndexWriter(self._spaces, self._term_ids, txn, fresh=fresh)
        if not fresh:
            self._folded[writer] = _Folded()
        return writer

    def write(self, writer: IndexWriter, txn: WriteTransaction) -> None:
        """Write a prepared batch through ``txn`` (clearing the index first for a fresh one). May run again."""
        if writer.fresh:
            self.clear(txn)
        else:
            self._note_transition(writer, txn)
        writer.flush(txn)

    def _note_transition(self, writer: IndexWriter, txn: WriteTransaction) -> None:
        """Tell the queries' cache which blocks the state this batch writes changed, from the checkpoint it was
        folded from: a catch-up folds events committed before it, every event after the checkpoint up to its last,
        so any catch-up between the two checkpoints changes exactly these blocks, whether or not this transaction
        commits (a batch folded in the transaction that logs its events, which may yet be undone, is not noted)."""
        folded = self._folded.get(writer)
        checkpoint = self._checkpoints.get(txn, self.name)
        if folded is None or not folded.last or checkpoint is None or checkpoint[0] != self.code_version:
            return
        self._decoded.note_transition(self._generation(txn), checkpoint, (self.code_version, folded.last),
                                      frozenset(map(block_of, folded.sessions)), frozenset(folded.sessions))

    def _generation(self, txn: ReadTransaction) -> bytes | None:
        raw = txn.get(self._spaces.meta, META_GENERATION)
        return None if raw is None else bytes(raw)

    def _state(self, txn: ReadTransaction) -> _State:
        """What names the index's stored state in ``txn``: only a catch-up (which moves the checkpoint) and a clear
        (a new generation) write it, so commits of the log alone leave it, and what queries decoded of it, as it
        was."""
        return self._generation(txn), self._checkpoints.get(txn, self.name)

    def overlay(self, txn: ReadTransaction, pending: Iterable[tuple[int, Sequence[LoggedEvent]]],
                read_only: bool = False) -> IndexWriter:
        """A view of the index with ``pending`` events applied in memory only, never written.

        ``read_only``: ``txn`` is a read transaction (the term-id cache may learn from it).
        """
        if not read_only:
            writer = IndexWriter(self._spaces, self._term_ids, txn)
            for stream_id, events in pending:
                self.fold(writer, stream_id, events)
            return writer
        # The thread's overlay of the same stored state folded the log up to its last position: the log only grows
        # past it, so that overlay with the events since is this one (it reads the same stored values through this
        # transaction), unless this transaction's log ends before it (one held open since). A thread runs one query
        # at a time: no other reads the batch while it folds.
        runs = list(pending)
        state, kept = self._state(txn), getattr(self._kept_overlay, "of", None)
        self._kept_overlay.of = None  # until folded: an error leaves nothing half folded behind
        head = runs[-1][1][-1].position if runs else 0
        if kept is not None and kept[0] == state and self._folded[kept[1]].last <= head:
            writer = kept[1]
            writer.txn = txn
        else:
            writer = IndexWriter(self._spaces, self._term_ids, txn, learn=True)
            self._folded[writer] = _Folded()
            self._overlays.add(writer)
        last = self._folded[writer].last
        for stream_id, events in runs:
            if events[0].position <= last:
                events = [logged for logged in events if logged.position > last]
            if events:
                self.fold(writer, stream_id, events)
        self._kept_overlay.of = state, writer
        return writer  # what a query reads settles then, term by term

    def fold(self, writer: IndexWriter, stream_id: int, events: Sequence[LoggedEvent]) -> None:
        """Apply the message edits of ``events`` (one session's, in order; the payloads of ``payload_types``
        read) to a batch: consecutive appends go to the batch together (it indexes them a run at a time)."""
        if stream_id > MAX_ID:  # ids count up from 1: no store creates 2**32 sessions, a damaged record names it
            raise StoreCorrupted(f"stream id {stream_id} is past the search index's ids: the log is damaged")
        appended: list[str] = []
        micros = 0
        for logged in events:
            edit = _edit(logged)
            if type(edit) is str:  # most events: tested first, alone
                appended.append(edit)
                micros = logged.recorded_at
                continue
            if appended and not isinstance(edit, AppendMessage):
                writer.append(stream_id, appended, micros)
                appended = []
            micros = logged.recorded_at
            if isinstance(edit, AppendMessage):
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
            folded = self._folded.get(writer)
            if folded is not None:
                folded.sessions.add(stream_id)
                folded.fresh.add(stream_id)
                folded.last = events[-1].position

    def clear(self, txn: WriteTransaction) -> None:
        for space in self._spaces.all():
            txn.clear(space)
        txn.put(self._spaces.meta, META_GENERATION, os.urandom(16))  # term ids change: caches must forget them

    # -- queries -------------------------------------------------------------------

    def reader(self, txn: ReadTransaction, read_only: bool = False) -> IndexReader:
        """The index as stored, through ``txn`` (``read_only``: a read transaction, the caches may learn: the term
        ids, and the summaries and maps the queries of its committed state decode)."""
        if read_only:
            return CachedReader(self._spaces, self._term_ids, txn, self._decoded.of(self._state(txn)))
        return IndexReader(self._spaces, self._term_ids, txn)

    def search_sessions(self, view: IndexReader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None, activities: Activities | None = None) -> list[tuple[int, float]]:
        """The ``limit`` best sessions as ``(stream id, score)`` (see ``queries.search_sessions``)."""
        return queries.search_sessions(self._query_view(view), words, limit, texts, activities)

    def search_messages(self, view: IndexReader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None) -> queries.MessageHits:
        """The ``limit`` best messages as ``(stream id, message index, score)``, and the words that counted (see
        ``queries.search_messages``)."""
        return queries.search_messages(self._query_view(view), words, limit, texts)

    def _query_view(self, view: IndexReader) -> IndexReader:
        """What a query reads ``view`` through: a read-only overlay reads what its batch did not change (the blocks
        of sessions it has no events of) from the stored state's decoded terms and levels, which queries share, and
        starts from what the batch's previous query read of it, reading again only the blocks folded since."""
        folded = self._folded.get(view) if isinstance(view, IndexWriter) and view in self._overlays else None
        if folded is None:
            return view
        assert isinstance(view, IndexWriter)
        stored = CachedReader(self._spaces, self._term_ids, view.txn, self._decoded.of(self._state(view.txn)))
        # A batch is kept only for queries of the stored state it was folded on (``overlay``), and one thread reads
        # it at a time: what its earlier queries read differs from what it reads now in the blocks folded since.
        if folded.read is None:
            folded.read = _OverlaidReads()
        if folded.fresh or not folded.read.steps:  # else what the latest query read is current
            folded.read.steps.append(frozenset(folded.fresh))
            folded.fresh = set()
        return _Overlaid(view, stored, _Since.of(frozenset(folded.sessions)), self._term_ids, folded.read)

    # -- audit ---------------------------------------------------------------------

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored index differs from one built afresh from ``sessions``."""
        return check_index(self.reader(txn), sessions)

    def check_view(self, view: IndexReader, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """``check`` through a view: a reader, or the overlay of a read-only store. What is stored is checked, not
        what queries decoded of it: damage does not move the checkpoint that names the decoded state."""
        if isinstance(view, CachedReader):
            view = IndexReader(self._spaces, self._term_ids, view.txn)
        return check_index(view, sessions)

    def dump(self, txn: ReadTransaction) -> dict[str, Any]:
        """The index's content, independent of term ids, for comparing two builds."""
        return dump_index(self.reader(txn))


#: The stored state of the index a ``_Decoded`` holds terms of: its generation and its checkpoint.
_State = tuple[bytes | None, Checkpoint | None]


class _Folded:
    """What a batch folded: its sessions, and the position of its last event; for a read-only overlay's, what its
    queries read of it (``read``) and the sessions folded since the latest (``fresh``)."""

    __slots__ = ("sessions", "last", "fresh", "read")

    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.last = 0
        self.fresh: set[int] = set()
        self.read: _OverlaidReads | None = None


class _Term:
    """A term's summary and the message maps queries read of it, decoded from one stored state."""

    __slots__ = ("summary", "maps", "repeats", "repeated_levels", "repeated_at", "earlier")

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.maps: dict[int, BitMap | None] = {}  # by block, filled as queries read them
        self.repeats: dict[int, tuple[BitMap, bytes] | None] = {}  # likewise
        # Derived from the repeats of every block: the levels the term repeats at, and its repeated messages at each
        # level, joined, filled as queries read them; from those of an earlier state's decode (``earlier``) where it
        # derived them, the blocks changed since read again.
        self.repeated_levels: bytes | None = None
        self.repeated_at: dict[int, BitMap | None] = {}
        self.earlier: _Derived | None = None


class _Derived(NamedTuple):
    """What an earlier state's decode of a term derived from its repeats (``_Term.repeated_levels`` and
    ``repeated_at``), and the blocks changed since that state."""

    levels: bytes | None
    at: dict[int, BitMap | None]
    changed: frozenset[int]


def _derived_of(earlier: _Term, changed: frozenset[int]) -> _Derived | None:
    """What a decode of a state that changed the blocks ``changed`` of ``earlier``'s may take of its derived values:
    its own, or those it took from its own earlier state and did not read (never a chain of them)."""
    if earlier.repeated_levels is not None or earlier.repeated_at:
        return _Derived(earlier.repeated_levels, earlier.repeated_at, changed)
    if earlier.earlier is not None:
        return earlier.earlier._replace(changed=earlier.earlier.changed | changed)
    return None


def _levels_in(view: IndexReader, tid: int, blocks: Iterable[int]) -> bytes:
    """The levels term ``tid`` repeats at in ``blocks`` (those below ``JOINED_BLOCKS``) as ``view`` reads them."""
    return b"".join(stored[1] for number in blocks if number < JOINED_BLOCKS
                    if (stored := view.term_repeats(tid, number)))


def _patched_at(view: IndexReader, tid: int, level: int, found: BitMap, blocks: Iterable[int],
                cut: BitMap) -> BitMap:
    """Term ``tid``'s repeated messages at ``level`` (joined) from ``found``, those of a state that differs from
    ``view``'s in ``blocks`` alone (every key of which ``cut`` holds): theirs read again through ``view``."""
    found = found - cut
    for number in blocks:
        stored = view.term_repeats(tid, number) if number < JOINED_BLOCKS else None
        if stored and (count := stored[1].count(level)):
            found |= repeated_at(*stored, level, count).shift(number << JOINED_SHIFT)
    return found


def _term_of(view: IndexReader, tid: int, earlier: _Term | None, changed: frozenset[int]) -> _Term | None:
    """Term ``tid`` as ``view`` reads it, given what was decoded of it (``earlier``; ``None``: nothing) from a state
    that differs from ``view``'s in the blocks ``changed`` alone: the blocks outside them, and their maps and
    repeats, are kept (the whole term when it has none of them), the others read through ``view``."""
    if earlier is None:
        summary = IndexReader.summary(view, tid)  # the view's own blocks, not a cache's
        return None if summary is None else _Term(summary)
    numbers = view.blocks_of(tid)
    if not numbers:
        return None
    if list(numbers) == list(earlier.summary.block_numbers()) and not changed.intersection(numbers):
        return earlier
    if not view.holds_unwritten_changes and not view.blocks_apart(tid):  # stored whole: read afresh, in one value
        summary = IndexReader.summary(view, tid)
        assert summary is not None
        term = _Term(summary)
    else:
        term = _Term(_patched(view, tid, numbers, earlier.summary, changed))
        term.maps = {number: found for number, found in earlier.maps.items() if number not in changed}
    term.repeats = {number: found for number, found in earlier.repeats.items() if number not in changed}
    term.earlier = _derived_of(earlier, changed)
    return term


def _patched(view: IndexReader, tid: int, numbers: Sequence[int], earlier: Summary,
             changed: frozenset[int]) -> Summary:
    """Term ``tid``'s summary over ``numbers`` as ``view`` reads it: ``earlier``'s blocks outside ``changed``, the
    others read through ``view``."""
    kept = dict(earlier.blocks)
    blocks = []
    for number in numbers:
        block = None if number in changed else kept.get(number)
        if block is None:
            raw = view.block_raw(tid, number)
            if raw is None:
                raise StoreCorrupted(f"the search index is damaged: term {tid} lacks a block of its summary")
            block = Block(raw)
        blocks.append((number, block))
    return Summary(blocks, earlier)


def _level_blocks_of(view: IndexReader, earlier: dict[int, list[int]],
                     changed: frozenset[int]) -> dict[int, list[int]]:
    """``view.level_blocks()`` from those of a state that differs from ``view``'s in the blocks ``changed`` alone."""
    found = {level: [number for number in blocks if number not in changed] for level, blocks in earlier.items()}
    for number in changed:
        for level in view.block_levels(number):
            found.setdefault(level, []).append(number)
    return {level: sorted(blocks) for level, blocks in found.items() if blocks}


class _LevelTable:
    """The level of every message of the joined blocks (``search.levels``) by joined key, so that the levels of a
    query's messages are one lookup in C rather than an AND with each joined level (the message path walked 60
    levels twice a query, most of which held none of its messages).

    Each block is kept in the smaller of two forms (``_place``): its levels as an array indexed by message key, one
    byte a key up to its greatest (about one a message for sessions of 20 messages, but a long session spans up to
    ``LAST_TAG`` rows of ``1 << MAP_SHIFT`` keys), the blocks' arrays one after another in ``flat``; or as entries,
    its joined keys (``keys``, ascending) and their ``levels``, 5 bytes a message. So the table holds at most 5 bytes
    a message, whatever the sessions' lengths.

    The entries also patch the arrays: the table of a state a catch-up or a batch reached shares the earlier table's
    arrays and holds as entries the keys of the sessions changed since where their levels differ from the arrays
    (``patched``: each session's levels read from its chunks), so that it costs what changed, not the blocks it
    changed read again whole; past ``_PATCHES_UP_TO`` such entries the blocks are laid out again."""

    __slots__ = ("flat", "starts", "spans", "keys", "levels", "patches")

    def __init__(self, flat: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], spans: npt.NDArray[np.int64],
                 keys: npt.NDArray[np.uint32], levels: npt.NDArray[np.uint8]) -> None:
        self.flat, self.starts, self.spans, self.keys, self.levels = flat, starts, spans, keys, levels
        #: Entries over a block kept as an array: they patch it.
        self.patches = int(np.count_nonzero(spans[self._numbers(keys)]))

    @classmethod
    def laid_out(cls, arrays: Mapping[int, npt.NDArray[np.uint8]],
                 entries: Sequence[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]]) -> _LevelTable:
        """The table of the blocks ``arrays`` (by number) and ``entries`` (each block's keys and levels, ascending,
        in the blocks' order)."""
        # One more span than blocks, of nothing: a key of a later block is looked up there.
        spans = np.zeros(max(arrays, default=-1) + 2, dtype=np.int64)
        for number, levels in arrays.items():
            spans[number] = len(levels)
        starts = np.concatenate(([0], np.cumsum(spans)[:-1]))
        flat = np.concatenate([arrays[number] for number in sorted(arrays)]) if arrays else _NO_LEVELS
        if not entries:
            return cls(flat, starts, spans, _NO_JOINED_KEYS, _NO_LEVELS)
        return cls(flat, starts, spans, np.concatenate([keys for keys, _ in entries]),
                   np.concatenate([levels for _, levels in entries]))

    @classmethod
    def read(cls, view: IndexReader) -> _LevelTable:
        """The table of ``view``'s stored levels."""
        by_block: dict[int, list[tuple[int, BitMap]]] = {}
        for level, numbers in view.level_blocks().items():
            for number in numbers:
                if number < JOINED_BLOCKS and (found := view.level_messages(number, level)):
                    by_block.setdefault(number, []).append((level, found))
        arrays: dict[int, npt.NDArray[np.uint8]] = {}
        entries: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]] = []
        for number in sorted(by_block):
            _place(number, *keyed_levels(by_block[number]), arrays, entries)
        return cls.laid_out(arrays, entries)

    def _numbers(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """The block of each joined key of ``keys``, a block past the arrays' as the one after the last."""
        found: npt.NDArray[np.int64] = np.minimum(keys >> JOINED_SHIFT, len(self.spans) - 1).astype(np.int64)
        return found

    def _arrays_levels(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
        """The level the arrays give each joined key of ``keys``, 0 for one outside them."""
        numbers = self._numbers(keys)
        local = keys & _KEY_IN_BLOCK
        inside = local < self.spans[numbers]
        found = np.zeros(len(keys), dtype=np.uint8)
        found[inside] = self.flat[(self.starts[numbers] + local)[inside]]
        return found

    def levels_of(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
        """The level of each joined key of ``keys`` (ascending), 0 for one at no level."""
        found = self._arrays_levels(keys)
        if len(self.keys):
            held, places = _common(self.keys, keys)
            found[places] = self.levels[held]
        return found

    def cost(self) -> int:
        """Bytes, as ``_Decoded`` counts them."""
        return _LEVELS_OBJECTS + sum(part.nbytes for part in (self.flat, self.starts, self.spans, self.keys,
                                                              self.levels))

    def patched(self, view: IndexReader, sessions: Iterable[int]) -> _LevelTable:
        """The table as ``view`` reads it, whose state differs from this one's in the messages of ``sessions``
        alone: their levels read from their chunks (a catch-up or a batch leaves ``search.levels`` as the chunks
        say), the arrays shared, and the entries of their keys replaced by those whose level the arrays do not
        give. Past ``_PATCHED_UP_TO`` sessions the table is read afresh."""
        joined = sorted(sid for sid in sessions if block_of(sid) < JOINED_BLOCKS)
        if not joined:
            return self
        if len(joined) > _PATCHED_UP_TO:
            return _LevelTable.read(view)
        keys = np.concatenate([np.uint32(block_of(sid) << JOINED_SHIFT | offset_of(sid)) + _SESSION_ROWS
                               for sid in joined])
        levels = np.zeros(len(keys), dtype=np.uint8)
        for place, sid in enumerate(joined):
            for number, raw in enumerate(view.chunks(sid)):
                first = number * CHUNK_MESSAGES
                if first >= LAST_TAG:
                    break
                found = chunk_levels(raw)[:LAST_TAG - first]
                levels[place * LAST_TAG + first:place * LAST_TAG + first + len(found)] = np.frombuffer(found, np.uint8)
        order = np.argsort(keys, kind="stable")
        keys, levels = keys[order], levels[order]
        own = levels != self._arrays_levels(keys)
        kept = np.ones(len(self.keys), dtype=bool)
        kept[_common(self.keys, keys)[0]] = False
        merged = np.concatenate((self.keys[kept], keys[own]))
        order = np.argsort(merged, kind="stable")  # two ascending runs: merged in one pass
        table = _LevelTable(self.flat, self.starts, self.spans, merged[order],
                            np.concatenate((self.levels[kept], levels[own]))[order])
        return table._laid_out_again() if table.patches > _PATCHES_UP_TO else table

    def _laid_out_again(self) -> _LevelTable:
        """The table with its entries taken into their blocks, each of those blocks then in the smaller form."""
        numbers = (self.keys >> JOINED_SHIFT).astype(np.int64)
        ends = np.flatnonzero(numbers[1:] != numbers[:-1]) + 1
        by_block = dict(zip(numbers[np.concatenate(([0], ends))].tolist(),
                            zip(np.split(self.keys & _KEY_IN_BLOCK, ends), np.split(self.levels, ends))))
        arrays: dict[int, npt.NDArray[np.uint8]] = {}
        entries: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]] = []
        for number in sorted(by_block.keys() | set(np.flatnonzero(self.spans).tolist())):
            at = min(number, len(self.spans) - 1)
            start, span = int(self.starts[at]), int(self.spans[at])
            own = self.flat[start:start + span]
            if number not in by_block:
                arrays[number] = own
                continue
            local, levels = by_block[number]
            whole = np.zeros(max(span, int(local[-1]) + 1), dtype=np.uint8)
            whole[:span] = own
            whole[local] = levels
            held = np.flatnonzero(whole).astype(np.uint32)
            _place(number, held, whole[held], arrays, entries)
        return _LevelTable.laid_out(arrays, entries)


def _place(number: int, keys: npt.NDArray[np.uint32], levels: npt.NDArray[np.uint8],
           arrays: dict[int, npt.NDArray[np.uint8]],
           entries: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]]) -> None:
    """Block ``number``'s messages (their ``keys`` and ``levels``) in the smaller form: into ``arrays`` as an array
    indexed by key, when it takes no more than the entries' 5 bytes a message (``_DENSE_UP_TO``), else into
    ``entries`` as joined keys, ascending, and their levels."""
    if not len(keys):
        return
    span = int(keys.max()) + 1
    if span <= _DENSE_UP_TO * len(keys):
        found = np.zeros(span, dtype=np.uint8)
        found[keys] = levels
        arrays[number] = found
    else:
        order = np.argsort(keys, kind="stable")
        entries.append((keys[order] | np.uint32(number << JOINED_SHIFT), levels[order]))


def _common(held: npt.NDArray[np.uint32], keys: npt.NDArray[np.uint32]
            ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The places in ``held`` and in ``keys`` (both ascending, without repeats) of the values both have: the
    shorter looked up in the longer, so that a few entries cost little against a walk's thousands of keys."""
    if len(held) <= len(keys):
        return _places(held, keys)
    in_keys, in_held = _places(keys, held)
    return in_held, in_keys


def _places(few: npt.NDArray[np.uint32], many: npt.NDArray[np.uint32]
            ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``_common``'s places, each of ``few`` looked up in ``many``."""
    at = np.searchsorted(many, few)
    inside = np.flatnonzero(at < len(many))
    found = inside[many[at[inside]] == few[inside]]
    return found, at[found]


#: A joined key's message key in its block.
_KEY_IN_BLOCK = (1 << JOINED_SHIFT) - 1
#: A block is kept as an array when that takes at most this many bytes a message (the entries' form takes 5).
_DENSE_UP_TO = 5
#: A table patched for more sessions than this is read afresh (a session's patch reads its chunks).
_PATCHED_UP_TO = 512
#: Entries patching the arrays past which the blocks are laid out again (each costs the lookups a little).
_PATCHES_UP_TO = 4096
#: The message keys of a session at offset 0 of block 0 that ``search.levels`` may hold.
_SESSION_ROWS = np.arange(LAST_TAG, dtype=np.uint32) << MAP_SHIFT
_NO_JOINED_KEYS = np.zeros(0, dtype=np.uint32)
_NO_LEVELS = np.zeros(0, dtype=np.uint8)


class _Decoded:
    """Terms and the blocks' messages by level decoded from one stored state of the index, within a budget of
    bytes (the oldest go first), and the large entries and the terms stored in blocks within a budget of their own
    (``LARGE_CACHE_BYTES``).

    A term is one entry, its maps within it, so that a query pays the cache's upkeep once a term, not once a block.
    The levels' blocks and the level table are entries of their own: every query of the most common words reads
    them, whatever its terms.

    A state that a catch-up of this store object reached from the one before (``_DecodedStates.note_transition``)
    starts with that one's entries, each brought up to date when first read: a term's and the levels' blocks by
    reading again only the blocks changed since the entry's own state, the level table by patching the sessions
    changed since (``_table_sessions``); an entry is current exactly when it is not in ``_earlier``.
    """

    def __init__(self, state: _State, budgets: tuple[int, int], earlier: _Decoded | None = None,
                 changed: frozenset[int] = frozenset(), sessions: frozenset[int] = frozenset()) -> None:
        self.state, (self._budget, self._large_budget) = state, budgets
        self._entries: dict[Hashable, Any] = {}  # a term by its id; _LEVEL_BLOCKS; _LEVEL_TABLE
        self._costs: dict[Hashable, int] = {}
        self._size = 0  # of the entries but the large ones
        self._large: dict[Hashable, None] = {}  # the large entries' keys, oldest first
        # The others' keys, oldest first: a drop takes the first, never walking past the large ones (thousands of
        # terms stored in blocks may be kept).
        self._small: dict[Hashable, None] = {}
        self._large_size = 0
        self._lock = threading.Lock()  # queries in several threads may share a state
        # Entries of an earlier state not brought up to date yet → the blocks changed since their state (the
        # earlier state's own pending changes too, for what no query of it read).
        self._earlier: dict[Hashable, frozenset[int]] = {}
        # The sessions changed since the level table's state, while it is in ``_earlier`` (it is patched by session).
        self._table_sessions = sessions
        if earlier is not None:
            with earlier._lock:  # copied in C: a state may hold thousands of entries
                self._entries, self._costs, self._size = dict(earlier._entries), dict(earlier._costs), earlier._size
                self._large, self._large_size = dict(earlier._large), earlier._large_size
                self._small = dict(earlier._small)
                pending = dict(earlier._earlier)
            if _LEVEL_TABLE in pending:
                self._table_sessions = earlier._table_sessions | sessions
            self._earlier = dict.fromkeys(self._entries, changed)
            since: dict[frozenset[int], frozenset[int]] = {}  # a few distinct sets: each joined once
            for key, before in pending.items():
                blocks = since.setdefault(before, before | changed)
                if len(blocks) <= _CHANGED_UP_TO:
                    self._earlier[key] = blocks
                else:  # read afresh when asked for
                    self._remove(key)
                    del self._earlier[key]

    def term(self, tid: int, view: IndexReader) -> _Term | None:
        """Term ``tid``, decoded through ``view`` (and kept) when not held; ``None`` when no message holds it."""
        changed = self._earlier.get(tid)  # read first: an entry leaves it only once brought up to date
        if changed is None:
            found = self._entries.get(tid, _ABSENT)
            if found is not _ABSENT:
                return found  # type: ignore[no-any-return]
        # A damaged value raises, and nothing is kept.
        term = _term_of(view, tid, None if changed is None else self._entries.get(tid), changed or frozenset())
        self._keep(tid, term, _term_bytes(None if term is None else term.summary))
        return term

    def level_blocks(self, view: IndexReader) -> dict[int, list[int]]:
        """Level → the blocks with messages at it, read (and kept) when not held."""
        changed = self._earlier.get(_LEVEL_BLOCKS)
        found = self._entries.get(_LEVEL_BLOCKS) if changed is None else None
        if found is None:
            earlier = self._entries.get(_LEVEL_BLOCKS)
            found = IndexReader.level_blocks(view) if earlier is None or changed is None else _level_blocks_of(
                view, earlier, changed)
            self._keep(_LEVEL_BLOCKS, found, _LEVELS_OBJECTS + 8 * sum(map(len, found.values())))
        return found

    def level_table(self, view: IndexReader) -> _LevelTable:
        """The level of every message of the joined blocks, read (and kept) when not held."""
        changed = self._earlier.get(_LEVEL_TABLE)
        found = self._newest(_LEVEL_TABLE) if changed is None else None
        if found is None:
            earlier = self._entries.get(_LEVEL_TABLE)
            found = _LevelTable.read(view) if earlier is None or changed is None else \
                earlier.patched(view, self._table_sessions)
            self._keep(_LEVEL_TABLE, found, found.cost())
        return found

    def _newest(self, key: Hashable) -> Any:
        """The entry ``key`` (``None`` when not held), made the newest: the budget drops the oldest first, and an
        entry every query of the most common words reads (built from every block) would otherwise go among the
        first, as the queries' terms come in, and be built again and again."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                order = self._large if key in self._large else self._small
                order[key] = order.pop(key)
        return found

    def charge(self, tid: int, term: _Term, cost: int) -> None:
        """Count ``cost`` more bytes for term ``tid`` (what queries derived of ``term``), while it is the entry kept."""
        with self._lock:
            if self._entries.get(tid) is not term or tid in self._earlier:
                return  # not kept (over the budget, or another thread's decode replaced it): nothing to count
            self._costs[tid] += cost
            self._count(tid, cost)
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest entries of a budget while over it (the lock held)."""
        while self._size > self._budget:
            self._drop(next(iter(self._small)))
        while self._large_size > self._large_budget:
            self._drop(next(iter(self._large)))

    def _drop(self, key: Hashable) -> None:
        self._remove(key)
        self._earlier.pop(key, None)  # after its entry went: a reader finds it absent, not stale

    def _remove(self, key: Hashable) -> None:
        """Take entry ``key`` and its cost out (the lock held)."""
        self._count(key, -self._costs.pop(key))
        del self._entries[key]
        self._large.pop(key, None)
        self._small.pop(key, None)

    def _count(self, key: Hashable, cost: int) -> None:
        """Add ``cost`` to the size of the budget entry ``key`` is in (the lock held)."""
        if key in self._large:
            self._large_size += cost
        else:
            self._size += cost

    def _keep(self, key: Hashable, value: object, cost: int) -> None:
        with self._lock:
            if key in self._entries:
                if key not in self._earlier:
                    return  # another thread kept it first
                self._remove(key)
            large = cost >= LARGE_ENTRY_FROM or in_blocks(value)
            if cost <= (self._large_budget if large else self._budget):
                self._entries[key], self._costs[key] = value, cost
                (self._large if large else self._small)[key] = None
                self._count(key, cost)
                self._trim()
            self._earlier.pop(key, None)  # after its new value is in


#: Terms a ``CachedReader`` keeps of its own: twice what a query may resolve to.
_READER_TERMS = 2 * MAX_QUERY_TERMS
#: What ``_Decoded.term`` holds for a term not yet decoded (``None`` is a term no message holds).
_ABSENT = object()
#: The key of the levels' blocks in a ``_Decoded``, and of the level table.
_LEVEL_BLOCKS = ("levels",)
_LEVEL_TABLE = ("level table",)
#: A state reached by catch-ups that changed more blocks than this is decoded afresh (its terms would be read
#: again nearly whole anyway).
_CHANGED_UP_TO = 64
#: Catch-ups a ``_DecodedStates`` remembers.
_TRANSITIONS_KEPT = 64


def in_blocks(entry: object) -> bool:
    """Whether a decoded state's entry is a term stored in blocks: those are kept with the large entries, however
    small, as decoding one again reads each of its blocks and their maps (tens of values where a term stored whole
    is one), and the terms past ``formats.WHOLE_UP_TO`` messages are the common ones, which queries meet again."""
    return isinstance(entry, _Term) and not isinstance(entry.summary, Whole)


def _term_bytes(summary: Summary | None) -> int:
    """A generous count of a term's bytes: its blocks' stored values, its sessions joined (levels, tags, ids: 6
    bytes each), and its message maps (at most 2 bytes a key: a few keys a session, in blocks of at most
    ``MAP_UP_TO`` of its sessions); and the Python objects holding them, which outweigh a rare term's values."""
    if summary is None:
        return _TERM_OBJECTS
    blocks = 1 if isinstance(summary, Whole) else len(summary.block_numbers())  # a term stored whole: one value
    return _TERM_OBJECTS + _BLOCK_OBJECTS * blocks + summary.stored_bytes() + 12 * summary.sessions


#: Bytes of the objects of a decoded term (its entries in the cache, its summary, its maps' dict) and of each of its
#: blocks (the block, its pair, its bytes' header), as ``tracemalloc`` counts them, rounded up; and of the levels'
#: blocks, the level table or a term's repeated messages at one level (the entry, the dict, array or bitmap), plus
#: their bytes (2 a repeated message: a roaring array container's; 8 a block).
_TERM_OBJECTS = 400
_BLOCK_OBJECTS = 200
_LEVELS_OBJECTS = 600


class _DecodedStates:
    """The ``_Decoded`` of the stored state the latest query read: another state starts a new one, with the
    entries of the one before when this object's catch-ups lead from it to the new one (``note_transition``)."""

    def __init__(self, budget: int = QUERY_CACHE_BYTES, large_budget: int = LARGE_CACHE_BYTES) -> None:
        self._budgets = budget, large_budget
        self._latest: _Decoded | None = None
        # (generation, checkpoint) → the checkpoint a catch-up went on to, the blocks and the sessions it changed.
        self._transitions: dict[tuple[bytes | None, Checkpoint],
                                tuple[Checkpoint, frozenset[int], frozenset[int]]] = {}
        self._lock = threading.Lock()

    def note_transition(self, generation: bytes | None, before: Checkpoint, after: Checkpoint,
                        changed: frozenset[int], sessions: frozenset[int]) -> None:
        """A catch-up folds every event from ``before`` to ``after`` into the index of ``generation``, changing the
        blocks ``changed``, those of ``sessions`` (and the terms' heads, which queries read through their own
        transactions)."""
        with self._lock:
            self._transitions.pop((generation, before), None)
            while len(self._transitions) >= _TRANSITIONS_KEPT:
                del self._transitions[next(iter(self._transitions))]
            self._transitions[generation, before] = after, changed, sessions

    def of(self, state: _State) -> _Decoded:
        latest = self._latest
        if latest is None or latest.state != state:
            # A reader keeps the state it was given: one of an older state in another thread never mixes in.
            changed = None if latest is None else self._changed(latest.state, state)
            latest = self._latest = _Decoded(state, self._budgets, None) if changed is None else \
                _Decoded(state, self._budgets, latest, *changed)
        return latest

    def _changed(self, earlier: _State, state: _State) -> tuple[frozenset[int], frozenset[int]] | None:
        """The blocks and the sessions that catch-ups noted here changed from ``earlier`` to ``state``; ``None``: not
        known (another generation, a catch-up of another store object or process, a state before ``earlier``)."""
        generation, target = state
        if generation != earlier[0] or earlier[1] is None or target is None:
            return None
        at, changed, sessions = earlier[1], set[int](), set[int]()
        with self._lock:
            while at != target:
                step = self._transitions.get((generation, at))
                if step is None or step[0][0] != target[0] or step[0][1] > target[1]:
                    return None
                at = step[0]
                changed |= step[1]
                sessions |= step[2]
                if len(changed) > _CHANGED_UP_TO:
                    return None
        return frozenset(changed), frozenset(sessions)


class CachedReader(IndexReader):
    """An ``IndexReader`` of a read transaction whose terms' summaries and message maps are decoded once for all
    the queries that read the same stored state of the index (its generation and checkpoint: a catch-up, a
    redaction's or a rebuild, and another process's, names another state; commits of the log alone do not), so
    nothing stale is served. A state a catch-up of this store object reached starts from the one before, reading
    again only the blocks that catch-up changed.

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
            found = self._read[tid] = self._decoded.term(tid, self)
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
        return self._decoded.level_blocks(self)

    def message_levels(self, keys: BitMap) -> npt.NDArray[np.uint8]:
        return self._decoded.level_table(self).levels_of(np.frombuffer(keys.to_array(), dtype=np.uint32))

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        term = self._term(tid)
        if term is None:
            return None
        repeats = term.repeats
        if block not in repeats:
            repeats[block] = IndexReader.term_repeats(self, tid, block)
        return repeats[block]

    def repeated_levels(self, tid: int) -> bytes:
        term = self._term(tid)
        if term is None:
            return b""
        found = term.repeated_levels
        if found is None:
            earlier = term.earlier
            # A level no message has any more may stay (a bound, not a score): the changed blocks' are added.
            found = term.repeated_levels = IndexReader.repeated_levels(self, tid) if earlier is None or \
                earlier.levels is None else repeated_levels(earlier.levels + _levels_in(self, tid, earlier.changed))
            self._decoded.charge(tid, term, _LEVELS_OBJECTS + len(found))
        return found

    def repeated_at(self, tid: int, level: int) -> BitMap | None:
        term = self._term(tid)
        if term is None:
            return _NO_KEYS
        kept = term.repeated_at
        if level not in kept:
            earlier = None if term.earlier is None else term.earlier.at.get(level)
            if earlier is None:  # not derived, or too many to group (the changed blocks may have taken some)
                found = IndexReader.repeated_at(self, tid, level)
            else:
                assert term.earlier is not None
                found = _patched_at(self, tid, level, earlier, term.earlier.changed, _keys_of(term.earlier.changed))
                if len(found) > stored_forms.REPEATED_GROUP_UP_TO:  # read here: tests lower it
                    found = None
            kept[level] = found
            self._decoded.charge(tid, term, _LEVELS_OBJECTS + (0 if found is None else 2 * len(found)))
        return kept[level]


#: No messages: what a term no message holds repeats at.
_NO_KEYS = BitMap()
_K = TypeVar("_K")
_V = TypeVar("_V")


def _keys_of(blocks: Iterable[int]) -> BitMap:
    """Every joined key of ``blocks`` (those below ``JOINED_BLOCKS``)."""
    found = BitMap()
    for number in blocks:
        if number < JOINED_BLOCKS:
            found.add_range(number << JOINED_SHIFT, (number + 1) << JOINED_SHIFT)
    return found


class _OverlaidReads:
    """What queries read of a read-only overlay's batch through ``_Overlaid``, kept with the batch for its next
    queries: terms, the changed blocks' repeats (by ``block << 32 | term id``), the level table,
    and each term's repeated levels and messages (by ``level << 32 | term id``), each with the
    query it was read by (its number, from 1); and the sessions of the events the batch folded before each query that
    followed new events (``steps``: the first query's first; queries with no events folded since the one before
    share its number). An entry read by query ``n`` is brought up to date, when next read, with the sessions of
    ``steps[n:]`` (or their blocks)."""

    __slots__ = ("steps", "terms", "repeats", "level_table", "repeated_levels", "repeated_at")

    def __init__(self) -> None:
        self.steps: list[frozenset[int]] = []
        self.terms: dict[int, tuple[int, _Term | None]] = {}
        self.repeats: dict[int, tuple[int, tuple[BitMap, bytes] | None]] = {}
        self.level_table: dict[None, tuple[int, _LevelTable]] = {}  # one entry at most
        self.repeated_levels: dict[int, tuple[int, bytes]] = {}
        self.repeated_at: dict[int, tuple[int, BitMap | None]] = {}


class _Since(NamedTuple):
    """Sessions whose events a batch folded, their blocks, and every joined key of those blocks."""

    sessions: frozenset[int]
    blocks: frozenset[int]
    cut: BitMap

    @classmethod
    def of(cls, sessions: frozenset[int]) -> _Since:
        blocks = frozenset(map(block_of, sessions))
        return cls(sessions, blocks, _keys_of(blocks))


class _Overlaid(IndexReader):
    """A read-only overlay's batch as a query reads it: the blocks of the sessions the batch folded events of
    (``changed``) through the batch, the others from the stored state's decoded terms and levels (``stored``), which
    the batch leaves as they are. Everything else is the batch's.

    What it reads is kept in ``reads`` for the batch's next queries (of the same stored state): an entry an earlier
    query read is taken from there, the blocks of the events folded since read again, so that a query after an
    append does not join every changed block's levels and terms afresh. The batch does not change while a query
    reads it."""

    def __init__(self, batch: IndexWriter, stored: CachedReader, changed: _Since, term_ids: TermIds,
                 reads: _OverlaidReads) -> None:
        super().__init__(batch.spaces, term_ids, batch.txn)
        self._batch, self._stored, self._all, self.reads = batch, stored, changed, reads
        self._changed = changed.blocks
        self._query = len(reads.steps)
        self._since: dict[int, _Since] = {}

    def _changed_since(self, query: int) -> _Since:
        """What the batch folded since query ``query`` read it."""
        found = self._since.get(query)
        if found is None:
            found = self._since[query] = _Since.of(frozenset[int]().union(*self.reads.steps[query:]))
        return found

    def _kept(self, reads: dict[_K, tuple[int, _V]], key: _K, stored: Callable[[], _V],
              changed: Callable[[_V, _Since], _V]) -> _V:
        """``reads[key]`` as this query reads it: as kept if this query read it; else ``changed`` of what an earlier
        query read and what the batch folded since, or of the stored state's (``stored``) and all it folded."""
        kept = reads.get(key)
        if kept is not None and kept[0] == self._query:
            return kept[1]
        found = changed(stored(), self._all) if kept is None else changed(kept[1], self._changed_since(kept[0]))
        reads[key] = self._query, found
        return found

    @property
    def holds_unwritten_changes(self) -> bool:
        return True

    def _term(self, tid: int) -> _Term | None:
        # A term no message held (kept as ``None``) is read whole by ``_term_of``.
        return self._kept(self.reads.terms, tid, lambda: self._stored._term(tid),
                          lambda term, since: _term_of(self._batch, tid, term, since.blocks))

    def summary(self, tid: int) -> Summary | None:
        term = self._term(tid)
        return None if term is None else term.summary

    def term_map(self, tid: int, block: int) -> BitMap | None:
        if block in self._changed:
            return self._batch.term_map(tid, block)
        return self._stored.term_map(tid, block)

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        """The stored state's repeats outside the changed blocks; inside them the batch's, which it builds afresh on
        every read (from the messages it holds), where the message path reads a block's once for each message it
        scores there."""
        if block not in self._changed:
            return self._stored.term_repeats(tid, block)
        key, repeats = block << 32 | tid, self.reads.repeats
        kept = repeats.get(key)
        if kept is not None and (kept[0] == self._query or block not in self._changed_since(kept[0]).blocks):
            return kept[1]
        found = self._batch.term_repeats(tid, block)
        repeats[key] = self._query, found
        return found

    def repeated_levels(self, tid: int) -> bytes:
        """The stored state's levels (those of its changed blocks too: a bound may take a level no message has any
        more) and the changed blocks' through the batch."""
        # A level no message has any more may stay in what an earlier query read, as above.
        return self._kept(self.reads.repeated_levels, tid, lambda: self._stored.repeated_levels(tid),
                          lambda levels, since: repeated_levels(levels + _levels_in(self, tid, since.blocks)))

    def repeated_at(self, tid: int, level: int) -> BitMap | None:
        """The stored state's messages outside the changed blocks, and the changed blocks' through the batch."""

        def patched(found: BitMap | None, since: _Since) -> BitMap | None:
            # ``None``: the stored state's are too many to group, and so are these.
            return None if found is None else _patched_at(self, tid, level, found, since.blocks, since.cut)

        return self._kept(self.reads.repeated_at, level << 32 | tid, lambda: self._stored.repeated_at(tid, level),
                          patched)

    def level_blocks(self) -> dict[int, list[int]]:
        # No query asks an overlay for them (the level table gives its messages' levels): the batch's, unkept.
        return self._batch.level_blocks()

    def message_levels(self, keys: BitMap) -> npt.NDArray[np.uint8]:
        """The stored state's level table patched with the changed sessions' levels read through the batch."""
        table = self._kept(self.reads.level_table, None,
                           lambda: self._stored._decoded.level_table(self._stored),
                           lambda earlier, since: earlier.patched(self._batch, since.sessions))
        return table.levels_of(np.frombuffer(keys.to_array(), dtype=np.uint32))

    # -- the batch's own reads --------------------------------------------------------

    def tid(self, term: str) -> int | None:
        return self._batch.tid(term)

    def prefix_tids(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self._batch.prefix_tids(prefix)

    def df(self, tid: int) -> int:
        return self._batch.df(tid)

    def dfs(self, tids: Iterable[int]) -> dict[int, int]:
        return self._batch.dfs(tids)

    def blocks_of(self, tid: int) -> Sequence[int]:
        return self._batch.blocks_of(tid)

    def block_raw(self, tid: int, block: int) -> bytes | None:
        return self._batch.block_raw(tid, block)

    def block_levels(self, block: int) -> list[int]:
        return self._batch.block_levels(block)

    def level_messages(self, block: int, level: int) -> BitMap | None:
        return self._batch.level_messages(block, level)

    def session(self, sid: int) -> tuple[int, int] | None:
        return self._batch.session(sid)

    def activities(self, sids: Iterable[int]) -> dict[int, int]:
        return self._batch.activities(sids)

    def chunk(self, sid: int, number: int) -> bytes | None:
        return self._batch.chunk(sid, number)

    def chunks(self, sid: int) -> list[bytes]:
        return self._batch.chunks(sid)

    def messages(self) -> int:
        return self._batch.messages()


class _Change(NamedTuple):
    """A logged event decoded, as ``message_edit`` reads it."""

    session_key: str
    version: int
    recorded_at: datetime
    event: SessionEvent


#: ``MessageAppended.type_name`` as a module's name: a class attribute is looked up through its class each event.
_APPENDED = MessageAppended.type_name


def _edit(logged: LoggedEvent) -> str | MessageEdit | None:
    """What ``logged`` does to the message list: an appended message's content alone (most events: read from the
    payload without building the event), another edit, or ``None`` (an event of a known type whose payload was not
    read)."""
    # Unpacked in one step: Python 3.11 looks a named tuple's field up through its class each time.
    position, _, version, recorded_at, type_name, schema_version, payload = logged
    if payload is None:
        if type_name not in EVENT_TYPES:  # a newer version's, which may edit the messages
            raise IncompatibleStore(f"position {position}: unknown event type {type_name!r}")
        return None
    if type_name == _APPENDED:
        content = appended_content(payload, schema_version)
        if content is not None:
            return content
    try:
        event = decode_event(EncodedEvent(type_name, schema_version, payload))
        recorded = from_micros(recorded_at)
    except EventStoreError as exc:
        raise type(exc)(f"position {position}: {exc}") from None
    except OverflowError:
        raise StoreCorrupted(f"position {position}: the recorded time is damaged") from None
    return message_edit(_Change("", version, recorded, event))
