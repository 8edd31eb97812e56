"""What a source yields: records (dicts), or a Reject for a malformed input the user must hear about."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_KEY, SPLIT_KEY = "_source", "_split"  # record keys that carry provenance, not data
SOURCE_INDEX_KEY = "_source_index"          # which data.sources entry; dropped before the splits are written


@dataclass
class Reject:
    """A malformed input: where it is (file:line), why, and its raw text when there is one."""

    where: str
    reason: str
    raw: str | None = None

    def message(self) -> str:
        return f"{self.where}: {self.reason}"
