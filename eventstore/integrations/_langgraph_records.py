"""How LangGraph's checkpoints and pending writes are kept as messages of sessions: the pure part, no store.

One session per thread and checkpoint namespace, keyed ``langgraph/<thread id>/<namespace>`` (both parts
percent-encoded, so the key splits back). Each ``put`` appends one message of role ``checkpoint`` and each
``put_writes`` one of role ``writes``. A message's content is a short JSON header with what finding things
needs (the checkpoint's id, its parent, the channel versions whose values it holds, its run), so a lookup
decodes only the payloads it returns; the payload holds the rest:

* ``checkpoint``: ``{"checkpoint": blob, "metadata": {...}, "blobs": {channel: blob}}``: the checkpoint less
  its channel values, the metadata as JSON (as LangGraph's SQL savers keep it), and the values of the
  channels that changed in this checkpoint (its ``new_versions``);
* ``writes``: ``{"task": id, "path": task path, "writes": [[idx, channel, *blob], ...]}``.

A blob is ``[type, *bytes]`` as the saver's serializer typed them (``["empty", ""]``: the channel has no value
at that version), or, for a list that extends the value its parent checkpoint read (a chat's ``messages``), the
tail that the checkpoint added: ``["tail", the parent's version of the channel, item count, *bytes of the
items]``. ``*bytes`` is ``text, "latin-1"`` (the bytes as text, one character a byte) when JSON keeps that no
longer than base64, as it does a serializer's msgpack, else ``base64``; blobs stored before the text form are
all base64 and read as before. LangGraph stores a channel's whole value at every checkpoint that changes it, so without
tails a thread would hold its message list once per turn. A tail is only written when the serializer typed both
values as msgpack arrays and the new one's items start with the old one's bytes (msgpack is self-delimiting, so
the leading items are then equal); a reducer that removed or replaced an item gets the whole value stored. A load
joins the tail to its base, found as any other value is, through at most ``MAX_TAIL_DEPTH`` tails.

A checkpoint reads the value of each channel at its version from the nearest
checkpoint on its own parent chain that holds it, never from another branch of the thread: a fork started
from an older checkpoint reuses version numbers that another branch has written already.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import operator
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote, unquote

import attrs
import ormsgpack
from langchain_core.load.serializable import Serializable
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    writes_sort_key,
)
from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from pydantic import BaseModel

from eventstore import REDACTED, ChatMessage, StoreCorrupted

__all__ = ["KEY_PREFIX", "CHECKPOINT", "WRITES", "MAX_TAIL_DEPTH", "FINGERPRINT_DEPTH", "Header", "Items",
           "Fingerprint", "Encoded", "Base", "Known", "Records", "Templates", "Unreached", "session_key",
           "thread_prefix", "key_parts", "header", "list_channels", "checkpoint_message", "writes_message",
           "checkpoint_config"]

#: Every session of the saver has a key starting with this.
KEY_PREFIX = "langgraph/"
#: The roles of the saver's messages; a message of another role in its sessions is not its own and is skipped.
CHECKPOINT, WRITES = "checkpoint", "writes"
_EMPTY = ("empty", "")
_MSGPACK, _TAIL = "msgpack", "tail"
#: Follows bytes stored as text, one character a byte (``bytes.decode("latin-1")``), rather than as base64.
_AS_TEXT = "latin-1"
#: Bytes that JSON writes longer: a control character as a six-byte escape; a quote or a backslash as two bytes,
#: and so a byte of 128 or more (its character, U+0080 to U+00FF, is two bytes of UTF-8).
_ESCAPED_AS_SIX = bytes(range(32))
_WRITTEN_AS_TWO = b'"\\' + bytes(range(128, 256))
#: The most tails a list value is read through: one more, and a put stores the whole value again. A load decodes
#: one small payload per tail; a whole value costs the list's full size once more in the thread.
MAX_TAIL_DEPTH = 32
#: The most decoded payloads a session's records keep (a warm read decodes again none of those it needs).
PAYLOADS_KEPT = 64
#: How many ancestors a put walks to find where the values its checkpoint keeps come from (``Header.back``).
HINTED_ANCESTORS = 64
_NOWHERE = object()

Version = str | int | float


@functools.lru_cache(maxsize=1 << 12)
def session_key(thread_id: str, namespace: str) -> str:
    """The key of the session that holds the checkpoints of ``thread_id`` in ``namespace``."""
    return f"{thread_prefix(thread_id)}{_encoded(namespace)}"


def thread_prefix(thread_id: str) -> str:
    """The start of the keys of every namespace of ``thread_id`` (and of no other thread)."""
    return f"{KEY_PREFIX}{_encoded(thread_id)}/"


def key_parts(key: str) -> tuple[str, str]:
    """The thread id and namespace that ``session_key`` made ``key`` of."""
    thread, namespace = key[len(KEY_PREFIX):].split("/")
    return unquote(thread, errors="surrogatepass"), unquote(namespace, errors="surrogatepass")


def _encoded(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


def checkpoint_config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace, "checkpoint_id": checkpoint_id}}


class Unreached(Exception):
    """Records of a session's last messages only do not reach back to what a read needs: read further back."""


@attrs.frozen
class Header:
    """A message's content read: which checkpoint it belongs to, and for a checkpoint what finding values needs.

    Attributes:
        role: ``CHECKPOINT`` or ``WRITES``.
        checkpoint_id: the checkpoint's id (for writes: the checkpoint they were written at).
        parent_id: the id of the checkpoint it was put after (checkpoints only).
        stored: the channels whose values the message holds, and their versions (checkpoints only).
        run_id: the run that made the checkpoint, from its metadata.
        latest: the newest checkpoint id its put knew of, its own included (``None`` in threads stored before).
        seen: the id of the last checkpoint message its put read (``None``: it read none).
        early: for writes begun before their checkpoint's put, a token naming them; for a checkpoint, the tokens
            of the writes at it begun before its put. A read from the session's end needs them, wherever they
            landed.
        back: how many messages before its own a read of the checkpoint needs (its channels' values along its
            parent chain, a list's tails back to their base, ``seen``, its early writes), counted as if it were
            put right after the messages its put read (``None`` in threads stored before, and when its put did
            not know). A hint only: a read from the session's end reads that many at once rather than doubling
            its count until it has them, and still checks that it has them.
    """

    role: str
    checkpoint_id: str
    parent_id: str | None = None
    stored: Mapping[str, Version] = attrs.field(factory=dict)
    run_id: str | None = None
    latest: str | None = None
    seen: str | None = None
    early: tuple[str, ...] = ()
    back: int | None = None

    def content(self) -> str:
        """The message content this header is read from."""
        if self.role == WRITES:
            return _content({"checkpoint": self.checkpoint_id, "early": list(self.early) or None})
        return _content({"checkpoint": self.checkpoint_id, "parent": self.parent_id, "stored": dict(self.stored),
                         "run": self.run_id, "latest": self.latest, "seen": self.seen,
                         "early": list(self.early) or None, "back": self.back})


