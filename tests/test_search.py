"""Search: the tokenizer and query parser, the ranked index and its upkeep, and the facade's search calls.

Checked against independent answers: FTS5's own tokenizer and matching (SQLite's
``sqlite3`` module ships FTS5 here), a plain-Python BM25 over the sessions'
current messages, and an index rebuilt from the log.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import struct
import tempfile
import types
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import (
    REDACTED,
    ChatMessage,
    InvalidArgument,
    SearchHit,
    SessionMetadata,
    SessionQuery,
    SessionStore,
    StoreReadOnly,
)
from eventstore.storage import MemoryStorage, WriteTransaction
from projections.search import formats, planning, writer
from projections.search import queries as search_queries
from projections.search.formats import chunks, summaries
from projections.search.formats.keys import META_NEXT_TID, block_key, count_value, id_key, term_entry
from projections.search.formats.maps import MAP_SHIFT, map_value
from projections.search.index import SearchIndex
from projections.search.reader import IndexReader
from projections.search.scoring import LEVEL_WEIGHTS, PIVOT, idf, impact, level_weight, term_weight
from projections.search.snippets import phrase_in, snippet
from projections.search.tokenizer import (
    MAX_TERM_BYTES,
    QueryWord,
    fold,
    parse_query,
    term_key,
    term_keys,
    token_spans,
    tokenize,
)

from conftest import LOG_BACKENDS, FakeClock, engine_of, lmdb_storage


@pytest.fixture(params=LOG_BACKENDS)
def engine(request: pytest.FixtureRequest) -> str:
    """The tests that take the ``store`` fixture run with the log in LMDB and on PostgreSQL."""
    return engine_of(request)


def keys(found: list[SessionMetadata]) -> list[str]:
    return [metadata.key for metadata in found]


def search(store: SessionStore, keyword: str | None, limit: int | None = None) -> list[str]:
    return keys(store.search(SessionQuery(keyword, limit)))


# -- the tokenizer -----------------------------------------------------------------------


def fts5_tokens(texts: list[str]) -> list[list[str]]:
    """What FTS5's default unicode61 tokenizer makes of each text."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    connection.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", list(enumerate(texts, 1)))
    found: dict[int, list[str]] = {}
    for row, term in connection.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
        found.setdefault(row, []).append(term)
    return [found.get(row, []) for row in range(1, len(texts) + 1)]


#: Characters that Python and SQLite agree exist (assigned in Unicode 3.2), from many scripts and categories.
TOKENIZER_ALPHABET = "".join(
    chr(code) for code in [*range(0x20, 0x250), *range(0x370, 0x3D0), *range(0x400, 0x460), *range(0x5D0, 0x5EB),
                           *range(0x620, 0x64B), *range(0x300, 0x332), 0x1E9E, 0x212A, *range(0x2000, 0x2070),
                           *range(0x3040, 0x3097), *range(0x4E00, 0x4E20), *range(0xFF01, 0xFF5F), 0xE000, 0xFB01]
    if unicodedata.ucd_3_2_0.category(chr(code)) != "Cn"
) + "😀🎉"


class TestTokenizer:
    def test_diacritics_and_case_fold_away(self) -> None:
        """"Café", "CAFÉ" and "cafe" (also with a combining accent) are one term."""
        assert [["cafe"]] * 4 == [tokenize(text) for text in ("Café", "CAFÉ", "cafe", "cafe\u0301")]

    def test_punctuation_separates(self) -> None:
        """"Rust?" is the token "rust"; "Rusty" is another word."""
        assert (["rust"], ["rusty"]) == (tokenize("Rust?"), tokenize("Rusty"))

    def test_underscore_symbols_and_emoji_separate(self) -> None:
        """Only letters, digits and private-use characters make tokens, as in FTS5."""
        assert ["snake", "case", "a1", "b", "x\ue000y"] == tokenize("snake_case a1+b 😀x\ue000y")

    def test_fts5_folding_choices(self) -> None:
        """Simple case folding as FTS5 does it: ß stays, ſ is s, İ is i, Ǆ is ǆ; Greek keeps its accents."""
        assert ["straße", "s", "istanbul", "ǆ", "άλφα"] == tokenize("Straße ſ İstanbul Ǆ Άλφα")

    def test_no_compatibility_decomposition(self) -> None:
        """A ligature and fullwidth letters stay as they are (lowercased), as in FTS5."""
        assert ["ﬁle", "ａｂｃ"] == tokenize("ﬁle ＡＢＣ")

    @settings(max_examples=200)
    @given(st.text(TOKENIZER_ALPHABET, max_size=40))
    def test_spans_give_the_same_tokens(self, text: str) -> None:
        """token_spans finds the same terms as tokenize, and each span's text folds to its term."""
        spans = list(token_spans(text))
        assert tokenize(text) == [term for _, _, term in spans]
        assert all(fold(text[start:end]) == term for start, end, term in spans)

    @settings(max_examples=300)
    @given(st.one_of(st.text(TOKENIZER_ALPHABET, max_size=40), st.text(st.characters(max_codepoint=127), max_size=60)))
    @example("Hello, World!\tsnake_case A1+b\x00c\x1fd\x7fe\x0bf[g]h`i{j}")
    @example("Café naïve ASCII_and_not")
    def test_term_keys_are_the_tokens_bytes(self, text: str) -> None:
        """term_keys gives tokenize's terms as UTF-8, ASCII text by its own path: every ASCII byte that is not a
        letter or digit separates, uppercase letters are lowercased."""
        assert [term.encode("utf-8") for term in tokenize(text)] == term_keys(text)

    @settings(max_examples=100)
    @given(st.lists(st.text(TOKENIZER_ALPHABET, max_size=30), min_size=1, max_size=20))
    def test_same_tokens_as_fts5(self, texts: list[str]) -> None:
        """On characters both Unicode databases know, our tokens are FTS5's unicode61 tokens."""
        assert fts5_tokens(texts) == [tokenize(text) for text in texts]

    def test_long_terms_get_bounded_distinct_keys(self) -> None:
        """A term longer than the key limit is stored under a bounded key that keeps its prefix."""
        first, second = "a" * 5000, "a" * 4999 + "b"
        assert (len(term_key(first)) < 511, term_key(first) != term_key(second)) == (True, True)
        assert term_key(first)[:MAX_TERM_BYTES] == first.encode()[:MAX_TERM_BYTES]


class TestParseQuery:
    def test_words_prefixes_and_phrases(self) -> None:
        """Whitespace separates words; a trailing * is a prefix; several tokens in one word are a phrase."""
        assert (QueryWord(("rust",)), QueryWord(("lang",), True), QueryWord(("gpt", "4"))) == \
            parse_query("  Rust?  lang*\tgpt-4 ")

    def test_operator_words_and_quotes_are_plain_words(self) -> None:
        """FTS5's operators and quotes mean nothing here."""
        assert tuple(QueryWord((w,)) for w in ("and", "or", "not", "near", "x")) == \
            parse_query('AND OR NOT NEAR "x" " *')

    def test_words_without_tokens_are_dropped(self) -> None:
        """Emoji, punctuation and lone stars make no word; repeats count once."""
        assert (QueryWord(("go",)),) == parse_query("😀 ??? * go GO go!")

    @given(st.text(max_size=200))
    def test_never_raises(self, keyword: str) -> None:
        """Any string parses, into words that all have tokens."""
        assert all(word.tokens for word in parse_query(keyword))


