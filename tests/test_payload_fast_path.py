"""Values of the exact JSON types take a fast path when a payload is frozen: the same values as subclasses (which
take the checked path) must give the very same stored bytes, and the same refusals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore._errors import InvalidMessage
from eventstore._payload import freeze_payload, thaw_payload


class Text(str):
    __slots__ = ()


class Number(int):
    __slots__ = ()


class Real(float):
    __slots__ = ()


class Object(dict[Any, Any]):
    pass


class Array(list[Any]):
    pass


keys = st.text(max_size=4) | st.sampled_from(("$str", "$int", "$obj", "é", "\ud800", "a\udfffb"))
leaves = (st.none() | st.booleans() | st.integers() | st.integers(2**63, 2**80) | st.integers(max_value=-2**63 - 1)
          | st.floats() | st.just(-0.0) | st.text() | st.sampled_from(("\udfff", "a\ud800b", "é")))
trees = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                     max_leaves=12)
payloads = st.dictionaries(keys, trees, max_size=4)


def as_subclasses(value: Any) -> Any:
    """The same value with every str, int, float, dict and list (and key) of a subclass."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, int):
        return Number(value)
    if isinstance(value, float):
        return Real(value)
    if isinstance(value, list):
        return Array(as_subclasses(item) for item in value)
    return Object((Text(key), as_subclasses(item)) for key, item in value.items())


def frozen(value: Any) -> tuple[str, object]:
    try:
        return "stored", freeze_payload(value)
    except InvalidMessage as exc:
        return "refused", str(exc)


@given(payloads)
def test_the_fast_path_stores_what_the_checked_path_does(payload: dict[str, Any]) -> None:
    fast, checked = frozen(payload), frozen(as_subclasses(payload))
    assert fast == checked
    if fast[0] == "stored":
        stored = fast[1]
        assert isinstance(stored, bytes)
        assert repr(thaw_payload(stored)) == repr(payload)  # repr: -0.0 is not 0.0, nor NaN NaN by ==


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), Real("nan"), {1: "a"}, {None: 1},
                                   b"bytes", (1, 2), {"a": {2: 3}}])
def test_refusals_stay_refusals_on_both_paths(value: object) -> None:
    with pytest.raises(InvalidMessage):
        freeze_payload({"k": value})
    with pytest.raises(InvalidMessage):
        freeze_payload(Object(k=[value]))
