"""A batch of changes to the search index, held in memory: reads through it see them, ``flush`` writes them.

A batch never written is an overlay: the index plus events it has not applied.
"""

from __future__ import annotations

import bisect
import collections
import heapq
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from itertools import chain, compress, islice, repeat
from operator import eq, is_not, itemgetter
from typing import cast

import numpy as np
from pyroaring import BitMap

from eventstore._errors import EventStoreError, StoreCorrupted
from eventstore.events import REDACTED
from eventstore.storage import ReadTransaction, Space, WriteTransaction

from . import formats
from .formats import MAX_ID
from .formats.arrays import U32, packed_u64s, u16s
from .formats.chunks import (
    CHUNK_MESSAGES,
    ChunkMessage,
    chunk_append,
    chunk_counts,
    chunk_levels,
    chunk_occurrences,
    chunk_occurrences_of,
    chunk_pop,
    chunk_size,
    message_level,
)
from .formats.keys import (
    META_MESSAGES,
    META_NEXT_TID,
    block_of,
    chunk_key,
    count_value,
    df_of_value,
    head_value,
    id_key,
    offset_of,
    session_value,
    term_entry,
    whole_head,
)
from .formats.maps import (
    JOINED_BLOCKS,
    JOINED_SHIFT,
    LAST_KEYS,
    MAP_SHIFT,
    MULTI_KEYS,
    ChangedRepeats,
    level_key,
    map_value,
    mapped,
    mapped_size,
    mapped_sizes,
    placed,
    posted_keys,
    posted_levels,
    repeats_value,
    session_map_keys,
)
from .formats.summaries import LAST_TAG, MULTI, Block, summary_extend, summary_raise, summary_set, tag
from .formats.wholes import (
    block_keys,
    stored_whole,
    unmapped_whole,
    whole_end,
    whole_ends,
    whole_extended,
    whole_of_blocks,
    whole_value,
)
from .grouping import BETWEEN, Columns, Indexed, Postings, columns_of, group, indexed
from .grouping import COUNT_SHIFT as _COUNT_SHIFT
from .grouping import POSTED_BLOCK as _POSTED_BLOCK
from .grouping import SID_SHIFT as _SID_SHIFT
from .reader import IndexReader, SearchSpaces, TermIds
from .tokenizer import BETWEEN_KEYS, MAX_TERM_BYTES, term_key, term_keys_of, tokenize

__all__ = ["IndexWriter", "indexed_terms"]

#: Postings (a term in a message) kept before they are grouped and folded into the summaries: bounds a batch's
#: memory (``grouping.Postings``: about 5 bytes a posting, and some 36 more while they are grouped).
_SETTLE_EVERY = 1 << 22
#: Terms a batch's settling takes at a time from its grouping, and splices together where it can
#: (``IndexWriter._splice_together``): enough that numpy's calls cost little a term, few enough that the parts held
#: stay small.
_SPLICED_TOGETHER = 4096
#: Messages of runs of appends a batch collects before it indexes them together (``IndexWriter._append_pending``):
#: enough that numpy's calls cost little a message, few enough that their arrays stay small.
_APPEND_EVERY = 4096
#: A run of appends collected: its session, its messages' texts, its time (µs).
_Run = tuple[int, list[str], int]
_ENTRY_MASK = (1 << _COUNT_SHIFT) - 1
#: How many of the batch's last appended messages a removal looks through for its message's postings (several
#: sessions streaming at once interleave their replacements); a message further back is grouped with the rest.
_UNPOST_WITHIN = 64
#: A noted repeat (``IndexWriter._repeated``) without its level: its block and map key.
_NOT_LEVEL = ~(0xFF << 32)
#: A term the batch holds in this many messages of a session or more has each of them posted for its message maps
#: (``grouping.group``); the map key of a term in fewer (one) is its entry's tag, which ``_settle_term`` reads for
#: the blocks that have a map.
_POSTED_FROM = 2
#: A term's part of a batch's grouped postings: its entries and their columns, its message count, its posted messages.
_Part = tuple["array[int]", Columns, int, "array[int]"]
#: A term stored whole that a batch extends with later sessions, held as what its head gains
#: (``IndexWriter._spliced``): the blocks that gain sessions and their sessions then, the gained sessions' columns
#: (offsets, best levels, tags), and the message-map keys each mapped block gains, in the order they came.
_Splice = tuple[tuple[int, ...], tuple[int, ...], tuple[bytes, bytes, bytes], tuple[tuple[int, BitMap], ...]]


def indexed_terms(content: str) -> list[str]:
    """The terms a message is indexed by: its content's, and none for the redaction placeholder (a redacted
    message must not be found by the placeholder's words)."""
    return [] if content == REDACTED else tokenize(content)


class _SessionState:
    """A session being changed by a batch: message count, activity, the chunks read so far, the postings of
    messages appended to them (a chunk is encoded once when it is next read or written, not once a message), the
    chunks to write, and whether its count was checked against its stored chunks (``IndexWriter._checked``).

    A batch holds one for each session it changes until it is written, so they hold what the cyclic collector
    does not walk: the chunks to write as the bits of an int, the postings appended to a chunk as a tuple (of
    bytes and numbers, which the collector stops tracking), and no set or list.
    """

    __slots__ = ("count", "activity", "chunks", "appended", "dirty", "loaded", "checked")

    def __init__(self, count: int, activity: int, checked: bool) -> None:
        self.count, self.activity, self.checked = count, activity, checked
        self.chunks: dict[int, bytes | None] = {}
        self.appended: dict[int, tuple[ChunkMessage, ...]] = {}
        self.dirty = 0  # bit ``number`` set: chunk ``number`` changed
        self.loaded = False

    def changed(self, number: int) -> None:
        """Note that chunk ``number`` changed."""
        self.dirty |= 1 << number

    def changed_chunks(self) -> Iterator[int]:
        """The numbers of the chunks that changed, ascending."""
        dirty = self.dirty
        while dirty:
            low = dirty & -dirty
            yield low.bit_length() - 1
            dirty ^= low


