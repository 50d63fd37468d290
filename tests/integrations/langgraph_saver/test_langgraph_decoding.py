"""The saver's own decoding of a list (``loads``) against the serializer's ``loads_typed``, object for object.

The saver makes LangGraph's safe types (LangChain's messages) by their classes; everything else goes to the
serializer's hook. Every message class LangChain exports, their chunk variants, tool calls, content blocks, nested
pydantic models, datetimes and other values in ``additional_kwargs``, a caller's models (one whose validator
transforms a field, one whose validator rejects stored fields), each allowlist setting, a subclass of the
serializer, and objects the hook must refuse (a class outside the allowlist, fields a message's class rejects,
malformed ext data) must read back exactly as the serializer makes them: same classes, same fields, same fields
set, same undeclared fields.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import uuid
import warnings
from typing import Any

import langchain_core.messages as messages_module
import ormsgpack
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from pydantic import BaseModel, field_validator, model_validator

from eventstore.integrations._langgraph_templates import _SAFE_CLASSES, Templates, _validated_directly, loads


class Stamp(BaseModel):
    """A caller's model nested in a message's ``additional_kwargs``."""

    at: datetime.datetime
    count: int = 0


class Shouted(BaseModel):
    """A caller's model whose validator transforms its field."""

    text: str

    @field_validator("text")
    @classmethod
    def louder(cls, text: str) -> str:
        return text.upper()


class Positive(BaseModel):
    """A caller's model whose validator rejects a negative count."""

    count: int

    @field_validator("count")
    @classmethod
    def positive(cls, count: int) -> int:
        if count < 0:
            raise ValueError("negative")
        return count


class OwnSerializer(JsonPlusSerializer):
    """A subclass of LangGraph's serializer, as a caller may write."""


MESSAGE_CLASSES = sorted((value for value in map(functools.partial(getattr, messages_module), messages_module.__all__)
                          if isinstance(value, type) and issubclass(value, BaseMessage)
                          and value not in (BaseMessage, messages_module.BaseMessageChunk)),
                         key=lambda kind: kind.__name__)


def message_of(kind: type[BaseMessage]) -> BaseMessage:
    """A message of ``kind`` with content blocks and ``additional_kwargs`` of every sort of value."""
    if kind is messages_module.RemoveMessage:
        return kind(id="gone")
    extra: dict[str, Any] = {}
    if "Tool" in kind.__name__:
        extra["tool_call_id"] = "c1"
    if "Function" in kind.__name__:
        extra["name"] = "lookup"
    if kind.__name__.startswith("ChatMessage"):
        extra["role"] = "critic"
    kwargs = {"stamp": Stamp(at=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
              "day": datetime.date(2026, 1, 1), "id": uuid.UUID(int=3), "amount": decimal.Decimal("1.5"),
              "tags": {"a", "b"}, "pair": (1, 2), "shouted": Shouted(text="a"), "positive": Positive(count=1)}
    return kind(content=[{"type": "text", "text": "hi"}, "plain"], id=f"id-{kind.__name__}", additional_kwargs=kwargs,
                response_metadata={"model": "m", "stamps": [Stamp(at=datetime.datetime(2026, 1, 1))]}, **extra)


def values() -> list[Any]:
    return [*map(message_of, MESSAGE_CLASSES),
            AIMessage("calls", tool_calls=[{"name": "search", "args": {"q": "x", "n": [1, 2]}, "id": "c1"}],
                      usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}),
            AIMessageChunk(content="part", tool_call_chunks=[{"name": "search", "args": '{"q"', "id": "c1",
                                                              "index": 0}]),
            Shouted(text="b"), Positive(count=2), {"plain": [1, 2.5, None, "text"]}]


def shown(value: Any) -> Any:
    """Everything that tells two decoded values apart: classes, fields, the fields set, undeclared fields."""
    if isinstance(value, BaseModel):
        return (type(value), {name: shown(field) for name, field in vars(value).items()},
                shown(value.__pydantic_extra__), value.__pydantic_fields_set__)
    if isinstance(value, dict):
        return type(value), {name: shown(item) for name, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value), [shown(item) for item in value]
    return type(value), value


def ext(module: str, name: str, fields: Any) -> bytes:
    return ormsgpack.packb([ormsgpack.Ext(EXT_PYDANTIC_V2, ormsgpack.packb([module, name, fields],
                                                                        option=ormsgpack.OPT_NON_STR_KEYS))])


