"""The common-word benchmark: the index's message path answers exactly as a plain BM25 does, on a small store of its
corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import bench_common_words
from benchmarks.bench_scale import Corpus, Settings
from eventstore import SessionQuery, SessionStore
from projections.search import formats
from projections.search import queries as search_queries

SESSIONS = 60
QUERIES = 12


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of the scale benchmark's corpus, its index caught up, laid out as ``bench_scale --keep`` keeps it;
    every block of a term has its message map (a block of the corpus at scale has thousands of sessions)."""
    directory = tmp_path_factory.mktemp("common-words")
    corpus = Corpus(Settings(sessions=SESSIONS))
    with pytest.MonkeyPatch.context() as patch, SessionStore(directory / "ours", durable=False) as store:
        patch.setattr(formats, "MAP_FROM", 1)
        for number in range(SESSIONS):
            store.append_many(corpus.key(number), corpus.session())
        store.search(SessionQuery(corpus.words[0]))  # catches the index up
    return directory


def test_message_path_ranks_as_a_plain_bm25(kept: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # What the index takes for terms in few sessions: off, so that these take the message path as at scale.
    monkeypatch.setattr(search_queries, "MATERIALIZE_UP_TO", 0)
    monkeypatch.setattr(search_queries, "INTERSECT_UP_TO", 0)
    monkeypatch.setattr(search_queries, "SPREAD_UP_TO", -1)
    monkeypatch.setattr(formats, "MAP_FROM", 1)  # as the store was built
    assert bench_common_words.main(["--keep", str(kept), "--sessions", str(SESSIONS),
                                    "--queries", str(QUERIES)]) == 0
    out = capsys.readouterr().out
    exact = re.findall(r"in the same order \d+ of (\d+); as a brute-force BM25: threshold path \d+, message path (\d+)",
                       out)
    assert len(exact) == 2  # 2 and 3 words
    for queries, maps in exact:
        assert int(queries) >= QUERIES // 2  # most of the queries' words are in the store
        assert int(maps) == int(queries)
