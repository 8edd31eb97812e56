"""The data stage: read the sources, clean, split, and write Parquet splits with a report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rich.progress import Progress

from tailor.artifacts import atomic_write_json
from tailor.data.clean import build_steps
from tailor.data.sources import read_files
from tailor.data.sources.files import SOURCE_KEY
from tailor.data.split import assign_splits
from tailor.errors import TailorError
from tailor.spec import Spec
from tailor.spec.base import SPLITS


def load_split(data_dir: Path, split: str) -> list[dict]:
    """Records of one split written by the data stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tailor.deploy import encryption

    path = Path(data_dir) / f"{split}.parquet"
    if not encryption.exists(path):
        return []
    return pq.read_table(pa.BufferReader(encryption.read_bytes(path))).to_pylist()  # .enc: decrypted in memory


def _write_parquet(path: Path, records: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{("source" if k == SOURCE_KEY else k): v for k, v in r.items()} for r in records]
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a metadata column: keep it as text
        table = pa.Table.from_pylist([{k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in rows])
    pq.write_table(table, path)


def run_data(spec: Spec, out_dir: Path, progress: Progress | None = None) -> dict:
    """Write {train,validation,test}.parquet, dropped.jsonl and report.json into out_dir."""
    fields = spec.data.fields.used
    steps = build_steps(spec.data)
    stats = [{"step": s.name, "in": 0, "kept": 0, "modified": 0, "dropped": Counter()} for s in steps]
    sources, kept = [], []
    task = progress.add_task("data", total=None) if progress else None
    with open(out_dir / "dropped.jsonl", "w", encoding="utf-8") as dropped_file:
        for i, source in enumerate(spec.data.sources):
            count = 0
            for record in read_files(source, fields, f"data.sources[{i}]"):
                count += 1
                for step, stat in zip(steps, stats):
                    before = [record.get(f) for f in fields]
                    stat["in"] += 1
                    result = step(record)
                    if isinstance(result, str):
                        stat["dropped"][result] += 1
                        dropped_file.write(json.dumps({"step": step.name, "reason": result, "record": record},
                                                      ensure_ascii=False, default=str) + "\n")
                        break
                    record = result
                    stat["kept"] += 1
                    stat["modified"] += before != [record.get(f) for f in fields]
                else:
                    kept.append(record)
                if progress and task is not None and count % 1000 == 0:
                    progress.update(task, advance=1000)
            if count == 0:
                raise TailorError(f"data.sources[{i}]: the files matched but hold no records")
            sources.append({"source": i, "path": source.path, "records": count})
    loaded = sum(s["records"] for s in sources)
    if progress and task is not None:
        progress.update(task, total=loaded, completed=loaded)
    dropped = sum(sum(s["dropped"].values()) for s in stats)
    if not kept:
        raise TailorError(f"data: no records left after cleaning (loaded {loaded}, dropped {dropped}; "
                          f"see {out_dir / 'dropped.jsonl'})")
    splits = assign_splits(kept, spec.data.split)
    if not splits["train"]:
        raise TailorError("data: the train split is empty; check data.split and the sources' split keys")
    for name in SPLITS:
        _write_parquet(out_dir / f"{name}.parquet", splits[name])
    report = {
        "loaded": loaded, "kept": len(kept), "dropped": dropped, "sources": sources,
        "steps": [{**s, "dropped": dict(s["dropped"])} for s in stats],
        "splits": {name: len(splits[name]) for name in SPLITS},
    }
    assert report["loaded"] == report["kept"] + report["dropped"], report
    atomic_write_json(out_dir / "report.json", report)
    return report
