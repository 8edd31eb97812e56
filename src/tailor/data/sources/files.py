"""Local files: txt/md, jsonl, csv/tsv, parquet; single files, folders and globs."""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator
from pathlib import Path

from tailor.errors import TailorError
from tailor.spec.data import FilesSource

FORMATS = {".txt": "txt", ".md": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
SOURCE_KEY, SPLIT_KEY = "_source", "_split"  # record keys that carry provenance, not data


def expand(source: FilesSource, where: str) -> list[Path]:
    """Every file a source names, in a stable order; an error if a pattern matches nothing."""
    files: list[Path] = []
    for pattern in source.paths:
        if Path(pattern).is_dir():
            found = sorted(p for p in Path(pattern).rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise TailorError(f"{where}.path: no files match {pattern!r}")
        files += found
    return files


def _format(path: Path, source: FilesSource, where: str) -> str:
    if source.format != "auto":
        return source.format
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise TailorError(f"{path}: cannot tell the format from {suffix or 'no extension'!r}; "
                          f"set {where}.format to one of txt, jsonl, csv, tsv, parquet")
    return FORMATS[suffix]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise TailorError(f"{path}:{line}: byte {e.start} is not valid UTF-8") from None


def _txt(path: Path, unit: str) -> Iterator[tuple[int, dict]]:
    text = _read_text(path)
    if unit == "file":
        yield 1, {"text": text}
        return
    line_no, block, start = 0, [], 1
    for line_no, line in enumerate(text.splitlines(), 1):
        if unit == "line":
            if line.strip():
                yield line_no, {"text": line}
        elif line.strip():
            if not block:
                start = line_no
            block.append(line)
        elif block:
            yield start, {"text": "\n".join(block)}
            block = []
    if block:
        yield start, {"text": "\n".join(block)}


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for line_no, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TailorError(f"{path}:{line_no}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise TailorError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        yield line_no, obj


def _csv(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(_read_text(path).splitlines(), delimiter=delimiter)
    for row in reader:
        if None in row:
            raise TailorError(f"{path}:{reader.line_num}: more values than the {len(reader.fieldnames or [])} columns of the header")
        yield reader.line_num, row


def _parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise TailorError(f"{path}: not a readable Parquet file ({e})") from None
    row = 0
    for batch in table.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj


def read_files(source: FilesSource, required: list[str], where: str) -> Iterator[dict]:
    """Records of one files source; each has the required fields as strings plus provenance."""
    for path in expand(source, where):
        fmt = _format(path, source, where)
        rows = {"txt": lambda: _txt(path, source.unit), "jsonl": lambda: _jsonl(path),
                "csv": lambda: _csv(path, ","), "tsv": lambda: _csv(path, "\t"),
                "parquet": lambda: _parquet(path)}[fmt]()
        for line, record in rows:
            for field in required:
                value = record.get(field)
                if value is None:
                    keys = ", ".join(sorted(map(str, record))) or "none"
                    raise TailorError(f"{path}:{line}: missing field {field!r} (named in data.fields); "
                                      f"the record has: {keys}")
                if not isinstance(value, str):
                    record[field] = value if isinstance(value, (list, dict)) else str(value)
            record[SOURCE_KEY] = f"{path}:{line}"
            if source.split:
                record[SPLIT_KEY] = source.split
            yield record
