"""Checking the search index against sessions folded from the log, and dumping it to compare two builds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from pyroaring import BitMap

from eventstore._errors import StoreCorrupted
from eventstore._time import to_micros

from ..session import SessionSnapshot
from . import formats
from .formats.arrays import u16s, u32s
from .formats.chunks import chunk_message, chunk_size, message_level
from .formats.maps import LAST_KEYS, MAP_SHIFT, mapped
from .formats.summaries import LAST_TAG, Summary, entry, merged
from .formats.wholes import stored_whole, whole_of_blocks
from .reader import IndexReader
from .scoring import impact
from .tokenizer import term_key
from .writer import indexed_terms

__all__ = ["check_index", "dump_index"]


def check_index(view: IndexReader, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
    """Problems where the index seen through ``view`` (a reader, or an overlay) differs from one built afresh
    from ``sessions`` (stream id → session folded from the log)."""
    problems: list[str] = []
    total = 0
    expected: dict[str, tuple[int, dict[int, int]]] = {}  # term → (messages, session → best level)
    keys: dict[str, dict[int, list[int]]] = {}  # term → block → its message-map keys
    repeats: dict[str, dict[int, dict[int, int]]] = {}  # term → block → message key → its level of its own there
    levels: dict[tuple[int, int], list[int]] = {}  # (block, level) → its messages' keys
    bits = formats.BLOCK_BITS
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
            rows = [chunk_message(raw, index) for raw in view.chunks(sid)
                    for index in range(chunk_size(raw))]
        except StoreCorrupted as exc:
            problems.append(f"search: session {head.key!r}: {exc}")
            continue
        if len(rows) != len(contents):
            problems.append(f"search: session {head.key!r} has {len(rows)} messages indexed, "
                            f"{len(contents)} in the log")
            continue
        for index, (text, (tids, stored_levels)) in enumerate(zip(contents, rows)):
            terms = indexed_terms(text)
            wanted: dict[int | None, int] = {}
            held = Counter(terms)
            key = min(index, LAST_TAG) << MAP_SHIFT | sid & (1 << bits) - 1
            common = message_level(bytes(impact(tf, len(terms)) for tf in held.values()))
            if terms and key < LAST_KEYS:
                levels.setdefault((sid >> bits, common), []).append(key)
            for term, tf in held.items():
                level = impact(tf, len(terms))
                wanted[view.tid(term)] = level
                count, best = expected.setdefault(term, (0, {}))
                expected[term] = (count + 1, best)
                best[sid] = merged(best.get(sid, 0), entry(level, index))
                keys.setdefault(term, {}).setdefault(sid >> bits, []).append(key)
                if level != common and key < LAST_KEYS:
                    repeats.setdefault(term, {}).setdefault(sid >> bits, {})[key] = level
            if wanted != dict(zip(tids, stored_levels)):
                problems.append(f"search: message {index} of session {head.key!r} is indexed with "
                                "other terms than its content")
    if view.messages() != total:
        problems.append(f"search: {view.messages()} messages counted, {total} in the log")
    for term, (count, best) in sorted(expected.items()):
        tid = view.tid(term)
        try:
            summary = None if tid is None else view.summary(tid)
        except StoreCorrupted as exc:
            problems.append(f"search: {exc}")
            continue
        if tid is None or summary is None:
            problems.append(f"search: the term {term!r} is missing")
            continue
        groups = [(level, list(u32s(members))) for level, members in summary.groups()]
        grouped = {sid: level for level, members in groups for sid in members}
        order = [level for level, _ in groups]
        if view.df(tid) != count or summary.entries() != best or grouped != summary.as_dict() \
                or sum(len(members) for _, members in groups) != summary.sessions \
                or order != sorted(set(order), reverse=True):
            problems.append(f"search: the entry of term {term!r} differs from the log")
        problems += _offset_problems(term, summary)
        problems += _map_problems(view, term, tid, summary, keys[term], repeats.get(term, {}))
        if not view.holds_unwritten_changes:  # a batch's terms are stored in their form when it is written
            problems += _form_problems(view, term, tid, summary)
    if not view.holds_unwritten_changes:
        try:
            view.next_tid()
        except StoreCorrupted as exc:
            problems.append(f"search: {exc}")
        stored_count = view.stored_summary_count()
        if stored_count != len(expected):
            problems.append(f"search: {stored_count} term summaries stored, {len(expected)} terms in the log")
        anywhere: set[tuple[int, int]] | None
        try:
            anywhere = {(block, tid) for tid, _ in view.stored_names() for block in view.blocks_of(tid)}
            listed = {(block, tid) for tid, _ in view.stored_names() for block in view.blocks_apart(tid)}
        except StoreCorrupted as exc:  # a term head cut short, or its blocks out of order
            anywhere = listed = None
            if f"search: {exc}" not in problems:  # reported already with a term that current messages hold
                problems.append(f"search: {exc}")
        if listed is not None and set(view.stored_blocks()) != listed:
            problems.append("search: the blocks of term summaries differ from the blocks their terms list")
        if listed is not None and not set(view.stored_maps()) <= listed:
            problems.append("search: message maps are stored for blocks that no term lists")
        if anywhere is not None and not set(view.stored_repeats()) <= anywhere:
            problems.append("search: repeated messages are stored for blocks that no term lists")
        problems += _level_problems(view, levels)
        for sid, _ in view.stored_sessions():
            if sid not in sessions:
                problems.append(f"search: stream {sid} is indexed but has no events")
        problems += _dictionary_problems(view, expected.keys())
    return problems


def _offset_problems(term: str, summary: Summary) -> list[str]:
    """Where a block of the term holds its sessions out of order, or an offset past the block: a session is its
    block's first OR its offset, so a bit set past ``BLOCK_BITS`` reads as a session the entries hold anyway."""
    size = 1 << formats.BLOCK_BITS
    for number, block in summary.blocks:
        offsets = u16s(block.sids_raw())
        if offsets[-1] >= size or any(low >= high for low, high in pairwise(offsets)):
            return [f"search: the sessions of term {term!r} in block {number} are out of order"]
    return []