@functools.lru_cache(maxsize=1 << 14)
def header(role: str, content: str) -> Header | None:
    """The header of a message (cached: the store hands back the same content strings while a session is cached);
    ``None`` for a message that is not the saver's, or whose checkpoint a redaction removed (the whole thread's: a
    redaction covers a session), so a redacted thread reads as empty and can start again."""
    if role not in (CHECKPOINT, WRITES) or content == REDACTED:
        return None
    try:
        fields = json.loads(content)
        if type(fields["checkpoint"]) is not str:  # ids are compared and sorted: one of another type fails there
            raise TypeError("a checkpoint id that is not text")
        if not all(type(fields.get(name)) in (str, type(None)) for name in ("parent", "run", "latest", "seen")) \
                or type(fields.get("stored", {})) is not dict or type(fields.get("early", [])) is not list:
            raise TypeError("a field of another type than the saver writes")
        back = fields.get("back")
        return Header(role, fields["checkpoint"], fields.get("parent"), fields.get("stored", {}), fields.get("run"),
                      fields.get("latest"), fields.get("seen"), tuple(fields.get("early", ())),
                      back if type(back) is int and back >= 0 else None)  # a hint: a damaged one is none
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreCorrupted(f"a LangGraph {role} message has a damaged header: {exc}") from None


def _content(fields: Mapping[str, Any]) -> str:
    # ensure_ascii: a lone surrogate in a channel name is escaped, not rejected.
    return json.dumps({name: value for name, value in fields.items() if value is not None}, separators=(",", ":"))


def _stored_bytes(data: bytes) -> list[str]:
    """Bytes as a blob stores them: as text, one character a byte, when its JSON is no longer than base64 (it
    decodes several times faster), else as base64. A serializer's msgpack is mostly text: it is the shorter."""
    escaped = len(data) - len(data.translate(None, _ESCAPED_AS_SIX))
    doubled = len(data) - len(data.translate(None, _WRITTEN_AS_TWO))
    if len(data) + 5 * escaped + doubled <= (len(data) + 2) // 3 * 4:
        return [data.decode("latin-1"), _AS_TEXT]
    return [base64.b64encode(data).decode("ascii")]


def _read_bytes(stored: Sequence[Any]) -> bytes:
    """The bytes ``_stored_bytes`` made ``stored`` of (a blob's last item, or two)."""
    try:
        return stored[0].encode("latin-1") if len(stored) == 2 and stored[1] == _AS_TEXT else \
            base64.b64decode(stored[0])
    except (ValueError, TypeError, AttributeError, IndexError) as exc:  # binascii.Error is a ValueError
        raise StoreCorrupted(f"a LangGraph value is damaged: {exc}") from None


def _blob(serde: SerializerProtocol, value: Any) -> list[str]:
    kind, data = serde.dumps_typed(value)
    return [kind, *_stored_bytes(data)]


def _value(serde: SerializerProtocol, blob: Sequence[str], templates: Templates | None = None) -> Any:
    return _loads(serde, blob[0], _read_bytes(blob[1:]), templates)


def _loads(serde: SerializerProtocol, kind: str, data: bytes, templates: Templates | None = None) -> Any:
    """``serde.loads_typed((kind, data))``; for LangGraph's own serializer's msgpack (with its own hook, not one the
    caller gave it), the same objects made faster (``_constructing``), copied from ``templates`` where they hold
    the object's bytes."""
    if kind != _MSGPACK or type(serde) is not JsonPlusSerializer or serde._custom_unpack_ext_hook:
        return serde.loads_typed((kind, data))
    return ormsgpack.unpackb(data, ext_hook=_constructing(serde._unpack_ext_hook, templates),
                             option=ormsgpack.OPT_NON_STR_KEYS)


#: The classes of LangGraph's safe msgpack types met so far (LangChain's messages, ...), by module and name, each
#: with whether the saver may call its validator directly (``_validated_directly``).
_SAFE_CLASSES: dict[tuple[str, str], tuple[Callable[..., Any], bool]] = {}


def _constructing(library: Callable[[int, bytes], Any], templates: Templates | None = None
                  ) -> Callable[[int, bytes], Any]:
    """The serializer's msgpack hook ``library``, but a pydantic object of one of LangGraph's safe types (a
    LangChain message) is made by its class found in a dict, not through ``importlib`` and the allowlist at every
    object (a sixth of a chat's decoding): the very call the serializer makes, ``cls(**fields)``, or the validation
    it comes down to (``_made``); or, when ``templates`` hold one made of the same bytes, copied from it. Anything
    else, and anything that fails, goes to ``library``, which decodes it again and handles it as it does."""
    # Bound once for the whole value: the hook runs for every message of it.
    template_of, saw = (None, None) if templates is None else (templates.get, templates.saw)
    unpack, safe_classes = ormsgpack.unpackb, _SAFE_CLASSES

    def hook(code: int, data: bytes) -> Any:
        if code == EXT_PYDANTIC_V2:
            template = None if template_of is None else template_of(data)
            if type(template) is _Template:
                return template.copy()
            try:
                module, name, fields = unpack(data, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)[:3]
                safe = safe_classes.get((module, name)) or _safe_class(module, name)
                if safe is not None:
                    made = _made(*safe, fields)
                    if saw is not None:
                        saw(data, made, template)
                    return made
            except Exception:  # the serializer's own hook below meets it and handles it its way
                pass
        return library(code, data)

    return hook


def _safe_class(module: str, name: str) -> tuple[Callable[..., Any], bool] | None:
    """The class of a safe type whose module is imported (the serializer imports it the first time), kept."""
    if (module, name) not in SAFE_MSGPACK_TYPES or module not in sys.modules:
        return None
    found: Callable[..., Any] = getattr(sys.modules[module], name)
    safe = _SAFE_CLASSES[(module, name)] = (found, _validated_directly(found))
    return safe


