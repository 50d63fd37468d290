"""The pure session fold's helpers (``projections.session``), apart from the store."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from eventstore import ChatMessage
from projections.session import (
    AppendMessage,
    ClearMessages,
    Entry,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    apply_edit,
    untouched_prefix,
)


def entry(n: int) -> Entry:
    return ChatMessage.user(f"message {n}"), n


edits = st.lists(st.one_of(
    st.builds(lambda n: AppendMessage(entry(n)), st.integers(1000, 2000)),
    st.just(RemoveLastMessage()),
    st.builds(lambda n: ReplaceLastMessage(ChatMessage.assistant(f"revised {n}")), st.integers()),
    st.just(ClearMessages()),
    st.just(RedactMessages()),
    st.builds(lambda n: ReplaceMessages((entry(n),)), st.integers()),
), max_size=12)


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
    untouched = untouched_prefix(count, sequence)
    assert 0 <= untouched <= min(count, len(after))
    assert all(after[i] is before[i] for i in range(untouched))


def test_untouched_prefix_is_tight():
    """It counts exactly the messages before the lowest one an edit reached."""
    assert 10 == untouched_prefix(10, [AppendMessage(entry(1)), AppendMessage(entry(2))])
    assert 8 == untouched_prefix(10, [RemoveLastMessage(), RemoveLastMessage(), AppendMessage(entry(1))])
    assert 9 == untouched_prefix(10, [ReplaceLastMessage(ChatMessage.user("x"))])
    assert 10 == untouched_prefix(10, [AppendMessage(entry(1)), RemoveLastMessage()])
    assert 0 == untouched_prefix(10, [AppendMessage(entry(1)), RedactMessages()])
    assert 0 == untouched_prefix(10, [ClearMessages()])
