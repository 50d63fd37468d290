"""Several commands, on one session or many, committed together: ``SessionStore.transaction()``.

Also the store's commands with their arguments checked (``append_many``, ``update_last``, ...): the
store runs one at once, a transaction queues them, so both check arguments the same way, when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from projections.session import SessionHead

from .._codec import message_from_json, message_to_json
from .._errors import InvalidArgument, TransactionError
from .._time import aware_micros
from .._values import ChatMessage, validate_key, validate_text
from ..storage import WriteTransaction
from . import commands
from .arguments import check_index, check_message, check_messages
from .commands import Decision
from .writer import Command, CommandWriter, KeptResult, Request, Step

__all__ = ["Pending", "Transaction", "append_many", "remove_last", "pop_last", "popped", "update_last",
           "replace_messages", "fork", "clear_messages", "set_session_name", "set_session_state", "delete_session"]

R = TypeVar("R")
T = TypeVar("T")


# -- the commands, their arguments checked ------------------------------------------------------------------

def append_many(key: str, messages: Iterable[ChatMessage], expected_version: int | None,
                idempotency_key: str | None) -> Command[None]:
    if isinstance(messages, (str, bytes, ChatMessage)):
        raise InvalidArgument("append_many takes an iterable of ChatMessage")
    batch = check_messages(messages)
    request = Request("append_many", messages=tuple(batch))
    return Command.deciding(key, request, lambda head: commands.append_messages(head, batch), expected_version,
                            idempotency_key)


def remove_last(key: str, expected_version: int | None, idempotency_key: str | None) -> Command[bool]:
    return Command.deciding(key, Request("remove_last"), commands.remove_last, expected_version, idempotency_key)


def pop_last(key: str, expected_version: int | None, idempotency_key: str | None) -> Command[list[Any] | None]:
    """Its result is the removed message as ``message_to_json`` gives it: ``popped`` turns it back into the
    message. Its idempotency record keeps only whether one was removed, and a retry reads the message from the log
    (as a redaction left it)."""

    def decide(head: SessionHead, last: ChatMessage | None) -> Decision[list[Any] | None]:
        events, removed = commands.pop_last(head, last)
        return events, None if removed is None else message_to_json(removed)

    return Command.checked(key, Request("pop_last"), lambda writer: writer.deciding_with_last(key, decide),
                           expected_version, idempotency_key, KeptResult(_removed, _removed_again))


def _removed(result: list[Any] | None) -> bool:
    return result is not None


def _removed_again(writer: CommandWriter, txn: WriteTransaction, key: str, kept: Any, version: int
                   ) -> list[Any] | None:
    if kept is None or isinstance(kept, list):  # a record written before keeps the message (or none) itself
        return kept
    return message_to_json(writer.last_message_at(txn, key, version - 1)) if kept else None


def popped(outcome: tuple[Any, int]) -> ChatMessage | None:
    """The message a ``pop_last`` command removed, from its outcome."""
    return None if outcome[0] is None else message_from_json(outcome[0])


def update_last(key: str, message: ChatMessage, expected_version: int | None,
                idempotency_key: str | None) -> Command[bool]:
    message = check_message(message)
    return Command.checked(key, Request("update_last", messages=(message,)),
                           lambda writer: writer.deciding_with_last(
                               key, lambda head, last: commands.replace_last(head, last, message)),
                           expected_version, idempotency_key)


def replace_messages(key: str, messages: Iterable[ChatMessage], expected_version: int | None,
                     idempotency_key: str | None) -> Command[None]:
    if isinstance(messages, (str, bytes, ChatMessage)):
        raise InvalidArgument("replace_messages takes an iterable of ChatMessage")
    wanted = check_messages(messages)
    request = Request("replace_messages", messages=tuple(wanted))
    return Command.checked(key, request, lambda writer: writer.deciding_with_messages(
        key, lambda head, current: commands.replace_messages(head, current, wanted)), expected_version,
        idempotency_key)


def fork(source_key: str, new_key: str, version: int | None, as_of: datetime | None,
         idempotency_key: str | None) -> Command[None]:
    validate_key(source_key)
    if version is not None:
        check_index(version, "version")
    if version is not None and as_of is not None:
        raise InvalidArgument("give a version or an as_of time, not both")
    if as_of is not None:
        aware_micros(as_of, "as_of")
    request = Request("fork", (source_key, version, None if as_of is None else as_of.isoformat()))
    return Command.checked(new_key, request, lambda writer: writer.forking(new_key, source_key, version, as_of),
                           None, idempotency_key)


def clear_messages(key: str, expected_version: int | None, idempotency_key: str | None) -> Command[int]:
    return Command.deciding(key, Request("clear_messages"), commands.clear_messages, expected_version,
                            idempotency_key)


def set_session_name(key: str, name: str, expected_version: int | None,
                     idempotency_key: str | None) -> Command[None]:
    new_name = validate_text(name, "session name") or None
    return Command.deciding(key, Request("set_session_name", (new_name,)), lambda head: commands.rename(head, new_name),
                            expected_version, idempotency_key)


def set_session_state(key: str, state: str, turn_id: str | None, expected_version: int | None,
                      idempotency_key: str | None) -> Command[None]:
    validate_text(state, "session state")
    if not state:
        raise InvalidArgument("session state must not be empty")
    if turn_id is not None:
        validate_text(turn_id, "turn id")
    return Command.deciding(key, Request("set_session_state", (state, turn_id)),
                            lambda head: commands.change_state(head, state, turn_id), expected_version, idempotency_key)


def delete_session(key: str, reason: str | None, expected_version: int | None,
                   idempotency_key: str | None) -> Command[bool]:
    if reason is not None:
        validate_text(reason, "reason")
    return Command.deciding(key, Request("delete_session", (reason,)), lambda head: commands.delete(head, reason),
                            expected_version, idempotency_key)


# -- the transaction ------------------------------------------------------------------------------------------

class Pending(Generic[T]):
    """A command's answer in a transaction: ``result`` and ``version`` are known once the transaction has committed."""

    __slots__ = ("_answer", "_value", "_version", "_known")

    def __init__(self, answer: Callable[[tuple[Any, int]], T]) -> None:
        self._answer = answer
        self._value: T | None = None
        self._version = 0
        self._known = False

    def settle(self, outcome: tuple[Any, int]) -> None:
        self._value, self._version, self._known = self._answer(outcome), outcome[1], True

    @property
    def result(self) -> T:
        """What the store's method of the same name would have returned.

        Raises:
            TransactionError: the transaction has not committed (yet).
        """
        self._check_known()
        return self._value  # type: ignore[return-value]

    @property
    def version(self) -> int:
        """The session's version right after the command (the new session's, for ``fork``): that of the last event
        it recorded, or the version it found if it recorded nothing; a command replayed for its idempotency key
        answers as its first run did, with that run's version. Unlike ``session_version`` read afterwards, it is
        not moved on by a write committed after the transaction.

        Raises:
            TransactionError: the transaction has not committed (yet).
        """
        self._check_known()
        return self._version

    def _check_known(self) -> None:
        if not self._known:
            raise TransactionError("a command's result is known once its transaction has committed")

    def __repr__(self) -> str:
        return f"Pending({self._value!r})" if self._known else "Pending(<not committed>)"


