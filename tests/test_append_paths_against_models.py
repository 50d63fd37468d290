"""Appends as the cheaper path builds them, against what they stand for: a message event's bytes against the cattrs
schema's for messages as every path hands them to the codec (loaded from chunks, redacted, of str subclasses), and
a session's whole history applied to the message lists at once (a rebuild's run of events, each recorded at its own
time) against a plain model of its messages and their times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from eventstore._codec import converted_event, decode_event, encode_event
from eventstore._values import stored_payload_of, trusted_message
from eventstore.events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    SessionEvent,
    SessionRenamed,
    SessionStateChanged,
    redact_event,
)
from eventstore.storage import MemoryStorage

from conftest import FakeClock
from strategies import messages

START = datetime(2026, 1, 1, tzinfo=UTC)


class Text(str):
    """A str subclass: the message checks take any str."""


def as_codec_meets_it(message: ChatMessage, form: str) -> ChatMessage:
    """``message`` as one path hands it to the codec: built by the caller, rebuilt from stored data, or loaded from
    a store's chunks and appended again."""
    if form == "stored":
        return trusted_message(message.role, message.content, stored_payload_of(message))
    if form == "subclass":
        return ChatMessage(Text(message.role), Text(message.content), message.payload)
    if form == "loaded":
        with SessionStore.on_storage(MemoryStorage(Path("loaded"))) as store:
            store.append_many("s", [ChatMessage.user("before"), message])
            return store.load("s")[-1]
    return message


@given(message=messages, form=st.sampled_from(("built", "stored", "subclass", "loaded")),
       replaced=st.booleans(), redacted=st.booleans())
def test_message_events_encode_as_the_schema_does_whatever_made_the_message(message: ChatMessage, form: str,
                                                                            replaced: bool, redacted: bool) -> None:
    """The direct encoding of an appended or replaced message has the schema's bytes and version, and decodes to the
    same event, for messages however made; a redacted one (what ``redact`` and salvage encode) too."""
    given_message = as_codec_meets_it(message, form)
    event: SessionEvent = LastMessageReplaced(given_message) if replaced else MessageAppended(given_message)
    if redacted:
        event = redact_event(event)
    encoded = encode_event(event)
    assert tuple(converted_event(event)) == tuple(encoded)
    assert type(encoded.schema_version) is int and type(encoded.payload) is bytes
    assert decode_event(encoded) == event


#: What a session's history does to its messages: (kind, message) steps; times are drawn apart.
steps = st.lists(st.tuples(st.sampled_from(("append", "append", "append", "replace", "remove", "clear", "rename",
                                             "state")), messages), min_size=1, max_size=40)


def imported_history(drawn: list[tuple[str, ChatMessage]], gaps: list[int]
                     ) -> tuple[list[tuple[datetime, SessionEvent]], list[tuple[ChatMessage, datetime]]]:
    """The (time, event) pairs an import records, and the plain model of the messages and times they leave."""
    pairs: list[tuple[datetime, SessionEvent]] = []
    model: list[tuple[ChatMessage, datetime]] = []
    moment = START
    for (kind, message), gap in zip(drawn, gaps):
        moment += timedelta(microseconds=gap)
        event: SessionEvent
        if kind == "replace" and model:
            event, model[-1] = LastMessageReplaced(message), (message, model[-1][1])  # keeps its original time
        elif kind == "remove" and model:
            event = LastMessageRemoved()
            model.pop()
        elif kind == "clear" and model:
            event = MessagesCleared(len(model))
            model.clear()
        elif kind == "rename":
            event = SessionRenamed(message.role)
        elif kind == "state":
            event = SessionStateChanged("running" if len(model) % 2 else "idle", None)
        else:
            event = MessageAppended(message)
            model.append((message, moment))
        pairs.append((moment, event))
    return pairs, model


@given(drawn=steps, data=st.data())
def test_a_rebuild_applies_a_history_at_once_each_message_at_its_own_time(drawn: list[tuple[str, ChatMessage]],
                                                                        data: st.DataObject) -> None:
    """An import records each event at its own time, one commit each; a rebuild applies the session's whole history
    in one run, appends among other edits and times that differ (or repeat) from one event to the next: both leave
    the model's messages with the times they were appended."""
    gaps = data.draw(st.lists(st.sampled_from((0, 0, 1, 999_999, 3_600_000_000)), min_size=len(drawn),
                              max_size=len(drawn)))
    pairs, model = imported_history(drawn, gaps)
    with SessionStore.on_storage(MemoryStorage(Path("rebuilt")), clock=FakeClock(START + timedelta(days=400))) as store:
        store.import_sessions({"s": pairs})
        incremental = [(entry.message, entry.created_at) for entry in store.load_with_timestamps("s")]
        store.rebuild_projections(["messages"])
        rebuilt = [(entry.message, entry.created_at) for entry in store.load_with_timestamps("s")]
        assert store.verify().ok
    assert incremental == model
    assert rebuilt == model


def test_a_run_of_appends_takes_each_time_even_when_equal_times_are_other_objects() -> None:
    """The run's time is converted once while events share it: events a microsecond apart, equal times held by
    distinct objects, a time earlier than the one before (the log records it at the one before: its times never go
    back) and a later one each keep the time the log recorded."""
    times = [START, START + timedelta(microseconds=1), datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
             START - timedelta(days=1), START + timedelta(days=1)]
    recorded = [max(times[: number + 1]) for number in range(len(times))]
    said: list[Any] = [ChatMessage.user(str(number)) for number in range(len(times))]
    with SessionStore.on_storage(MemoryStorage(Path("run")), clock=FakeClock(START + timedelta(days=2))) as store:
        store.import_sessions({"s": [(at, MessageAppended(message)) for at, message in zip(times, said)]})
        assert [event.recorded_at for event in store.history("s")] == recorded
        store.rebuild_projections(["messages"])
        assert [(entry.message, entry.created_at) for entry in store.load_with_timestamps("s")] == list(
            zip(said, recorded))
