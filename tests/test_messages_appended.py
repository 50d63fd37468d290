"""``events.messages_appended``: a command's ``MessageAppended`` events built in C passes are the class's own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, InvalidArgument, TimestampedMessage
from eventstore._codec import encode_event
from eventstore.events import MessageAppended, messages_appended
from eventstore.services import commands
from projections.session import empty_head

from strategies import messages

#: What a caller that skips the type checks may pass where a message belongs.
_NOT_MESSAGES = st.sampled_from(("hello", b"hello", None, 3, ["user", "hello"],
                                 MessageAppended(ChatMessage.user("hello"))))


@given(batch=st.lists(messages, max_size=8))
def test_the_events_of_messages_are_the_ones_the_class_builds(batch: list[ChatMessage]):
    built = messages_appended(batch)
    expected = [MessageAppended(message) for message in batch]
    assert built == expected
    assert [type(event) for event in built] == [MessageAppended] * len(batch)
    assert all(event.message is message for event, message in zip(built, batch, strict=True))
    assert list(map(hash, built)) == list(map(hash, expected))
    assert list(map(encode_event, built)) == list(map(encode_event, expected))
    assert commands.append_messages(empty_head("s"), batch) == (expected, None)


@given(batch=st.lists(messages, max_size=5), item=_NOT_MESSAGES | st.builds(TimestampedMessage, messages,
                                                                           st.datetimes()),
       data=st.data())
def test_an_item_that_is_not_a_message_is_refused_as_the_class_refuses_it(batch, item, data):
    batch.insert(data.draw(st.integers(0, len(batch))), item)
    with pytest.raises(InvalidArgument) as by_class:
        MessageAppended(item)
    with pytest.raises(InvalidArgument) as by_passes:
        messages_appended(batch)
    assert type(by_passes.value) is type(by_class.value)
    assert str(by_passes.value) == str(by_class.value)
