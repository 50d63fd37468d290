"""Words for the search index: an FTS5 ``unicode61``-compatible tokenizer and the query parser.

Pure functions, no I/O. What lives here:

* ``tokenize(text)``: the index terms of a text, as SQLite FTS5's default
  ``unicode61`` tokenizer (``remove_diacritics 1``) makes them. A token is a run
  of token characters: letters (``L*``), numbers (``N*``) and private-use
  characters (``Co``). Everything else separates tokens: punctuation,
  whitespace, symbols and emoji (``S*``), the underscore, spacing marks. A
  token is case-folded ("Rust" and "RUST" are "rust"), and the diacritic is
  dropped from a Latin letter that carries one ("Café" is "cafe"). The 25
  combining marks that FTS5 treats as diacritics (U+0300 to U+0331, see
  ``DIACRITICS``) are dropped wherever they stand ("cafe\\u0301" is "cafe");
  other combining marks separate tokens, as in FTS5.

  Deliberate choices, checked against FTS5 code point by code point: folding
  is Unicode simple case folding of each character (so "ß" stays "ß" and
  "ſ" is "s", as in FTS5, where Python's ``casefold`` would give "ss"); only
  Basic Multilingual Plane and Deseret characters are folded (FTS5 folds no
  others, and no Cherokee); a
  diacritic is removed only from a Latin letter that has exactly one (so
  "ǖ", Greek "ά" and Arabic "آ" keep theirs, as in FTS5); no compatibility
  decomposition (so "ﬁ" stays "ﬁ" and fullwidth "Ａ" is "ａ", as in FTS5).
  Where the answer still differs it is because Python and SQLite ship
  different Unicode versions (characters assigned after SQLite's tables were
  made are token characters to SQLite but may be symbols to Python).

* ``token_spans(text)``: the same tokens with their places in ``text``, for
  snippets.

* ``term_keys(text)``: the same tokens as UTF-8 bytes, what the index's writer
  looks terms up by (an ASCII text is cut by one ``bytes.translate`` and
  ``split``, without a regular expression); ``term_keys_of(texts)``, those of
  many texts at once, a separator between two texts' (ASCII texts are joined
  and cut together).

* ``parse_query(keyword)``: the words of a search. Whitespace separates
  words; words are OR-ed. A word whose text splits into several tokens
  ("gpt-4", "don't") is a phrase: its tokens must stand next to each other, as
  a quoted word does in FTS5. A trailing ``*`` makes the word's last token a
  prefix. Anything at all is a valid query: punctuation and quotes are
  separators, FTS5 operator words (AND, OR, NOT, NEAR) are plain words, a
  word with no token (an emoji, "???") matches nothing, and no input raises.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

import attrs

__all__ = [
    "BETWEEN_KEYS",
    "DIACRITICS",
    "MAX_TERM_BYTES",
    "QueryWord",
    "fold",
    "parse_query",
    "term_key",
    "term_keys",
    "term_keys_of",
    "token_spans",
    "tokenize",
]

#: The combining marks FTS5's ``remove_diacritics 1`` drops: token characters that vanish.
DIACRITICS = frozenset(
    "\u0300\u0301\u0302\u0303\u0304\u0306\u0307\u0308\u0309\u030a\u030b\u030c\u030f\u0311\u031b"
    "\u0323\u0324\u0325\u0326\u0327\u0328\u032d\u032e\u0330\u0331"
)

#: Terms longer than this (UTF-8 bytes) are stored under a shortened key (see ``term_key``).
MAX_TERM_BYTES = 200

_PRIVATE_USE = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"
_MARKS = "".join(sorted(DIACRITICS))
# On the original text, for spans: diacritic marks belong to the token they stand in.
_RUN_WITH_MARKS = re.compile(f"(?:[^\\W_]|[{_PRIVATE_USE}{_MARKS}])+")
_ASCII_RUN = re.compile(r"[a-z0-9]+")
_ASCII_RUN_ANY_CASE = re.compile(r"[A-Za-z0-9]+")
#: A ``bytes.translate`` table for ASCII text: letters lowercased, digits kept, every other byte a space.
_ASCII_TOKEN_BYTES = bytes(
    code + 32 if 65 <= code <= 90 else code if 97 <= code <= 122 or 48 <= code <= 57 else 32 for code in range(256)
)
#: What ``term_keys_of`` puts between two texts' keys: no text's term (a NUL is no token character).
BETWEEN_KEYS = b"\x00"
#: ``_ASCII_TOKEN_BYTES`` that keeps a NUL, so that the texts joined by ``_BETWEEN_TEXTS`` keep their boundaries.
_ASCII_TOKEN_BYTES_BETWEEN = BETWEEN_KEYS + _ASCII_TOKEN_BYTES[1:]
_BETWEEN_TEXTS = " \x00 "


def _simple_fold(char: str) -> str:
    """Unicode simple case folding of one character, as FTS5 folds it."""
    lower = char.lower()
    if len(lower) == 1:
        folded = lower.casefold()
        # casefold maps a few lowercase letters further (ſ→s, µ→μ, ς→σ), which FTS5 does too;
        # it also maps Cherokee lowercase to uppercase, which FTS5 does not.
        return folded if len(folded) == 1 and not folded.isupper() else lower
    # "İ" lowercases to "i" plus a combining dot, which FTS5 then drops as a diacritic.
    stripped = "".join(c for c in lower if c not in DIACRITICS)
    return stripped if len(stripped) == 1 else char


def _fold_char(char: str) -> str:
    folded = _simple_fold(char)
    decomposed = unicodedata.normalize("NFD", folded)
    if len(decomposed) == 2 and decomposed[1] in DIACRITICS and decomposed[0].isascii() \
            and decomposed[0].isalpha():
        return decomposed[0]
    return folded


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str | None]:
    """``str.translate`` table: every BMP token character that folds to something else, and the marks.
    Built on the first non-ASCII token, not at import."""
    table: dict[int, str | None] = {ord(mark): None for mark in DIACRITICS}
    # FTS5 folds the Basic Multilingual Plane (less the surrogates) and Deseret, and leaves
    # Cherokee alone (its lowercase letters came after SQLite's tables were made).
    folded_codes = (c for c in (*range(0xD800), *range(0xE000, 0x10000), *range(0x10400, 0x10450))
                    if not 0x13A0 <= c <= 0x13FF and not 0xAB70 <= c <= 0xABBF)
    for code in folded_codes:
        char = chr(code)
        if not char.isalnum():
            continue
        folded = _fold_char(char)
        if folded != char:
            table[code] = folded
    return table


def fold(token: str) -> str:
    """A token as the index stores it: case-folded, diacritics of Latin letters removed."""
    if token.isascii():
        return token.lower()
    return token.translate(_fold_table())


def tokenize(text: str) -> list[str]:
    """The index terms of ``text``, in order (repeats kept)."""
    if text.isascii():
        return _ASCII_RUN.findall(text.lower())
    # Folding token by token: str.translate costs per character, and most tokens are ASCII.
    table = _fold_table()
    terms = [run.lower() if run.isascii() else run.translate(table) for run in _RUN_WITH_MARKS.findall(text)]
    return [term for term in terms if term] if "" in terms else terms


def term_keys(text: str) -> list[bytes]:
    """``tokenize(text)`` as UTF-8 bytes: an ASCII text's tokens are its runs of letters and digits, lowercased."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TOKEN_BYTES).split()
    return [term.encode("utf-8") for term in tokenize(text)]