def _decision(outcome: tuple[Any, int]) -> Any:
    return outcome[0]


def _version(outcome: tuple[Any, int]) -> int:
    return outcome[1]


class Redactions(Protocol):
    """How the store redacts: the write step of a redaction, and what must follow its commit."""

    def redaction(self, key: str, reason: str) -> Step[int]: ...

    def redactions_committed(self) -> None: ...


class Transaction:
    """Commands on several sessions, committed together when the ``with`` block ends: all of them, or none.

    Each method takes the arguments of the store's method of the same name, checks them at once, and
    returns a ``Pending`` whose ``result`` is that method's answer after the commit. Each command is
    decided on its session as the commands before it in the transaction left it; any that fails
    (``WrongExpectedVersion``, say) fails the whole transaction, which then writes nothing.
    """

    def __init__(self, writer: Callable[[], CommandWriter], redactions: Callable[[], Redactions]) -> None:
        self._writer = writer
        self._redactions = redactions
        self._queued: list[tuple[Command[Any], Pending[Any]]] = []
        self._redacting = False
        self._ended = False

    def _add(self, command: Command[Any], answer: Callable[[tuple[Any, int]], T]) -> Pending[T]:
        if self._ended:
            raise TransactionError("this transaction has ended; start another with store.transaction()")
        pending = Pending(answer)
        self._queued.append((command, pending))
        return pending

    def append(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
               idempotency_key: str | None = None) -> Pending[int]:
        """Append a message; the result is the session's new version."""
        return self.append_many(key, [message], expected_version=expected_version, idempotency_key=idempotency_key)

    def append_many(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> Pending[int]:
        """Append several messages; the result is the session's new version."""
        return self._add(append_many(key, messages, expected_version, idempotency_key), _version)

    def remove_last(self, key: str, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> Pending[bool]:
        """Remove the last message; the result says whether there was one."""
        return self._add(remove_last(key, expected_version, idempotency_key), _decision)

    def pop_last(self, key: str, *, expected_version: int | None = None,
                 idempotency_key: str | None = None) -> Pending[ChatMessage | None]:
        """Remove the last message; the result is that message, ``None`` when there was none."""
        return self._add(pop_last(key, expected_version, idempotency_key), popped)

    def update_last(self, key: str, message: ChatMessage, *, expected_version: int | None = None,
                    idempotency_key: str | None = None) -> Pending[bool]:
        """Replace the last message; the result says whether there was one."""
        return self._add(update_last(key, message, expected_version, idempotency_key), _decision)

    def replace_messages(self, key: str, messages: Iterable[ChatMessage], *, expected_version: int | None = None,
                         idempotency_key: str | None = None) -> Pending[int]:
        """Make the session's messages exactly these, as one event; the result is the session's version."""
        return self._add(replace_messages(key, messages, expected_version, idempotency_key), _version)

    def fork(self, source_key: str, new_key: str, version: int | None = None, as_of: datetime | None = None, *,
             idempotency_key: str | None = None) -> Pending[int]:
        """Start ``new_key`` as a copy of ``source_key`` then; the result is the fork's version."""
        return self._add(fork(source_key, new_key, version, as_of, idempotency_key), _version)

    def clear_messages(self, key: str, *, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> Pending[int]:
        """Remove every message; the result is how many went."""
        return self._add(clear_messages(key, expected_version, idempotency_key), _decision)

    def set_session_name(self, key: str, name: str, *, expected_version: int | None = None,
                         idempotency_key: str | None = None) -> Pending[None]:
        """Name the session (an empty name clears it)."""
        return self._add(set_session_name(key, name, expected_version, idempotency_key), _decision)

    def set_session_state(self, key: str, state: str, turn_id: str | None = None, *,
                          expected_version: int | None = None, idempotency_key: str | None = None
                          ) -> Pending[None]:
        """Set the run state (``"running"`` starts the turn clock)."""
        return self._add(set_session_state(key, state, turn_id, expected_version, idempotency_key), _decision)

    def delete_session(self, key: str, *, reason: str | None = None, expected_version: int | None = None,
                       idempotency_key: str | None = None) -> Pending[bool]:
        """Delete the session; the result says whether it existed."""
        return self._add(delete_session(key, reason, expected_version, idempotency_key), _decision)

    def redact(self, key: str, reason: str, *, expected_version: int | None = None,
               idempotency_key: str | None = None) -> Pending[int]:
        """Make the content of every message of the session (and its forks) unrecoverable, as the store's
        ``redact``; the result is how many events changed."""
        if not validate_text(reason, "reason").strip():
            raise InvalidArgument("a redaction needs a reason")
        command = Command.checked(key, Request("redact", (reason,)),
                                  lambda _: self._redactions().redaction(key, reason), expected_version,
                                  idempotency_key)
        pending = self._add(command, _decision)
        self._redacting = True
        return pending

    def commit(self) -> None:
        """Commit every queued command in one write transaction (the end of the ``with`` block does it)."""
        self._end()
        if not self._queued:
            return
        outcomes = self._writer().run_together([command for command, _ in self._queued])
        if self._redacting:
            self._redactions().redactions_committed()
        for (_, pending), outcome in zip(self._queued, outcomes):
            pending.settle(outcome)

    def discard(self) -> None:
        """Drop the queued commands: nothing is written (the ``with`` block left by an exception)."""
        self._end()
        self._queued.clear()

    def _end(self) -> None:
        if self._ended:
            raise TransactionError("this transaction has ended already")
        self._ended = True