class TestQueryBounds:
    """Any query is answered in bounded time: it resolves to at most 64 terms, a prefix to a few of them."""

    def test_a_query_resolves_to_at_most_64_terms(self, store: SessionStore) -> None:
        """Words count in order while their terms number at most 64; later ones are ignored. Words in no message
        and repeats cost nothing; a prefix counts the terms it stands for."""
        limit = planning.MAX_QUERY_TERMS
        for n in range(limit + 2):
            store.append(f"s{n}", ChatMessage.user(f"w{n}"))
        absent = " ".join(f"nowhere{n}" for n in range(200))
        keyword = f"{absent} w0 w0 " + " ".join(f"w{n}" for n in range(limit + 2))
        assert {f"s{n}" for n in range(limit)} == set(search(store, keyword, 100))
        full = " ".join(f"w{n}" for n in range(2, limit + 2))
        assert {f"s{n}" for n in range(2, limit + 2)} == set(search(store, full + " w1*", 100))  # w1* comes too late
        assert [f"s{limit + 1}"] == search(store, f"w{limit + 1}")

    def test_a_prefix_stands_for_its_most_frequent_terms(self, store: SessionStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """Past ``MAX_PREFIX_TERMS`` terms, a prefix matches its most frequent ones (ties: the first in key order)."""
        monkeypatch.setattr(planning, "MAX_PREFIX_TERMS", 2)
        for count, term in ((1, "pa"), (3, "pb"), (2, "pc"), (3, "pd"), (1, "pe")):
            store.append_many(term, [ChatMessage.user(term)] * count)
        assert {"pb", "pd"} == set(search(store, "p*", 10))
        assert {"pb", "pd"} == {hit.session_key for hit in store.search_messages("p*", 10)}

    def test_prefixes_share_one_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Many prefixes in one query share ``MAX_QUERY_TERMS`` equally, each keeping at least one term."""
        assert planning.MAX_PREFIX_TERMS == planning.prefix_share(parse_query("a* b"))
        share = planning.prefix_share(parse_query(" ".join(f"{c}*" for c in "abcdefghijklmnopqrstuvwxyz")))
        assert share * 26 <= planning.MAX_QUERY_TERMS and share >= 1
        assert 1 == planning.prefix_share(parse_query(" ".join(f"w{n}*" for n in range(200))))

    def test_a_prefix_walks_a_bounded_part_of_the_dictionary(self, store: SessionStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """The walk from the prefix stops after ``MAX_PREFIX_WALK`` terms in key order."""
        monkeypatch.setattr(planning, "MAX_PREFIX_WALK", 3)
        store.append_many("k", [ChatMessage.user(term) for term in ("qa", "qb", "qc", "qd", "qd", "qd")])
        assert [0, 1, 2] == sorted(hit.index for hit in store.search_messages("q*", 10))

    @settings(max_examples=30)
    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                              st.lists(st.sampled_from(["rust", "rusty", "rustacean", "rusted", "trust", "ru"]),
                                       max_size=5).map(" ".join)), min_size=1, max_size=20),
           st.integers(1, 3))
    def test_a_prefix_within_the_bounds_ranks_as_before(self, appends: list[tuple[str, str]], limit: int) -> None:
        """With no more terms than the bound, a prefix query ranks exactly as a full expansion does."""
        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for key, text in appends:
                    clock.advance(seconds=1)
                    store.append(key, ChatMessage.user(text))
                reference = ReferenceSearch(store)
                for keyword in ("ru*", "rust* trust", "r*"):
                    assert reference.search(keyword, limit) == search(store, keyword, limit), keyword


# -- the pure part of scoring ---------------------------------------------------------------


class TestWeights:
    def test_more_occurrences_weigh_more(self) -> None:
        """The weight grows with the term's frequency and shrinks with the message's length."""
        assert term_weight(1, 10) < term_weight(3, 10) and term_weight(2, 10) > term_weight(2, 100)

    def test_levels_keep_the_order(self) -> None:
        """Stored levels order as the weights they stand for, and stand close to them."""
        assert impact(1, 10) < impact(3, 10) and impact(2, 80) < impact(2, 8)
        assert abs(level_weight(impact(1, int(PIVOT))) - term_weight(1, int(PIVOT))) < 0.005

    def test_idf_like_fts5(self) -> None:
        """A rare term weighs more than a common one; a term in most messages gets FTS5's floor of 1e-6."""
        assert idf(1000, 1) > idf(1000, 100) > 0 and idf(10, 9) == 1e-6

    def test_phrase_in(self) -> None:
        """Adjacent and in order, the last token a prefix when asked."""
        assert (True, False, True, False) == (phrase_in(["a", "gpt", "4"], ["gpt", "4"], False),
                                              phrase_in(["4", "gpt"], ["gpt", "4"], False),
                                              phrase_in(["gpt", "40"], ["gpt", "4"], True),
                                              phrase_in(["gpt", "40"], ["gpt", "4"], False))

    def test_snippet_marks_matches(self) -> None:
        """The snippet shows the text around the first match with every matched token marked."""
        text = "Nothing here. Then I drank a Café au lait; cafe again."
        assert "…I drank a [Café] au lait; [cafe] again." == snippet(text, parse_query("cafe"), width=8)


# -- the facade: what matches ---------------------------------------------------------------


class TestMatching:
    def test_diacritics_and_punctuation(self, store: SessionStore) -> None:
        """"cafe" finds "Café"; "Rust" finds "Rust?" but not "Rusty"."""
        store.append("drinks", ChatMessage.user("Un Café, s'il vous plaît"))
        store.append("q", ChatMessage.user("Do you like Rust?"))
        store.append("nails", ChatMessage.user("Rusty nails"))
        assert (["drinks"], ["q"]) == (search(store, "cafe"), search(store, "rust"))

    def test_words_are_or_ed(self, store: SessionStore, clock: FakeClock) -> None:
        """A session matches when any word matches."""
        store.append("one", ChatMessage.user("apples"))
        clock.advance(seconds=1)
        store.append("two", ChatMessage.user("pears"))
        store.append("three", ChatMessage.user("plums"))
        assert {"one", "two"} == set(search(store, "apples pears kiwis"))

    def test_prefix(self, store: SessionStore) -> None:
        """"rust*" finds rust, rusty and rustacean, not trust."""
        for key, text in (("a", "rust"), ("b", "rusty"), ("c", "a Rustacean"), ("d", "trust me")):
            store.append(key, ChatMessage.user(text))
        assert ({"a", "b", "c"}, ["b"]) == (set(search(store, "rust*")), search(store, "rusty*"))

    def test_phrase(self, store: SessionStore) -> None:
        """A word of several tokens needs them adjacent and in order."""
        store.append("yes", ChatMessage.user("we tried gpt-4 today"))
        store.append("no", ChatMessage.user("4 versions of gpt"))
        assert (["yes"], ["yes"]) == (search(store, "GPT-4"), search(store, "gpt.4*"))

    def test_key_alone_does_not_match(self, store: SessionStore) -> None:
        """A session whose key contains the word, but none of its messages, is not found."""
        store.append("telegram_rust_fans", ChatMessage.user("hello there"))
        assert [] == search(store, "rust")

    def test_session_name_alone_does_not_match(self, store: SessionStore) -> None:
        """Only message contents are searched."""
        store.append("k", ChatMessage.user("hello"))
        store.set_session_name("k", "rust club")
        assert [] == search(store, "rust")

    def test_blank_keyword_lists_sessions(self, store: SessionStore, clock: FakeClock) -> None:
        """None or whitespace returns every session's metadata, most recent first, cut at a given limit."""
        for key in ("old", "mid", "new"):
            store.append(key, ChatMessage.user("x"))
            clock.advance(seconds=1)
        assert (["new", "mid", "old"], ["new", "mid", "old"], ["new", "mid"]) == (
            search(store, None), search(store, " \t"), search(store, "", 2))

    @pytest.mark.parametrize("keyword", [
        "???", '"', '""', "*", "AND", "OR NOT", "NEAR(a b)", "a AND", "😀", "-", "x*y*", "^", "col:rust",
        '"unterminated', "a\x00b", "( ) { } [ ]", "\u200d", "🎉🎉 ok", "rust' OR '1'='1",
    ])
    def test_hostile_queries(self, store: SessionStore, keyword: str) -> None:
        """Punctuation, quotes, FTS5 syntax and emoji never raise, and match only their literal words."""
        text = "ok rust and near not a b x y col 1"
        store.append("k", ChatMessage.user(text))
        store.append("other", ChatMessage.user("nothing relevant"))
        matches = any(phrase_in(tokenize(text), word.tokens, word.prefix) for word in parse_query(keyword))
        assert (["k"] if matches else []) == search(store, keyword)

    def test_huge_query(self, store: SessionStore) -> None:
        """A 10 KB keyword is fine: it matches what its words match."""
        store.append("k", ChatMessage.user("needle"))
        store.append("other", ChatMessage.user("hay"))
        keyword = "x" * 5000 + " " + " ".join(f"w{n}" for n in range(1000)) + " needle"
        assert (["k"], []) == (search(store, keyword[:10_240]), search(store, "y" * 10_240))

    def test_limit(self, store: SessionStore) -> None:
        """At most limit sessions; 50 by default; 0 gives none."""
        store.append_many("seed", [ChatMessage.user("x")])
        for n in range(60):
            store.append(f"s{n}", ChatMessage.user("common"))
        assert (50, 7, 0) == (len(search(store, "common")), len(search(store, "common", 7)),
                              len(search(store, "common", 0)))

    def test_bad_arguments(self, store: SessionStore) -> None:
        """A bad limit or keyword type is refused."""
        with pytest.raises(InvalidArgument):
            store.search(SessionQuery("x", -1))
        with pytest.raises(InvalidArgument):
            store.search(SessionQuery(b"x", None))  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            store.search_messages("x", -2)


# -- ranking ------------------------------------------------------------------------------


class TestRanking:
    def test_frequency(self, store: SessionStore, clock: FakeClock) -> None:
        """A message with the word three times outranks one with it once (same length)."""
        store.append("thrice", ChatMessage.user("tea tea tea cup"))
        clock.advance(seconds=1)
        store.append("once", ChatMessage.user("tea one two cup"))
        store.append_many("filler", [ChatMessage.user(f"word{n}") for n in range(20)])
        assert ["thrice", "once"] == search(store, "tea")

    def test_rare_word_outranks_common_word(self, store: SessionStore, clock: FakeClock) -> None:
        """With OR, the session with the rare word comes first."""
        for n in range(30):
            store.append(f"common{n}", ChatMessage.user("hello world"))
        clock.advance(seconds=1)
        store.append("rare", ChatMessage.user("hello zanzibar"))
        assert "rare" == search(store, "world zanzibar")[0]

    def test_session_scores_by_its_best_message(self, store: SessionStore, clock: FakeClock) -> None:
        """Many weak messages do not add up: the session with the strongest single message wins."""
        store.append_many("many", [ChatMessage.user("kiwi " + "filler " * 30) for _ in range(10)])
        clock.advance(seconds=1)
        store.append("one", ChatMessage.user("kiwi"))
        store.append_many("filler", [ChatMessage.user(f"word{n}") for n in range(20)])
        assert ["one", "many"] == search(store, "kiwi")

    def test_words_in_one_message_add_up(self, store: SessionStore, clock: FakeClock) -> None:
        """Both words in one message beat the same words in two messages of a session."""
        store.append_many("apart", [ChatMessage.user("lisbon x"), ChatMessage.user("tram x")])
        clock.advance(seconds=1)
        store.append("together", ChatMessage.user("lisbon tram"))
        store.append_many("filler", [ChatMessage.user(f"word{n}") for n in range(20)])
        assert ["together", "apart"] == search(store, "lisbon tram")

    def test_ties_by_most_recent_activity(self, store: SessionStore, clock: FakeClock) -> None:
        """Equal scores order by last activity, which any event moves."""
        for key in ("a", "b", "c"):
            store.append(key, ChatMessage.user("same words"))
            clock.advance(seconds=1)
        store.set_session_name("a", "touched")
        assert ["a", "c", "b"] == search(store, "same")

    def test_tie_met_later_in_the_threshold_walk_goes_to_the_most_recent(
            self, store: SessionStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        """On the threshold path, a session met after the limit-th score was found, whose best possible score only
        ties it, is still scored, and wins the tie when it is more recent."""
        monkeypatch.setattr(search_queries, "MATERIALIZE_UP_TO", 0)
        monkeypatch.setattr(search_queries, "INTERSECT_UP_TO", 0)
        monkeypatch.setattr(search_queries, "SPREAD_UP_TO", -1)
        store.append("older", ChatMessage.user("lisbon x"))
        clock.advance(seconds=1)
        store.append("newer", ChatMessage.user("porto x"))
        store.append_many("filler", [ChatMessage.user(f"word{n}") for n in range(20)])
        assert (["newer"], ["newer", "older"]) == (search(store, "lisbon porto", 1), search(store, "lisbon porto"))

    def test_scores_are_bm25_over_messages(self, store: SessionStore) -> None:
        """search_messages scores equal a plain BM25 (stored levels, fixed pivot) computed here."""
        texts = ["red apple pie", "green apple", "apple apple apple tart", "pear"]
        store.append_many("k", [ChatMessage.user(text) for text in texts])
        hits = store.search_messages("apple tart")
        df = Counter(term for text in texts for term in set(tokenize(text)))

        def score(text: str) -> float:
            terms = tokenize(text)
            return sum(idf(4, df[t]) * level_weight(impact(terms.count(t), len(terms))) for t in ("apple", "tart")
                       if t in terms)

        # An approx equals the float it wraps, which mypy's equality check cannot know.
        assert [(2, score(texts[2])), (1, score(texts[1])), (0, score(texts[0]))] == \
            [(hit.index, pytest.approx(hit.score)) for hit in hits]  # type: ignore[comparison-overlap]


    @settings(max_examples=60)
    @given(st.lists(st.lists(st.sampled_from([f"w{n}" for n in range(12)]), min_size=1, max_size=5).map(" ".join),
                    min_size=1, max_size=3),
           st.sampled_from(["w0-w0 w1*", "w0-w1 w1*", "w0 w1*", "w0 w1 w10 w11"]))
    @example(["w10 w0 w0 w9 w1"], "w0-w0 w1*")
    @example(["w10 w1 w11 w1 w2"], "w0-w0 w1*")
    @example(["w11 w7 w1 w0 w1"], "w0-w1 w1*")
    def test_exact_tie_at_the_limit_goes_to_the_most_recent(self, texts: list[str], keyword: str) -> None:
        """Two sessions with the same messages score exactly the same: at limit 1 the newer one wins, on every
        query path (a phrase's, a prefix's) and in ``search_messages`` too."""
        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for key in ("old", "filler", "new"):
                    for text in texts if key != "filler" else ["w3 w2"]:
                        clock.advance(seconds=1)
                        store.append(key, ChatMessage.user(text))
                sessions = search(store, keyword, 1)
                hits = store.search_messages(keyword, 1)
                assert sessions in ([], ["new"]), keyword
                assert [hit.session_key for hit in hits] == sessions


#: ``(formats.MAP_FROM, formats.MAP_UP_TO)``: as stored, then bands small enough that a few sessions cross them, so
#: that blocks with message maps and blocks read from their tags mix in one query.
MAP_BANDS = [(formats.MAP_FROM, formats.MAP_UP_TO), (1, 2), (2, 4), (1, 1 << 20)]


class ReferenceSearch:
    """Plain-Python search over the current messages: the contract, written the obvious way."""

    def __init__(self, store: SessionStore) -> None:
        self.messages = {m.key: [message.content for message in store.load(m.key)]
                         for m in store.list_sessions_with_metadata()}
        self.activity = {m.key: m.last_activity for m in store.list_sessions_with_metadata()}

    def message_scores(self, keyword: str) -> dict[tuple[str, int], float]:
        """Every current message that matches ``keyword``: (session, index) → its BM25 score."""
        words = parse_query(keyword)
        # A redacted message counts, but holds no words: the placeholder is not indexed.
        rows = [(key, index, [] if text == REDACTED else tokenize(text)) for key, texts in self.messages.items()
                for index, text in enumerate(texts)]
        df = Counter(term for _, _, terms in rows for term in set(terms))
        scores: dict[tuple[str, int], float] = {}
        for key, index, terms in rows:
            counted = {t for word in words if not word.is_phrase for t in terms
                       if t == word.tokens[0] or (word.prefix and t.startswith(word.tokens[0]))}
            for word in words:
                if word.is_phrase and phrase_in(terms, word.tokens, word.prefix):
                    counted.update(t for t in terms if t in word.tokens[:-1] or t == word.tokens[-1]
                                   or (word.prefix and t.startswith(word.tokens[-1])))
            if counted:
                scores[key, index] = sum(idf(len(rows), df[t]) * level_weight(impact(terms.count(t), len(terms)))
                                         for t in sorted(counted))
        return scores

    def scores(self, keyword: str) -> dict[str, float]:
        best: dict[str, float] = {}
        for (key, _), score in self.message_scores(keyword).items():
            best[key] = max(best.get(key, 0.0), score)
        return best

    def search(self, keyword: str, limit: int) -> list[str]:
        best = self.scores(keyword)
        return sorted(best, key=lambda key: (best[key], self.activity[key]), reverse=True)[:limit]


VOCABULARY = ["apple", "Apple!", "banana", "cherry", "date", "elder", "fig", "grape", "gpt-4", "Café", "cafe",
              "rust", "rusty", "trust", "zeta", "zeta's"]
texts = st.lists(st.sampled_from(VOCABULARY), max_size=8).map(" ".join)
queries = st.lists(st.sampled_from(["apple", "banana", "fig", "zeta", "rust*", "gpt-4", "cafe", "Cherry",
                                    "date", "ap*", "s", "nothing"]), min_size=1, max_size=3).map(" ".join)


class TestAgainstReference:
    @settings(max_examples=40)
    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), texts), min_size=1, max_size=40),
           st.lists(queries, min_size=1, max_size=5), st.integers(1, 6))
    def test_same_ranking(self, appends: list[tuple[str, str]], keywords: list[str], limit: int) -> None:
        """The index ranks sessions exactly as a plain BM25 over the current messages does (ties by activity)."""
        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for key, text in appends:
                    store.append(key, ChatMessage.user(text))
                    clock.advance(seconds=1)
                reference = ReferenceSearch(store)
                for keyword in keywords:
                    expected = reference.search(keyword, limit)
                    found = store.search(SessionQuery(keyword, limit))
                    assert expected == keys(found), keyword
                    scores = reference.scores(keyword)
                    assert [pytest.approx(scores[key]) for key in expected] == \
                        [max(hit.score for hit in store.search_messages(keyword, 100) if hit.session_key == key)
                         for key in expected]


