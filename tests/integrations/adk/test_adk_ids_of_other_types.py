"""An app name, user id or session id that is not a string is refused with ``InvalidArgument``, writing nothing: an
int session id failed with ``AttributeError`` in ``create_session``, and elsewhere an id of ``1`` named another
session than ``"1"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventstore import AsyncSessionStore, InvalidArgument
from eventstore.integrations.adk import EventStoreSessionService


# The falsy ones (0, b"", []) once became a new uuid in create_session and fork_session, silently.
@pytest.mark.parametrize("bad", [1, 1.5, b"id", ["id"], 0, 0.0, b"", []],
                         ids=["int", "float", "bytes", "list", "zero", "zero-float", "empty-bytes", "empty-list"])
async def test_ids_that_are_not_strings_are_refused(tmp_path: Path, bad: Any) -> None:
    async with AsyncSessionStore(tmp_path / "store", durable=False) as store:
        service = EventStoreSessionService(store)
        await service.create_session(app_name="app", user_id="u", session_id="1")
        before = [event.position async for event in store.events()]
        calls = [
            lambda: service.create_session(app_name="app", user_id="u", session_id=bad),
            lambda: service.create_session(app_name=bad, user_id="u"),
            lambda: service.create_session(app_name="app", user_id=bad),
            lambda: service.get_session(app_name="app", user_id="u", session_id=bad),
            lambda: service.list_sessions(app_name=bad, user_id="u"),
            lambda: service.list_sessions(app_name="app", user_id=bad),
            lambda: service.delete_session(app_name="app", user_id="u", session_id=bad),
            lambda: service.fork_session(app_name="app", user_id="u", session_id="1", new_session_id=bad),
        ]
        for call in calls:
            with pytest.raises(InvalidArgument, match="strings"):
                await call()
        assert [event.position async for event in store.events()] == before  # nothing written
        listed = await service.list_sessions(app_name="app", user_id="u")
        assert [session.id for session in listed.sessions] == ["1"]
