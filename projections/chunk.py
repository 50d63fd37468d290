"""A run of up to 64 messages in stored form: a message chunk, and a snapshot blob.

Layout (integers big-endian)::

    count (u32) | role table size (u32)
    count × time appended (i64, µs) | count × content size (u32, bytes) | count × role (u8, index into the table)
    role table: a JSON array of the run's distinct roles, in order of first use
    contents: UTF-8, back to back
    only if a message of the run has a payload: count × payload size (u32, 0 for none) | payloads, back to back

Reading dominates, and in Python its cost is building objects, so the layout
is made for that: a content is one ``bytes.decode`` of a slice (faster than
parsing a JSON string, and there are no escapes), a role is an index
into a table of a few names, the times are one ``struct`` call (and a read that
returns no times checks them by their high bytes, without unpacking them), and the messages are built by C-level
``map`` calls, not a Python loop. Appending or removing the last message edits
the sections' ends; no content is decoded.

Payloads (their stored JSON, ``eventstore._payload``) trail the contents, so a run
without one is stored as before payloads existed, and its loads do no more work.

The layout is canonical (the table follows first use, payloads trail a run that has one), so a read model rebuilt
from the log is byte for byte the one kept up to date, and a snapshot can keep
the read model's chunks as they are.
"""

from __future__ import annotations

import json
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, pairwise, repeat
from operator import add

from eventstore._time import MAX_MICROS, MIN_MICROS
from eventstore._values import ChatMessage, stored_payload_of, trusted_messages

from .session import Entry

__all__ = ["Chunk", "DamagedChunk", "CHUNK_MESSAGES", "CHUNK_BYTES", "decode_entries", "decode_messages",
           "decode_contents", "message_count", "layout", "payload_bytes"]

#: A chunk closes at this many messages (the role index is one byte) ...
CHUNK_MESSAGES = 64
#: ... or at this many bytes: small enough that a durable append rewrites few pages.
CHUNK_BYTES = 16 << 10

_HEADER = struct.Struct(">II")
_MICROS = struct.Struct(">q")
_SIZE = struct.Struct(">I")
_PER_MESSAGE = _MICROS.size + _SIZE.size + 1  # time, content size, role index
#: By count: the times and the content sizes, unpacked in one call.
_COLUMNS = [struct.Struct(f">{count}q{count}I") for count in range(CHUNK_MESSAGES + 1)]
#: By count: the content sizes alone.
_SIZES = [struct.Struct(f">{count}I") for count in range(CHUNK_MESSAGES + 1)]
#: By count: the times alone.
_TIMES = [struct.Struct(f">{count}q") for count in range(CHUNK_MESSAGES + 1)]
#: The high bytes of the times from 1970 until about year 8800, all of which a datetime holds: a column whose times
#: all have one of them is in range without unpacking it.
_EVERYDAY_HIGH_BYTES = b"\x00\x01\x02"


class DamagedChunk(ValueError):
    """Stored chunk bytes that do not follow the layout."""


