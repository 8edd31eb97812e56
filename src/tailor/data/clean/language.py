"""Language filter with py3langid (a bundled model; no download)."""

from __future__ import annotations

from collections import Counter


class Language:
    """Keep records whose detected language is in `keep`; texts shorter than min_chars are kept undetected."""

    name = "language"
    parallel = True

    def __init__(self, fields: list[str], keep: list[str], min_chars: int = 20):
        import py3langid

        self.identify = py3langid.classify
        self.fields, self.keep, self.min_chars = fields, set(keep), min_chars
        self.counts: Counter = Counter()

    def __call__(self, record: dict) -> dict | str:
        text = "\n".join(record[f] for f in self.fields if isinstance(record.get(f), str))
        if len(text.strip()) < self.min_chars:
            self.counts["too short to detect"] += 1
            return record
        lang, _score = self.identify(text)
        self.counts[f"detected {lang}"] += 1
        return record if lang in self.keep else f"language {lang}"
