"""Turning a person's query into search terms, and marking those terms in a cue's text.

Both backends use this, so a query is validated, split and highlighted the same way whichever
one answers. A query is user text, never query syntax: it is split on whitespace into terms,
and each term is matched as a literal, case-insensitive substring. Substring matching is what
makes Korean searchable by part of a word (``벡터`` inside ``고유벡터를``); English gets a light
suffix stripping on top so that ``eigenvalues`` still finds ``eigenvalue``.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.errors import InvalidInput

logger = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 500
"""Longer queries are refused rather than truncated, so a result never silently ignores text."""
MAX_TERMS = 10
"""Words beyond this many are ignored: each one costs a scan, and people rarely type more."""
SHORTEST_INDEXED_TERM = 3
"""Trigram indexes cannot serve shorter terms; the backends scan for those instead."""
MAX_PER_PAGE = 100
MAX_CUES_PER_VIDEO = 20
MAX_SUGGESTIONS = 100
MAX_RESULT_WINDOW = 10_000
"""How deep pagination may reach, the same limit OpenSearch sets by default."""

# Longest first, so "processes" loses "es" rather than only "s".
_SUFFIXES = ("ing", "ies", "es", "ed", "s")
_MIN_STEM = 4
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class Term:
    """One word of a query, and the substring a backend looks for."""

    word: str
    """The word as typed, lower-cased."""
    needle: str
    """What must occur in the text: the word, or its stem for an English word with a suffix."""

    @property
    def stemmed(self) -> bool:
        return self.needle != self.word

    @property
    def indexable(self) -> bool:
        """True when a trigram index can find the needle (three characters or more)."""
        return len(self.needle) >= SHORTEST_INDEXED_TERM


def clean_text(text: str) -> str:
    """``text`` in NFC with control characters and lone surrogates removed.

    Korean typed on some systems arrives decomposed into jamo, which would never match the
    composed syllables of a subtitle file; PostgreSQL refuses NUL characters outright.
    """
    text = unicodedata.normalize("NFC", text)
    return "".join(char for char in text if _keep(char))


def _keep(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cs":
        return False
    return category != "Cc" or char in "\t\n\r"


def parse_query(query: str) -> list[Term]:
    """Split a query into at most :data:`MAX_TERMS` distinct terms.

    Raises:
        InvalidInput: ``search.empty_query`` for an empty or blank query,
            ``search.query_too_long`` for one over :data:`MAX_QUERY_LENGTH` characters.
    """
    stripped = query.strip()
    if len(stripped) > MAX_QUERY_LENGTH:
        raise InvalidInput(
            f"The search query has {len(stripped)} characters; use at most {MAX_QUERY_LENGTH}.",
            code="search.query_too_long",
        )
    words = list(dict.fromkeys(clean_text(stripped).lower().split()))
    if not words:
        raise InvalidInput("The search query is empty; type at least one word.", code="search.empty_query")
    if len(words) > MAX_TERMS:
        logger.debug("A query of %d words is cut to its first %d.", len(words), MAX_TERMS)
    return [Term(word=word, needle=stem(word)) for word in words[:MAX_TERMS]]


def text_words(text: str) -> set[str]:
    """The distinct lower-cased words of a cleaned text, split on whitespace as queries are.

    A term never contains whitespace, so it occurs in ``text`` exactly when it occurs in one
    of these words: the database search looks terms up among a video's words, not its cues.
    """
    return set(text.lower().split())


def stem(word: str) -> str:
    """Strip one common English suffix from an ASCII word, keeping at least four letters.

    Deliberately crude: the stem is matched as a substring, so it only has to be a prefix of
    the other forms of the word, not a dictionary form.
    """
    if not (word.isascii() and word.isalpha()):
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


def fts5_phrase(needle: str) -> str:
    """A needle as an FTS5 string literal, so no character of it is read as query syntax."""
    return '"' + needle.replace('"', '""') + '"'


LIKE_ESCAPE = "\\"
"""The escape character of every LIKE pattern built here."""


def escape_like(needle: str) -> str:
    """``needle`` with LIKE's wildcards and the escape character itself escaped."""
    return needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(needle: str) -> str:
    """A LIKE pattern matching ``needle`` anywhere; pass ``escape=LIKE_ESCAPE`` with it."""
    return f"%{escape_like(needle)}%"


def highlight(text: str, terms: list[Term]) -> str:
    """``text`` HTML-escaped, with every case-insensitive occurrence of a term in ``<mark>``.

    A stemmed needle's mark runs on to the end of its word, so ``eigenvalues`` marks the whole
    word rather than ``eigenvalu``.
    """
    spans = _merge(span for term in terms for span in _find(text, term))
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts.append(html.escape(text[position:start]))
        parts.append(f"<mark>{html.escape(text[start:end])}</mark>")
        position = end
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _find(text: str, term: Term) -> list[tuple[int, int]]:
    spans = []
    for match in re.finditer(re.escape(term.needle), text, re.IGNORECASE):
        end = match.end()
        if term.stemmed:
            while end < len(text) and _WORD_CHAR.match(text[end]):
                end += 1
        spans.append((match.start(), end))
    return spans


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def check_page(page: int, per_page: int, cues_per_video: int) -> None:
    """Refuse a page request that no backend should run.

    Raises:
        InvalidInput: ``search.invalid_page``, ``search.invalid_per_page``,
            ``search.invalid_cues_per_video`` or ``search.page_too_deep``.
    """
    if page < 1:
        raise InvalidInput(f"The page is {page}; pages start at 1.", code="search.invalid_page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"per_page is {per_page}; use 1 to {MAX_PER_PAGE}.",
            code="search.invalid_per_page",
        )
    if not 0 <= cues_per_video <= MAX_CUES_PER_VIDEO:
        raise InvalidInput(
            f"cues_per_video is {cues_per_video}; use 0 to {MAX_CUES_PER_VIDEO}.",
            code="search.invalid_cues_per_video",
        )
    if page * per_page > MAX_RESULT_WINDOW:
        raise InvalidInput(
            f"Results beyond the first {MAX_RESULT_WINDOW} cannot be paged to; narrow the search.",
            code="search.page_too_deep",
        )


def suggestion_prefix(prefix: str) -> str:
    """``prefix`` cleaned and lower-cased, the form both backends look titles up by.

    Raises:
        InvalidInput: ``search.query_too_long`` for a prefix over :data:`MAX_QUERY_LENGTH` characters.
    """
    text = clean_text(prefix).strip().lower()
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInput(
            f"The prefix has {len(text)} characters; use at most {MAX_QUERY_LENGTH}.",
            code="search.query_too_long",
        )
    return text


def pick_suggestions(candidates: Iterable[tuple[str, uuid.UUID]], text: str, limit: int) -> list[tuple[str, uuid.UUID]]:
    """The first ``limit`` candidate titles with a word starting with ``text``, one per spelling.

    Candidates arrive best first; a title that only contains ``text`` inside a word is dropped,
    and so is a title already picked in another letter case.
    """
    word_start = re.compile(r"(?<!\w)" + re.escape(text), re.IGNORECASE)
    seen: set[str] = set()
    found: list[tuple[str, uuid.UUID]] = []
    for title, video_id in candidates:
        key = title.casefold()
        if key in seen or not word_start.search(title):
            continue
        seen.add(key)
        found.append((title, video_id))
        if len(found) == limit:
            break
    return found


def suggestion_rank(title: str, text: str) -> int:
    """0 when ``title`` starts with ``text``, 1 when a later word after a space does, else 2."""
    folded = title.lower()
    if folded.startswith(text):
        return 0
    return 1 if f" {text}" in folded else 2
