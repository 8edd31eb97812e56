"""The evaluate stage: every metric of the problem with bootstrap intervals, per-example
predictions, and the error analysis of one split."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import Progress

from tailor.artifacts import atomic_write_json
from tailor.evaluate.errors import analyse
from tailor.evaluate.predictions import FILE, by_split, summarize, write_predictions
from tailor.evaluate.scoring import Reading, answer_examples, score_examples
from tailor.spec.data import Fields
from tailor.spec.evaluate import Bootstrap, ErrorAnalysis, Generation, Latency
from tailor.spec.metrics import chosen_metrics, generated
from tailor.spec.problem import Target
from tailor.stage import Stage


def error_split(wanted: str | None, present: list[str]) -> str | None:
    """The split the error analysis looks at: the configured one, else test, else validation."""
    if wanted is not None:
        return wanted if wanted in present else None
    return next((s for s in ("test", "validation", "train") if s in present), None)


def split_rows(gen, how: Reading, split: str, records: list[dict], answer: bool, progress: Progress | None = None,
               limit: int | None = None) -> tuple[list[dict], dict | None]:
    """Prediction rows of one split: a task head's predictions, or each example's NLL and (with `answer`, for the
    first `limit` examples) its answer through the serving engine; and the settings answers were timed with."""
    if how.output != "text":  # a task head: labels, token labels or scores
        from tailor.evaluate.labels import label_rows

        return label_rows(gen.model, gen.codec, how, split, records, torch.device(gen.device)), None
    rows = score_examples(gen, how, split, records)
    settings = answer_examples(gen, how, rows[:limit], progress) if answer and rows[:limit] else None
    return rows, settings


def run_evaluate(out: Path, *, metrics: list[str] | None, splits: list[str], generation: Generation, latency: Latency,
                 max_examples: int | None, bootstrap: Bootstrap, error_analysis: ErrorAnalysis, output: str,
                 targets: list[Target], fields: Fields, loss_on: str, batch_size: int | str, max_batch: int,
                 max_queue: int, data_dir: Path, train_dir: Path, progress: Progress | None = None) -> dict:
    """Write predictions.parquet, metrics.json (flat keys like 'test/exact_match'), results.json
    (metrics, intervals and the settings they were measured with) and errors.json into `out`.

    The evaluate.* settings, problem.output and .targets, data.fields, train.loss_on and .batch_size (the
    scoring batch) and deploy.serve.limits' max_batch and max_queue (answers are timed through the
    serving engine) are what it reads.
    """
    from tailor.inference import Generator
    from tailor.splits import load_split

    out_dir = Path(out)
    torch.manual_seed(0)
    gen = Generator(train_dir)
    names = chosen_metrics(metrics, output, fields.answered, targets)
    answer = bool(set(names) & generated())
    how = Reading(fields, output, loss_on, batch_size if batch_size != "auto" else 32, generation, latency,
                  max_batch, max_queue)
    rows: list[dict] = []
    latency_settings: dict[str, dict] = {}  # per split: how its answers were timed
    for split in dict.fromkeys(splits + [t.split for t in targets]):
        records = load_split(data_dir, split)
        if records:
            found, settings = split_rows(gen, how, split, records, answer, progress, max_examples)
            rows += found
            if settings:
                latency_settings[split] = settings
    write_predictions(out_dir / FILE, rows)
    values, intervals = summarize(rows, names, bootstrap)
    groups = by_split(rows)
    chosen = error_split(error_analysis.split, list(groups))
    errors = analyse(groups[chosen], error_analysis) if chosen else {}
    atomic_write_json(out_dir / "metrics.json", values)
    atomic_write_json(out_dir / "results.json", {
        "metrics": values, "intervals": intervals,
        "bootstrap": bootstrap.model_dump(), "generation": generation.model_dump() if answer else None,
        "latency": latency_settings or None, "max_examples": max_examples, "device": gen.device,
        "examples": {split: len(r) for split, r in groups.items()}})
    atomic_write_json(out_dir / "errors.json", errors)
    return values


STAGE = Stage("evaluate", run=run_evaluate, upstream=("data", "train"), reads={
    **{k: f"evaluate.{k}" for k in ("metrics", "splits", "generation", "latency", "max_examples", "bootstrap",
                                    "error_analysis")},
    "output": "problem.output", "targets": "problem.targets", "fields": "data.fields",
    "loss_on": "train.loss_on", "batch_size": "train.batch_size",
    "max_batch": "deploy.serve.limits.max_batch", "max_queue": "deploy.serve.limits.max_queue"})
