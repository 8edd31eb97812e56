"""`evaluate:` — how the model is judged: metrics, intervals, error analysis and ablations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tailor.spec.base import Strict
from tailor.spec.metrics import OUTPUTS, for_output

# Metrics the evaluate stage computes, by problem.output (tailor.spec.metrics is the table).
METRICS: dict[str, tuple[str, ...]] = {kind: for_output(kind) for kind in OUTPUTS}

# Keys a variant may not change: every variant runs on the baseline's budget.
BUDGET_KEYS = ("train.max_steps", "train.max_time", "problem.constraints.time_budget")


class Generation(Strict):
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = Field(0, description="sampling seed (each example uses it, so answers are repeatable)")


class Latency(Strict):
    """How p50/p95_latency_ms are measured: each answer through the serving engine in process (the server's
    batching and code path, with deploy.serve.limits' max_batch and max_queue), no network."""

    concurrency: int = Field(1, ge=1, description="requests in flight at once; 1 sends them one at a time")
    warmup: int = Field(2, ge=0, description="requests answered first and not timed")


class Bootstrap(Strict):
    """Percentile-bootstrap confidence intervals over examples."""

    samples: int = Field(1000, ge=10, description="resamples per metric")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ErrorAnalysis(Strict):
    split: Literal["train", "validation", "test"] | None = Field(
        None, description="default: test when it has records, else validation")
    slices: list[str] | None = Field(
        None, description="metadata fields to slice metrics by; default: every field with 2-50 distinct values")
    length_buckets: int = Field(4, ge=1, description="input-length buckets (quantiles of input tokens)")
    worst: int = Field(10, ge=1, description="examples listed by highest loss")
    clusters: int = Field(4, ge=0, description="k-means clusters of the errors (TF-IDF); 0: off")
    examples_per_cluster: int = Field(3, ge=1)


class Ablation(Strict):
    """Variants of the spec, each run like any run with the same budget, compared with the baseline."""

    variants: list[dict[str, Any]] = Field(
        default_factory=list, description="each a mapping of dotted spec keys to values, plus an optional name")
    seeds: int = Field(1, ge=1, description="runs per variant, seeds train.seed, train.seed+1, ...")
    metrics: list[str] | None = Field(None, description="flat keys like test/exact_match; default: the targets' "
                                                        "keys and validation/loss")

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = set()
        for i, variant in enumerate(variants):
            keys = [k for k in variant if k != "name"]
            if not keys:
                raise ValueError(f"item {i}: a variant sets at least one key, e.g. {{model.arch.n_layer: 2}}")
            for key in keys:
                if key in BUDGET_KEYS:
                    raise ValueError(f"item {i}: {key!r} is the budget; every variant runs on the baseline's")
            name = str(variant.get("name") or variant_name(variant))
            if name in names or name == "baseline":
                raise ValueError(f"item {i}: variant name {name!r} is used twice (or is 'baseline')")
            names.add(name)
        return variants


def variant_name(variant: dict[str, Any]) -> str:
    """The variant's given name, or its overrides written out, e.g. 'model.arch.n_layer=2'."""
    if variant.get("name"):
        return str(variant["name"])
    return ",".join(f"{k}={v}" for k, v in variant.items() if k != "name")


class Evaluate(Strict):
    metrics: list[str] | None = Field(None, description="default: every metric of problem.output")
    splits: list[Literal["train", "validation", "test"]] = Field(default_factory=lambda: ["validation", "test"])
    generation: Generation = Field(default_factory=Generation)
    latency: Latency = Field(default_factory=Latency)
    max_examples: int | None = Field(None, ge=1, description="cap on generated answers per split")
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    error_analysis: ErrorAnalysis = Field(default_factory=ErrorAnalysis)
    ablation: Ablation = Field(default_factory=Ablation)
