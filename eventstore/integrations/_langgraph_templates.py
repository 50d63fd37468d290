"""Decoding the msgpack of LangGraph's own serializer faster, into the very objects it makes (``loads``).

A read of a thread decodes every message of its chat, and the serializer's hook finds each object's class
through ``importlib`` and its allowlist. Here a LangChain message of one of LangGraph's safe types is made by its
class found in a dict, by the validation its ``__init__`` comes down to where that is all it does, or as a copy
of a private template made of the same bytes (``Templates``); anything else, and anything that fails, goes to
the serializer's own hook. The pure part: no store.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import ormsgpack
from langchain_core.load.serializable import Serializable
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from pydantic import BaseModel

__all__ = ["MSGPACK", "TEMPLATES_KEPT", "Templates", "loads"]

#: The type name LangGraph's serializer gives the values it writes as msgpack.
MSGPACK = "msgpack"


def loads(serde: SerializerProtocol, kind: str, data: bytes, templates: Templates | None = None) -> Any:
    """``serde.loads_typed((kind, data))``; for LangGraph's own serializer's msgpack (with its own hook, not one the
    caller gave it), the same objects made faster (``_constructing``), copied from ``templates`` where they hold
    the object's bytes."""
    if kind != MSGPACK or type(serde) is not JsonPlusSerializer or serde._custom_unpack_ext_hook:
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