def _form_problems(view: IndexReader, term: str, tid: int, summary: Summary) -> list[str]:
    """Where the term is stored in the other form than its message count and blocks call for
    (``formats.wholes.stored_whole``), or its head stored whole differs from its blocks and maps."""
    df, numbers = view.df(tid), summary.block_numbers()
    whole = not view.blocks_apart(tid)
    if stored_whole(df, numbers) != whole:
        return [f"search: the term {term!r} is stored {'whole' if whole else 'in blocks'}, against its count"]
    try:
        if whole and whole_of_blocks(df, [(number, block, view.term_map(tid, number))
                                          for number, block in summary.blocks]) != view.head(tid):
            return [f"search: the head of term {term!r} differs from its blocks"]
    except StoreCorrupted as exc:
        return [f"search: {exc}"]
    return []


def _map_problems(view: IndexReader, term: str, tid: int, summary: Summary,
                  keys: dict[int, list[int]], repeats: dict[int, dict[int, int]]) -> list[str]:
    """Where the term's message maps differ from its messages (``keys``: block → the maps' keys), or a block has
    a map it should not have (or lacks one), or its messages where the term has a level of its own differ from
    ``repeats`` (block → message key → level)."""
    for number, block in summary.blocks:
        try:
            stored = view.term_map(tid, number)
            stored_repeats = view.term_repeats(tid, number)
        except StoreCorrupted as exc:
            return [f"search: {exc}"]
        wanted = BitMap(keys.get(number, ())) if mapped(block.raw) else None
        if stored != wanted:
            return [f"search: the message map of term {term!r} in block {number} differs from the log"]
        own = repeats.get(number) if mapped(block.raw) else None
        found = None if stored_repeats is None else dict(zip(*stored_repeats))
        if found != (own or None):
            return [f"search: the repeated messages of term {term!r} in block {number} differ from the log"]
    return []


def _level_problems(view: IndexReader, levels: dict[tuple[int, int], list[int]]) -> list[str]:
    """Where the blocks' messages by level (``search.levels``) differ from the log's (``levels``)."""
    try:
        stored = {(block, level): view.level_messages(block, level) for block, level in view.stored_levels()}
    except StoreCorrupted as exc:
        return [f"search: {exc}"]
    if stored != {place: BitMap(keys) for place, keys in levels.items()}:
        return ["search: the blocks' messages by level differ from the log"]
    return []


def _dictionary_problems(view: IndexReader, held: Iterable[str]) -> list[str]:
    """Where the term dictionary differs from the terms current messages hold (``held``), or its two
    directions disagree. The terms themselves are not named: they may be redacted text."""
    problems = []
    stored = dict(view.stored_terms())
    extra, missing = len(stored.keys() - set(held)), len(set(held) - stored.keys())
    if extra:
        problems.append(f"search: the term dictionary holds {extra} terms that no current message holds; "
                        "text that was removed or redacted may survive there (rebuild the search projection, "
                        "then vacuum)")
    if missing:
        problems.append(f"search: {missing} terms of current messages are missing from the term dictionary")
    if dict(view.stored_names()) != {tid: term_key(term) for term, tid in stored.items()}:
        problems.append("search: the term dictionary and its reverse (search.names) disagree")
    return problems


def dump_index(view: IndexReader) -> dict[str, Any]:
    """The stored index's content, independent of term ids, for comparing two builds."""
    names = {tid: term for term, tid in view.stored_terms()}
    terms = {names[tid]: (df, summary.entries()) for tid, df, summary in view.stored_summaries()}
    maps = {(names[tid], block): list(found) for block, tid in view.stored_maps()
            if (found := view.term_map(tid, block)) is not None}
    repeats = {(names[tid], block): dict(zip(*own)) for block, tid in view.stored_repeats()
               if (own := view.term_repeats(tid, block)) is not None}
    by_level = {place: list(view.level_messages(*place) or ()) for place in view.stored_levels()}
    docs = {}
    for place, raw in view.stored_chunks():
        rows = []
        for index in range(chunk_size(raw)):
            tids, levels = chunk_message(raw, index)
            rows.append(sorted(zip((names[tid] for tid in tids), levels)))
        docs[place] = rows
    sessions = dict(view.stored_sessions())
    return {"terms": terms, "maps": maps, "repeats": repeats, "levels": by_level, "docs": docs, "sessions": sessions,
            "messages": view.messages()}
