"""The search index's stored state, read through one transaction.

``SearchSpaces`` names the index's key spaces; ``TermIds`` is the process-wide
cache of term ids; ``IndexReader`` reads terms, summaries, chunks and sessions
through a transaction, decoding the forms of ``formats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import attrs
import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from eventstore._errors import StoreCorrupted
from eventstore.storage import ReadTransaction, Space

from ..readmodel import OpenSpace
from .formats.keys import (
    META_GENERATION,
    META_MESSAGES,
    META_NEXT_TID,
    block_key,
    block_of_key,
    blocks_of_value,
    chunk_key,
    chunk_of_key,
    chunks_end,
    count_of_value,
    df_of_value,
    id_key,
    id_of_key,
    session_of_value,
    term_of_entry,
    tid_of_entry,
    whole_head,
)
from .formats.maps import (
    JOINED_BLOCKS,
    JOINED_SHIFT,
    level_key,
    level_of_key,
    map_of_value,
    repeated_at,
    repeated_levels,
    repeats_of_value,
)
from .formats.summaries import Block, Summary
from .formats.wholes import Whole
from .tokenizer import MAX_TERM_BYTES, term_key

__all__ = ["REPEATED_GROUP_UP_TO", "SearchSpaces", "TermIds", "IndexReader"]

#: A term's repeated messages at one level are grouped (``IndexReader.repeated_at``) when they are at most this many:
#: a group is read a message at a time (a few µs each), so a query scores the messages of a larger one one by one.
REPEATED_GROUP_UP_TO = 1024

#: Term ids a process keeps in memory at most.
_TID_CACHE_SIZE = 1 << 20


@attrs.frozen
class SearchSpaces:
    """The index's key spaces (see ``formats``)."""

    terms: Space
    names: Space
    summary: Space
    blocks: Space
    maps: Space
    repeats: Space
    levels: Space
    docs: Space
    sessions: Space
    meta: Space

    @classmethod
    def open(cls, open_space: OpenSpace) -> SearchSpaces:
        return cls(open_space("search.terms"), open_space("search.names"), open_space("search.summary"),
                   open_space("search.blocks"), open_space("search.maps"), open_space("search.repeats"),
                   open_space("search.levels"), open_space("search.docs"), open_space("search.sessions"),
                   open_space("search.meta"))

    def all(self) -> tuple[Space, ...]:
        return (self.terms, self.names, self.summary, self.blocks, self.maps, self.repeats, self.levels, self.docs,
                self.sessions, self.meta)


class TermIds:
    """Term → id, learnt from read transactions, for one generation of the index at a time.

    A term keeps its id while some message holds it, and an id is never given
    to another term until the index is cleared (clearing writes a new
    generation, which empties the cache). A term that leaves the dictionary
    and comes back gets a new id, so a cached id is current exactly when its
    summary is stored (``IndexReader.tid`` checks).
    """

    def __init__(self) -> None:
        self._generation: bytes | None = None
        self._ids: dict[str, int] = {}

    def of_generation(self, generation: bytes | None) -> dict[str, int]:
        """The cache for ``generation``: another generation (a rebuild since, or an older snapshot) starts afresh."""
        if self._generation != generation:
            self._generation, self._ids = generation, {}
        return self._ids


