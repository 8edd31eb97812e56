"""Heuristic quality filters in the spirit of Gopher (Rae et al. 2021) and datatrove's filters."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+")
_ALPHA = re.compile(r"[^\W\d_]")
_GOPHER_STOP = {"the", "be", "to", "of", "and", "that", "have", "with"}


class Quality:
    """Drop records whose text fails a rule; the reason names the rule and the measured value."""

    name = "quality"
    parallel = True

    def __init__(self, fields: list[str], min_chars: int = 1, max_chars: int | None = None, min_words: int = 0,
                 max_words: int | None = None, max_symbol_ratio: float | None = 0.3, max_digit_ratio: float | None = 0.5,
                 max_duplicate_line_ratio: float | None = 0.3, max_top_ngram_ratio: float | None = 0.2,
                 gopher: bool = False):
        self.fields = fields
        self.min_chars, self.max_chars, self.min_words, self.max_words = min_chars, max_chars, min_words, max_words
        self.symbol, self.digit = max_symbol_ratio, max_digit_ratio
        self.dup_lines, self.top_ngram, self.gopher = max_duplicate_line_ratio, max_top_ngram_ratio, gopher

    def check(self, text: str) -> str | None:
        """The first failed rule as a drop reason, or None."""
        n = len(text)
        if n < self.min_chars:
            return "too short (chars)"
        if self.max_chars is not None and n > self.max_chars:
            return "too long (chars)"
        words = _WORD.findall(text)
        if len(words) < self.min_words:
            return "too few words"
        if self.max_words is not None and len(words) > self.max_words:
            return "too many words"
        non_space = sum(not c.isspace() for c in text) or 1
        if self.symbol is not None and sum(not c.isalnum() and not c.isspace() for c in text) / non_space > self.symbol:
            return "symbol ratio"
        if self.digit is not None and sum(c.isdigit() for c in text) / non_space > self.digit:
            return "digit ratio"
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if self.dup_lines is not None and len(lines) > 1 and 1 - len(set(lines)) / len(lines) > self.dup_lines:
            return "repeated lines"
        if self.top_ngram is not None and len(words) >= 10:
            grams = Counter(zip(words, words[1:]))
            (a, b), count = grams.most_common(1)[0]
            if count > 1 and count * (len(a) + len(b)) / max(sum(map(len, words)), 1) > self.top_ngram:
                return "repeated n-grams"
        return self._gopher(text, words, lines) if self.gopher else None

    def _gopher(self, text: str, words: list[str], lines: list[str]) -> str | None:
        if not words:
            return "gopher: no words"
        mean = sum(map(len, words)) / len(words)
        if not 3 <= mean <= 10:
            return "gopher: mean word length"
        tokens = text.split()
        if sum(bool(_ALPHA.search(t)) for t in tokens) / len(tokens) < 0.8:
            return "gopher: words without letters"
        if lines and sum(line.startswith(("•", "-", "*", "‣", "◦")) for line in lines) / len(lines) > 0.9:
            return "gopher: bullet lines"
        if lines and sum(line.endswith(("...", "…")) for line in lines) / len(lines) > 0.3:
            return "gopher: ellipsis lines"
        if len({w.lower() for w in words} & _GOPHER_STOP) < 2:
            return "gopher: fewer than 2 stop words"
        return None

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            if isinstance(record.get(field), str):
                reason = self.check(record[field])
                if reason:
                    return reason if len(self.fields) == 1 else f"{reason} in {field}"
        return record
