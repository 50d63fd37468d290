"""How the saver keeps a value in a message's payload: a blob (the pure part, no store).

A blob is ``[type, *bytes]`` as the saver's serializer typed them (``["empty", ""]``: the channel has no value
at that version), or, for a list that extends the value its parent checkpoint read (a chat's ``messages``), the
tail that the checkpoint added: ``["tail", the parent's version of the channel, item count, *bytes of the
items]``. ``*bytes`` is ``text, "latin-1"`` (the bytes as text, one character a byte) when JSON keeps that no
longer than base64, as it does a serializer's msgpack, else ``base64``; blobs stored before the text form are
all base64 and read as before. LangGraph stores a channel's whole value at every checkpoint that changes it, so without
tails a thread would hold its message list once per turn. A tail is only written when the serializer typed both
values as msgpack arrays and the new one's items start with the old one's bytes (msgpack is self-delimiting, so
the leading items are then equal); a reducer that removed or replaced an item gets the whole value stored. A load
joins the tail to its base (``Records.items``), found as any other value is, through at most ``MAX_TAIL_DEPTH``
tails.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import attrs
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from eventstore import StoreCorrupted

from ._langgraph_fingerprint import Encoded
from ._langgraph_templates import MSGPACK, Templates, loads

__all__ = ["EMPTY", "MAX_TAIL_DEPTH", "Base", "Items", "Version", "blob_of", "is_tail", "list_blob", "read_bytes",
           "value_of", "whole_items"]

EMPTY = ("empty", "")
_TAIL = "tail"
#: Follows bytes stored as text, one character a byte (``bytes.decode("latin-1")``), rather than as base64.
_AS_TEXT = "latin-1"
#: Bytes that JSON writes longer: a control character as a six-byte escape; a quote or a backslash as two bytes,
#: and so a byte of 128 or more (its character, U+0080 to U+00FF, is two bytes of UTF-8).
_ESCAPED_AS_SIX = bytes(range(32))
_WRITTEN_AS_TWO = b'"\\' + bytes(range(128, 256))
#: The most tails a list value is read through: one more, and a put stores the whole value again. A load decodes
#: one small payload per tail; a whole value costs the list's full size once more in the thread.
MAX_TAIL_DEPTH = 32

Version = str | int | float


def _stored_bytes(data: bytes) -> list[str]:
    """Bytes as a blob stores them: as text, one character a byte, when its JSON is no longer than base64 (it
    decodes several times faster), else as base64. A serializer's msgpack is mostly text: it is the shorter."""
    escaped = len(data) - len(data.translate(None, _ESCAPED_AS_SIX))
    doubled = len(data) - len(data.translate(None, _WRITTEN_AS_TWO))
    if len(data) + 5 * escaped + doubled <= (len(data) + 2) // 3 * 4:
        return [data.decode("latin-1"), _AS_TEXT]
    return [base64.b64encode(data).decode("ascii")]


def read_bytes(stored: Sequence[Any]) -> bytes:
    """The bytes ``_stored_bytes`` made ``stored`` of (a blob's last item, or two)."""
    try:
        return stored[0].encode("latin-1") if len(stored) == 2 and stored[1] == _AS_TEXT else \
            base64.b64decode(stored[0])
    except (ValueError, TypeError, AttributeError, IndexError) as exc:  # binascii.Error is a ValueError
        raise StoreCorrupted(f"a LangGraph value is damaged: {exc}") from None


def blob_of(serde: SerializerProtocol, value: Any) -> list[str]:
    kind, data = serde.dumps_typed(value)
    return [kind, *_stored_bytes(data)]


def value_of(serde: SerializerProtocol, blob: Sequence[str], templates: Templates | None = None) -> Any:
    return loads(serde, blob[0], read_bytes(blob[1:]), templates)


def _array_shape(data: bytes) -> tuple[int, int] | None:
    """The item count and header length of a msgpack array, or ``None`` if ``data`` is not one."""
    first = data[0] if data else 0
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big"), 3
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big"), 5
    return None


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


@attrs.frozen
class Items:
    """A list value as msgpack: its items' bytes joined (no array header), how many, and how many tails it was
    read through; ``suppliers``: the checkpoints whose messages hold its parts."""

    count: int
    body: bytes
    depth: int
    suppliers: tuple[str, ...]

    def blob(self) -> list[str]:
        """The value as a whole blob."""
        return [MSGPACK, *_stored_bytes(_array_header(self.count) + self.body)]

    def value(self, serde: SerializerProtocol, templates: Templates | None = None) -> Any:
        try:
            return loads(serde, MSGPACK, _array_header(self.count) + self.body, templates)
        except ValueError as exc:  # msgpack's errors: a count its tails' bytes do not hold
            raise StoreCorrupted(f"a LangGraph list is damaged: {exc}") from None


@attrs.frozen
class Base:
    """What a put needs to store a list channel as a tail: the parent's version of the channel and its value;
    ``encoded``: the channel's list the saver last read or put in the session, when its bytes are that value's."""

    version: Version
    items: Items
    encoded: Encoded | None = None


def list_blob(serde: SerializerProtocol, value: list[Any], base: Base | None) -> tuple[list[Any], Encoded | None]:
    """The blob of a channel's new value: the tail it adds to ``base`` when it extends it, else the whole; and the
    value with its items' bytes, when it is a msgpack array."""
    encoded = _extended(serde, value, base)
    if encoded is None:
        kind, data = serde.dumps_typed(value)
        shape = _array_shape(data) if kind == MSGPACK else None
        if shape is None:
            return [kind, *_stored_bytes(data)], None
        encoded = Encoded.taken(value, data[shape[1]:])
    if base is None or base.items.depth >= MAX_TAIL_DEPTH or not encoded.body.startswith(base.items.body):
        return [MSGPACK, *_stored_bytes(_array_header(len(value)) + encoded.body)], encoded
    tail = encoded.body[len(base.items.body):]
    return [_TAIL, base.version, len(value) - base.items.count, *_stored_bytes(tail)], encoded


def _extended(serde: SerializerProtocol, value: list[Any], base: Base | None) -> Encoded | None:
    """``value`` with its items' msgpack bytes, those of the items it adds to ``base``'s serialized alone, when its
    first items are the objects whose bytes ``base`` holds, their fingerprint unchanged; ``None`` otherwise. Only
    for LangGraph's own serializer, which encodes an item the same wherever it stands (msgpack is self-delimiting:
    an array is its header and its items' bytes)."""
    if base is None or base.encoded is None or not isinstance(serde, JsonPlusSerializer):
        return None
    fingerprint = base.encoded.extension(value)
    if fingerprint is None:
        return None
    kind, data = serde.dumps_typed(value[len(base.encoded.objects):])
    shape = _array_shape(data) if kind == MSGPACK else None
    return None if shape is None else Encoded(tuple(value), base.items.body + data[shape[1]:], fingerprint)


def whole_items(blob: Sequence[Any], supplier: str) -> Items | None:
    data = read_bytes(blob[1:]) if blob[0] == MSGPACK else b""
    shape = _array_shape(data)
    return None if shape is None else Items(shape[0], data[shape[1]:], 0, (supplier,))


def is_tail(blob: Sequence[Any]) -> bool:
    return len(blob) >= 4  # a whole value's blob has two or three items, whatever its serializer named its type
