"""Mojibake and broken Unicode, repaired by ftfy."""

from __future__ import annotations

from tailor.data.clean.text_step import TextStep


class FixText(TextStep):
    """ftfy.fix_text on every text field."""

    def __init__(self, fields: list[str]):
        import ftfy

        super().__init__("fix_text", fields, ftfy.fix_text)
