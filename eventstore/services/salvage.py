"""What a damaged data file still holds: the event log's records, read with plain reads, without LMDB.

A store whose ``data.mdb`` fails ``lmdb_check`` is refused at open, so nothing can
be exported from it through LMDB. Here the ``log.events`` and ``log.stream_keys``
B-trees (and ``log.meta``, for the compression dictionary) are walked from the
newest meta page that parses (``lmdb_check``'s page checks), every page that
does not check out is skipped, and each record that decodes (with the log's
own decoder, so a record whose payload does not match its digest is left out)
is returned with its position.

When the walk meets damage (a file cut short past a tree's root, a zeroed
branch page), every page of the file is read as well: a leaf page holds its own
number and its nodes, so the records on leaves no tree reaches any more are
found by their framing, and kept only where the hash chain vouches for them
(each record's hash covers the one before it and its session's key). The events
that link from position 1 are a log that an events import rebuilds exactly; the
later chain-consistent runs are reported by position.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

from .._codec import encode_event
from .._compression import COPY_MAGIC, Dictionary, choose, from_copy
from .._errors import DictionaryDamaged, EventStoreError, StoreCorrupted
from .._folding import to_recorded
from .._log import GENESIS_HASH, StoredEvent, chain_hash, decode_record
from .._values import MAX_KEY_BYTES
from ..events import RecordedEvent, SessionRedacted, redact_event
from ..storage.lmdb_check import (
    _HEADER,
    _HEADER_SIZE,
    _INVALID_PAGE,
    _LARGEST_PAGE,
    _OVERFLOW,
    _OVERFLOW_PAGES,
    _SMALLEST_PAGE,
    Database,
    Meta,
    _parse_meta,
    _Walker,
    leaf_nodes,
)

__all__ = ["Salvage", "salvage", "raw_entries"]

_EVENTS = "log.events"
_STREAM_KEYS = "log.stream_keys"
_META = "log.meta"
_U64 = struct.Struct(">Q")
# What a page read without a tree to say where it belongs is checked as.
_UNKNOWN = Database("a page found by reading the file", depth=1, root=_INVALID_PAGE, flags=0)


@attrs.frozen
class Salvage:
    """What ``salvage`` read of a data file.

    Attributes:
        prefix: the readable events from position 1 up to the first missing one, in position order.
        first_missing: the first position not read (``None`` when no damage was met: the whole log was read).
        later: the positions read after ``first_missing``, which the prefix cannot include.
        problems: what was damaged, in sentences: pages skipped, records that did not decode.
        runs: every run of consecutive positions read whose hash chain links, as (first, last), in order; the
            positions between them (and after the last, if the file's end was lost) are lost.
    """

    prefix: tuple[RecordedEvent, ...]
    first_missing: int | None
    later: tuple[int, ...]
    problems: tuple[str, ...]
    runs: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class _Found:
    """What was read of the log: by the trees (records by position, session keys by stream id, the values of
    ``log.meta``), and by reading every page (candidates, which only the hash chain vouches for)."""

    records: dict[int, bytes] = attrs.Factory(dict)
    keys: dict[int, str] = attrs.Factory(dict)
    meta: dict[bytes, bytes] = attrs.Factory(dict)
    scanned_records: dict[int, list[bytes]] = attrs.Factory(dict)
    scanned_keys: dict[int, set[str]] = attrs.Factory(dict)
    copies: list[bytes] = attrs.Factory(list)  # the dictionary's second copy, found by its magic


def _valid_metas(head: bytes) -> list[Meta]:
    """The meta pages that parse, newest first; the second is looked for at every possible page size
    when the first is damaged (its page size is then unknown)."""
    metas: list[Meta] = []
    try:
        metas.append(_parse_meta(head, 0))
        sizes = [metas[0].page_size]
    except ValueError:
        sizes = [1 << shift for shift in range(_SMALLEST_PAGE.bit_length() - 1, _LARGEST_PAGE.bit_length())]
    for size in sizes:
        try:
            metas.append(_parse_meta(head[size:], 1))
            break
        except ValueError:
            continue
    return sorted(metas, key=lambda meta: meta.transaction, reverse=True)


def raw_entries(walker: _Walker, database: Database, problems: list[str]) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of one B-tree that can be read; each damaged page or value is added to ``problems``."""
    if database.root == _INVALID_PAGE:  # an empty tree
        return
    for page, problem in walker.leaf_pages(database):
        if problem is not None:
            problems.append(problem)
            continue
        for key, value, size in leaf_nodes(page):
            if isinstance(value, int):
                found, problem = walker.overflow_value(value, size, database)
                if found is None:
                    problems.append(str(problem))
                    continue
                value = found
            yield key, value


def salvage(data_file: Path) -> Salvage:
    """Read every event record of ``data_file`` that can still be read.

    Raises:
        StoreCorrupted: no meta page parses, or nothing in the file leads to or looks like the event log.
        OSError: the file cannot be read.
    """
    problems: list[str] = []
    found = _Found()
    with open(data_file, "rb") as file:
        metas = _valid_metas(os.pread(file.fileno(), 2 * _LARGEST_PAGE, 0))
        walked = False
        for meta in metas:
            walker = _Walker(file, meta)
            tree_problems, named = walker.named_databases()
            if _EVENTS in named:
                problems.extend(tree_problems)
                _walk_log(walker, named, found, problems)
                walked = True
                break
        if not metas:
            raise StoreCorrupted(f"{data_file}: neither meta page can be read, so nothing can be salvaged")
        if not walked:
            problems.append(f"no meta page leads to the event log ({'; '.join(tree_problems[:3])})")
        if problems:  # damage met: records on pages no tree reaches any more may still be there
            _scan_pages(file, metas[0].page_size, found)
    if not walked and not found.scanned_records:
        raise StoreCorrupted(f"{data_file}: no meta page leads to the event log, and no page holds one of its "
                             f"records ({'; '.join(problems[:3])})")
    return _chained(found, problems)


def _walk_log(walker: _Walker, named: dict[str, Database], found: _Found, problems: list[str]) -> None:
    if _STREAM_KEYS in named:
        for raw_id, raw_key in raw_entries(walker, named[_STREAM_KEYS], problems):
            try:
                found.keys[_U64.unpack(raw_id)[0]] = raw_key.decode()
            except (struct.error, UnicodeDecodeError):
                problems.append(f"a session key ({raw_id.hex()}) is damaged")
    if _META in named:
        found.meta.update(raw_entries(walker, named[_META], problems))
    for raw_position, raw in raw_entries(walker, named[_EVENTS], problems):
        if len(raw_position) != _U64.size:
            problems.append(f"a position in the event table is damaged ({raw_position.hex()})")
            continue
        found.records[_U64.unpack(raw_position)[0]] = raw


def _scan_pages(file: BinaryIO, page_size: int, found: _Found) -> None:
    """Add what every page of the file holds that may be the log's: each node of a leaf with an 8-byte key as a
    record and, if it reads as one, a session key (the hash chain sorts them out); and the dictionary's copy, a
    large value that begins with its magic."""
    pages = os.fstat(file.fileno()).st_size // page_size
    walker = _Walker(file, Meta(page_size, pages - 1, 0, _UNKNOWN, _UNKNOWN))
    for number in range(2, pages):
        page = os.pread(file.fileno(), page_size, number * page_size)
        stored_number, _, flags, lower, upper = _HEADER.unpack_from(page)
        if stored_number == number and flags & _OVERFLOW and page[_HEADER_SIZE:].startswith(COPY_MAGIC):
            # A large value's first page: the dictionary's copy delimits itself within its run.
            run = min(_OVERFLOW_PAGES.unpack_from(page, 12)[0], pages - number) * page_size
            found.copies.append(os.pread(file.fileno(), run - _HEADER_SIZE, number * page_size + _HEADER_SIZE))
        if stored_number != number or not _HEADER_SIZE <= lower <= upper <= page_size:
            continue
        for key, node_value, size in leaf_nodes(page):
            value = walker.overflow_value(node_value, size, _UNKNOWN)[0] if isinstance(node_value, int) \
                else node_value
            if value is None:
                continue
            if value.startswith(COPY_MAGIC) and not isinstance(node_value, int):  # a small one, kept in its leaf
                found.copies.append(value)
            if len(key) != _U64.size:
                continue
            number_in_key = _U64.unpack(key)[0]
            found.scanned_records.setdefault(number_in_key, []).append(value)
            if len(value) <= MAX_KEY_BYTES:
                with contextlib.suppress(UnicodeDecodeError):
                    found.scanned_keys.setdefault(number_in_key, set()).add(value.decode())


def _dictionary_reader(found: _Found, saved: list[str]) -> Callable[[], Dictionary]:
    """The store's dictionary, read when a compressed record first needs it: from ``log.meta`` as the tree has
    it, else from a copy found by its magic in the file's pages. ``saved``: where damage it got round goes."""
    dictionaries: list[Dictionary] = []

    def dictionary_of() -> Dictionary:
        if not dictionaries:
            meta = found.meta
            chosen = choose(meta.get(b"dictionary"), meta.get(b"dictionary.sha256"), meta.get(b"dictionary.copy"))
            data = chosen.data
            if data is None:
                data = next((copied for copy in found.copies if (copied := from_copy(copy)) is not None), None)
                if data is not None:
                    saved.append("the compression dictionary was read from its copy, found in the file's pages")
            elif chosen.problem is not None:
                saved.append(chosen.problem)
            if data is None:
                raise DictionaryDamaged("the store's compression dictionary cannot be read")
            dictionaries.append(Dictionary(data))
        return dictionaries[0]

    return dictionary_of


def _candidates(found: _Found, problems: list[str], dictionary_of: Callable[[], Dictionary]
                ) -> dict[int, list[StoredEvent]]:
    """The records that decode, by position, their session keys left blank: the tree's first, then those found
    in the file's pages. A record the tree holds that does not decode is a problem; a node of another table
    read as a record is not."""
    decoded: dict[int, list[StoredEvent]] = {}
    for position in sorted(found.records.keys() | found.scanned_records.keys()):
        candidates: list[StoredEvent] = []
        raw = found.records.get(position)
        for each in ([] if raw is None else [raw]) + found.scanned_records.get(position, []):
            try:
                event = decode_record(position, each, lambda _: "", dictionary_of)
            except EventStoreError as exc:
                problems.extend([str(exc)] if each is raw else [])
                continue
            if event not in candidates:
                candidates.append(event)
        # A copy of a record on a freed page may predate its redaction: never bring its content back.
        candidates.sort(key=lambda event: not event.redacted)
        if candidates:
            decoded[position] = candidates
    return decoded


def _chained(found: _Found, problems: list[str]) -> Salvage:
    """The records that decode and whose hash chain links, as runs of positions; the run from position 1 as the
    events to write."""
    saved: list[str] = []
    decoded = _candidates(found, problems, _dictionary_reader(found, saved))
    keys = {**_linked_keys(decoded, found.scanned_keys), **found.keys}
    events: dict[int, StoredEvent] = {}
    for position, candidates in decoded.items():
        previous = events.get(position - 1)
        link = GENESIS_HASH if position == 1 else None if previous is None else previous.hash
        event = _linked(candidates, keys, link)
        if event is not None:
            events[position] = event
    _redact_stale_copies(events)
    runs: list[tuple[int, int]] = []
    for position in sorted(events):
        if runs and runs[-1][1] == position - 1:
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    prefix: list[RecordedEvent] = []
    for position in range(1, (runs[0][1] if runs and runs[0][0] == 1 else 0) + 1):
        try:
            prefix.append(to_recorded(events[position]))
        except EventStoreError as exc:  # its payload matches its digest, but no event of its type reads so
            problems.append(str(exc))
            del events[position]  # not read: neither in the prefix nor among the later events
            break
    later = tuple(sorted(position for position in events if position > len(prefix)))
    first_missing = len(prefix) + 1 if problems or later else None
    return Salvage(tuple(prefix), first_missing, later, tuple(saved + problems), tuple(runs))


def _redact_stale_copies(events: dict[int, StoredEvent]) -> None:
    """Redact again what a redaction read here rewrote, where only a copy from before it was found (on a freed
    page): as the redaction did, so its digests match; a position whose copy does not is left out."""
    redactions = []
    for position in sorted(events):
        if events[position].encoded.type_name == SessionRedacted.type_name:
            with contextlib.suppress(EventStoreError):  # one that does not decode ends the prefix before it
                redactions.append(to_recorded(events[position]).event)
    for redaction in redactions:
        for position, digest in redaction.rewritten if isinstance(redaction, SessionRedacted) else ():
            event = events.get(position)
            if event is None or event.redacted:
                continue
            payload = encode_event(redact_event(to_recorded(event).event)).payload
            if hashlib.sha256(payload).hexdigest() == digest:
                events[position] = event._replace(encoded=event.encoded._replace(payload=payload), redacted=True)
            else:
                del events[position]


def _links(link: bytes, event: StoredEvent, key: str) -> bool:
    return chain_hash(link, event.position, key, event.version, event.recorded_at, event.event_id, event.encoded,
                      event.payload_digest) == event.hash


def _linked_keys(decoded: dict[int, list[StoredEvent]], candidates: dict[int, set[str]]) -> dict[int, str]:
    """The session keys of streams that the hash chain confirms: a record whose hash links to the record before it
    with one of the keys read for its stream."""
    confirmed: dict[int, str] = {}
    for position, events in decoded.items():
        links = [GENESIS_HASH] if position == 1 else [event.hash for event in decoded.get(position - 1, [])]
        for event in events:
            for key in sorted(candidates.get(event.stream_id, ())):
                if event.stream_id not in confirmed and any(_links(link, event, key) for link in links):
                    confirmed[event.stream_id] = key
    return confirmed


def _linked(candidates: list[StoredEvent], keys: dict[int, str], link: bytes | None) -> StoredEvent | None:
    """The candidate whose hash links to ``link`` (the hash of the event before it) with its stream's session key,
    that key filled in; after a gap (``link`` is ``None``), the first whose stream's key is known."""
    for event in candidates:
        key = keys.get(event.stream_id)
        if key is not None and (link is None or _links(link, event, key)):
            return event._replace(session_key=key)
    return None
