"""Lowercasing (classic pipelines)."""

from __future__ import annotations

from tailor.data.clean.text_step import TextStep


class Lowercase(TextStep):
    """str.lower on every text field."""

    def __init__(self, fields: list[str]):
        super().__init__("lowercase", fields, str.lower)
