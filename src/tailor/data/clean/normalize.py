"""Unicode normal form and whitespace."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


class Normalize:
    """Bring text fields to one Unicode form and tidy their whitespace; drop ones left empty."""

    name = "normalize"

    def __init__(self, fields: list[str], form: str = "NFKC", whitespace: bool = True, drop_empty: bool = True):
        self.fields, self.form, self.whitespace, self.drop_empty = fields, form, whitespace, drop_empty

    def text(self, value: str) -> str:
        if self.form != "none":
            value = unicodedata.normalize(self.form, value)
        if self.whitespace:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
            value = "\n".join(_SPACES.sub(" ", line).strip() for line in value.split("\n"))
            value = _BLANKS.sub("\n\n", value).strip()
        return value

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            if isinstance(record.get(field), str):
                record[field] = self.text(record[field])
                if self.drop_empty and not record[field]:
                    return f"empty {field}"
        return record
