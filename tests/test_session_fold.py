"""The pure session fold's helpers (``projections.session``), apart from the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from eventstore import ChatMessage, RecordedEvent, TimestampedMessage
from eventstore.events import SessionRedacted, SessionRestored
from projections.session import (
    EDIT_KINDS,
    AppendMessage,
    ClearMessages,
    Entry,
    MessageEdit,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    apply_edit,
    empty_head,
    evolve_head,
    evolve_head_through,
    message_edit,
    untouched_prefix,
)

from strategies import histories


def entry(n: int) -> Entry:
    return ChatMessage.user(f"message {n}"), n


def edit_lists(max_size: int = 12) -> st.SearchStrategy[list[MessageEdit]]:
    """Edits of every kind, appends twice as likely as each other kind (a removal or a replacement may find no
    message to edit: the log never holds one, so a test skips or rejects it)."""
    appends = st.builds(lambda n: AppendMessage(entry(n)), st.integers(1000, 2000))
    return st.lists(st.one_of(
        appends,
        appends,
        st.just(RemoveLastMessage()),
        st.builds(lambda n: ReplaceLastMessage(ChatMessage.assistant(f"revised {n}")), st.integers()),
        st.just(ClearMessages()),
        st.just(RedactMessages()),
        st.builds(lambda ns: ReplaceMessages(tuple(map(entry, ns))), st.lists(st.integers(), max_size=3)),
    ), max_size=max_size)


edits = edit_lists()


@given(st.integers(0, 20), edits)
def test_untouched_prefix_is_left_as_it_was(count, sequence):
    """The first ``untouched_prefix`` messages come out of the edits as the very same entries."""
    before = [entry(n) for n in range(count)]
    after = list(before)
    try:
        for edit in sequence:
            apply_edit(after, edit)
    except IndexError:
        assume(False)  # it removed or replaced a message that was not there, which the log never does
    untouched = untouched_prefix(count, [type(edit) for edit in sequence])
    assert 0 <= untouched <= min(count, len(after))
    assert all(after[i] is before[i] for i in range(untouched))


def test_untouched_prefix_is_tight():
    """It counts exactly the messages before the lowest one an edit reached; other events count for nothing."""
    assert 10 == untouched_prefix(10, [AppendMessage, None, AppendMessage])
    assert 8 == untouched_prefix(10, [RemoveLastMessage, RemoveLastMessage, AppendMessage])
    assert 9 == untouched_prefix(10, [ReplaceLastMessage, None])
    assert 10 == untouched_prefix(10, [AppendMessage, RemoveLastMessage])
    assert 0 == untouched_prefix(10, [AppendMessage, RedactMessages])
    assert 0 == untouched_prefix(10, [ClearMessages])


_MOMENT = datetime(2026, 1, 1, tzinfo=UTC)
#: The two kinds of event the generated histories lack.
_BACK = (TimestampedMessage(ChatMessage.user("back"), _MOMENT),)
_RARE = [
    RecordedEvent(1, "session", 1, _MOMENT, SessionRestored(0, True, _BACK, None, None, _MOMENT), uuid.UUID(int=1),
                  "0" * 64),
    RecordedEvent(2, "session", 2, _MOMENT, SessionRedacted("asked to"), uuid.UUID(int=2), "0" * 64),
]


@pytest.mark.slow
@given(histories())
def test_edit_kinds_name_what_message_edit_returns(history):
    """``EDIT_KINDS`` (by event type) names the kind of edit ``message_edit`` makes of every event."""
    for recorded in history + _RARE:
        edit = message_edit(recorded)
        assert EDIT_KINDS.get(type(recorded.event)) is (None if edit is None else type(edit))


@given(histories(max_size=40), st.integers(0, 30))
def test_a_batch_folds_to_the_head_of_one_event_at_a_time(history: list[RecordedEvent], start: int) -> None:
    """``evolve_head_through`` (runs of appends folded at once) gives the head ``evolve_head`` does, event by
    event, from any point of a history."""
    head = empty_head("session")
    for recorded in history[:start]:
        head = evolve_head(head, recorded)
    expected = head
    for recorded in history[start:]:
        expected = evolve_head(expected, recorded)
    assert evolve_head_through(head, history[start:]) == expected
