"""A replay's views share their messages with the step before, and each stays as it was.

``replay`` yields a view after every event; copying the whole message list into each made a long session's replay
quadratic. The views now share immutable cells (``projections.session.SharedEntries``): these tests hold them to
a plain model that copies the list at every step, and check that keeping every view of a replay costs memory in
proportion to its events, not to their square.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from projections.session import (
    MessageEdit,
    RemoveLastMessage,
    ReplaceLastMessage,
    SharedEntries,
    apply_edit,
)

from test_session_fold import edit_lists, entry

indexes = st.integers(-45, 45)
slices = st.builds(slice, st.none() | indexes, st.none() | indexes, st.none() | st.integers(-3, 3).filter(bool))


def applicable(edit: MessageEdit, length: int) -> bool:
    """Whether the log could hold this edit here: a removal or replacement needs a message."""
    return length > 0 or not isinstance(edit, RemoveLastMessage | ReplaceLastMessage)


class TestSharedEntriesAgainstCopies:
    @given(st.lists(st.integers(0, 9), max_size=5).map(lambda ns: [entry(n) for n in ns]), edit_lists(40), indexes,
           slices)
    def test_every_kept_view_reads_as_the_copy_taken_at_its_step(self, start, sequence, index, cut):
        """The model copies the list after each edit; every view taken on the way, read after all the edits, is
        that copy: its length, its entries in order, any index (negative too) and any slice."""
        shared, plain = SharedEntries(start), list(start)
        kept = [(shared.view(), list(plain))]
        for edit in sequence:
            if not applicable(edit, len(plain)):
                continue
            apply_edit(shared, edit)
            apply_edit(plain, edit)
            kept.append((shared.view(), list(plain)))
        for view, copy in kept:
            assert (len(view), list(view), view[cut]) == (len(copy), copy, tuple(copy[cut]))
            if -len(copy) <= index < len(copy):
                assert view[index] == copy[index]
            else:
                with pytest.raises(IndexError):
                    view[index]

    def test_removing_from_an_empty_list_fails_as_a_list_does(self):
        with pytest.raises(IndexError):
            SharedEntries().pop()
        with pytest.raises(IndexError):
            apply_edit(SharedEntries(), ReplaceLastMessage(ChatMessage.user("x")))


class TestReplayKeepsEveryStep:
    def test_views_kept_across_edits_of_the_tail(self, tmp_path: Path):
        """A view kept while later events remove, replace and append at its end still shows its own messages."""
        with SessionStore(tmp_path / "store", durable=False) as store:
            store.append_many("k", [ChatMessage.user("a"), ChatMessage.assistant("b")])
            store.remove_last("k")
            store.append("k", ChatMessage.assistant("c"))
            store.update_last("k", ChatMessage.assistant("c2"))
            store.clear_messages("k")
            store.append("k", ChatMessage.user("d"))
            views = [view for _, view in store.replay("k")]
            assert [[m.content for m in view.messages] for view in views] == [
                ["a"], ["a", "b"], ["a"], ["a", "c"], ["a", "c2"], [], ["d"]]
            assert [view.messages_from(1) for view in views] == [
                [], [ChatMessage.assistant("b")], [], [ChatMessage.assistant("c")], [ChatMessage.assistant("c2")],
                [], []]
            assert views == [store.session_at("k", version=v) for v in range(1, 8)]

    def test_keeping_every_view_costs_memory_in_proportion_to_the_events(self, tmp_path: Path):
        """Copying the list at each step held n²/2 entry references for n events kept (8 bytes each: 100 MB at
        5,000); shared views hold a few objects a step, whatever the session's length."""
        events = 5_000
        with SessionStore(tmp_path / "store", durable=False) as store:
            store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(events)])
            tracemalloc.start()
            try:
                views = [view for _, view in store.replay("k")]
                held, _peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert len(views) == events and views[-1].message_count == events
            assert held < events * 2_000, f"{held / events:.0f} bytes a kept step"
