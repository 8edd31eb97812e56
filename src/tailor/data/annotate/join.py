"""Labels from a CSV or JSONL file, joined to the records by an id field."""

from __future__ import annotations

from collections import Counter

from tailor.data.sources.files import read_files
from tailor.errors import TailorError
from tailor.spec.data import FilesSource


class LabelJoin:
    """Write the file's label into each record with a matching id; count matched and unmatched."""

    name = "label_join"
    parallel = True

    def __init__(self, path: str, id: str, label: str, field: str, overwrite: bool = False):
        self.id, self.field, self.overwrite = id, field, overwrite
        self.fields = [field]
        self.labels: dict[str, str] = {}
        key = "data.clean label_join.path"
        for loc, row in read_files(FilesSource(type="files", path=path), [id, label], None, key, key):
            if not isinstance(row, dict):
                raise TailorError(row.message())
            if row.get(id) is None or row.get(label) is None:
                raise TailorError(f"{loc}: needs fields {id!r} and {label!r}; the row has: {', '.join(map(str, row))}")
            key = str(row[id])
            if key in self.labels and self.labels[key] != str(row[label]):
                raise TailorError(f"{loc}: id {key!r} has two labels ({self.labels[key]!r} and {row[label]!r})")
            self.labels[key] = str(row[label])
        self.counts: Counter = Counter()

    def __call__(self, record: dict) -> dict | str:
        key = record.get(self.id)
        label = self.labels.get(str(key)) if key is not None else None
        if label is None:
            self.counts["no label in the file"] += 1
        elif self.overwrite or record.get(self.field) in (None, ""):
            record[self.field] = label
            self.counts["labelled"] += 1
        else:
            self.counts["kept existing label"] += 1
        return record
