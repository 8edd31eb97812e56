"""What the datatrove comparisons share: a word tokenizer in datatrove's interface that splits as ours does.

datatrove's default English word tokenizer is spaCy's (its `WhitespaceTokenizer` is spaCy's
multilingual one too), far slower than a regular expression; comparing our regex splitting with it
would time the tokenizers, not the steps.
"""

from __future__ import annotations

import re


def datatrove_tokenizer(pattern: str = r"\S+"):
    """A datatrove WordTokenizer whose words are the matches of pattern (default: split on whitespace)."""
    from datatrove.utils.word_tokenizers import WordTokenizer

    words = re.compile(pattern)

    class RegexTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return words.findall(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return text.splitlines()

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in words.finditer(text)]

    return RegexTokenizer()
