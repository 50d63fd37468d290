"""A message's structured payload: a JSON object kept exactly, in a stored form that any JSON library reads back.

A payload is checked once, when a message is built, and turned into its stored
form: compact JSON bytes, which message chunks and snapshots hold as they are
(events hold the same JSON value, written by the codec). The message keeps those
bytes (immutable, compared byte for byte, so ``1`` and ``1.0`` or two key orders
differ) and decodes a fresh object whenever it is read, so no caller can change a
stored or cached message through it. The standard library writes them: values
are a pure layer, and its output is canonical (a float as its shortest ``repr``),
so bytes read back from an event's JSON and written again are the same bytes.
Any exact JSON reader reads them back; the codec installs orjson's (``read_payloads_with``), twice as fast.

What plain JSON (and orjson, which reads integers past 64 bits as floats) would lose
is written as a tagged object of one key (docs/events-format.md, "Message payloads"):

* ``{"$str": ["ab", 56448, "c"]}``: a string that is not valid Unicode (a lone
  surrogate): its runs of text, with each surrogate as its code point;
* ``{"$int": "123..."}``: an integer outside orjson's 64-bit range;
* ``{"$obj": [[key, value], ...]}``: an object whose keys would be misread: one
  with a key that is not valid Unicode (such a key is itself a ``$str``), or an
  object of exactly one key that is one of these three tags.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import InvalidMessage, StoreCorrupted

__all__ = ["StoredPayload", "MAX_PAYLOAD_BYTES", "MAX_PAYLOAD_DEPTH", "freeze_payload", "thaw_payload",
           "stored_payload", "payload_tree", "read_payloads_with"]

#: Largest stored form of a payload, in bytes: the line limit of the importers, which a message must fit in.
MAX_PAYLOAD_BYTES = 16 << 20
#: Deepest nesting of objects and arrays in a payload (the payload object itself is level 1).
MAX_PAYLOAD_DEPTH = 64

_STR, _INT, _OBJ = "$str", "$int", "$obj"
_TAGS = frozenset((_STR, _INT, _OBJ))
_SMALLEST_INT, _LARGEST_INT = -(2**63), 2**64 - 1  # what orjson reads back as an int


class StoredPayload(bytes):
    """The stored form of a payload, as JSON bytes: what a ``ChatMessage`` holds, checked when it was made."""

    __slots__ = ()


def freeze_payload(payload: object) -> StoredPayload | None:
    """Check a payload given to a message and return its stored form (``None`` stays ``None``).

    Raises:
        InvalidMessage: not a JSON object of str keys and JSON values, NaN or infinity, a cycle,
            nesting deeper than ``MAX_PAYLOAD_DEPTH``, a stored form over ``MAX_PAYLOAD_BYTES``.
    """
    if payload is None or type(payload) is StoredPayload:
        return payload
    if not isinstance(payload, Mapping):
        raise InvalidMessage(f"a message payload must be a JSON object (a dict), not {type(payload).__name__}")
    encoded = _dumps(_freeze(payload, 1, set()))
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(f"the message payload takes {len(encoded)} bytes stored; the limit is {MAX_PAYLOAD_BYTES}")
    return StoredPayload(encoded)


def _freeze(value: object, depth: int, path: set[int]) -> object:
    """``value`` in stored form; ``path`` holds the ids of the containers it sits in (a cycle returns to one)."""
    if type(value) is str:  # most values: text, and mostly ASCII
        return value if value.isascii() else _frozen_text(value)
    if type(value) is not dict and type(value) is not list:  # the types of JSON exactly take no test of each
        if value is None or value is True or value is False:
            return value
        if isinstance(value, str):
            return _frozen_text(value)
        if isinstance(value, int):
            number = int(value)  # an IntEnum, say, is its value
            return number if _SMALLEST_INT <= number <= _LARGEST_INT else {_INT: _digits(number)}
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidMessage(f"a message payload holds {value}, which JSON cannot represent")
            return float(value)
        if not isinstance(value, (Mapping, list)):
            raise InvalidMessage("a message payload holds only None, bool, int, float, str, list and dict, "
                                 f"not {type(value).__name__}")
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidMessage(f"a message payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")
    if id(value) in path:
        raise InvalidMessage("a message payload contains itself (a cycle)")
    path.add(id(value))
    try:
        if isinstance(value, list):
            return [_freeze(item, depth + 1, path) for item in value]
        return _frozen_object(value, depth, path)
    finally:
        path.discard(id(value))


def _frozen_object(value: Mapping[Any, Any], depth: int, path: set[int]) -> object:
    for key in value:
        if not isinstance(key, str):
            raise InvalidMessage(f"a message payload's object keys are str, not {type(key).__name__}")
    keys = [str.__str__(key) for key in value]
    values = [_freeze(item, depth + 1, path) for item in value.values()]
    if all(map(str.isascii, keys)):  # the common case: every key stays as it is
        if len(keys) == 1 and keys[0] in _TAGS:
            return {_OBJ: [[keys[0], values[0]]]}
        return dict(zip(keys, values))
    frozen_keys = [_frozen_text(key) for key in keys]
    if any(type(key) is not str for key in frozen_keys) or (len(keys) == 1 and keys[0] in _TAGS):
        return {_OBJ: [[key, item] for key, item in zip(frozen_keys, values)]}
    return dict(zip(keys, values))


def _frozen_text(text: str) -> object:
    text = str.__str__(text)  # a str subclass (an enum's member, say) is its text
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return {_STR: _runs(text)}
    return text


def _runs(text: str) -> list[str | int]:
    """The text as runs of valid Unicode, with each surrogate code point as an int."""
    runs: list[str | int] = []
    start = 0
    for at, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            if start < at:
                runs.append(text[start:at])
            runs.append(ord(char))
            start = at + 1
    if start < len(text):
        runs.append(text[start:])
    return runs


def _digits(number: int) -> str:
    try:
        return str(number)
    except ValueError:  # more digits than Python converts
        raise InvalidMessage("a message payload holds an integer too large to store") from None


def _dumps(tree: object) -> bytes:
    """The stored form of a checked tree (valid Unicode, finite floats): compact, keys in their order."""
    return json.dumps(tree, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# What reads a stored form back: any exact JSON reader of bytes will do, since a stored form holds no integer past
# 64 bits and no lone surrogate (those are tagged). The codec installs orjson's, about twice as fast.
_read_json: Callable[[bytes], Any] = json.loads


def read_payloads_with(read_json: Callable[[bytes], Any]) -> None:
    """Read stored payloads with ``read_json`` (a JSON reader of bytes) from now on."""
    global _read_json
    _read_json = read_json


def thaw_payload(stored: bytes) -> dict[str, Any]:
    """A fresh payload object from its stored form.

    Raises:
        StoreCorrupted: the bytes are not a stored payload.
    """
    try:
        tree = _read_json(stored)
        if b'{"$' not in stored:  # nothing tagged (a tag is always an object's first key)
            if type(tree) is not dict:
                raise TypeError("not an object")
            return tree
        thawed = _thaw(tree)
        if type(thawed) is not dict:
            raise TypeError("not an object")
        return thawed
    except (TypeError, ValueError, IndexError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError too
        raise StoreCorrupted(f"a stored message payload is damaged: {exc}") from None


def _thaw(tree: Any) -> Any:
    if type(tree) is list:
        return [_thaw(item) for item in tree]
    if type(tree) is not dict:
        return tree
    if len(tree) == 1:
        ((tag, inner),) = tree.items()
        if tag == _STR:
            return "".join(run if type(run) is str else chr(run) for run in inner)
        if tag == _INT:
            return int(inner)
        if tag == _OBJ:
            return {_thaw_key(key): _thaw(item) for key, item in inner}
    return {key: _thaw(item) for key, item in tree.items()}


def _thaw_key(key: Any) -> str:
    thawed = _thaw(key)
    if type(thawed) is not str:
        raise TypeError("an object key is not a string")
    return thawed


def stored_payload(tree: object) -> StoredPayload:
    """The stored form of a payload read back from stored JSON (an event's), checked only for its type.

    Raises:
        StoreCorrupted: ``tree`` is not an object, or holds what JSON cannot.
    """
    if type(tree) is not dict:
        raise StoreCorrupted(f"a stored message payload is a {type(tree).__name__}, not an object")
    try:
        return StoredPayload(_dumps(tree))
    except (TypeError, ValueError) as exc:
        raise StoreCorrupted(f"a stored message payload is damaged: {exc}") from None


def payload_tree(stored: bytes) -> Any:
    """The stored form as a JSON value (tags kept): what events and JSON outputs hold, since it is always valid
    Unicode."""
    return json.loads(stored)
