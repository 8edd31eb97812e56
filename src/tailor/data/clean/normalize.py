"""Unicode normal form and whitespace; optionally numbers, dates and units in one format."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from tailor.data.chat import is_conversation

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:,\d{3})+)(?![\d,]|\.\d*,)")
_MONTHS = {m: i for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], 1) for m in names}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4})\b")
_MONTH_FIRST = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE)
_DAY_FIRST = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.IGNORECASE)
_UNITS = {"kg": ("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), "g": ("g", "gram", "grams"),
          "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
          "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
          "m": ("m", "meter", "meters", "metre", "metres"), "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres"),
          "l": ("l", "liter", "liters", "litre", "litres"), "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres"),
          "W": ("w", "watt", "watts"), "V": ("v", "volt", "volts"), "lb": ("lb", "lbs", "pound", "pounds"),
          "in": ("in", "inch", "inches")}
_UNIT_OF = {alias: unit for unit, aliases in _UNITS.items() for alias in aliases}
_QUANTITY = re.compile(rf"\b(\d+(?:\.\d+)?)\s*({'|'.join(sorted(_UNIT_OF, key=len, reverse=True))})(?![\w])", re.IGNORECASE)


def _iso(y: int, m: int, d: int, original: str) -> str:
    try:
        return date(y, m, d).isoformat()
    except ValueError:  # not a real date: leave the text as it was
        return original


class Normalize:
    """Bring text fields to one Unicode form and tidy their whitespace; drop ones left empty."""

    name = "normalize"
    parallel = True

    def __init__(self, fields: list[str], unicode: str = "NFKC", whitespace: bool = True, drop_empty: bool = True,
                 numbers: bool = False, dates: str = "none", units: bool = False):
        self.fields, self.form, self.whitespace, self.drop_empty = fields, unicode, whitespace, drop_empty
        self.numbers, self.dates, self.units = numbers, dates, units

    def text(self, value: str) -> str:
        if self.form != "none":
            value = unicodedata.normalize(self.form, value)
        if self.whitespace:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
            value = "\n".join(_SPACES.sub(" ", line).strip() for line in value.split("\n"))
            value = _BLANKS.sub("\n\n", value).strip()
        if self.numbers:
            value = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), value)
        if self.dates != "none":
            value = self._dates(value)
        if self.units:
            value = _QUANTITY.sub(lambda m: f"{m.group(1)} {_UNIT_OF[m.group(2).lower()]}", value)
        return value

    def _dates(self, value: str) -> str:
        def numeric(m: re.Match) -> str:
            a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
            month, day = (a, b) if self.dates == "mdy" else (b, a)
            return _iso(y, month, day, m.group(0))
        value = _NUMERIC_DATE.sub(numeric, value)
        value = _MONTH_FIRST.sub(lambda m: _iso(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)), m.group(0)), value)
        return _DAY_FIRST.sub(lambda m: _iso(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)), m.group(0)), value)

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            if isinstance(record.get(field), str):
                record[field] = self.text(record[field])
                if self.drop_empty and not record[field]:
                    return f"empty {field}"
            elif is_conversation(record.get(field)):
                record[field] = [{**m, "content": self.text(m["content"])} for m in record[field]]
                empty = [i for i, m in enumerate(record[field]) if m["role"] == "assistant" and not m["content"]]
                if self.drop_empty and empty:
                    return f"empty {field} assistant turn"
        return record
