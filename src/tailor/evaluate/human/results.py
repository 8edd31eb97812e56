"""Aggregates of a study: mean scores and win rate with bootstrap intervals (items resampled),
and inter-rater agreement: Krippendorff's alpha (krippendorff) and Cohen's kappa (scikit-learn)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence

import numpy as np

from tailor.evaluate.bootstrap import interval
from tailor.evaluate.human.store import CHOICES, get_study, ratings
from tailor.evaluate.metrics import Metric
from tailor.spec.evaluate import Bootstrap

_RATIO = Metric("ratio", ("sum", "count"), lambda c: float(c["sum"].sum() / c["count"].sum())
                if c["count"].sum() else float("nan"))


def krippendorff_alpha(units: dict, level: str) -> float:
    """Alpha over {unit: {rater: value}}; values numeric (interval, ordinal, ratio) or any labels (nominal)."""
    import krippendorff

    raters = sorted({r for votes in units.values() for r in votes})
    labels = sorted({v for votes in units.values() for v in votes.values()}, key=str)
    code = {v: i for i, v in enumerate(labels)}
    matrix = np.full((len(raters), len(units)), np.nan)
    for j, votes in enumerate(units.values()):
        for rater, value in votes.items():
            matrix[raters.index(rater), j] = code[value] if level == "nominal" else float(value)
    pairable = sum(1 for votes in units.values() if len(votes) >= 2)
    if pairable == 0 or len(labels) < 2:
        return float("nan")  # no unit rated twice, or one value only: agreement is undefined
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def cohen_kappa(first: Sequence, second: Sequence, weights: str | None = None) -> float:
    """Cohen's kappa of two raters over the same items (scikit-learn); weights None, 'linear' or 'quadratic'."""
    from sklearn.metrics import cohen_kappa_score

    if len(first) < 2 or len(set(first) | set(second)) < 2:
        return float("nan")
    return float(cohen_kappa_score(list(first), list(second), weights=weights))


def _agreement(units: dict[int, dict[str, str]], level: str) -> dict[str, float | None]:
    """Alpha over every rater; kappa when exactly two raters rated items in common."""
    raters = sorted({r for votes in units.values() for r in votes})
    kappa = None
    if len(raters) == 2:
        both = [votes for votes in units.values() if len(votes) == 2]
        cast = (lambda v: v) if level == "nominal" else int
        kappa = cohen_kappa([cast(v[raters[0]]) for v in both], [cast(v[raters[1]]) for v in both],
                            None if level == "nominal" else "quadratic")
    return {"alpha": krippendorff_alpha(units, level), "kappa": kappa, "raters": len(raters)}


def _by_unit(rows: list[dict], question: str) -> dict[int, dict[str, str]]:
    units: dict[int, dict[str, str]] = {}
    for r in rows:
        if r["question"] == question:
            units.setdefault(r["item"], {})[r["rater"]] = r["value"]
    return units


def _interval(per_item: list[tuple[float, int]], boot: Bootstrap) -> list[float] | None:
    columns = {"sum": np.asarray([s for s, _ in per_item], float), "count": np.asarray([n for _, n in per_item], float)}
    low, high = interval(_RATIO, columns, boot.samples, boot.confidence, boot.seed)
    return [low, high] if math.isfinite(low) else None


def study_results(con: sqlite3.Connection, name: str, boot: Bootstrap | None = None) -> dict:
    """Scores per question, the win rate (A/B studies) and agreement, each with its interval."""
    boot = boot or Bootstrap()
    study = get_study(con, name)
    rows = ratings(con, name)
    scores = []
    for question in [q for q in study.questions() if q != "winner"]:
        units = _by_unit(rows, question)
        per_item = [(sum(int(v) for v in votes.values()), len(votes)) for votes in units.values()]
        n = sum(c for _, c in per_item)
        criterion, _, run = question.partition(":")
        scores.append({"criterion": criterion, "run": (study.run_a if run == "a" else study.run_b) if run else study.run_a,
                       "side": run or None, "mean": sum(s for s, _ in per_item) / n if n else None,
                       "interval": _interval(per_item, boot), "ratings": n, "items": len(units),
                       **_agreement(units, "ordinal")})
    out = {"study": name, "kind": study.kind, "run_a": study.run_a, "run_b": study.run_b, "split": study.split,
           "raters": len({r["rater"] for r in rows}), "ratings": len(rows), "scores": scores,
           "confidence": boot.confidence}
    if study.winner:
        units = _by_unit(rows, "winner")
        votes = [v for u in units.values() for v in u.values()]
        counts = {c: votes.count(c) for c in CHOICES}
        # a win counts 1, a tie 1/2: the share of judgements won by run a
        per_item = [(sum(1.0 if v == "a" else 0.5 if v == "tie" else 0.0 for v in u.values()), len(u))
                    for u in units.values()]
        n = len(votes)
        out["winner"] = {"counts": counts, "judgements": n,
                         "win_rate_a": (counts["a"] + counts["tie"] / 2) / n if n else None,
                         "interval_a": _interval(per_item, boot), **_agreement(units, "nominal")}
    return _finite(out)


def _finite(obj):
    """NaN (an undefined statistic) as None, so the results are valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
