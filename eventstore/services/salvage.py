"""What a damaged data file still holds: the event log's records, read with plain reads, without LMDB.

A store whose ``data.mdb`` fails ``lmdb_check`` is refused at open, so nothing can
be exported from it through LMDB. Here the ``log.events`` and ``log.stream_keys``
B-trees (and ``log.meta``, for the compression dictionary) are walked from the
newest meta page that parses (``lmdb_check``'s page checks), every page that
does not check out is skipped, and each record that decodes (with the log's
own decoder, so a record whose payload does not match its digest is left out)
is returned with its position. The longest gap-free run from position 1 is a
log that an events import rebuilds exactly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import attrs

from .._compression import Dictionary, choose
from .._errors import DictionaryDamaged, EventStoreError, StoreCorrupted
from .._folding import to_recorded
from .._log import decode_record
from ..events import RecordedEvent
from ..storage.lmdb_check import _LARGEST_PAGE, _SMALLEST_PAGE, Database, Meta, _parse_meta, _Walker, leaf_nodes

__all__ = ["Salvage", "salvage", "raw_entries"]

_EVENTS = "log.events"
_STREAM_KEYS = "log.stream_keys"
_META = "log.meta"
_U64 = struct.Struct(">Q")


@attrs.frozen
class Salvage:
    """What ``salvage`` read of a data file.

    Attributes:
        prefix: the readable events from position 1 up to the first missing one, in position order.
        first_missing: the first position not read (``None`` when no damage was met: the whole log was read).
        later: the positions read after ``first_missing``, which the prefix cannot include.
        problems: what was damaged, in sentences: pages skipped, records that did not decode.
    """

    prefix: tuple[RecordedEvent, ...]
    first_missing: int | None
    later: tuple[int, ...]
    problems: tuple[str, ...]


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
        StoreCorrupted: no meta page parses, or no meta page leads to the event log.
        OSError: the file cannot be read.
    """
    with open(data_file, "rb") as file:
        metas = _valid_metas(os.pread(file.fileno(), 2 * _LARGEST_PAGE, 0))
        for meta in metas:
            walker = _Walker(file, meta)
            problems, named = walker.named_databases()
            if _EVENTS in named:
                return _read_log(walker, named, problems)
    if not metas:
        raise StoreCorrupted(f"{data_file}: neither meta page can be read, so nothing can be salvaged")
    raise StoreCorrupted(f"{data_file}: no meta page leads to the event log ({'; '.join(problems[:3])})")


def _read_log(walker: _Walker, named: dict[str, Database], problems: list[str]) -> Salvage:
    keys: dict[int, str] = {}
    if _STREAM_KEYS in named:
        for raw_id, raw_key in raw_entries(walker, named[_STREAM_KEYS], problems):
            try:
                keys[_U64.unpack(raw_id)[0]] = raw_key.decode()
            except (struct.error, UnicodeDecodeError):
                problems.append(f"a session key ({raw_id.hex()}) is damaged")

    def key_of(stream_id: int) -> str:
        if stream_id not in keys:
            raise StoreCorrupted(f"the session key of stream {stream_id} cannot be read")
        return keys[stream_id]

    meta = dict(raw_entries(walker, named[_META], problems)) if _META in named else {}
    dictionaries: list[Dictionary] = []  # read when a compressed record needs it
    saved: list[str] = []  # damage that lost nothing: a dictionary read from its copy

    def dictionary_of() -> Dictionary:
        if not dictionaries:
            chosen = choose(meta.get(b"dictionary"), meta.get(b"dictionary.sha256"), meta.get(b"dictionary.copy"))
            if chosen.data is not None and chosen.problem is not None:
                saved.append(chosen.problem)
            if chosen.data is None:
                raise DictionaryDamaged("the store's compression dictionary cannot be read")
            dictionaries.append(Dictionary(chosen.data))
        return dictionaries[0]

    events: dict[int, RecordedEvent] = {}
    for raw_position, raw in raw_entries(walker, named[_EVENTS], problems):
        if len(raw_position) != _U64.size:
            problems.append(f"a position in the event table is damaged ({raw_position.hex()})")
            continue
        position = _U64.unpack(raw_position)[0]
        try:
            events[position] = to_recorded(decode_record(position, raw, key_of, dictionary_of))
        except EventStoreError as exc:
            problems.append(str(exc))
    prefix_end = 0
    while prefix_end + 1 in events:
        prefix_end += 1
    later = tuple(sorted(position for position in events if position > prefix_end))
    first_missing = prefix_end + 1 if problems or later else None
    return Salvage(tuple(events[position] for position in range(1, prefix_end + 1)), first_missing, later,
                   tuple(saved + problems))
