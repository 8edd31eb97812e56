"""Percentile-bootstrap confidence intervals for a metric and for the difference between two systems.

Examples are resampled with replacement and the metric is recomputed from the resampled
per-example columns (for BLEU and chrF: summed sufficient statistics, as sacrebleu does). A
difference is paired when both systems answered the same examples, so the same resample is used
for both; with several seeds per system the seeds are resampled too (a two-level bootstrap).
"""

from __future__ import annotations

import math

import numpy as np

from tailor.evaluate.metrics import Columns, Metric


def _size(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _take(columns: Columns, idx: np.ndarray) -> Columns:
    return {c: a[idx] for c, a in columns.items()}


def _bounds(values: list[float], confidence: float) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return float(lo), float(hi)


def interval(metric: Metric, columns: Columns, samples: int = 1000, confidence: float = 0.95,
             seed: int = 0) -> tuple[float, float]:
    """(low, high) of the metric's percentile-bootstrap interval; NaNs when fewer than two examples."""
    n = _size(columns)
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    return _bounds([metric.aggregate(_take(columns, rng.integers(0, n, n))) for _ in range(samples)], confidence)


def _arm_value(metric: Metric, runs: list[Columns], rng: np.random.Generator | None,
               shared: np.ndarray | None) -> float:
    """Mean of the metric over runs (seeds); with rng, over a resample of seeds and of examples."""
    if rng is None:
        return float(np.mean([metric.aggregate(r) for r in runs]))
    picked = [runs[i] for i in rng.integers(0, len(runs), len(runs))] if len(runs) > 1 else runs
    values = []
    for r in picked:
        idx = shared if shared is not None else rng.integers(0, _size(r), _size(r))
        values.append(metric.aggregate(_take(r, idx)))
    return float(np.mean(values))


def difference(metric: Metric, base: list[Columns], other: list[Columns], paired: bool, samples: int = 1000,
               confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """other minus base: the difference, its interval, and a two-sided bootstrap p-value.

    paired: every run of both systems scored the same examples in the same order.
    """
    base_value, other_value = _arm_value(metric, base, None, None), _arm_value(metric, other, None, None)
    delta = other_value - base_value
    sizes = {_size(r) for r in base + other}
    if min(sizes) < 2 or (paired and len(sizes) != 1):
        return {"base": base_value, "other": other_value, "delta": delta, "low": float("nan"),
                "high": float("nan"), "p_value": float("nan")}
    rng = np.random.default_rng(seed)
    deltas = []
    n = _size(base[0])
    for _ in range(samples):
        shared = rng.integers(0, n, n) if paired else None
        deltas.append(_arm_value(metric, other, rng, shared) - _arm_value(metric, base, rng, shared))
    low, high = _bounds(deltas, confidence)
    finite = np.asarray([d for d in deltas if math.isfinite(d)])
    p = min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())) if len(finite) else float("nan")
    return {"base": base_value, "other": other_value, "delta": delta, "low": low, "high": high, "p_value": float(p)}
