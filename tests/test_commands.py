"""The pure deciders (``eventstore.services.commands``), on heads built by hand, apart from the store."""

from __future__ import annotations

from datetime import UTC, datetime

from eventstore import ChatMessage, SessionState, TimestampedMessage
from eventstore.events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    SessionDeleted,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)
from eventstore.services import commands
from projections.session import SessionHead, SessionSnapshot, empty_head, empty_snapshot

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
HELLO, REPLY = ChatMessage.user("hello"), ChatMessage.assistant("hi there")


def live(messages: int = 0, *, name: str | None = None, state: SessionState | None = None,
         version: int = 3) -> SessionHead:
    return SessionHead("s", version, True, name, state, T0, T1, messages)


def deleted(version: int = 4) -> SessionHead:
    return SessionHead("s", version, False, None, None, None, None, 0)


def test_append_messages_records_one_event_per_message_on_any_head():
    for head in (empty_head("s"), live(2), deleted()):
        assert commands.append_messages(head, [HELLO, REPLY]) == ([MessageAppended(HELLO), MessageAppended(REPLY)],
                                                                   None)
    assert commands.append_messages(live(), []) == ([], None)


def test_remove_last_needs_a_message():
    assert commands.remove_last(live(2)) == ([LastMessageRemoved()], True)
    for head in (live(0), empty_head("s"), deleted()):
        assert commands.remove_last(head) == ([], False)


def test_replace_last_needs_a_message():
    assert commands.replace_last(live(1), HELLO, REPLY) == ([LastMessageReplaced(REPLY)], True)
    for head in (live(0), empty_head("s"), deleted()):
        assert commands.replace_last(head, None, REPLY) == ([], False)


def test_replacing_the_last_message_by_an_equal_one_records_nothing():
    """It changes nothing, so it records nothing; it still answers True (the session has a last message)."""
    assert commands.replace_last(live(2), REPLY, ChatMessage.assistant("hi there")) == ([], True)
    assert commands.replace_last(live(2), REPLY, ChatMessage.user("hi there")) == (
        [LastMessageReplaced(ChatMessage.user("hi there"))], True)


def test_clear_messages_answers_how_many_went():
    assert commands.clear_messages(live(5)) == ([MessagesCleared(5)], 5)
    for head in (live(0), empty_head("s"), deleted()):
        assert commands.clear_messages(head) == ([], 0)


def test_rename_records_only_a_change_or_a_new_session():
    assert commands.rename(live(name="old"), "new") == ([SessionRenamed("new")], None)
    assert commands.rename(live(name="old"), None) == ([SessionRenamed(None)], None)
    assert commands.rename(live(name="same"), "same") == ([], None)
    assert commands.rename(live(), None) == ([], None)
    # A session that does not exist is created by the rename, even with no name.
    assert commands.rename(empty_head("s"), None) == ([SessionRenamed(None)], None)
    assert commands.rename(deleted(), None) == ([SessionRenamed(None)], None)


def test_change_state_records_only_a_change_of_state_or_turn():
    running = SessionState("running", "t1", T1)
    assert commands.change_state(live(state=running), "running", "t1") == ([], None)
    assert commands.change_state(live(state=running), "running", "t2") == (
        [SessionStateChanged("running", "t2")], None)
    assert commands.change_state(live(state=running), "idle", "t1") == ([SessionStateChanged("idle", "t1")], None)
    assert commands.change_state(empty_head("s"), "idle", None) == ([SessionStateChanged("idle", None)], None)
    assert commands.change_state(deleted(), "idle", None) == ([SessionStateChanged("idle", None)], None)


def test_a_live_session_that_never_had_a_state_is_idle():
    """Setting idle with no turn changes nothing a reader sees, so it records nothing; anything else does."""
    assert commands.change_state(live(), "idle", None) == ([], None)
    assert commands.change_state(live(), "idle", "t1") == ([SessionStateChanged("idle", "t1")], None)
    assert commands.change_state(live(), "running", None) == ([SessionStateChanged("running", None)], None)


def test_restore_to_a_state_that_only_differs_by_an_unset_idle_records_nothing():
    idle = SessionSnapshot(live(0, state=SessionState("idle"), version=2), ())
    never_set = SessionSnapshot(live(0, version=1), ())
    assert commands.restore(idle, never_set, 1) == ([], False)
    assert commands.restore(never_set, idle, 2) == ([], False)


def test_delete_needs_a_live_session():
    assert commands.delete(live(3), "done") == ([SessionDeleted("done")], True)
    assert commands.delete(live(), None) == ([SessionDeleted(None)], True)
    for head in (empty_head("s"), deleted()):
        assert commands.delete(head, "done") == ([], False)


def test_restore_carries_the_wanted_session_whole():
    current = SessionSnapshot(live(1, name="now", version=7), ((REPLY, 2_000_000),))
    wanted = SessionSnapshot(live(2, name="then", state=SessionState("idle"), version=2),
                             ((HELLO, 1_000_000), (REPLY, 2_000_000)))
    events, changed = commands.restore(current, wanted, 2)
    assert changed is True
    assert events == [SessionRestored(2, True, (TimestampedMessage(HELLO, datetime.fromtimestamp(1, UTC)),
                                                TimestampedMessage(REPLY, datetime.fromtimestamp(2, UTC))),
                                      "then", SessionState("idle"), T0)]


def test_restore_to_before_the_session_existed_records_a_non_existent_session():
    current = SessionSnapshot(live(1, version=5), ((HELLO, 1_000_000),))
    assert commands.restore(current, empty_snapshot("s"), 0) == ([SessionRestored(0, False, (), None, None, None)],
                                                                 True)


def test_restore_records_nothing_when_the_session_looks_the_same():
    messages = ((HELLO, 1_000_000),)
    # Versions and activity times differ; what a reader sees does not.
    current = SessionSnapshot(SessionHead("s", 9, True, "n", None, T0, T1, 1), messages)
    wanted = SessionSnapshot(SessionHead("s", 4, True, "n", None, T0, T0, 1), messages)
    assert commands.restore(current, wanted, 4) == ([], False)
    # Two versions at which the session did not exist look the same, whatever else they hold.
    assert commands.restore(SessionSnapshot(deleted(9), ()), empty_snapshot("s"), 0) == ([], False)
    # A different message, name or existence is a change.
    assert commands.restore(current, SessionSnapshot(wanted.head, ((REPLY, 1_000_000),)), 4)[1] is True
    renamed = SessionSnapshot(SessionHead("s", 4, True, "other", None, T0, T0, 1), messages)
    assert commands.restore(current, renamed, 4)[1] is True
    assert commands.restore(SessionSnapshot(deleted(9), ()), wanted, 4)[1] is True


def test_redact_records_the_rewritten_digests_and_counts_them():
    rewritten = [(3, "ab" * 32), (5, "cd" * 32)]
    assert commands.redact("request 12", rewritten) == ([SessionRedacted("request 12", tuple(rewritten))], 2)
    assert commands.redact("nothing held content", []) == ([], 0)  # a call that changes nothing records nothing
