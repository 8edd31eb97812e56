"""Runs the cleaning steps over a corpus of any size with bounded memory.

Records stream from the sources through the steps and into JSONL shards of `chunk_size` records, so
memory holds about one shard (plus the dedup indexes: a few dozen bytes per record for exact dedup, a
few hundred for MinHash). With `workers > 1`, runs of per-record steps go through datatrove's
LocalPipelineExecutor (the step is `tailor.data.workers.CleanShards`), one task per worker, each
cleaning every `workers`-th shard; steps that need every earlier record (dedup) run in one process
between them. Shards keep their order, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from tailor.data.clean import Step
from tailor.spec.data import Data

SAMPLES = 5          # dropped records kept per reason as examples in the report
SAMPLE_CHARS = 300


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)


class ChunkWriter:
    """JSONL shards part-00000.jsonl, part-00001.jsonl, ... of at most `size` records each."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = Path(folder), size
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self.count, self._file, self._in_file = 0, None, 0

    def write(self, record: dict) -> None:
        if self._file is None or self._in_file >= self.size:
            self._roll()
        self._file.write(dumps(record) + "\n")
        self._in_file += 1
        self.count += 1

    def _roll(self) -> None:
        if self._file:
            self._file.close()
        self.paths.append(self.folder / f"part-{len(self.paths):05d}.jsonl")
        self._file, self._in_file = open(self.paths[-1], "w", encoding="utf-8"), 0

    def close(self) -> list[Path]:
        if self._file:
            self._file.close()
            self._file = None
        return self.paths


def read_chunks(paths: Iterable[Path]) -> Iterator[dict]:
    """Records of the shards, in order."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


class StepStats:
    """What one step did: records in, kept, modified, dropped by reason (with samples), and its own counts."""

    def __init__(self, name: str):
        self.name, self.n_in, self.kept, self.modified = name, 0, 0, 0
        self.dropped: Counter = Counter()
        self.samples: dict[str, list] = {}
        self.counts: Counter = Counter()

    def drop(self, reason: str, record: dict) -> None:
        self.dropped[reason] += 1
        shown = self.samples.setdefault(reason, [])
        if len(shown) < SAMPLES:
            shown.append({k: v[:SAMPLE_CHARS] if isinstance(v, str) else v for k, v in record.items()})

    def to_dict(self) -> dict:
        return {"step": self.name, "in": self.n_in, "kept": self.kept, "modified": self.modified,
                "dropped": dict(self.dropped), "counts": dict(self.counts), "samples": self.samples}

    def merge(self, d: dict) -> None:
        self.n_in += d["in"]
        self.kept += d["kept"]
        self.modified += d["modified"]
        self.dropped.update(d["dropped"])
        self.counts.update(d["counts"])
        for reason, shown in d["samples"].items():
            mine = self.samples.setdefault(reason, [])
            mine += shown[: SAMPLES - len(mine)]


def process(records: Iterable[dict], steps: list[Step], stats: list[StepStats], fields: list[str],
            kept: ChunkWriter, dropped: IO[str], tick: Callable[[int], None] | None = None) -> None:
    """Send each record through the steps; write it to `kept`, or to `dropped` with the step and reason."""
    n = 0
    counts_before = [Counter(getattr(step, "counts", {})) for step in steps]
    for record in records:
        for step, stat in zip(steps, stats):
            before = [record.get(f) for f in fields]
            stat.n_in += 1
            result = step(record)
            if isinstance(result, str):
                stat.drop(result, record)
                dropped.write(dumps({"step": step.name, "reason": result, "record": record}) + "\n")
                break
            record = result
            stat.kept += 1
            stat.modified += before != [record.get(f) for f in fields]
        else:
            kept.write(record)
        n += 1
        if tick and n % 1000 == 0:
            tick(1000)
    if tick:
        tick(n % 1000)
    for step, stat, before in zip(steps, stats, counts_before):  # only what this call counted
        stat.counts.update(Counter(getattr(step, "counts", {})) - before)


def plan(steps: list[Step], workers: int) -> list[tuple[bool, list[int]]]:
    """Consecutive steps grouped into phases: (runs in parallel, step indexes)."""
    groups: list[tuple[bool, list[int]]] = []
    for i, step in enumerate(steps):
        parallel = workers > 1 and step.parallel
        if groups and groups[-1][0] == parallel:
            groups[-1][1].append(i)
        else:
            groups.append((parallel, [i]))
    return groups


def fields_changed(data: Data, steps: list[Step]) -> list[str]:
    """Fields whose change counts as 'modified': the model's, plus any a step writes (labels)."""
    extra = [f for s in steps for f in getattr(s, "fields", []) if f not in data.fields.used]
    return data.fields.used + list(dict.fromkeys(extra))


def clean_shards(data: Data, steps: list[Step], records: Iterable[dict], work: Path, dropped: IO[str],
                 tick: Callable[[int], None] | None = None) -> tuple[list[dict], list[Path]]:
    """Run every step over the records; return per-step stats and the shards of kept records."""
    stats = [StepStats(s.name) for s in steps]
    fields = fields_changed(data, steps)
    groups = plan(steps, data.engine.workers)
    first = groups.pop(0)[1] if groups and not groups[0][0] else []
    writer = ChunkWriter(work / "phase0", data.engine.chunk_size)
    process(records, [steps[i] for i in first], [stats[i] for i in first], fields, writer, dropped, tick)
    chunks = writer.close()
    for k, (parallel, idx) in enumerate(groups, 1):
        folder = work / f"phase{k}"
        if parallel:
            chunks = _parallel(data, idx, chunks, folder, [stats[i] for i in idx], dropped)
        else:
            writer = ChunkWriter(folder, data.engine.chunk_size)
            process(read_chunks(chunks), [steps[i] for i in idx], [stats[i] for i in idx], fields, writer, dropped)
            chunks = writer.close()
    return [s.to_dict() for s in stats], chunks


def _parallel(data: Data, idx: list[int], chunks: list[Path], folder: Path, stats: list[StepStats],
              dropped: IO[str]) -> list[Path]:
    """One phase of per-record steps through datatrove's local executor; results merged in shard order."""
    from datatrove.executor import LocalPipelineExecutor

    from tailor.data.workers import CleanShards

    folder.mkdir(parents=True, exist_ok=True)
    task = CleanShards(data.model_dump(mode="json"), idx, [str(c) for c in chunks], str(folder))
    workers = min(data.engine.workers, max(len(chunks), 1))
    from loguru import logger

    logger.disable("datatrove")  # our progress bar and report say what happened; its logs stay in folder/logs
    try:
        LocalPipelineExecutor(pipeline=[task], tasks=workers, workers=workers, logging_dir=str(folder / "logs"),
                              skip_completed=False).run()
    finally:
        logger.enable("datatrove")
    out = []
    for c in range(len(chunks)):
        for stat, d in zip(stats, json.loads((folder / f"stats-{c:05d}.json").read_text())):
            stat.merge(d)
        with open(folder / f"dropped-{c:05d}.jsonl", encoding="utf-8") as f:
            for line in f:
                dropped.write(line)
        out.append(folder / f"part-{c:05d}.jsonl")
    return out
