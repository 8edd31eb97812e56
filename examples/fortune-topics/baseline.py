"""TF-IDF + logistic regression on the same rows as spec.yaml: fit on data/train.jsonl, choose the features
and C on data/validation.jsonl, report macro-F1 once on data/test.jsonl.

    python examples/fortune-topics/baseline.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline

DATA = Path(__file__).parent / "data"
GRID = {
    "features": [("word", (1, 1)), ("word", (1, 2)), ("char_wb", (2, 5))],
    "C": [0.3, 1.0, 3.0, 10.0, 30.0],
}


def load(split: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in open(DATA / f"{split}.jsonl", encoding="utf-8")]
    return [r["text"] for r in rows], [r["topic"] for r in rows]


def model(features: tuple[str, tuple[int, int]], c: float):
    analyzer, ngrams = features
    return make_pipeline(TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=1),
                         LogisticRegression(C=c, max_iter=2000))


def main() -> None:
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load("train"), load("validation"), load("test")
    scored = []
    for features, c in itertools.product(GRID["features"], GRID["C"]):
        fitted = model(features, c).fit(x_train, y_train)
        scored.append((f1_score(y_val, fitted.predict(x_val), average="macro"), features, c))
    best_val, features, c = max(scored, key=lambda s: s[0])
    predicted = model(features, c).fit(x_train, y_train).predict(x_test)
    print(f"TF-IDF + logistic regression: chosen on validation {features[0]} {features[1][0]}-{features[1][1]}-grams, "
          f"C={c} (validation macro-F1 {best_val:.3f})")
    print(f"test: macro-F1 {f1_score(y_test, predicted, average='macro'):.3f}, "
          f"accuracy {accuracy_score(y_test, predicted):.3f} ({len(y_test)} records)")


if __name__ == "__main__":
    main()
