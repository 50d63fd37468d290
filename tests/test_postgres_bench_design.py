"""The PostgreSQL benchmark's floor of the log's design (``design_statement``) does the design's work: gap-free
positions, per-session versions checked, the chain linked as the store links it, nothing written when refused."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from benchmarks.bench_postgres import MESSAGE, Refused, design_statement
from eventstore._codec import encode_event
from eventstore._log import GENESIS_HASH, chain_hash
from eventstore.events import MessageAppended


def logged(url: str) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """The design's tables: its events in order, and its head row."""
    with psycopg.connect(url) as connection:
        events = connection.execute("SELECT position, key, version, recorded_at, event_id, type, schema_version, "
                                    "payload, digest, hash, redacted FROM design_events ORDER BY position").fetchall()
        head = connection.execute("SELECT position, hash FROM design_head").fetchone()
    assert head is not None
    return events, head


def test_the_design_statement_links_the_chain_as_the_store_does(postgres_url: str) -> None:
    first, close_first = design_statement(postgres_url, "first", 4)
    other, close_other = design_statement(postgres_url, "other", 2)
    try:
        for n in range(3):
            first(n)
        other(0)
        first(3)
        other(1)
    finally:
        close_first()
        close_other()
    events, head = logged(postgres_url)
    encoded = encode_event(MessageAppended(MESSAGE))
    assert [(e[0], e[1], e[2]) for e in events] == [
        (1, "first", 1), (2, "first", 2), (3, "first", 3), (4, "other", 1), (5, "first", 4), (6, "other", 2)]
    previous = GENESIS_HASH
    for position, key, version, recorded_at, event_id, type_name, schema, payload, digest, hashed, redacted in events:
        assert (type_name, schema, bytes(payload), redacted) == (
            encoded.type_name, encoded.schema_version, encoded.payload, False)
        previous = chain_hash(previous, position, key, version, recorded_at, bytes(event_id), encoded, bytes(digest))
        assert bytes(hashed) == previous
    assert (head[0], bytes(head[1])) == (6, previous)


def test_a_refused_design_statement_moves_neither_the_head_nor_the_log(postgres_url: str) -> None:
    append, close = design_statement(postgres_url, "session", 3)
    try:
        append(0)
        with pytest.raises(Refused):
            append(0)  # the session is at version 1, not 0
        with pytest.raises(Refused):
            append(2)  # nor at 2
        before = logged(postgres_url)
        append(1)
    finally:
        close()
    stranger, close = design_statement(postgres_url, "stranger", 2)
    try:
        with pytest.raises(Refused):
            stranger(1)  # a session that does not exist is at version 0
    finally:
        close()
    events, head = logged(postgres_url)
    assert [(e[0], e[1], e[2]) for e in before[0]] == [(1, "session", 1)] and before[1][0] == 1
    assert [(e[0], e[1], e[2]) for e in events] == [(1, "session", 1), (2, "session", 2)] and head[0] == 2
