"""What a store on PostgreSQL makes of the server's answer to a commit: a refusal naming an item the command does not
have is ``StoreCorrupted``, never an ``IndexError`` (the answer is checked like stored bytes are)."""

from __future__ import annotations

from typing import Any, cast

import psycopg
import pytest
from psycopg import pq

from eventstore import StoreCorrupted, WrongExpectedVersion
from eventstore.sharedlog import Commit, SessionAppend, SharedRecord, postgres
from eventstore.sharedlog.postgres import _answer

COMMIT = Commit(appends=(SessionAppend("a", 0, 1, ()), SessionAppend("b", 3, 1, ())))


def test_a_refusal_naming_an_append_of_the_command_is_its_wrong_version() -> None:
    answer = _answer(COMMIT, None, None, None, "EV409", 2, "5", None)
    assert isinstance(answer, WrongExpectedVersion)
    assert (answer.key, answer.expected, answer.actual) == ("b", 3, 5)


@pytest.mark.parametrize(("refusal", "hint"), [("EV409", 3), ("EV409", -1), ("EV410", 1), ("EV410", None)])
def test_a_refusal_naming_an_item_the_command_lacks_is_damage(refusal: str, hint: int | None) -> None:
    answer = _answer(COMMIT, None, None, None, refusal, hint, "5", None)
    assert isinstance(answer, StoreCorrupted)
    assert "answer is damaged" in str(answer)


def test_a_refusal_giving_a_version_that_is_no_number_is_damage() -> None:
    answer = _answer(COMMIT, None, None, None, "EV409", 2, "five", None)
    assert isinstance(answer, StoreCorrupted)
    assert "answer is damaged" in str(answer)


class _Refused:
    """The result of a command alone that the server refused with ``fields`` (SQLSTATE, hint, detail)."""

    status = pq.ExecStatus.FATAL_ERROR

    def __init__(self, state: bytes, hint: bytes | None) -> None:
        self.fields = {pq.DiagnosticField.SQLSTATE: state, pq.DiagnosticField.MESSAGE_HINT: hint}

    def error_field(self, field: pq.DiagnosticField) -> bytes | None:
        return self.fields.get(field)


@pytest.mark.parametrize("hint", [b"2", b"0", b"-1", b"one"])
def test_a_lone_commands_refusal_naming_a_record_it_lacks_is_damage(monkeypatch: pytest.MonkeyPatch,
                                                                    hint: bytes) -> None:
    """The record a refusal names is checked before the record that took its place is looked up."""
    monkeypatch.setattr(postgres, "_call_alone", lambda connection, parameters: _Refused(b"EV410", hint))
    monkeypatch.setattr(postgres._Flush, "wait", lambda flush: None)
    commit = Commit(records=(SharedRecord("facade.idempotency", b"k", b"v"),))
    answer = postgres.PostgresLog._commit_one(cast("psycopg.Connection[Any]", None), commit, [])
    assert isinstance(answer, StoreCorrupted)
    assert "answer is damaged" in str(answer)


def test_a_lone_commands_refusal_whose_version_is_not_text_is_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A detail that is not UTF-8 raised ``UnicodeDecodeError`` before ``_answer`` could refuse it."""
    refused = _Refused(b"EV409", b"1")
    refused.fields[pq.DiagnosticField.MESSAGE_DETAIL] = b"\xff\xfe"
    monkeypatch.setattr(postgres, "_call_alone", lambda connection, parameters: refused)
    monkeypatch.setattr(postgres._Flush, "wait", lambda flush: None)
    commit = Commit(appends=(SessionAppend("a", 0, 1, ()),))
    answer = postgres.PostgresLog._commit_one(cast("psycopg.Connection[Any]", None), commit, [])
    assert isinstance(answer, StoreCorrupted)
    assert "answer is damaged" in str(answer)
