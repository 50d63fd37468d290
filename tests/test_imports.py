"""What importing costs: the library never loads the command line's libraries, and the pure modules load no LMDB.

Each check runs in a fresh interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import eventstore


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(sys.modules))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(completed.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


@pytest.mark.parametrize("statement", [
    "import eventstore",
    "from eventstore import SessionStore",
    "from eventstore import *",
    "import eventstore.interchange, eventstore.zeroclaw",
])
def test_the_library_never_imports_click_or_rich(statement):
    assert not top_level(modules_after(statement)) & {"click", "rich"}


@pytest.mark.parametrize("module", ["projections.search.tokenizer", "projections.chunk", "projections.session",
                                    "eventstore.events"])
def test_pure_modules_do_not_import_lmdb(module):
    loaded = modules_after(f"import {module}")
    assert module in loaded
    assert "lmdb" not in top_level(loaded)


def test_importing_the_package_alone_loads_neither_storage_nor_read_models():
    loaded = modules_after("import eventstore")
    assert not top_level(loaded) & {"lmdb", "cattrs", "orjson", "projections"}


def test_the_codec_loads_cattrs_on_first_use():
    assert "cattrs" not in top_level(modules_after("from eventstore import SessionStore"))
    assert "cattrs" in top_level(modules_after(
        "from eventstore import ChatMessage\n"
        "from eventstore._codec import encode_value\n"
        "encode_value(ChatMessage.user('hi'))"))


def test_every_public_name_imports():
    """``from eventstore import X`` works for each name in ``__all__``, in a fresh interpreter."""
    names = ", ".join(eventstore.__all__)
    completed = subprocess.run(
        [sys.executable, "-c", f"from eventstore import {names}\nimport eventstore\n"
                               f"print(sorted(set(eventstore.__all__) - set(dir(eventstore))))"],
        capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_each_public_name_comes_from_its_module():
    for name in eventstore.__all__:
        value = getattr(eventstore, name)
        module_name = getattr(value, "__module__", None)
        if isinstance(value, type) or callable(value):
            assert module_name is not None and module_name.startswith("eventstore."), name
    assert set(eventstore._HOMES) == set(eventstore.__all__)
    assert set(eventstore.__all__) <= set(dir(eventstore))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'SessionStorage'"):
        _ = eventstore.SessionStorage
    with pytest.raises(ImportError):
        exec("from eventstore import SessionStorage", {})


def test_grouping_a_batch_loads_no_masked_arrays():
    """``numpy.unique`` imports ``numpy.ma`` (milliseconds, once a process): the index writer's grouping, which the
    first read through a batch runs, does without it, with its term ids in one range and a range at a time."""
    loaded = modules_after(
        "from projections.search import grouping\n"
        "grouping.NUMPY_FROM = 0\n"  # a few postings are grouped in plain Python
        "postings = grouping.Postings()\n"
        "postings.tids.extend([1, 2, 300])\n"
        "postings.codes.append(1 << 32 | 5 << 8 | 126)\n"
        "postings.sizes.append(3)\n"
        "assert [term[0] for term in grouping.group(postings, 12, 2)] == [1, 2, 300]\n"
        "grouping.SORTED_BITS = 24\n"
        "assert [term[0] for term in grouping.group(postings, 12, 2)] == [1, 2, 300]")
    assert "numpy" in top_level(loaded)
    assert "numpy.ma" not in loaded


def test_a_search_loads_no_masked_arrays(tmp_path):
    """The first search of a process (a one-off search from the command line) finds the sessions its terms share
    over arrays without ``numpy.unique``, whose import of ``numpy.ma`` it would pay for."""
    loaded = modules_after(
        "from eventstore import ChatMessage, SessionQuery, SessionStore\n"
        "from projections.search import queries\n"
        "queries.SHARED_IN_ARRAYS_FROM = 0\n"  # the few sessions shared here are found over arrays
        "distinct, calls = queries.distinct, []\n"
        "queries.distinct = lambda values: calls.append(len(values)) or distinct(values)\n"
        f"with SessionStore({str(tmp_path)!r}) as store:\n"
        "    for n in range(3):\n"
        "        store.append(f'both{n}', ChatMessage.user('red green'))\n"
        "    store.append('apart', ChatMessage.user('red'))\n"
        "    store.append('apart', ChatMessage.user('green'))\n"
        "    found = [session.key for session in store.search(SessionQuery('red green'))]\n"
        "assert calls == [3], calls\n"
        "assert sorted(found[:3]) == ['both0', 'both1', 'both2'] and found[3:] == ['apart'], found")
    assert "numpy" in top_level(loaded)
    assert "numpy.ma" not in loaded
