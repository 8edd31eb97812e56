"""Tasks in Label Studio's import format: each record's data, and its current label as a prediction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def write_tasks(records: Iterable[dict], path: Path, label_field: str | None, suggestion_field: str | None = None,
                from_name: str = "label", to_name: str = "text") -> int:
    """Write records as a JSON list of tasks; their label (or a model's suggestion, with its score) becomes a
    pre-annotation to review. Returns the count."""
    n = 0
    hidden = {label_field, suggestion_field, f"{suggestion_field}_score"}
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for record in records:
            data = {k: v for k, v in record.items() if k not in hidden}
            task: dict = {"data": data}
            label = record.get(label_field) if label_field else None
            score = None
            if label in (None, "") and suggestion_field:
                label, score = record.get(suggestion_field), record.get(f"{suggestion_field}_score")
            if label not in (None, ""):
                task["predictions"] = [{"model_version": "tailor", **({"score": score} if score is not None else {}),
                                        "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                                                    "value": {"choices": [str(label)]}}]}]
            f.write(("," if n else "") + "\n" + json.dumps(task, ensure_ascii=False, default=str))
            n += 1
        f.write("\n]\n")
    return n
