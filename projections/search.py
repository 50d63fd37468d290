"""The search index: ranked keyword search over the current messages, as a deferred read model.

What lives here, top to bottom:

* the pure part: BM25 weights (``term_weight``, ``impact``, ``level_weight``,
  ``idf``), phrase matching and ``snippet``;
* the stored forms (a ``_Summary`` per term, a chunk of postings per 64
  messages of a session) and their byte-level edits;
* ``_Reader`` / ``_Writer``: the stored state through one transaction, and a
  batch of changes held in memory that reads see (so a batch never written is
  an overlay: the index plus events it has not applied);
* ``SearchIndex``, the read model: it folds ``message_edit`` of every event
  into those forms, so only current messages match (``remove_last``,
  ``update_last``, clears, deletions, redactions remove; a restore adds back);
  checks itself against sessions folded from the log; answers queries.

Scoring. BM25 over messages, k1 = 1.2, b = 0.75. A message's weight for a
term, ``tf·(k1+1) / (tf + k1·(1 - b + b·dl/PIVOT))``, is computed when the
message is indexed and stored as one of 255 levels; the length pivot is a
constant (``PIVOT`` tokens) rather than the corpus average, so a stored
weight never goes stale and a session's best weight for a term can be kept
and read best first. The inverse document frequency is FTS5's,
``log((N - df + 0.5) / (df + 0.5))`` floored at 1e-6, from the current
counts at query time. A message scores the sum of ``idf × weight`` over the
query terms it holds (a phrase's terms only where the phrase is); a session
scores by its best message; equal scores order by most recent activity.

Storage (named databases ``search.*``):

* ``search.terms``: term (``tokenizer.term_key``) → term id (u32). Prefix
  queries walk its keys.
* ``search.summary``: term id → how many messages hold the term (u32), then
  its summary: each session that holds it with its best level and a tag
  (where that level is, whether several messages hold the term), sorted by
  session for binary search; a term in more than ``GROUPED_FROM`` sessions
  also keeps its sessions grouped by level, best first, so its top sessions
  are a prefix. 6 bytes per (term, session), 10 for frequent terms.
* ``search.docs``: session and chunk number → the postings of up to 64
  messages: each message's term ids (3 bytes, 4 once ids need it) and levels.
  The forward index: removals read what to take out, and a session's exact
  multi-term score is computed from it.
* ``search.sessions``: session → message count and latest activity;
  ``search.meta``: message count, next term id, generation (changes when the
  index is cleared, so term ids cached in memory are dropped).

Queries. One term: its best level groups, down to the ``limit``-th session.
Several: every session holding one query term scores by that term's level;
one holding several is resolved from the tags when possible, else scored
exactly (best upper bound first, only while the bound can still make the
``limit``); terms in many sessions go through a threshold algorithm over
their level groups instead of whole summaries.

Inline or deferred: deferred, by measurement (``benchmarks/bench_search.py``,
100,000 messages). Indexing one message in its own transaction costs two thirds
of the durable append itself (0.71 ms against 1.05 ms: 1.7x the append,
where the budget is 1.2x), because each of its ~30 terms rewrites its
summary; batched, each summary is decoded and written once per batch (0.15 ms
a message for a bulk build). So the facade does not apply this model in the
command's transaction, and an append costs what it costs without search
(0.99x measured). A search reads the index as of every committed event: when
the index lacks a few events it applies them in memory (an overlay, no
write); further behind, it is caught up first, folding in a read transaction
and writing in a short write one, as ``catch_up()`` does. The index takes
1.7x the space of FTS5's on the same corpus.
"""

from __future__ import annotations

import bisect
import heapq
import math
import os
import struct
import sys
from array import array
from collections import Counter
from contextlib import contextmanager
from functools import lru_cache
from itertools import compress, repeat
from operator import ge, itemgetter, mul, neg
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs

from eventstore._errors import EventStoreError, StoreCorrupted
from eventstore._time import to_micros
from eventstore.events import REDACTED

from eventstore.storage import ReadTransaction, WriteTransaction

from .readmodel import OpenSpace
from .session import (
    AppendMessage,
    Change,
    ClearMessages,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    SessionSnapshot,
    message_edit,
)
from .tokenizer import MAX_TERM_BYTES, QueryWord, term_key, token_spans, tokenize

__all__ = [
    "SearchIndex",
    "K1",
    "B",
    "PIVOT",
    "LEVELS",
    "CHUNK_MESSAGES",
    "term_weight",
    "impact",
    "level_weight",
    "idf",
    "phrase_in",
    "snippet",
]

K1 = 1.2
B = 0.75
#: The message length (in tokens) that BM25's length normalisation is relative to.
PIVOT = 40.0
#: A message's weight for a term is stored as one of this many levels (1 = lowest).
LEVELS = 255
#: Messages per forward-index chunk.
CHUNK_MESSAGES = 64

_LITTLE = sys.byteorder == "little"
_U32 = struct.Struct("<I")  # in values
_KEY = struct.Struct(">I")  # in keys: term ids, sessions
_CHUNK_KEY = struct.Struct(">II")  # session, chunk number
_SESSION = struct.Struct("<Iq")  # messages, latest activity µs
_U64 = struct.Struct("<Q")
_META_MESSAGES = b"messages"
_META_NEXT_TID = b"next_tid"
_META_GENERATION = b"generation"
#: Term ids a process keeps in memory at most.
_TID_CACHE_SIZE = 1 << 20
_MAX_ID = 0xFFFFFFFF
#: A query whose terms are in at most this many sessions all told is scored from whole summaries.
_MATERIALIZE_UP_TO = 4000
#: Appends noted before they are folded into the summaries (bounds a batch's memory).
_SETTLE_EVERY = 32768


# -- the pure part: weights, phrases, snippets ------------------------------------


def term_weight(tf: int, dl: int) -> float:
    """BM25's term-frequency part for a term seen ``tf`` times in a message of ``dl`` tokens."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / PIVOT))


@lru_cache(maxsize=65536)
def impact(tf: int, dl: int) -> int:
    """``term_weight`` as a level from 1 to ``LEVELS``."""
    return max(1, min(LEVELS, round(term_weight(tf, dl) * LEVELS / (K1 + 1))))


#: ``level_weight(level)`` for every level, by index.
_WEIGHTS = tuple(level * (K1 + 1) / LEVELS for level in range(LEVELS + 1))


def level_weight(level: int) -> float:
    """The term weight a stored level stands for."""
    return _WEIGHTS[level]


def idf(messages: int, df: int) -> float:
    """FTS5's inverse document frequency of a term in ``df`` of ``messages`` messages."""
    value = math.log((messages - df + 0.5) / (df + 0.5)) if df else 0.0
    return value if value > 0 else 1e-6


def phrase_in(terms: Sequence[str], phrase: Sequence[str], prefix: bool) -> bool:
    """Whether ``phrase`` occurs in the token sequence ``terms`` (its last token a prefix if ``prefix``)."""
    size = len(phrase)
    if not size:
        return False
    head, last = list(phrase[:-1]), phrase[-1]
    for start in range(len(terms) - size + 1):
        if size > 1 and (terms[start] != head[0] or terms[start:start + size - 1] != head):
            continue
        candidate = terms[start + size - 1]
        if candidate == last or (prefix and candidate.startswith(last)):
            return True
    return False


def _matched(terms: list[str], words: Sequence[QueryWord]) -> set[int]:
    """Indexes of the tokens of ``terms`` that a word of the query matches."""
    hits: set[int] = set()
    for index, term in enumerate(terms):
        for word in words:
            size = len(word.tokens)
            if index + 1 >= size and phrase_in(terms[index + 1 - size:index + 1], word.tokens, word.prefix):
                hits.update(range(index + 1 - size, index + 1))
    return hits


