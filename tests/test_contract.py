"""Contract edges of the public API: idempotency keys reused for another command, the options every command that
changes one session takes, calls that change nothing, and event construction from bad values."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eventstore import ChatMessage, InvalidArgument, SessionState, TimestampedMessage
from eventstore.events import (
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    SessionDeleted,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
HELLO = ChatMessage.user("hello")


class TestEventConstruction:
    """An event built from bad values raises ``InvalidArgument``, never a plain ``ValueError`` or ``TypeError``."""

    @pytest.mark.parametrize("build", [
        lambda: MessageAppended("hello"),
        lambda: LastMessageReplaced(None),
        lambda: MessagesCleared(-1),
        lambda: MessagesCleared(True),
        lambda: MessagesCleared("3"),
        lambda: SessionRenamed(7),
        lambda: SessionStateChanged(""),
        lambda: SessionStateChanged(None),
        lambda: SessionStateChanged("idle", 5),
        lambda: SessionDeleted(b"why"),
        lambda: SessionRestored(-1, True, (), None, None, T0),
        lambda: SessionRestored(1, 1, (), None, None, T0),
        lambda: SessionRestored(1, True, [TimestampedMessage(HELLO, T0)], None, None, T0),
        lambda: SessionRestored(1, True, (HELLO,), None, None, T0),
        lambda: SessionRestored(1, True, (), None, "idle", T0),
        lambda: SessionRestored(1, False, (), "a name", None, None),
        lambda: SessionRedacted(""),
        lambda: SessionRedacted("gdpr", [(1, "digest")]),
        lambda: SessionRedacted("gdpr", ((0, "digest"),)),
        lambda: SessionRedacted("gdpr", (("1", "digest"),)),
    ], ids=lambda build: "")
    def test_bad_values_raise_invalid_argument(self, build):
        with pytest.raises(InvalidArgument):
            build()

    def test_good_values_still_build(self):
        assert MessagesCleared(0).count == 0
        assert SessionRedacted("gdpr", ((3, "ab"),)).rewritten == ((3, "ab"),)
        restored = SessionRestored(2, True, (TimestampedMessage(HELLO, T0),), "n", SessionState("idle"), T0)
        assert restored.messages[0].message == HELLO
