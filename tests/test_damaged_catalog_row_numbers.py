"""A session's catalog row holding a negative message count or version, or times before 1970 (damage: no command
records one): every command on that session says ``StoreCorrupted``, where it failed with ``struct.error`` packing
the key index entry or the position (``InvalidArgument``, blaming the caller, for ``clear_messages``). ``verify``
names the catalog, whose rebuild repairs it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import SessionStore, StoreCorrupted

from _damage import change_value
from test_damaged_catalog_row_emptied import COMMANDS, assert_catalog_repaired, position_of, two_sessions

#: A row's count and version follow its last activity (``projections.catalog._FIELDS``): both are 2 here.
UNPLACEABLE: dict[str, Callable[[bytes], bytes]] = {
    "count": lambda row: row.replace(b'",2,2,', b'",-2,2,'),
    "version": lambda row: row.replace(b'",2,2,', b'",2,-2,'),
    "times_before_1970": lambda row: re.sub(rb'"\d{4}-', b'"1969-', row),
}
ALL_COMMANDS: dict[str, Callable[[SessionStore], object]] = {
    **COMMANDS, "clear_messages": lambda store: store.clear_messages("a"),
}


@pytest.mark.parametrize("field", sorted(UNPLACEABLE))
@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_a_number_or_time_no_entry_holds_in_a_catalog_row_is_damage(tmp_path: Path, command: str, field: str) -> None:
    path = tmp_path / "store"
    _, metadata, _ = two_sessions(path)

    def changed(row: bytes) -> bytes:
        damaged = UNPLACEABLE[field](row)
        assert damaged != row
        return damaged

    change_value(path, b"catalog.activity", position_of(path, "a"), changed)
    with SessionStore(path, durable=False) as store:
        with pytest.raises(StoreCorrupted, match="catalog"):
            ALL_COMMANDS[command](store)
        assert_catalog_repaired(store, metadata)
