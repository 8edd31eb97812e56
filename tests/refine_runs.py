"""Runs for the refine tests: tiny real runs of a scratch intent classifier, and hand-written run folders.

The real runs take seconds (a 1-layer, 32-wide transformer; tens of steps). Symptoms that cannot be
made cheaply and surely by training (a curve that overfits, a pretrained body left frozen, a data
report with imbalance, leaks or drops) are hand-written run folders in exactly the files a run has.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import yaml

from tailor.spec import Spec, dump_spec

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    path = ROOT / "examples" / "refine-intents" / "generate.py"
    spec = importlib.util.spec_from_file_location("refine_intents_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tickets(path: Path, shuffled: bool = False) -> None:
    """The refine example's messages (its own generator), optionally with the labels dealt at random."""
    rows = _generator().tickets(shuffled=shuffled)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


SPEC = {
    "name": "intents",
    "problem": {"domain": "tests", "task": "route messages", "output": "label",
                "targets": [{"metric": "accuracy", "split": "test", "at_least": 0.9}]},
    "data": {"sources": [{"type": "files", "path": "data/tickets.jsonl"}], "fields": {"input": "text", "output": "intent"},
             "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 0, "group": "near_duplicates"}},
    "tokenizer": {"type": "bpe", "vocab_size": 300},  # byte-level BPE trains the same vocabulary every time
    "model": {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
    "train": {"max_steps": 15, "batch_size": 16, "eval_every": 5, "schedule": {"warmup_steps": 2}},
    "evaluate": {"bootstrap": {"samples": 300}},
}
HEALTHY = {"train": {"max_steps": 120, "eval_every": 30, "optimizer": {"lr": 3.0e-3}}, "model": {"arch": {"n_embd": 64}}}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def spec_file(folder: Path, override: dict | None = None, name: str = "spec.yaml", shuffled: bool = False) -> Path:
    """A spec over the example's messages in folder/data; the override merged into SPEC."""
    data = folder / "data" / "tickets.jsonl"
    if not data.exists():
        write_tickets(data, shuffled)
    path = folder / name
    path.write_text(yaml.safe_dump(merge(SPEC, override or {}), sort_keys=False), encoding="utf-8")
    return path


def _curve(train: list[float], val: list[tuple[int, float]]) -> list[dict]:
    rows = [{"step": i + 1, "split": "train", "loss": v} for i, v in enumerate(train)]
    return rows + [{"step": s, "split": "validation", "loss": v} for s, v in val]


# A healthy run's files: the loss falls fast and flattens, validation follows it, data balanced and clean.
HEALTHY_FILES = {
    "summary": {"steps": 40, "stopped_by": "max_steps", "planned_steps": 40, "schedule_steps": 40},
    "curve": _curve([1.4 * 0.9 ** i + 0.1 for i in range(40)], [(10, 0.6), (20, 0.25), (30, 0.2), (40, 0.199)]),
    "results": {"metrics": {"validation/accuracy": 0.95}, "intervals": {"validation/accuracy": [0.9, 1.0]}},
    "errors": {"split": "validation", "examples": 48, "errors": 2,
               "confused": [{"expected": "billing", "predicted": "refund", "count": 1},
                            {"expected": "login", "predicted": "refund", "count": 1}],
               "slices": {"channel": [{"value": "chat", "examples": 16.0, "exact_match": 0.94},
                                      {"value": "email", "examples": 16.0, "exact_match": 0.94},
                                      {"value": "web form", "examples": 16.0, "exact_match": 1.0}]},
               "length_buckets": [{"bucket": "3-5 tokens", "examples": 24.0, "exact_match": 0.96},
                                  {"bucket": "6-9 tokens", "examples": 24.0, "exact_match": 0.96}]},
    "data": {"loaded": 240, "dropped": 2, "kept": 238, "steps": [{"step": "dedup", "dropped": {"exact duplicate": 2}}],
             "labels": {"field": "intent", "splits": {"train": {"billing": 36, "shipping": 36, "login": 35, "refund": 36}}},
             "duplicates": {"cross_split_pairs": 0, "near_duplicate_pairs": 3, "grouped_by": None}},
}


def write_run(folder: Path, spec: Spec, **files) -> Path:
    """A run folder holding the files the diagnosis reads: HEALTHY_FILES with the given ones replaced."""
    parts = {**copy.deepcopy(HEALTHY_FILES), **files}
    for sub in ("train", "evaluate", "data"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "spec.resolved.yaml").write_text(dump_spec(spec), encoding="utf-8")
    (folder / "train" / "summary.json").write_text(json.dumps(parts["summary"]))
    (folder / "train" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in parts["curve"]))
    (folder / "evaluate" / "results.json").write_text(json.dumps(parts["results"]))
    (folder / "evaluate" / "errors.json").write_text(json.dumps(parts["errors"]))
    (folder / "data" / "report.json").write_text(json.dumps(parts["data"]))
    return folder
