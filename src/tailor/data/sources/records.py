"""What a source yields: records (dicts), or a Reject for a malformed input the user must hear about."""

from __future__ import annotations

from dataclasses import dataclass

from tailor.artifacts import RESERVED_PREFIX, SOURCE_COLUMN

SOURCE_KEY = SOURCE_COLUMN                       # provenance, written to the splits as it is
SPLIT_KEY = RESERVED_PREFIX + "split"            # a source's fixed split; dropped before the splits are written
SOURCE_INDEX_KEY = RESERVED_PREFIX + "source_index"  # which data.sources entry; dropped likewise
LABEL_STUDIO_ID = RESERVED_PREFIX + "label_studio_id"  # the task id of a record read from a Label Studio export


@dataclass
class Reject:
    """A malformed input: where it is (file:line), why, and its raw text when there is one."""

    where: str
    reason: str
    raw: str | None = None

    def message(self) -> str:
        return f"{self.where}: {self.reason}"