def term_keys_of(texts: list[str]) -> list[bytes]:
    """``term_keys`` of each of ``texts``, one after the other, with ``BETWEEN_KEYS`` between two texts' keys.

    ASCII texts without a NUL are joined and cut at once (one ``translate`` and ``split`` for them all, where a
    text at a time costs the calls' own work again for every text). Whether they have one is asked of them joined
    alone: ``in`` finds a character with ``memchr``, where counting the separators' takes a step a character.
    """
    plain = "".join(texts)
    if plain.isascii() and "\x00" not in plain:
        return _BETWEEN_TEXTS.join(texts).encode("ascii").translate(_ASCII_TOKEN_BYTES_BETWEEN).split()
    keys: list[bytes] = []
    for text in texts:
        keys += term_keys(text)
        keys.append(BETWEEN_KEYS)
    del keys[-1:]
    return keys


def token_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, term)`` for each token of ``text``, where ``text[start:end]`` is its source."""
    pattern = _ASCII_RUN_ANY_CASE if text.isascii() else _RUN_WITH_MARKS
    for match in pattern.finditer(text):
        term = fold(match.group())
        if term:
            yield match.start(), match.end(), term


def term_key(term: str) -> bytes:
    """The bytes that name ``term`` in the index: its UTF-8, or for a very long term a prefix and a digest.

    Keeps every key within LMDB's limit while keeping keys of distinct terms
    distinct, and keeps a term's first ``MAX_TERM_BYTES`` bytes at the front so
    that prefix queries can walk the keys.
    """
    raw = term.encode("utf-8")
    if len(raw) <= MAX_TERM_BYTES:
        return raw
    import hashlib

    # \xff never occurs in UTF-8, so a shortened key never equals a real term.
    return raw[:MAX_TERM_BYTES] + b"\xff" + hashlib.sha256(raw).digest()[:16]


@attrs.frozen
class QueryWord:
    """One whitespace-separated word of a query.

    Attributes:
        tokens: its terms; several make a phrase (they must be adjacent, in order).
        prefix: the last token matches any term that starts with it.
    """

    tokens: tuple[str, ...]
    prefix: bool = False

    @property
    def is_phrase(self) -> bool:
        return len(self.tokens) > 1


def parse_query(keyword: str | None) -> tuple[QueryWord, ...]:
    """The distinct words of ``keyword``, in order; empty when it has no token at all."""
    if not keyword:
        return ()
    words: dict[QueryWord, None] = {}
    for raw in keyword.split():
        stripped = raw.rstrip("*")
        tokens = tuple(tokenize(stripped))
        if tokens:
            words[QueryWord(tokens, prefix=len(stripped) < len(raw))] = None
    return tuple(words)
