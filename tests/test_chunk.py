"""The stored form of a run of messages (``projections.chunk``), apart from the store."""

from __future__ import annotations

import itertools
import struct

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import ChatMessage
from eventstore._time import MAX_MICROS, MIN_MICROS
from eventstore._values import stored_payload_of
from projections import chunk
from projections.chunk import (
    CHUNK_BYTES,
    CHUNK_MESSAGES,
    Chunk,
    DamagedChunk,
    decode_contents,
    decode_entries,
    decode_messages,
    layout,
    message_count,
)
from projections.session import Entry

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)  # any str but lone surrogates
roles = st.sampled_from(["user", "assistant", "system", "tool", "función", "🤖"])
entries = st.builds(lambda role, content, micros: (ChatMessage(role, content), micros),
                    roles, texts, st.integers(MIN_MICROS, MAX_MICROS))  # any time a datetime holds
# Edits of the last chunk: ("append", entry) or ("pop", None).
edits = st.lists(st.one_of(st.tuples(st.just("append"), entries), st.just(("pop", None))), max_size=80)


def built(entries: list[Entry]) -> Chunk:
    chunk = Chunk()
    for message, micros in entries:
        chunk.append(message.role, message.content.encode(), micros)
    return chunk


@given(st.lists(entries, max_size=CHUNK_MESSAGES))
def test_round_trip(run):
    """What is appended decodes back as the same messages and times, and the header counts them."""
    value = built(run).encode()
    assert decode_entries(value) == run
    assert decode_messages(value) == [message for message, _ in run]
    assert decode_contents(value) == [message.content for message, _ in run]
    assert message_count(value) == len(run)


@given(edits)
def test_edits_keep_the_layout_canonical(sequence):
    """Any appends and pops, each through a parse of the stored bytes, give the bytes of the result built at once."""
    value = Chunk().encode()
    expected: list[Entry] = []
    for kind, item in sequence:
        chunk = Chunk.parse(value) if expected else Chunk()
        if kind == "append" and len(expected) < CHUNK_MESSAGES:
            message, micros = item
            chunk.append(message.role, message.content.encode(), micros)
            expected.append(item)
        elif kind == "pop" and expected:
            assert chunk.last_micros == expected[-1][1]
            chunk.pop()
            expected.pop()
        value = chunk.encode()
    assert value == built(expected).encode()
    assert decode_entries(value) == expected


@given(st.lists(entries, max_size=300))
def test_layout_cuts_as_appending_one_by_one(run):
    """``layout`` gives chunks that together hold the list, each within the limits, starting where the last ended."""
    chunks = list(layout(run))
    starts = [0]
    for first, value in chunks:
        assert first == starts[-1]
        assert 1 <= message_count(value) <= CHUNK_MESSAGES
        starts.append(first + message_count(value))
    assert [entry for _, value in chunks for entry in decode_entries(value)] == run
    for (_, value), (_, following) in itertools.pairwise(chunks):
        # A chunk closes only when the next message does not fit.
        next_message = decode_entries(following)[0][0]
        assert not Chunk.parse(value).fits(next_message.content.encode())


