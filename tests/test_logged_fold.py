"""What the search index's fold reads of a logged event it did not decode into an event."""

from __future__ import annotations

import orjson
import pytest

from eventstore import IncompatibleStore
from eventstore._log import LoggedEvent
from eventstore.events import MessageAppended, SessionRenamed
from projections.search.index import _edit


def test_an_appended_message_of_a_newer_schema_is_refused_as_decoding_refuses_it() -> None:
    """A payload of a schema this code does not know yet is not read as a plain message's content, whatever it
    looks like: a store written by a newer version says so, as every other read of the event does."""
    payload = orjson.dumps({"message": ["user", "hello"]})
    assert "hello" == _edit(LoggedEvent(1, 1, 1, 0, MessageAppended.type_name, MessageAppended.schema_version,
                                        payload))
    with pytest.raises(IncompatibleStore, match="position 1"):
        _edit(LoggedEvent(1, 1, 1, 0, MessageAppended.type_name, MessageAppended.schema_version + 1, payload))


def test_an_event_of_an_unknown_type_is_refused_as_decoding_refuses_it() -> None:
    """An event type this code does not know (a newer version's) may edit the messages: the fold does not pass
    over it as one whose payload it need not read."""
    assert _edit(LoggedEvent(1, 1, 1, 0, SessionRenamed.type_name, SessionRenamed.schema_version, None)) is None
    with pytest.raises(IncompatibleStore, match="position 1: unknown event type"):
        _edit(LoggedEvent(1, 1, 1, 0, "MessagesTruncated", 1, None))
