"""Whether a list a put stores is one the saver read or put, grown, its items unchanged in place.

LangGraph stores a list channel's whole value at every checkpoint that changes it; the saver stores the tail a
checkpoint adds (``_langgraph_blobs``), and serializes only the items after those whose bytes it already has
when those items are the very objects it read or put and no change in place reached them. ``Fingerprint`` is what
a list's items' bytes are made of, taken without serializing them; ``Encoded`` a list with its items' bytes and
fingerprint. The pure part: no store, no serializer.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = ["FINGERPRINT_DEPTH", "Encoded", "Fingerprint"]

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