class IndexWriter(IndexReader):
    """A batch of changes: reads through it see them, ``flush`` writes them.

    Appends only keep their postings in flat arrays (``grouping.Postings``);
    ``settle`` groups them into each term's best level per session and its new
    message count, and folds those into each term's summary once, so a batch
    of many messages rewrites each block of a summary it touches once (new
    sessions go to the last blocks, which are extended, not rebuilt). A
    removal of a message whose postings are still there drops them.
    """

    def __init__(self, spaces: SearchSpaces, term_ids: TermIds, txn: ReadTransaction, learn: bool = False,
                 fresh: bool = False) -> None:
        super().__init__(spaces, term_ids, txn, learn, fresh)
        self._tids: dict[str, int] = {}
        # A term's UTF-8 → its id, as appends look terms up; what is between two messages' terms, ``BETWEEN``.
        self._key_tids: dict[bytes, int] = {BETWEEN_KEYS: BETWEEN}
        self._new_terms: dict[int, tuple[bytes, bytes]] = {}  # term id → its key and ``search.terms`` value
        # A term's block as ``block << 32 | term id``: the number its ``search.blocks`` key is (big-endian).
        self._blocks: dict[int, bytes | None] = {}  # a term's block → its summary there
        # What a batch keeps a term or block of is a dict of numbers and bytes, or an ``array``, which the cyclic
        # collector walks as one object (a rebuild keeps some for each of tens of thousands of terms, and a set or
        # a dict of tuples or lists is walked entry by entry at every full collection).
        self._dirty: dict[int, None] = {}  # the blocks changed, as a set the collector does not track
        # Term id → the sessions in each of its blocks and its columns (sessions as u16 offsets, best levels, tags,
        # block after block) of a term new to the index that settled with no block holding a map, and that the
        # batch has not read or changed since (most terms of a rebuild or a first catch-up): its blocks are
        # summarized only if something reads them (``_spill``), and its head stored whole is joined from these.
        self._held: dict[int, tuple[tuple[int, ...], tuple[bytes, bytes, bytes]]] = {}
        # Term id → what its head gains, of a term stored whole that the batch only extends with sessions past its
        # stored ones (the common case of a catch-up of new sessions) and has not read or otherwise changed: its
        # head is spliced from its stored one and these at flush (``whole_extended``), with no block summarized,
        # raised or mapped; what reads or changes its blocks has them made first (``_unsplice``).
        self._spliced: dict[int, _Splice] = {}
        self._lists: dict[int, array[int]] = {}  # term id → its blocks
        self._dfs: dict[int, int] = {}
        self._sessions: dict[int, _SessionState] = {}
        # The postings of the messages appended since the batch last grouped them, and each term's parts grouped
        # since it last settled (grouped when a term is read, or the batch settles).
        self._postings = Postings()
        self._grouped: dict[int, list[_Part]] = {}
        # Runs of appends not indexed yet (``_append_pending``), and their messages.
        self._pending: list[_Run] = []
        self._pending_messages = 0
        # Message maps (``formats.maps.mapped``) by block key: those changed (``None``: none now), and the sessions
        # (offsets) each waits for, to read from their postings: those a removal touched, and those a block had
        # before it gained its map.
        self._maps: dict[int, BitMap | None] = {}
        self._maps_changed: set[int] = set()
        self._maps_stale: dict[int, set[int]] = {}
        # Term id → ``block << _POSTED_BLOCK | level << 32 | map key`` of each message appended since the term last
        # settled where the term has a level of its own (it repeats there): the keys its message maps and repeats
        # gain (taken from the messages, not their postings; ``group`` posts those of the messages of a session
        # holding it in several). Made for a term at its first such message: most terms never have one.
        self._repeated: collections.defaultdict[int, array[int]] = collections.defaultdict(partial(array, "Q"))
        # Each mapped block's messages where its term has a level of its own (``search.repeats``), by block key, as
        # the batch changes them (``None``: none stored now); those to write.
        self._repeats: dict[int, ChangedRepeats | None] = {}
        self._repeats_changed: set[int] = set()
        # Each block's messages by level (``search.levels``), as ``block << 8 | level``: those read or changed
        # (``None``: none stored), the blocks read whole, and the sessions to read again from their chunks (a
        # removal touched them).
        self._levels: dict[int, BitMap | None] = {}
        self._levels_changed: set[int] = set()
        self._levels_whole: set[int] = set()
        self._levels_stale: set[int] = set()
        # What ``flush`` writes, by space, once built: a flush run again (its transaction retried once the map has
        # grown) writes it without building it again. Any change to the batch drops it.
        self._changes: list[tuple[Space, list[tuple[bytes, bytes | None]]]] | None = None
        self._messages = super().messages()
        self._next_tid = 1 if fresh else self.next_tid()
        self._first_tid = 0 if fresh else self._next_tid
        self._last_chunked: int | None = None  # ``last_chunked_session``, once the batch meets a session without record

    # -- reads through the batch ---------------------------------------------------

    def tid(self, term: str) -> int | None:
        self._append_pending()
        return self._tid(term)

    def _tid(self, term: str) -> int | None:
        """``tid`` of the terms as indexed so far (what indexing the collected runs looks their terms up in)."""
        found = self._tids.get(term)
        if found is None:
            found = super().tid(term)
            if found is not None:
                self._tids[term] = found
        return found

    @property
    def holds_unwritten_changes(self) -> bool:
        return True

    def prefix_tids(self, prefix: str) -> Iterator[tuple[str, int]]:
        """As stored, merged in key order with the terms this batch added."""
        self._append_pending()
        added = sorted((term_key(term), term, tid) for term, tid in self._tids.items()
                       if tid >= self._first_tid and term.startswith(prefix))
        stored = ((term_key(term), term, tid) for term, tid in super().prefix_tids(prefix))
        for _, term, tid in heapq.merge(stored, added):
            yield term, tid

    def df(self, tid: int) -> int:
        self._settle(tid)
        found = self._dfs.get(tid)
        if found is None:
            found = self._dfs[tid] = super().df(tid)
        return found

    def blocks_of(self, tid: int) -> Sequence[int]:
        self._settle(tid)
        return self._block_list(tid)

    def block_raw(self, tid: int, block: int) -> bytes | None:
        self._settle(tid)
        return self._block(tid, block)

    def _block_list(self, tid: int) -> array[int]:
        found = self._lists.get(tid)
        if found is None:
            found = self._lists[tid] = array("I", super().blocks_of(tid))
            spliced = self._spliced.get(tid)
            if spliced is not None:  # the blocks its head gains (``_splice`` keeps no list)
                stored_last = found[-1]
                found.extend(block for block in spliced[0] if block > stored_last)
        return found

    def _block(self, tid: int, block: int) -> bytes | None:
        key = block << 32 | tid
        if key not in self._blocks:
            if tid in self._held or tid in self._spliced:
                self._spill(tid)
                self._unsplice(tid)
                return self._block(tid, block)
            self._blocks[key] = super().block_raw(tid, block)
        return self._blocks[key]

    def _spill(self, tid: int) -> None:
        """Summarize the blocks of a term held as columns (``_held``), as a term's changed blocks are held: what
        reads or changes its blocks needs them."""
        found = self._held.pop(tid, None)
        if found is None:
            return
        counts, (offsets, levels, tags) = found
        start = 0
        for number, count in zip(self._lists[tid], counts):
            key, end = number << 32 | tid, start + count
            self._blocks[key] = summary_extend(None, offsets[2 * start:2 * end], levels[start:end], tags[start:end])
            self._dirty[key] = None
            start = end

    def _unsplice(self, tid: int) -> None:
        """Give a term spliced onto its head (``_spliced``) the state the general path leaves: each block that
        gained sessions summarized and changed, and its map, where it has one, joined with what it gained."""
        if tid not in self._spliced:
            return
        self._block_list(tid)  # its blocks with those it gained, while they are still spliced
        numbers, counts, (offsets, levels, tags), keys = self._spliced.pop(tid)
        start = 0
        for number, count in zip(numbers, counts):
            key = number << 32 | tid
            before = super().block_raw(tid, number)  # ``None``: a block new to the term
            end = start + count - (0 if before is None else Block(before).sessions)
            self._blocks[key] = summary_extend(before, offsets[2 * start:2 * end], levels[start:end], tags[start:end])
            self._dirty[key] = None
            start = end
            if mapped_size(count):
                block_map = super().term_map(tid, number)
                block_map = BitMap() if block_map is None else block_map.copy()
                for at, gained in keys:
                    if at == number:
                        block_map |= gained
                self._maps[key] = block_map
                self._maps_changed.add(key)

    def _set_block(self, tid: int, block: int, raw: bytes | None) -> None:
        self._spill(tid)
        self._unsplice(tid)
        key = block << 32 | tid
        self._blocks[key] = raw
        self._dirty[key] = None
        blocks = self._block_list(tid)
        if raw is not None and (not blocks or blocks[-1] < block):  # new sessions' blocks come last
            blocks.append(block)
            return
        at = bisect.bisect_left(blocks, block)
        present = at < len(blocks) and blocks[at] == block
        if raw is None and present:
            del blocks[at]
        elif raw is not None and not present:
            blocks.insert(at, block)

    def term_map(self, tid: int, block: int) -> BitMap | None:
        self._settle(tid)
        self._unsplice(tid)
        key = block << 32 | tid
        self._read_stale_of(key)
        return self._maps[key] if key in self._maps else super().term_map(tid, block)

    def term_repeats(self, tid: int, block: int) -> tuple[BitMap, bytes] | None:
        self._settle(tid)
        key = block << 32 | tid
        self._read_stale_of(key)
        if key not in self._repeats:
            return super().term_repeats(tid, block)
        found = self._repeats[key]
        return found.merged() if found else None

    def block_levels(self, block: int) -> list[int]:
        self._append_pending()
        self._whole_levels(block)
        return sorted((key & 0xFF for key, found in self._levels.items() if key >> 8 == block and found),
                      reverse=True)

    def level_blocks(self) -> dict[int, list[int]]:
        self._append_pending()
        self._read_stale_levels()
        found = {level: set(blocks) for level, blocks in super().level_blocks().items()}
        for key, messages in self._levels.items():
            if messages:
                found.setdefault(key & 0xFF, set()).add(key >> 8)
            elif key & 0xFF in found:
                found[key & 0xFF].discard(key >> 8)
        return {level: sorted(blocks) for level, blocks in found.items() if blocks}

    def level_messages(self, block: int, level: int) -> BitMap | None:
        self._append_pending()
        self._read_stale_levels()
        key = block << 8 | level
        if key not in self._levels:
            return super().level_messages(block, level)
        return self._levels[key] or None

    def _level_set(self, block: int, level: int) -> BitMap:
        """The block's messages at ``level`` as the batch changes them."""
        key = block << 8 | level
        found = self._levels.get(key)
        if found is None:
            found = (None if key in self._levels else super().level_messages(block, level)) or BitMap()
            self._levels[key] = found
        self._levels_changed.add(key)
        return found

    def _whole_levels(self, block: int) -> None:
        """Read every level of the block's messages into the batch."""
        self._read_stale_levels()
        if block in self._levels_whole:
            return
        self._levels_whole.add(block)
        for level in super().block_levels(block):
            if block << 8 | level not in self._levels:
                self._levels[block << 8 | level] = super().level_messages(block, level)

    def _read_stale_levels(self) -> None:
        """Read the levels of the messages of the sessions a removal touched again from their chunks."""
        stale, self._levels_stale = self._levels_stale, set()
        for sid in sorted(stale):
            block, offset = block_of(sid), offset_of(sid)
            self._whole_levels(block)
            keys = session_map_keys(offset)
            for key, found in self._levels.items():
                if key >> 8 == block and found and found.intersect(keys):
                    found.difference_update(keys)
                    self._levels_changed.add(key)
            for number, raw in enumerate(self.chunks(sid)):
                first = number * CHUNK_MESSAGES
                for index, level in enumerate(chunk_levels(raw)[:max(0, LAST_TAG - first)]):
                    if level:  # a message without terms (redacted) has none
                        self._level_set(block, level).add((first + index) << MAP_SHIFT | offset)

    def _placed(self, key: int, summary: Block) -> BitMap:
        """The message-map keys of the sessions of a term's block (``key``) that their tags give, and their repeated
        messages: a tag names the one message holding the term, whose level the block's messages by level give; a
        session holding it in several (``MULTI``) is left to read from its postings (``_maps_stale``)."""
        offsets, tags = summary.sids_raw(), summary.tags()
        found = _single_keys(offsets, tags)
        several = tags.translate(_MULTI_BIT)
        if several.count(0) != len(tags):
            self._maps_stale.setdefault(key, set()).update(compress(u16s(offsets), several))
        block = key >> 32
        self._whole_levels(block)
        by_level = [(at & 0xFF, messages) for at, messages in self._levels.items() if at >> 8 == block and messages]
        repeats = self._repeats_of(key)
        messages = [named << MAP_SHIFT | offset for offset, named in zip(u16s(offsets), tags)]
        # Each message's level where the block's messages by level hold it, the first level that does: one
        # intersection a level, not a look into each level for each session.
        stored_levels: dict[int, int] = {}
        sessions = BitMap(messages)
        for level, held in by_level:
            for message in held & sessions:
                stored_levels.setdefault(message, level)
        changed = [(message, level) for message, level in zip(messages, summary.best_levels())
                   if message < LAST_KEYS and level != stored_levels.get(message, 0)]
        if changed:
            repeats.update(changed)
        return found

    def _repeats_of(self, key: int) -> ChangedRepeats:
        """The repeated messages of a term's block (``key``) as the batch changes them."""
        found = self._repeats.get(key)
        if found is None:
            stored = None if key in self._repeats else super().term_repeats(key & MAX_ID, key >> 32)
            found = self._repeats[key] = ChangedRepeats(stored)
        return found

    def _read_stale_of(self, key: int) -> None:
        stale = self._maps_stale.pop(key, None)
        if stale:
            self._read_stale({key: stale})

    def _read_stale(self, stale: dict[int, set[int]]) -> None:
        """Read the sessions message maps wait for (``stale``: a map's block key → their offsets) from their
        postings, with the messages where the term has a level of its own: each session's chunks once, for all
        its terms."""
        bits = formats.BLOCK_BITS
        by_session: dict[int, list[int]] = {}
        for key, offsets in stale.items():
            first = key >> 32 << bits
            for offset in offsets:
                by_session.setdefault(first | offset, []).append(key)
        for sid, keys in sorted(by_session.items()):
            offset = offset_of(sid)
            found: list[list[int]] = [[] for _ in keys]
            own: list[dict[int, int]] = [{} for _ in keys]
            for number, raw in enumerate(self.chunks(sid)):
                first = number * CHUNK_MESSAGES
                common = chunk_levels(raw)
                for into, repeated, occurrences in zip(found, own, chunk_occurrences_of(raw, [key & MAX_ID
                                                                                              for key in keys])):
                    for index, level in occurrences:
                        message = min(first + index, LAST_TAG) << MAP_SHIFT | offset
                        into.append(message)
                        if level != common[index] and message < LAST_KEYS:
                            repeated[message] = level
            for key, messages, repeated in zip(keys, found, own):
                keys_of = self._maps[key]
                if keys_of is not None:
                    keys_of.difference_update(session_map_keys(offset))
                    keys_of.update(messages)
                    levels = self._repeats_of(key)
                    levels.drop_session(offset)
                    levels.update(repeated.items())
                    self._repeats_changed.add(key)

    def _map_changed(self, tid: int, block: int, before: bytes | None, after: bytes | None,
                     noted: BitMap | None, stale: int | None = None) -> None:
        """Follow a change of the term's block summary from ``before`` to ``after`` in its message map and
        repeated messages: the keys ``noted`` (of messages appended) are added, the session at offset ``stale``
        is read again (when the map is next read)."""
        key = block << 32 | tid
        if not mapped(after):
            if mapped(before):
                self._maps_changed.add(key)
                self._repeats_changed.add(key)
                self._maps[key] = self._repeats[key] = None
            elif key in self._repeats_changed:  # it lost them earlier in the batch: they stay gone
                self._repeats[key] = None
            else:  # what appends noted of an unmapped block is not kept
                self._repeats.pop(key, None)
            self._maps_stale.pop(key, None)
            return
        self._maps_changed.add(key)
        self._repeats_changed.add(key)
        if before is None:
            found = BitMap()
        elif not mapped(before):  # the block gains its map: its sessions so far are read from their tags
            found = self._placed(key, Block(before))
        else:
            stored = self._maps[key] if key in self._maps else super().term_map(tid, block)
            if stored is None:
                raise StoreCorrupted(f"the search index is damaged: term {tid} lacks a message map")
            found = stored
        self._maps[key] = found
        if noted is not None:
            found |= noted
        if stale is not None:
            self._maps_stale.setdefault(key, set()).add(stale)

    def messages(self) -> int:
        self._append_pending()
        return self._messages

    def _state(self, sid: int) -> _SessionState:
        state = self._sessions.get(sid)
        if state is None:
            stored = super().session(sid)
            # A session without a record counts no messages, and has no chunks unless its record was lost: one past
            # the session of the last stored chunk (a new session's, the common case) is known to have none.
            checked = stored is None and sid > self._last_chunked_session()
            state = self._sessions[sid] = _SessionState(*(stored or (0, 0)), checked=checked)
        return state

    def _last_chunked_session(self) -> int:
        """``last_chunked_session`` as stored, read once a batch."""
        if self._last_chunked is None:
            self._last_chunked = super().last_chunked_session()
        return self._last_chunked

    def _checked(self, sid: int) -> _SessionState:
        """The session's state, its stored count checked first against its stored chunks (by one lookup of its last
        chunk) unless the batch already did: a change puts postings where the count says the session's chunks end,
        and a damaged count would put them past the others or over a chunk still holding messages."""
        state = self._state(sid)
        if not state.checked:
            self._check_count(sid, state, super().last_chunk(sid))
        return state

    @staticmethod
    def _check_count(sid: int, state: _SessionState, last: tuple[int, bytes] | None) -> None:
        """Check that the session's stored chunks (``last``: its last one, number and bytes) end where its stored
        count says, before the batch changes either (from then on it changes both in step); keep the last chunk for
        the change that reads it."""
        end = 0 if last is None else last[0] * CHUNK_MESSAGES + chunk_size(last[1])
        if end != state.count:
            raise StoreCorrupted(f"the search index is damaged: session {sid} counts {state.count} messages, but "
                                 f"its chunks of postings end at {end}")
        if last is not None:
            state.chunks.setdefault(*last)
        state.checked = True

    def session(self, sid: int) -> tuple[int, int] | None:
        self._append_pending()
        state = self._sessions.get(sid)
        if state is None:
            return super().session(sid)
        return (state.count, state.activity) if state.count else None

    def activities(self, sids: Iterable[int]) -> dict[int, int]:
        self._append_pending()
        sids = list(sids)
        found = super().activities(sid for sid in sids if sid not in self._sessions)
        for sid in sids:
            state = self._sessions.get(sid)
            if state is not None and state.count:
                found[sid] = state.activity
        return found

    def chunk(self, sid: int, number: int) -> bytes | None:
        self._append_pending()
        state = self._state(sid)
        if number not in state.chunks:
            state.chunks[number] = None if state.loaded else super().chunk(sid, number)
        appended = state.appended.pop(number, None)
        if appended:
            state.chunks[number] = chunk_append(state.chunks[number], appended)
        return state.chunks[number]

    def chunks(self, sid: int) -> list[bytes]:
        self._append_pending()
        state = self._state(sid)
        if not state.loaded:
            stored = super().chunks(sid)
            if not state.checked:  # unchanged by the batch: its last stored chunk is at hand
                self._check_count(sid, state, (len(stored) - 1, stored[-1]) if stored else None)
            for number, raw in enumerate(stored):
                state.chunks.setdefault(number, raw)
            state.loaded = True
        needed = (state.count + CHUNK_MESSAGES - 1) // CHUNK_MESSAGES
        # Every chunk the session has is held by now (stored, or begun by the batch): a damaged count naming more is
        # told at once, not after a look for each chunk it names (billions, for a count gone wild).
        found = [self.chunk(sid, number) for number in range(needed)] if needed <= len(state.chunks) else []
        chunks = [raw for raw in found if raw is not None]
        if len(chunks) != needed:
            raise StoreCorrupted(f"the search index is damaged: session {sid} lacks chunks of postings")
        return chunks

    # -- changes -------------------------------------------------------------------

    def _new_tids(self, terms: list[str], keys: list[bytes]) -> range:
        """Ids given now to ``terms``, new to the index, in order (``keys``: their UTF-8)."""
        first = self._next_tid
        tids = range(first, first + len(terms))
        if tids and tids[-1] > MAX_ID:
            raise EventStoreError("the search index has run out of term ids; rebuild it")
        self._next_tid += len(terms)
        self._tids.update(zip(terms, tids))
        if max(map(len, keys), default=0) <= MAX_TERM_BYTES:  # each key is its UTF-8, and no entry repeats it
            self._new_terms.update(zip(tids, zip(keys, map(U32.pack, tids))))
        else:
            self._new_terms.update((tid, (key, term_entry(term, key, tid)))
                                   for term, key, tid in zip(terms, map(term_key, terms), tids))
        return tids

    def _missing_tids(self, missing: list[bytes]) -> list[int]:
        """The ids of the terms ``missing`` names (their UTF-8, in order, repeats kept), none of which the batch has
        met: looked up, or given now to those new to the index in the order they first come; kept for the batch's
        later messages."""
        keys = list(dict.fromkeys(missing))
        terms = list(map(bytes.decode, keys))
        if self.fresh:  # nothing is stored, and every term the batch gave an id is known by its key
            tids: Sequence[int] = self._new_tids(terms, keys)
        else:
            found = self._looked_up_tids(terms)
            new = [not tid for tid in found]  # a stored id of 0 is damage: the term gets a new one, as if not stored
            given = iter(self._new_tids(list(compress(terms, new)), list(compress(keys, new))))
            tids = [tid or next(given) for tid in found]
        known = self._key_tids
        known.update(zip(keys, tids))
        return list(map(known.__getitem__, missing))

    def _looked_up_tids(self, terms: list[str]) -> list[int | None]:
        """``_tid`` of each of ``terms``, those the batch has not looked up read together (``IndexReader.tids``)."""
        known = self._tids
        unknown = [term for term in terms if term not in known]
        known.update((term, tid) for term, tid in zip(unknown, super().tids(unknown)) if tid is not None)
        return list(map(known.get, terms))

    def message_count(self, sid: int) -> int:
        """How many current messages session ``sid`` has, as of this batch."""
        self._append_pending()
        return self._state(sid).count

    def touch(self, sid: int, micros: int) -> None:
        self._changes = None
        pending = self._pending
        if pending and pending[-1][0] == sid and pending[-1][1]:  # its run gives it messages: the touch is its time
            pending[-1] = (sid, pending[-1][1], micros)
            return
        self._append_pending()
        state = self._state(sid)
        if state.count:
            state.activity = micros

    def append(self, sid: int, texts: Sequence[str], micros: int) -> None:
        """Append messages to session ``sid``: their postings go to its chunks, and to the batch's flat arrays,
        from which ``settle`` groups the session's entry for each of their terms (its best level, the first message
        with it, several messages).

        Runs of appends are collected, and indexed together once they hold ``_APPEND_EVERY`` messages or anything
        else reads or changes the batch (``_append_pending``): their terms are cut at once, looked up with one
        ``map``, then counted, given levels and packed over whole arrays (``grouping.indexed``).
        """
        self._changes = None
        self._pending.append((sid, list(texts), micros))
        self._pending_messages += len(texts)
        if self._pending_messages >= _APPEND_EVERY:
            self._append_pending()

    def _append_pending(self) -> None:
        """Index the runs of appends collected since the batch last did: what any read or other change of the
        batch does first. The batch settles after the run whose postings reach ``_SETTLE_EVERY``, as if each run
        had been indexed alone."""
        runs = self._pending
        if not runs:
            return
        self._pending, self._pending_messages = [], 0
        while runs:
            found = self._indexed(runs)
            reaching = bisect.bisect_left(found.ends, _SETTLE_EVERY - len(self._postings))
            if reaching >= len(runs):
                self._add_indexed(runs, found)
                return
            if reaching < len(runs) - 1:  # indexed again up to that run: the terms keep the ids just given
                found = self._indexed(runs[:reaching + 1])
            self._add_indexed(runs[:reaching + 1], found)
            runs = runs[reaching + 1:]
            self.settle()

    def _indexed(self, runs: list[_Run]) -> Indexed:
        """The postings of ``runs`` (``grouping.indexed``); the terms met first get their ids, in order."""
        texts: list[str] = []
        sids, firsts, sizes = [], [], []
        counts: dict[int, int] = {}  # a session's messages, as its earlier runs leave them
        for sid, run, _ in runs:
            count = counts.get(sid)
            if count is None:  # checked here, before the batch holds anything of the runs
                count = self._checked(sid).count
            texts += run
            sids.append(sid)
            firsts.append(count)
            sizes.append(len(run))
            counts[sid] = count + len(run)
        keys = term_keys_of(texts if REDACTED not in texts else ["" if text == REDACTED else text for text in texts])
        known = self._key_tids
        # The ids in a numpy array, and the keys dropped once the unknown ones are taken: a list of every occurrence
        # would be walked by each collection while the new terms' ids are given and the runs indexed. Filled from
        # the lookups' iterator: an ``array`` made from their list converts each id by a format string's parse.
        ids = np.fromiter(map(known.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        unknown = np.flatnonzero(ids < 0)  # terms not looked up yet
        missing = list(map(keys.__getitem__, unknown.tolist()))
        del keys
        ids[unknown] = self._missing_tids(missing)
        return indexed(ids, sids, firsts, sizes, formats.BLOCK_BITS)

    def _add_indexed(self, runs: list[_Run], found: Indexed) -> None:
        """Add the indexed postings of ``runs`` to the batch: its flat arrays, the sessions' chunks, the blocks'
        messages by level, and the notes of the messages where a term has a level of its own."""
        batch, added = self._postings, found.postings
        batch.tids += added.tids
        batch.codes += added.codes
        batch.sizes += added.sizes
        batch.own_tids += added.own_tids
        batch.own_codes += added.own_codes
        repeated_in = self._repeated.__getitem__
        for tid, note in zip(*found.repeated):
            repeated_in(tid).append(note)
        for block, level, messages in found.levels:
            self._level_set(block, level).update(messages)
        at = 0
        for sid, texts, micros in runs:
            state = self._state(sid)
            self._add_to_chunks(state, sid, found.messages[at:at + len(texts)])
            at += len(texts)
            state.activity = micros
            self._messages += len(texts)

    def _add_to_chunks(self, state: _SessionState, sid: int, postings: list[ChunkMessage]) -> None:
        """Add the postings of messages appended to the session to its chunks (encoded when next read)."""
        count = state.count  # checked against the session's chunks (``_indexed``)
        while postings:
            number, place = divmod(count, CHUNK_MESSAGES)
            if not place:
                state.chunks[number] = None
            added = postings[:CHUNK_MESSAGES - place]
            del postings[:CHUNK_MESSAGES - place]
            # A tuple of at most a chunk's messages: joining one costs little, and it is not a list to walk.
            state.appended[number] = state.appended.get(number, ()) + tuple(added)
            state.changed(number)
            count += len(added)
        state.count = count

    def settle(self) -> None:
        """Group the batch's postings and fold them into the summaries and counts, each term once, and bring the
        message maps up to date (reading postings: ``flush`` may run in another transaction, where it reads nothing
        stored)."""
        self._append_pending()
        grouped, self._grouped = self._grouped, {}
        # The terms settle as the grouping yields them (with their parts grouped at earlier reads), so that a batch's
        # parts are never all held at once: each holds arrays, which the cyclic collector walks. In a batch that
        # meets stored terms, those a run of them splices together (``_splice_together``) settle there.
        for tid, part in self._grouped_now() if self.fresh else self._left_unspliced(grouped):
            parts = grouped.pop(tid, [])
            parts.append(part)
            self._settle_term(tid, parts)
        for tid, parts in grouped.items():
            self._settle_term(tid, parts)
        stale, self._maps_stale = self._maps_stale, {}
        self._read_stale(stale)
        self._read_stale_levels()
        self._read_changing_forms()

    def _read_changing_forms(self) -> None:
        """Read what ``flush`` needs of the terms whose stored form changes (``formats.wholes.stored_whole``), as it
        reads nothing stored: every block and map of a term stored in blocks that is now stored whole; and, of a
        term stored whole that is now stored in blocks, every block and map, to be written apart. (A term stored
        whole keeps its head, read when the batch read the term, for the blocks the batch did not change.)"""
        for tid, df in self._dfs.items():
            if tid >= self._first_tid or tid in self._spliced:
                continue  # new to this batch: nothing stored; spliced: stays stored whole (checked as it was)
            blocks = self._block_list(tid)
            whole = self._whole(tid)
            if stored_whole(df, blocks) == (whole is not None):
                continue
            for number in blocks:
                key = number << 32 | tid
                if self._block(tid, number) is None:
                    raise StoreCorrupted(f"the search index is damaged: term {tid} lacks a block of its summary")
                if key not in self._maps:
                    self._maps[key] = super().term_map(tid, number)
                if whole is not None:
                    self._dirty[key] = None
                    self._maps_changed.add(key)

    def _settle(self, tid: int) -> None:
        """Fold the noted entries of one term (a reader of the batch sees them; others wait, so that each term's
        blocks are raised once for all the entries a batch noted of them between its reads)."""
        self._append_pending()
        self._group_postings()
        parts = self._grouped.pop(tid, None)
        if parts:
            self._settle_term(tid, parts)

    def _group_postings(self) -> None:
        """Group the postings appended since the batch last grouped them, each term's part kept until the term
        settles."""
        for tid, part in self._grouped_now():
            self._grouped.setdefault(tid, []).append(part)

    def _grouped_now(self) -> Iterator[tuple[int, _Part]]:
        """Each term's part of the postings appended since the batch last grouped them, grouped by term and session
        in C (``grouping.group``)."""
        postings, self._postings = self._postings, Postings()
        if len(postings):
            for term in group(postings, formats.BLOCK_BITS, _POSTED_FROM):
                yield term[0], term[1:]

    def _settle_term(self, tid: int, parts: list[_Part]) -> None:
        """Fold one term's grouped parts into its blocks: their entries (a part's are of distinct sessions,
        ascending), message counts and the messages posted for its maps (and those with a level of their own)."""
        if len(parts) == 1:
            [(notes, columns, added, posted)] = parts
            runs = notes
        else:  # grouped between reads of other terms: a session's entries in several parts merge
            runs = array("Q", sorted(chain.from_iterable(part[0] for part in parts)))
            notes = _merged_notes(runs)
            columns, added = columns_of(packed_u64s(notes), formats.BLOCK_BITS), sum(part[2] for part in parts)
            posted = array("Q", sorted(chain.from_iterable(part[3] for part in parts)))
        own = self._repeated.pop(tid, None)
        dfs = self._dfs
        # A term new to the index that the batch has not changed yet (most terms of a rebuild, or of a first
        # catch-up) has nothing stored or held to read or merge with: without a block holding a map, it keeps its
        # columns as they come (``_held``), with no step a block (and no repeats: a block without a map keeps
        # none); else its blocks without a map are summarized as they come, with no step of the general path's (a
        # read, a raise, a map followed).
        new = tid >= self._first_tid and tid not in self._lists
        bounds = _bounds(notes)
        if new:
            counts = tuple([end - start for _, start, end in bounds]) if len(bounds) > 1 else (len(notes),)
            if not any(map(mapped_size, counts)):
                self._lists[tid] = array("I", [block for block, _, _ in bounds])
                self._held[tid] = counts, columns
                dfs[tid] = dfs.get(tid, 0) + added
                return
            numbers = self._lists[tid] = array("I")
        levelled: Sequence[int] = sorted(own) if own else ()  # few: the messages where the term repeats
        # A part's tag names its one message holding the term; a merged entry's does not: the parts' entries are
        # read for the keys their tags give (by block, where a block has a map).
        merged = None if runs is notes else runs
        single: dict[int, BitMap] = {}
        if not new and self._splice(tid, notes, added, columns, bounds, posted, levelled, merged, single):
            return
        for block, offsets, levels, tags in _sliced(columns, bounds):
            if new and not mapped_size(len(levels)):
                key = block << 32 | tid
                self._blocks[key] = summary_extend(None, offsets, levels, tags)
                self._dirty[key] = None
                numbers.append(block)  # ascending, as ``_set_block`` keeps them
                continue
            before = self._block(tid, block)
            after = summary_raise(before, offsets, levels, tags)
            self._set_block(tid, block, after)
            keys = None
            if mapped(after):
                repeated = _in_block(levelled, block)
                keys = _noted_keys(block, offsets, tags, posted, repeated, merged, single)
            self._map_changed(tid, block, before, after, keys)
            if keys is not None:
                self._posted_repeats(block << 32 | tid, repeated)
        df = dfs.get(tid)
        dfs[tid] = ((0 if new else super().df(tid)) if df is None else df) + added

    def _left_unspliced(self, earlier: dict[int, list[_Part]]) -> Iterator[tuple[int, _Part]]:
        """The terms the grouping yields, a run of them at a time, less those the run splices together."""
        terms = self._grouped_now()
        while run := list(islice(terms, _SPLICED_TOGETHER)):
            yield from self._splice_together(run, earlier)

    def _splice_together(self, run: list[tuple[int, _Part]], earlier: dict[int, list[_Part]]
                         ) -> list[tuple[int, _Part]]:
        """Splice at once (``_splice``'s outcome, in numpy calls over the run) the terms of ``run`` that ``_splice``
        would splice without a block with a map, and return the others, in order, to settle one by one: a later
        batch of a catch-up splices nearly every term it has, tens of thousands, each with a few entries.

        A term is left to ``_splice`` (which may splice it, or not) where anything but its head and this part could
        bear on it: a part grouped earlier (``earlier``), a read or change of it in the batch (its list, its
        count, a block read), a splice of it already, a head ``whole_ends`` does not vouch for, or a block that
        has or gains a map."""
        first_tid, lists, spliced, dfs = self._first_tid, self._lists, self._spliced, self._dfs
        chosen = [at for at, (tid, _) in enumerate(run) if tid < first_tid and tid not in earlier
                  and tid not in lists and tid not in spliced and tid not in dfs]
        if chosen and self._blocks:
            touched = {key & MAX_ID for key in self._blocks}
            chosen = [at for at in chosen if run[at][0] not in touched]
        if not chosen:
            return run
        tids = [run[at][0] for at in chosen]
        parts = [run[at][1] for at in chosen]
        ends = whole_ends(self.heads(tids))
        # The runs of entries in one block (a part's entries are of distinct sessions, ascending), term after term.
        sizes = np.fromiter(map(len, map(itemgetter(0), parts)), dtype=np.int64, count=len(parts))
        notes = np.frombuffer(b"".join(map(itemgetter(0), parts)), dtype=np.uint64)
        blocks = (notes >> np.uint64(_SID_SHIFT + formats.BLOCK_BITS)).astype(np.int64)
        term_firsts = np.cumsum(sizes) - sizes
        breaks = np.ones(len(notes), dtype=np.bool_)
        breaks[1:] = blocks[1:] != blocks[:-1]
        breaks[term_firsts] = True
        run_starts = np.flatnonzero(breaks)
        run_blocks = blocks[run_starts]
        firsts = np.searchsorted(run_starts, term_firsts)  # each term's first run, and past its last
        lasts = np.append(firsts[1:], len(run_starts))
        # The sessions each block has once spliced: a term's first block may be its stored last one.
        extends_last = run_blocks[firsts] == ends.last
        gained = np.diff(np.append(run_starts, len(notes)))
        gained[firsts] += np.where(extends_last, ends.sessions, 0)
        df = ends.df + np.fromiter(map(itemgetter(2), parts), dtype=np.int64, count=len(parts))
        first_sessions = (notes[term_firsts] >> np.uint64(_SID_SHIFT)).astype(np.int64)
        spliceable = ends.whole & (first_sessions > (ends.last << formats.BLOCK_BITS | ends.last_offset))
        spliceable &= ~np.logical_or.reduceat(mapped_sizes(gained), firsts)
        spliceable &= ~(extends_last & mapped_sizes(ends.sessions))
        spliceable &= (df > 0) & (df <= formats.WHOLE_UP_TO) & (run_blocks[lasts - 1] < JOINED_BLOCKS)
        numbers, counts = run_blocks.tolist(), gained.tolist()
        done = np.flatnonzero(spliceable).tolist()
        spliced_tids = list(map(tids.__getitem__, done))
        dfs.update(zip(spliced_tids, df[done].tolist()))
        spliced.update((tids[at], (tuple(numbers[start:end]), tuple(counts[start:end]), parts[at][1], ()))
                       for at, start, end in zip(done, firsts[done].tolist(), lasts[done].tolist()))
        settled = set(spliced_tids)
        repeated = self._repeated
        for tid in repeated.keys() & settled:  # its repeats matter only to blocks with a map
            del repeated[tid]
        return [term for term in run if term[0] not in settled]

    def _splice(self, tid: int, notes: Sequence[int], added: int, columns: tuple[bytes, bytes, bytes],
                bounds: Sequence[tuple[int, int, int]], posted: Sequence[int], levelled: Sequence[int],
                merged: Sequence[int] | None, single: dict[int, BitMap]) -> bool:
        """Settle a term stored whole that the batch only extends, by splicing its entries' columns onto what its
        head gains (``_spliced``), as a new term's are held: when every entry (``notes``, of ``columns`` cut into
        ``bounds``) is of a session past the term's last, no block gains or loses a map (its sessions read again,
        or its map dropped, on the general path), the term stays stored whole, and the batch has not read or
        otherwise changed its blocks. The blocks that have a map note the keys they gain and their repeated
        messages as the general path does; its message count is the batch's. ``False``, and nothing done,
        otherwise.

        A term spliced keeps no list of its blocks (``_block_list`` makes one when a read asks for it) and takes its
        message count from the head it reads: a later batch splices nearly every term, so each step a term shows in
        its catch-up (docs/benchmarks.md)."""
        spliced = self._spliced.get(tid)
        if spliced is not None:
            numbers, counts, held, keys = spliced
            last, sessions = numbers[-1], counts[-1]
            last_offset = int.from_bytes(held[0][-2:], "little")
            df = self._dfs[tid]
        elif tid in self._lists:  # the batch has read or changed its blocks
            return False
        else:
            head = self.head(tid)
            if head is None or not whole_head(head):
                return False
            df, last, sessions, last_offset = whole_end(head)
            df = self._dfs.get(tid, df)
            numbers, counts, held, keys = (), (), (b"", b"", b""), ()
        if notes[0] >> _SID_SHIFT <= (last << formats.BLOCK_BITS | last_offset):
            return False
        gained = [(block, end - start + (sessions if block == last else 0)) for block, start, end in bounds]
        if gained[0][0] == last and mapped_size(sessions) != mapped_size(gained[0][1]):
            return False
        df += added
        if not stored_whole(df, [gained[-1][0]]):
            return False
        if not self._blocks.keys().isdisjoint([block << 32 | tid for block, _ in gained]):
            return False
        for (block, count), (_, start, end) in zip(gained, bounds):
            if mapped_size(count):  # few: the columns are cut for these blocks alone
                key, repeated = block << 32 | tid, _in_block(levelled, block)
                keys += ((block, _noted_keys(block, columns[0][2 * start:2 * end], columns[2][start:end], posted,
                                             repeated, merged, single)),)
                self._repeats_changed.add(key)
                self._posted_repeats(key, repeated)
        self._dfs[tid] = df
        if spliced is None:
            self._spliced[tid] = (tuple([block for block, _ in gained]), tuple([count for _, count in gained]),
                                  columns, keys)
            return True
        if tid in self._lists:  # a read made its list: it gains the new blocks
            self._lists[tid].extend(block for block, _ in gained if block != last)
        if numbers[-1] == gained[0][0]:  # its last block gains more sessions: its count is the one now
            numbers, counts = numbers[:-1], counts[:-1]
        self._spliced[tid] = ((*numbers, *(block for block, _ in gained)), (*counts, *(count for _, count in gained)),
                              (held[0] + columns[0], held[1] + columns[1], held[2] + columns[2]), keys)
        return True

    def _posted_repeats(self, key: int, repeated: Sequence[int]) -> None:
        """Add to a mapped block's repeats (``key``) the messages noted with a level of their own (``repeated``)."""
        if repeated:
            self._repeats_of(key).update(posted_levels(repeated))

    def _lower(self, tid: int, sid: int, messages: int, code: int) -> None:
        """Take ``messages`` messages of session ``sid`` out of term ``tid``, whose entry there is now ``code``."""
        df = self.df(tid) - messages
        if df < 0:
            raise StoreCorrupted(f"the search index is damaged: term {tid} counts too few messages")
        self._dfs[tid] = df
        block = block_of(sid)
        before = self._block(tid, block)
        after = summary_set(before, offset_of(sid), code)
        self._set_block(tid, block, after)
        self._map_changed(tid, block, before, after, None, offset_of(sid))

    def remove_last(self, sid: int) -> None:
        self._changes = None
        self._append_pending()
        state = self._checked(sid)
        if not state.count:
            raise StoreCorrupted(f"the search index is damaged: session {sid} has no message to remove")
        number = (state.count - 1) // CHUNK_MESSAGES
        tids, levels = self._pop_message(state, sid, number)
        state.changed(number)
        state.count -= 1
        self._messages -= 1
        if self._unpost(sid, tids, levels):
            return
        self._levels_stale.add(sid)
        for tid in tids:
            raw_block = self.block_raw(tid, block_of(sid))
            entry = 0 if raw_block is None else Block(raw_block).entry_of(offset_of(sid))
            self._lower(tid, sid, 1, self._entry(sid, tid) if entry & MULTI else 0)

    def _pop_message(self, state: _SessionState, sid: int, number: int) -> tuple[Sequence[int], bytes]:
        """Take session ``sid``'s last message out of its last chunk (``number``): its term ids and their levels.
        A message not yet encoded into the chunk leaves the postings kept for it (a streamed reply's replacements
        encode nothing)."""
        size = state.count - number * CHUNK_MESSAGES
        appended = state.appended.get(number)
        if appended:
            stored = state.chunks[number]
            if len(appended) + (0 if stored is None else chunk_size(stored)) != size:
                raise StoreCorrupted(f"the search index is damaged: the last chunk of session {sid} is wrong")
            low, high, common, places, own_levels = appended[-1]
            state.appended[number] = appended[:-1]
            posted = [*u16s(low), *high]
            posted_levels = bytearray((common,)) * len(posted)
            for place, level in zip(places, own_levels):
                posted_levels[place] = level
            return posted, bytes(posted_levels)
        raw = self.chunk(sid, number)
        if raw is None or chunk_size(raw) != size:
            raise StoreCorrupted(f"the search index is damaged: the last chunk of session {sid} is wrong")
        state.chunks[number], tids, levels = chunk_pop(raw)
        return tids, levels

    def _unpost(self, sid: int, tids: Sequence[int], levels: bytes) -> bool:
        """Take session ``sid``'s last message (its term ids ``tids`` and their ``levels``) out of the batch if its
        postings are among the last ``_UNPOST_WITHIN`` messages' of the flat arrays: nothing has grouped them yet, so
        no term's blocks, message count or maps hold it, and dropping its postings (and its key in its block's
        messages by level, and the places where a term repeats in it) undoes its append. ``False``, and nothing
        done, otherwise.

        The session's latest code in the arrays is its last message's: a removal either drops its message's
        postings here or groups all of them, and so does a clear (through the counts it lowers)."""
        batch = self._postings
        codes = batch.codes
        end = len(codes)
        at = next((at for at in range(end - 1, max(end - 1 - _UNPOST_WITHIN, -1), -1)
                   if codes[at] >> _SID_SHIFT == sid), None) if tids else None
        if at is None:
            return False
        code = codes[at]
        start = len(batch.tids) - sum(batch.sizes[at + 1:]) - len(tids)  # the later messages' postings follow
        del batch.tids[start:start + len(tids)], codes[at], batch.sizes[at]
        own = len(levels) - levels.count(code >> 8 & 0xFF)  # its terms at another level than those it holds once
        if own:  # the session's latest: the later messages' are other sessions'
            own_codes = batch.own_codes
            last = next(at for at in range(len(own_codes) - 1, -1, -1) if own_codes[at] >> _SID_SHIFT == sid)
            del own_codes[last + 1 - own:last + 1], batch.own_tids[last + 1 - own:last + 1]
        message = ((code & LAST_TAG) ^ LAST_TAG) << MAP_SHIFT | offset_of(sid)
        if message < LAST_KEYS:
            common = message_level(levels)
            self._level_set(block_of(sid), common).discard(message)
            noted = block_of(sid) << _POSTED_BLOCK | message
            for tid, level in zip(tids, levels):
                if level != common:  # its note is the term's last but those of the later messages
                    repeated = self._repeated[tid]
                    del repeated[next(at for at in range(len(repeated) - 1, -1, -1)
                                      if repeated[at] & _NOT_LEVEL == noted)]
        return True

    def _entry(self, sid: int, tid: int) -> int:
        """The summary entry of term ``tid`` over the session's current messages (0: in none)."""
        best = first = count = 0
        for number, raw in enumerate(self.chunks(sid)):
            for index, level in chunk_occurrences(raw, tid):
                count += 1
                if level > best:
                    best, first = level, number * CHUNK_MESSAGES + index
        return best << 8 | tag(first, count > 1) if count else 0

    def clear(self, sid: int) -> None:
        self._changes = None
        self._append_pending()
        state = self._checked(sid)
        if not state.count:
            return
        counts: Counter[int] = Counter()
        for raw in self.chunks(sid):
            counts.update(chunk_counts(raw))
        for tid, count in counts.items():
            self._lower(tid, sid, count, 0)
        self._levels_stale.add(sid)
        for number in list(state.chunks):
            state.chunks[number] = None
            state.changed(number)
        state.appended.clear()
        self._messages -= state.count
        state.count = 0

    # -- writing -------------------------------------------------------------------

    def flush(self, txn: WriteTransaction) -> None:
        """Write the batch through ``txn``: every changed entry once, in key order (densely packed into an empty
        index). May run again in a retried transaction: it only reads the batch, and writes the entries it built
        then (or that ``written_bytes`` built) without building them again."""
        for space, items in self._changes_to_write(txn):
            _write(txn, space, items)
        spaces = self.spaces
        txn.put(spaces.meta, META_MESSAGES, count_value(self._messages))
        if self._next_tid != self._first_tid:
            txn.put(spaces.meta, META_NEXT_TID, count_value(self._next_tid))

    def written_bytes(self) -> int:
        """The bytes of keys and values ``flush`` writes (read through the batch's own transaction, which must still
        be open): built now, and kept for ``flush`` until the batch changes, so that the store can make room for
        them before the write transaction."""
        # Summed in C passes: a first catch-up writes a few items a term and a message.
        return sum(sum(map(len, map(itemgetter(0), items))) + sum(map(len, filter(None, map(itemgetter(1), items))))
                   for _, items in self._changes_to_write(self.txn))

    def _changes_to_write(self, txn: ReadTransaction) -> list[tuple[Space, list[tuple[bytes, bytes | None]]]]:
        """``_built_changes``, built through ``txn`` only if the batch has changed since they were last built."""
        if self._changes is None:
            self._changes = self._built_changes(txn)
        return self._changes

    def _built_changes(self, txn: ReadTransaction) -> list[tuple[Space, list[tuple[bytes, bytes | None]]]]:
        """Every changed entry of the batch by space, in key order (``None``: delete), settled first; ``txn`` reads
        the names of terms that go (the state the batch was folded from)."""
        self.settle()
        for tid in [tid for tid in self._held if not stored_whole(self._dfs[tid], self._lists[tid])]:
            self._spill(tid)  # its blocks are written apart
        spaces = self.spaces
        terms, names = self._dictionary_changes(txn)
        heads: list[tuple[bytes, bytes | None]] = []
        # Block key → what to write apart (``None``: delete), the blocks of terms stored whole left out.
        apart_blocks = {key: self._blocks[key] for key in self._dirty}
        apart_maps = {key: self._maps[key] for key in self._maps_changed}
        changed: dict[int, list[int]] = {}  # term id → its blocks the batch changed
        for key in apart_blocks.keys() | apart_maps.keys():
            changed.setdefault(key & MAX_ID, []).append(key >> 32)
        held_terms, dfs, lists = self._held, self._dfs, self._lists
        for tid in sorted(dfs):
            found = held_terms.get(tid)
            if found is not None:  # new, stored whole (the others were spilled above), no block of it read or changed
                heads.append((id_key(tid), unmapped_whole(dfs[tid], lists[tid], *found)))
                continue
            spliced = self._spliced.get(tid)
            if spliced is not None:  # stays stored whole (``_splice`` checked it), no block of it changed
                heads.append((id_key(tid), self._extended_head(tid, spliced)))
                continue
            df, blocks = self._dfs[tid], self._block_list(tid)
            if (df == 0) != (not blocks):
                raise StoreCorrupted(f"the search index is damaged: term {tid} has {df} messages but "
                                     f"{'no' if not blocks else 'some'} sessions")
            head = None
            if df and stored_whole(df, blocks):
                head = self._whole_head(tid, df, blocks, changed.get(tid, ()))
                apart = () if tid >= self._first_tid else self.blocks_apart(tid)
                for number in changed.get(tid, ()):
                    apart_blocks.pop(number << 32 | tid, None)
                    apart_maps.pop(number << 32 | tid, None)
                for number in apart:  # stored in blocks before
                    apart_blocks[number << 32 | tid] = apart_maps[number << 32 | tid] = None
            elif df:
                head = head_value(df, blocks)
            heads.append((id_key(tid), head))
        summaries = [(key.to_bytes(8, "big"), raw) for key, raw in sorted(apart_blocks.items())]  # block_key's bytes
        maps = [(key.to_bytes(8, "big"), None if found is None else map_value(found))
                for key, found in sorted(apart_maps.items())]
        # A block's repeats the batch did not change are stored as they are: not written again.
        repeats = [(key.to_bytes(8, "big"), repeats_value(*held.merged()) if held else None)
                   for key in sorted(self._repeats_changed) if key in self._repeats
                   if not (held := self._repeats[key]) or held.changed]
        levels = [(level_key(key >> 8, key & 0xFF), map_value(at) if (at := self._levels[key]) else None)
                  for key in sorted(self._levels_changed)]
        docs: list[tuple[bytes, bytes | None]] = []
        sessions: list[tuple[bytes, bytes | None]] = []
        for sid in sorted(self._sessions):
            state = self._sessions[sid]
            docs += [(chunk_key(sid, number), self.chunk(sid, number)) for number in state.changed_chunks()]
            sessions.append((id_key(sid), session_value(state.count, state.activity) if state.count else None))
        if self._messages < 0:  # more messages left the index than it counted: the stored count is damaged
            raise StoreCorrupted("the search index is damaged: it counts fewer messages than it holds")
        return [(spaces.terms, terms), (spaces.names, names), (spaces.summary, heads), (spaces.blocks, summaries),
                (spaces.maps, maps), (spaces.repeats, repeats), (spaces.levels, levels), (spaces.docs, docs),
                (spaces.sessions, sessions)]

    def _whole_head(self, tid: int, df: int, blocks: Sequence[int], changed: Sequence[int]) -> bytes:
        """The head of a term stored whole (``formats.wholes``): the blocks the batch changed from the batch, the
        others from its stored head as they are (read nothing stored: ``flush`` may run in another transaction)."""
        stored = None if tid >= self._first_tid else self._whole(tid)
        if stored is None:  # new, or stored in blocks before: every block read into the batch
            return self._whole_of_batch(tid, df, blocks)
        head = None if changed else self.head(tid)  # the value ``stored`` was read from
        if head is not None and df == df_of_value(head):
            return head
        # The runs of stored blocks the batch did not change, each taken in one slice a column.
        again = set(changed)
        fresh, kept = [number for number in blocks if number in again], stored.runs_outside(changed)
        keys = stored.keys_outside(changed)
        counts: list[int] = []
        columns: list[tuple[bytes, bytes, bytes]] = []
        for number, start, end in heapq.merge(kept, ((number, -1, -1) for number in fresh)):
            if start >= 0:
                counts += stored.counts(start, end)
                columns.append(stored.span(start, end))
                continue
            key = number << 32 | tid
            block = Block(self._batch_block(tid, number))
            keys |= block_keys(number, block, self._maps[key] if key in self._maps else stored.block_map(number))
            counts.append(block.sessions)
            columns.append((block.sids_raw(), block.best_levels(), block.tags()))
        return whole_value(df, blocks, counts, columns, keys)

    def _extended_head(self, tid: int, spliced: _Splice) -> bytes:
        """The head of a term spliced (``_spliced``): its stored one, read as it was spliced, and what it gained."""
        gaining, sessions, gained, gained_keys = spliced
        head = self.head(tid)
        assert head is not None
        return whole_extended(head, self._dfs[tid], gaining, sessions, gained,
                              [found.shift(number << JOINED_SHIFT) for number, found in gained_keys])

    def _whole_of_batch(self, tid: int, df: int, blocks: Sequence[int]) -> bytes:
        """The head of a term stored whole from its blocks in the batch: joined from its columns when it is held as
        them (``_held``: most new terms'), else from each block's summary decoded."""
        held = self._held.get(tid)
        if held is not None:
            return unmapped_whole(df, blocks, *held)
        return whole_of_blocks(df, [(number, Block(self._batch_block(tid, number)), self._maps.get(number << 32 | tid))
                                    for number in blocks])

    def _batch_block(self, tid: int, number: int) -> bytes:
        """The summary of term ``tid``'s block ``number`` the batch read or changed."""
        raw = self._blocks.get(number << 32 | tid)
        if raw is None:
            raise StoreCorrupted(f"the search index is damaged: term {tid} lacks a block of its summary")
        return raw

    def _dictionary_changes(self, txn: ReadTransaction) -> tuple[list[tuple[bytes, bytes | None]],
                                                                  list[tuple[bytes, bytes | None]]]:
        """What ``search.terms`` and ``search.names`` gain and lose (``None``): the new terms that some
        message still holds come in (one whose messages were all removed before they settled has no count);
        every term no message holds any more goes, so that no removed or redacted word stays behind as a key."""
        dfs = self._dfs
        gone = {tid for tid, df in dfs.items() if not df}
        # The new terms' ``(key, entry)`` as ``_new_tid`` made them, not made again (a first batch has a term about
        # every message, and each tuple counts towards the cyclic collector's next collection).
        added = [tid for tid in self._new_terms if dfs.get(tid)]
        terms: list[tuple[bytes, bytes | None]] = list(map(self._new_terms.__getitem__, added))
        names: list[tuple[bytes, bytes | None]] = [(id_key(tid), key) for tid, (key, _) in zip(added, terms)]
        for tid in gone:
            key = None if tid >= self._first_tid else txn.get(self.spaces.names, id_key(tid))
            if key is not None:
                terms.append((bytes(key), None))
                names.append((id_key(tid), None))
        # Sorted by key alone (a term id's key is there once), then checked: a key both added and removed is
        # damage (a stored term whose id was lost, brought back under a new id).
        terms.sort(key=itemgetter(0))
        keys = list(map(itemgetter(0), terms))
        if any(map(eq, keys, keys[1:])):
            raise StoreCorrupted("the search index is damaged: a term's key is both added and removed by one batch")
        return terms, sorted(names, key=itemgetter(0))


def _bounds(notes: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(block, first note, past its last)`` of each block of a term's noted entries (ascending), found by
    bisection."""
    shift = _SID_SHIFT + formats.BLOCK_BITS
    size = len(notes)
    block = notes[0] >> shift
    if block == notes[-1] >> shift:  # most terms of a batch: one block
        return [(block, 0, size)]
    found = []
    start = 0
    while start < size:
        block = notes[start] >> shift
        end = bisect.bisect_left(notes, (block + 1) << shift, start)
        found.append((block, start, end))
        start = end
    return found


def _sliced(columns: tuple[bytes, bytes, bytes], bounds: Sequence[tuple[int, int, int]]
            ) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """``(block, offsets, levels, tags)`` of each block (``_bounds``) of a term's columns (``grouping.columns_of``)."""
    offsets, levels, tags = columns
    for block, start, end in bounds:
        yield block, offsets[2 * start:2 * end], levels[start:end], tags[start:end]


def _noted_keys(block: int, offsets: bytes, tags: bytes, posted: Sequence[int], repeated: Sequence[int],
                merged: Sequence[int] | None, single: dict[int, BitMap]) -> BitMap:
    """The message-map keys a term's block that has a map gains from its settled entries there (``offsets``,
    ``tags``): of its ``posted`` messages, of those where it repeats (``repeated``), and those its entries' tags name.
    ``merged``: the parts' entries when several parts merged (a merged entry's tag names no one message), whose tags
    are read instead, for all blocks at once into ``single``."""
    keys = posted_keys(_in_block(posted, block)) | posted_keys(repeated)
    if merged is None:
        keys |= _single_keys(offsets, tags)
    else:
        if not single:
            single.update((at, _single_keys(at_offsets, at_tags)) for at, at_offsets, _, at_tags
                          in _sliced(columns_of(packed_u64s(merged), formats.BLOCK_BITS), _bounds(merged)))
        keys |= single[block]
    return keys


def _in_block(messages: Sequence[int], block: int) -> Sequence[int]:
    """The posted ``messages`` (ascending) of ``block``."""
    start = bisect.bisect_left(messages, block << _POSTED_BLOCK)
    return messages[start:bisect.bisect_left(messages, (block + 1) << _POSTED_BLOCK, start)]


def _single_keys(offsets: bytes, tags: bytes) -> BitMap:
    """The message-map keys that the tags of a block's entries (``offsets``: u16 bytes) give where one message holds
    the term (no ``MULTI``): the tag is that message's index."""
    found = placed(offsets, tags)
    found.remove_range(MULTI_KEYS, 1 << 32)
    return found


#: A ``bytes.translate`` table that keeps a tag's ``MULTI`` bit alone.
_MULTI_BIT = bytes(value & MULTI for value in range(256))


def _merged_notes(notes: Iterable[int]) -> array[int]:
    """Notes (in session order) each session once: a session noted in several parts merges here (the merged note
    keeps the first one's count: its entry says several messages)."""
    merged = array("Q")
    last = -1
    for note in notes:
        sid = note >> _SID_SHIFT
        if sid == last:
            merged[-1] = merged[-1] & ~_ENTRY_MASK | _combined(merged[-1] & _ENTRY_MASK, note & _ENTRY_MASK)
        else:
            merged.append(note)
            last = sid
    return merged


def _combined(one: int, other: int) -> int:
    """The entry of a session's term from two of its entries (in no particular order): the best level, the first
    message with it, several messages."""
    if one >> 8 != other >> 8:
        return (one if one >> 8 > other >> 8 else other) | MULTI
    return (one if one & LAST_TAG <= other & LAST_TAG else other) | MULTI


#: Items that change at least this share of a space's entries rewrite it whole (``_rewritten``). Not fewer: a
#: rewrite frees and writes again the pages of the entries it keeps, and where values have pages of their own (a
#: term's blocks, of which a batch changes the last) those are pages that putting in place leaves alone.
_REWRITE_SHARE = 7 / 8


def _write(txn: WriteTransaction, space: Space, items: list[tuple[bytes, bytes | None]]) -> None:
    """Write ``items`` (in key order; ``None``: delete): those past the space's last key are appended, which fills
    each page, where inserts leave pages half empty (new sessions' keys come last in every space but the
    dictionary's). Items that change nearly every entry of the space rewrite it whole (``_rewritten``)."""
    last = txn.last(space)
    split = 0 if last is None else bisect.bisect_right(items, last[0], key=itemgetter(0))
    if split and split >= _REWRITE_SHARE * txn.count(space):
        _rewritten(txn, space, items)
        return
    for key, value in items[:split]:
        if value is None:
            txn.delete(space, key)
        else:
            txn.put(space, key, value)
    # The items themselves, not tuples made again: a catch-up writes some per message and per term, and each tuple
    # made would count towards the cyclic collector's next collection.
    appended = items[split:]
    txn.append_many(space, cast("list[tuple[bytes, bytes]]",
                                list(compress(appended, map(is_not, map(itemgetter(1), appended), repeat(None))))))


def _rewritten(txn: WriteTransaction, space: Space, items: list[tuple[bytes, bytes | None]]) -> None:
    """Write ``items`` by clearing the space and appending its every entry anew, the kept ones and the changed.

    A later batch of a bulk catch-up changes nearly every term's summary, each a little longer: put in place, the
    values split their pages, which are left about half full, and the commit frees every page the space had
    before. Appended, the pages are full: the space takes fewer pages, and so do the pages its next rewrite frees.
    """
    changed = {key for key, _ in items}
    kept_keys = [key for key in txn.scan_keys(space) if key not in changed]
    kept = txn.get_many(space, kept_keys)
    # Two runs in key order, distinct keys: one sort merges them in C (``heapq.merge`` steps in Python an entry).
    entries = sorted([*kept.items(), *(item for item in items if item[1] is not None)], key=itemgetter(0))
    txn.clear(space)
    txn.append_many(space, cast("list[tuple[bytes, bytes]]", entries))
