"""What a store on PostgreSQL makes of the server's answer to a commit: a refusal naming an item the command does not
have is ``StoreCorrupted``, never an ``IndexError`` (the answer is checked like stored bytes are)."""

from __future__ import annotations

import pytest

from eventstore import StoreCorrupted, WrongExpectedVersion
from eventstore.sharedlog import Commit, SessionAppend
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
