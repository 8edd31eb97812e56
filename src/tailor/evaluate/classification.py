"""Classification metrics: accuracy, precision, recall and F1 (micro, macro, weighted, per class),
the confusion matrix and its most confused pairs, with bootstrap intervals.

Point estimates come from scikit-learn. The bootstrap recomputes the same quantities from a
confusion matrix of each resample (thousands of sklearn calls would take seconds); the tests check
that this path equals scikit-learn on the full data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tailor.evaluate.bootstrap import interval
from tailor.evaluate.metrics import Columns, Metric, registry


AVERAGES = ("macro", "micro", "weighted")


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Accuracy and precision/recall/F1 under each averaging, from scikit-learn (zero_division=0)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in AVERAGES:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out |= {f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)}
    return out


def per_class(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> list[dict]:
    """Precision, recall, F1 and support of each label (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred), key=str)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return [{"label": lab, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)]


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> dict:
    """The confusion matrix: rows are true labels, columns predicted (scikit-learn)."""
    from sklearn.metrics import confusion_matrix

    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred), key=str)
    return {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def confused_pairs(y_true: Sequence, y_pred: Sequence, top: int = 10) -> list[dict]:
    """The most frequent (true, predicted) pairs among the mistakes, most frequent first."""
    counts = Counter((t, p) for t, p in zip(y_true, y_pred) if t != p)
    return [{"expected": t, "predicted": p, "count": n} for (t, p), n in counts.most_common(top)]


def encode(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, np.ndarray, list]:
    """Integer codes for both label sequences over their joint, sorted label set."""
    labels = sorted(set(y_true) | set(y_pred), key=str)
    index = {lab: i for i, lab in enumerate(labels)}
    return (np.asarray([index[t] for t in y_true]), np.asarray([index[p] for p in y_pred]), labels)


def _scores(columns: Columns, name: str) -> float:
    """One metric from the confusion matrix of integer-coded labels, as scikit-learn defines it."""
    t, p = columns["label_true"].astype(int), columns["label_pred"].astype(int)
    if len(t) == 0:
        return float("nan")
    if name == "accuracy":
        return float((t == p).mean())
    k = int(max(t.max(), p.max())) + 1
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    present = (cm.sum(0) + cm.sum(1)) > 0  # sklearn's default labels: those in y_true or y_pred
    tp, support, predicted = np.diag(cm)[present], cm.sum(1)[present], cm.sum(0)[present]
    kind, average = name.split("_")
    if average == "micro":
        tp, support, predicted = tp.sum(keepdims=True), support.sum(keepdims=True), predicted.sum(keepdims=True)
    precision = np.divide(tp, predicted, out=np.zeros(len(tp)), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(tp)), where=precision + recall > 0)
    value = {"precision": precision, "recall": recall, "f1": f1}[kind]
    if average == "weighted":
        return float((value * support).sum() / support.sum()) if support.sum() else 0.0
    return float(value.mean())


LABEL_REGISTRY: dict[str, Metric] = registry({"classification": lambda d: lambda c, n=d.name: _scores(c, n)})
CLASSIFICATION_METRICS = tuple(LABEL_REGISTRY)


def classification_intervals(y_true: Sequence, y_pred: Sequence, samples: int = 1000, confidence: float = 0.95,
                             seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap interval of every classification metric, resampling examples."""
    codes_true, codes_pred, _ = encode(y_true, y_pred)
    columns = {"label_true": codes_true.astype(float), "label_pred": codes_pred.astype(float)}
    return {name: interval(metric, columns, samples, confidence, seed) for name, metric in LABEL_REGISTRY.items()}


def classification_suite(y_true: Sequence, y_pred: Sequence, samples: int = 1000, confidence: float = 0.95,
                         seed: int = 0, top_pairs: int = 10) -> dict:
    """Everything the report shows for a label problem: metrics, intervals, per class, confusion, pairs."""
    return {"metrics": classification_metrics(y_true, y_pred),
            "intervals": classification_intervals(y_true, y_pred, samples, confidence, seed),
            "per_class": per_class(y_true, y_pred), "confusion": confusion(y_true, y_pred),
            "confused_pairs": confused_pairs(y_true, y_pred, top_pairs)}
