"""The shape shared by steps that rewrite text fields one string at a time."""

from __future__ import annotations

from collections.abc import Callable


class TextStep:
    """Apply `fn` to each string field; the step's name is what the spec calls it."""

    parallel = True

    def __init__(self, name: str, fields: list[str], fn: Callable[[str], str]):
        self.name, self.fields, self.fn = name, fields, fn

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            if isinstance(record.get(field), str):
                record[field] = self.fn(record[field])
        return record
