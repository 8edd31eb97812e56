"""The evaluate stage: loss, perplexity and bits-per-byte per split, plus generated answers."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.progress import Progress

from tailor.artifacts import atomic_write_json
from tailor.evaluate.metrics import bits_per_byte, exact_match, percentile, perplexity
from tailor.spec import Spec


def score_split(gen, spec: Spec, records: list[dict]) -> dict[str, float]:
    """Summed-NLL metrics over every scored token of a split."""
    from tailor.train.batches import make_batches
    from tailor.train.loop import evaluate_loss

    batches = make_batches(spec, records, gen.codec, gen.model.config.block_size, spec.train.batch_size, 0)
    loss, tokens = evaluate_loss(gen.model, batches, None, torch.device(gen.device))
    nll = loss * tokens
    f = spec.data.fields
    scored = [r[f.output] for r in records] if f.text is None else [r[f.text] for r in records]
    n_bytes = sum(len(t.encode("utf-8")) for t in scored)
    return {"loss": nll / tokens, "perplexity": perplexity(nll, tokens), "bits_per_byte": bits_per_byte(nll, n_bytes),
            "tokens": tokens}


def answer_split(gen, spec: Spec, records: list[dict], out_path: Path, progress: Progress | None) -> dict[str, float]:
    """Generate an answer for each input; exact match and latency; predictions saved as JSONL."""
    f, g = spec.data.fields, spec.evaluate.generation
    records = records[: spec.evaluate.max_examples] if spec.evaluate.max_examples else records
    preds, latencies = [], []
    task = progress.add_task(f"evaluate {out_path.stem.removeprefix('predictions-')}", total=len(records)) if progress else None
    with open(out_path, "w", encoding="utf-8") as out:
        for r in records:
            c = gen.complete(r[f.input], g.max_new_tokens, g.temperature, g.top_p, seed=0)
            preds.append(c.text)
            latencies.append(c.seconds * 1000)
            row = {"input": r[f.input], "expected": r[f.output], "predicted": c.text,
                   "correct": c.text.strip() == r[f.output].strip(), "latency_ms": round(c.seconds * 1000, 2),
                   "source": r.get("source")}
            row.update({k: v for k, v in r.items() if k not in (f.input, f.output, "source")})
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            if progress and task is not None:
                progress.advance(task)
    return {"exact_match": exact_match(preds, [r[f.output] for r in records]),
            "p50_latency_ms": percentile(latencies, 50), "p95_latency_ms": percentile(latencies, 95),
            "examples": len(records)}


def run_evaluate(spec: Spec, data_dir: Path, train_dir: Path, out_dir: Path, progress: Progress | None = None) -> dict:
    """Write metrics.json (flat keys like 'test/exact_match') and predictions-<split>.jsonl."""
    from tailor.data import load_split
    from tailor.inference import Generator

    torch.manual_seed(0)
    gen = Generator(train_dir)
    wanted = set(spec.metric_names())
    splits = list(dict.fromkeys(spec.evaluate.splits + [t.split for t in spec.problem.targets]))
    metrics: dict[str, float] = {}
    for split in splits:
        records = load_split(data_dir, split)
        if not records:
            continue
        values = score_split(gen, spec, records)
        if wanted & {"exact_match", "p50_latency_ms", "p95_latency_ms"}:
            values |= answer_split(gen, spec, records, out_dir / f"predictions-{split}.jsonl", progress)
        metrics |= {f"{split}/{k}": v for k, v in values.items() if k in wanted or k in ("tokens", "examples")}
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
