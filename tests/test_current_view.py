"""``session_at`` with neither a version nor a time: the current session from the read models, as a load reads it,
equal to the session folded from its events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore, SessionView
from eventstore.storage import MemoryStorage

from strategies import messages, names

KEY = "session"

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), messages),
    st.tuples(st.just("update_last"), messages),
    st.tuples(st.just("remove_last")),
    st.tuples(st.just("clear_messages")),
    st.tuples(st.just("replace_messages"), st.lists(messages, max_size=3)),
    st.tuples(st.just("set_session_name"), names),
    st.tuples(st.just("set_session_state"), st.sampled_from(("running", "idle"))),
    st.tuples(st.just("delete_session")),
    st.tuples(st.just("load")),  # a load between commands warms the cache the current view may answer from
), max_size=25)


def same_view(one: SessionView, other: SessionView) -> bool:
    return one == other and one.timestamped == other.timestamped


@given(operations)
def test_the_current_view_is_the_folded_one(steps: list[tuple[Any, ...]]) -> None:
    with SessionStore.on_storage(MemoryStorage(), snapshot_every=3) as store:
        for name, *arguments in steps:
            getattr(store, name)(KEY, *arguments)
            current = store.session_at(KEY)
            assert same_view(current, store.session_at(KEY, version=current.version))
            assert current.messages == store.load(KEY)


def test_the_current_view_reads_the_cached_messages(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store", durable=False) as store:
        version = store.append_many(KEY, [ChatMessage("user", str(index)) for index in range(10)])
        store.load(KEY)
        cached = store._decoded.get(KEY, version)
        assert cached is not None
        assert store.session_at(KEY)._entries is cached  # no decode, no fold: the cache's own list
