"""What every storage engine must do: the ``Storage`` protocol's semantics, as tests.

A test module per engine subclasses ``StorageConformance`` and supplies ``make_storage``; pytest
collects the subclass, so every engine runs every test here. The in-memory engine is the reference.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from eventstore import IncompatibleStore, StoreClosed, StoreCorrupted, StoreReadOnly
from eventstore.storage import MAX_KEY_SIZE, ReadTransaction, Space, SpaceRewrite, Storage, WriteTransaction

KEYS = (b"b", b"d", b"f")
#: Scan starts around ``KEYS``: before all, equal to each, between, after all.
STARTS = (b"a", b"b", b"c", b"d", b"e", b"f", b"g")


class _Abort(Exception):
    pass


def _ascending(keys: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(key, b"v" + key) for key in keys]


class StorageConformance:
    """The protocol's contract; subclasses say how to open their engine."""

    #: Whether the engine's closing release waits for every transaction (``release_waits_for_this_thread``).
    release_waits_for_transactions = False

    def make_storage(self, tmp_path: Path, *, readonly: bool = False) -> Storage:
        """Open the store at ``tmp_path`` (again, if it was opened before: the same contents)."""
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        opened = self.make_storage(tmp_path)
        yield opened
        opened.release()

    @pytest.fixture
    def space(self, storage: Storage) -> Space:
        return storage.space("one")

    @pytest.fixture
    def filled(self, storage: Storage, space: Space) -> Space:
        """``space`` holding ``KEYS``, each with the value ``b"v" + key``."""

        def fill(txn: WriteTransaction) -> None:
            for key, value in _ascending(list(KEYS)):
                txn.put(space, key, value)

        storage.write(fill)
        return space

    @staticmethod
    def contents(storage: Storage, space: Space) -> list[tuple[bytes, bytes]]:
        with storage.read() as txn:
            return list(txn.scan(space))

    # -- single keys ----------------------------------------------------------------

    def test_put_get_replace(self, storage, space):
        storage.write(lambda txn: txn.put(space, b"k", b"1"))
        storage.write(lambda txn: txn.put(space, b"k", b"2"))
        with storage.read() as txn:
            assert (b"2", None, 1) == (txn.get(space, b"k"), txn.get(space, b"missing"), txn.count(space))

    def test_insert_keeps_present_value(self, storage, space):
        assert storage.write(lambda txn: txn.insert(space, b"k", b"1"))
        assert not storage.write(lambda txn: txn.insert(space, b"k", b"2"))
        assert [(b"k", b"1")] == self.contents(storage, space)

    def test_append_only_past_the_last_key(self, storage, filled):
        assert not storage.write(lambda txn: txn.append(filled, b"f", b"new"))
        assert not storage.write(lambda txn: txn.append(filled, b"c", b"new"))
        assert _ascending(list(KEYS)) == self.contents(storage, filled)
        assert storage.write(lambda txn: txn.append(filled, b"g", b"vg"))
        assert _ascending([*KEYS, b"g"]) == self.contents(storage, filled)

    def test_append_many(self, storage, filled):
        storage.write(lambda txn: txn.append_many(filled, _ascending([b"g", b"h", b"i"])))
        storage.write(lambda txn: txn.append_many(filled, []))
        assert _ascending([*KEYS, b"g", b"h", b"i"]) == self.contents(storage, filled)

    @pytest.mark.parametrize("batch", [
        pytest.param([b"g", b"i", b"h"], id="descending-inside"),
        pytest.param([b"g", b"g"], id="repeated"),
        pytest.param([b"e", b"g"], id="before-the-last-key"),
        pytest.param([b"f", b"g"], id="equal-to-the-last-key"),
    ])
    def test_append_many_refused_writes_nothing(self, storage, filled, batch):
        """A refused batch raises ValueError and writes none of its pairs; the transaction goes on."""
        def body(txn: WriteTransaction) -> None:
            with pytest.raises(ValueError):
                txn.append_many(filled, _ascending(batch))
            assert _ascending(list(KEYS)) == list(txn.scan(filled))
            txn.put(filled, b"z", b"after")

        storage.write(body)
        assert [*_ascending(list(KEYS)), (b"z", b"after")] == self.contents(storage, filled)

    @pytest.mark.parametrize("key", [b"", b"x" * (MAX_KEY_SIZE + 1)], ids=["empty", "too-long"])
    @pytest.mark.parametrize("write", [
        pytest.param(lambda txn, space, key: txn.put(space, key, b"v"), id="put"),
        pytest.param(lambda txn, space, key: txn.insert(space, key, b"v"), id="insert"),
        pytest.param(lambda txn, space, key: txn.append(space, key, b"v"), id="append"),
        pytest.param(lambda txn, space, key: txn.append_many(space, [(b"\xff" * 3, b"v"), (b"\xff" * 4 + key, b"v")])
                     if key else txn.append_many(space, [(key, b"v")]), id="append_many"),
    ])
    def test_key_sizes(self, storage, space, key, write):
        """Keys have 1 to MAX_KEY_SIZE bytes; another size is a ValueError and writes nothing."""
        storage.write(lambda txn: txn.put(space, b"x" * MAX_KEY_SIZE, b"longest"))
        with pytest.raises(ValueError):
            storage.write(lambda txn: write(txn, space, key))
        assert [(b"x" * MAX_KEY_SIZE, b"longest")] == self.contents(storage, space)

    def test_delete(self, storage, filled):
        assert storage.write(lambda txn: txn.delete(filled, b"d"))
        assert not storage.write(lambda txn: txn.delete(filled, b"d"))
        assert not storage.write(lambda txn: txn.delete(filled, b"c"))
        assert _ascending([b"b", b"f"]) == self.contents(storage, filled)

    @pytest.mark.parametrize("start, stop, left", [
        (b"a", b"z", []),
        (b"b", b"f", [b"f"]),
        (b"c", b"e", [b"b", b"f"]),
        (b"c", b"c\x00", [b"b", b"d", b"f"]),
        (b"d", b"d", [b"b", b"d", b"f"]),
        (b"e", b"b", [b"b", b"d", b"f"]),
        (b"d", b"zz", [b"b"]),
        (b"g", b"z", [b"b", b"d", b"f"]),
        (b"a", b"b", [b"b", b"d", b"f"]),
    ])
    def test_delete_range(self, storage, filled, start, stop, left):
        """``delete_range`` removes ``start <= key < stop`` and counts them."""
        assert 3 - len(left) == storage.write(lambda txn: txn.delete_range(filled, start, stop))
        assert _ascending(left) == self.contents(storage, filled)

    def test_clear_and_count(self, storage, filled):
        other = storage.space("two")
        storage.write(lambda txn: txn.put(other, b"b", b"kept"))
        with storage.read() as txn:
            assert (3, 1) == (txn.count(filled), txn.count(other))
        storage.write(lambda txn: txn.clear(filled))
        with storage.read() as txn:
            assert (0, 1, None) == (txn.count(filled), txn.count(other), txn.last(filled))
        storage.write(lambda txn: txn.put(filled, b"a", b"again"))
        assert [(b"a", b"again")] == self.contents(storage, filled)

    # -- ordered reads --------------------------------------------------------------

    @pytest.mark.parametrize("start", [None, *STARTS])
    @pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
    def test_scan(self, storage, filled, start, reverse):
        """Forward: keys >= start, ascending; reverse: keys < start, descending; scan_keys agrees."""
        if reverse:
            expected = [key for key in reversed(KEYS) if start is None or key < start]
        else:
            expected = [key for key in KEYS if start is None or key >= start]
        with storage.read() as txn:
            assert _ascending(expected) == list(txn.scan(filled, start, reverse=reverse))
            assert expected == list(txn.scan_keys(filled, start, reverse=reverse))
            assert [value for _, value in _ascending(expected)] == list(txn.scan_values(filled, start, reverse=reverse))

    @pytest.mark.parametrize("key", STARTS)
    def test_before(self, storage, filled, key):
        """The floor strictly below ``key``."""
        below = [k for k in KEYS if k < key]
        with storage.read() as txn:
            assert (_ascending(below)[-1] if below else None) == txn.before(filled, key)

    def test_empty_space(self, storage, space):
        with storage.read() as txn:
            assert [] == list(txn.scan(space)) == list(txn.scan(space, b"a", reverse=True))
            assert [] == list(txn.scan_keys(space, reverse=True)) == list(txn.scan_values(space, b"a"))
            assert (None, None, 0, {}, [None]) == (txn.last(space), txn.before(space, b"z"), txn.count(space),
                                                   txn.get_many(space, [b"a"]), txn.get_each(space, [b"a"]))

    def test_last_get_many_and_get_each(self, storage, filled):
        with storage.read() as txn:
            assert (b"f", b"vf") == txn.last(filled)
            assert {b"b": b"vb", b"f": b"vf"} == txn.get_many(filled, iter([b"a", b"b", b"c", b"f", b"z"]))
            assert {} == txn.get_many(filled, [])
            assert [b"vf", None, b"vb", None, b"vf"] == txn.get_each(filled, iter([b"f", b"a", b"b", b"z", b"f"]))
            assert [] == txn.get_each(filled, [])

    # -- transactions ---------------------------------------------------------------

    def test_own_writes_visible(self, storage, filled):
        def body(txn: WriteTransaction) -> tuple[object, ...]:
            txn.put(filled, b"c", b"vc")
            txn.delete(filled, b"f")
            return (txn.get(filled, b"c"), list(txn.scan_keys(filled)), list(txn.scan_keys(filled, reverse=True)),
                    txn.last(filled), txn.count(filled))

        assert (b"vc", [b"b", b"c", b"d"], [b"d", b"c", b"b"], (b"d", b"vd"), 3) == storage.write(body)

    def test_all_or_nothing(self, storage, filled):
        """An exception in the body leaves nothing behind; running the body again then works."""
        other = storage.space("two")
        storage.write(lambda txn: txn.put(other, b"k", b"kept"))
        attempts: list[int] = []

        def body(txn: WriteTransaction) -> str:
            txn.put(filled, b"a", b"new")
            txn.delete(filled, b"d")
            txn.delete_range(filled, b"e", b"z")
            txn.append_many(filled, [(b"y", b"vy"), (b"z", b"vz")])
            txn.clear(other)
            attempts.append(1)
            if len(attempts) == 1:
                raise _Abort
            return "done"

        with pytest.raises(_Abort):
            storage.write(body)
        assert _ascending(list(KEYS)) == self.contents(storage, filled)
        assert [(b"k", b"kept")] == self.contents(storage, other)
        assert "done" == storage.write(body)
        assert [(b"a", b"new"), (b"b", b"vb"), (b"y", b"vy"), (b"z", b"vz")] == self.contents(storage, filled)
        assert [] == self.contents(storage, other)

    def test_snapshot_isolation(self, storage, filled):
        """A reader opened before a commit sees none of it, even mid-scan; a new reader sees all of it."""
        with storage.read() as before:
            scan = before.scan(filled)
            assert (b"b", b"vb") == next(scan)
            first_id = before.snapshot_id()

            def body(txn: WriteTransaction) -> None:
                txn.put(filled, b"c", b"vc")
                txn.delete(filled, b"d")
                txn.put(filled, b"f", b"changed")
                txn.put(filled, b"g", b"vg")

            storage.write(body)
            assert _ascending([b"d", b"f"]) == list(scan)
            assert (b"vd", b"vf", 3) == (before.get(filled, b"d"), before.get(filled, b"f"), before.count(filled))
            assert _ascending([b"f", b"d", b"b"]) == list(before.scan(filled, reverse=True))
            with storage.read() as after:
                assert [(b"b", b"vb"), (b"c", b"vc"), (b"f", b"changed"), (b"g", b"vg")] == list(after.scan(filled))
                assert first_id != after.snapshot_id()

    def test_last_commit_changes_once_a_reader_sees_the_commit(self, storage, filled):
        before = storage.last_commit()
        assert before == storage.last_commit()
        storage.write(lambda txn: txn.put(filled, b"a", b"va"))
        after = storage.last_commit()
        assert after != before
        with storage.read() as txn:
            assert txn.get(filled, b"a") == b"va"

    def test_watch_commits_calls_a_listener_after_each_commit_until_stopped(self, storage, filled):
        seen: list[bytes | None] = []

        def listener() -> None:  # the commit is visible by the time the listener runs
            with storage.read() as txn:
                seen.append(txn.get(filled, b"a"))

        stop = storage.watch_commits(listener)
        storage.write(lambda txn: txn.put(filled, b"a", b"1"))
        storage.write(lambda txn: txn.put(filled, b"a", b"2"))
        stop()
        storage.write(lambda txn: txn.put(filled, b"a", b"3"))
        assert seen == [b"1", b"2"]

    def test_snapshot_id_names_contents(self, storage, filled):
        with storage.read() as one, storage.read() as two:
            first = one.snapshot_id()
            assert first == two.snapshot_id()
        storage.write(lambda txn: txn.put(filled, b"a", b"va"))
        with storage.read() as three:
            assert first != three.snapshot_id()

    def test_spaces_are_independent(self, storage, filled):
        other = storage.space("two")
        storage.write(lambda txn: txn.put(other, b"d", b"other"))
        with storage.read() as txn:
            assert (b"vd", b"other") == (txn.get(filled, b"d"), txn.get(other, b"d"))
            assert ([b"d"], 3) == (list(txn.scan_keys(other)), txn.count(filled))
        assert storage.space("one").name == "one"
        storage.write(lambda txn: txn.clear(other))
        assert _ascending(list(KEYS)) == self.contents(storage, storage.space("one"))

    def test_one_writer_at_a_time(self, storage, space):
        """Read-modify-write bodies in several threads lose no update."""
        def increment(txn: WriteTransaction) -> None:
            current = int(txn.get(space, b"n") or b"0")
            txn.put(space, b"n", str(current + 1).encode())

        def worker() -> None:
            for _ in range(50):
                storage.write(increment)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [(b"n", b"200")] == self.contents(storage, space)

    # -- the store's life -----------------------------------------------------------

    def test_reopen_keeps_contents(self, tmp_path, storage, filled):
        again = self.make_storage(tmp_path)
        try:
            assert _ascending(list(KEYS)) == self.contents(again, again.space("one"))
        finally:
            again.release()

    def test_released_store_refuses(self, tmp_path):
        storage = self.make_storage(tmp_path)
        space = storage.space("one")
        storage.release()
        with pytest.raises(StoreClosed):
            storage.read().__enter__()
        with pytest.raises(StoreClosed):
            storage.write(lambda txn: txn.put(space, b"k", b"v"))
        with pytest.raises(StoreClosed):
            storage.space("one")

    def test_readonly(self, tmp_path):
        writable = self.make_storage(tmp_path)
        space = writable.space("one")
        writable.write(lambda txn: txn.put(space, b"k", b"v"))
        writable.release()
        readonly = self.make_storage(tmp_path, readonly=True)
        try:
            assert readonly.readonly
            space = readonly.space("one")
            assert [(b"k", b"v")] == self.contents(readonly, space)
            with pytest.raises(StoreReadOnly):
                readonly.write(lambda txn: txn.put(space, b"k", b"other"))
            with pytest.raises(StoreReadOnly):
                readonly.vacuum(lambda: None)
            with pytest.raises(IncompatibleStore):
                readonly.space("never-created")
            assert [(b"k", b"v")] == self.contents(readonly, space)
        finally:
            readonly.release()

    def test_room_made_for_a_write_keeps_contents_and_the_write_commits(self, storage, filled):
        """``make_room`` before a write of about that many bytes: nothing changes, and the write commits whole."""
        added = [(b"room%05d" % number, bytes(range(256)) * 4) for number in range(300)]
        storage.make_room(sum(len(key) + len(value) for key, value in added))
        assert _ascending(list(KEYS)) == self.contents(storage, filled)

        def write(txn: WriteTransaction) -> None:
            for key, value in added:
                txn.put(filled, key, value)

        storage.write(write)
        assert sorted(_ascending(list(KEYS)) + added) == self.contents(storage, filled)

    def test_freed_pages_released_and_contents_kept(self, storage, filled):
        """``release_freed_pages`` changes no space, and writes go on after it."""
        storage.write(lambda txn: txn.delete(filled, b"d"))
        before = self.contents(storage, filled)
        storage.release_freed_pages()
        assert before == self.contents(storage, filled) == _ascending([key for key in KEYS if key != b"d"])
        storage.write(lambda txn: txn.put(filled, b"d", b"again"))
        assert (b"d", b"again") in self.contents(storage, filled)

    def test_a_release_waits_for_the_calling_thread_only_inside_its_transactions(self, storage, filled):
        """Inside a transaction, an engine whose release waits for every transaction says that it would wait."""
        assert not storage.release_waits_for_this_thread()
        with storage.read():
            inside_a_read = storage.release_waits_for_this_thread()
        inside_a_write = storage.write(lambda _txn: storage.release_waits_for_this_thread())
        assert not storage.release_waits_for_this_thread()
        assert inside_a_read == inside_a_write == self.release_waits_for_transactions

    def test_vacuum_keeps_contents(self, storage, filled):
        reopened: list[Space] = []
        storage.write(lambda txn: txn.delete(filled, b"d"))
        storage.vacuum(lambda: reopened.append(storage.space("one")))
        assert 1 == len(reopened)
        assert _ascending([b"b", b"f"]) == self.contents(storage, reopened[0])
        assert storage.file_size() >= 0

    def test_vacuum_rewrites_the_spaces_it_names(self, storage, filled):
        """``rewrite`` reads the state being copied and changes the spaces it names; the others are copied as they
        are, and a rewrite that raises changes nothing."""
        other = storage.space("two")
        storage.write(lambda txn: txn.put(other, b"k", b"v"))

        def rewrite(txn: ReadTransaction) -> dict[str, SpaceRewrite]:
            read = txn.get(other, b"k")
            return {"one": lambda pairs: ((key, value + read) for key, value in pairs if key != b"d"),
                    "missing": lambda pairs: iter([(b"x", b"y")])}

        storage.vacuum(lambda: None, rewrite)
        filled, other = storage.space("one"), storage.space("two")
        assert [(key, value + b"v") for key, value in _ascending([b"b", b"f"])] == self.contents(storage, filled)
        assert [(b"k", b"v")] == self.contents(storage, other)

        def failing(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
            yield next(pairs)
            raise StoreCorrupted("a damaged value")

        with pytest.raises(StoreCorrupted):
            storage.vacuum(lambda: None, lambda txn: {"two": lambda pairs: iter([]), "one": failing})
        filled, other = storage.space("one"), storage.space("two")
        assert [(b"k", b"v")] == self.contents(storage, other)
        assert 2 == len(self.contents(storage, filled))

    # -- random operations against a dict -------------------------------------------

    def test_agrees_with_a_dict(self, tmp_path):
        """Random batches of writes, some failing, and reads agree with a plain dict per space."""
        make_storage = self.make_storage

        class Machine(_DictMachine):
            def __init__(self) -> None:
                super().__init__(lambda: make_storage(Path(tempfile.mkdtemp(dir=tmp_path))))

        run_state_machine_as_test(Machine)

    def test_an_undamaged_store_has_no_page_problems(self, tmp_path: Path) -> None:
        """A fresh store with data reports no damage from its files."""
        storage = self.make_storage(tmp_path)
        space = storage.space("a")
        storage.write(lambda txn: txn.put(space, b"k", b"v"))
        assert [] == storage.page_problems()


_SPACES = ("one", "two")
_keys = st.lists(st.sampled_from(b"\x00ab\xff"), min_size=1, max_size=3).map(bytes)
_values = st.binary(max_size=4)
_operations = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(_SPACES), _keys, _values),
    st.tuples(st.just("insert"), st.sampled_from(_SPACES), _keys, _values),
    st.tuples(st.just("append"), st.sampled_from(_SPACES), _keys, _values),
    st.tuples(st.just("append_many"), st.sampled_from(_SPACES), st.lists(st.tuples(_keys, _values), max_size=3)),
    st.tuples(st.just("delete"), st.sampled_from(_SPACES), _keys),
    st.tuples(st.just("delete_range"), st.sampled_from(_SPACES), _keys, _keys),
    st.tuples(st.just("clear"), st.sampled_from(_SPACES)),
)


