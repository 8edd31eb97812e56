"""How label fields are read, below every stage: the ignored-target index, scores, lists and words.

Training, evaluation, drift and serving read labels through these, so a record's label means the
same thing everywhere.
"""

from __future__ import annotations

import json

from tailor.errors import TailorError

IGNORE = -100


def where(record: dict) -> str:
    return str(record.get("source") or record.get("_source") or "a record")


def parse_score(value, record: dict, field: str) -> float:
    """A record's score as a float; an error naming the record otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TailorError(f"{where(record)}: field {field!r} (data.fields.output) is {value!r}, "
                          "not a number; a score output needs numbers") from None


def as_list(value) -> list | None:
    """A list field: a list, or the JSON text the data stage stores lists as; None for anything else."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def words_of(value, record: dict, field: str) -> list[str]:
    """The words of a token-label input: a list of words, or a text split on whitespace."""
    words = as_list(value)
    if words is not None:
        return [str(w) for w in words]
    if isinstance(value, str):
        return value.split()
    raise TailorError(f"{where(record)}: field {field!r} should be a list of words or a text, got {type(value).__name__}")
