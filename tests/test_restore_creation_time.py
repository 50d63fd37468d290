"""A restore to a live session carries the time the session was created: a new event without it is refused. How one
that an earlier version let in reads: ``test_restore_without_creation_time.py``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventstore import InvalidArgument
from eventstore.events import SessionRestored

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NO_TIME = "a restore to a live session carries the time the session was created"


def test_a_new_restore_to_a_live_session_without_its_creation_time_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=NO_TIME):
        SessionRestored(1, True, (), None, None, None)
    assert SessionRestored(1, True, (), None, None, T0).created_at == T0
    assert SessionRestored(0, False, (), None, None, None).created_at is None  # a restore to no session has none
