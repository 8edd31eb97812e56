"""The extractive baseline for spec.yaml: a page's summary is the first N words of its description, N chosen
on data/validation.jsonl (1 to 30), ROUGE-L reported once on data/test.jsonl with the scorer Tailor's
evaluation uses.

    python examples/manpage-summaries/baseline.py
"""

from __future__ import annotations

import json
from pathlib import Path

from tailor.evaluate.metrics import rouge

DATA = Path(__file__).parent / "data"


def load(split: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in open(DATA / f"{split}.jsonl", encoding="utf-8")]
    return [r["description"] for r in rows], [r["summary"] for r in rows]


def first_words(texts: list[str], n: int) -> list[str]:
    return [" ".join(t.split()[:n]) for t in texts]


def main() -> None:
    (x_val, y_val), (x_test, y_test) = load("validation"), load("test")
    n = max(range(1, 31), key=lambda k: rouge(first_words(x_val, k), y_val)["rougeL"])
    val, test = rouge(first_words(x_val, n), y_val), rouge(first_words(x_test, n), y_test)
    print(f"first {n} words of the description (N chosen on validation: ROUGE-L {val['rougeL']:.3f})")
    print(f"test: ROUGE-L {test['rougeL']:.3f}, ROUGE-1 {test['rouge1']:.3f}, ROUGE-2 {test['rouge2']:.3f} "
          f"({len(y_test)} records)")


if __name__ == "__main__":
    main()
