"""How the search writer writes a batch's entries into a key space (``writer._write``): in place, appended, or, when
they change nearly every entry, by rewriting the space whole; every way leaves the contents a plain dict predicts,
and a whole rewrite leaves LMDB's pages full."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventstore.storage import Storage, WriteTransaction
from eventstore.storage.lmdb import Environment
from projections.search import writer

keys = st.integers(0, 200).map(lambda number: number.to_bytes(2, "big"))
values = st.binary(min_size=0, max_size=40)
# Large values too: LMDB gives a value over about half a page pages of its own.
large_values = st.one_of(values, st.integers(1, 9_000).map(lambda size: bytes([size % 251]) * size))


def _stored(storage: Storage) -> dict[bytes, bytes]:
    with storage.read() as txn:
        return dict(txn.scan(storage.space("rewritten")))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.dictionaries(keys, large_values, max_size=40),
       changes=st.dictionaries(keys, st.none() | large_values, max_size=60),
       rewrite_all=st.booleans())
@example(stored={b"\x00\x01": b"a"}, changes={b"\x00\x01": None}, rewrite_all=True)  # the space left empty
@example(stored={b"\x00\x02": b"a"}, changes={b"\x00\x01": b"b", b"\x00\x02": b"c", b"\x00\x03": b"d"},
         rewrite_all=False)  # changed, inserted before and appended after
def test_a_batch_written_leaves_what_the_model_says(environment: Storage, stored: dict[bytes, bytes],
                                                    changes: dict[bytes, bytes | None], rewrite_all: bool) -> None:
    if rewrite_all:  # every stored key changes, most of them to new values: the space is rewritten whole
        changes = {key: changes.get(key) for key in stored} | changes
    space = environment.space("rewritten")

    def fill(txn: WriteTransaction) -> None:
        txn.clear(space)
        for key, value in stored.items():
            txn.put(space, key, value)

    environment.write(fill)
    environment.write(lambda txn: writer._write(txn, space, sorted(changes.items())))

    expected = dict(stored)
    for key, value in changes.items():
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    assert _stored(environment) == expected


def test_changing_nearly_every_entry_leaves_full_pages(lmdb_environment: Environment) -> None:
    """Each entry grown a little, as a later catch-up batch grows each term's summary: put in place, they would
    split their pages and leave them about half full; rewritten whole, the pages are as few as a fresh copy's."""
    space = lmdb_environment.space("rewritten")
    entries = 4_000
    lmdb_environment.write(lambda txn: txn.append_many(space, [(number.to_bytes(4, "big"), b"x" * 300)
                                                              for number in range(entries)]))
    grown: list[tuple[bytes, bytes | None]] = [(number.to_bytes(4, "big"), b"y" * 330) for number in range(entries)]
    lmdb_environment.write(lambda txn: writer._write(txn, space, grown))

    (usage,) = [found for found in lmdb_environment.usage().spaces if found.name == "rewritten"]
    node = 8 + 4 + 330 + 2  # node header, key, value, and its pointer in the page
    fewest = -(-entries // ((4096 - 16) // node))
    assert usage.entries == entries
    assert usage.leaf_pages <= fewest + 1
    assert _stored(lmdb_environment) == dict(grown)


def test_changing_a_few_entries_rewrites_no_other(lmdb_environment: Environment) -> None:
    """Below the share that rewrites a space whole, only the changed entries' pages are written: the others stay
    where they are (their pages are not freed)."""
    space = lmdb_environment.space("rewritten")
    lmdb_environment.write(lambda txn: txn.append_many(space, [(number.to_bytes(4, "big"), b"x" * 9_000)
                                                              for number in range(8)]))
    before = lmdb_environment.usage().free_pages
    lmdb_environment.write(lambda txn: writer._write(txn, space, [(b"\x00\x00\x00\x03", b"z" * 9_000)]))
    after = lmdb_environment.usage()
    # the one value's three overflow pages were copied, with a few pages that point at them: the other seven
    # values' 21 pages were not
    assert after.free_pages - before < 3 * 7
    assert _stored(lmdb_environment)[b"\x00\x00\x00\x03"] == b"z" * 9_000