def outcome(decode: Any) -> Any:
    try:
        return shown(decode())
    except Exception as error:  # the serializer's own errors, if any: ours must be the same
        return "raised", type(error)


SERIALIZERS = {
    "default": JsonPlusSerializer,
    "strict": lambda: JsonPlusSerializer(allowed_msgpack_modules=None),
    "listed": lambda: JsonPlusSerializer(allowed_msgpack_modules=[(Stamp.__module__, "Stamp")]),
    "merged": lambda: JsonPlusSerializer(allowed_msgpack_modules=None).with_msgpack_allowlist([Stamp, Shouted]),
    "subclass": OwnSerializer,
}


def test_every_message_class_is_covered() -> None:
    names = {kind.__name__ for kind in MESSAGE_CLASSES}
    assert {"AIMessage", "AIMessageChunk", "HumanMessageChunk", "ToolMessageChunk", "RemoveMessage"} <= names


@pytest.mark.parametrize("made", SERIALIZERS.values(), ids=SERIALIZERS.keys())
def test_a_list_reads_as_the_serializer_reads_it(made: Any) -> None:
    serde = made()
    kind, data = serde.dumps_typed(values())
    theirs, ours = serde.loads_typed((kind, data)), loads(serde, kind, data)
    assert [shown(value) for value in theirs] == [shown(value) for value in ours]


REFUSED = [
    ("langchain_core.messages.human", "HumanMessage", {"content": 5}),  # fields the class rejects
    ("langchain_core.messages.human", "HumanMessage", {"content": "x", "id": 5}),
    ("langchain_core.messages.ai", "AIMessageChunk", {"content": "x", "additional_kwargs": 3}),
    ("langchain_core.messages.ai", "AIMessage", {"content": "x", "undeclared": 1}),
    ("langchain_core.messages.base", "BaseMessage", {"content": "x"}),  # no type
    ("langchain_core.messages.human", "HumanMessage", []),  # fields not a mapping
    ("langchain_core.messages.human", "NoSuchMessage", {"content": "x"}),
    (__name__, "Positive", {"count": -1}),  # the caller's validator rejects it
    (__name__, "Shouted", {"text": "quiet"}),
    ("os", "system", {"command": "true"}),  # outside every allowlist
    # arguments a message's __init__ takes itself, or none given for one it hands on
    ("langchain_core.messages.human", "HumanMessage", {"content": "x", "content_blocks": [{"type": "text",
                                                                                          "text": "y"}]}),
    ("langchain_core.messages.ai", "AIMessage", {"content_blocks": [{"type": "tool_call", "name": "f", "args": {},
                                                                     "id": "c1"}]}),
    ("langchain_core.messages.human", "HumanMessage", {"content": "x", "self": 1}),
    ("langchain_core.messages.human", "HumanMessage", {"id": "h1"}),
    ("langchain_core.messages.human", "HumanMessage", {"content": "x", 3: "not a keyword"}),
    ("langchain_core.messages.human", "HumanMessage", {"content": "x", "type": "human", "id": None, "extra": 1}),
]


@pytest.mark.parametrize("made", SERIALIZERS.values(), ids=SERIALIZERS.keys())
@pytest.mark.parametrize("module, name, fields", REFUSED)
def test_what_the_hook_refuses_or_repairs_reads_as_the_serializer_reads_it(made: Any, module: str, name: str,
                                                                          fields: Any) -> None:
    serde = made()
    data = ext(module, name, fields)
    assert outcome(lambda: serde.loads_typed(("msgpack", data))) == outcome(lambda: loads(serde, "msgpack", data))


def plain_messages() -> list[Any]:
    """Messages whose fields are all plain values (text, numbers, dicts and lists of them): those a saver keeps
    templates of."""
    return [messages_module.HumanMessage("hi", id="h1", additional_kwargs={"tags": ["a", {"deep": [1, 2.5]}]}),
            AIMessage([{"type": "text", "text": "calls"}, "plain"], id="a1",
                      tool_calls=[{"name": "search", "args": {"q": "x", "n": [1, 2]}, "id": "c1"}],
                      usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
                      response_metadata={"model": "m", "nested": {"list": [None, True]}}),
            messages_module.ToolMessage("found", tool_call_id="c1", artifact={"rows": [1, 2]}),
            messages_module.SystemMessage("be brief", unknown_field={"kept": ["as", "undeclared"]})]