class Chunk:
    """A chunk being edited: its columns as bytes, so an edit costs the same whatever the chunk holds."""

    __slots__ = ("micros", "sizes", "roles", "table", "text", "payload_sizes", "payloads")

    def __init__(self) -> None:
        self.micros = bytearray()
        self.sizes = bytearray()
        self.roles = bytearray()
        self.table: list[str] = []
        self.text = bytearray()
        #: Each message's payload size (0 for none) once one has a payload; ``None`` while none has.
        self.payload_sizes: bytearray | None = None
        #: The payloads, back to back.
        self.payloads = bytearray()

    @classmethod
    def parse(cls, value: bytes) -> Chunk:
        """The chunk stored as ``value``, checked, with no content decoded.

        Raises:
            DamagedChunk: ``value`` does not follow the layout.
        """
        # The whole layout must hold before an edit builds on it.
        micros, _, _, text_at, payload_sizes = _sections(value)
        count = len(micros)
        if not count:
            raise DamagedChunk("a stored chunk holds no message")
        chunk = cls()
        sizes_at, roles_at = _HEADER.size + _MICROS.size * count, _roles_at(count)
        chunk.table = list(_table(value[roles_at + count:text_at]))  # a copy: the cached one is shared
        chunk.micros = bytearray(value[_HEADER.size:sizes_at])
        chunk.sizes = bytearray(value[sizes_at:roles_at])
        chunk.roles = bytearray(value[roles_at:roles_at + count])
        end = len(value)
        if payload_sizes is not None:
            end -= _SIZE.size * count + sum(payload_sizes)
            chunk.payload_sizes = bytearray(value[end:end + _SIZE.size * count])
            chunk.payloads = bytearray(value[end + _SIZE.size * count:])
        chunk.text = bytearray(value[text_at:end])
        return chunk

    @property
    def count(self) -> int:
        return len(self.roles)

    def fits(self, content: bytes, payload: bytes = b"") -> bool:
        """Whether a message with these content (and payload) bytes still belongs in this chunk."""
        count = len(self.roles)
        size = _HEADER.size + _PER_MESSAGE * (count + 1) + len(self.text) + len(content)
        if payload or self.payload_sizes is not None:
            size += _SIZE.size * (count + 1) + len(self.payloads) + len(payload)
        return not count or (count < CHUNK_MESSAGES and size < CHUNK_BYTES)

    def append(self, role: str, content: bytes, micros: int, payload: bytes = b"") -> None:
        try:
            at = self.table.index(role)
        except ValueError:
            at = len(self.table)
            self.table.append(role)
        self.micros += _MICROS.pack(micros)
        self.sizes += _SIZE.pack(len(content))
        self.roles.append(at)
        self.text += content
        if payload and self.payload_sizes is None:
            self.payload_sizes = bytearray(_SIZE.size * (len(self.roles) - 1))  # the messages before had none
        if self.payload_sizes is not None:
            self.payload_sizes += _SIZE.pack(len(payload))
            self.payloads += payload

    def extend(self, roles: Sequence[str], contents: Sequence[bytes], micros: Sequence[int],
               payloads: Sequence[bytes] | None = None) -> int:
        """Append the leading messages that belong in this chunk, as ``fits`` and ``append`` one at a time would
        take them; how many it took (``payloads``: each message's, ``None`` when none has one).

        A run without payloads on a chunk without them is sized and appended column by column: a command's
        messages cost a few C calls, not two method calls each."""
        if payloads is not None or self.payload_sizes is not None:
            taken = 0
            for role, content, moment, payload in zip(roles, contents, micros, payloads or repeat(b"")):
                if not self.fits(content, payload):
                    break
                self.append(role, content, moment, payload)
                taken += 1
            return taken
        count = len(self.roles)
        # The chunk's size with its next k+1 messages is ``base`` + ``sizes[k]``: it grows with k, so the messages
        # that fit are the leading ones, the first always in an empty chunk.
        base = _HEADER.size + _PER_MESSAGE * count + len(self.text)
        sizes = list(map(add, accumulate(map(len, contents)), range(_PER_MESSAGE, _PER_MESSAGE * (len(contents) + 1),
                                                                    _PER_MESSAGE)))
        taken = min(bisect_left(sizes, CHUNK_BYTES - base), CHUNK_MESSAGES - count, len(contents))
        if not count and contents:
            taken = max(taken, 1)
        if not taken:
            return 0
        roles = roles[:taken]
        table = self.table
        # A role's index is its first place in the table (``list.index``), new roles join it in order of first use.
        index = dict(zip(reversed(table), range(len(table) - 1, -1, -1)))
        for role in dict.fromkeys(roles):
            if role not in index:
                index[role] = len(table)
                table.append(role)
        taken_contents = contents[:taken]
        self.micros += _TIMES[taken].pack(*micros[:taken])
        self.sizes += _SIZES[taken].pack(*map(len, taken_contents))
        self.roles += bytes(map(index.__getitem__, roles))
        self.text += b"".join(taken_contents)
        return taken

    @property
    def last_micros(self) -> int:
        micros: int = _MICROS.unpack_from(self.micros, len(self.micros) - _MICROS.size)[0]
        return micros

    def _last_size(self) -> int:
        return _last_u32(self.sizes)

    def _last_payload_size(self) -> int:
        return 0 if self.payload_sizes is None else _last_u32(self.payload_sizes)

    def last(self) -> tuple[str, bytes, bytes]:
        """The last message's role, content bytes and payload bytes (``b""`` for none)."""
        payload = bytes(self.payloads[len(self.payloads) - self._last_payload_size():])
        return self.table[self.roles[-1]], bytes(self.text[len(self.text) - self._last_size():]), payload

    def pop(self) -> None:
        """Drop the last message."""
        size = self._last_size()
        del self.micros[-_MICROS.size:]
        del self.sizes[-_SIZE.size:]
        del self.text[len(self.text) - size:]
        if self.roles.pop() not in self.roles:
            # Its only use was the last, so it came last into the table (first use): the layout stays canonical.
            self.table.pop()
        if self.payload_sizes is not None:
            del self.payloads[len(self.payloads) - self._last_payload_size():]
            del self.payload_sizes[-_SIZE.size:]
            if not self.payloads:
                self.payload_sizes = None  # no payload left: no trailer, as canonical

    def encode(self) -> bytes:
        table = _encoded_table(self.table)
        parts: list[bytes | bytearray] = [_HEADER.pack(len(self.roles), len(table)), self.micros, self.sizes,
                                          self.roles, table, self.text]
        if self.payload_sizes is not None:
            parts += (self.payload_sizes, self.payloads)
        return b"".join(parts)


