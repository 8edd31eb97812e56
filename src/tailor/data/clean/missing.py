"""Missing values: drop the record, or fill the field."""

from __future__ import annotations


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value != value  # NaN


class Missing:
    """Fill the configured fields where they are missing; drop records missing any of the others."""

    name = "missing"
    parallel = True

    def __init__(self, drop: list[str], fill: dict[str, str]):
        self.drop, self.fill = [f for f in drop if f not in fill], fill

    def __call__(self, record: dict) -> dict | str:
        for field, value in self.fill.items():
            if _empty(record.get(field)):
                record[field] = value
        for field in self.drop:
            if _empty(record.get(field)):
                return f"missing {field}"
        return record