#: The ``__init__`` methods of LangChain's messages that hand ``content`` and every other keyword argument on to
#: pydantic's unchanged when they are given no ``content_blocks``, and pydantic's, which validates them (one of
#: these classes that defines none of its own, in another version of LangChain, adds none).
_PASSING_ON = frozenset(vars(kind).get("__init__") for kind in (
    AIMessage, HumanMessage, SystemMessage, ToolMessage, BaseMessage, Serializable, BaseModel)) - {None}


def _validated_directly(kind: Any) -> bool:
    """Whether making an object of ``kind`` (``kind(**fields)``) comes down to calling its pydantic validator, as
    pydantic's ``__init__`` does: every ``__init__`` along its classes, down to pydantic's, is one of
    ``_PASSING_ON`` (not ``RemoveMessage``'s, which drops ``content``), and it makes its objects as ``object``
    does."""
    if getattr(kind, "__new__", None) is not _NEW_OBJECT:
        return False
    for ancestor in getattr(kind, "__mro__", ()):
        init = vars(ancestor).get("__init__")
        if init is BaseModel.__init__:
            return True
        if init is not None and init not in _PASSING_ON:
            return False
    return False


class _NotItself(Exception):
    """A model validator returned another object than the one validated (pydantic's ``__init__`` warns of it)."""


def _made(kind: Any, directly: bool, fields: Any) -> Any:
    """``kind(**fields)``; ``directly`` (``_validated_directly``), the validation that call comes down to, as
    pydantic's ``__init__`` makes it (the class's validator at the time of the call), without the Python frames of
    the four ``__init__`` calls above it, which only hand the arguments on; the keyword arguments the validator is
    given are those pydantic's ``__init__`` would have been given, in their order."""
    if not directly or type(fields) is not dict or "content_blocks" in fields or "self" in fields:
        return kind(**fields)  # arguments that the ``__init__`` methods take themselves
    made = _NEW_OBJECT(kind)
    if next(iter(fields), None) != "content":  # as a serializer's dump orders them: they are the arguments as is
        content = fields.pop("content", None)  # the default of each ``__init__`` that takes it
        fields = dict(content=content, **fields)
    if kind.__pydantic_validator__.validate_python(fields, self_instance=made) is not made:
        raise _NotItself  # the serializer's hook makes it again, and pydantic warns
    return made


#: How many objects' bytes a saver's ``Templates`` remember at most (a thread's messages: each template a few hundred
#: bytes to a few KB); past it they start again, empty.
TEMPLATES_KEPT = 8192
#: Values a template shares with its copies: immutable. A container of them (a dict or list, to this depth) is
#: copied; anything else (a datetime, a nested model, a set) keeps its object from being a template.
_SHARED = frozenset({str, int, float, bool, type(None)})
_TEMPLATE_DEPTH = 16
_set_slot = object.__setattr__
_NEW_OBJECT: Any = object.__new__


def _plain(value: Any, depth: int = _TEMPLATE_DEPTH) -> bool:
    """Whether ``value`` is immutable (``_SHARED``), or a dict or list of such values, to ``depth`` levels."""
    kind = type(value)
    if kind in _SHARED:
        return True
    if depth and kind is dict:
        return all(type(key) in _SHARED for key in value) and all(_plain(item, depth - 1) for item in value.values())
    if depth and kind is list:
        return all(_plain(item, depth - 1) for item in value)
    return False


def _fresh(value: Any) -> Any:
    """A copy of a ``_plain`` value: its containers new, its immutable values shared."""
    kind = type(value)
    if kind is dict:
        return {key: _fresh(item) for key, item in value.items()} if value else {}
    if kind is list:
        return [_fresh(item) for item in value] if value else []
    return value


class _Template:
    """A pydantic object the saver made and never hands out, of fields that are plain values (``_plain``); its
    copies are new objects as pydantic's own deep copy makes them (a new ``__dict__`` whose dicts and lists are
    new, the fields set and undeclared fields copied), each equal to what its class would make of the bytes."""

    __slots__ = ("kind", "fields", "containers", "fields_set", "extra")

    def __init__(self, made: Any) -> None:
        self.kind: type[Any] = type(made)
        self.fields = {name: _fresh(value) for name, value in vars(made).items()}  # none of the caller's objects
        self.containers = tuple(name for name, value in self.fields.items() if type(value) not in _SHARED)
        self.fields_set = frozenset(made.__pydantic_fields_set__)
        self.extra = _fresh(made.__pydantic_extra__)

    @classmethod
    def of(cls, made: Any) -> _Template | None:
        """A template of ``made``, or ``None`` when a copy could tell itself apart from ``made`` (a field or an
        undeclared field that is not plain, private attributes, a class that makes its objects its own way)."""
        if getattr(type(made), "__new__", None) is not _NEW_OBJECT \
                or getattr(made, "__pydantic_private__", None) is not None:
            return None
        fields_set = getattr(made, "__pydantic_fields_set__", None)
        extra = getattr(made, "__pydantic_extra__", None)
        if type(fields_set) is not set or not (extra is None or (type(extra) is dict and _plain(extra))) \
                or not _plain(vars(made)):
            return None
        return cls(made)

    def copy(self) -> Any:
        made = object.__new__(self.kind)  # as its class makes them: ``of`` checked that it does not make its own
        fields = self.fields.copy()
        for name in self.containers:
            fields[name] = _fresh(fields[name])
        _set_slot(made, "__dict__", fields)
        _set_slot(made, "__pydantic_extra__", _fresh(self.extra))
        _set_slot(made, "__pydantic_fields_set__", set(self.fields_set))
        _set_slot(made, "__pydantic_private__", None)
        return made


class Templates:
    """The objects of LangGraph's safe pydantic types (LangChain's messages) that a saver decoded more than once,
    kept as private templates by their msgpack bytes: a later decode of the same bytes copies the template
    (cheaper than validating the fields again) rather than making the object anew. A read of a thread decodes
    the messages that the read before it decoded, and a list of checkpoints the same messages at each.

    An object becomes a template the second time its bytes are decoded, so a thread read once (a freshly started
    process) pays only for remembering its objects' bytes. The copies are new objects: what a caller does to one
    reaches neither the template nor another copy.
    """

    def __init__(self) -> None:
        #: By an object's bytes: its template, or ``None`` when they have been decoded once (or make no template).
        self._seen: dict[bytes, _Template | None] = {}

    def get(self, data: bytes) -> _Template | _Unseen | None:
        """The template of the object ``data`` holds; ``None`` if there is none yet, ``_UNSEEN`` if ``data`` is new."""
        return self._seen.get(data, _UNSEEN)

    def saw(self, data: bytes, made: Any, found: _Template | _Unseen | None) -> None:
        """``made`` was made of ``data``, for which ``get`` found ``found``: remember that, or keep a template of
        ``made`` if they were decoded before."""
        if len(self._seen) >= TEMPLATES_KEPT:
            self._seen.clear()
        self._seen[data] = None if found is _UNSEEN else _Template.of(made)


