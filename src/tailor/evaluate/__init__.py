"""The evaluate stage: every metric of the problem with bootstrap intervals, per-example
predictions, and the error analysis of one split."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import Progress

from tailor.artifacts import atomic_write_json
from tailor.evaluate.errors import analyse
from tailor.evaluate.predictions import FILE, by_split, summarize, write_predictions
from tailor.evaluate.scoring import answer_examples, score_examples
from tailor.spec import Spec
from tailor.spec.evaluate import GENERATED


def error_split(spec: Spec, present: list[str]) -> str | None:
    """The split the error analysis looks at: the configured one, else test, else validation."""
    wanted = spec.evaluate.error_analysis.split
    if wanted is not None:
        return wanted if wanted in present else None
    return next((s for s in ("test", "validation", "train") if s in present), None)


def split_rows(gen, spec: Spec, split: str, records: list[dict], answer: bool, progress: Progress | None = None,
               limit: int | None = None) -> tuple[list[dict], dict | None]:
    """Prediction rows of one split: a task head's predictions, or each example's NLL and (with `answer`, for the
    first `limit` examples) its answer through the serving engine; and the settings answers were timed with."""
    if spec.problem.output != "text":  # a task head: labels, token labels or scores
        from tailor.evaluate.labels import label_rows

        return label_rows(gen.model, gen.codec, spec, split, records, torch.device(gen.device)), None
    rows = score_examples(gen, spec, split, records)
    settings = answer_examples(gen, spec, rows[:limit], progress) if answer and rows[:limit] else None
    return rows, settings


def run_evaluate(spec: Spec, data_dir: Path, train_dir: Path, out_dir: Path, progress: Progress | None = None) -> dict:
    """Write predictions.parquet, metrics.json (flat keys like 'test/exact_match'), results.json
    (metrics, intervals and the settings they were measured with) and errors.json."""
    from tailor.data import load_split
    from tailor.inference import Generator

    torch.manual_seed(0)
    gen = Generator(train_dir)
    names = spec.metric_names()
    answer = bool(set(names) & GENERATED)
    splits = list(dict.fromkeys(spec.evaluate.splits + [t.split for t in spec.problem.targets]))
    rows: list[dict] = []
    latency: dict[str, dict] = {}  # per split: how its answers were timed
    for split in splits:
        records = load_split(data_dir, split)
        if records:
            found, settings = split_rows(gen, spec, split, records, answer, progress, spec.evaluate.max_examples)
            rows += found
            if settings:
                latency[split] = settings
    write_predictions(out_dir / FILE, rows)
    boot = spec.evaluate.bootstrap
    metrics, intervals = summarize(rows, names, boot)
    groups = by_split(rows)
    chosen = error_split(spec, list(groups))
    errors = analyse(groups[chosen], spec.evaluate.error_analysis) if chosen else {}
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_json(out_dir / "results.json", {
        "metrics": metrics, "intervals": intervals,
        "bootstrap": boot.model_dump(), "generation": spec.evaluate.generation.model_dump() if answer else None,
        "latency": latency or None, "max_examples": spec.evaluate.max_examples, "device": gen.device,
        "examples": {split: len(r) for split, r in groups.items()}})
    atomic_write_json(out_dir / "errors.json", errors)
    return metrics