@pytest.mark.slow
class TestAgainstReferenceAfterEdits:
    @settings(max_examples=400)
    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                              st.lists(st.sampled_from([f"w{n}" for n in range(12)]), max_size=8).map(" ".join),
                              st.sampled_from(["append"] * 6 + ["remove_last", "update_last", "clear"])),
                    min_size=1, max_size=80),
           st.lists(st.lists(st.sampled_from([f"w{n}" for n in range(12)] + ["w1*"]), min_size=1, max_size=3)
                    .map(" ".join), min_size=1, max_size=6),
           st.integers(1, 6), st.sampled_from([0, 4000]), st.sampled_from([1, 256]),
           st.sampled_from([formats.BLOCK_BITS, 1]), st.sampled_from(MAP_BANDS),
           st.sampled_from([formats.WHOLE_UP_TO, 0, 3]))
    def test_same_ranking(self, script: list[tuple[str, str, str]], keywords: list[str], limit: int,
                          materialize_up_to: int, grouped_from: int, block_bits: int,
                          map_band: tuple[int, int], whole_up_to: int) -> None:
        """Over edits, many ties and every query path (whole summaries or level groups, one block or several;
        message maps in some blocks of a term and not others, blocks gaining and losing them as edits cross the
        band; terms stored whole, in blocks, or crossing between the two as edits go), the ranking is exact."""
        saved = search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO, \
            formats.GROUPED_FROM, formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, formats.WHOLE_UP_TO
        # 0: every multi-term query takes the threshold path; else the shared sessions' path for few sessions.
        search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO, \
            formats.GROUPED_FROM, formats.BLOCK_BITS = materialize_up_to, materialize_up_to // 1000, \
            materialize_up_to // 1000 - 1, grouped_from, block_bits
        formats.MAP_FROM, formats.MAP_UP_TO = map_band
        formats.WHOLE_UP_TO = whole_up_to
        try:
            with tempfile.TemporaryDirectory() as directory:
                clock = FakeClock()
                with SessionStore(Path(directory), clock=clock, durable=False) as store:
                    for key, text, command in script:
                        clock.advance(seconds=1)
                        run_script_step(store, key, [text], command)
                    store.catch_up()
                    assert store.verify().ok
                    reference = ReferenceSearch(store)
                    for keyword in keywords:
                        scores = reference.scores(keyword)
                        found = [(m.key, scores[m.key]) for m in store.search(SessionQuery(keyword, limit))]
                        assert reference.search(keyword, limit) == [key for key, _ in found], keyword
        finally:
            search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO, \
                formats.GROUPED_FROM, formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, \
                formats.WHOLE_UP_TO = saved


