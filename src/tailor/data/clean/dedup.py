"""Exact duplicates."""

from __future__ import annotations

import hashlib


class ExactDedup:
    """Drop a record whose compared fields equal those of a record seen before."""

    name = "dedup"
    parallel = False  # needs every earlier record

    def __init__(self, fields: list[str]):
        self.fields = fields
        self.seen: set[bytes] = set()  # 8-byte digests: memory grows with records, not with their size

    def __call__(self, record: dict) -> dict | str:
        key = hashlib.blake2b("\x1f".join(str(record.get(f, "")) for f in self.fields).encode(), digest_size=8).digest()
        if key in self.seen:
            return "exact duplicate"
        self.seen.add(key)
        return record
