"""Spelling correction with symspellpy's bundled English frequency dictionary. Code is never touched:
fenced and inline code, and lines that look like code, pass through unchanged."""

from __future__ import annotations

import re
from importlib import resources

_FENCE = re.compile(r"(```.*?```|`[^`\n]*`)", re.DOTALL)
_CODE_LINE = re.compile(r"[{};=<>\[\]()]|^\s{4,}\S|\b(def|class|import|return|function|var|const)\b|::|->|\w\.\w+\(")
_WORD = re.compile(r"\b[a-z]+\b")


class Spelling:
    """Replace lowercase words missing from the dictionary by their closest frequent word."""

    name = "spelling"
    parallel = True

    def __init__(self, fields: list[str], max_edit_distance: int = 2, min_length: int = 4):
        from symspellpy import SymSpell

        self.fields, self.min_length, self.distance = fields, min_length, max_edit_distance
        self.sym = SymSpell(max_dictionary_edit_distance=max_edit_distance)
        path = resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
        self.sym.load_dictionary(str(path), term_index=0, count_index=1)
        self.cache: dict[str, str] = {}

    def word(self, w: str) -> str:
        if len(w) < self.min_length or w in self.sym.words:
            return w
        if w not in self.cache:
            from symspellpy import Verbosity

            hits = self.sym.lookup(w, Verbosity.TOP, max_edit_distance=self.distance)
            self.cache[w] = hits[0].term if hits else w
        return self.cache[w]

    def text(self, text: str) -> str:
        parts = _FENCE.split(text)
        for i in range(0, len(parts), 2):  # odd parts are code spans
            parts[i] = "\n".join(line if _CODE_LINE.search(line) else _WORD.sub(lambda m: self.word(m.group(0)), line)
                                 for line in parts[i].split("\n"))
        return "".join(parts)

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            if isinstance(record.get(field), str):
                record[field] = self.text(record[field])
        return record
