"""Contract edges of the public API: idempotency keys reused for another command, the options every command that
changes one session takes, calls that change nothing, and event construction from bad values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from eventstore import (
    ChatMessage,
    EventStoreError,
    IdempotencyKeyReused,
    InvalidArgument,
    SessionState,
    SessionStore,
    TimestampedMessage,
    WrongExpectedVersion,
)
from eventstore._bookkeeping import IdempotencyRecords
from eventstore.events import (
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    SessionDeleted,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HELLO = ChatMessage.user("hello")


class TestEventConstruction:
    """An event built from bad values raises ``InvalidArgument``, never a plain ``ValueError`` or ``TypeError``."""

    # Each build marked `type: ignore[arg-type]`: the test passes a wrong type on purpose.
    @pytest.mark.parametrize("build", [
        lambda: MessageAppended("hello"),  # type: ignore[arg-type]
        lambda: LastMessageReplaced(None),  # type: ignore[arg-type]
        lambda: MessagesCleared(-1),
        lambda: MessagesCleared(True),
        lambda: MessagesCleared("3"),  # type: ignore[arg-type]
        lambda: SessionRenamed(7),  # type: ignore[arg-type]
        lambda: SessionStateChanged(""),
        lambda: SessionStateChanged(None),  # type: ignore[arg-type]
        lambda: SessionStateChanged("idle", 5),  # type: ignore[arg-type]
        lambda: SessionDeleted(b"why"),  # type: ignore[arg-type]
        lambda: SessionRestored(-1, True, (), None, None, T0),
        lambda: SessionRestored(1, 1, (), None, None, T0),  # type: ignore[arg-type]
        lambda: SessionRestored(1, True, [TimestampedMessage(HELLO, T0)], None, None, T0),  # type: ignore[arg-type]
        lambda: SessionRestored(1, True, (HELLO,), None, None, T0),  # type: ignore[arg-type]
        lambda: SessionRestored(1, True, (), None, "idle", T0),  # type: ignore[arg-type]
        lambda: SessionRestored(1, False, (), "a name", None, None),
        lambda: SessionRestored(1, True, (), None, None, datetime(2024, 5, 1)),
        lambda: SessionRestored(1, True, (), None, None, datetime.max.replace(tzinfo=timezone(-timedelta(hours=14)))),
        lambda: SessionRestored(1, True, (), None, SessionState("running", "t", datetime(2024, 5, 1)), T0),
        lambda: SessionRestored(1, True, (), None, SessionState("running", "t", "2024-05-01"), T0),  # type: ignore[arg-type]
        lambda: SessionRestored(1, True, (), None, SessionState(""), T0),
        lambda: SessionRestored(1, True, (), None, SessionState("idle", 5), T0),  # type: ignore[arg-type]
        lambda: SessionRedacted(""),
        lambda: SessionRedacted("gdpr", [(1, "digest")]),  # type: ignore[arg-type]
        lambda: SessionRedacted("gdpr", ((0, "digest"),)),
        lambda: SessionRedacted("gdpr", (("1", "digest"),)),  # type: ignore[arg-type]
    ], ids=lambda build: "")
    def test_bad_values_raise_invalid_argument(self, build):
        with pytest.raises(InvalidArgument):
            build()

    def test_good_values_still_build(self):
        assert MessagesCleared(0).count == 0
        assert SessionRedacted("gdpr", ((3, "ab"),)).rewritten == ((3, "ab"),)
        restored = SessionRestored(2, True, (TimestampedMessage(HELLO, T0),), "n", SessionState("idle"), T0)
        assert restored.messages[0].message == HELLO

    @pytest.mark.parametrize("zone", [timezone(timedelta(hours=-3)), timezone(timedelta(seconds=1)),
                                      timezone(timedelta(microseconds=1))])
    def test_restored_turn_start_is_kept_in_utc(self, zone):
        """A restored turn's start given in another zone is kept in UTC, as the session's other times are: the
        catalog stores its ISO text, which must be UTC's ("+00:00")."""
        restored = SessionRestored(2, True, (), None, SessionState("running", "t", T0.astimezone(zone)), T0)
        assert restored.state is not None and restored.state.turn_started_at is not None
        assert (T0, "2024-05-01T12:00:00+00:00") == (restored.state.turn_started_at,
                                                      restored.state.turn_started_at.isoformat())


