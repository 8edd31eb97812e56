"""Mojibake and broken Unicode, repaired by ftfy."""

from __future__ import annotations

from tailor.data.clean.text_step import TextStep


def fix_text_step(fields: list[str]) -> TextStep:
    """ftfy.fix_text on every text field."""
    import ftfy

    return TextStep("fix_text", fields, ftfy.fix_text)
