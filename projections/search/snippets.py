"""Where query words match a text: phrase matching and the snippet around the first match. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from .tokenizer import QueryWord, token_spans

__all__ = ["phrase_in", "matched_tokens", "snippet"]


def phrase_in(terms: Sequence[str], phrase: Sequence[str], prefix: bool) -> bool:
    """Whether ``phrase`` occurs in the token sequence ``terms`` (its last token a prefix if ``prefix``)."""
    size = len(phrase)
    if not size:
        return False
    head, last = list(phrase[:-1]), phrase[-1]
    for start in range(len(terms) - size + 1):
        if size > 1 and (terms[start] != head[0] or terms[start:start + size - 1] != head):
            continue
        candidate = terms[start + size - 1]
        if candidate == last or (prefix and candidate.startswith(last)):
            return True
    return False


def matched_tokens(terms: list[str], words: Sequence[QueryWord]) -> set[int]:
    """Indexes of the tokens of ``terms`` that a word of the query matches."""
    hits: set[int] = set()
    for index in range(len(terms)):
        for word in words:
            size = len(word.tokens)
            if index + 1 >= size and phrase_in(terms[index + 1 - size:index + 1], word.tokens, word.prefix):
                hits.update(range(index + 1 - size, index + 1))
    return hits


def snippet(text: str, words: Sequence[QueryWord], width: int = 12, mark: tuple[str, str] = ("[", "]")) -> str:
    """A short piece of ``text`` around its first match of ``words``, every matched token marked.

    Args:
        text: the message content.
        words: the parsed query.
        width: how many tokens to show.
        mark: what goes before and after a matched token.

    Returns:
        The excerpt, with "…" where text was cut. Reads only as far into a
        long text as the excerpt needs.
    """
    longest = max((len(word.tokens) for word in words), default=1)
    spans: list[tuple[int, int, str]] = []
    terms: list[str] = []
    first = None
    for span in token_spans(text):
        spans.append(span)
        terms.append(span[2])
        if first is None:
            tail = terms[-longest:]
            found = matched_tokens(tail, words)
            if found:
                first = len(terms) - len(tail) + min(found)
        elif len(spans) >= first + width + longest:
            break
    if not spans:
        return " ".join(text[:80].split())
    complete = len(spans) < first + width + longest if first is not None else True
    first = first or 0
    begin = max(0, min(first - width // 3, len(spans) - width))
    end = min(len(spans), begin + width)
    hits = matched_tokens(terms[begin:end], words)
    pieces = []
    cursor = 0 if begin == 0 else spans[begin][0]
    for index in range(begin, end):
        start, stop, _ = spans[index]
        pieces.append(text[cursor:start])
        token = text[start:stop]
        pieces.append(f"{mark[0]}{token}{mark[1]}" if index - begin in hits else token)
        cursor = stop
    last = complete and end == len(spans)
    if last:
        pieces.append(text[cursor:])
    body = " ".join("".join(pieces).split())
    return ("…" if begin > 0 else "") + body + ("" if last else "…")