class _Unseen:
    """What ``Templates.get`` answers for bytes it has not seen (one lookup tells all three cases apart)."""


_UNSEEN = _Unseen()


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
        return [_MSGPACK, *_stored_bytes(_array_header(self.count) + self.body)]

    def value(self, serde: SerializerProtocol, templates: Templates | None = None) -> Any:
        try:
            return _loads(serde, _MSGPACK, _array_header(self.count) + self.body, templates)
        except ValueError as exc:  # msgpack's errors: a count its tails' bytes do not hold
            raise StoreCorrupted(f"a LangGraph list is damaged: {exc}") from None


#: Values whose bytes a change in place cannot reach: a fingerprint holds them and looks no further.
_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})
#: Values whose equal ones serialize to the same bytes: a group of these alone is compared by equality (``leads``),
#: which tells identical values apart in C without a call each.
_TEXT = frozenset({str, type(None)})
_extra_of = operator.attrgetter("__pydantic_extra__")
_fields_of = operator.attrgetter("__dict__")  # as ``vars``, for less
_values = operator.methodcaller("values")
#: How far below a list's items a fingerprint looks: their fields (a message's ``content``, ``id``,
#: ``tool_calls``, ...), the entries of the lists and dicts among those (a content block, a tool call, an
#: ``additional_kwargs`` value), and those entries' own (a content block's ``text``, a tool call's ``args``).
FINGERPRINT_DEPTH = 3


#: A fingerprint's part: the values held by one group (the values of one kind among those the group above it
#: held), in order, and how many each value of the group held.
_Part = tuple[tuple[Any, ...], tuple[int, ...]]


@attrs.frozen(eq=False)
class Fingerprint:
    """What a list's items' bytes are made of, down to ``FINGERPRINT_DEPTH``: the values the items hold (their
    fields, a dict's keys and values, a list's items), grouped by kind, and the values those hold in turn, with
    each one's size. The values themselves, not their ids: held, none is freed and its id taken by a new object.
    A group keeps the items' order, so a list's first items contribute the first values of every group: the
    fingerprint of a list that grew starts with the old one (``leads``). ``text``: the groups that hold text and
    ``None`` alone (no subclass of ``str``)."""

    parts: Mapping[tuple[Any, ...], _Part]
    text: frozenset[tuple[Any, ...]] = frozenset()

    @classmethod
    def of(cls, items: Sequence[Any]) -> Fingerprint | None:
        """The items' fingerprint; ``None`` if an item's fields cannot be seen (no ``__dict__``: slots)."""
        parts: dict[tuple[Any, ...], _Part] = {}
        text: set[tuple[Any, ...]] = set()
        return cls(parts, frozenset(text)) if _look_into(items, FINGERPRINT_DEPTH, (), parts, text, opaque=False) \
            else None

    def same(self, other: Fingerprint | None) -> bool:
        """Whether ``other`` holds the very same values, in the same shape."""
        return other is not None and self.parts.keys() == other.parts.keys() and all(
            _same_part(part, other.parts[path]) for path, part in self.parts.items())

    def leads(self, longer: Fingerprint) -> bool:
        """Whether ``longer``, the fingerprint of these items followed by others, holds these items' values
        unchanged: each of its groups starts with the very values and sizes of this one's (or, in a group of text
        on both sides, equal ones: a text set again to an equal one is serialized to the same bytes)."""
        for path, (held, sizes) in self.parts.items():
            other = longer.parts.get(path)
            if other is None or len(other[0]) < len(held) or other[1][:len(sizes)] != sizes:
                return False
            if path in self.text and path in longer.text:
                if other[0][:len(held)] != held:
                    return False
            elif not all(map(operator.is_, held, other[0])):
                return False
        return True


def _same_part(part: _Part, other: _Part) -> bool:
    return part[1] == other[1] and len(part[0]) == len(other[0]) and all(map(operator.is_, part[0], other[0]))


def _look_into(values: Sequence[Any], depth: int, path: tuple[Any, ...], parts: dict[tuple[Any, ...], _Part],
               text: set[tuple[Any, ...]], opaque: bool) -> bool:
    """Add to ``parts`` what ``values`` hold, a group per kind, and below, to ``depth`` levels; a value that holds
    nothing it could change in place (a string, a number) holds nothing; ``path`` is added to ``text`` when
    ``values`` are text and ``None`` alone. An object whose fields cannot be seen is
    taken as it is where ``opaque`` allows (a datetime, a UUID); else ``False``. Groups are gathered by C iterators,
    the fields of objects of one class by column (a message's ``content`` of every message, its
    ``additional_kwargs`` of every message, ...), sliced from one run of them all: a Python step per value would
    cost nearly what serializing the items does."""
    present = set(map(type, values))
    if present <= _LEAVES:
        if present <= _TEXT:
            text.add(path)
        return True
    kinds = list(map(type, values)) if len(present) > 1 else []
    for kind in present - _LEAVES:
        alike = values if not kinds else list(itertools.compress(values, map({kind}.__contains__, kinds)))
        group = (*path, kind)
        if issubclass(kind, (dict, list, tuple)):
            sizes = tuple(map(len, alike))
            filled: Iterable[Any] = itertools.compress(alike, sizes)  # most are empty (no kwargs, no tool calls)
            if issubclass(kind, dict):
                filled = itertools.chain.from_iterable(map(dict.items, filled))
            held = tuple(itertools.chain.from_iterable(filled))
            parts[group] = (held, sizes)
        elif kind.__dictoffset__:  # its fields are in a __dict__ (a pydantic model's too, an attrs class's)
            fields = list(map(_fields_of, alike))
            try:
                held = tuple(itertools.chain.from_iterable(map(dict.values, fields)))
            except TypeError:  # a __dict__ that is not a dict (a class's mappingproxy)
                held = tuple(itertools.chain.from_iterable(map(_values, fields)))
            sizes = tuple(map(len, fields))
            parts[group] = ((), sizes)
            if hasattr(kind, "__pydantic_extra__"):  # a pydantic model's undeclared fields, kept apart
                parts[(*group, "extra")] = (tuple(map(_extra_of, alike)), ())
                if depth > 1 and not _look_into(parts[(*group, "extra")][0], depth - 1, (*group, "extra"), parts,
                                                text, opaque=True):
                    return False
            # The same fields in each (their count, in a pydantic model's declared order): a column a field;
            # else one group of them all.
            count = sizes[0] if sizes and sizes.count(sizes[0]) == len(sizes) else 0
            columns = {field: held[field::count] for field in range(count)} if count else {None: held}
            for field, column in columns.items():
                parts[(*group, field)] = (column, ())
                if depth > 1 and not _look_into(column, depth - 1, (*group, field), parts, text, opaque=True):
                    return False
            continue
        elif not opaque:
            return False
        else:
            continue
        if held and depth > 1 and not _look_into(held, depth - 1, group, parts, text, opaque=True):
            return False
    return True