class TestSharedSessionsPath:
    @settings(max_examples=30)
    @given(st.lists(st.lists(st.lists(st.sampled_from(["the", "the", "the", "of", "of", "w1", "w2", "w3", "w4"]),
                                      min_size=1, max_size=6).map(" ".join), min_size=1, max_size=3),
                    min_size=20, max_size=90),
           st.lists(st.lists(st.sampled_from(["the", "of", "w1", "w2", "w3", "w4"]), min_size=2, max_size=3)
                    .map(" ".join), min_size=1, max_size=4),
           st.integers(1, 5), st.booleans(), st.sampled_from(MAP_BANDS), st.sampled_from([formats.BLOCK_BITS, 3]))
    @example([["w1"], ["w1"], ["w2"], ["w2"], ["w1 w2"]] * 4, ["w1 w2"], 1, True, MAP_BANDS[0], formats.BLOCK_BITS)
    @example([["the"], ["the the", "w2 w2 w2 the the"], ["the"]], ["the w2 the"], 2, True, MAP_BANDS[0],
             formats.BLOCK_BITS)
    @example([["w1 w2", "w1"], ["w1", "w2"], ["w2 w1"], ["w1"], ["w2"]] * 4, ["w1 w2"], 3, True, (2, 4), 3)
    def test_same_ranking_as_the_threshold_path(self, sessions: list[list[str]], keywords: list[str], limit: int,
                                                shared_path: bool, map_band: tuple[int, int],
                                                block_bits: int) -> None:
        """Over many sessions of common words (so the best sessions of a term are cut at a level, with ties), the
        path that finds the sessions the terms share ranks exactly as a plain BM25 does, as the threshold path
        does, with message maps in no block, some blocks of a term or all of them."""
        saved = search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO, \
            formats.MAP_FROM, formats.MAP_UP_TO, formats.BLOCK_BITS
        search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO = \
            (4000, 8192, 8192) if shared_path else (0, 0, -1)
        (formats.MAP_FROM, formats.MAP_UP_TO), formats.BLOCK_BITS = map_band, block_bits
        try:
            with tempfile.TemporaryDirectory() as directory:
                clock = FakeClock()
                with SessionStore(Path(directory), clock=clock, durable=False) as store:
                    append_sessions(store, clock, sessions)
                    reference = ReferenceSearch(store)
                    for keyword in keywords:
                        assert reference.search(keyword, limit) == search(store, keyword, limit), keyword
                    assert store.verify().ok
        finally:
            search_queries.MATERIALIZE_UP_TO, search_queries.INTERSECT_UP_TO, search_queries.SPREAD_UP_TO, \
                formats.MAP_FROM, formats.MAP_UP_TO, formats.BLOCK_BITS = saved

    def test_terms_in_many_sessions_but_one_message_each_take_the_shared_path(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Terms in more sessions than ``INTERSECT_UP_TO``, each in one message of them, are resolved from the
        sessions they share (the threshold path would walk them all), and rank as a plain BM25 does."""
        monkeypatch.setattr(search_queries, "MATERIALIZE_UP_TO", 0)
        monkeypatch.setattr(search_queries, "INTERSECT_UP_TO", 2)
        monkeypatch.setattr(search_queries, "SPREAD_UP_TO", 2)

        def threshold(*_: Any) -> None:
            raise AssertionError("the threshold path was taken")

        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                for number in range(12):
                    clock.advance(seconds=1)
                    texts = ["alpha beta", "gamma"] if number % 3 else ["alpha", "beta gamma beta", "beta"]
                    store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])
                reference = ReferenceSearch(store)
                assert reference.search("beta gamma", 5) == search(store, "beta gamma", 5)  # spread: 4 sessions
                monkeypatch.setattr(search_queries, "_threshold", threshold)
                assert reference.search("alpha gamma", 5) == search(store, "alpha gamma", 5)


    @pytest.mark.parametrize("in_arrays_from", [1, search_queries.SHARED_IN_ARRAYS_FROM],
                             ids=["in arrays", "one by one up to the threshold"])
    @settings(max_examples=80)
    @given(st.lists(st.dictionaries(st.integers(0, 3 * 4096 + 50),
                                    st.sets(st.sampled_from([0, 1, 2, 3, 126, 127, 128, 200]), min_size=1, max_size=3),
                                    min_size=1, max_size=300), min_size=2, max_size=4),
           st.sets(st.tuples(st.integers(0, 3), st.integers(0, 3))), st.sampled_from([0, 1 << 24]))
    @example([{5: {1}, 7: {1}}, {5: {1}, 7: {2, 3}}], set(), 0)
    @example([{5: {1}, 7: {1}}, {5: {1}, 7: {2, 3}}], {(0, 0), (1, 0)}, 0)
    @example([{5: {0, 1}}, {5: {0}}, {6: {0}}], {(1, 0)}, 0)
    @example([{sid: {2} for sid in range(200)}, {1: {0, 3}, 4095: {127}}], {(0, 0)}, 1 << 24)
    @example([{5: {200}, 9: {128, 3}}, {5: {130}, 9: {127}}], {(0, 0), (1, 0)}, 0)
    def test_sessions_sharing(self, in_arrays_from: int, terms: list[dict[int, set[int]]],
                              with_maps: set[tuple[int, int]], first: int) -> None:
        """The sessions the shared-sessions path resolves, found a block at a time in C, are exactly those holding
        several terms where two of them may share a message by a plain check of every session: where both terms
        have a message map in the block, a message index (or both past ``LAST_TAG``) they share; else equal tags,
        a map holding the message one term's tag names, or a term whose tag names no single message. Whichever
        blocks have maps, every session where two terms share a message is among them. Their shared keys are
        turned into sessions over whole arrays or one by one (below ``SHARED_IN_ARRAYS_FROM``) alike."""
        def code(indexes: set[int]) -> int:
            return 9 << 8 | summaries.tag(min(indexes), len(indexes) > 1)

        plan_terms, maps = [], {}
        for tid, messages in enumerate(terms):
            blocks = [((first >> 12) + number, summaries.Block(raw)) for number in range(4)
                      if (raw := summaries.summary_of({sid & 4095: code(indexes) for sid, indexes in messages.items()
                                                    if sid >> 12 == number})) is not None]
            for number, _ in blocks:
                if (tid, number - (first >> 12)) in with_maps:
                    maps[tid, number] = BitMap(min(index, summaries.LAST_TAG) << MAP_SHIFT | sid & 4095
                                               for sid, indexes in messages.items()
                                               if (first + sid) >> 12 == number for index in indexes)
            plan_terms.append(types.SimpleNamespace(tid=tid, summary=summaries.Summary(blocks)))

        class View:
            @staticmethod
            def term_map(tid: int, block: int) -> BitMap | None:
                return maps.get((tid, block))

        def clipped(indexes: set[int]) -> set[int]:
            return {min(index, summaries.LAST_TAG) for index in indexes}

        expected, sharing = [], []
        for sid in sorted(set().union(*terms)):
            holders = [(tid, messages[sid]) for tid, messages in enumerate(terms) if sid in messages]
            block = (first + sid) >> 12
            opened = shared = False
            for (one, own), (other, others) in itertools.combinations(holders, 2):
                shared = shared or bool(clipped(own) & clipped(others))
                mapped = [(one, block) in maps, (other, block) in maps]
                tags = [code(own) & 0xFF, code(others) & 0xFF]
                if all(mapped):
                    opened = opened or bool(clipped(own) & clipped(others))
                elif any(not known and tag >= summaries.LAST_TAG for known, tag in zip(mapped, tags)):
                    opened = True
                elif not any(mapped):
                    opened = opened or tags[0] == tags[1]
                else:  # one map, and the other's one message
                    opened = opened or (tags[1] in clipped(own) if mapped[0] else tags[0] in clipped(others))
            if opened:
                expected.append(first + sid)
            if shared:
                sharing.append(first + sid)
        with mock.patch.object(search_queries, "SHARED_IN_ARRAYS_FROM", in_arrays_from):
            found = search_queries._sessions_sharing(cast(Any, View()),
                                                     cast(Any, types.SimpleNamespace(terms=plan_terms)))
        assert found == expected
        assert set(sharing) <= set(found)

    @given(st.integers(1, 4).flatmap(lambda terms: st.lists(
        st.lists(st.one_of(st.just(0), st.tuples(st.integers(1, 255), st.sampled_from([0, 1, 2, 126, 127, 128, 130]))
                           .map(lambda pair: pair[0] << 8 | pair[1])), min_size=terms, max_size=terms).filter(any),
        min_size=1, max_size=40)),
        st.sampled_from([0, search_queries.TAGS_IN_ARRAYS_FROM]))
    @example([[3 << 8 | 1, 5 << 8 | 1, 2 << 8 | 2], [0, 7 << 8 | 0x82, 4 << 8 | 0x82], [0, 9 << 8 | 0x7F, 0]], 0)
    def test_scores_from_tags(self, sessions: list[list[int]], in_arrays_from: int) -> None:
        """Over whole arrays or one by one, many sessions' scores from their tags are each one's
        ``_score_from_tags``, to the last bit."""
        terms = len(sessions[0])
        weights = [np.array(LEVEL_WEIGHTS) * (0.37 + 1.9 * place) for place in range(terms)]
        tables = [array.tolist() for array in weights]
        columns = [list(column) for column in zip(*sessions)]
        with mock.patch.object(search_queries, "TAGS_IN_ARRAYS_FROM", in_arrays_from):
            found = search_queries._scores_from_tags(columns, tables, weights)
        assert [None if score is None else score.hex() for score in found] == \
            [None if (score := search_queries._score_from_tags(codes, tables)) is None else score.hex()
             for codes in sessions]

    @settings(max_examples=60)
    @given(st.lists(st.dictionaries(st.integers(0, 2 * 4096 + 50), st.integers(1, 255), min_size=1, max_size=120),
                    min_size=2, max_size=4),
           st.integers(1, 40))
    @example([{1: 9, 2: 3}, {1: 3, 2: 9}], 2)  # each session highest by another term
    def test_best_singles(self, terms: list[dict[int, int]], limit: int) -> None:
        """The sessions among the best of some term score the highest of their terms' scores there."""
        found: list[summaries.Summary] = []
        for levels in terms:
            found.append(summaries.Summary([(number, summaries.Block(raw)) for number in range(3)
                                            if (raw := summaries.summary_of({sid & 4095: level << 8
                                                                             for sid, level in levels.items()
                                                                             if sid >> 12 == number})) is not None]))
        weights = [np.array([level * (place + 0.7) for level in range(256)]) for place in range(len(terms))]
        expected: dict[int, float] = {}
        for summary, array in zip(found, weights):
            sids, scores = search_queries._best_of_term(summary, array, limit)
            for sid, score in zip(sids.tolist(), scores.tolist()):
                expected[sid] = max(score, expected.get(sid, 0.0))
        assert search_queries._best_singles(found, weights, limit) == expected

    @given(st.lists(st.one_of(st.just(0), st.tuples(st.integers(1, 255), st.sampled_from([0, 1, 2, 126, 127, 128, 130]))
                            .map(lambda pair: pair[0] << 8 | pair[1])), min_size=1, max_size=4)
           .filter(any))
    @example([3 << 8 | 0x82, 0, 5 << 8 | 0x82])  # two terms in several messages, tags alike: still open
    @example([0, 7 << 8 | 0x7F, 0])  # one term alone past the tags' range: its best message
    def test_score_from_tags(self, codes: list[int]) -> None:
        """A session's score from its entries is its one term's weight when it holds one; else ``None`` when a term
        is in several messages or past the tags' range, and the best of the sums by message otherwise."""
        tables = [[level * (place + 1.3) for level in range(256)] for place in range(len(codes))]
        present = [(code, table) for code, table in zip(codes, tables) if code]
        expected: float | None
        if len(present) == 1:
            expected = present[0][1][present[0][0] >> 8]
        elif any(code & 0xFF >= summaries.LAST_TAG for code, _ in present):
            expected = None
        else:
            sums: dict[int, float] = {}
            for code, table in present:
                sums[code & 0xFF] = sums.get(code & 0xFF, 0.0) + table[code >> 8]
            expected = max(sums.values())
        assert search_queries._score_from_tags(codes, tables) == expected

    @settings(max_examples=60)
    @given(st.dictionaries(st.integers(0, 3 * 4096 + 50), st.integers(1, 255), min_size=1, max_size=400),
           st.integers(1, 60))
    @example({sid: 9 for sid in range(100)}, 50)
    @example({1: 255, 2: 1, 3: 128}, 2)
    @example({sid: 255 if sid % 16 == 0 else 1 for sid in range(400)}, 50)  # the sample's guess is above the cut
    def test_best_of_term(self, levels: dict[int, int], limit: int) -> None:
        """A term's best sessions are every session at or above the greatest level that ``limit`` of them reach
        (all of them when fewer reach any), scored by their level: a plain sort of the levels."""
        blocks = [(number, summaries.Block(raw)) for number in range(4)
                  if (raw := summaries.summary_of({sid & 4095: level << 8 for sid, level in levels.items()
                                                if sid >> 12 == number})) is not None]
        table = [level * 0.5 for level in range(256)]
        cut = sorted(levels.values(), reverse=True)[min(limit, len(levels)) - 1]
        expected = {sid: table[level] for sid, level in levels.items() if level >= cut}
        sids, scores = search_queries._best_of_term(summaries.Summary(blocks), np.array(table), limit)
        assert dict(zip(sids.tolist(), scores.tolist())) == expected
        assert len(sids) == len(expected)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.lists(st.lists(st.sampled_from(["alpha", "alpha", "beta", "beta", "gamma", "delta"]),
                                      min_size=1, max_size=5).map(" ".join), min_size=1, max_size=4),
                    min_size=1, max_size=12),
           st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), min_size=2, max_size=3, unique=True),
           st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["alpha beta", "beta gamma beta", "delta"]),
                              st.sampled_from(["append", "remove_last", "update_last", "clear", "redact", "delete"])),
                    max_size=12),
           st.sampled_from([2, formats.BLOCK_BITS]))
    @example([["beta alpha", "beta gamma delta gamma delta"]], ["alpha", "beta"], [],  # beta's tag: alpha's message
             formats.BLOCK_BITS)
    @example([["alpha beta", "beta"]], ["alpha", "beta"], [], formats.BLOCK_BITS)  # beta best in the other message
    def test_a_session_left_open_scores_what_all_its_postings_give(self, sessions: list[list[str]], words: list[str],
                                                                   edits: list[tuple[int, str, str]],
                                                                   block_bits: int) -> None:
        """A session whose entries leave its score open scores, from the postings of the messages that can add up,
        what all its postings give; where one term is in several messages and every other term is in the message
        its tag names (the first at its best level), that is the score of their entries, and nothing is read. So
        too once messages are removed, replaced, cleared and redacted (the tags follow them), over small blocks."""
        clock = FakeClock()
        with SessionStore.on_storage(MemoryStorage(Path("open")), clock=clock) as store, \
                pytest.MonkeyPatch.context() as patch:
            patch.setattr(formats, "BLOCK_BITS", block_bits)
            append_sessions(store, clock, sessions)
            store.catch_up()
            for number, text, command in edits:
                run_script_step(store, f"s{number}", [text], command)
            store.catch_up()
            with store._read() as txn:
                reader = IndexReader(store._search_index._spaces, store._search_index._term_ids, txn)
                plan = planning.plan_query(reader, parse_query(" ".join(words)))
                if plan is None:  # no message holds a word of the query
                    return
                tables = [[term.weight * weight for weight in LEVEL_WEIGHTS] for term in plan.terms]
                sids = sorted(set().union(*(term.summary.sorted_sids() for term in plan.terms)))
                for sid, codes in zip(sids, zip(*(term.summary.entries_of(sids) for term in plan.terms))):
                    if search_queries._score_from_tags(codes, tables) is not None:
                        continue
                    lower = max(table[code >> 8] for table, code in zip(tables, codes) if code)
                    several = [code for code in codes if code & summaries.MULTI]
                    places = {code & summaries.LAST_TAG for code in codes if code and not code & summaries.MULTI}
                    view: Any = reader
                    if len(several) == 1 and places == {several[0] & summaries.LAST_TAG} != {summaries.LAST_TAG}:
                        view = types.SimpleNamespace(chunk=None, chunks=None)  # a read fails
                    assert search_queries._score_from_postings(view, plan, sid, codes, lower) == \
                        max(search_queries._evaluate(reader, plan, sid, None, {}).values())

    def test_the_threshold_path_reads_only_the_messages_left_open(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A session waiting on the threshold path, one of whose terms is in one message, is scored from that
        message's postings (its other chunks are not read), and ranks as a plain BM25 does."""
        monkeypatch.setattr(search_queries, "MATERIALIZE_UP_TO", 0)
        monkeypatch.setattr(search_queries, "INTERSECT_UP_TO", 0)
        monkeypatch.setattr(search_queries, "SPREAD_UP_TO", -1)

        def every_chunk(*_: Any) -> None:
            raise AssertionError("every chunk of the session was read")

        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                texts = ["alpha gamma"] * 100 + ["alpha beta"] + ["gamma"] * 60  # beta in one message of chunk 1
                store.append_many("long", [ChatMessage.user(text) for text in texts])
                clock.advance(seconds=1)
                store.append_many("short", [ChatMessage.user("beta beta"), ChatMessage.user("alpha")])
                reference = ReferenceSearch(store)
                monkeypatch.setattr(search_queries, "_evaluate", every_chunk)
                assert reference.search("alpha beta", 2) == search(store, "alpha beta", 2)


# -- only current messages match ------------------------------------------------------------


class TestRemovals:
    def test_remove_last(self, store: SessionStore) -> None:
        """A removed message no longer matches; the one before it still does."""
        store.append_many("k", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.remove_last("k")
        assert ([], ["k"]) == (search(store, "beta"), search(store, "alpha"))

    def test_update_last(self, store: SessionStore) -> None:
        """A streaming update replaces the words of the last message."""
        store.append("k", ChatMessage.assistant("draft wording"))
        store.update_last("k", ChatMessage.assistant("final wording"))
        assert ([], ["k"], ["k"]) == (search(store, "draft"), search(store, "final"), search(store, "wording"))

    def test_clear(self, store: SessionStore) -> None:
        """Cleared messages no longer match; new ones do."""
        store.append_many("k", [ChatMessage.user("old words")])
        store.clear_messages("k")
        store.append("k", ChatMessage.user("new words"))
        assert ([], ["k"]) == (search(store, "old"), search(store, "new"))

    def test_delete_and_cleanup(self, store: SessionStore, clock: FakeClock) -> None:
        """A deleted session, or one deleted as stale, no longer matches."""
        store.append("gone", ChatMessage.user("marker"))
        store.append("stale", ChatMessage.user("marker"))
        clock.advance(hours=2)
        store.append("kept", ChatMessage.user("marker"))
        store.delete_session("gone")
        store.cleanup_stale(1)
        assert ["kept"] == search(store, "marker")

    def test_redact(self, store: SessionStore) -> None:
        """Redacted words are gone from the index at once, and the placeholder's words find nothing."""
        store.append_many("k", [ChatMessage.user("my secret password"), ChatMessage.user("more secret")])
        store.append("other", ChatMessage.user("the report was redacted by legal"))
        store.redact("k", "user request")
        assert ([], ["other"], ["other"]) == (search(store, "secret password"), search(store, REDACTED),
                                              search(store, "redacted"))
        assert ([], ["other"]) == (store.search_messages("secret"),
                                   [hit.session_key for hit in store.search_messages("redacted")])

    @pytest.mark.usefixtures("terms_in_blocks")
    def test_removals_and_redactions_keep_the_message_maps_exact(self, store: SessionStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """With every block of a term given a message map, removals, updates, clears and a redaction leave each
        map holding exactly the messages that hold the term (verify compares them with the log), and a word no
        message holds any more leaves no map behind."""
        monkeypatch.setattr(formats, "MAP_FROM", 1)
        store.append_many("k", [ChatMessage.user("my secret alpha"), ChatMessage.user("alpha beta secret"),
                                ChatMessage.user("beta")])
        store.append_many("j", [ChatMessage.user("alpha"), ChatMessage.user("gamma alpha")])
        store.catch_up()

        def maps() -> dict[str, list[tuple[int, int]]]:
            with store._environment.read() as txn:
                reader = store._search_index.reader(txn)
                names = {tid: term for term, tid in reader.stored_terms()}
                found = {}
                for block, tid in reader.stored_maps():
                    keys = reader.term_map(tid, block)
                    assert keys is not None
                    found[names[tid]] = [(key >> MAP_SHIFT, key & 0xFFF) for key in keys]
                return found

        k, j = 1, 2  # the sessions' stream ids: their offsets in block 0
        assert maps()["alpha"] == [(0, k), (0, j), (1, k), (1, j)] and maps()["secret"] == [(0, k), (1, k)]
        store.remove_last("j")
        store.update_last("k", ChatMessage.user("alpha"))
        store.catch_up()
        assert store.verify().ok
        assert (maps()["alpha"], "gamma" in maps()) == ([(0, k), (0, j), (1, k), (2, k)], False)
        store.redact("k", "user request")
        store.catch_up()
        assert store.verify().ok
        assert maps() == {"alpha": [(0, j)]}
        store.clear_messages("j")
        store.catch_up()
        assert (store.verify().ok, maps()) == (True, {})

    def test_restore_brings_messages_back(self, store: SessionStore) -> None:
        """Restoring to a version before a removal, a clear or a deletion indexes those messages again."""
        version = store.append_many("k", [ChatMessage.user("lisbon"), ChatMessage.user("porto")])
        store.remove_last("k")
        store.clear_messages("k")
        store.delete_session("k")
        assert [] == search(store, "porto")
        store.restore("k", version=version)
        assert (["k"], ["k"]) == (search(store, "porto"), search(store, "lisbon"))

    def test_message_indexes_follow_the_list(self, store: SessionStore) -> None:
        """search_messages' index is the message's place in load() after every kind of edit."""
        store.append_many("k", [ChatMessage.user(w) for w in ("one", "two", "three", "two")])
        store.remove_last("k")
        store.update_last("k", ChatMessage.user("two again"))
        hits = store.search_messages("two")
        assert [(1, "two"), (2, "two again")] == sorted((hit.index, store.load("k")[hit.index].content)
                                                        for hit in hits)

    def test_verify_checks_the_index(self, store: SessionStore) -> None:
        """verify compares the index with the log, and notices a damaged entry."""
        store.append_many("k", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma")])
        store.catch_up()
        assert store.verify().ok
        environment = lmdb_storage(store)
        with environment._env.begin(write=True) as txn:
            docs = environment._env.open_db(b"search.sessions", txn=txn)
            key, value = next(iter(txn.cursor(db=docs)))
            txn.put(key, value[:4] + b"\x00" * 8, db=docs)
        report = store.verify()
        assert (False, True) == (report.ok, any(p.startswith("search:") for p in report.problems))

    def test_verify_checks_the_message_maps(self, store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """verify compares each message map with the messages holding its term: a map that lost a message, and a
        map left for a block outside the band, are reported."""
        monkeypatch.setattr(formats, "MAP_FROM", 2)
        store.append_many("k", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma alpha")])
        store.append_many("j", [ChatMessage.user("alpha"), ChatMessage.user("gamma")])
        store.catch_up()
        assert store.verify().ok
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            alpha, beta = reader.tid("alpha"), reader.tid("beta")
            assert alpha is not None and beta is not None
            assert reader.term_map(alpha, 0) is not None and reader.term_map(beta, 0) is None
        environment = lmdb_storage(store)

        def put(tid: int, keys: BitMap) -> None:
            with environment._env.begin(write=True) as txn:
                maps = environment._env.open_db(b"search.maps", txn=txn)
                txn.put(block_key(0, tid), map_value(keys), db=maps)

        put(alpha, BitMap([0 << MAP_SHIFT | 1, 1 << MAP_SHIFT | 1]))  # j's message lost
        report = store.verify()
        assert (False, True) == (report.ok, any("message map" in p for p in report.problems))
        store.rebuild_projections(["search"])
        assert store.verify().ok
        put(beta, BitMap([0 << MAP_SHIFT | 1]))  # beta is in one session: its block has no map
        assert not store.verify().ok

    def test_an_index_without_message_maps_is_rebuilt_on_open(self, store_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A store whose index has version 4's stored form (no message maps) rebuilds it when opened: the maps
        are there, and it verifies."""
        monkeypatch.setattr(formats, "MAP_FROM", 2)
        with SessionStore(store_path) as store:
            store.append_many("k", [ChatMessage.user("alpha beta"), ChatMessage.user("alpha")])
            store.append("j", ChatMessage.user("alpha"))
            store.catch_up()
            as_search_code(store, 4, store._search_index._spaces.maps)
        with SessionStore(store_path) as store:
            assert store.stats().checkpoints["search"].code_version == SearchIndex.code_version
            with store._environment.read() as txn:
                reader = store._search_index.reader(txn)
                alpha = reader.tid("alpha")
                assert alpha is not None
                assert list(reader.term_map(alpha, 0) or ()) == [0 << MAP_SHIFT | 1,
                                                                 0 << MAP_SHIFT | 2,
                                                                 1 << MAP_SHIFT | 1]
            assert store.verify().ok and ["j", "k"] == search(store, "alpha")

def append_sessions(store: SessionStore, clock: FakeClock, sessions: list[list[str]]) -> None:
    """Session ``s<n>`` gets the ``n``-th list of texts as user messages, a second of ``clock`` after the one before."""
    for number, texts in enumerate(sessions):
        clock.advance(seconds=1)
        store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])


def run_script_step(store: SessionStore, key: str, texts: list[str], command: str) -> None:
    """One step of a property test's script: ``append`` (or any command on a session with no messages) appends
    ``texts``; ``update_last`` puts the first in place of the last message; ``remove_last``, ``clear``,
    ``redact`` and ``delete`` do that to the session."""
    if command == "append" or not store.load(key):
        store.append_many(key, [ChatMessage.user(text) for text in texts])
    elif command == "remove_last":
        store.remove_last(key)
    elif command == "update_last":
        store.update_last(key, ChatMessage.user(texts[0]))
    elif command == "clear":
        store.clear_messages(key)
    elif command == "redact":
        store.redact(key, reason="test")
    elif command == "delete":
        store.delete_session(key)
    else:
        raise ValueError(f"no such step: {command}")


def as_search_code(store: SessionStore, version: int, *spaces: Any) -> None:
    """Leave ``store``'s search index as its code ``version`` left it: ``spaces`` (that version did not have)
    emptied and its checkpoint at ``version``, so that the next open rebuilds it."""

    def downgrade(txn: WriteTransaction) -> None:
        for space in spaces:
            txn.clear(space)
        store._checkpoints.put(txn, "search", version, store.stats().last_position)

    store._environment.write(downgrade)


# -- search_messages ---------------------------------------------------------------------------


class TestSearchMessages:
    def test_hits(self, store: SessionStore) -> None:
        """Each hit names its session, its index in load(), the message, a score and a marked snippet."""
        store.append_many("trip", [ChatMessage.user("Plan the trip"), ChatMessage.assistant("Lisbon has trams.")])
        [hit] = store.search_messages("lisbon")
        assert SearchHit("trip", 1, ChatMessage.assistant("Lisbon has trams."), hit.score,
                         "[Lisbon] has trams.") == hit
        assert store.load("trip")[hit.index] == hit.message and hit.score > 0

    def test_limit_and_order(self, store: SessionStore, clock: FakeClock) -> None:
        """Best first, at most limit; equal scores put the newer message first."""
        store.append_many("k", [ChatMessage.user("echo")] * 5)
        assert [4, 3] == [hit.index for hit in store.search_messages("echo", 2)]

    def test_no_words(self, store: SessionStore) -> None:
        """A keyword without tokens, or None, finds nothing."""
        store.append("k", ChatMessage.user("x"))
        assert ([], []) == (store.search_messages(None), store.search_messages("?!"))

    def test_planned_once(self, store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """A query is planned once, for its hits and their snippets, whether the index is current or a few events
        behind (read through their batch); the snippets mark the words that counted."""
        plans: list[planning.Plan] = []
        plan = planning.Plan

        def counted(*fields: Any) -> planning.Plan:
            plans.append(plan(*fields))
            return plans[-1]

        store.append_many("trip", [ChatMessage.user("Plan the trip"), ChatMessage.assistant("Lisbon has trams.")])
        store.catch_up()
        monkeypatch.setattr(planning, "Plan", counted)
        for behind in (False, True):
            if behind:
                store.append("trip", ChatMessage.user("Trams in Lisbon, then Porto"))
            plans.clear()
            snippets = {hit.snippet for hit in store.search_messages("lisbon trams")}
            assert ({"[Lisbon] has [trams]."} | ({"[Trams] in [Lisbon], then Porto"} if behind else set()),
                    1) == (snippets, len(plans))

# -- the projection machinery -------------------------------------------------------------------


class TestMachinery:
    def test_read_your_writes(self, store: SessionStore) -> None:
        """A search sees every message committed before it, without catch_up."""
        for n in range(20):
            store.append("k", ChatMessage.user(f"word{n}"))
            assert ["k"] == search(store, f"word{n}")

    def test_appends_do_not_touch_the_index(self, store: SessionStore) -> None:
        """The index is deferred: appends leave its checkpoint, catch_up applies what it missed."""
        store.catch_up()
        before = store.stats().checkpoints["search"].position
        store.append_many("k", [ChatMessage.user("a"), ChatMessage.user("b")])
        assert (before, 2, before + 2) == (store.stats().checkpoints["search"].position, store.catch_up(),
                                           store.stats().checkpoints["search"].position)
        assert 0 == store.catch_up()

    def test_small_lag_is_read_in_memory_a_large_one_written(self, store: SessionStore) -> None:
        """A search applies a few missing events in memory and writes nothing; further behind, it catches up."""
        from eventstore._deferred import OVERLAY_UP_TO

        store.catch_up()
        position = store.stats().checkpoints["search"].position
        store.append("k", ChatMessage.user("alpha"))
        assert (["k"], position) == (search(store, "alpha"), store.stats().checkpoints["search"].position)
        store.append_many("k", [ChatMessage.user("beta")] * OVERLAY_UP_TO)
        assert (["k"], store.stats().last_position) == (search(store, "beta"),
                                                        store.stats().checkpoints["search"].position)

    def test_catch_up_and_rebuild_in_many_batches(self, store: SessionStore, monkeypatch) -> None:
        """With batches of 7 events, catching up and rebuilding fold every event, batch after batch."""
        from eventstore import _deferred

        monkeypatch.setattr(_deferred, "DEFERRED_BATCH", 7)
        for n in range(40):
            store.append(f"s{n % 3}", ChatMessage.user(f"word{n} common"))
        assert 40 == store.catch_up()
        expected = {f"word{n}": [f"s{n % 3}"] for n in range(40)}
        assert expected == {word: search(store, word) for word in expected}
        store.rebuild_projections(["search"])
        assert expected == {word: search(store, word) for word in expected}
        assert 40 == store.stats().checkpoints["search"].position
        assert sorted(search(store, "common")) == ["s0", "s1", "s2"]
        assert store.verify().ok

    def test_rebuild_renumbers_terms_safely(self, store: SessionStore) -> None:
        """A rebuild gives terms new ids; ids remembered from before it are not used after it."""
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.catch_up()
        assert (["a"], ["a"]) == (search(store, "alpha"), search(store, "beta"))  # ids learnt here
        store.redact("a", "test")  # the log now says "[redacted]" where it said alpha and beta
        store.append_many("b", [ChatMessage.user("gamma"), ChatMessage.user("delta")])
        store.rebuild_projections(["search"])  # "gamma" gets the id alpha had, "delta" beta's
        assert ([], [], [], ["b"], ["b"]) == (search(store, "alpha"), search(store, "beta"),
                                              search(store, "redacted"), search(store, "gamma"),
                                              search(store, "delta"))

    def test_a_term_that_comes_back_gets_a_new_id(self, store: SessionStore) -> None:
        """A term that left the dictionary and returns is found under its new id, not one remembered."""
        store.append("a", ChatMessage.user("boomerang"))
        store.catch_up()
        assert ["a"] == search(store, "boomerang")  # its id is learnt here
        store.remove_last("a")
        store.catch_up()  # the term leaves the dictionary
        assert [] == search(store, "boomerang")
        store.append("b", ChatMessage.user("boomerang"))
        store.catch_up()  # and comes back under another id
        assert (["b"], ["b"], True) == (search(store, "boomerang"), search(store, "boomer*"), store.verify().ok)

    def test_terms_no_message_holds_leave_the_dictionary(self, store: SessionStore) -> None:
        """Every kind of removal takes the words only it held out of the term dictionary; shared words stay."""
        store.append_many("a", [ChatMessage.user("shared alpha"), ChatMessage.user("shared beta")])
        store.append_many("b", [ChatMessage.user("shared gamma"), ChatMessage.user("delta")])
        store.append("c", ChatMessage.user("epsilon"))
        store.append("d", ChatMessage.user("zeta"))
        store.remove_last("a")
        store.update_last("b", ChatMessage.user("eta"))
        store.clear_messages("c")
        store.delete_session("d")
        store.catch_up()
        with store._environment.read() as txn:
            terms = sorted(term for term, _ in store._search_index.reader(txn).stored_terms())
        assert ["alpha", "eta", "gamma", "shared"] == terms
        assert store.verify().ok

    def test_verify_reports_terms_no_message_holds(self, store: SessionStore) -> None:
        """A term left in the dictionary is reported, without naming it, and a rebuild clears it."""
        store.append("k", ChatMessage.user("kept"))
        store.catch_up()
        index = store._search_index
        tid = 0xFFFFFF

        def leave_a_term(txn: WriteTransaction) -> None:  # as an index that kept every term it saw did
            txn.put(index._spaces.terms, b"leftover", term_entry("leftover", b"leftover", tid))
            txn.put(index._spaces.names, id_key(tid), b"leftover")
            txn.put(index._spaces.meta, META_NEXT_TID, count_value(tid + 1))  # which gave it an id below its next

        store._environment.write(leave_a_term)
        problems = store.verify().problems
        assert 1 == len(problems) and "1 terms that no current message holds" in problems[0], problems
        assert "redacted" in problems[0] and "vacuum" in problems[0] and "leftover" not in problems[0]
        store.rebuild_projections(["search"])
        assert (True, ["k"]) == (store.verify().ok, search(store, "kept"))

    def test_another_store_object_and_read_only_store(self, store_path: Path, clock: FakeClock) -> None:
        """Writes of one store object are seen by another, and by a read-only one (which cannot catch up)."""
        with SessionStore(store_path, clock=clock) as writer:
            writer.append("k", ChatMessage.user("first"))
            writer.catch_up()
            writer.append("k", ChatMessage.user("second"))
            with SessionStore(store_path, readonly=True) as reader:
                assert (["k"], ["k"]) == (search(reader, "second"), search(reader, "first"))
                assert reader.verify().ok
                with pytest.raises(StoreReadOnly):
                    reader.catch_up()

    def test_rebuild_named_projection_with_progress(self, store: SessionStore) -> None:
        """rebuild_projections(["search"]) rebuilds the index alone and reports progress up to the total."""
        store.append_many("k", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        seen: list[tuple[int, int]] = []
        store.rebuild_projections(["search"], progress=lambda done, total: seen.append((done, total)))
        assert ((2, 2), ["k"]) == (seen[-1], search(store, "beta"))
        with pytest.raises(InvalidArgument):
            store.rebuild_projections(["nope"])
        with pytest.raises(InvalidArgument):
            store.rebuild_projections("search")

    def test_new_code_version_rebuilds_on_open(self, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A changed code version rebuilds the index when the store opens, reporting progress."""
        with SessionStore(store_path) as store:
            store.append_many("k", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
            store.catch_up()
        monkeypatch.setattr(SearchIndex, "code_version", SearchIndex.code_version + 1)
        seen: list[tuple[int, int]] = []
        with SessionStore(store_path, rebuild_progress=lambda done, total: seen.append((done, total))) as store:
            checkpoint = store.stats().checkpoints["search"]
            assert ((2, 2), (SearchIndex.code_version, 2)) == (seen[-1], (checkpoint.code_version,
                                                                          checkpoint.position))
            assert ["k"] == search(store, "alpha")

    def test_catch_up_reports_progress(self, store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """catch_up(progress=...) counts the events it folds, from 0 after the checkpoint up to the total, batch
        after batch; without a lag it reports the total at once."""
        from eventstore import _deferred

        monkeypatch.setattr(_deferred, "DEFERRED_BATCH", 7)
        monkeypatch.setattr(_deferred, "_PROGRESS_EVERY", 1)
        store.append_many("a", [ChatMessage.user("alpha")] * 5)
        store.catch_up()
        for n in range(30):
            store.append(f"s{n % 4}", ChatMessage.user(f"word{n}"))
        seen: list[tuple[int, int]] = []
        assert 30 == store.catch_up(progress=lambda done, total: seen.append((done, total)))
        assert {30} == {total for _, total in seen} and seen[-1] == (30, 30)
        assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[0][0] < 30
        seen.clear()
        assert (0, [(0, 0)]) == (store.catch_up(progress=lambda done, total: seen.append((done, total))), seen)
        with pytest.raises(InvalidArgument):
            store.catch_up(progress="no")  # type: ignore[arg-type]

    def test_index_of_the_previous_format_is_rebuilt_on_open(self, store_path: Path) -> None:
        """A store whose index has the previous stored form (version 2: a term's whole summary in one value,
        after its message count) opens, rebuilds the index, finds what it should and verifies."""
        with SessionStore(store_path) as store:
            store.append_many("k", [ChatMessage.user("alpha beta"), ChatMessage.user("beta")])
            store.append("j", ChatMessage.user("gamma"))
            store.catch_up()
            index = store._search_index

            def previous_format(txn: WriteTransaction) -> None:
                for space in (index._spaces.summary, index._spaces.blocks):
                    txn.clear(space)
                with_terms = dict(index.reader(txn).stored_terms())
                for term, (df, entries) in {"alpha": (1, {1: 255 << 8}), "beta": (2, {1: 200 << 8 | 0x80}),
                                            "gamma": (1, {2: 255 << 8})}.items():
                    raw = summaries.summary_of(entries)
                    assert raw is not None
                    txn.put(index._spaces.summary, id_key(with_terms[term]), df.to_bytes(4, "little") + raw)
                store._checkpoints.put(txn, "search", 2, store.stats().last_position)

            store._environment.write(previous_format)
        seen: list[tuple[int, int]] = []
        with SessionStore(store_path, rebuild_progress=lambda done, total: seen.append((done, total))) as store:
            assert seen and seen[-1][0] == seen[-1][1]
            assert (["k"], ["k"], ["j"]) == (search(store, "alpha"), search(store, "beta"), search(store, "gamma"))
            assert store.verify().ok
            assert SearchIndex.code_version == store.stats().checkpoints["search"].code_version

    def test_read_only_store_refuses_an_index_of_another_version(self, store_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """A read-only store cannot rebuild an index of another code version, and says so."""
        with SessionStore(store_path) as store:
            store.append("k", ChatMessage.user("alpha"))
            store.catch_up()
        monkeypatch.setattr(SearchIndex, "code_version", SearchIndex.code_version + 1)
        with SessionStore(store_path, readonly=True) as reader, pytest.raises(StoreReadOnly):
            search(reader, "alpha")


# -- a rebuilt index answers like the incrementally built one -------------------------------------

COMMAND_KEYS = ["a", "b", "c"]
commands = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(COMMAND_KEYS), texts),
    st.tuples(st.just("remove_last"), st.sampled_from(COMMAND_KEYS)),
    st.tuples(st.just("update_last"), st.sampled_from(COMMAND_KEYS), texts),
    st.tuples(st.just("clear"), st.sampled_from(COMMAND_KEYS)),
    st.tuples(st.just("delete"), st.sampled_from(COMMAND_KEYS)),
    st.tuples(st.just("rename"), st.sampled_from(COMMAND_KEYS)),
    st.tuples(st.just("restore"), st.sampled_from(COMMAND_KEYS), st.integers(0, 30)),
    st.tuples(st.just("redact"), st.sampled_from(COMMAND_KEYS)),
    st.tuples(st.just("search"), queries),
), max_size=40)


def run_commands(store: SessionStore, clock: FakeClock, script: list[tuple[Any, ...]]) -> None:
    for command in script:
        clock.advance(seconds=1)
        name, key = command[0], command[1]
        if name == "append":
            store.append(key, ChatMessage.user(command[2]))
        elif name == "remove_last":
            store.remove_last(key)
        elif name == "update_last":
            store.update_last(key, ChatMessage.assistant(command[2]))
        elif name == "clear":
            store.clear_messages(key)
        elif name == "delete":
            store.delete_session(key)
        elif name == "rename":
            store.set_session_name(key, "renamed")
        elif name == "restore":
            versions = len(store.history(key))
            if versions:
                store.restore(key, version=command[2] % (versions + 1))
        elif name == "redact":
            if store.history(key):
                store.redact(key, "test")
        else:
            store.search(SessionQuery(key))
            store.catch_up()  # the index moves on in steps, as searches and catch_up move it


def answers(store: SessionStore) -> list[list[Any]]:
    found: list[list[Any]] = []
    for keyword in ["apple", "banana fig", "rust*", "gpt-4", "cafe zeta", "ap* date", "redacted", "cherry s"]:
        found.append(keys(store.search(SessionQuery(keyword, 3))))
        found.append([(hit.session_key, hit.index, hit.score) for hit in store.search_messages(keyword, 4)])
    return found


class TestRebuild:
    @settings(max_examples=40)
    @given(commands)
    def test_rebuilt_index_answers_exactly_like_the_incremental_one(self, script: list[tuple[Any, ...]]) -> None:
        """After any history, rebuilding the index from the log changes no answer and no stored entry."""
        with tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False, snapshot_every=4) as store:
                run_commands(store, clock, script)
                incremental = answers(store)  # read through the index and what it lacks, applied in memory
                store.catch_up()
                assert incremental == answers(store)
                with store._environment.read() as txn:
                    stored = store._search_index.dump(txn)
                assert store.verify().ok
                store.rebuild_projections(["search"])
                with store._environment.read() as txn:
                    rebuilt = store._search_index.dump(txn)
                assert (incremental, stored) == (answers(store), rebuilt)
                assert incremental == [list(a) for a in answers_reference(store)]


class TestLoggedFold:
    def test_messages_with_payloads_and_events_without_edits_are_folded_from_the_log(self, store: SessionStore) -> None:
        """A catch-up reads appended contents from the payloads, decodes a message that carries a payload of its
        own in full, and reads renames and state changes from their headers alone: the index is the same."""
        store.append_many("a", [ChatMessage.user("alpha plain"), ChatMessage.user("alpha carried", {"id": 1})])
        store.set_session_name("a", "named")
        store.set_session_state("a", "running", "turn-1")
        store.append_many("a", [ChatMessage.assistant("beta after", {"k": [1]}), ChatMessage.assistant("beta plain")])
        store.append("b", ChatMessage.user("alpha beta"))
        assert 7 == store.catch_up()
        assert store.verify().ok
        found = {(hit.session_key, hit.index) for hit in store.search_messages("alpha carried beta", 10)}
        assert {("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0)} == found
        assert ["a"] == keys(store.search(SessionQuery("carried after", 5)))
        with store._environment.read() as txn:
            caught_up = store._search_index.dump(txn)
        store.rebuild_projections(["search"])
        with store._environment.read() as txn:
            assert caught_up == store._search_index.dump(txn)


class TestBatches:
    @settings(max_examples=40)
    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.lists(texts, min_size=1, max_size=5),
                              st.sampled_from(["append"] * 3 + ["remove_last", "update_last", "clear"])),
                    min_size=1, max_size=25),
           st.sampled_from([formats.BLOCK_BITS, 1]), st.sampled_from([1, 256]), st.sampled_from([1 << 22, 3]),
           st.sampled_from(MAP_BANDS), st.sampled_from([formats.WHOLE_UP_TO, 0, 3]))
    @example([("b", ["apple"], "append"), ("a", ["apple fig", "fig"], "append"), ("b", ["apple apple"], "append"),
              ("a", ["apple"], "append")], 1, 1, 1 << 22, MAP_BANDS[0], 0)
    @example([("a", ["apple fig", "apple", "fig apple", "kiwi"], "append")], 1, 1, 1 << 22, MAP_BANDS[0], 0)
    @example([("a", ["apple fig", "apple"], "append"), ("b", ["fig", "apple fig"], "append"),
              ("c", ["fig apple"], "append"), ("a", ["x"], "remove_last"), ("b", ["fig"], "update_last"),
              ("c", ["apple"], "append"), ("d", ["fig"], "append"), ("c", ["x"], "clear")], 2, 1, 3, (2, 4), 0)
    def test_one_batch_builds_what_an_event_a_batch_builds(self, script: list[tuple[str, list[str], str]],
                                                           block_bits: int, grouped_from: int,
                                                           settle_every: int, map_band: tuple[int, int],
                                                           whole_up_to: int) -> None:
        """Folded in one batch, where a session's appends are indexed a run at a time, a session comes in several
        runs and sessions out of order, the index is the one folded an event a batch, and verify finds it exact
        (small blocks: a term's sessions in several; a small ``settle_every``: postings settled mid-batch; a small
        map band: message maps gained, extended, edited and dropped as blocks cross it; terms stored whole, in
        blocks, or crossing between the two)."""
        from eventstore import _deferred

        saved = formats.BLOCK_BITS, formats.GROUPED_FROM, writer._SETTLE_EVERY, \
            _deferred.DEFERRED_BATCH, formats.MAP_FROM, formats.MAP_UP_TO, formats.WHOLE_UP_TO
        formats.BLOCK_BITS, formats.GROUPED_FROM, writer._SETTLE_EVERY = block_bits, grouped_from, settle_every
        formats.MAP_FROM, formats.MAP_UP_TO = map_band
        formats.WHOLE_UP_TO = whole_up_to
        try:
            with tempfile.TemporaryDirectory() as directory, SessionStore(Path(directory), durable=False) as store:
                for key, batch, command in script:
                    run_script_step(store, key, batch, command)
                store.catch_up()
                assert store.verify().ok
                with store._environment.read() as txn:
                    one_batch = store._search_index.dump(txn)
                _deferred.DEFERRED_BATCH = 1
                store.rebuild_projections(["search"])
                assert store.verify().ok
                with store._environment.read() as txn:
                    assert one_batch == store._search_index.dump(txn)
        finally:
            formats.BLOCK_BITS, formats.GROUPED_FROM, writer._SETTLE_EVERY, \
                _deferred.DEFERRED_BATCH, formats.MAP_FROM, formats.MAP_UP_TO, formats.WHOLE_UP_TO = saved

    def test_a_term_in_hundreds_of_messages_of_one_run(self, store: SessionStore) -> None:
        """A run of 256 appends that all hold a term counts 256 messages for it (more than a byte holds), and the
        session's entry says several messages hold it; a term of one message says one."""
        store.append_many("long", [ChatMessage.user(f"alpha beta{n} beta{n}") for n in range(256)])
        store.append("other", ChatMessage.user("alpha"))
        store.catch_up()
        assert store.verify().ok
        with store._environment.read() as txn:
            reader = store._search_index.reader(txn)
            alpha, beta = reader.tid("alpha"), reader.tid("beta7")
            assert alpha is not None and beta is not None
            summary, single = reader.summary(alpha), reader.summary(beta)
            assert summary is not None and single is not None
            long_id = next(sid for sid, (messages, _) in reader.stored_sessions() if messages == 256)
            assert (257, 1) == (reader.df(alpha), reader.df(beta))
            assert summary.entry_of(long_id) & summaries.MULTI and not single.entry_of(long_id) & summaries.MULTI


def answers_reference(store: SessionStore) -> list[list[Any]]:
    """``answers`` as the plain-Python reference computes them (sessions only; messages from the store)."""
    reference = ReferenceSearch(store)
    found: list[list[Any]] = []
    for keyword in ["apple", "banana fig", "rust*", "gpt-4", "cafe zeta", "ap* date", "redacted", "cherry s"]:
        found.append(reference.search(keyword, 3))
        found.append([(hit.session_key, hit.index, hit.score) for hit in store.search_messages(keyword, 4)])
    return found


# -- against SQLite FTS5 ---------------------------------------------------------------------------------


def fts5_sessions(messages: dict[str, list[str]], keyword: str) -> set[str]:
    """The sessions FTS5 finds for ZeroClaw's OR query (each word quoted, a trailing * kept as FTS5's prefix)."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(session UNINDEXED, content)")
    connection.executemany("INSERT INTO t VALUES (?, ?)",
                           [(key, text) for key, texts_ in messages.items() for text in texts_])
    parts = []
    for raw in keyword.split():
        word = raw.rstrip("*")
        if not tokenize(word):
            continue
        parts.append('"' + word.replace('"', '""') + '"' + ("*" if word != raw else ""))
    if not parts:
        return set()
    query = " OR ".join(parts)
    return {row[0] for row in connection.execute("SELECT DISTINCT session FROM t WHERE t MATCH ?", (query,))}


FTS_WORDS = ["apple", "Apple!", "banana", "gpt-4", "GPT", "café", "Cafe", "rust", "Rusty?", "trust", "don't",
             "naïve", "NAIVE", "x-ray", "zeta", "Ωmega", "ωmega", "straße", "1.5", "v2", "e-mail", "email"]


class TestAgainstFTS5:
    @settings(max_examples=60)
    @given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                           st.lists(st.lists(st.sampled_from(FTS_WORDS), max_size=6).map(" ".join), min_size=1,
                                    max_size=4), min_size=1),
           st.lists(st.lists(st.sampled_from([*FTS_WORDS, "ap*", "rust*", "e*", "gpt-4*", "na*", "zz"]),
                             min_size=1, max_size=3).map(" ".join), min_size=1, max_size=5))
    def test_same_sessions_match(self, messages: dict[str, list[str]], keywords: list[str]) -> None:
        """For OR queries with prefixes and phrases, the matching sessions are the ones FTS5 finds."""
        with tempfile.TemporaryDirectory() as directory, SessionStore(Path(directory), durable=False) as store:
            for key, texts_ in messages.items():
                store.append_many(key, [ChatMessage.user(text) for text in texts_])
            for keyword in keywords:
                assert fts5_sessions(messages, keyword) == set(search(store, keyword, 100)), keyword


# -- the stored forms -------------------------------------------------------------------------------------


class TestStoredForms:
    @given(st.dictionaries(st.integers(0, 2**16 - 1), st.tuples(st.integers(1, 255), st.integers(0, 255)),
                           max_size=40),
           st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255), st.integers(0, 255)), max_size=30),
           st.integers(0, 8))
    def test_summary_edits(self, start: dict[int, tuple[int, int]], edits: list[tuple[int, int, int]],
                           grouped_from: int) -> None:
        """Editing a stored summary as bytes gives what encoding the edited entries afresh gives."""
        original = formats.GROUPED_FROM
        formats.GROUPED_FROM = grouped_from
        try:
            entries = {sid: level << 8 | tag for sid, (level, tag) in start.items()}
            raw = summaries.summary_of(entries)
            for sid, level, tag in edits:
                code = level << 8 | tag if level else 0
                raw = summaries.summary_set(raw, sid, code)
                if code:
                    entries[sid] = code
                else:
                    entries.pop(sid, None)
            summary = None if raw is None else summaries.Block(raw)
            assert (entries or None) == (summary and summary.entries())
            if summary is not None:
                levels = [level for level, _ in summary.groups()]
                grouped = {sid: level for level, members in summary.groups()
                           for sid in struct.unpack(f"<{len(members) // 2}H", members)}
                assert (levels, grouped) == (sorted(set(levels), reverse=True),
                                             {sid: code >> 8 for sid, code in entries.items()})
        finally:
            formats.GROUPED_FROM = original

    @given(st.dictionaries(st.integers(0, 2**16 - 1), st.tuples(st.integers(1, 255), st.integers(0, 255)),
                           max_size=40),
           st.integers(0, 40), st.integers(0, 8))
    def test_summary_extended_by_later_sessions(self, start: dict[int, tuple[int, int]], split: int,
                                                grouped_from: int) -> None:
        """A summary extended by sessions greater than its own, given as columns, is the summary of them all, byte
        for byte (a small block that becomes grouped included)."""
        original = formats.GROUPED_FROM
        formats.GROUPED_FROM = grouped_from
        try:
            entries = {sid: level << 8 | tag for sid, (level, tag) in start.items()}
            sids = sorted(entries)
            raw = summaries.summary_of({sid: entries[sid] for sid in sids[:split]})
            later = sids[split:]
            if later:
                raw = summaries.summary_extend(raw, struct.pack(f"<{len(later)}H", *later),
                                             bytes(entries[sid] >> 8 for sid in later),
                                             bytes(entries[sid] & 0xFF for sid in later))
            assert raw == summaries.summary_of(entries)
        finally:
            formats.GROUPED_FROM = original

    @given(st.lists(st.dictionaries(st.integers(1, 2**25) | st.sampled_from([1, 2, 65535, 65536, 2**24 - 1, 2**24]),
                                    st.sampled_from([7, 9]) | st.integers(1, 255), max_size=12),
                    min_size=1, max_size=70))
    @example([{1: 7, 65535: 7, 65536: 9, 2**24: 7}, {}, {2: 9}])
    def test_chunks(self, messages: list[dict[int, int]]) -> None:
        """A chunk keeps each message's term ids and levels (compared with plain lists), grows, shrinks and widens
        its ids when needed; each term's occurrences and counts are found in place."""
        kept = [sorted(message.items()) for message in messages[:chunks.CHUNK_MESSAGES]]
        encoded = [chunks.chunk_message_of([tid for tid, _ in postings], bytes(level for _, level in postings))
                   for postings in kept]
        raw = None
        for message in encoded[:len(encoded) // 2]:  # one at a time, then the rest at once
            raw = chunks.chunk_append(raw, [message])
        raw = chunks.chunk_append(raw, encoded[len(encoded) // 2:])
        assert chunks.chunk_size(raw) == len(kept)
        assert raw == chunks.chunk_append(None, encoded)  # the same bytes however the messages came

        def stored(chunk: bytes) -> list[list[tuple[int, int]]]:
            return [list(zip(tids, levels)) for tids, levels in
                    (chunks.chunk_message(chunk, index) for index in range(chunks.chunk_size(chunk)))]

        assert stored(raw) == kept
        rest, popped, levels = chunks.chunk_pop(raw)
        assert (list(zip(popped, levels)), rest is None) == (kept[-1], len(kept) == 1)
        remaining = kept[:-1]
        if rest is not None:
            assert stored(rest) == remaining
            assert chunks.chunk_counts(rest) == Counter(tid for postings in remaining for tid, _ in postings)
        for tid in {tid for postings in kept for tid, _ in postings} | {3, 2**25 + 1, 2**32 - 1}:
            expected = [(index, dict(postings)[tid]) for index, postings in enumerate(remaining)
                        if tid in dict(postings)]
            assert (chunks.chunk_occurrences(rest, tid) if rest is not None else []) == expected


def test_index_size_is_counted(store: SessionStore) -> None:
    """The index lives in its own named databases (search.*), which hold entries once caught up."""
    store.append("k", ChatMessage.user("alpha beta"))
    store.catch_up()
    env = lmdb_storage(store)._env
    with env.begin() as txn:
        counts = {name: txn.stat(env.open_db(name.encode(), txn=txn))["entries"]
                  for name in ("search.terms", "search.summary", "search.docs", "search.sessions")}
    assert {"search.terms": 2, "search.summary": 2, "search.docs": 1, "search.sessions": 1} == counts


def test_scores_use_current_counts(store: SessionStore) -> None:
    """idf follows the current messages: removing messages with a word raises its weight."""
    store.append_many("other", [ChatMessage.user(f"word{n}") for n in range(10)])
    store.append_many("k", [ChatMessage.user("alpha")] + [ChatMessage.user("alpha filler")] * 5)
    before = store.search_messages("alpha", 1)[0].score
    for _ in range(5):
        store.remove_last("k")
    after = store.search_messages("alpha", 1)[0].score
    assert after > before and math.isfinite(after)
