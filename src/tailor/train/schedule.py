"""Learning-rate schedules: linear warmup, then cosine, linear or constant."""

from __future__ import annotations

import math

from tailor.spec.train import Schedule


def lr_at(step: int, peak: float, total: int, schedule: Schedule) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total` (warmup: steps, or a share of total)."""
    warmup = schedule.warmup_for(total)
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule.name == "constant":
        return peak
    floor = peak * schedule.min_lr_ratio
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule.name == "linear":
        return peak - (peak - floor) * progress
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
