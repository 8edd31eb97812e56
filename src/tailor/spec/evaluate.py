"""`evaluate:` — how the model is judged."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tailor.spec.base import Strict

# Metrics the evaluate stage computes, by problem.output.
METRICS: dict[str, tuple[str, ...]] = {
    "text": ("loss", "perplexity", "bits_per_byte", "exact_match", "p50_latency_ms", "p95_latency_ms"),
}
GENERATED = {"exact_match", "p50_latency_ms", "p95_latency_ms"}  # need generation, and input/output data


class Generation(Strict):
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)


class Evaluate(Strict):
    metrics: list[str] | None = Field(None, description="default: every metric of problem.output")
    splits: list[Literal["train", "validation", "test"]] = Field(default_factory=lambda: ["validation", "test"])
    generation: Generation = Field(default_factory=Generation)
    max_examples: int | None = Field(None, ge=1, description="cap on generated answers per split")
