"""Checks of the arguments a caller passes: a mistake raises ``InvalidArgument``, never a traceback."""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import repeat
from typing import cast

from .._audit import Progress
from .._errors import InvalidArgument, shown
from .._time import Clock
from .._values import ChatMessage, utc_micros

__all__ = ["recordable", "now_micros", "check_index", "check_count", "check_event_hash", "check_progress",
           "check_message", "check_messages", "iterable"]


def recordable(moment: object) -> int:
    """A time an event may be recorded at, in µs: aware, and not before 1970 (the indexes are unsigned)."""
    micros = utc_micros(moment)
    if micros < 0:
        raise InvalidArgument(f"cannot record an event at {moment}: times before 1970 are not supported")
    return micros


def now_micros(clock: Clock) -> int:
    """The clock's time in µs, checked as a time an event may be recorded at."""
    return recordable(clock())


def check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, not {shown(value)}")
    return value


def check_count(value: object, what: str) -> float:
    """A non-negative span as a float; an int too large for a float is longer than any: infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"{what} must be a non-negative number, not {shown(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_event_hash(value: object, what: str) -> str:
    """An event's chain hash as ``RecordedEvent.hash`` gives it: 64 lowercase hex digits."""
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise InvalidArgument(f"{what} must be an event's hash (64 lowercase hex digits, as RecordedEvent.hash), "
                              f"not {shown(value, 70)}")
    return value


def check_progress(progress: object) -> Progress | None:
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"progress must be a callable or None, not {shown(progress)}")
    return progress


def check_message(message: object) -> ChatMessage:
    if not isinstance(message, ChatMessage):
        raise InvalidArgument(f"expected a ChatMessage, not {type(message).__name__}")
    return message


def check_messages(messages: object) -> list[ChatMessage]:
    """The messages of an iterable, each checked as ``check_message`` checks one (a command's, in one C pass)."""
    batch = list(iterable(messages, "messages"))
    if not all(map(isinstance, batch, repeat(ChatMessage))):
        for message in batch:
            check_message(message)  # raises at the first that is not a message
    return cast("list[ChatMessage]", batch)


def iterable(value: object, what: str) -> Iterable[object]:
    try:
        return iter(cast("Iterable[object]", value))  # iter() is the check: TypeError if it does not iterate
    except TypeError:
        raise InvalidArgument(f"{what} must be iterable, not {type(value).__name__}") from None