@attrs.frozen(eq=False)
class Encoded:
    """A list value the saver read or put, its items' msgpack bytes (``Items.body``), and its items'
    ``Fingerprint`` taken when those bytes were made: a put of a list whose first items are these very objects,
    their fingerprint unchanged, serializes only the items after them. LangGraph's reducers hand a channel's
    items on as they are (``add_messages`` copies the list, not the messages); a node that changes one in place
    (which LangGraph asks nodes not to do) changes the fingerprint, unless the change is deeper than it looks,
    and the list is serialized whole."""

    objects: tuple[Any, ...]
    body: bytes
    fingerprint: Fingerprint | None

    @classmethod
    def taken(cls, value: Sequence[Any], body: bytes) -> Encoded:
        """``value``, whose items' bytes ``body`` has just been made of."""
        return cls(tuple(value), body, Fingerprint.of(value))

    def extension(self, value: list[Any]) -> Fingerprint | None:
        """The fingerprint of ``value`` if its first items are these objects, their fingerprint unchanged (one
        fingerprint of the whole new list, whose groups must start with this one's); else ``None``."""
        count = len(self.objects)
        if self.fingerprint is None or len(value) < count or not all(map(operator.is_, self.objects, value)):
            return None
        taken = Fingerprint.of(value)
        return taken if taken is not None and self.fingerprint.leads(taken) else None


@attrs.frozen
class Base:
    """What a put needs to store a list channel as a tail: the parent's version of the channel and its value;
    ``encoded``: the channel's list the saver last read or put in the session, when its bytes are that value's."""

    version: Version
    items: Items
    encoded: Encoded | None = None


def _list_blob(serde: SerializerProtocol, value: list[Any], base: Base | None) -> tuple[list[Any], Encoded | None]:
    """The blob of a channel's new value: the tail it adds to ``base`` when it extends it, else the whole; and the
    value with its items' bytes, when it is a msgpack array."""
    encoded = _extended(serde, value, base)
    if encoded is None:
        kind, data = serde.dumps_typed(value)
        shape = _array_shape(data) if kind == _MSGPACK else None
        if shape is None:
            return [kind, *_stored_bytes(data)], None
        encoded = Encoded.taken(value, data[shape[1]:])
    if base is None or base.items.depth >= MAX_TAIL_DEPTH or not encoded.body.startswith(base.items.body):
        return [_MSGPACK, *_stored_bytes(_array_header(len(value)) + encoded.body)], encoded
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
    shape = _array_shape(data) if kind == _MSGPACK else None
    return None if shape is None else Encoded(tuple(value), base.items.body + data[shape[1]:], fingerprint)


def _whole_items(blob: Sequence[Any], supplier: str) -> Items | None:
    data = _read_bytes(blob[1:]) if blob[0] == _MSGPACK else b""
    shape = _array_shape(data)
    return None if shape is None else Items(shape[0], data[shape[1]:], 0, (supplier,))


def _is_tail(blob: Sequence[Any]) -> bool:
    return len(blob) >= 4  # a whole value's blob has two or three items, whatever its serializer named its type


def _jsonable(value: Any) -> Any:
    """Metadata as JSON keeps it (a tuple becomes a list, as LangGraph's SQL savers store it)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {name: _jsonable(item) for name, item in value.items()}
    return value


def list_channels(checkpoint: Checkpoint, new_versions: ChannelVersions) -> list[str]:
    """The channels of ``new_versions`` whose new values are lists: those a put may store as tails."""
    values = checkpoint["channel_values"]
    return [channel for channel in new_versions if type(values.get(channel)) is list]


@attrs.frozen
class Known:
    """What a put knew of its thread when it read it: the newest checkpoint id, the last checkpoint message, and
    how many of the messages it read a read of its checkpoint needs (``Header.back``)."""

    latest: str | None
    seen: str | None
    back: int | None = None


def checkpoint_message(serde: SerializerProtocol, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                       parent_id: str | None, new_versions: ChannelVersions,
                       bases: Mapping[str, Base] | None = None, known: Known = Known(None, None),
                       early: Sequence[str] = ()) -> tuple[ChatMessage, dict[str, Encoded]]:
    """The message that records ``put(config, checkpoint, metadata, new_versions)``, and its list values with
    their bytes (for the next put: ``Base.encoded``); a list channel with one of ``bases`` (its value at the
    parent, ``Records.bases``) is stored as the tail it adds, if it adds one.
    ``known`` (``Records.known``) and ``early`` (the tokens of writes at it begun before the put) let a read from
    the thread's end find its latest checkpoint and that checkpoint's writes without reading the thread whole."""
    values = checkpoint["channel_values"]
    body = {name: field for name, field in checkpoint.items() if name != "channel_values"}
    bases = bases or {}
    blobs: dict[str, list[Any]] = {}
    lists: dict[str, Encoded] = {}
    for channel in new_versions:
        if channel not in values:
            blobs[channel] = list(_EMPTY)
        elif type(values[channel]) is list:
            blobs[channel], encoded = _list_blob(serde, values[channel], bases.get(channel))
            if encoded is not None:
                lists[channel] = encoded
        else:
            blobs[channel] = _blob(serde, values[channel])
    run_id = metadata.get("run_id")
    latest = checkpoint["id"] if known.latest is None else max(known.latest, checkpoint["id"])
    head = Header(CHECKPOINT, checkpoint["id"], parent_id, dict(new_versions),
                  run_id if isinstance(run_id, str) else None, latest, known.seen, tuple(early), known.back)
    payload = {"checkpoint": _blob(serde, body), "metadata": _jsonable(metadata), "blobs": blobs}
    return ChatMessage(CHECKPOINT, head.content(), payload), lists


def writes_message(serde: SerializerProtocol, checkpoint_id: str, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str, early: str | None = None) -> ChatMessage:
    """The message that records ``put_writes(config, writes, task_id, task_path)`` at ``checkpoint_id``;
    ``early``: the token of writes begun before the checkpoint's put (which then names it)."""
    rows = [[WRITES_IDX_MAP.get(channel, idx), channel, *_blob(serde, value)]
            for idx, (channel, value) in enumerate(writes)]
    return ChatMessage(WRITES, Header(WRITES, checkpoint_id, early=() if early is None else (early,)).content(),
                       {"task": task_id, "path": task_path, "writes": rows})


