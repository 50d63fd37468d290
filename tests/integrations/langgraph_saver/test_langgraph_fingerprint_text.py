"""A fingerprint compares its groups of text (``str`` and ``None`` alone) by equality, every other group by
identity: a text set again to an equal one serializes to the same bytes, anything else that is not the very value
the earlier items held (a subclass of ``str``, a number equal to another, a container) counts as a change."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from eventstore.integrations._langgraph_fingerprint import Fingerprint


class Text(str):
    __slots__ = ()


def earlier() -> list[Any]:
    return [HumanMessage("question 0", id="q0"), AIMessage("answer 0", id="a0", name="model")]


def leads_after(edit: Any) -> bool:
    items = earlier()
    taken = Fingerprint.of(items)
    edit(items)
    grown = Fingerprint.of([*items, HumanMessage("question 1", id="q1")])
    assert taken is not None and grown is not None
    return taken.leads(grown)


def test_text_set_again_to_an_equal_string_is_no_change() -> None:
    def copy_text(items: list[Any]) -> None:
        items[0].content = "".join(["question", " 0"])  # equal, not the same object
        items[1].name = "".join(["mod", "el"])

    assert leads_after(copy_text)


@pytest.mark.parametrize("edit", [
    lambda items: setattr(items[0], "content", "question 1"),
    lambda items: setattr(items[0], "content", Text("question 0")),  # equal, but of another type
    lambda items: setattr(items[1], "name", None),
    lambda items: setattr(items[0], "name", "someone"),
    lambda items: items[1].additional_kwargs.update(seen=1),
    lambda items: items[1].response_metadata.update(model="m"),
], ids=["other text", "a str subclass", "text to None", "None to text", "an entry added", "metadata added"])
def test_anything_else_is_a_change(edit: Any) -> None:
    assert not leads_after(edit)


def test_numbers_equal_to_others_are_compared_by_identity() -> None:
    """``True == 1 == 1.0``, each serialized differently: a group that holds numbers is not text."""
    items = [{"n": 1, "t": "x"}, {"n": 2, "t": "y"}]
    taken = Fingerprint.of(items)
    items[0]["n"] = True
    grown = Fingerprint.of([*items, {"n": 3, "t": "z"}])
    assert taken is not None and grown is not None and not taken.leads(grown)