def event_count(store: SessionStore) -> int:
    return sum(1 for _ in store.events())


class TestIdempotencyKeys:
    """An idempotency key names one call: a retry of it answers as the first did; any other call with it is
    refused."""

    def test_a_key_reused_for_another_command_raises_and_writes_nothing(self, store):
        store.append("s", HELLO, idempotency_key="k")
        before = event_count(store)
        for other in (lambda: store.delete_session("s", idempotency_key="k"),
                      lambda: store.remove_last("s", idempotency_key="k"),
                      lambda: store.clear_messages("s", idempotency_key="k"),
                      lambda: store.set_session_state("s", "running", idempotency_key="k"),
                      lambda: store.restore("s", version=0, idempotency_key="k"),
                      lambda: store.redact("s", "gdpr", idempotency_key="k")):
            with pytest.raises(IdempotencyKeyReused) as raised:
                other()
            assert (raised.value.key, raised.value.idempotency_key, raised.value.first_command) == ("s", "k",
                                                                                                  "append_many")
            assert "\n" not in str(raised.value)
        assert event_count(store) == before
        assert store.load("s") == [HELLO]

    def test_a_key_reused_with_other_arguments_raises(self, store):
        store.append("s", HELLO, idempotency_key="k")
        store.set_session_name("s", "first", idempotency_key="n")
        before = event_count(store)
        with pytest.raises(IdempotencyKeyReused, match="append_many with other arguments"):
            store.append("s", ChatMessage.user("something else"), idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused):
            store.append("s", ChatMessage.assistant("hello"), idempotency_key="k")  # the role counts too
        with pytest.raises(IdempotencyKeyReused):
            store.set_session_name("s", "second", idempotency_key="n")
        assert event_count(store) == before

    def test_the_error_is_an_invalid_argument(self):
        assert issubclass(IdempotencyKeyReused, InvalidArgument)
        assert issubclass(IdempotencyKeyReused, EventStoreError)

    def test_a_retry_answers_with_the_first_result_and_its_type(self, store):
        store.append_many("s", [HELLO, HELLO, HELLO])
        store.append_many("t", [HELLO, HELLO])
        calls = [
            (lambda: store.remove_last("s", idempotency_key="remove"), True),
            (lambda: store.remove_last("empty", idempotency_key="remove"), False),
            (lambda: store.clear_messages("t", idempotency_key="clear"), 2),
            (lambda: store.clear_messages("empty", idempotency_key="clear"), 0),
            (lambda: store.update_last("s", ChatMessage.assistant("new"), idempotency_key="update"), True),
            (lambda: store.delete_session("gone", idempotency_key="delete"), False),
            (lambda: store.set_session_name("s", "named", idempotency_key="name"), None),
            (lambda: store.redact("t", "gdpr", idempotency_key="redact"), 2),
        ]
        for call, expected in calls:
            first = call()
            assert (first, type(first)) == (expected, type(expected))
            before = event_count(store)
            retried = call()
            assert (retried, type(retried)) == (expected, type(expected))
            assert event_count(store) == before

    def test_a_retry_keeps_its_answer_after_later_changes(self, store):
        assert store.delete_session("s", idempotency_key="k") is False
        store.append("s", HELLO)
        assert store.delete_session("s", idempotency_key="k") is False  # the retry answers, and deletes nothing
        assert store.session_exists("s")

    def test_records_of_older_stores_still_answer_retries(self, store):
        """A record written before commands were kept with it (a ``[result, version]`` pair) answers any retry
        with its key, as it did."""
        store.append("s", HELLO)
        records = IdempotencyRecords(store._environment)
        store._environment.write(lambda txn: txn.put(records._db, records._key("s", "old"), orjson.dumps([True, 1])))
        before = event_count(store)
        assert store.remove_last("s", idempotency_key="old") is True
        assert store.delete_session("s", idempotency_key="old") is True
        assert store.append("s", HELLO, idempotency_key="old") == 1
        assert event_count(store) == before and store.load("s") == [HELLO]


