"""Local files: txt/md, jsonl, json, csv/tsv, parquet, html, pdf, Label Studio exports; folders, globs,
gzip/zstd. Text formats stream line by line, so a file larger than memory reads fine."""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from tailor.data.sources.records import Reject
from tailor.errors import TailorError
from tailor.spec.data import FilesSource

FORMATS = {".txt": "txt", ".md": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
           ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".html": "html", ".htm": "html", ".pdf": "pdf"}
COMPRESSED = (".gz", ".zst")
Row = tuple[int, "dict | Reject"]


def _inner_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def expand(paths: list[str], key: str) -> list[Path]:
    """Every file the patterns name, in a stable order; an error (naming the spec key) if one matches nothing."""
    files: list[Path] = []
    for pattern in paths:
        if Path(pattern).is_dir():
            found = sorted(p for p in Path(pattern).rglob("*") if p.is_file() and _inner_suffix(p) in FORMATS)
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise TailorError(f"{key}: no files match {pattern!r}")
        files += found
    return files


def open_binary(path: Path):
    """The file's bytes, decompressed when it ends in .gz or .zst."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _format(path: Path, source: FilesSource, where: str) -> str:
    if source.format != "auto":
        return source.format
    suffix = _inner_suffix(path)
    if suffix not in FORMATS:
        raise TailorError(f"{path}: cannot tell the format from {suffix or 'no extension'!r}; set {where}.format "
                          f"to one of txt, jsonl, json, csv, tsv, parquet, html, pdf, label_studio")
    return FORMATS[suffix]


def _lines(path: Path) -> Iterator[tuple[int, str | Reject]]:
    """(line number, text without the newline) per line; undecodable lines come as Rejects."""
    with open_binary(path) as f:
        for no, raw in enumerate(f, 1):
            try:
                yield no, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield no, Reject(f"{path}:{no}", f"byte {e.start} of the line is not valid UTF-8",
                                 raw.decode("utf-8", "replace"))


def _whole(path: Path) -> str:
    with open_binary(path) as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise TailorError(f"{path}:{line}: byte {e.start} is not valid UTF-8") from None


def _txt(path: Path, unit: str) -> Iterator[Row]:
    block: list[str] = []
    start = 1
    for no, line in _lines(path):
        if isinstance(line, Reject):
            yield no, line
            continue
        if unit == "line":
            if line.strip():
                yield no, {"text": line}
        elif unit == "paragraph" and not line.strip():
            if block:
                yield start, {"text": "\n".join(block)}
            block = []
        else:
            if not block:
                start = no
            block.append(line)
    if block:
        yield start, {"text": "\n".join(block)}


def _jsonl(path: Path) -> Iterator[Row]:
    for no, line in _lines(path):
        if isinstance(line, Reject) or not line.strip():
            if isinstance(line, Reject):
                yield no, line
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield no, Reject(f"{path}:{no}", f"not valid JSON ({e.msg} at column {e.colno})", line)
            continue
        yield no, obj if isinstance(obj, dict) else Reject(f"{path}:{no}", f"expected a JSON object, got {type(obj).__name__}", line)


def _json_items(path: Path) -> list:
    try:
        data = json.loads(_whole(path))
    except json.JSONDecodeError as e:
        raise TailorError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict):  # {"data": [...]} or one record
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise TailorError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    return data


def _json(path: Path) -> Iterator[Row]:
    for i, obj in enumerate(_json_items(path), 1):
        yield i, obj if isinstance(obj, dict) else Reject(f"{path}[{i - 1}]", f"expected an object, got {type(obj).__name__}")


def _label_studio(path: Path, label_field: str | None) -> Iterator[Row]:
    """Tasks of a Label Studio JSON export: the task's data plus the latest annotation's choice as the label."""
    for i, task in enumerate(_json_items(path), 1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            yield i, Reject(f"{path}[{i - 1}]", "not a Label Studio task (no 'data' object)")
            continue
        record = dict(task["data"])
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        choices = [c for a in annotations[-1:] for r in a.get("result") or [] for c in (r.get("value") or {}).get("choices") or []]
        if choices and label_field:
            record[label_field] = choices[0]
        record["ls_id"] = task.get("id")
        yield i, record


def _csv(path: Path, delimiter: str, required: list[str]) -> Iterator[Row]:
    pending: list[Reject] = []

    def good_lines() -> Iterator[str]:
        for _no, line in _lines(path):
            if isinstance(line, Reject):
                pending.append(line)
            else:
                yield line

    reader = csv.DictReader(good_lines(), delimiter=delimiter)
    header = reader.fieldnames or []
    absent = [c for c in required if c not in header]
    if absent:
        raise TailorError(f"{path}:1: the header has no column {', '.join(map(repr, absent))} (mapped in the spec); "
                          f"its columns: {', '.join(header) or 'none'}")
    for row in reader:
        while pending:
            yield 0, pending.pop(0)
        if None in row:
            yield reader.line_num, Reject(f"{path}:{reader.line_num}", f"more values than the {len(header)} columns of the header")
        else:
            yield reader.line_num, row
    while pending:
        yield 0, pending.pop(0)


def _parquet(path: Path) -> Iterator[Row]:
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


def _html(path: Path) -> Iterator[Row]:
    from tailor.data.sources.html import extract

    text, title = extract(_whole(path), path.as_uri())
    yield 1, {"text": text, "title": title} if text else Reject(str(path), "no main text found in the HTML")


def _pdf(path: Path) -> Iterator[Row]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pages = [page.extract_text() or "" for page in PdfReader(path).pages]
    except (PdfReadError, OSError, ValueError) as e:
        raise TailorError(f"{path}: not a readable PDF ({e})") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    yield 1, {"text": text, "pages": len(pages)} if text else Reject(str(path), "the PDF has no text layer (scanned?)")


def read_files(source: FilesSource, columns: list[str], label_field: str | None, where: str,
               key: str | None = None) -> Iterator[tuple[str, dict | Reject]]:
    """(file:line, record or Reject) for every record of a files source; `key` names its paths in the spec."""
    readers = {"txt": lambda p: _txt(p, source.unit), "jsonl": _jsonl, "json": _json,
               "csv": lambda p: _csv(p, ",", columns), "tsv": lambda p: _csv(p, "\t", columns),
               "parquet": _parquet, "html": _html, "pdf": _pdf, "label_studio": lambda p: _label_studio(p, label_field)}
    for path in expand(source.paths, key or f"{where}.path"):
        for line, record in readers[_format(path, source, where)](path):
            yield f"{path}:{line}", record


def read(source: FilesSource, context) -> Iterator[tuple[str, dict | Reject]]:
    """The registered reader: the model's fields (through the source's column map) from every file."""
    mapping = source.map
    return read_files(source, [mapping.get(f, f) for f in context.fields.used], context.fields.output, context.where)


def files(source: FilesSource, where: str) -> list[Path]:
    return expand(source.paths, f"{where}.path")