def _payload_of(message: ChatMessage, head: Header) -> dict[str, Any]:
    """The message's payload, checked to have the shape the saver gave it: a message changed through the store
    reads as damaged, not as a KeyError or a TypeError where a field is used."""
    payload = message.payload  # decoded afresh at each access: read it once
    if payload is None:
        raise StoreCorrupted(f"a LangGraph {message.role} message has no payload")
    if not _well_formed(payload, head):
        raise StoreCorrupted(f"a LangGraph {message.role} message has a damaged payload")
    return payload


def _is_blob(blob: Any) -> bool:
    return type(blob) is list and len(blob) >= 2 and type(blob[0]) is str


def _well_formed(payload: Any, head: Header) -> bool:
    if type(payload) is not dict:
        return False
    if head.role == WRITES:
        rows = payload.get("writes")
        return type(payload.get("task")) is str and type(payload.get("path")) is str and type(rows) is list and all(
            type(row) is list and len(row) > 2 and type(row[0]) is int and type(row[1]) is str
            and _is_blob(row[2:]) for row in rows)
    blobs = payload.get("blobs")
    return _is_blob(payload.get("checkpoint")) and type(payload.get("metadata")) is dict and type(blobs) is dict \
        and all(_is_blob(blobs.get(channel)) for channel in head.stored)


