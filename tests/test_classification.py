"""The classification suite: scikit-learn's numbers, a hand-worked example, and intervals."""

import numpy as np
import pytest
from sklearn.metrics import classification_report

from tailor.evaluate.classification import (CLASSIFICATION_METRICS, LABEL_REGISTRY, classification_metrics,
                                            classification_suite, confused_pairs, confusion, encode, per_class)

# A hand-worked example: 10 items, three classes.
TRUE = ["cat", "cat", "cat", "cat", "dog", "dog", "dog", "bird", "bird", "bird"]
PRED = ["cat", "cat", "dog", "cat", "dog", "dog", "cat", "bird", "dog", "dog"]


def test_hand_worked_example():
    # cat: tp 3, fp 1 (a dog), fn 1 -> P 3/4, R 3/4;  dog: tp 2, fp 3, fn 1 -> P 2/5, R 2/3;  bird: tp 1, fp 0, fn 2 -> P 1, R 1/3
    m = classification_metrics(TRUE, PRED)
    assert m["accuracy"] == pytest.approx(6 / 10)
    f1 = {"cat": 0.75, "dog": 2 * 0.4 * (2 / 3) / (0.4 + 2 / 3), "bird": 2 * 1 * (1 / 3) / (1 + 1 / 3)}
    assert m["precision_macro"] == pytest.approx((0.75 + 0.4 + 1.0) / 3)
    assert m["recall_macro"] == pytest.approx((0.75 + 2 / 3 + 1 / 3) / 3)
    assert m["f1_macro"] == pytest.approx(sum(f1.values()) / 3)
    assert m["f1_weighted"] == pytest.approx((4 * f1["cat"] + 3 * f1["dog"] + 3 * f1["bird"]) / 10)
    assert m["precision_micro"] == m["recall_micro"] == m["f1_micro"] == pytest.approx(0.6)
    rows = {r["label"]: r for r in per_class(TRUE, PRED)}
    assert rows["dog"]["precision"] == pytest.approx(0.4) and rows["bird"]["support"] == 3
    cm = confusion(TRUE, PRED)
    assert cm["labels"] == ["bird", "cat", "dog"]
    assert cm["matrix"] == [[1, 0, 2], [0, 3, 1], [0, 1, 2]]
    assert confused_pairs(TRUE, PRED, 2) == [{"expected": "bird", "predicted": "dog", "count": 2},
                                            {"expected": "cat", "predicted": "dog", "count": 1}]


def test_matches_scikit_learn_report_on_random_labels():
    rng = np.random.default_rng(3)
    y = rng.choice(list("abcde"), 300)
    p = np.where(rng.random(300) < 0.55, y, rng.choice(list("abcdf"), 300))  # 'f' is predicted, never true
    report = classification_report(y, p, output_dict=True, zero_division=0)
    m = classification_metrics(list(y), list(p))
    assert m["accuracy"] == pytest.approx(report["accuracy"])
    for avg, key in (("macro", "macro avg"), ("weighted", "weighted avg")):
        for name in ("precision", "recall"):
            assert m[f"{name}_{avg}"] == pytest.approx(report[key][name])
        assert m[f"f1_{avg}"] == pytest.approx(report[key]["f1-score"])
    # the resampling path computes every metric from a confusion matrix: it must equal scikit-learn exactly
    t, q, _ = encode(list(y), list(p))
    cols = {"label_true": t.astype(float), "label_pred": q.astype(float)}
    for name in CLASSIFICATION_METRICS:
        assert LABEL_REGISTRY[name].aggregate(cols) == pytest.approx(m[name], abs=1e-12), name


def test_suite_has_intervals_around_each_metric():
    suite = classification_suite(TRUE * 5, PRED * 5, samples=300)
    for name in CLASSIFICATION_METRICS:
        low, high = suite["intervals"][name]
        assert low <= suite["metrics"][name] <= high and low < high, name
    assert suite["confusion"]["matrix"][0] == [5, 0, 10]
    assert len(suite["per_class"]) == 3


def test_label_rows_summarise_like_text_rows():
    """Prediction rows of a label problem carry label codes; the shared summary gives scikit-learn's numbers."""
    from tailor.evaluate.predictions import summarize
    from tailor.spec.evaluate import Bootstrap

    t, p, _ = encode(TRUE * 3, PRED * 3)
    rows = [{"split": "test", "label_true": float(a), "label_pred": float(b)} for a, b in zip(t, p)]
    metrics, intervals = summarize(rows, ["accuracy", "f1_macro"], Bootstrap(samples=200))
    reference = classification_metrics(TRUE * 3, PRED * 3)
    assert metrics["test/accuracy"] == pytest.approx(reference["accuracy"])
    assert metrics["test/f1_macro"] == pytest.approx(reference["f1_macro"])
    assert intervals["test/f1_macro"][0] < metrics["test/f1_macro"] < intervals["test/f1_macro"][1]
