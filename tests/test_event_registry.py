"""The registry of event types (``eventstore.events``) and the tables derived from it."""

from __future__ import annotations

from typing import get_args

from eventstore.events import EVENT_CLASSES, EVENT_TYPES, SessionEvent
from projections.session import EDIT_KINDS


def test_the_registry_holds_every_event_of_the_union_once_by_its_stored_name():
    assert EVENT_CLASSES == get_args(SessionEvent)
    assert len(set(EVENT_CLASSES)) == len(EVENT_CLASSES) == 11
    assert EVENT_TYPES == {cls.type_name: cls for cls in EVENT_CLASSES}
    assert len(EVENT_TYPES) == len(EVENT_CLASSES)  # no two classes share a stored name


def test_every_event_type_says_what_it_does_to_the_message_list():
    # A mapping mypy cannot check: a missing entry would make snapshots treat the type as unknown.
    assert set(EDIT_KINDS) == set(EVENT_CLASSES)

