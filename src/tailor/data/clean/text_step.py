"""The shape shared by steps that rewrite text fields one string at a time."""

from __future__ import annotations

from collections.abc import Callable

from tailor.data.chat import is_conversation


class TextStep:
    """Apply `fn` to each string field (and each message of a conversation); the step's name is what the spec
    calls it."""

    parallel = True

    def __init__(self, name: str, fields: list[str], fn: Callable[[str], str]):
        self.name, self.fields, self.fn = name, fields, fn

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            value = record.get(field)
            if isinstance(value, str):
                record[field] = self.fn(value)
            elif is_conversation(value):
                record[field] = [{**m, "content": self.fn(m["content"])} for m in value]
        return record
