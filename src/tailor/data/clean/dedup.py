"""Exact duplicates."""

from __future__ import annotations

import hashlib


class ExactDedup:
    """Drop a record whose compared fields equal those of a record seen before."""

    name = "dedup"

    def __init__(self, fields: list[str]):
        self.fields = fields
        self.seen: dict[bytes, str] = {}

    def __call__(self, record: dict) -> dict | str:
        key = hashlib.blake2b("\x1f".join(str(record.get(f, "")) for f in self.fields).encode(), digest_size=16).digest()
        if key in self.seen:
            return "exact duplicate"
        self.seen[key] = record.get("_source", "")
        return record
