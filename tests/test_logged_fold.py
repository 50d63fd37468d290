"""What the search index's fold reads of a logged event it did not decode into an event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from eventstore import ChatMessage, IncompatibleStore, SessionStore
from eventstore._codec import EncodedEvent
from eventstore._log import LoggedEvent
from eventstore._time import to_micros
from eventstore.events import MessageAppended, SessionRenamed
from eventstore.storage import WriteTransaction
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


@pytest.mark.parametrize("encoded", [EncodedEvent(MessageAppended.type_name, 99, b'{"message":["user","future"]}'),
                                     EncodedEvent("SessionArchived", 1, b'{"into":"future"}')],
                         ids=["newer schema", "unknown type"])
def test_a_search_that_meets_a_newer_versions_event_is_refused(store_path: Path, encoded: EncodedEvent) -> None:
    """A newer version kept the inline read models current and left the search index behind, as its commands do:
    catching the index up over its event says so, as every other read of the event does."""
    with SessionStore(store_path) as store:
        store.append("a", ChatMessage.user("from the past"))
        store.catch_up()

        def newer_version(txn: WriteTransaction) -> None:
            store._log.append(txn, "a", [encoded], to_micros(datetime.now(UTC)))
            for model in store._read_models:
                store._checkpoints.put(txn, model.name, model.code_version, store._log.head(txn)[0])

        store._environment.write(newer_version)
    with SessionStore(store_path) as store, pytest.raises(IncompatibleStore):
        store.search_messages("future", 5)
