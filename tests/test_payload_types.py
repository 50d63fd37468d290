"""A payload's values of the JSON types' subclasses (an enum's member, a dict or list subclass, any mapping) are
stored as the plain values they stand for, exactly as the plain values themselves are; other types are refused."""

from __future__ import annotations

import enum
from collections import OrderedDict, UserDict
from typing import Any

import pytest

from eventstore import ChatMessage, InvalidMessage


class Colour(enum.StrEnum):
    RED = "réd"


class Level(enum.IntEnum):
    HIGH = 3


class Tagged(dict[str, Any]):
    pass


class Items(list[Any]):
    pass


@pytest.mark.parametrize(("given", "plain"), [
    ({"colour": Colour.RED, Colour.RED: "key"}, {"colour": "réd", "réd": "key"}),
    ({"level": Level.HIGH, "levels": [Level.HIGH, 2**64]}, {"level": 3, "levels": [3, 2**64]}),
    ({"nested": Tagged(a=Items([1, "x", None, True, 1.5]))}, {"nested": {"a": [1, "x", None, True, 1.5]}}),
    ({"ordered": OrderedDict(b=1, a=2), "mapping": UserDict({"k": "v"})}, {"ordered": {"b": 1, "a": 2},
                                                                           "mapping": {"k": "v"}}),
    ({"$str": "one key that is a tag"}, {"$str": "one key that is a tag"}),
    ({"text": "\ud800 lone", "ascii": "plain"}, {"text": "\ud800 lone", "ascii": "plain"}),
])
def test_subclasses_are_stored_as_their_plain_values(given: dict[str, Any], plain: dict[str, Any]) -> None:
    message = ChatMessage.user("hi", given)
    assert message == ChatMessage.user("hi", plain)
    assert message.payload == plain
    assert type(message.payload) is dict


@pytest.mark.parametrize("refused", [{"a": (1, 2)}, {"a": {1, 2}}, {"a": b"bytes"}, {1: "a"}, {"a": float("nan")},
                                     {"a": [float("inf")]}, {"a": object()}])
def test_values_that_are_not_json_are_refused(refused: dict[Any, Any]) -> None:
    with pytest.raises(InvalidMessage):
        ChatMessage.user("hi", refused)