def _last_u32(column: bytearray) -> int:
    """The last of a column of big-endian u32s."""
    value: int = _SIZE.unpack_from(column, len(column) - _SIZE.size)[0]
    return value


def _payload_sizes(value: bytes, count: int, end: int) -> tuple[int, ...]:
    """The sizes of the payloads trailing the contents (which end at ``end``), checked against the chunk's end."""
    if end + _SIZE.size * count > len(value):
        raise DamagedChunk(f"the contents take {len(value) - end} bytes fewer than recorded")
    sizes: tuple[int, ...] = struct.unpack_from(f">{count}I", value, end)
    if end + _SIZE.size * count + sum(sizes) != len(value) or not any(sizes):
        raise DamagedChunk(f"a chunk of {len(value)} bytes does not end where its contents and payloads do")
    return sizes


def _header(value: bytes) -> tuple[int, int]:
    """The message count and role table size of a stored chunk, checked against its size."""
    try:
        count, table_size = _HEADER.unpack_from(value)
    except struct.error:
        raise DamagedChunk(f"a chunk of {len(value)} bytes has no header") from None
    if count > CHUNK_MESSAGES or _HEADER.size + _PER_MESSAGE * count + table_size > len(value):
        raise DamagedChunk(f"a chunk of {len(value)} bytes cannot hold {count} messages")
    return count, table_size


def _roles_at(count: int) -> int:
    return _HEADER.size + (_MICROS.size + _SIZE.size) * count


#: Role tables seen, by their stored bytes: a store has few distinct ones, and a load then decodes none.
_TABLES: dict[bytes, list[str]] = {}


#: Stored bytes of role tables written, by their roles (the inverse of ``_TABLES``).
_ENCODED: dict[tuple[str, ...], bytes] = {}


def _encoded_table(table: list[str]) -> bytes:
    """The stored form of a role table: compact JSON, as orjson wrote it before (the same bytes)."""
    roles = tuple(table)
    encoded = _ENCODED.get(roles)
    if encoded is None:
        encoded = json.dumps(table, ensure_ascii=False, separators=(",", ":")).encode()
        if len(_ENCODED) >= 1024:  # roles are open-ended: stay bounded
            _ENCODED.clear()
        _ENCODED[roles] = encoded
    return encoded


def _table(encoded: bytes) -> list[str]:
    table = _TABLES.get(encoded)
    if table is not None:
        return table
    try:
        table = json.loads(encoded)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise DamagedChunk(f"the role table does not decode: {exc}") from None
    if type(table) is not list or not all(type(role) is str and role for role in table):
        raise DamagedChunk("the role table is not a list of names")
    if len(_TABLES) >= 1024:  # roles are open-ended: stay bounded
        _TABLES.clear()
    _TABLES[encoded] = table
    return table


def _roles_and_text(value: bytes) -> tuple[int, list[str], int]:
    """The message count and roles of a stored chunk, and where its contents begin, checked."""
    count, table_size = _header(value)
    roles_at = _roles_at(count)
    table_at = roles_at + count
    text_at = table_at + table_size
    table = _table(value[table_at:text_at])
    try:
        roles = list(map(table.__getitem__, value[roles_at:table_at]))
    except IndexError:
        raise DamagedChunk("a role index is outside the role table") from None
    return count, roles, text_at


def _trailer(value: bytes, count: int, sizes: Sequence[int], text_at: int) -> tuple[int, ...] | None:
    """The sizes of the payloads after the contents, checked (``None`` without a trailer)."""
    end = text_at + sum(sizes)
    return None if end == len(value) else _payload_sizes(value, count, end)


def _check_times(micros: Sequence[int]) -> None:
    if micros and (min(micros) < MIN_MICROS or max(micros) > MAX_MICROS):
        raise DamagedChunk("a time is outside what a datetime can hold")