class TestRestoreAndRedactOptions:
    """``restore`` and ``redact`` take ``expected_version`` and ``idempotency_key`` like every other command that
    changes one session."""

    def test_restore_checks_the_expected_version(self, store):
        store.append_many("s", [HELLO, HELLO])
        with pytest.raises(WrongExpectedVersion):
            store.restore("s", version=1, expected_version=1)
        assert store.restore("s", version=1, expected_version=2) == 3
        assert store.load("s") == [HELLO]
        with pytest.raises(WrongExpectedVersion):  # also when the restore would change nothing
            store.restore("s", version=3, expected_version=2)

    def test_restore_answers_a_retry_without_restoring_again(self, store):
        store.append_many("s", [HELLO, HELLO])
        assert store.restore("s", version=1, idempotency_key="k") == 3
        store.append("s", HELLO)
        assert store.restore("s", version=1, idempotency_key="k") == 3
        assert store.load("s") == [HELLO, HELLO]
        with pytest.raises(IdempotencyKeyReused):
            store.restore("s", version=2, idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused):
            store.restore("s", as_of=T0, idempotency_key="k")

    def test_redact_checks_the_expected_version(self, store):
        store.append_many("s", [HELLO, HELLO])
        with pytest.raises(WrongExpectedVersion):
            store.redact("s", "gdpr", expected_version=1)
        assert store.load("s") == [HELLO, HELLO]
        assert store.redact("s", "gdpr", expected_version=2) == 2
        assert store.session_at("s").version == 3

    def test_redact_answers_a_retry_without_recording_again(self, store):
        store.append_many("s", [HELLO, HELLO])
        assert store.redact("s", "gdpr", idempotency_key="k") == 2
        events = event_count(store)
        assert store.redact("s", "gdpr", idempotency_key="k") == 2
        assert event_count(store) == events
        with pytest.raises(IdempotencyKeyReused):
            store.redact("s", "another reason", idempotency_key="k")


class TestCallsThatChangeNothing:
    """A call that changes nothing records nothing."""

    def test_a_redaction_with_no_content_left_to_redact_records_nothing(self, store):
        store.append("s", ChatMessage.user("an API key"))
        store.set_session_name("named", "no messages")
        assert store.redact("s", "contained a secret") == 1
        before, metadata = event_count(store), store.get_session_metadata("s")
        assert store.redact("s", "contained a secret") == 0
        assert store.redact("named", "nothing to redact") == 0
        assert event_count(store) == before
        assert store.get_session_metadata("s") == metadata
        assert store.verify().ok

    def test_update_last_with_an_equal_message_records_nothing(self, store):
        store.append_many("s", [HELLO, ChatMessage.assistant("partial")])
        before = event_count(store)
        assert store.update_last("s", ChatMessage.assistant("partial")) is True
        assert event_count(store) == before
        assert store.update_last("s", ChatMessage.user("partial")) is True  # another role is a change
        assert event_count(store) == before + 1
        assert store.load("s") == [HELLO, ChatMessage.user("partial")]

    def test_update_last_compares_with_the_last_message_after_edits(self, store):
        """The last message comes from the stored list, also across chunks and after removals and reopening."""
        store.append_many("s", [ChatMessage.user(str(n)) for n in range(70)])  # more than one chunk
        store.remove_last("s")
        before = event_count(store)
        assert store.update_last("s", ChatMessage.user("68")) is True
        assert event_count(store) == before
        assert store.update_last("s", ChatMessage.user("69")) is True
        assert event_count(store) == before + 1
