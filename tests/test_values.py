"""The value types (ChatMessage) and session-key validation as the store applies it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import (
    MAX_KEY_BYTES,
    ChatMessage,
    EventStoreError,
    InvalidArgument,
    InvalidMessage,
    InvalidSessionKey,
    SessionStore,
)
from eventstore._time import to_micros
from eventstore._values import utc, utc_micros


class TestChatMessage:
    """``ChatMessage``: constructors, value semantics and validation."""

    @pytest.mark.parametrize("constructor, role", [
        (ChatMessage.user, "user"),
        (ChatMessage.assistant, "assistant"),
        (ChatMessage.system, "system"),
        (ChatMessage.tool, "tool"),
    ])
    def test_constructors_set_role(self, constructor, role):
        """Each named constructor sets its role and keeps the text."""
        message = constructor("hello")
        assert (role, "hello") == (message.role, message.content)
        assert ChatMessage(role, "hello") == message

    def test_equal_by_value(self):
        """Two messages with the same role and content are equal and hash alike."""
        assert ChatMessage("user", "hi") == ChatMessage.user("hi")
        assert hash(ChatMessage("user", "hi")) == hash(ChatMessage.user("hi"))
        assert ChatMessage.user("hi") != ChatMessage.assistant("hi")
        assert ChatMessage.user("hi") != ChatMessage.user("hi!")

    def test_frozen(self):
        """Assigning a field raises attrs' FrozenInstanceError (an AttributeError)."""
        message = ChatMessage.user("hi")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            message.content = "changed"  # type: ignore[misc]
        assert "hi" == message.content

    def test_any_non_empty_role_and_empty_content(self):
        """A custom non-empty role and an empty content are accepted."""
        message = ChatMessage("narrator", "")
        assert ("narrator", "") == (message.role, message.content)

    def test_content_kept_byte_for_byte(self):
        """Content with control characters, NUL and astral characters is kept unchanged."""
        text = "line\r\n\ttab \x00 nul 😀 \u2028"
        assert text == ChatMessage.user(text).content

    @pytest.mark.parametrize("role, content", [
        (1, "text"),
        (None, "text"),
        (b"user", "text"),
        ("user", 1),
        ("user", None),
        ("user", b"text"),
        ("", "text"),
        ("\ud800", "text"),
        ("user", "lone \udc00 surrogate"),
    ])
    def test_invalid_message(self, role, content):
        """A non-str or empty role, a non-str content or a lone surrogate raises InvalidMessage."""
        with pytest.raises(InvalidMessage) as caught:
            ChatMessage(role, content)
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, InvalidArgument)
        assert isinstance(caught.value, EventStoreError)
        assert str(caught.value)

    def test_evolve_validates(self):
        """Copying with changes runs the validators too."""
        with pytest.raises(InvalidMessage):
            attrs.evolve(ChatMessage.user("hi"), role="")


class TestSessionKeys:
    """Session-key validation, as every ``SessionStore`` method applies it."""

    @pytest.mark.parametrize("key", [
        "",
        "a\x00b",
        "\x00",
        "a" * (MAX_KEY_BYTES + 1),
        "é" * (MAX_KEY_BYTES // 2 + 1),
        "😀" * (MAX_KEY_BYTES // 4) + "a",
        "lone \ud800 surrogate",
        None,
        42,
        b"bytes-key",
    ])
    def test_bad_key_rejected(self, store: SessionStore, key):
        """A bad key raises InvalidSessionKey (a ValueError) and writes nothing."""
        with pytest.raises(InvalidSessionKey) as caught:
            store.append(key, ChatMessage.user("hi"))
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, EventStoreError)
        assert [] == store.list_sessions()

    @pytest.mark.parametrize("key", [
        "a" * MAX_KEY_BYTES,
        "é" * (MAX_KEY_BYTES // 2),
        "😀" * (MAX_KEY_BYTES // 4),
        "日本" * (MAX_KEY_BYTES // 6) + "abcd",
    ])
    def test_longest_key_works_end_to_end(self, store_path: Path, clock, key):
        """A key of exactly 1024 UTF-8 bytes writes, reads, lists, renames and survives reopening."""
        assert MAX_KEY_BYTES == len(key.encode("utf-8"))
        with SessionStore(store_path, clock=clock) as store:
            store.append(key, ChatMessage.user("hi"))
            store.set_session_name(key, "long")
            assert [ChatMessage.user("hi")] == store.load(key)
            assert [key] == store.list_sessions()
            assert key == store.list_sessions_with_metadata()[0].key
        with SessionStore(store_path, clock=clock) as reopened:
            assert [ChatMessage.user("hi")] == reopened.load(key)
            assert "long" == reopened.get_session_name(key)
            assert reopened.delete_session(key)
            assert not reopened.session_exists(key)

    def test_keys_sharing_a_long_prefix_are_distinct(self, store: SessionStore):
        """Two keys equal in their first 600 bytes are two sessions."""
        first, second = "x" * 600 + "first", "x" * 600 + "second"
        store.append(first, ChatMessage.user("one"))
        store.append(second, ChatMessage.user("two"))
        store.append(second, ChatMessage.user("three"))
        assert [ChatMessage.user("one")] == store.load(first)
        assert [ChatMessage.user("two"), ChatMessage.user("three")] == store.load(second)
        assert {first, second} == set(store.list_sessions())
        store.delete_session(first)
        assert [ChatMessage.user("two"), ChatMessage.user("three")] == store.load(second)

    def test_keys_differing_only_after_511_bytes(self, store: SessionStore):
        """Keys that differ only past LMDB's 511-byte key cap are distinct."""
        first, second = "é" * 300 + "1", "é" * 300 + "2"
        store.append(first, ChatMessage.user("one"))
        store.set_session_name(second, "named")
        assert None is store.get_session_name(first)
        assert "named" == store.get_session_name(second)
        assert 1 == store.get_session_metadata(first).message_count
        assert 0 == store.get_session_metadata(second).message_count


class TestUtcMicros:
    """``utc_micros``: ``utc``'s checks and the µs of its datetime, without building that datetime."""

    @given(st.datetimes(timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                                                    max_value=timedelta(hours=23, minutes=59)))))
    def test_same_micros_as_the_utc_datetime(self, moment):
        try:
            expected = to_micros(utc(moment))
        except InvalidArgument as exc:
            with pytest.raises(InvalidArgument, match=re.escape(str(exc))):
                utc_micros(moment)
        else:
            assert utc_micros(moment) == expected

    @pytest.mark.parametrize("moment", [datetime(2026, 1, 1), "2026-01-01T00:00:00+00:00", None])
    def test_refuses_what_utc_refuses(self, moment):
        with pytest.raises(InvalidArgument) as expected:
            utc(moment)
        with pytest.raises(InvalidArgument, match=re.escape(str(expected.value))):
            utc_micros(moment)