@pytest.mark.parametrize("made", SERIALIZERS.values(), ids=SERIALIZERS.keys())
def test_a_list_decoded_again_from_templates_reads_as_the_serializer_reads_it(made: Any) -> None:
    serde = made()
    kind, data = serde.dumps_typed([*values(), *plain_messages()])
    templates = Templates()
    theirs = [shown(value) for value in serde.loads_typed((kind, data))]
    for _ in range(3):  # made, made again and kept as templates, copied
        assert [shown(value) for value in loads(serde, kind, data, templates)] == theirs
    if type(serde) is JsonPlusSerializer:  # the serializer whose objects the saver makes itself: copies were read
        assert sum(template is not None for template in templates._seen.values()) >= len(plain_messages())


def test_what_a_caller_changes_in_a_copy_reaches_no_other_copy() -> None:
    serde = JsonPlusSerializer()
    kind, data = serde.dumps_typed(plain_messages())
    templates = Templates()
    theirs = [shown(value) for value in serde.loads_typed((kind, data))]
    loads(serde, kind, data, templates)
    kept = loads(serde, kind, data, templates)  # these made the templates: change them
    first = loads(serde, kind, data, templates)  # copies: change them too
    for changed in (kept, first):
        human, ai, tool, system = changed
        human.additional_kwargs["tags"][1]["deep"].append(3)
        human.content = "changed"
        ai.content[0]["text"] = "changed"
        ai.tool_calls[0]["args"]["n"].append(3)
        ai.response_metadata["nested"]["list"].clear()
        ai.usage_metadata["total_tokens"] = 99
        tool.artifact["rows"].pop()
        system.unknown_field["kept"][0] = "changed"
    second = loads(serde, kind, data, templates)
    assert [shown(value) for value in second] == theirs
    assert all(template is not None for template in templates._seen.values())


def test_every_message_class_but_remove_message_is_validated_directly() -> None:
    """A message is made by its class's pydantic validator, without the ``__init__`` calls that only hand their
    arguments on; ``RemoveMessage``'s ``__init__`` does more (it drops ``content``): it is called."""
    direct = {kind.__name__ for kind in MESSAGE_CLASSES if _validated_directly(kind)}
    assert direct == {kind.__name__ for kind in MESSAGE_CLASSES} - {"RemoveMessage"}
    assert _validated_directly(Shouted)  # a model without an __init__ of its own
    assert not _validated_directly(OwnSerializer)  # no pydantic model


class Swapped(BaseModel):
    """A model whose validator returns another object than the one validated (pydantic's ``__init__`` warns)."""

    text: str

    @model_validator(mode="wrap")
    @classmethod
    def another(cls, data: Any, handler: Any) -> Any:
        handler(data)
        return cls.model_construct(text="another")


def test_a_validator_returning_another_object_reads_as_the_serializer_reads_it(monkeypatch: Any) -> None:
    module, name = Swapped.__module__, "Swapped"
    monkeypatch.setitem(_SAFE_CLASSES, (module, name), (Swapped, _validated_directly(Swapped)))
    serde = JsonPlusSerializer()
    data = ext(module, name, {"text": "given"})
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        theirs = outcome(lambda: serde.loads_typed(("msgpack", data)))
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = outcome(lambda: loads(serde, "msgpack", data))
    assert ours == theirs
    assert [str(warning.message) for warning in ours_warned] == [str(warning.message) for warning in theirs_warned]
    assert any("returning a value other than `self`" in str(warning.message) for warning in ours_warned)


class Unfinished(BaseModel):
    """A model whose validator is not built: a field's type names a class that does not exist yet."""

    later: NotDefinedYet  # type: ignore[name-defined]  # noqa: F821


def test_a_model_whose_validator_is_not_built_reads_as_the_serializer_reads_it(monkeypatch: Any) -> None:
    module, name = Unfinished.__module__, "Unfinished"
    monkeypatch.setitem(_SAFE_CLASSES, (module, name), (Unfinished, _validated_directly(Unfinished)))
    serde = JsonPlusSerializer()
    data = ext(module, name, {"later": 1})
    theirs = outcome(lambda: serde.loads_typed(("msgpack", data)))
    assert outcome(lambda: loads(serde, "msgpack", data)) == theirs
    assert theirs != ("raised", TypeError)
