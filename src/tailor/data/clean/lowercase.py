"""Lowercasing (classic pipelines)."""

from __future__ import annotations

from tailor.data.clean.text_step import TextStep


def lowercase_step(fields: list[str]) -> TextStep:
    """str.lower on every text field."""
    return TextStep("lowercase", fields, str.lower)
