"""An incremental BM25 index over documents identified by key, for keyword memory search.

The index holds only term frequencies and lengths, never the text, so it can keep covering
documents whose text has been moved out of RAM (evicted memory entries): a search still finds
them and the caller pages them back in.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+", re.UNICODE)


def terms(text: str) -> list[str]:
    """The lower-cased word tokens of ``text``, in order."""
    return [t.casefold() for t in _TOKEN.findall(text)]


class KeywordIndex:
    """BM25 (Okapi; k1, b) over keyed documents, updated one document at a time."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75):
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[str, int]] = {}  # term -> {doc key: term frequency}
        self._doc_terms: dict[str, Counter[str]] = {}
        self._doc_len: dict[str, int] = {}
        self._total_len = 0

    def __contains__(self, key: object) -> bool:
        return key in self._doc_len

    def __len__(self) -> int:
        return len(self._doc_len)

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key``, replacing what ``key`` held before."""
        self.remove(key)
        counts = Counter(terms(text))
        self._doc_terms[key] = counts
        length = sum(counts.values())
        self._doc_len[key] = length
        self._total_len += length
        for term, tf in counts.items():
            self._postings.setdefault(term, {})[key] = tf

    def remove(self, key: str) -> None:
        """Drop ``key`` from the index; unknown keys are ignored."""
        counts = self._doc_terms.pop(key, None)
        if counts is None:
            return
        self._total_len -= self._doc_len.pop(key)
        for term in counts:
            posting = self._postings[term]
            del posting[key]
            if not posting:
                del self._postings[term]

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` (key, score) pairs with a positive BM25 score, best first."""
        n_docs = len(self._doc_len)
        if not n_docs or limit < 1:
            return []
        avg_len = self._total_len / n_docs or 1.0
        scores: dict[str, float] = {}
        for term in set(terms(query)):
            posting = self._postings.get(term)
            if not posting:
                continue
            # The "+1" form of IDF stays positive for terms found in most documents.
            idf = math.log(1.0 + (n_docs - len(posting) + 0.5) / (len(posting) + 0.5))
            for key, tf in posting.items():
                norm = self.k1 * (1.0 - self.b + self.b * self._doc_len[key] / avg_len)
                scores[key] = scores.get(key, 0.0) + idf * tf * (self.k1 + 1.0) / (tf + norm)
        # Ties go to the key order so results are deterministic.
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:limit]
