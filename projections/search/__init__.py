"""The search index: ranked keyword search over current messages, a deferred read model.

One module per concern, top to bottom:

* ``index``: ``SearchIndex``, the read model (folds events, answers queries);
* ``queries``: query execution and ranking; ``planning``: a query resolved
  against the index, within the bounds that keep it cheap;
* ``verification``: ``check`` against the log, and ``dump``;
* ``writer``: a batch of changes in memory; ``reader``: the stored state
  through one transaction;
* ``formats``: the stored forms, pure bytes in and out, one form a module;
* ``scoring`` (BM25, the shared bound check, the order of results),
  ``snippets`` and ``tokenizer``: pure, standard library and attrs only.

The names below are loaded on first use, so that importing the pure
``projections.search.tokenizer`` loads no storage code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .index import SearchIndex
    from .scoring import K1, LEVELS, PIVOT, B, idf, impact, level_weight, term_weight
    from .snippets import phrase_in, snippet
    from .tokenizer import QueryWord, parse_query, tokenize

__all__ = ["B", "K1", "LEVELS", "PIVOT", "QueryWord", "SearchIndex", "idf", "impact", "level_weight", "parse_query",
           "phrase_in", "snippet", "term_weight", "tokenize"]

_HOMES = {
    "SearchIndex": "index",
    **dict.fromkeys(("B", "K1", "LEVELS", "PIVOT", "idf", "impact", "level_weight", "term_weight"), "scoring"),
    **dict.fromkeys(("phrase_in", "snippet"), "snippets"),
    **dict.fromkeys(("QueryWord", "parse_query", "tokenize"), "tokenizer"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
