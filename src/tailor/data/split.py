"""Deterministic train/validation/test assignment."""

from __future__ import annotations

import random

from tailor.data.sources.files import SPLIT_KEY
from tailor.spec.base import SPLITS
from tailor.spec.data import Split


def assign_splits(records: list[dict], split: Split) -> dict[str, list[dict]]:
    """Records pinned by their source keep their split; the rest are divided by the ratios.

    The same records and seed give the same assignment. Every split with a ratio above zero gets
    at least one record when there are enough.
    """
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    free = []
    for record in records:
        pinned = record.pop(SPLIT_KEY, None)
        (out[pinned] if pinned else free).append(record)
    order = list(range(len(free)))
    if split.shuffle:
        random.Random(split.seed).shuffle(order)
    n = len(free)
    counts = {name: round(n * getattr(split, name)) for name in ("validation", "test")}
    for name in counts:
        if getattr(split, name) > 0 and counts[name] == 0 and n >= 3:
            counts[name] = 1
    bounds = {"test": (0, counts["test"]), "validation": (counts["test"], counts["test"] + counts["validation"]),
              "train": (counts["test"] + counts["validation"], n)}
    if not split.shuffle:  # contiguous: train first, then validation, then test, as in the files
        bounds = {"train": (0, n - counts["validation"] - counts["test"]),
                  "validation": (n - counts["validation"] - counts["test"], n - counts["test"]),
                  "test": (n - counts["test"], n)}
    for name, (lo, hi) in bounds.items():
        out[name] += [free[i] for i in sorted(order[lo:hi])]
    return out
