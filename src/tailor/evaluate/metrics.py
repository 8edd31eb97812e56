"""Metric formulas. Perplexity and bits-per-byte follow lm-evaluation-harness's definitions."""

from __future__ import annotations

import math


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), natural log."""
    return math.exp(nll_sum / n_tokens)


def bits_per_byte(nll_sum: float, n_bytes: int) -> float:
    """Summed NLL in nats over the scored text, in bits, divided by its UTF-8 byte count."""
    return nll_sum / math.log(2) / n_bytes


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after trimming surrounding whitespace."""
    if not references:
        return float("nan")
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