def test_a_chunk_closes_at_its_limits():
    """At 64 messages, or before a message that would take it to 16 KB; a first message always fits."""
    small = built([(ChatMessage.user("x"), n) for n in range(CHUNK_MESSAGES)])
    assert not small.fits(b"x")
    big = built([(ChatMessage.user("y" * (CHUNK_BYTES // 2)), 0)])
    assert not big.fits(b"z" * (CHUNK_BYTES // 2))
    assert big.fits(b"z" * 100)
    assert Chunk().fits(b"w" * (4 * CHUNK_BYTES))


def test_roles_come_from_a_table_in_order_of_first_use():
    """Each distinct role is stored once; a pop that removes a role's only use drops it from the table."""
    chunk = built([(ChatMessage.user("a"), 1), (ChatMessage.tool("b"), 2), (ChatMessage.user("c"), 3)])
    assert (["user", "tool"], b"\x00\x01\x00") == (chunk.table, bytes(chunk.roles))
    chunk.append("system", b"d", 4)
    chunk.pop()
    assert ["user", "tool"] == chunk.table
    chunk.pop()
    chunk.pop()
    assert ["user"] == chunk.table


GOOD = built([(ChatMessage.user("hello"), 1), (ChatMessage.assistant("héllo 🙂"), 2)]).encode()


@pytest.mark.parametrize("damaged, why", [
    (b"", "no header"),
    (GOOD[:7], "no header"),
    (struct.pack(">II", 65, 0) + GOOD[8:], "cannot hold"),
    (struct.pack(">II", 2, 400) + GOOD[8:], "cannot hold"),
    (GOOD[:-1], "contents take"),
    (GOOD + b"!", "contents take"),
    (GOOD.replace(b'["user","assistant"]', b'["user",42,"xxxxx"]'), "role table"),
    (GOOD.replace(b'["user","assistant"]', b'["user""assistant"]'), "role table"),
    (GOOD.replace(b'["user","assistant"]', b'["","user","assist"]'), "role table"),
    (GOOD.replace(b"\x00\x01[", b"\x00\x07["), "outside the role table"),
    (GOOD[:8] + b"\x7f" + GOOD[9:], "time is outside"),  # the first time's high byte: year 9999 and beyond
])
def test_damaged_bytes_are_refused(damaged, why):
    """Bytes that do not follow the layout raise ``DamagedChunk`` (a ValueError) saying what is wrong,
    whether they are read or about to be edited; the reads without times (a load's, search's) refuse the same
    damage, in the times too."""
    with pytest.raises(DamagedChunk, match=why):
        decode_entries(damaged)
    with pytest.raises(DamagedChunk, match=why):
        Chunk.parse(damaged)
    assert issubclass(DamagedChunk, ValueError)
    with pytest.raises(DamagedChunk, match=why):
        decode_messages(damaged)
    with pytest.raises(DamagedChunk, match=why):
        decode_contents(damaged)


def test_a_content_that_is_not_utf8_is_refused_when_read():
    """Contents are decoded only when read (an edit never decodes one)."""
    damaged = GOOD.replace("🙂".encode(), b"\xff\xfe\xfd\xfc")
    with pytest.raises(DamagedChunk, match="not UTF-8"):
        decode_entries(damaged)
    with pytest.raises(DamagedChunk, match="not UTF-8"):
        decode_contents(damaged)
    with pytest.raises(DamagedChunk, match="not UTF-8"):
        decode_messages(damaged)


def test_an_empty_stored_chunk_is_refused_for_editing():
    """No chunk is stored empty, so one that is cannot take a pop (it would have nothing to pop)."""
    empty = Chunk().encode()
    assert [] == decode_entries(empty)
    with pytest.raises(DamagedChunk, match="holds no message"):
        Chunk.parse(empty)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1), max_size=6))
def test_role_tables_keep_the_bytes_orjson_wrote(roles: list[str]) -> None:
    """Role tables are written with the standard library, byte for byte as orjson wrote them before."""
    assert orjson.dumps(roles) == chunk._encoded_table(roles)
    assert roles == chunk._table(chunk._encoded_table(roles))



payload_edits = st.lists(st.one_of(st.tuples(st.just("append"), st.binary(max_size=3_000)), st.just(("pop", b""))),
                         max_size=60)


def _largest_payload_that_fits(chunk: Chunk) -> int:
    """The size of the largest payload of a 40-byte message that still fits ``chunk`` (-1 for none)."""
    low, high = -1, CHUNK_BYTES
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if chunk.fits(b"y" * 40, b"p" * middle) else (low, middle)
    return low


@given(payload_edits)
def test_an_edited_chunk_knows_its_payload_bytes_as_a_parsed_one_does(sequence):
    """Appends and pops of messages with payloads (empty for none) on one chunk in memory: its bytes are those of
    the chunk built at once, its last payload is the last appended, and the room left for a further message is
    what the same chunk parsed from its bytes has."""
    chunk, expected = Chunk(), []
    for kind, payload in sequence:
        if kind == "append" and chunk.count < CHUNK_MESSAGES:
            chunk.append("tool", b"x" * 40, 0, payload)
            expected.append(payload)
        elif kind == "pop" and chunk.count:
            chunk.pop()
            expected.pop()
        at_once = Chunk()
        for each in expected:
            at_once.append("tool", b"x" * 40, 0, each)
        assert chunk.encode() == at_once.encode()
        if chunk.count:
            assert chunk.last()[2] == expected[-1]
            assert _largest_payload_that_fits(chunk) == _largest_payload_that_fits(Chunk.parse(chunk.encode()))
            assert [stored_payload_of(message) for message in decode_messages(chunk.encode())] == \
                [each or None for each in expected]


# Runs whose contents reach CHUNK_BYTES within a chunk's messages, and payloads now and then.
long_texts = st.one_of(texts, st.integers(0, 1_200).map(lambda size: "w" * size))
runs = st.lists(st.tuples(roles, long_texts, st.integers(MIN_MICROS, MAX_MICROS),
                          st.one_of(st.just(b""), st.binary(min_size=1, max_size=500))), max_size=90)


def _one_at_a_time(chunk: Chunk, run: list[tuple[str, str, int, bytes]]) -> int:
    """The model of ``Chunk.extend``: ``fits`` and ``append`` each message in turn, up to the first that does not
    fit; how many were appended."""
    for taken, (role, content, micros, payload) in enumerate(run):
        if not chunk.fits(content.encode(), payload):
            return taken
        chunk.append(role, content.encode(), micros, payload)
    return len(run)


@given(st.lists(entries, max_size=CHUNK_MESSAGES), runs, st.booleans())
@example(before=[], run=[("user", "w" * 1_200, 0, b"")] * 20, with_payloads=False)  # past CHUNK_BYTES at once
# The second message would take the chunk to CHUNK_BYTES exactly: it does not fit.
@example(before=[], run=[("user", "w" * 8_000, 0, b""), ("user", "w" * (CHUNK_BYTES - 8_034), 0, b"")],
         with_payloads=False)
@example(before=[(ChatMessage.user("x"), 0)] * CHUNK_MESSAGES, run=[("user", "x", 0, b"")], with_payloads=False)
def test_extend_takes_what_appending_one_at_a_time_takes(before, run, with_payloads):
    """``extend`` on a chunk (empty or not) takes as many leading messages as ``fits`` and ``append`` one at a
    time would, and leaves the same bytes, its role table in order of first use, with payloads or without."""
    if not with_payloads:
        run = [(role, content, micros, b"") for role, content, micros, _ in run]
    expected, extended = built(before), built(before)
    taken = _one_at_a_time(expected, run)
    roles_of, contents, micros = ([role for role, *_ in run], [content.encode() for _, content, *_ in run],
                                  [micros for _, _, micros, _ in run])
    payloads = [payload for *_, payload in run] if any(payload for *_, payload in run) else None
    assert extended.extend(roles_of, contents, micros, payloads) == taken
    assert extended.encode() == expected.encode()