def _apply(model: dict[str, dict[bytes, bytes]], operation: tuple[Any, ...]) -> object:
    """What ``operation`` returns on the model, which it changes as the engine must."""
    name, space = operation[0], model[operation[1]]
    if name == "put":
        space[operation[2]] = operation[3]
        return None
    if name in ("insert", "append"):
        refused = operation[2] in space if name == "insert" else bool(space) and operation[2] <= max(space)
        if not refused:
            space[operation[2]] = operation[3]
        return not refused
    if name == "append_many":
        keys = ([max(space)] if space else []) + [key for key, _ in operation[2]]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            return ValueError
        space.update(operation[2])
        return None
    if name == "delete":
        return space.pop(operation[2], None) is not None
    if name == "delete_range":
        doomed = [key for key in space if operation[2] <= key < operation[3]]
        for key in doomed:
            del space[key]
        return len(doomed)
    space.clear()
    return None


class _DictMachine(RuleBasedStateMachine):
    def __init__(self, open_storage: Callable[[], Storage]) -> None:
        super().__init__()
        self.storage = open_storage()
        self.spaces = {name: self.storage.space(name) for name in _SPACES}
        self.model: dict[str, dict[bytes, bytes]] = {name: {} for name in _SPACES}

    def teardown(self) -> None:
        self.storage.release()

    def _run(self, txn: WriteTransaction, operation: tuple[Any, ...]) -> object:
        name, space = operation[0], self.spaces[operation[1]]
        try:
            return getattr(txn, name)(space, *operation[2:])
        except ValueError:
            return ValueError

    @rule(operations=st.lists(_operations, max_size=6), fail=st.booleans())
    def write(self, operations: list[tuple[Any, ...]], fail: bool) -> None:
        """One transaction of ``operations``; with ``fail``, the body raises at the end and nothing stays."""
        model = {name: dict(space) for name, space in self.model.items()}
        expected = [_apply(model, operation) for operation in operations]

        def body(txn: WriteTransaction) -> list[object]:
            results = [self._run(txn, operation) for operation in operations]
            if fail:
                raise _Abort
            return results

        if fail:
            with pytest.raises(_Abort):
                self.storage.write(body)
        else:
            assert expected == self.storage.write(body)
            self.model = model

    @rule(space=st.sampled_from(_SPACES), start=st.none() | _keys, reverse=st.booleans())
    def scan(self, space: str, start: bytes | None, reverse: bool) -> None:
        items = sorted(self.model[space].items(), reverse=reverse)
        if start is not None:
            items = [(k, v) for k, v in items if (k < start if reverse else k >= start)]
        with self.storage.read() as txn:
            assert items == list(txn.scan(self.spaces[space], start, reverse=reverse))
            assert [k for k, _ in items] == list(txn.scan_keys(self.spaces[space], start, reverse=reverse))
            assert [v for _, v in items] == list(txn.scan_values(self.spaces[space], start, reverse=reverse))

    @rule(space=st.sampled_from(_SPACES), key=_keys, keys=st.lists(_keys, max_size=4))
    def point_reads(self, space: str, key: bytes, keys: list[bytes]) -> None:
        model = self.model[space]
        below = [k for k in sorted(model) if k < key]
        with self.storage.read() as txn:
            assert model.get(key) == txn.get(self.spaces[space], key)
            assert ((below[-1], model[below[-1]]) if below else None) == txn.before(self.spaces[space], key)
            assert {k: model[k] for k in keys if k in model} == txn.get_many(self.spaces[space], keys)
            assert [model.get(k) for k in keys] == txn.get_each(self.spaces[space], keys)

    @invariant()
    def contents_agree(self) -> None:
        with self.storage.read() as txn:
            for name, space in self.spaces.items():
                assert sorted(self.model[name].items()) == list(txn.scan(space))
                assert len(self.model[name]) == txn.count(space)
                last = max(self.model[name].items(), default=None)
                assert last == txn.last(space)