class IndexReader:
    """The stored state of the index, read through one transaction.

    Term ids come from the process-wide ``TermIds`` when it holds them. Only
    reads in read-only transactions fill it (``learn``), so it never holds an
    id a write might yet undo. ``fresh``: read as if the index were empty (a
    rebuild folds from nothing).
    """

    def __init__(self, spaces: SearchSpaces, term_ids: TermIds, txn: ReadTransaction, learn: bool = False,
                 fresh: bool = False) -> None:
        self.spaces, self.txn = spaces, txn
        self._learn, self._fresh = learn and not fresh, fresh
        self._values: dict[int, bytes | None] = {}
        # The terms it read, decoded where stored whole, ``None`` where not: a query asks for each block of a term
        # stored in blocks, and the head's form is read once.
        self._wholes: dict[int, Whole | None] = {}
        self._level_blocks: dict[int, list[int]] | None = None
        self._joined_levels: dict[int, BitMap] = {}
        self._cache = term_ids.of_generation(txn.get(spaces.meta, META_GENERATION))

    @property
    def fresh(self) -> bool:
        return self._fresh

    @property
    def holds_unwritten_changes(self) -> bool:
        """Whether reads see changes not in the transaction (a batch, an overlay)."""
        return False

    def tid(self, term: str) -> int | None:
        return self._stored_tid(term)

    def _stored_tid(self, term: str) -> int | None:
        """``tid`` as this reader reads it (a batch's ``tid`` indexes its pending appends first: ``tids`` must not)."""
        if self._fresh:
            return None
        cache = self._cache
        found = cache.get(term)
        if found is not None and self._term_value(found) is not None:
            return found
        key = term_key(term)
        return self._entry_tid(term, key, self.txn.get(self.spaces.terms, key))

    def tids(self, terms: Sequence[str]) -> list[int | None]:
        """``tid`` of each of ``terms``, those its cache does not hold read in one batch (a later batch of a
        catch-up looks up tens of thousands)."""
        if self._fresh:
            return [None] * len(terms)
        cache = self._cache
        keys = list(map(term_key, terms))
        found = self.txn.get_many(self.spaces.terms, sorted(key for term, key in zip(terms, keys) if term not in cache))
        return [self._stored_tid(term) if term in cache else self._entry_tid(term, key, found.get(key))
                for term, key in zip(terms, keys)]

    def _entry_tid(self, term: str, key: bytes, raw: bytes | None) -> int | None:
        """The id in ``term``'s ``search.terms`` entry ``raw`` at ``key`` (``None``: none), learnt where the reader
        learns them."""
        if raw is None:
            return None
        found = tid_of_entry(key, raw)
        if self._learn and len(self._cache) < _TID_CACHE_SIZE:
            self._cache[term] = found
        return found

    def prefix_tids(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(term, term id)`` of every term that starts with ``prefix``, in key order (a walk from the prefix)."""
        if self._fresh:
            return
        key = prefix.encode("utf-8")[:MAX_TERM_BYTES]
        for raw_key, value in self.txn.scan(self.spaces.terms, key):
            if not raw_key.startswith(key):
                return
            term, tid = term_of_entry(raw_key, value)
            if term.startswith(prefix):
                yield term, tid

    def _term_value(self, tid: int) -> bytes | None:
        """A term's stored head: its message count (u32), then the blocks of its summary."""
        values = self._values
        if tid not in values:
            values[tid] = None if self._fresh else self.txn.get(self.spaces.summary, id_key(tid))
        return values[tid]

    def head(self, tid: int) -> bytes | None:
        """Term ``tid``'s stored head (``search.summary``)."""
        return self._term_value(tid)

    def df(self, tid: int) -> int:
        """How many current messages contain term ``tid``."""
        raw = self._term_value(tid)
        return 0 if raw is None else df_of_value(raw)

    def dfs(self, tids: Iterable[int]) -> dict[int, int]:
        """``df`` of many terms, read in one batch."""
        tids = list(tids)
        self.heads(tids)
        return {tid: self.df(tid) for tid in tids}

    def heads(self, tids: Sequence[int]) -> list[bytes | None]:
        """``head`` of many terms, those not read yet read in one batch (in key order: ``tids`` ascending)."""
        values = self._values
        wanted = [tid for tid in tids if tid not in values]
        if wanted and not self._fresh:
            keys = list(map(id_key, wanted))
            values.update(zip(wanted, map(self.txn.get_many(self.spaces.summary, keys).get, keys)))
        return list(map(self._term_value, tids))

    def _whole(self, tid: int) -> Whole | None:
        """Term ``tid`` as stored whole (``formats.wholes``); ``None`` when it is stored in blocks, or absent."""
        wholes = self._wholes
        if tid not in wholes:
            raw = self._term_value(tid)
            wholes[tid] = None if raw is None or not whole_head(raw) else Whole(raw)
        return wholes[tid]

    def blocks_of(self, tid: int) -> Sequence[int]:
        """The blocks that hold term ``tid``'s sessions, ascending."""
        whole = self._whole(tid)
        if whole is not None:
            return whole.block_numbers()
        return self.blocks_apart(tid)

    def blocks_apart(self, tid: int) -> Sequence[int]:
        """The blocks of term ``tid`` stored one a key (``search.blocks``; none for a term stored whole)."""
        raw = self._term_value(tid)
        return () if raw is None or whole_head(raw) else blocks_of_value(raw)

    def block_raw(self, tid: int, block: int) -> bytes | None:
        """The stored summary of term ``tid`` in ``block``."""
        whole = self._whole(tid)
        if whole is not None:
            return whole.block(block)
        return None if self._fresh else self.txn.get(self.spaces.blocks, block_key(block, tid))

    def term_map(self, tid: int, block: int) -> BitMap | None:
        """Term ``tid``'s message map in ``block`` (``formats.maps.mapped``); ``None`` where the block has none. The
        caller may not change it."""
        whole = self._whole(tid)
        if whole is not None:
            return whole.block_map(block)
        raw = None if self._fresh else self.txn.get(self.spaces.maps, block_key(block, tid))
        return None if raw is None else map_of_value(raw)

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        """The messages of ``block`` where term ``tid`` has a level of its own (keyed as in its message map), and
        those levels in the keys' order; ``None`` where none has (or the block has no map). The caller may not
        change them."""
        raw = None if self._fresh else self.txn.get(self.spaces.repeats, block_key(block, tid))
        return None if raw is None else repeats_of_value(raw)

    def repeated_levels(self, tid: int) -> bytes:
        """The levels term ``tid`` repeats at (``term_repeats``) in its blocks below ``JOINED_BLOCKS``, ascending."""
        return repeated_levels(b"".join(stored[1] for number in self.blocks_of(tid) if number < JOINED_BLOCKS
                                        if (stored := self.term_repeats(tid, number))))

    def repeated_at(self, tid: int, level: int) -> BitMap | None:
        """The messages where term ``tid`` repeats at ``level``, its blocks below ``JOINED_BLOCKS`` joined
        (``formats.maps.JOINED_SHIFT``); ``None`` when they are more than ``REPEATED_GROUP_UP_TO``. The caller may not
        change it."""
        found = [(number, stored, count) for number in self.blocks_of(tid) if number < JOINED_BLOCKS
                 if (stored := self.term_repeats(tid, number)) and (count := stored[1].count(level))]
        if sum(count for _, _, count in found) > REPEATED_GROUP_UP_TO:
            return None
        return BitMap.union(BitMap(), *(repeated_at(*stored, level, count).shift(number << JOINED_SHIFT)
                                        for number, stored, count in found))

    def block_levels(self, block: int) -> list[int]:
        """The levels of the block's messages (``search.levels``), best first."""
        if self._fresh:
            return []
        prefix = block_key(block, 0)[:4]
        found = []
        for key in self.txn.scan_keys(self.spaces.levels, prefix):
            if key[:4] != prefix:
                break
            found.append(level_of_key(key)[1])
        return found[::-1]

    def level_messages(self, block: int, level: int) -> BitMap | None:
        """The block's messages at ``level`` (keyed as in the message maps); ``None``: none. The caller may not
        change it."""
        raw = None if self._fresh else self.txn.get(self.spaces.levels, level_key(block, level))
        return None if raw is None else map_of_value(raw)

    def level_blocks(self) -> dict[int, list[int]]:
        """Level → the blocks (ascending) that have messages at it (``search.levels``' keys, read once a reader)."""
        found = self._level_blocks
        if found is None:
            found = self._level_blocks = {}
            if not self._fresh:
                for key in self.txn.scan_keys(self.spaces.levels):
                    block, level = level_of_key(key)
                    found.setdefault(level, []).append(block)
        return found

    def joined_level(self, level: int) -> BitMap:
        """The messages at ``level`` of every block below ``JOINED_BLOCKS``, joined (``formats.maps.JOINED_SHIFT``). The
        caller may not change it."""
        return BitMap.union(BitMap(), *(found.shift(block << JOINED_SHIFT)
                                        for block in self.level_blocks().get(level, ()) if block < JOINED_BLOCKS
                                        if (found := self.level_messages(block, level))))

    def joined_at_level(self, keys: BitMap, level: int) -> BitMap:
        """The messages of ``keys`` (keyed as ``joined_level``'s) at ``level`` (joined once a reader)."""
        found = self._joined_levels.get(level)
        if found is None:
            found = self._joined_levels[level] = self.joined_level(level)
        return keys & found

    def message_levels(self, keys: BitMap) -> npt.NDArray[np.uint8]:
        """The level of each message of ``keys`` (keyed as ``joined_level``'s), in their order; 0 for one at no level
        (past the maps' range). Here by ANDs with the joined levels, best first, until every message is placed."""
        order = np.frombuffer(keys.to_array(), dtype=np.uint32)
        found = np.zeros(len(order), dtype=np.uint8)
        left = keys
        for level in sorted(self.level_blocks(), reverse=True):
            if not left:
                break
            placed = self.joined_at_level(left, level)
            if placed:
                found[np.searchsorted(order, np.frombuffer(placed.to_array(), dtype=np.uint32))] = level
                left = left - placed
        return found

    def summary(self, tid: int) -> Summary | None:
        """Term ``tid``'s summary over all its blocks; ``None`` when no message holds it."""
        whole = None if self.holds_unwritten_changes else self._whole(tid)  # a batch's blocks are its own
        if whole is not None:
            return whole
        blocks = []
        for block in self.blocks_of(tid):
            raw = self.block_raw(tid, block)
            if raw is None:
                raise StoreCorrupted(f"the search index is damaged: term {tid} lacks a block of its summary")
            blocks.append((block, Block(raw)))
        return Summary(blocks) if blocks else None

    def session(self, sid: int) -> tuple[int, int] | None:
        """``(messages, latest activity µs)`` of a session that has messages."""
        if self._fresh:
            return None
        raw = self.txn.get(self.spaces.sessions, id_key(sid))
        return None if raw is None else session_of_value(id_key(sid), raw)

    def activities(self, sids: Iterable[int]) -> dict[int, int]:
        found = self.txn.get_many(self.spaces.sessions, [id_key(sid) for sid in sids])
        return {id_of_key(key, self.spaces.sessions.name): session_of_value(key, value)[1]
                for key, value in found.items()}

    def chunk(self, sid: int, number: int) -> bytes | None:
        return None if self._fresh else self.txn.get(self.spaces.docs, chunk_key(sid, number))

    def last_chunk(self, sid: int) -> tuple[int, bytes] | None:
        """The session's last chunk, its number and bytes, by one floor lookup; ``None`` when it has none."""
        found = None if self._fresh else self.txn.before(self.spaces.docs, chunks_end(sid))
        if found is None:
            return None
        found_sid, number = chunk_of_key(found[0])
        return (number, found[1]) if found_sid == sid else None

    def last_chunked_session(self) -> int:
        """The session of the last stored chunk (the greatest session with one); -1 when none is stored."""
        found = None if self._fresh else self.txn.last(self.spaces.docs)
        return -1 if found is None else chunk_of_key(found[0])[0]

    def chunks(self, sid: int) -> list[bytes]:
        """Every chunk of a session, in order."""
        prefix = id_key(sid)
        found = []
        if not self._fresh:
            for key, value in self.txn.scan(self.spaces.docs, prefix):
                if key[:4] != prefix:
                    break
                chunk_of_key(key)  # a key of another length (damage) would be taken for one of its chunks
                found.append(value)
        return found

    def messages(self) -> int:
        raw = None if self._fresh else self.txn.get(self.spaces.meta, META_MESSAGES)
        return 0 if raw is None else count_of_value(META_MESSAGES, raw)

    def next_tid(self) -> int:
        """The next term id to give, as stored (1 in an index that never gave one).

        Raises:
            StoreCorrupted: a stored term has that id or a later one (``META_NEXT_TID`` damaged or lost): a batch
                would take stored terms for its new ones, and give a new term a stored term's id and postings.
        """
        raw = self.txn.get(self.spaces.meta, META_NEXT_TID)
        next_tid = 1 if raw is None else count_of_value(META_NEXT_TID, raw)
        highest = max((id_of_key(last[0], space.name) for space in (self.spaces.names, self.spaces.summary)
                       if (last := self.txn.last(space)) is not None), default=0)
        if highest >= next_tid:
            raise StoreCorrupted(f"the search index is damaged: its next term id, {next_tid}, is not past the term "
                                 f"ids it holds (up to {highest})")
        return next_tid

    # -- whole spaces, for checks and dumps ------------------------------------------

    def stored_terms(self) -> Iterator[tuple[str, int]]:
        """``(term, term id)`` of every stored term, in key order."""
        for key, value in self.txn.scan(self.spaces.terms):
            yield term_of_entry(key, value)

    def stored_names(self) -> Iterator[tuple[int, bytes]]:
        """``(term id, term key)`` of every stored term, by id."""
        for key, value in self.txn.scan(self.spaces.names):
            yield id_of_key(key, self.spaces.names.name), bytes(value)

    def stored_summaries(self) -> Iterator[tuple[int, int, Summary]]:
        """``(term id, message count, summary)`` of every stored term."""
        for key, value in self.txn.scan(self.spaces.summary):
            tid = id_of_key(key, self.spaces.summary.name)
            summary = self.summary(tid)
            if summary is None:
                raise StoreCorrupted(f"the search index is damaged: term {tid} has no blocks")
            yield tid, df_of_value(value), summary

    def stored_summary_count(self) -> int:
        return self.txn.count(self.spaces.summary)

    def stored_blocks(self) -> Iterator[tuple[int, int]]:
        """``(block, term id)`` of every stored block of a summary."""
        for key in self.txn.scan_keys(self.spaces.blocks):
            yield block_of_key(key, self.spaces.blocks.name)

    def stored_maps(self) -> Iterator[tuple[int, int]]:
        """``(block, term id)`` of every stored message map."""
        for key in self.txn.scan_keys(self.spaces.maps):
            yield block_of_key(key, self.spaces.maps.name)

    def stored_repeats(self) -> Iterator[tuple[int, int]]:
        """``(block, term id)`` of every stored set of repeated messages."""
        for key in self.txn.scan_keys(self.spaces.repeats):
            yield block_of_key(key, self.spaces.repeats.name)

    def stored_levels(self) -> Iterator[tuple[int, int]]:
        """``(block, level)`` of every stored set of messages at a level."""
        for key in self.txn.scan_keys(self.spaces.levels):
            yield level_of_key(key)

    def stored_chunks(self) -> Iterator[tuple[tuple[int, int], bytes]]:
        """``((session, chunk number), chunk)`` of every stored chunk."""
        for key, value in self.txn.scan(self.spaces.docs):
            yield chunk_of_key(key), bytes(value)

    def stored_sessions(self) -> Iterator[tuple[int, tuple[int, int]]]:
        """``(session, (messages, latest activity µs))`` of every indexed session."""
        for key, value in self.txn.scan(self.spaces.sessions):
            yield id_of_key(key, self.spaces.sessions.name), session_of_value(key, value)
