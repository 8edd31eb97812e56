"""Metrics of score outputs: squared and absolute error, R² and Pearson's r, from per-example columns."""

from __future__ import annotations

import math

import numpy as np

from tailor.evaluate.metrics import Columns, Metric, registry


def _r2(c: Columns) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(c["score_true"], c["score_pred"])) if len(c["score_true"]) > 1 else math.nan


def _pearson(c: Columns) -> float:
    y, p = c["score_true"], c["score_pred"]
    return float(np.corrcoef(y, p)[0, 1]) if len(y) > 1 and y.std() > 0 and p.std() > 0 else math.nan


def _error(power: int):
    def aggregate(c: Columns) -> float:
        if not len(c["score_true"]):
            return math.nan
        return float((np.abs(c["score_pred"] - c["score_true"]) ** power).mean())
    return aggregate


SCORE_REGISTRY: dict[str, Metric] = registry({"score_error": lambda d: _error(2 if d.name == "mse" else 1),
                                               "r2": lambda d: _r2, "pearson": lambda d: _pearson})
