"""The runs of fixed-width values the stored forms are made of: little-endian unsigned integers, read in place
where the host allows, and bytes scanned in C."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "FIND_PAYS_OFF",
    "LITTLE",
    "U32",
    "distinct",
    "packed_u16s",
    "packed_u32s",
    "packed_u64s",
    "places",
    "u16s",
    "u32_array",
    "u32s",
    "unsigned",
]

# Values are little-endian, so that on the usual little-endian hosts a run of u32
# in a value is read, and binary-searched, in place (``memoryview.cast``); keys
# are big-endian, so that they sort by number.

LITTLE = sys.byteorder == "little"
U32 = struct.Struct("<I")  # in values


def unsigned(data: bytes | bytearray | memoryview, typecode: Literal["Q", "I", "H"]) -> Sequence[int]:
    """The little-endian unsigned values (``array`` ``typecode``) in ``data``, without copying where it can."""
    if LITTLE:
        return memoryview(data).cast(typecode)
    values = array(typecode)
    values.frombytes(data)
    values.byteswap()
    return values


def u16s(data: bytes | bytearray | memoryview) -> Sequence[int]:
    """The little-endian u16 values in ``data``."""
    return unsigned(data, "H")


def u32s(data: bytes | bytearray | memoryview) -> Sequence[int]:
    """The little-endian u32 values in ``data``."""
    return unsigned(data, "I")


def _packed(values: Sequence[int], typecode: Literal["Q", "I", "H"]) -> bytes:
    """``values`` as little-endian unsigned integers (``array`` ``typecode``)."""
    packed = array(typecode, values)
    if not LITTLE:
        packed.byteswap()
    return packed.tobytes()


def packed_u32s(values: Sequence[int]) -> bytes:
    return _packed(values, "I")


def packed_u64s(values: Sequence[int]) -> bytes:
    """``values`` as little-endian u64."""
    return _packed(values, "Q")


def packed_u16s(values: Sequence[int]) -> bytes:
    return _packed(values, "H")


def u32_array(data: bytes | bytearray) -> array[int]:
    """The little-endian u32 values in ``data`` as an ``array`` (what ``BitMap`` reads in C)."""
    values = array("I")
    values.frombytes(data)
    if not LITTLE:
        values.byteswap()
    return values


#: How many times more sessions than chosen ones make finding the chosen ones (``places``) cheaper than a pass over
#: all (``compress``).
FIND_PAYS_OFF = 8


def places(data: bytes, value: int) -> Iterator[int]:
    """Where byte ``value`` occurs in ``data``."""
    place = data.find(value)
    while place >= 0:
        yield place
        place = data.find(value, place + 1)


_Unsigned = TypeVar("_Unsigned", bound=np.unsignedinteger[Any])


def distinct(values: npt.NDArray[_Unsigned]) -> npt.NDArray[_Unsigned]:
    """The distinct ``values``, ascending: ``numpy.unique``'s result without its import of ``numpy.ma``, which the
    first call of a process would pay for (a one-off search from the command line)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
