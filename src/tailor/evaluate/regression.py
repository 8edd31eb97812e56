"""Metrics of score outputs: squared and absolute error, R² and Pearson's r, from per-example columns."""

from __future__ import annotations

import math

import numpy as np

from tailor.evaluate.metrics import Columns, Metric


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


SCORE_COLUMNS = ("score_true", "score_pred")
SCORE_REGISTRY: dict[str, Metric] = {m.name: m for m in [
    Metric("mse", SCORE_COLUMNS, _error(2)), Metric("mae", SCORE_COLUMNS, _error(1)),
    Metric("r2", SCORE_COLUMNS, _r2), Metric("pearson", SCORE_COLUMNS, _pearson)]}
