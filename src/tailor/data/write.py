"""The last pass of the data stage: assign splits and write them as Parquet, streaming.

Pass one reads the cleaned shards for what the split needs per record (pin, label, group; a few bytes
each) and the column types; pass two streams the records into one Parquet writer per split.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from tailor.data.engine import read_chunks
from tailor.data.sources.records import SOURCE_INDEX_KEY, SOURCE_KEY, SPLIT_KEY
from tailor.data.split import NearDuplicateGroups, assign, cross_split_pairs
from tailor.errors import TailorError
from tailor.spec.data import Data, Fields, Split
from tailor.spec.base import SPLITS

BATCH_ROWS, BATCH_CHARS = 5000, 1_000_000  # a Parquet row group is written when either is reached
MAX_LABELS = 100  # label distributions list at most this many values


def _column(key: str) -> str:
    return "source" if key == SOURCE_KEY else key


def _arrow_schema(types: dict[str, set[str]]):
    import pyarrow as pa

    fields, as_json = [], set()
    for key, seen in types.items():
        seen = seen - {"NoneType"}
        if seen == {"bool"}:
            t = pa.bool_()
        elif seen == {"int"}:
            t = pa.int64()
        elif seen and seen <= {"int", "float"}:
            t = pa.float64()
        else:
            t = pa.string()
            as_json |= {key} if seen - {"str"} else set()
        fields.append(pa.field(_column(key), t))
    return pa.schema(fields), as_json


def stratify_field(split: Split, fields: Fields, output: str) -> str | None:
    """The field whose values are stratified and reported: split.stratify, or the label of label problems."""
    return split.stratify or (fields.output if output == "label" else None)


def _histogram(lengths: list[int]) -> dict:
    if not lengths:
        return {}
    a = np.asarray(lengths)
    lo, hi = int(a.min()), int(a.max()) + 1
    spread = np.geomspace if lo > 0 and hi / lo > 20 else np.linspace  # long tails get log-spaced bins
    edges = np.unique(spread(lo, hi, 16).round().astype(int))
    if len(edges) < 2:
        edges = np.array([lo, hi])
    counts, _ = np.histogram(a, bins=edges)
    return {"count": int(a.size), "min": lo, "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": hi - 1, "edges": edges.tolist(), "counts": counts.tolist()}


def write_splits(data: Data, output: str, chunks: list[Path], out_dir: Path) -> dict:
    """Assign and write {train,validation,test}.parquet; return splits, labels, lengths and duplicate counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    split, fields = data.split, data.fields.used
    label_key = stratify_field(data.split, data.fields, output)
    pinned, labels, group_values = [], [], {}
    groups: list[int] = []
    near = NearDuplicateGroups(split.group_threshold) if split.group == "near_duplicates" or split.leakage_check else None
    types: dict[str, set[str]] = {}
    per_source: Counter = Counter()
    for record in read_chunks(chunks):
        per_source[record.pop(SOURCE_INDEX_KEY, None)] += 1
        pinned.append(record.get(SPLIT_KEY))
        labels.append(record.get(label_key) if label_key else None)
        if split.group and split.group != "near_duplicates":
            groups.append(group_values.setdefault(json.dumps(record.get(split.group), default=str), len(group_values)))
        if near:
            near.add("\n".join(str(record.get(f) or "") for f in fields))
        for key, value in record.items():
            if key != SPLIT_KEY:
                types.setdefault(key, set()).add(type(value).__name__)
    if not pinned:
        raise TailorError("data: no records left after cleaning; see dropped.jsonl for each record's step and reason")
    group_ids = near.groups() if split.group == "near_duplicates" else np.array(groups) if split.group else None
    codes = assign(pinned, labels if label_key else None, group_ids, split)
    counts = np.bincount(codes, minlength=3)
    if counts[0] == 0:
        raise TailorError("data: the train split is empty; check data.split and the sources' split keys")
    schema, as_json = _arrow_schema(types)
    writers = {name: pq.ParquetWriter(out_dir / f"{name}.parquet", schema) for name in SPLITS}
    batches: dict[str, list[dict]] = {name: [] for name in SPLITS}
    batch_chars = dict.fromkeys(SPLITS, 0)
    label_counts = {name: Counter() for name in SPLITS}
    lengths: dict[str, list[int]] = {name: [] for name in SPLITS}

    def flush(name: str) -> None:
        if batches[name]:
            writers[name].write_table(pa.Table.from_pylist(batches[name], schema=schema))
            batches[name], batch_chars[name] = [], 0

    for record, code in zip(read_chunks(chunks), codes):
        name = SPLITS[code]
        record.pop(SPLIT_KEY, None)
        record.pop(SOURCE_INDEX_KEY, None)
        row = {_column(k): (json.dumps(v, default=str) if k in as_json and not isinstance(v, str) and v is not None else v)
               for k, v in record.items()}
        batches[name].append(row)
        lengths[name].append(sum(len(str(record.get(f) or "")) for f in fields))
        batch_chars[name] += sum(len(v) for v in row.values() if isinstance(v, str))
        if label_key:
            label_counts[name][str(record.get(label_key))] += 1
        if len(batches[name]) >= BATCH_ROWS or batch_chars[name] >= BATCH_CHARS:
            flush(name)
    for name in SPLITS:
        flush(name)
        writers[name].close()
    return {
        "splits": {name: int(counts[i]) for i, name in enumerate(SPLITS)},
        "kept_per_source": [per_source[i] for i in range(len(data.sources))],
        "labels": {"field": label_key, "splits": {n: dict(c.most_common(MAX_LABELS)) for n, c in label_counts.items()}}
        if label_key else None,
        "lengths": {"unit": "characters of " + " + ".join(fields), **{n: _histogram(v) for n, v in lengths.items()}},
        "duplicates": {"near_duplicate_pairs": len(near.pairs) if near else None,
                       "cross_split_pairs": cross_split_pairs(near.pairs, codes) if near else None,
                       "grouped_by": split.group, "groups": int(len(np.unique(group_ids))) if group_ids is not None else None},
    }
