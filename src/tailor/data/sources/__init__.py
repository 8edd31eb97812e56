"""Data sources. Each yields (location, record | Reject); `read_source` maps columns to the spec's
fields, checks them, and tags every record with where it came from."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tailor.artifacts import RESERVED_PREFIX
from tailor.data.chat import ChatError, to_messages
from tailor.data.sources.records import LABEL_STUDIO_ID, SOURCE_INDEX_KEY, SOURCE_KEY, SPLIT_KEY, Reject
from tailor.spec.data import SOURCES, Data, Fields, SyntheticSource

DROP_KEY = RESERVED_PREFIX + "drop"  # a generated record that cannot be used: counted and dropped, never silently lost

__all__ = ["read_source", "source_files", "Reject", "SOURCE_KEY", "SPLIT_KEY", "SOURCE_INDEX_KEY", "DROP_KEY"]


@dataclass
class SourceContext:
    """What a source's `read` gets besides its options: where it sits in the spec, the model's fields, and
    the report's counters of what it skipped and why."""

    where: str
    fields: Fields
    skipped: Counter
    failures: list


def _module(source):
    return importlib.import_module(SOURCES[source.type].module)


def read_source(source, i: int, data: Data, lenient: bool, report: dict) -> Iterator[dict | Reject]:
    """Records of one source with the spec's field names and Tailor's provenance keys; malformed ones as Rejects.

    A record without a required field is a Reject, unless `lenient` (a `missing` step will handle it);
    a generated record without one is marked to be dropped.
    """
    fields = data.fields.used
    mapping = getattr(source, "map", {})
    synthetic = isinstance(source, SyntheticSource)
    context = SourceContext(f"data.sources[{i}]", data.fields, report["skipped"], report["failures"])
    for loc, item in _module(source).read(source, context):
        if isinstance(item, Reject):
            yield item
            continue
        for key in [k for k in item if str(k).startswith(RESERVED_PREFIX)]:
            if key != LABEL_STUDIO_ID:  # an earlier Tailor artifact's provenance: this run writes its own
                del item[key]
        for field, column in mapping.items():
            if column in item:
                item[field] = item.pop(column)
        if data.fields.messages is not None:
            try:
                item = to_messages(item, data.fields.messages, data.fields.chat_format)
            except ChatError as e:
                yield Reject(loc, f"{e} (data.fields.chat_format: {data.fields.chat_format})", str(item)[:2000])
                continue
        absent = [f for f in fields if item.get(f) is None]
        if absent and synthetic:
            item[DROP_KEY] = f"generation lacks field {absent[0]!r}"
        elif absent and not lenient:
            keys = ", ".join(sorted(map(str, item))) or "none"
            yield Reject(loc, f"missing field {absent[0]!r} (named in data.fields); the record has: {keys}",
                         str(item)[:2000])
            continue
        for field in fields:
            value = item.get(field)
            if value is not None and not isinstance(value, (str, list, dict)):
                item[field] = str(value)
        item[SOURCE_KEY] = loc
        item[SOURCE_INDEX_KEY] = i
        if source.split:
            item[SPLIT_KEY] = source.split
        yield item


def new_report(source, i: int) -> dict:
    """The per-source entry of report.json."""
    name = getattr(source, "path", None) or getattr(source, "name", None) or getattr(source, "seeds", None)
    return {"source": i, "type": source.type, "path": name if source.type != "synthetic" else source.model or "templates",
            "records": 0, "generated": source.type == "synthetic", "rejected": 0, "skipped": Counter(), "failures": []}


def source_files(source, where: str) -> list[Path]:
    """Local files a source reads, for the data stage's content hash (a crawl is keyed by its spec only)."""
    return _module(source).files(source, where)