def _sections(value: bytes) -> tuple[Sequence[int], Sequence[int], list[str], int, tuple[int, ...] | None]:
    """The times, content sizes and roles of a stored chunk, where its contents begin, and its payloads' sizes
    (``None`` without a trailer)."""
    count, roles, text_at = _roles_and_text(value)
    columns = _COLUMNS[count].unpack_from(value, _HEADER.size)
    micros, sizes = columns[:count], columns[count:]
    payload_sizes = _trailer(value, count, sizes, text_at)
    _check_times(micros)
    return micros, sizes, roles, text_at, payload_sizes


def _untimed(value: bytes) -> tuple[Sequence[int], list[str], int, tuple[int, ...] | None]:
    """``_sections`` without the times, for the reads that return none. Their column is still checked, so that a
    chunk whose times are damaged is damaged to every read (the cache's reads return times), but not unpacked
    unless a time lies outside the everyday years: each time unpacked would be an int object made for nothing."""
    count, roles, text_at = _roles_and_text(value)
    sizes_at = _HEADER.size + _MICROS.size * count
    sizes = _SIZES[count].unpack_from(value, sizes_at)
    payload_sizes = _trailer(value, count, sizes, text_at)
    if value[_HEADER.size:sizes_at:_MICROS.size].translate(None, _EVERYDAY_HIGH_BYTES):
        _check_times(_TIMES[count].unpack_from(value, _HEADER.size))
    return sizes, roles, text_at, payload_sizes


def _contents(value: bytes, sizes: Sequence[int], text_at: int) -> list[str]:
    # A plain loop: its slices are opcodes, where ``map`` makes a slice object and two method calls a content.
    contents: list[str] = []
    append = contents.append
    start = text_at
    try:
        for size in sizes:
            end = start + size
            append(value[start:end].decode())
            start = end
    except UnicodeDecodeError as exc:
        raise DamagedChunk(f"a content is not UTF-8: {exc}") from None
    return contents


def _payloads(value: bytes, payload_sizes: Sequence[int] | None) -> dict[int, bytes] | None:
    """The payloads of a stored chunk whose trailer ``_trailer`` checked, by message index (those with one)."""
    if payload_sizes is None:
        return None
    ends = list(accumulate(payload_sizes, initial=len(value) - sum(payload_sizes)))
    return {index: value[start:stop] for index, (start, stop) in enumerate(pairwise(ends)) if stop > start}


def decode_entries(value: bytes) -> list[Entry]:
    """The messages of a stored chunk, with the µs each was appended.

    Raises:
        DamagedChunk: ``value`` does not follow the layout.
    """
    value = bytes(value)  # slicing must copy (a memoryview's slices are not bytes)
    micros, sizes, roles, text_at, payload_sizes = _sections(value)
    messages = trusted_messages(roles, _contents(value, sizes, text_at), _payloads(value, payload_sizes))
    return list(zip(messages, micros))


def decode_messages(value: bytes) -> list[ChatMessage]:
    """Only the messages of a stored chunk (a load without times builds no pairs, and reads no time).

    Raises:
        DamagedChunk: ``value`` does not follow the layout.
    """
    value = bytes(value)
    sizes, roles, text_at, payload_sizes = _untimed(value)
    return trusted_messages(roles, _contents(value, sizes, text_at), _payloads(value, payload_sizes))


def decode_contents(value: bytes) -> list[str]:
    """Only the contents of a stored chunk's messages (search reads nothing else)."""
    value = bytes(value)
    sizes, _, text_at, _ = _untimed(value)
    return _contents(value, sizes, text_at)


def payload_bytes(message: ChatMessage) -> bytes:
    """What a chunk stores of the message's payload: its stored JSON, ``b""`` for none."""
    payload = stored_payload_of(message)
    return b"" if payload is None else bytes(payload)


def message_count(value: bytes) -> int:
    """How many messages a stored chunk holds, as its header says.

    Raises:
        DamagedChunk: ``value`` is too short for a header.
    """
    return _header(value)[0]


def layout(entries: Iterable[Entry]) -> Iterator[tuple[int, bytes]]:
    """The chunks of a message list, as (first index, stored bytes), cut where appending one by one cuts."""
    first, chunk = 0, Chunk()
    for message, micros in entries:
        content, payload = message.content.encode(), payload_bytes(message)
        if not chunk.fits(content, payload):
            yield first, chunk.encode()
            first, chunk = first + chunk.count, Chunk()
        chunk.append(message.role, content, micros, payload)
    if chunk.count:
        yield first, chunk.encode()
