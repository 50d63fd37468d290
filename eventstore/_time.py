"""Time at the edge: the injectable clock and the integer form times are stored in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ._errors import InvalidArgument

__all__ = ["Clock", "system_clock", "CLOCK_SKEW", "to_micros", "aware_micros", "from_micros", "stored_micros",
           "MIN_MICROS", "MAX_MICROS"]

#: A zero-argument callable returning an aware UTC datetime.
Clock = Callable[[], datetime]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How far past the store's clock an imported event may be: two machines' clocks may differ by this much. A later
#: one would stamp every later command on its session (a command's time is raised to its session's last) and
#: hide the session from reads as of the present and from ``cleanup_stale``.
CLOCK_SKEW = timedelta(minutes=5)
_MICROSECOND = timedelta(microseconds=1)


def system_clock() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (moment - _EPOCH) // _MICROSECOND


def aware_micros(moment: object, what: str = "a time") -> int:
    """Microseconds since the Unix epoch of any aware datetime, even one whose UTC time no datetime can hold.

    Raises:
        InvalidArgument: ``moment`` is not a datetime, or is naive.
    """
    if not isinstance(moment, datetime):
        raise InvalidArgument(f"{what} must be an aware datetime, not {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise InvalidArgument(f"{what} {moment.isoformat()} has no time zone; pass an aware datetime")
    return to_micros(moment)  # exact: the difference of two aware datetimes converts neither


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime of ``micros`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def stored_micros(value: object) -> int:
    """A time read back from storage, in µs.

    Raises:
        TypeError: the stored value is not an int (the data is damaged).
    """
    if type(value) is not int:
        raise TypeError(f"expected a time in µs, found {type(value).__name__}")
    return value


#: The times a datetime can hold, in µs since the epoch: a stored time outside them is damaged.
MIN_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))
MAX_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))