@attrs.frozen
class Records:
    """One session's messages read as checkpoints and writes.

    Attributes:
        messages: the session's messages, oldest first.
        headers: their headers (``None`` for a message that is not the saver's).
        positions: each checkpoint id and the position of its message (the latest, if put again).
        writes: each checkpoint id and the positions of the writes messages written at it, in order.
        whole: whether ``messages`` are the whole session, or only its last ones: then a read that needs a
            message before them raises ``Unreached``.
        newest: the greatest checkpoint id of ``positions`` (checkpoint ids sort by time).
    """

    messages: Sequence[ChatMessage]
    headers: Sequence[Header | None]
    positions: Mapping[str, int]
    writes: Mapping[str, Sequence[int]]
    whole: bool = True
    newest: str | None = None
    #: The lists ``items`` joined, by checkpoint and channel: bytes, which no caller can change.
    _joined: dict[tuple[str, str], Items] = attrs.field(factory=dict, eq=False, repr=False)
    #: The payloads read, by position: the saver's own (a caller gets copies of what they hold, never them).
    _payloads: dict[int, dict[str, Any]] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def last(cls, messages: Sequence[ChatMessage]) -> Records:
        """The records of a session's last ``messages`` (not all of them)."""
        return attrs.evolve(cls.of(messages), whole=False)

    @classmethod
    def of(cls, messages: Sequence[ChatMessage], earlier: Records | None = None) -> Records:
        """The records of ``messages``; ``earlier``, records of the same session read before, saves reading the
        headers again when the session only grew since: its messages start with ``earlier``'s (mostly the same
        objects: a store hands back the messages it keeps decoded; equal ones make the same records, messages
        being immutable values). Compared as lists: identical items compare in C, without a call each."""
        count = 0 if earlier is None else len(earlier.messages)
        kept = earlier if earlier is not None and count <= len(messages) and \
            list(earlier.messages) == list(messages[:count]) else None
        start = 0 if kept is None else len(kept.messages)
        if kept is not None and start == len(messages):
            return kept
        headers = [*(() if kept is None else kept.headers),
                   *(header(message.role, message.content) for message in messages[start:])]
        positions: dict[str, int] = {} if kept is None else dict(kept.positions)
        writes: dict[str, Sequence[int]] = {} if kept is None else dict(kept.writes)
        joined = {} if kept is None else dict(kept._joined)
        newest = None if kept is None else kept.newest
        for position in range(start, len(headers)):
            head = headers[position]
            if head is None:
                continue
            if head.role == CHECKPOINT:
                if head.checkpoint_id in positions:  # put again: what was joined may have read the one replaced
                    joined = {}
                positions[head.checkpoint_id] = position
                newest = head.checkpoint_id if newest is None else max(newest, head.checkpoint_id)
            else:
                writes[head.checkpoint_id] = [*writes.get(head.checkpoint_id, ()), position]
        return cls(messages, headers, positions, writes, newest=newest, joined=joined,
                   payloads={} if kept is None else kept._payloads)  # the same message at each position

    def latest(self) -> str | None:
        """The id of the newest checkpoint (checkpoint ids sort by time).

        From a session's last messages: the last checkpoint message's ``latest`` names the newest its put knew
        of, which covers every checkpoint up to the last one it read (``seen``); the newest is that or one put
        after it. ``Unreached`` when the messages do not go back to ``seen``, or the header has no ``latest``.
        """
        if self.whole:
            return self.newest
        checkpoints = (head for head in reversed(self.headers) if head is not None and head.role == CHECKPOINT)
        last = next(checkpoints, None)
        if last is None or last.latest is None or last.seen is None:
            raise Unreached
        newest = last.latest
        for head in checkpoints:
            if head.checkpoint_id == last.seen:
                break
            newest = max(newest, head.checkpoint_id)
        else:
            raise Unreached
        if newest not in self.positions:  # put before these messages, or dropped by a rewrite since
            raise Unreached
        return newest

    def known(self, parent_id: str | None = None, kept: Mapping[str, Version] | None = None,
              bases: Mapping[str, Base] | None = None, early: Sequence[str] = ()) -> Known:
        """What a put after reading these (whole) records knows: ``Header.latest``, ``Header.seen`` and, given
        what the put's checkpoint reads from before it (``Header.back``): its parent, the channels it keeps at
        their parent's version (``kept``), the ``bases`` of the lists it stores as tails, the tokens of its
        ``early`` writes."""
        last = self._last_checkpoint()
        seen = None if last is None else self._checkpoint_at(last)
        return Known(self.latest(), seen, self._back(last, parent_id, kept or {}, bases or {}, early))

    def _back(self, last: int | None, parent_id: str | None, kept: Mapping[str, Version],
              bases: Mapping[str, Base], early: Sequence[str]) -> int | None:
        needed = [len(self.headers) if last is None else last]
        if parent_id is not None:
            suppliers = self._near_suppliers(parent_id, kept) if parent_id in self.positions else None
            if suppliers is None:
                return None
            # A kept value stored as a tail reads its parts, as a tail this put stores reads its base's.
            parts = [*(part for channel, supplier in suppliers.items() for part in self._parts(supplier, channel)
                       if _is_tail(self.payload(supplier)["blobs"][channel])),
                     *suppliers.values(), *(part for base in bases.values() for part in base.items.suppliers)]
            needed += (self.positions[checkpoint_id] for checkpoint_id in (parent_id, *parts)
                       if checkpoint_id in self.positions)
        if early:
            tokens = set(early)
            needed += (position for positions in self.writes.values() for position in positions
                       if tokens.intersection(self._early(position)))
        return len(self.headers) - min(needed)

    def _last_checkpoint(self) -> int | None:
        """The position of the last checkpoint message."""
        return next((position for position in range(len(self.headers) - 1, -1, -1)
                     if (head := self.headers[position]) is not None and head.role == CHECKPOINT), None)

    def _checkpoint_at(self, position: int) -> str:
        head = self.headers[position]
        assert head is not None  # a position of the saver's message
        return head.checkpoint_id

    def _near_suppliers(self, checkpoint_id: str, versions: Mapping[str, Version]) -> dict[str, str] | None:
        """``suppliers``, walking at most ``HINTED_ANCESTORS`` of the chain (a put pays this walk); ``None`` when
        one lies further back, or nowhere on it."""
        wanted = dict(versions)
        found: dict[str, str] = {}
        if not wanted:
            return found
        for ancestor in itertools.islice(self.chain(checkpoint_id), HINTED_ANCESTORS):
            for channel, version in self._header(ancestor).stored.items():
                if wanted.get(channel, _NOWHERE) == version:
                    found[channel] = ancestor
                    del wanted[channel]
            if not wanted:
                return found
        return None

    def wanted(self) -> int | None:
        """How many of the session's last messages a read of the checkpoint of the last checkpoint message of
        these records needs, as its header says (``Header.back``), counted from these records' end."""
        last = self._last_checkpoint()
        head = None if last is None else self.headers[last]
        return None if head is None or head.back is None else len(self.headers) - cast(int, last) + head.back

    def _header(self, checkpoint_id: str) -> Header:
        head = self.headers[self.positions[checkpoint_id]]
        assert head is not None  # positions only name the saver's messages
        return head

    def run_id(self, checkpoint_id: str) -> str | None:
        """The run that made the checkpoint (from its header: no payload is decoded)."""
        return self._header(checkpoint_id).run_id

    def chain(self, checkpoint_id: str) -> Iterable[str]:
        """The checkpoint and its ancestors in this session, nearest first."""
        seen: set[str] = set()
        current: str | None = checkpoint_id
        while current is not None and current in self.positions and current not in seen:
            seen.add(current)
            yield current
            current = self._header(current).parent_id
        if current is not None and current not in self.positions and not self.whole:
            raise Unreached

    def suppliers(self, checkpoint_id: str, versions: Mapping[str, Version]) -> dict[str, str]:
        """For each channel of ``versions``, the checkpoint on the chain that holds its value at that version."""
        wanted = dict(versions)
        found: dict[str, str] = {}
        if not wanted:
            return found
        for ancestor in self.chain(checkpoint_id):
            for channel, version in self._header(ancestor).stored.items():
                if channel in wanted and wanted[channel] == version:
                    found[channel] = ancestor
                    del wanted[channel]
            if not wanted:  # before the chain goes on: a parent past the records' first message is not needed
                break
        return found

    def payload(self, checkpoint_id: str) -> dict[str, Any]:
        return self._payload_at(self.positions[checkpoint_id])

    def _payload_at(self, position: int) -> dict[str, Any]:
        found = self._payloads.get(position)
        if found is None:
            if len(self._payloads) >= PAYLOADS_KEPT:  # a list of a long thread reads them all: keep memory bounded
                self._payloads.clear()
            head = self.headers[position]
            assert head is not None  # a position of the saver's message
            found = self._payloads[position] = _payload_of(self.messages[position], head)
        return found

    def metadata(self, checkpoint_id: str) -> dict[str, Any]:
        """The checkpoint's metadata (a copy)."""
        metadata: dict[str, Any] = _jsonable(self.payload(checkpoint_id)["metadata"])
        return metadata

    def items(self, supplier: str, channel: str) -> Items | None:
        """The list that checkpoint ``supplier`` holds for ``channel`` (its tails joined to their base), or
        ``None`` if it holds no msgpack array there. Kept: a later call, or one on records of the same session
        grown since, joins only the tails added after it."""
        tails: list[tuple[int, bytes]] = []  # newest first
        used = [supplier]
        base = self._joined.get((supplier, channel))
        while base is None:
            blob = self.payload(used[-1])["blobs"][channel]
            if not _is_tail(blob):
                base = _whole_items(blob, used[-1])
                if base is None:
                    if tails:
                        raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} extends a value that is no "
                                             f"list")
                    return None
                break
            base_version, count = blob[1], blob[2]
            if type(count) is not int or count < 0:
                raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} adds {count!r:.20} items")
            tails.append((count, _read_bytes(blob[3:])))
            parent_id = self._header(used[-1]).parent_id
            found = None if parent_id is None else self.suppliers(parent_id, {channel: base_version}).get(channel)
            if found is None or found in used:
                raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} extends a value its chain lacks")
            used.append(found)
            base = self._joined.get((found, channel))
        if tails:
            base = Items(base.count + sum(count for count, _ in tails),
                         b"".join([base.body, *(tail for _, tail in reversed(tails))]), base.depth + len(tails),
                         (*base.suppliers, *used[:-1]))
        self._joined[(supplier, channel)] = base
        return base

    def bases(self, serde: SerializerProtocol, parent_id: str, channels: Iterable[str],
              encoded: Mapping[str, Encoded] | None = None) -> dict[str, Base]:
        """The values that ``channels`` had at checkpoint ``parent_id``, those that are lists, for a put after it;
        ``encoded``: the lists the saver last read or put in the session, kept with a base whose bytes they are."""
        if parent_id not in self.positions:
            return {}
        versions = _value(serde, self.payload(parent_id)["checkpoint"])["channel_versions"]
        found: dict[str, Base] = {}
        for channel, supplier in self.suppliers(parent_id, {channel: versions[channel] for channel in channels
                                                             if channel in versions}).items():
            items = self.items(supplier, channel)
            if items is not None:
                known = (encoded or {}).get(channel)
                found[channel] = Base(versions[channel], items,
                                      known if known is not None and known.body == items.body else None)
        return found

    def _whole_blob(self, supplier: str, channel: str) -> list[Any]:
        """The blob of ``channel`` at ``supplier``, a tail joined to its base."""
        blob: list[Any] = self.payload(supplier)["blobs"][channel]
        return self._list(supplier, channel).blob() if _is_tail(blob) else blob

    def _list(self, supplier: str, channel: str) -> Items:
        items = self.items(supplier, channel)
        assert items is not None  # a tail always reads as a list, or raised
        return items

    def checkpoint_tuple(self, serde: SerializerProtocol, checkpoint_id: str, thread_id: str,
                         namespace: str, templates: Templates | None = None) -> CheckpointTuple:
        """The checkpoint as ``get_tuple`` returns it: its channel values found along its chain, its writes
        (``templates``: the saver's, which its objects are copied from where they can be)."""
        return self.read(serde, checkpoint_id, thread_id, namespace, encoded=False, templates=templates)[0]

    def read(self, serde: SerializerProtocol, checkpoint_id: str, thread_id: str, namespace: str,
             encoded: bool = True, templates: Templates | None = None
             ) -> tuple[CheckpointTuple, dict[str, Encoded]]:
        """``checkpoint_tuple``, and, if ``encoded``, its list values with their bytes and fingerprints (for a put
        after it: ``Base.encoded``; a fingerprint costs about a third of serializing the list)."""
        payload = self.payload(checkpoint_id)
        body = _value(serde, payload["checkpoint"])
        values: dict[str, Any] = {}
        lists: dict[str, Encoded] = {}
        for channel, supplier in self.suppliers(checkpoint_id, body["channel_versions"]).items():
            blob = self.payload(supplier)["blobs"][channel]
            items = self.items(supplier, channel) if _is_tail(blob) or blob[0] == _MSGPACK else None
            if items is not None:
                values[channel] = items.value(serde, templates)
                if encoded and type(values[channel]) is list:
                    lists[channel] = Encoded.taken(values[channel], items.body)
            elif blob[0] != _EMPTY[0]:
                values[channel] = _value(serde, blob, templates)
        parent_id = self._header(checkpoint_id).parent_id
        return CheckpointTuple(
            config=checkpoint_config(thread_id, namespace, checkpoint_id),
            checkpoint=cast(Checkpoint, {**body, "channel_values": values}),
            metadata=cast(CheckpointMetadata, self.metadata(checkpoint_id)),
            parent_config=None if parent_id is None else checkpoint_config(thread_id, namespace, parent_id),
            pending_writes=self.pending_writes(serde, checkpoint_id, templates),
        ), lists

    def pending_writes(self, serde: SerializerProtocol, checkpoint_id: str, templates: Templates | None = None
                       ) -> list[PendingWrite]:
        """The writes at the checkpoint: a write repeated by (task, index) counts once, the first time; a
        special channel's write (an error, an interrupt, ...) counts the last time. In LangGraph's order."""
        positions = self.writes.get(checkpoint_id, ())
        if not self.whole and not set(self._header(checkpoint_id).early).issubset(
                token for position in positions for token in self._early(position)):
            raise Unreached  # writes begun before the checkpoint's put landed before these messages
        chosen: dict[tuple[str, int], tuple[str, list[Any]]] = {}
        for position in positions:
            payload = self._payload_at(position)
            for row in payload["writes"]:
                if row[0] < 0 or (payload["task"], row[0]) not in chosen:
                    chosen[(payload["task"], row[0])] = (payload["path"], row)
        ordered = sorted(chosen.items(), key=lambda item: writes_sort_key(item[1][0], *item[0]))
        return [(task, row[1], _value(serde, row[2:], templates)) for (task, _), (_, row) in ordered]

    def _early(self, position: int) -> tuple[str, ...]:
        head = self.headers[position]
        return () if head is None else head.early

    def without(self, serde: SerializerProtocol, dropped: set[str]) -> list[ChatMessage]:
        """The messages less the ``dropped`` checkpoints and their writes, every kept checkpoint reading as before.

        A kept checkpoint whose values came from a dropped ancestor gets them copied into its own message.
        """
        kept: list[ChatMessage] = []
        for position, (message, head) in enumerate(zip(self.messages, self.headers)):
            if head is not None and head.checkpoint_id in dropped:
                continue
            if head is None or head.role == WRITES or self.positions[head.checkpoint_id] != position:
                kept.append(message)
            else:
                kept.append(self._self_sufficient(serde, head, dropped))
        return kept

    def _self_sufficient(self, serde: SerializerProtocol, head: Header, dropped: set[str]) -> ChatMessage:
        checkpoint_id = head.checkpoint_id
        payload = self.payload(checkpoint_id)
        versions = _value(serde, payload["checkpoint"])["channel_versions"]
        still_reached: set[str] = set()
        for ancestor in self.chain(checkpoint_id):
            if ancestor in dropped:
                break
            still_reached.add(ancestor)
        # A value read from a dropped ancestor (joined whole, if a tail), or its own tail whose base was there.
        moved = {channel: supplier for channel, supplier in self.suppliers(checkpoint_id, versions).items()
                 if supplier not in still_reached or (_is_tail(payload["blobs"].get(channel, _EMPTY))
                                                      and not still_reached.issuperset(self._parts(supplier, channel)))}
        if not moved:
            return self.messages[self.positions[checkpoint_id]]
        blobs = {**payload["blobs"], **{channel: self._whole_blob(supplier, channel)
                                         for channel, supplier in moved.items()}}
        stored = {**head.stored, **{channel: versions[channel] for channel in moved}}
        return ChatMessage(CHECKPOINT, attrs.evolve(head, stored=stored).content(), {**payload, "blobs": blobs})

    def _parts(self, supplier: str, channel: str) -> tuple[str, ...]:
        items = self.items(supplier, channel)
        return (supplier,) if items is None else items.suppliers
