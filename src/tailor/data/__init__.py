"""The data stage: read the sources, clean, annotate, split, and write Parquet splits with a report.

Usable from Python: `run_data(out, data=spec.data, output=spec.problem.output)` writes what `tailor data SPEC`
writes into a run. The split files are read back with `tailor.splits.load_split`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.progress import Progress

from tailor.artifacts import atomic_write_json, sha256_file
from tailor.data.clean import build_steps, step_files
from tailor.data.annotate.label_studio import write_tasks
from tailor.data.engine import clean_shards, read_chunks
from tailor.data.sources import DROP_KEY, SOURCE_INDEX_KEY, SOURCE_KEY, SPLIT_KEY, Reject, new_report, read_source, source_files
from tailor.data.write import stratify_field, write_splits
from tailor.errors import TailorError
from tailor.stage import Stage
from tailor.spec.clean import CLASSIC_STEPS
from tailor.spec.data import Data

__all__ = ["run_data", "STAGE"]


class GeneratedCheck:
    """Drop model-written records that lack a field (the generation did not follow the format)."""

    name = "generated"
    parallel = True

    def __call__(self, record: dict) -> dict | str:
        reason = record.pop(DROP_KEY, None)
        return reason or record


def _intake(data: Data, reports: list[dict], rejected: IO[str]) -> Iterator[dict]:
    """Every source's records in order; malformed inputs stop the run or go to rejected.jsonl."""
    lenient = any("missing" in step for step in data.clean)
    for i, source in enumerate(data.sources):
        report = reports[i]
        for item in read_source(source, i, data, lenient, report):
            if isinstance(item, Reject):
                if data.on_error == "stop":
                    raise TailorError(f"{item.message()}  (data.on_error: skip quarantines such records in "
                                      "data/rejected.jsonl)")
                report["rejected"] += 1
                rejected.write(json.dumps({"source": i, "where": item.where, "reason": item.reason, "raw": item.raw},
                                          ensure_ascii=False) + "\n")
                continue
            report["records"] += 1
            yield item
        if report["records"] == 0:
            skipped = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items() if k not in ("requests", "from cache"))
            detail = (f"; {report['rejected']} rejected (see rejected.jsonl)" if report["rejected"] else "") + \
                     (f"; skipped {skipped}" if skipped else "")
            raise TailorError(f"data.sources[{i}]: the source holds no records{detail}")


def _warnings(data: Data, output: str) -> list[str]:
    used = [name for step in data.clean for name in step if name in CLASSIC_STEPS]
    if used and output == "text":
        return [f"{', '.join(used)} on for a generative model (problem.output: text): the model will learn to "
                "write text that way; these steps are meant for classic classification pipelines"]
    return []


def run_data(out: Path, *, data: Data, output: str, progress: Progress | None = None) -> dict:
    """Write {train,validation,test}.parquet, dropped.jsonl, rejected.jsonl and report.json into `out`.

    data: the spec's data section; output: problem.output (label problems stratify by their label).
    """
    out_dir = Path(out)
    steps = build_steps(data)
    if any(s.type == "synthetic" and s.model for s in data.sources):
        steps.insert(0, GeneratedCheck())
    reports = [new_report(s, i) for i, s in enumerate(data.sources)]
    task = progress.add_task("data", total=None) if progress else None
    tick = (lambda n: progress.update(task, advance=n)) if progress and task is not None else None
    work = Path(tempfile.mkdtemp(prefix=".data-work-", dir=out_dir.parent))
    try:
        with open(out_dir / "dropped.jsonl", "w", encoding="utf-8") as dropped, \
                open(out_dir / "rejected.jsonl", "w", encoding="utf-8") as rejected:
            stats, chunks = clean_shards(data, steps, _intake(data, reports, rejected), work, dropped, tick)
        written = write_splits(data, output, chunks, out_dir)
        if data.label_studio:
            rows = ({("source" if k == SOURCE_KEY else k): v for k, v in r.items() if k not in (SPLIT_KEY, SOURCE_INDEX_KEY)}
                    for r in read_chunks(chunks))
            suggestions = [o["field"] for step in data.clean for name, o in step.items() if name == "label_model"]
            write_tasks(rows, out_dir / "label_studio.json", stratify_field(data.split, data.fields, output) or data.fields.output,
                        suggestions[0] if suggestions else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loaded = sum(r["records"] for r in reports if not r["generated"])
    generated = sum(r["records"] for r in reports if r["generated"])
    dropped_n = sum(sum(s["dropped"].values()) for s in stats)
    kept = sum(written["splits"].values())
    if progress and task is not None:
        progress.update(task, total=loaded + generated, completed=loaded + generated)
    kept_per_source = written.pop("kept_per_source")
    for report_, kept_n in zip(reports, kept_per_source):
        report_["kept"] = kept_n
    warnings = [f"data.sources[{r['source']}] ({r['path']}): all {r['records']} records were dropped by cleaning; "
                "see dropped.jsonl" for r in reports if r["records"] and not r["kept"]]
    report = {
        "loaded": loaded, "generated": generated, "kept": kept, "dropped": dropped_n,
        "rejected": sum(r["rejected"] for r in reports),
        "sources": [{**r, "skipped": dict(r["skipped"])} for r in reports],
        "steps": stats, **written, "warnings": warnings + _warnings(data, output),
        "engine": {"workers": data.engine.workers, "shards": len(chunks)},
    }
    report["duplicates"].update({"exact": sum(s["dropped"].get("exact duplicate", 0) for s in stats),
                                 "near": sum(s["dropped"].get("near duplicate", 0) for s in stats)})
    if loaded + generated != kept + dropped_n:
        raise AssertionError(f"records lost: loaded {loaded} + generated {generated} != kept {kept} + dropped {dropped_n}")
    atomic_write_json(out_dir / "report.json", report)
    return report


def data_files(project: Path, data: Data, output: str) -> dict[str, str]:
    """sha256 of every local file the sources and cleaning steps read (e.g. label_join's labels)."""
    files = {str(p): sha256_file(p) for i, s in enumerate(data.sources) for p in source_files(s, f"data.sources[{i}]")}
    return files | {path: sha256_file(Path(path)) if Path(path).is_file() else None for path in step_files(data)}


STAGE = Stage("data", run=run_data, reads={"data": "data", "output": "problem.output"}, files=data_files)