def snippet(text: str, words: Sequence[QueryWord], width: int = 12, mark: tuple[str, str] = ("[", "]")) -> str:
    """A short piece of ``text`` around its first match of ``words``, every matched token marked.

    Args:
        text: the message content.
        words: the parsed query.
        width: how many tokens to show.
        mark: what goes before and after a matched token.

    Returns:
        The excerpt, with "…" where text was cut. Reads only as far into a
        long text as the excerpt needs.
    """
    longest = max((len(word.tokens) for word in words), default=1)
    spans: list[tuple[int, int, str]] = []
    terms: list[str] = []
    first = None
    for span in token_spans(text):
        spans.append(span)
        terms.append(span[2])
        if first is None:
            tail = terms[-longest:]
            found = _matched(tail, words)
            if found:
                first = len(terms) - len(tail) + min(found)
        elif len(spans) >= first + width + longest:
            break
    if not spans:
        return " ".join(text[:80].split())
    complete = len(spans) < first + width + longest if first is not None else True
    first = first or 0
    begin = max(0, min(first - width // 3, len(spans) - width))
    end = min(len(spans), begin + width)
    hits = _matched(terms[begin:end], words)
    pieces = []
    cursor = 0 if begin == 0 else spans[begin][0]
    for index in range(begin, end):
        start, stop, _ = spans[index]
        pieces.append(text[cursor:start])
        token = text[start:stop]
        pieces.append(f"{mark[0]}{token}{mark[1]}" if index - begin in hits else token)
        cursor = stop
    last = complete and end == len(spans)
    if last:
        pieces.append(text[cursor:])
    body = " ".join("".join(pieces).split())
    return ("…" if begin > 0 else "") + body + ("" if last else "…")


# -- stored forms ------------------------------------------------------------------
#
# Values are little-endian, so that on the usual little-endian hosts a run of u32
# in a value is read, and binary-searched, in place (``memoryview.cast``); keys
# are big-endian, so that they sort by number.


def _unsigned(data: bytes | bytearray | memoryview, typecode: str) -> Sequence[int]:
    """The little-endian unsigned values (``array`` ``typecode``) in ``data``, without copying where it can."""
    if _LITTLE:
        return memoryview(data).cast(typecode)
    values = array(typecode)
    values.frombytes(data)
    values.byteswap()
    return values


def _u32s(data: bytes | memoryview) -> Sequence[int]:
    """The little-endian u32 values in ``data``."""
    return _unsigned(data, "I")


def _pack_u32s(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def _find_u32(data: bytes, pattern: bytes, start: int, end: int) -> int:
    """The offset of the first 4-byte-aligned (relative to ``start``) ``pattern`` in ``data[start:end]``, or -1."""
    position = data.find(pattern, start, end)
    while position >= 0 and (position - start) & 3:
        position = data.find(pattern, position + 1, end)
    return position


def _run_end(values: Sequence[int], start: int) -> int:
    """The end of the run of values equal to ``values[start]`` (``values`` sorted descending)."""
    value = values[start]
    low, high = start + 1, len(values)
    while low < high:
        middle = (low + high) // 2
        if values[middle] < value:
            high = middle
        else:
            low = middle + 1
    return low


# A term's summary: every session that contains the term, with the session's best level for it
# and a tag that says where that level is: bit 7 set when several of the session's messages
# contain the term, bits 0-6 the index of the first message with the best level (127: 127 or
# later). Two query terms whose tags are single and different are then known to sit in
# different messages, and equal ones (below 127) in the same message, without reading postings.
#
#   head      u32 sessions (n), u16 distinct levels (d), u8 flags
#   sorted    n × u32: the sessions, ascending
#   best      n bytes: the best level of each sorted session
#   tags      n bytes: the tag of each sorted session
# and, for a term in more than GROUPED_FROM sessions (flag 1), the sessions in level order:
#   levels    d bytes, descending
#   counts    d × u16 (or u32 with flag 2): sessions at each level
#   grouped   n × u32: the sessions, grouped by level in the order above, ascending within a level
# A smaller term is put in level order when it is read; this keeps the many rare terms small.
#
# In memory an entry is one int, ``level << 8 | tag``.
_SUMMARY_HEAD = struct.Struct("<IHB")
_GROUPED = 1
_WIDE_COUNTS = 2
_MULTI = 0x80
_LAST_TAG = 0x7F
#: Terms in more sessions than this store their sessions in level order too.
GROUPED_FROM = 256


def _tag(index: int, multi: bool) -> int:
    return (_MULTI if multi else 0) | min(index, _LAST_TAG)


class _Summary:
    """A stored summary, read in place."""

    __slots__ = ("raw", "sessions", "distinct", "flags", "best")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        n, distinct, flags = _SUMMARY_HEAD.unpack_from(raw)
        self.sessions, self.distinct, self.flags = n, distinct, flags
        self.best = _SUMMARY_HEAD.size + 4 * n
        size = self.best + 2 * n
        if flags & _GROUPED:
            size += distinct * (5 if flags & _WIDE_COUNTS else 3) + 4 * n
        if len(raw) != size:
            raise StoreCorrupted("the search index is damaged: a term summary has the wrong size")

    def _sorted_sids(self) -> Sequence[int]:
        return _u32s(memoryview(self.raw)[_SUMMARY_HEAD.size:self.best])

    def _levels(self) -> bytes:
        return self.raw[self.best:self.best + self.sessions]

    def _tags(self) -> bytes:
        return self.raw[self.best + self.sessions:self.best + 2 * self.sessions]

    def groups(self) -> Iterator[tuple[int, bytes]]:
        """``(level, sessions as little-endian u32 bytes)``, best level first, ascending within a level."""
        raw, n = self.raw, self.sessions
        if self.flags & _GROUPED:
            at = self.best + 2 * n
            distinct = self.distinct
            levels = raw[at:at + distinct]
            wide = self.flags & _WIDE_COUNTS
            counts = struct.unpack_from(f"<{distinct}{'I' if wide else 'H'}", raw, at + distinct)
            offset = at + distinct * (5 if wide else 3)
            for level, count in zip(levels, counts):
                yield level, raw[offset:offset + 4 * count]
                offset += 4 * count
            return
        best = self._levels()
        sids = self._sorted_sids()
        order = sorted(range(n), key=best.__getitem__, reverse=True)  # stable: ascending sessions
        start = 0
        while start < n:
            level = best[order[start]]
            end = start + best.count(level)  # a level's sessions are contiguous in ``order``
            yield level, _pack_u32s([sids[i] for i in order[start:end]])
            start = end

    def level_of(self, sid: int) -> int:
        """The best level of session ``sid``; 0 when it does not contain the term."""
        return self.entry_of(sid) >> 8

    def entry_of(self, sid: int) -> int:
        """``level << 8 | tag`` of session ``sid``; 0 when it does not contain the term."""
        sids = self._sorted_sids()
        index = bisect.bisect_left(sids, sid)
        if index < self.sessions and sids[index] == sid:
            at = self.best + index
            return self.raw[at] << 8 | self.raw[at + self.sessions]
        return 0

    def levels_of(self, sids: Sequence[int]) -> list[int]:
        """``level_of`` of many sessions."""
        found = self._sorted_sids()
        size = self.sessions
        raw, base = self.raw, self.best
        positions = map(bisect.bisect_left, repeat(found), sids)
        return [raw[base + p] if p < size and found[p] == s else 0 for p, s in zip(positions, sids)]

    def as_dict(self) -> dict[int, int]:
        """Session → best level."""
        return dict(zip(self._sorted_sids(), self._levels()))

    def entries(self) -> dict[int, int]:
        """Session → ``level << 8 | tag``."""
        codes = bytearray(2 * self.sessions)  # interleaved in C: tag, level as a little-endian u16
        codes[0::2], codes[1::2] = self._tags(), self._levels()
        return dict(zip(self._sorted_sids(), _unsigned(codes, "H")))


def _summary_of(entries: Mapping[int, int]) -> bytes | None:
    """The stored summary of ``entries`` (session → ``level << 8 | tag``); ``None`` when empty."""
    if not entries:
        return None
    sids = sorted(entries)
    codes = list(map(entries.__getitem__, sids))
    parts = [b"", _pack_u32s(sids), bytes([code >> 8 for code in codes]), bytes([code & 0xFF for code in codes])]
    flags = distinct = 0
    if len(sids) > GROUPED_FROM:
        by_level = sorted(sids, key=entries.__getitem__, reverse=True)
        levels = [entries[sid] >> 8 for sid in by_level]
        order, counts, start = [], [], 0
        while start < len(levels):
            end = _run_end(levels, start)
            order.append(levels[start])
            counts.append(end - start)
            by_level[start:end] = sorted(by_level[start:end])
            start = end
        distinct = len(order)
        flags = _GROUPED | (_WIDE_COUNTS if max(counts) > 0xFFFF else 0)
        parts += [bytes(order), struct.pack(f"<{distinct}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts),
                  _pack_u32s(by_level)]
    parts[0] = _SUMMARY_HEAD.pack(len(sids), distinct, flags)
    return b"".join(parts)


def _summary_set(raw: bytes | None, sid: int, code: int) -> bytes | None:
    """``raw`` with session ``sid`` at entry ``code`` (0: without it), edited as bytes."""
    if raw is None:
        return _summary_of({sid: code}) if code else None
    summary = _Summary(raw)
    n = summary.sessions
    sids = summary._sorted_sids()
    index = bisect.bisect_left(sids, sid)
    present = index < n and sids[index] == sid
    old = summary.entry_of(sid)
    if old == code:
        return raw
    grown = n + (not present) - (not code)
    grouped = bool(summary.flags & _GROUPED)
    if not grown:
        return None
    if grouped != (grown > GROUPED_FROM):
        entries = summary.entries()
        if code:
            entries[sid] = code
        else:
            del entries[sid]
        return _summary_of(entries)
    member = _U32.pack(sid)
    head, levels_at, tags_at, end = _SUMMARY_HEAD.size, summary.best, summary.best + n, summary.best + 2 * n
    start = head + 4 * index
    level, tag = bytes((code >> 8,)), bytes((code & 0xFF,))
    if not present:
        parts = [raw[head:start], member, raw[start:levels_at + index], level, raw[levels_at + index:tags_at + index],
                 tag, raw[tags_at + index:end]]
    elif not code:
        parts = [raw[head:start], raw[start + 4:levels_at + index], raw[levels_at + index + 1:tags_at + index],
                 raw[tags_at + index + 1:end]]
    else:
        parts = [raw[head:levels_at + index], level, raw[levels_at + index + 1:tags_at + index], tag,
                 raw[tags_at + index + 1:end]]
    if not grouped:
        return _SUMMARY_HEAD.pack(grown, 0, 0) + b"".join(parts)
    old_level, new_level = old >> 8, code >> 8
    distinct, wide = summary.distinct, summary.flags & _WIDE_COUNTS
    levels = bytearray(raw[end:end + distinct])
    counts = list(struct.unpack_from(f"<{distinct}{'I' if wide else 'H'}", raw, end + distinct))
    members = raw[end + distinct * (5 if wide else 3):]
    if old_level != new_level:
        if old_level:
            group = levels.index(old_level)
            first = 4 * sum(counts[:group])
            at = _find_u32(members, member, first, first + 4 * counts[group])
            if at < 0:
                raise StoreCorrupted("the search index is damaged: a term summary contradicts itself")
            members = members[:at] + members[at + 4:]
            counts[group] -= 1
            if not counts[group]:
                del levels[group], counts[group]
        if new_level:
            if new_level in levels:
                group = levels.index(new_level)
                counts[group] += 1
                at = 4 * sum(counts[:group + 1]) - 4
            else:
                group = sum(1 for existing in levels if existing > new_level)
                levels.insert(group, new_level)
                counts.insert(group, 1)
                at = 4 * sum(counts[:group])
            members = members[:at] + member + members[at:]
    flags = _GROUPED | (_WIDE_COUNTS if counts and max(counts) > 0xFFFF else 0)
    parts += [levels, struct.pack(f"<{len(counts)}{'I' if flags & _WIDE_COUNTS else 'H'}", *counts), members]
    return _SUMMARY_HEAD.pack(grown, len(levels), flags) + b"".join(parts)


# Appends not yet folded into a summary are noted per (term, session) as one int that ``max``
# combines: ``level << 33 | (_LAST_INDEX - index) << 1 | several``: the best level, the first
# message with it (a higher note for a smaller index), and whether several messages have the term.
_LAST_INDEX = 0xFFFFFFFF


def _note(level: int, index: int) -> int:
    return level << 33 | (_LAST_INDEX - index) << 1


def _merged(stored: int, note: int) -> int:
    """The entry of a session for a term after the appends that ``note`` sums up."""
    level, index = note >> 33, _LAST_INDEX - (note >> 1 & _LAST_INDEX)
    if not stored:
        return level << 8 | _tag(index, bool(note & 1))
    if level > stored >> 8:
        return level << 8 | _tag(index, True)
    return stored | _MULTI


def _summary_raise(raw: bytes | None, changes: Mapping[int, int]) -> bytes | None:
    """``raw`` updated with appended messages: session → their note (see ``_note``)."""
    if raw is not None and len(changes) * 16 < _SUMMARY_HEAD.unpack_from(raw)[0]:
        summary = _Summary(raw)
        for sid, note in changes.items():
            raw = _summary_set(raw, sid, _merged(summary.entry_of(sid), note))
            summary = _Summary(raw)  # type: ignore[arg-type]
        return raw
    entries = {} if raw is None else _Summary(raw).entries()
    get = entries.get
    for sid, note in changes.items():
        entries[sid] = _merged(get(sid, 0), note)
    return _summary_of(entries)


# A chunk: the postings of up to CHUNK_MESSAGES consecutive messages of a session.
#
#   head      u16 messages (m), u32 postings (p), u8 width of a term id (w: 3, or 4 once ids need it)
#   starts    (m + 1) × u32: where each message's postings start
#   terms     p × w bytes: term ids, ascending within a message
#   levels    p bytes
_CHUNK_HEAD = struct.Struct("<HIB")
_WIDE = 1 << 24  # the first term id that needs 4 bytes


def _chunk_parts(raw: bytes) -> tuple[int, int, int, int, int]:
    """(messages, postings, width, offset of the term ids, offset of the levels)."""
    count, postings, width = _CHUNK_HEAD.unpack_from(raw)
    terms = _CHUNK_HEAD.size + 4 * (count + 1)
    if width not in (3, 4) or len(raw) != terms + (width + 1) * postings:
        raise StoreCorrupted("the search index is damaged: a chunk of postings has the wrong size")
    return count, postings, width, terms, terms + width * postings


def _chunk_starts(raw: bytes, count: int) -> Sequence[int]:
    return _u32s(memoryview(raw)[_CHUNK_HEAD.size:_CHUNK_HEAD.size + 4 * (count + 1)])


def _ids(tids: Sequence[int], width: int) -> bytes:
    """Term ids as little-endian ``width``-byte integers."""
    packed = _pack_u32s(tids)
    if width == 4:
        return packed
    narrow = bytearray(3 * len(tids))  # drop every fourth (high) byte, in C
    narrow[0::3], narrow[1::3], narrow[2::3] = packed[0::4], packed[1::4], packed[2::4]
    return bytes(narrow)


def _unids(data: bytes, width: int) -> Sequence[int]:
    """The term ids in ``data`` (``width`` bytes each)."""
    if width == 4:
        return _u32s(data)
    wide = bytearray(len(data) // 3 * 4)
    wide[0::4], wide[1::4], wide[2::4] = data[0::3], data[1::3], data[2::3]
    return _u32s(wide)


def _chunk_append(raw: bytes | None, tids: Sequence[int], levels: bytes) -> bytes:
    wide = bool(tids) and tids[-1] >= _WIDE
    if raw is None:
        width = 4 if wide else 3
        return b"".join((_CHUNK_HEAD.pack(1, len(levels), width), _pack_u32s((0, len(levels))),
                         _ids(tids, width), levels))
    count, postings, width, terms, at = _chunk_parts(raw)
    if wide and width == 3:  # widen the whole chunk
        raw = b"".join((_CHUNK_HEAD.pack(count, postings, 4), raw[_CHUNK_HEAD.size:terms],
                        _pack_u32s(_unids(raw[terms:at], 3)), raw[at:]))
        count, postings, width, terms, at = _chunk_parts(raw)
    total = postings + len(levels)
    return b"".join((_CHUNK_HEAD.pack(count + 1, total, width), raw[_CHUNK_HEAD.size:terms], _U32.pack(total),
                     raw[terms:at], _ids(tids, width), raw[at:], levels))


def _chunk_pop(raw: bytes) -> tuple[bytes | None, Sequence[int], bytes]:
    """The chunk without its last message, and that message's term ids and levels."""
    count, _, width, terms, at = _chunk_parts(raw)
    start = _chunk_starts(raw, count)[count - 1]
    tids, levels = _unids(raw[terms + width * start:at], width), raw[at + start:]
    if count == 1:
        return None, tids, levels
    rest = b"".join((_CHUNK_HEAD.pack(count - 1, start, width), raw[_CHUNK_HEAD.size:terms - 4],
                     raw[terms:terms + width * start], raw[at:at + start]))
    return rest, tids, levels


def _chunk_message(raw: bytes, index: int) -> tuple[Sequence[int], bytes]:
    count, _, width, terms, at = _chunk_parts(raw)
    starts = _chunk_starts(raw, count)
    start, end = starts[index], starts[index + 1]
    return _unids(raw[terms + width * start:terms + width * end], width), raw[at + start:at + end]


def _chunk_occurrences(raw: bytes, tid: int) -> list[tuple[int, int]]:
    """``(message index in the chunk, level)`` of each message containing term ``tid``."""
    count, _, width, terms, at = _chunk_parts(raw)
    pattern = tid.to_bytes(width, "little")
    position = raw.find(pattern, terms, at)
    found: list[tuple[int, int]] = []
    starts = None
    while position >= 0:
        offset = position - terms
        if offset % width:
            position = raw.find(pattern, position + 1, at)
            continue
        if starts is None:
            starts = _chunk_starts(raw, count)
        posting = offset // width
        found.append((bisect.bisect_right(starts, posting) - 1, raw[at + posting]))
        position = raw.find(pattern, position + width, at)
    return found


def _chunk_counts(raw: bytes) -> Counter[int]:
    """How many of the chunk's messages contain each term."""
    _, _, width, terms, at = _chunk_parts(raw)
    return Counter(_unids(raw[terms:at], width))


# -- query results -----------------------------------------------------------------


#: Returns the contents of a session's current messages, oldest first (for phrase checks).
Texts = Callable[[int], Sequence[str]]


@attrs.define
class _Term:
    """One term of a query plan."""

    term: str
    tid: int
    weight: float
    summary: _Summary


@attrs.define
class _Phrase:
    """A query word of several tokens: at each position, the term ids that may stand there."""

    tokens: tuple[str, ...]
    prefix: bool
    positions: list[set[int]]


@attrs.define
class _Plan:
    """A parsed query resolved against the index."""

    terms: list[_Term]  # every term involved, in the canonical order of summation (by term)
    free: set[int]  # term ids that count wherever they occur
    phrases: list[_Phrase]


# -- reading and writing the stored state ---------------------------------------------


class _Reader:
    """The stored state of the index, read through one transaction.

    Term ids come from the index's process-wide cache when it holds them: a
    term keeps its id until the index is cleared, and clearing writes a new
    generation, which empties the cache. Only reads in read-only transactions
    fill the cache (``learn``), so it never holds an id a write might yet undo.
    """

    def __init__(self, index: SearchIndex, txn: ReadTransaction, learn: bool = False, fresh: bool = False) -> None:
        self.index, self.txn, self._learn, self._fresh = index, txn, learn and not fresh, fresh
        self._values: dict[int, bytes | None] = {}
        generation = txn.get(index._meta, _META_GENERATION)
        known = index._tid_cache
        if known[0] != generation:  # a rebuild since (or a reader of an older snapshot): another cache
            known = index._tid_cache = (generation, {})
        self._cache = known[1]

    def tid(self, term: str) -> int | None:
        if self._fresh:
            return None
        cache = self._cache
        found = cache.get(term)
        if found is not None:
            return found
        raw = self.txn.get(self.index._terms, term_key(term))
        if raw is None:
            return None
        found = _U32.unpack_from(raw)[0]
        if self._learn and len(cache) < _TID_CACHE_SIZE:
            cache[term] = found
        return found

    def prefix_tids(self, prefix: str) -> list[tuple[str, int]]:
        """``(term, term id)`` of every term that starts with ``prefix``."""
        key = prefix.encode("utf-8")[:MAX_TERM_BYTES]
        found: list[tuple[str, int]] = []
        if self._fresh:
            return found
        for raw_key, value in self.txn.scan(self.index._terms, key):
            if not raw_key.startswith(key):
                break
            term = bytes(value[4:] or raw_key).decode("utf-8")
            if term.startswith(prefix):
                found.append((term, _U32.unpack_from(value)[0]))
        return found

    def _term_value(self, tid: int) -> bytes | None:
        """A term's stored value: its message count (u32), then its summary."""
        values = self._values
        if tid not in values:
            values[tid] = None if self._fresh else self.txn.get(self.index._summary, _KEY.pack(tid))
        return values[tid]

    def df(self, tid: int) -> int:
        """How many current messages contain term ``tid``."""
        raw = self._term_value(tid)
        return 0 if raw is None else _U32.unpack_from(raw)[0]

    def summary_raw(self, tid: int) -> bytes | None:
        raw = self._term_value(tid)
        return None if raw is None else raw[4:]

    def summary(self, tid: int) -> _Summary | None:
        raw = self.summary_raw(tid)
        return None if raw is None else _Summary(raw)

    def session(self, sid: int) -> tuple[int, int] | None:
        """``(messages, latest activity µs)`` of a session that has messages."""
        if self._fresh:
            return None
        raw = self.txn.get(self.index._sessions, _KEY.pack(sid))
        return None if raw is None else _SESSION.unpack(raw)

    def activities(self, sids: Iterable[int]) -> dict[int, int]:
        keys = [_KEY.pack(sid) for sid in sids]
        found = self.txn.get_many(self.index._sessions, keys)
        return {_KEY.unpack(key)[0]: _SESSION.unpack(value)[1] for key, value in found.items()}

    def chunk(self, sid: int, number: int) -> bytes | None:
        return None if self._fresh else self.txn.get(self.index._docs, _CHUNK_KEY.pack(sid, number))

    def chunks(self, sid: int) -> list[bytes]:
        """Every chunk of a session, in order."""
        prefix = _KEY.pack(sid)
        found = []
        if not self._fresh:
            for key, value in self.txn.scan(self.index._docs, prefix):
                if key[:4] != prefix:
                    break
                found.append(value)
        return found

    def messages(self) -> int:
        raw = None if self._fresh else self.txn.get(self.index._meta, _META_MESSAGES)
        return 0 if raw is None else _U64.unpack(raw)[0]


class _Session:
    """A session being changed by a batch: message count, activity and the chunks read so far."""

    __slots__ = ("count", "activity", "chunks", "dirty", "loaded")

    def __init__(self, count: int, activity: int) -> None:
        self.count, self.activity = count, activity
        self.chunks: dict[int, bytes | None] = {}
        self.dirty: set[int] = set()
        self.loaded = False


class _Writer(_Reader):
    """A batch of changes: reads through it see them, ``flush`` writes them.

    Appends only note each term's best level per session and its new message
    count; ``settle`` folds those notes into each term's summary once, so a
    batch of many messages rewrites each summary once.
    """

    def __init__(self, index: SearchIndex, txn: ReadTransaction, learn: bool = False, fresh: bool = False) -> None:
        super().__init__(index, txn, learn, fresh)
        self._tids: dict[str, int] = {}
        self._new_terms: dict[bytes, bytes] = {}
        self._summaries: dict[int, bytes | None] = {}
        self._dfs: dict[int, int] = {}
        self._sessions: dict[int, _Session] = {}
        self._pending: dict[int, dict[int, int]] = {}
        self._pending_df: Counter[int] = Counter()
        self._unsettled = 0
        self._messages = super().messages()
        raw = None if fresh else txn.get(index._meta, _META_NEXT_TID)
        self._next_tid = 1 if raw is None else _U64.unpack(raw)[0]
        self._first_tid = 0 if fresh else self._next_tid

    # -- reads through the batch ---------------------------------------------------

    def tid(self, term: str) -> int | None:
        found = self._tids.get(term)
        if found is None:
            found = super().tid(term)
            if found is not None:
                self._tids[term] = found
        return found

    def prefix_tids(self, prefix: str) -> list[tuple[str, int]]:
        found = dict(super().prefix_tids(prefix))
        found.update((term, tid) for term, tid in self._tids.items() if term.startswith(prefix))
        return sorted(found.items())

    def df(self, tid: int) -> int:
        self._settle(tid)
        found = self._dfs.get(tid)
        if found is None:
            found = self._dfs[tid] = super().df(tid)
        return found

    def summary_raw(self, tid: int) -> bytes | None:
        self._settle(tid)
        if tid not in self._summaries:
            self._summaries[tid] = super().summary_raw(tid)
        return self._summaries[tid]

    def messages(self) -> int:
        return self._messages

    def _state(self, sid: int) -> _Session:
        state = self._sessions.get(sid)
        if state is None:
            state = self._sessions[sid] = _Session(*(super().session(sid) or (0, 0)))
        return state

    def session(self, sid: int) -> tuple[int, int] | None:
        state = self._sessions.get(sid)
        if state is None:
            return super().session(sid)
        return (state.count, state.activity) if state.count else None

    def activities(self, sids: Iterable[int]) -> dict[int, int]:
        sids = list(sids)
        found = super().activities(sid for sid in sids if sid not in self._sessions)
        for sid in sids:
            state = self._sessions.get(sid)
            if state is not None and state.count:
                found[sid] = state.activity
        return found

    def chunk(self, sid: int, number: int) -> bytes | None:
        state = self._state(sid)
        if number not in state.chunks:
            state.chunks[number] = None if state.loaded else super().chunk(sid, number)
        return state.chunks[number]

    def chunks(self, sid: int) -> list[bytes]:
        state = self._state(sid)
        if not state.loaded:
            for number, raw in enumerate(super().chunks(sid)):
                state.chunks.setdefault(number, raw)
            state.loaded = True
        found = [state.chunks.get(number) for number in range((state.count + CHUNK_MESSAGES - 1) // CHUNK_MESSAGES)]
        if any(raw is None for raw in found):
            raise StoreCorrupted(f"the search index is damaged: session {sid} lacks chunks of postings")
        return found  # type: ignore[return-value]

    # -- changes -------------------------------------------------------------------

    def _new_tid(self, term: str) -> int:
        tid = self._next_tid
        if tid > _MAX_ID:
            raise EventStoreError("the search index has run out of term ids; rebuild it")
        self._next_tid += 1
        self._tids[term] = tid
        key = term_key(term)
        full = term.encode("utf-8")
        self._new_terms[key] = _U32.pack(tid) + (full if key != full else b"")
        return tid

    def postings(self, text: str) -> tuple[list[int], bytes]:
        """The term ids (ascending) and levels of a message's text."""
        terms = tokenize(text)
        if not terms:
            return [], b""
        length = len(terms)
        counts = Counter(terms)
        known = self._tids.get
        tids = [known(term) or self._lookup(term) for term in counts]
        pairs = sorted(zip(tids, [impact(tf, length) for tf in counts.values()]))
        return [tid for tid, _ in pairs], bytes([level for _, level in pairs])

    def _lookup(self, term: str) -> int:
        return self.tid(term) or self._new_tid(term)

    def touch(self, sid: int, micros: int) -> None:
        state = self._state(sid)
        if state.count:
            state.activity = micros

    def append(self, sid: int, text: str, micros: int) -> None:
        state = self._state(sid)
        tids, levels = self.postings(text)
        number, place = divmod(state.count, CHUNK_MESSAGES)
        raw = self.chunk(sid, number) if place else None
        if place and raw is None:
            raise StoreCorrupted(f"the search index is damaged: session {sid} lacks its last chunk")
        state.chunks[number] = _chunk_append(raw, tids, levels)
        state.dirty.add(number)
        state.count += 1
        state.activity = micros
        self._messages += 1
        if not levels:
            return
        self._unsettled += 1
        if self._unsettled >= _SETTLE_EVERY:
            self.settle()
        self._pending_df.update(tids)
        pending = self._pending
        place = (_LAST_INDEX - state.count + 1) << 1
        for tid, level in zip(tids, levels):
            note = level << 33 | place
            sessions = pending.get(tid)
            if sessions is None:
                pending[tid] = {sid: note}
                continue
            earlier = sessions.get(sid)
            sessions[sid] = note if earlier is None else (earlier if earlier > note else note) | 1

    def settle(self) -> None:
        """Fold all pending appends into the summaries and counts, each term once."""
        for tid in list(self._pending):
            self._settle(tid)
        self._unsettled = 0

    def _settle(self, tid: int) -> None:
        """Fold the pending appends of one term (a reader of the batch sees them; others wait)."""
        best = self._pending.pop(tid, None)
        if best is None:
            return
        summaries, dfs = self._summaries, self._dfs
        raw = summaries[tid] if tid in summaries else _Reader.summary_raw(self, tid)
        summaries[tid] = _summary_raise(raw, best)
        df = dfs.get(tid)
        dfs[tid] = (_Reader.df(self, tid) if df is None else df) + self._pending_df.pop(tid)

    def _lower(self, tid: int, sid: int, messages: int, code: int) -> None:
        """Take ``messages`` messages of session ``sid`` out of term ``tid``, whose entry there is now ``code``."""
        df = self.df(tid) - messages
        if df < 0:
            raise StoreCorrupted(f"the search index is damaged: term {tid} counts too few messages")
        self._dfs[tid] = df
        self._summaries[tid] = _summary_set(self.summary_raw(tid), sid, code)

    def remove_last(self, sid: int) -> None:
        state = self._state(sid)
        if not state.count:
            raise StoreCorrupted(f"the search index is damaged: session {sid} has no message to remove")
        number = (state.count - 1) // CHUNK_MESSAGES
        raw = self.chunk(sid, number)
        if raw is None or _CHUNK_HEAD.unpack_from(raw)[0] != state.count - number * CHUNK_MESSAGES:
            raise StoreCorrupted(f"the search index is damaged: the last chunk of session {sid} is wrong")
        rest, tids, levels = _chunk_pop(raw)
        state.chunks[number] = rest
        state.dirty.add(number)
        state.count -= 1
        self._messages -= 1
        for tid, level in zip(tids, levels):
            raw_summary = self.summary_raw(tid)
            entry = 0 if raw_summary is None else _Summary(raw_summary).entry_of(sid)
            self._lower(tid, sid, 1, self._entry(sid, tid) if entry & _MULTI else 0)

    def _entry(self, sid: int, tid: int) -> int:
        """The summary entry of term ``tid`` over the session's current messages (0: in none)."""
        best = first = count = 0
        for number, raw in enumerate(self.chunks(sid)):
            for index, level in _chunk_occurrences(raw, tid):
                count += 1
                if level > best:
                    best, first = level, number * CHUNK_MESSAGES + index
        return best << 8 | _tag(first, count > 1) if count else 0

    def clear(self, sid: int) -> None:
        state = self._state(sid)
        if not state.count:
            return
        counts: Counter[int] = Counter()
        for raw in self.chunks(sid):
            counts.update(_chunk_counts(raw))
        for tid, count in counts.items():
            self._lower(tid, sid, count, 0)
        for number in list(state.chunks):
            state.chunks[number] = None
            state.dirty.add(number)
        self._messages -= state.count
        state.count = 0

    # -- writing -------------------------------------------------------------------

    def flush(self) -> None:
        """Write the batch: every changed entry once, in key order (densely packed into an empty index)."""
        self.settle()
        index, txn = self.index, self.txn
        terms = sorted(self._new_terms.items())
        summaries: list[tuple[bytes, bytes | None]] = []
        for tid in sorted(self._summaries):
            df = self._dfs.get(tid)
            if df is None:
                continue  # read, never changed
            raw = self._summaries[tid]
            if (df == 0) != (raw is None):
                raise StoreCorrupted(f"the search index is damaged: term {tid} has {df} messages but "
                                     f"{'no' if raw is None else 'some'} sessions")
            summaries.append((_KEY.pack(tid), None if raw is None else _U32.pack(df) + raw))
        docs: list[tuple[bytes, bytes | None]] = []
        sessions: list[tuple[bytes, bytes | None]] = []
        for sid in sorted(self._sessions):
            state = self._sessions[sid]
            docs += [(_CHUNK_KEY.pack(sid, number), state.chunks.get(number)) for number in sorted(state.dirty)]
            sessions.append((_KEY.pack(sid), _SESSION.pack(state.count, state.activity) if state.count else None))
        for db, items in ((index._terms, terms), (index._summary, summaries), (index._docs, docs),
                          (index._sessions, sessions)):
            self._write(db, items)
        txn.put(index._meta, _META_MESSAGES, _U64.pack(self._messages))
        if self._next_tid != self._first_tid:
            txn.put(index._meta, _META_NEXT_TID, _U64.pack(self._next_tid))

    def _write(self, db: Any, items: list[tuple[bytes, bytes | None]]) -> None:
        txn = self.txn
        if not txn.count(db):
            # Appending in key order fills each page, where updates in place leave them half empty.
            txn.append_many(db, [(key, value) for key, value in items if value is not None])
            return
        for key, value in items:
            if value is None:
                txn.delete(db, key)
            else:
                txn.put(db, key, value)


# -- the read model ------------------------------------------------------------------


class SearchIndex:
    """Ranked keyword search over the current messages of every live session (a deferred read model)."""

    name = "search"
    code_version = 1
    #: Not applied in the command's transaction: the facade catches it up before reads.
    inline = False

    def __init__(self, open_space: OpenSpace) -> None:
        self._terms = open_space("search.terms")
        self._summary = open_space("search.summary")
        self._docs = open_space("search.docs")
        self._sessions = open_space("search.sessions")
        self._meta = open_space("search.meta")
        #: (generation, term → id) learnt from read transactions; see ``_Reader``.
        self._tid_cache: tuple[bytes | None, dict[str, int]] = (None, {})

    def _databases(self) -> tuple[Any, ...]:
        return self._terms, self._summary, self._docs, self._sessions, self._meta

    # -- folding events ------------------------------------------------------------

    def apply(self, txn: WriteTransaction, stream_id: int, events: Sequence[Change]) -> None:
        """Fold recorded events of one session into the index (as one batch)."""
        with self.batch(txn) as writer:
            self.fold(writer, stream_id, events)

    @contextmanager
    def batch(self, txn: WriteTransaction) -> Iterator[_Writer]:
        """A batch for ``fold``: changes stay in memory and are written when the block ends."""
        writer = _Writer(self, txn)
        yield writer
        writer.flush()

    def prepare(self, txn: WriteTransaction, fresh: bool = False) -> _Writer:
        """A batch to fold in one transaction (a read one will do) and ``write`` in another.

        ``fresh``: build from nothing (a rebuild), ignoring what is stored.
        The stored index must not change between the two transactions.
        """
        return _Writer(self, txn, fresh=fresh)

    def write(self, writer: _Writer, txn: WriteTransaction) -> None:
        """Write a prepared batch through ``txn`` (clearing the index first for a fresh one). May run again."""
        if writer._fresh:
            self.clear(txn)
        writer.txn = txn
        writer.flush()

    def overlay(self, txn: ReadTransaction, pending: Iterable[tuple[int, Sequence[Change]]],
                read_only: bool = False) -> _Writer:
        """A view of the index with ``pending`` events applied in memory only, never written.

        ``read_only``: ``txn`` is a read transaction (the term-id cache may learn from it).
        """
        writer = _Writer(self, txn, learn=read_only)
        for stream_id, events in pending:
            self.fold(writer, stream_id, events)
        return writer  # what a query reads settles then, term by term

    @staticmethod
    def fold(writer: _Writer, stream_id: int, events: Sequence[Change]) -> None:
        """Apply the message edits of ``events`` (one session's, in order) to a batch."""
        if stream_id > _MAX_ID:
            raise EventStoreError(f"stream id {stream_id} is too large for the search index")
        for recorded in events:
            micros = to_micros(recorded.recorded_at)
            edit = message_edit(recorded)
            if isinstance(edit, AppendMessage):
                writer.append(stream_id, edit.message[0].content, micros)
            elif isinstance(edit, RemoveLastMessage):
                writer.remove_last(stream_id)
            elif isinstance(edit, ReplaceLastMessage):
                writer.remove_last(stream_id)
                writer.append(stream_id, edit.message.content, micros)
            elif isinstance(edit, ClearMessages):
                writer.clear(stream_id)
            elif isinstance(edit, ReplaceMessages):
                writer.clear(stream_id)
                for message, _ in edit.messages:
                    writer.append(stream_id, message.content, micros)
            elif isinstance(edit, RedactMessages):
                count = writer._state(stream_id).count
                writer.clear(stream_id)
                for _ in range(count):
                    writer.append(stream_id, REDACTED, micros)
            writer.touch(stream_id, micros)

    def clear(self, txn: WriteTransaction) -> None:
        for db in self._databases():
            txn.clear(db)
        txn.put(self._meta, _META_GENERATION, os.urandom(16))  # term ids change: caches must forget them

    # -- queries -------------------------------------------------------------------

    def reader(self, txn: ReadTransaction, read_only: bool = False) -> _Reader:
        """The index as stored, through ``txn`` (``read_only``: a read transaction, the cache may learn)."""
        return _Reader(self, txn, learn=read_only)

    def _plan(self, view: _Reader, words: Sequence[QueryWord]) -> _Plan | None:
        terms: dict[int, str] = {}
        free: set[int] = set()
        phrases: list[_Phrase] = []

        def resolve(token: str, prefix: bool) -> dict[int, str]:
            if prefix:
                return {tid: term for term, tid in view.prefix_tids(token)}
            tid = view.tid(token)
            return {} if tid is None else {tid: token}

        for word in words:
            if word.is_phrase:
                positions = []
                resolved: dict[int, str] = {}
                for place, token in enumerate(word.tokens):
                    found = resolve(token, word.prefix and place == len(word.tokens) - 1)
                    if not found:
                        break  # a token in no message: the phrase matches nothing
                    resolved.update(found)
                    positions.append(set(found))
                else:
                    terms.update(resolved)
                    phrases.append(_Phrase(word.tokens, word.prefix, positions))
            else:
                found = resolve(word.tokens[0], word.prefix)
                terms.update(found)
                free.update(found)
        messages = view.messages()
        plan_terms = []
        for tid, term in sorted(terms.items(), key=itemgetter(1)):
            summary = view.summary(tid)
            if summary is not None:
                plan_terms.append(_Term(term, tid, idf(messages, view.df(tid)), summary))
        present = {term.tid for term in plan_terms}
        free &= present
        phrases = [phrase for phrase in phrases if all(position & present for position in phrase.positions)]
        if not free and not phrases:
            return None
        needed = free.union(*(tid for phrase in phrases for tid in phrase.positions))
        return _Plan([term for term in plan_terms if term.tid in needed], free, phrases)

    def _evaluate(self, view: _Reader, plan: _Plan, sid: int, texts: Texts | None,
                  cache: dict[int, list[str]]) -> dict[int, float]:
        """Exact scores of the session's matching messages: message index → score."""
        found: dict[int, dict[int, int]] = {}
        for number, raw in enumerate(view.chunks(sid)):
            base = number * CHUNK_MESSAGES
            for term in plan.terms:
                for index, level in _chunk_occurrences(raw, term.tid):
                    found.setdefault(base + index, {})[term.tid] = level
        scores: dict[int, float] = {}
        for index, levels in found.items():
            counted = plan.free.intersection(levels)
            for phrase in plan.phrases:
                if all(position.intersection(levels) for position in phrase.positions) and \
                        self._phrase_holds(sid, index, phrase, texts, cache):
                    for position in phrase.positions:
                        counted.update(position.intersection(levels))
            if counted:
                scores[index] = sum(term.weight * _WEIGHTS[levels[term.tid]]
                                    for term in plan.terms if term.tid in counted)
        return scores

    @staticmethod
    def _phrase_holds(sid: int, index: int, phrase: _Phrase, texts: Texts | None,
                      cache: dict[int, list[str]]) -> bool:
        if texts is None:
            return True
        contents = cache.get(sid)
        if contents is None:
            contents = cache[sid] = list(texts(sid))
        if index >= len(contents):
            return False
        return phrase_in(tokenize(contents[index]), phrase.tokens, phrase.prefix)

    def search_sessions(self, view: _Reader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None) -> list[tuple[int, float]]:
        """The ``limit`` best sessions for ``words`` as ``(stream id, score)``: best first, then most recent.

        Args:
            view: the index through a transaction (``reader``) or a batch (``overlay``).
            words: the parsed query (``tokenizer.parse_query``).
            limit: how many sessions at most.
            texts: loads a session's message contents, to check phrases (words
                of several tokens); without it a phrase matches wherever all its
                tokens occur in one message.
        """
        plan = self._plan(view, words) if limit > 0 else None
        if plan is None:
            return []
        cutoff = None
        if len(plan.terms) == 1 and not plan.phrases:
            scored = self._single_term(plan.terms[0], limit)
        elif not plan.phrases and sum(term.summary.sessions for term in plan.terms) <= _MATERIALIZE_UP_TO:
            scored, cutoff = self._materialized(view, plan, limit)
        else:
            scored = self._threshold(view, plan, limit, texts, message_level=False)
        if not scored:
            return []
        if len(scored) > limit:
            if cutoff is None:
                cutoff = sorted(scored.values(), reverse=True)[limit - 1]
            candidates = list(compress(scored.keys(), map(ge, scored.values(), repeat(cutoff))))
        else:
            candidates = list(scored)
        # Activity orders equal scores only: read it for the sessions that tie.
        ties = Counter(map(scored.__getitem__, candidates))
        activity = view.activities([sid for sid in candidates if ties[scored[sid]] > 1]) if len(ties) < len(
            candidates) else {}
        ranked = sorted(zip(map(scored.__getitem__, candidates), map(activity.get, candidates, repeat(0)), candidates),
                        reverse=True)
        return [(sid, score) for score, _, sid in ranked[:limit]]

    def search_messages(self, view: _Reader, words: Sequence[QueryWord], limit: int,
                        texts: Texts | None = None) -> list[tuple[int, int, float]]:
        """The ``limit`` best current messages as ``(stream id, message index, score)``: best first, then newest."""
        plan = self._plan(view, words) if limit > 0 else None
        if plan is None:
            return []
        scored = self._threshold(view, plan, limit, texts, message_level=True)
        activity = view.activities({sid for sid, _ in scored})
        ranked = sorted(scored.items(), key=lambda item: (-item[1], -activity.get(item[0][0], 0),
                                                           -item[0][1], -item[0][0]))
        return [(sid, index, score) for (sid, index), score in ranked[:limit]]

    @staticmethod
    def _single_term(term: _Term, limit: int) -> dict[int, float]:
        """Sessions for a one-term query: its best level groups, through the group that reaches ``limit``."""
        summary = term.summary
        if not summary.flags & _GROUPED:  # few sessions: score them all
            table = list(map(mul, repeat(term.weight), _WEIGHTS))
            return dict(zip(summary._sorted_sids(), map(table.__getitem__, summary._levels())))
        scored: dict[int, float] = {}
        for level, members in summary.groups():
            scored.update(zip(_u32s(members), repeat(term.weight * _WEIGHTS[level])))
            if len(scored) >= limit:
                break
        return scored

    def _materialized(self, view: _Reader, plan: _Plan, limit: int) -> tuple[dict[int, float], float | None]:
        """Exact top scores when the query's terms are in few sessions all told (no phrases).

        Every session with one query term scores by that term's best level. A
        session with several is resolved from the terms' tags when each term is
        in one of its messages (same tag: same message, the weights add up;
        different tags: different messages). Otherwise it waits, scored later
        (best upper bound first, while that bound can still reach the
        ``limit``-th score): when only one of its terms is in several messages,
        by reading the few messages the others are in, else from all its postings.

        Returns the scores (exact for every session that can be among the
        ``limit`` best, lower bounds below them) and the ``limit``-th best score.
        """
        tables = [list(map(mul, repeat(term.weight), _WEIGHTS)) for term in plan.terms]
        alone = [dict(zip(term.summary._sorted_sids(), map(table.__getitem__, term.summary._levels())))
                 for term, table in zip(plan.terms, tables)]
        return self._resolve(view, plan, limit, tables, alone)

    def _resolve(self, view: _Reader, plan: _Plan, limit: int, tables: list[list[float]],
                 alone: list[dict[int, float]]) -> tuple[dict[int, float], float | None]:
        """The scoring of ``_materialized``, from each term's session → single-term score."""
        scored: dict[int, float] = {}
        parts = [(term.summary, table) for term, table in zip(plan.terms, tables)]
        for single in alone:
            scored.update(single)
        found: set[int] = set()
        for first, one in enumerate(alone):
            for other in alone[first + 1:]:
                found |= one.keys() & other.keys()
        if not found:
            return scored, None
        shared = list(found)
        # A shared session scores at least its best single term, at most the sum of them. Those whose
        # sum reaches the limit-th of the lower bounds are resolved, highest sum first, until the sum of
        # the next cannot reach the limit-th exact score found; the others keep their lower bound, which
        # is below every score returned.
        columns = [list(map(single.get, shared, repeat(0.0))) for single in alone]
        exact = dict(scored)
        for sid in shared:
            del exact[sid]
        best_scores = sorted(exact.values(), reverse=True)[:limit]  # sessions with one term: exact
        lower = list(map(max, *columns))
        scored.update(zip(shared, lower))
        floor = sorted(best_scores + lower, reverse=True)[limit - 1] if len(scored) >= limit else -1.0
        ahead = sorted(((upper, sid) for sid, upper in zip(shared, map(sum, zip(*columns)))
                        if upper * (1 + 1e-9) >= floor), reverse=True)
        cache: dict[int, list[str]] = {}
        # A dict of a term's entries costs about a tenth of a binary search per session it holds.
        lookups = [(summary.entries().get if len(ahead) * 10 > summary.sessions else summary.entry_of, table)
                   for summary, table in parts]
        full = len(best_scores) >= limit
        for upper, sid in ahead:
            if full and upper * (1 + 1e-9) < best_scores[-1]:
                break
            several, unknown, places, present = 0, False, [], []
            for lookup, table in lookups:
                code = lookup(sid)
                if code:
                    present.append((code, table))
                    if code & _MULTI:
                        several += 1
                    elif code & _LAST_TAG == _LAST_TAG:
                        unknown = True
                    else:
                        places.append(code & _LAST_TAG)
            if several > 1 or unknown:
                score = max(self._evaluate(view, plan, sid, None, cache).values())
            elif several:  # one term in several messages: only the others' messages can add up
                score = max(scored[sid], *self._evaluate_messages(view, plan, sid, places).values())
            elif len(set(places)) == len(places):  # each term in its own message: the best one alone
                score = scored[sid]
            else:  # some terms share a message, known by its tag
                sums: dict[int, float] = {}
                for code, table in present:
                    tag = code & _LAST_TAG
                    sums[tag] = sums.get(tag, 0) + table[code >> 8]
                score = max(sums.values())
            scored[sid] = score
            if not full:
                bisect.insort(best_scores, score, key=neg)
                full = len(best_scores) >= limit
            elif score > best_scores[-1]:
                best_scores.pop()
                bisect.insort(best_scores, score, key=neg)
        return scored, best_scores[-1] if full else None

    @staticmethod
    def _evaluate_messages(view: _Reader, plan: _Plan, sid: int, places: Iterable[int]) -> dict[int, float]:
        """Exact scores of some of a session's messages (by index), read from their postings alone."""
        scores: dict[int, float] = {}
        chunks: dict[int, bytes | None] = {}
        for index in places:
            number, place = divmod(index, CHUNK_MESSAGES)
            if number not in chunks:
                chunks[number] = view.chunk(sid, number)
            raw = chunks[number]
            if raw is None:
                raise StoreCorrupted(f"the search index is damaged: session {sid} lacks message {index}")
            tids, levels = _chunk_message(raw, place)
            total = 0.0
            for term in plan.terms:
                at = bisect.bisect_left(tids, term.tid)
                if at < len(tids) and tids[at] == term.tid:
                    total = total + term.weight * _WEIGHTS[levels[at]] if total else term.weight * _WEIGHTS[levels[at]]
            scores[index] = total
        return scores

    def _threshold(self, view: _Reader, plan: _Plan, limit: int, texts: Texts | None,
                   message_level: bool) -> dict[Any, float]:
        """The best exact scores, by a threshold algorithm over the terms' level groups.

        Each term lists its sessions by best level, best first. Groups are taken
        from the list whose next group could add the most; each new session gets
        an upper bound (the sum over the query terms of its best levels). A
        session with one query term (and no phrase) is scored from its level
        alone; others wait, best bound first, and are scored exactly from their
        postings only when their bound leads. It stops when neither the waiting
        sessions nor the unseen ones (bounded by the sum of the lists' next
        levels) can reach the ``limit``-th best score: sessions that tie with it
        are all scored.

        Returns session → score, or with ``message_level`` (session, message index) → score.
        """
        lists = []
        for term in plan.terms:
            groups = term.summary.groups()
            first = next(groups, None)
            if first is not None:
                lists.append([term.weight * _WEIGHTS[first[0]], term, first, groups])
        by_level_alone = not plan.phrases and not message_level
        seen: set[int] = set()
        scored: dict[Any, float] = {}
        best: list[float] = []  # min-heap of the ``limit`` best scores
        waiting: list[tuple[float, int]] = []  # max-heap of (-bound, session)
        cache: dict[int, list[str]] = {}

        def record(key: Any, score: float) -> None:
            scored[key] = score
            if len(best) < limit:
                heapq.heappush(best, score)
            elif score > best[0]:
                heapq.heapreplace(best, score)

        while lists or waiting:
            threshold = best[0] if len(best) >= limit else -1.0
            unseen = sum(entry[0] for entry in lists)
            leading = -waiting[0][0] if waiting else -1.0
            if unseen * (1 + 1e-9) < threshold and leading * (1 + 1e-9) < threshold:
                break
            if waiting and leading >= unseen:
                _, sid = heapq.heappop(waiting)
                messages = self._evaluate(view, plan, sid, texts, cache)
                if message_level:
                    for index, score in messages.items():
                        record((sid, index), score)
                elif messages:
                    record(sid, max(messages.values()))
                continue
            entry = max(lists, key=itemgetter(0))
            _, term, (level, members), groups = entry
            following = next(groups, None)
            if following is None:
                lists.remove(entry)
            else:
                entry[0], entry[2] = term.weight * _WEIGHTS[following[0]], following
            fresh = [sid for sid in _u32s(members) if sid not in seen]
            if not fresh:
                continue
            seen.update(fresh)
            others = [other for other in plan.terms if other is not term]
            contribution = term.weight * _WEIGHTS[level]
            if not others:
                rows: Iterable[tuple[int, ...]] = repeat(())
            else:
                rows = zip(*(other.summary.levels_of(fresh) for other in others))
            alone_ok = by_level_alone and term.tid in plan.free
            for sid, row in zip(fresh, rows):
                if alone_ok and not any(row):
                    record(sid, contribution)
                    continue
                bound = contribution + sum(other.weight * _WEIGHTS[lv] for other, lv in zip(others, row) if lv)
                heapq.heappush(waiting, (-bound, sid))
        return scored

    # -- audit ---------------------------------------------------------------------

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored index differs from one built afresh from ``sessions``."""
        return self.check_view(self.reader(txn), sessions)

    def check_view(self, view: _Reader, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """``check`` through a view: a reader, or the overlay of a read-only store."""
        problems: list[str] = []
        total = 0
        expected: dict[str, tuple[int, dict[int, int]]] = {}  # term → (messages, session → best level)
        for sid, session in sorted(sessions.items()):
            head = session.head
            contents = [message.content for message, _ in session.messages] if head.exists else []
            stored = view.session(sid)
            if not contents:
                if stored is not None:
                    problems.append(f"search: session {head.key!r} is indexed but has no messages")
                continue
            total += len(contents)
            activity = to_micros(head.last_activity) if head.last_activity is not None else 0
            if stored != (len(contents), activity):
                problems.append(f"search: session {head.key!r} is indexed with {stored} (messages, activity), "
                                f"the log says {(len(contents), activity)}")
                continue
            try:
                rows = [_chunk_message(raw, index) for raw in view.chunks(sid)
                        for index in range(_CHUNK_HEAD.unpack_from(raw)[0])]
            except StoreCorrupted as exc:
                problems.append(f"search: session {head.key!r}: {exc}")
                continue
            if len(rows) != len(contents):
                problems.append(f"search: session {head.key!r} has {len(rows)} messages indexed, "
                                f"{len(contents)} in the log")
                continue
            for index, (text, (tids, levels)) in enumerate(zip(contents, rows)):
                terms = tokenize(text)
                wanted: dict[int | None, int] = {}
                for term, tf in Counter(terms).items():
                    level = impact(tf, len(terms))
                    wanted[view.tid(term)] = level
                    count, best = expected.setdefault(term, (0, {}))
                    expected[term] = (count + 1, best)
                    best[sid] = _merged(best.get(sid, 0), _note(level, index))
                if wanted != dict(zip(tids, levels)):
                    problems.append(f"search: message {index} of session {head.key!r} is indexed with "
                                    "other terms than its content")
        if view.messages() != total:
            problems.append(f"search: {view.messages()} messages counted, {total} in the log")
        for term, (count, best) in sorted(expected.items()):
            tid = view.tid(term)
            summary = None if tid is None else view.summary(tid)
            if tid is None or summary is None:
                problems.append(f"search: the term {term!r} is missing")
                continue
            groups = [(level, list(_u32s(members))) for level, members in summary.groups()]
            grouped = {sid: level for level, members in groups for sid in members}
            order = [level for level, _ in groups]
            if view.df(tid) != count or summary.entries() != best or grouped != summary.as_dict() \
                    or sum(len(members) for _, members in groups) != summary.sessions \
                    or order != sorted(set(order), reverse=True):
                problems.append(f"search: the entry of term {term!r} differs from the log")
        if not isinstance(view, _Writer):
            stored_count = view.txn.count(self._summary)
            if stored_count != len(expected):
                problems.append(f"search: {stored_count} term summaries stored, {len(expected)} terms in the log")
            for key in view.txn.scan_keys(self._sessions):
                if _KEY.unpack(key)[0] not in sessions:
                    problems.append(f"search: stream {_KEY.unpack(key)[0]} is indexed but has no events")
        return problems

    def dump(self, txn: ReadTransaction) -> dict[str, Any]:
        """The index's content, independent of term ids, for comparing two builds."""
        names = {}
        for key, value in txn.scan(self._terms):
            names[_U32.unpack_from(value)[0]] = bytes(value[4:] or key).decode("utf-8")
        view = self.reader(txn)
        terms = {}
        for key, value in txn.scan(self._summary):
            tid = _KEY.unpack(key)[0]
            terms[names[tid]] = (view.df(tid), _Summary(bytes(value[4:])).entries())
        docs = {}
        for key, value in txn.scan(self._docs):
            raw = bytes(value)
            rows = []
            for index in range(_CHUNK_HEAD.unpack_from(raw)[0]):
                tids, levels = _chunk_message(raw, index)
                rows.append(sorted(zip((names[tid] for tid in tids), levels)))
            docs[_CHUNK_KEY.unpack(key)] = rows
        sessions = {_KEY.unpack(key)[0]: _SESSION.unpack(value) for key, value in txn.scan(self._sessions)}
        return {"terms": terms, "docs": docs, "sessions": sessions, "messages": view.messages()}
